"""Daily and weekly editions; each reader's frequency

- ``subscribers`` gains ``frequency`` (daily or weekly; every existing
  reader stays daily), ``weekday`` and ``paused_until``.
- ``issues`` is keyed by date and kind (every stored issue is a daily one)
  and gains ``paper_keys`` (a weekly edition's papers) and ``finished_at``.
- The ledger, its locks and SES feedback name an edition by its key
  (``2026-03-15`` or ``2026-03-15-weekly``): ``issue_date`` widens to 24.
- ``newsletter_meta.schema_version`` becomes 4.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

meta = sa.table("newsletter_meta", sa.column("key", sa.String), sa.column("value", sa.String))

ISSUE_COLUMNS = ("date", "subject", "preheader", "paper_count", "web_html", "text", "created_at", "updated_at")


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("frequency", sa.String(8), nullable=False, server_default="daily"))
        batch.add_column(sa.Column("weekday", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("paused_until", sa.String(10), nullable=True))

    # A new primary key: the same on both databases by copying into a new
    # table (issues are one row a day: a small table).
    op.create_table(
        "issues_new",
        sa.Column("date", sa.String(10), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("preheader", sa.String(300), nullable=False),
        sa.Column("paper_count", sa.Integer(), nullable=False),
        sa.Column("web_html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("paper_keys", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("date", "kind", name="issues_new_pkey"),
    )
    columns = ", ".join(ISSUE_COLUMNS)
    op.execute(f"INSERT INTO issues_new ({columns}, kind) SELECT {columns}, 'daily' FROM issues")
    op.drop_table("issues")
    op.rename_table("issues_new", "issues")
    if op.get_bind().dialect.name == "postgresql":  # its constraint names are global: keep the usual one
        op.execute("ALTER TABLE issues RENAME CONSTRAINT issues_new_pkey TO issues_pkey")

    for table in ("deliveries", "send_locks", "feedback"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("issue_date", type_=sa.String(24), existing_type=sa.String(10))
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="4"))


def downgrade() -> None:
    # Going back is restoring the backup taken before upgrading (newsletter
    # db backup): the releases before this one refuse a newer database.
    raise NotImplementedError("downgrades are not supported: restore a backup taken before the upgrade")
