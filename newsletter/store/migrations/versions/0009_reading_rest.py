"""Readers choose how their email shows the rest of the day

- ``profiles.rest``: how a reader's email shows the day's papers that are
  neither picked for them nor among the top cards: ``titles`` (every
  title, as a compact list of links) or ``count`` (one line linking the
  web edition). Every profile stored before keeps ``titles``, what every
  email showed until now.
- ``newsletter_meta.schema_version`` becomes 9.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-19
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

meta = sa.table("newsletter_meta", sa.column("key", sa.String), sa.column("value", sa.String))


def upgrade() -> None:
    # The server default fills the rows already there (and the bulk
    # import's, which name only the columns they set).
    with op.batch_alter_table("profiles") as batch:
        batch.add_column(sa.Column("rest", sa.String(8), nullable=False, server_default="titles"))
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="9"))


def downgrade() -> None:
    with op.batch_alter_table("profiles") as batch:
        batch.drop_column("rest")
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="8"))
