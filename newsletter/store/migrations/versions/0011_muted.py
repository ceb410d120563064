"""Readers choose where their muted phrases hide papers

- ``profiles.muting``: where the phrases a reader muted (kept with their
  other lists in ``profiles.lists``, as ``muted``) hide the papers that
  mention them: ``picks`` (never picked for them) or ``top`` (not on their
  top cards either). Every profile stored before gets ``picks``; none has
  a muted phrase yet.
- ``newsletter_meta.schema_version`` becomes 11.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-20
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

meta = sa.table("newsletter_meta", sa.column("key", sa.String), sa.column("value", sa.String))


def upgrade() -> None:
    # The server default fills the rows already there (and the bulk
    # import's, which name only the columns they set).
    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("muting", sa.String(8), nullable=False, server_default="picks"))
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="11"))


def downgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("muting")
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="10"))
