"""The dashboard: operators, their sessions and login attempts; its indexes

- ``admins``: the operators who may use /admin/ (names, Argon2id hashes);
  ``admin_sessions``: signed-in operators; ``admin_logins``: login attempts,
  for the limits per name and per client address.
- ``edition_totals``: the ledger's totals of editions whose send is over;
  ``event_days``: the status changes of each day that is over.
- Indexes for the dashboard's queries: subscribers by status, frequency and
  source in id order (``ix_subscribers_status_id`` replaces
  ``ix_subscribers_status``), names (and, on PostgreSQL, addresses)
  starting with a text, events by time, and feedback by edition and kind
  (``ix_feedback_issue_kind`` replaces ``ix_feedback_issue_date``).
- ``newsletter_meta.schema_version`` becomes 6.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

meta = sa.table("newsletter_meta", sa.column("key", sa.String), sa.column("value", sa.String))


def upgrade() -> None:
    op.create_table(
        "admins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(24), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "admin_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("admin_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["admin_id"], ["admins.id"]),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_admin_sessions_admin_id", "admin_sessions", ["admin_id"])
    op.create_table(
        "admin_logins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("name_key", sa.String(64), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_admin_logins_at", "admin_logins", ["at"])
    op.create_index("ix_admin_logins_name_key_at", "admin_logins", ["name_key", "at"])
    op.create_index("ix_admin_logins_client_at", "admin_logins", ["client", "at"])
    op.create_table(
        "edition_totals",
        sa.Column("edition", sa.String(24), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("unknown", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("edition"),
    )
    op.create_table(
        "event_days",
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("old_status", sa.String(16), nullable=False),
        sa.Column("new_status", sa.String(16), nullable=False),
        sa.Column("changes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "old_status", "new_status"),
    )

    op.drop_index("ix_subscribers_status", table_name="subscribers")
    op.create_index("ix_subscribers_status_id", "subscribers", ["status", "id"])
    op.create_index("ix_subscribers_frequency_id", "subscribers", ["frequency", "id"])
    op.create_index("ix_subscribers_source_id", "subscribers", ["source", "id"])
    postgresql = op.get_bind().dialect.name == "postgresql"
    # text_pattern_ops: LIKE 'x%' can use the index whatever the collation.
    op.create_index("ix_subscribers_name_prefix", "subscribers", [sa.text("lower(name)")],
                    postgresql_ops={"lower(name)": "text_pattern_ops"} if postgresql else {})
    if postgresql:  # on SQLite, the unique index on email_key serves prefix ranges
        op.create_index("ix_subscribers_email_prefix", "subscribers", [sa.text("lower(email_key)")],
                        postgresql_ops={"lower(email_key)": "text_pattern_ops"})
    op.create_index("ix_subscriber_events_at", "subscriber_events", ["at"])
    op.create_index("ix_subscriber_events_status_source_at", "subscriber_events", ["new_status", "source", "at"])
    op.drop_index("ix_feedback_issue_date", table_name="feedback")
    op.create_index("ix_feedback_issue_kind", "feedback", ["issue_date", "kind", "bounce_type", "email_key"])
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="6"))


def downgrade() -> None:
    # Going back is restoring the backup taken before upgrading (newsletter
    # db backup): the releases before this one refuse a newer database.
    raise NotImplementedError("downgrades are not supported: restore a backup taken before the upgrade")
