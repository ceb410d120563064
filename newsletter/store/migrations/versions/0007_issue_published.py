"""Editions on the web only once published

- ``issues.published_at``: when the edition went on the public archive and
  feed (a send began, or ``newsletter publish``); empty, it is stored (for
  ``publish`` and the weekly's papers) but not shown. A rendered file or a
  dry run no longer publishes.
- Every edition already stored that the ledger has as sent to some reader
  stays published (since its send finished, else its last update); the
  others (rendered, or made by a dry run) leave the web.
- ``ix_deliveries_subscriber_updated``: a reader's ledger rows in time
  order, for the statistics that blame a reader's own unsubscribe on the
  last edition sent to them.
- ``newsletter_meta.schema_version`` becomes 7.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-12
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

meta = sa.table("newsletter_meta", sa.column("key", sa.String), sa.column("value", sa.String))
issues = sa.table("issues", sa.column("date", sa.String), sa.column("kind", sa.String),
                  sa.column("updated_at", sa.DateTime(timezone=True)),
                  sa.column("finished_at", sa.DateTime(timezone=True)),
                  sa.column("published_at", sa.DateTime(timezone=True)))
deliveries = sa.table("deliveries", sa.column("issue_date", sa.String), sa.column("status", sa.String))


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
    # The ledger keys an edition as its date, with "-weekly" after a weekly's.
    key = sa.case((issues.c.kind == "weekly", issues.c.date + "-weekly"), else_=issues.c.date)
    sent = sa.exists().where(deliveries.c.issue_date == key, deliveries.c.status == "sent")
    op.execute(issues.update().where(sent)
               .values(published_at=sa.func.coalesce(issues.c.finished_at, issues.c.updated_at)))
    op.create_index("ix_deliveries_subscriber_updated", "deliveries", ["subscriber_id", "updated_at"])
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="7"))


def downgrade() -> None:
    op.drop_index("ix_deliveries_subscriber_updated", "deliveries")
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("published_at")
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="6"))
