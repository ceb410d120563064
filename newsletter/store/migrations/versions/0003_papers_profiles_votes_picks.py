"""Papers kept, readers' profiles, votes and picks (personal picks)

- ``papers``: every paper the newsletter carried, by key (arXiv id without
  version, or a normalized title), with its richest text; ``appearances``:
  the days it was in a batch, with its rank and upvotes that day.
- ``profiles``: what each reader told us they read; ``votes``: their 👍/👎.
- ``picks``: the papers picked for each reader in each edition.
- ``newsletter_meta.schema_version`` becomes 3.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

meta = sa.table("newsletter_meta", sa.column("key", sa.String), sa.column("value", sa.String))


def upgrade() -> None:
    op.create_table(
        "papers",
        sa.Column("key", sa.String(220), nullable=False),
        sa.Column("arxiv_id", sa.String(32), nullable=True),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("abstract", sa.Text(), nullable=False),
        sa.Column("authors", sa.Text(), nullable=False),
        sa.Column("url", sa.String(2000), nullable=True),
        sa.Column("code_url", sa.String(2000), nullable=True),
        sa.Column("project_url", sa.String(2000), nullable=True),
        sa.Column("ai_summary", sa.Text(), nullable=True),
        sa.Column("keywords", sa.Text(), nullable=False),
        sa.Column("categories", sa.Text(), nullable=False),
        sa.Column("github_stars", sa.Integer(), nullable=True),
        sa.Column("comment_count", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_papers_arxiv_id", "papers", ["arxiv_id"])
    op.create_table(
        "appearances",
        sa.Column("date", sa.String(10), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("paper_key", sa.String(220), nullable=False),
        sa.Column("upvotes", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["paper_key"], ["papers.key"]),
        sa.PrimaryKeyConstraint("date", "rank"),
    )
    op.create_index("ix_appearances_paper_key", "appearances", ["paper_key"])
    op.create_table(
        "profiles",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("lists", sa.Text(), nullable=False),
        sa.Column("picks", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"]),
        sa.PrimaryKeyConstraint("subscriber_id"),
    )
    op.create_table(
        "votes",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("paper_key", sa.String(220), nullable=False),
        sa.Column("vote", sa.Integer(), nullable=False),
        sa.Column("edition", sa.String(24), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"]),
        sa.PrimaryKeyConstraint("subscriber_id", "paper_key"),
    )
    op.create_index("ix_votes_paper_key", "votes", ["paper_key"])
    op.create_table(
        "picks",
        sa.Column("edition", sa.String(24), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("paper_key", sa.String(220), nullable=False),
        sa.Column("paper_rank", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("why_kind", sa.String(16), nullable=False),
        sa.Column("why_subject", sa.String(500), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"]),
        sa.PrimaryKeyConstraint("edition", "subscriber_id", "position"),
    )
    op.create_index("ix_picks_subscriber_edition", "picks", ["subscriber_id", "edition"])
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="3"))


def downgrade() -> None:
    # Going back is restoring the backup taken before upgrading (newsletter
    # db backup): the releases before this one refuse a newer database.
    raise NotImplementedError("downgrades are not supported: restore a backup taken before the upgrade")
