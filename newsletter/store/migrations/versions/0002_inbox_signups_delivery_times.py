"""Sign-ups live in the reader-action inbox; ledger rows indexed by send time

- ``signup_requests`` is dropped: sign-up requests (and the abuse limits
  that count them) are kept in the reader-action inbox now. Its rows only
  counted requests of the last 24 hours for those limits.
- ``deliveries.updated_at`` is indexed: delivery statistics select the
  issues sent in a period by when their ledger rows were written.
- ``newsletter_meta.schema_version`` becomes 2, so that release 1 (which
  knows only version 1 and no migrations) refuses the upgraded database
  instead of using it. ``alembic_version`` is what this and later releases
  read; the schema version is kept only for that refusal.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

meta = sa.table("newsletter_meta", sa.column("key", sa.String), sa.column("value", sa.String))


def upgrade() -> None:
    op.drop_index("ix_signup_requests_client", table_name="signup_requests")
    op.drop_index("ix_signup_requests_email_key", table_name="signup_requests")
    op.drop_table("signup_requests")
    op.create_index("ix_deliveries_updated_at", "deliveries", ["updated_at"])
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="2"))


def downgrade() -> None:
    # Going back is restoring the backup taken before upgrading (newsletter
    # db backup): the releases before this one refuse a newer database.
    raise NotImplementedError("downgrades are not supported: restore a backup taken before the upgrade")
