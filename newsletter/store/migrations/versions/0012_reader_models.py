"""Readers' models of their votes, and votes they asked us to forget

- ``reader_models``: each reader's model of their votes (a linear model
  over the papers' embeddings: its weights, the version of the features),
  and whether it is due to be fitted. Every reader with a 👍 stored before
  is due, so their model is fitted once this release runs.
- ``forgotten_votes``: the votes a reader asked us to forget, kept a while
  so that they can undo it. Empty at first.
- ``newsletter_meta.schema_version`` becomes 12.

Revision ID: 0012
Revises: 0011
Create Date: 2027-01-20
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

meta = sa.table("newsletter_meta", sa.column("key", sa.String), sa.column("value", sa.String))


def upgrade() -> None:
    op.create_table(
        "reader_models",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("due", sa.Boolean(), nullable=False),
        sa.Column("features", sa.String(length=32), nullable=True),
        sa.Column("weights", sa.LargeBinary(), nullable=True),
        sa.Column("shaping", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"]),
        sa.PrimaryKeyConstraint("subscriber_id"),
    )
    op.create_index("ix_reader_models_due", "reader_models", ["due"])
    op.create_table(
        "forgotten_votes",
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("paper_key", sa.String(length=220), nullable=False),
        sa.Column("vote", sa.Integer(), nullable=False),
        sa.Column("edition", sa.String(length=24), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"]),
        sa.PrimaryKeyConstraint("subscriber_id", "paper_key"),
    )
    op.create_index("ix_forgotten_votes_forgotten_at", "forgotten_votes", ["forgotten_at"])
    # Readers who voted 👍 before: their model is due (the worker fits it,
    # or finds too few votes and leaves none).
    models = sa.table("reader_models", sa.column("subscriber_id", sa.Integer), sa.column("due", sa.Boolean),
                      sa.column("changed_at", sa.DateTime(timezone=True)))
    votes = sa.table("votes", sa.column("subscriber_id", sa.Integer), sa.column("vote", sa.Integer))
    voters = sa.select(votes.c.subscriber_id, sa.true(), sa.literal(dt.datetime.now(dt.timezone.utc))) \
        .where(votes.c.vote == 1).group_by(votes.c.subscriber_id)
    op.execute(models.insert().from_select(["subscriber_id", "due", "changed_at"], voters))
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="12"))


def downgrade() -> None:
    op.drop_index("ix_forgotten_votes_forgotten_at", table_name="forgotten_votes")
    op.drop_table("forgotten_votes")
    op.drop_index("ix_reader_models_due", table_name="reader_models")
    op.drop_table("reader_models")
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="11"))
