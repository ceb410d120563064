"""Which papers each edition picked, for the rule against repeated picks

- ``picked_papers``: each edition's papers picked for at least one reader,
  filled from the picks stored so far. A send reads it before readers'
  picks of the last 30 days: on a day none of whose papers was picked in
  that window, it reads no reader's picks at all; otherwise it reads them
  by edition and reader, the primary key.
- ``ix_picks_subscriber_edition`` goes: nothing reads a reader's picks of
  every edition any more, and it cost a write per pick.
- ``newsletter_meta.schema_version`` becomes 13.

Revision ID: 0013
Revises: 0012
Create Date: 2027-02-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

meta = sa.table("newsletter_meta", sa.column("key", sa.String), sa.column("value", sa.String))


def upgrade() -> None:
    op.create_table(
        "picked_papers",
        sa.Column("paper_key", sa.String(length=220), nullable=False),
        sa.Column("edition", sa.String(length=24), nullable=False),
        sa.PrimaryKeyConstraint("paper_key", "edition"),
    )
    picked = sa.table("picked_papers", sa.column("edition", sa.String), sa.column("paper_key", sa.String))
    picks = sa.table("picks", sa.column("edition", sa.String), sa.column("paper_key", sa.String))
    op.execute(picked.insert().from_select(["edition", "paper_key"],
                                           sa.select(picks.c.edition, picks.c.paper_key).distinct()))
    op.drop_index("ix_picks_subscriber_edition", table_name="picks")
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="13"))


def downgrade() -> None:
    op.create_index("ix_picks_subscriber_edition", "picks", ["subscriber_id", "edition"])
    op.drop_table("picked_papers")
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="12"))
