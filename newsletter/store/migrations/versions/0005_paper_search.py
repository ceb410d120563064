"""Full-text search over the papers

- SQLite: ``papers_search``, an FTS5 index of the papers' title, abstract
  and authors (external content: the text stays in ``papers``), kept up to
  date by three triggers on ``papers``.
- PostgreSQL: ``papers.search``, a stored generated tsvector column (title,
  authors, abstract in decreasing weight), and its GIN index
  ``ix_papers_search``.
- The papers already stored are indexed here.
- ``papers.updated_at`` is indexed: a search ranks the matches stored last.
- ``newsletter_meta.schema_version`` becomes 5.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

meta = sa.table("newsletter_meta", sa.column("key", sa.String), sa.column("value", sa.String))

# As schema.SEARCH_DDL says them today; kept here as this revision made them.
SQLITE = (
    "CREATE VIRTUAL TABLE papers_search USING fts5(title, abstract, authors, content='papers', "
    "content_rowid='rowid', tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER papers_search_insert AFTER INSERT ON papers BEGIN "
    "INSERT INTO papers_search(rowid, title, abstract, authors) "
    "VALUES (new.rowid, new.title, new.abstract, new.authors); END",
    "CREATE TRIGGER papers_search_delete AFTER DELETE ON papers BEGIN "
    "INSERT INTO papers_search(papers_search, rowid, title, abstract, authors) "
    "VALUES ('delete', old.rowid, old.title, old.abstract, old.authors); END",
    "CREATE TRIGGER papers_search_update AFTER UPDATE OF title, abstract, authors ON papers "
    "WHEN old.title IS NOT new.title OR old.abstract IS NOT new.abstract OR old.authors IS NOT new.authors "
    "BEGIN "
    "INSERT INTO papers_search(papers_search, rowid, title, abstract, authors) "
    "VALUES ('delete', old.rowid, old.title, old.abstract, old.authors); "
    "INSERT INTO papers_search(rowid, title, abstract, authors) "
    "VALUES (new.rowid, new.title, new.abstract, new.authors); END",
    # Index the papers already stored (read from papers, the content table).
    "INSERT INTO papers_search(papers_search) VALUES ('rebuild')",
)
POSTGRESQL = (
    # Adding a stored generated column computes it for every row already there.
    "ALTER TABLE papers ADD COLUMN search tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english'::regconfig, title), 'A') || "
    "setweight(to_tsvector('english'::regconfig, authors), 'B') || "
    "setweight(to_tsvector('english'::regconfig, abstract), 'C')) STORED",
    "CREATE INDEX ix_papers_search ON papers USING gin (search)",
)


def upgrade() -> None:
    for statement in SQLITE if op.get_bind().dialect.name == "sqlite" else POSTGRESQL:
        op.execute(statement)
    op.create_index("ix_papers_updated_at", "papers", ["updated_at"])
    op.execute(meta.update().where(meta.c.key == "schema_version").values(value="5"))


def downgrade() -> None:
    # Going back is restoring the backup taken before upgrading (newsletter
    # db backup): the releases before this one refuse a newer database.
    raise NotImplementedError("downgrades are not supported: restore a backup taken before the upgrade")
