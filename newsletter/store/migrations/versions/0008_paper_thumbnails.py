"""Paper thumbnails: the source's address, and the web app's own copy

- ``papers.thumbnail_url``: the picture the source gives of a paper (the
  daily papers API's thumbnail), never shown from there; empty for the
  papers stored before.
- ``paper_thumbnails``: the web app's copy of it (PNG, at most 600 pixels
  wide, with its size), made when a day is stored with
  ``NEWSLETTER_THUMBNAILS`` on and served at
  ``/papers/<key>/thumbnail.png``. Empty at first.
- ``newsletter_meta.schema_version`` becomes 8.

Revision ID: 0008
Revises: 0007
Create Date: 2027-01-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

meta = sa.table("newsletter_meta", sa.column("key", sa.String), sa.column("value", sa.String))


def upgrade() -> None:
    # A plain ADD COLUMN, not a batch copy of the table: SQLite's search
    # index finds papers by rowid, which a copy would change.
    op.add_column("papers", sa.Column("thumbnail_url", sa.String(length=2000), nullable=True))
    op.create_table(
        "paper_thumbnails",
        sa.Column("paper_key", sa.String(length=220), nullable=False),
        sa.Column("png", sa.LargeBinary(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["paper_key"], ["papers.key"]),
        sa.PrimaryKeyConstraint("paper_key"),
    )
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="8"))


def downgrade() -> None:
    op.drop_table("paper_thumbnails")
    # SQLite drops a column in place (3.35 and later); its search index's
    # rowids stay those of the papers.
    op.drop_column("papers", "thumbnail_url")
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="7"))
