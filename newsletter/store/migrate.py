"""Schema migrations (Alembic): where a database stands, and bringing it to
this release's schema.

Every database is built by the revisions in ``migrations/versions``, run in
order: a new one from nothing, an older one from its revision, so new and
upgraded databases are made the same way. ``alembic_version`` holds a
database's revision. A database made by release 1 (before migrations) has
none; it is recognised by its tables and ``newsletter_meta.schema_version``
= 1, stamped with the baseline revision, then upgraded.

Opening a database runs :func:`upgrade`: one query when the database is
current. Otherwise it takes the migration lock (SQLite: the write lock,
``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock), looks again (another
process may have migrated meanwhile) and runs what is missing in that one
transaction, so a cron send and the web app starting together never both
migrate, and a failed migration changes nothing. A database at a revision
this release does not know was upgraded by a newer release: it is refused,
untouched.

To write a new revision: change ``schema.py``, then let Alembic compare it
with a database at the current head::

    python -c "from newsletter.store.migrate import new_revision; \\
               new_revision('sqlite:///head.db', '0003', 'what changes')"

and check the generated file in ``migrations/versions`` by hand.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError, SQLAlchemyError

from newsletter.core.config import masked_url
from newsletter.core.errors import DatabaseMissing, StoreError
from newsletter.store.schema import SEARCH_COLUMN, SEARCH_INDEX, SEARCH_TABLE, inbox_metadata, meta_table

if TYPE_CHECKING:  # Alembic is imported when a database is migrated, not by every open (11 MB)
    from alembic.config import Config
    from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"
# The revision that is release 1's schema.
BASELINE = "0001"
# Release 1's tables: a database holding all of them and no alembic_version
# was made by release 1.
RELEASE_1_TABLES = frozenset({
    "newsletter_meta", "subscribers", "subscriber_events", "issues", "deliveries", "send_locks", "feedback",
    "sns_messages", "signup_requests",
})
# Tables of every revision so far: what a file must hold to be a newsletter database.
CORE_TABLES = frozenset({"subscribers", "subscriber_events", "issues", "deliveries", "feedback"})
INBOX_TABLES = frozenset(inbox_metadata.tables)
# PostgreSQL advisory lock held while a database is migrated.
MIGRATION_LOCK_KEY = 0x6E6C4D494752  # "nlMIGR"


def include_name(name: str | None, type_: str, parent_names) -> bool:
    """Alembic's filter of what it compares: everything but the
    reader-action inbox (created on first use, never migrated) and the
    papers' full-text search, which SQLAlchemy's tables do not describe
    (SQLite's FTS5 table and its shadow tables, PostgreSQL's tsvector
    column and its index: see ``schema.SEARCH_DDL``)."""
    if type_ == "table":
        return name not in INBOX_TABLES and name != SEARCH_TABLE and not (name or "").startswith(SEARCH_TABLE + "_")
    if type_ == "column":
        return not (name == SEARCH_COLUMN and parent_names.get("table_name") == "papers")
    if type_ == "index":
        return name != SEARCH_INDEX
    return True


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic configuration for the migrations shipped in the package
    (no alembic.ini): on ``connection`` (used as it is, inside its
    transaction) or, without one, on the database at ``url``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


@functools.cache
def known_revisions() -> tuple[str, ...]:
    """Every revision this release knows, oldest first: the revisions are
    one line, each file named after its revision (``0003_….py``), so this
    needs no Alembic (a test checks it against Alembic's own walk)."""
    return tuple(sorted(path.name.split("_", 1)[0] for path in (MIGRATIONS / "versions").glob("[0-9]*_*.py")))


def head() -> str:
    """The latest revision this release knows."""
    return known_revisions()[-1]


def describe(revision: str) -> str:
    """The first line of ``revision``'s docstring: what it changes."""
    doc = _scripts().get_revision(revision).doc or ""
    return doc.strip().splitlines()[0] if doc.strip() else revision


def ahead_message(revision: str) -> str:
    """What a database at an unknown revision is told."""
    return f"the database was upgraded by a newer release (revision {revision}); this release knows up to {head()}"


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands.

    ``revision`` is its ``alembic_version`` (None when it has none);
    ``release_1`` says it was made by release 1 (before migrations);
    ``empty`` that it holds none of the newsletter's tables; ``problem``,
    when set, why it must not be used or upgraded (a newer release's, or
    not a newsletter database).
    """

    revision: str | None
    release_1: bool = False
    empty: bool = False
    problem: str | None = None

    @property
    def effective(self) -> str | None:
        """The revision its schema is at (release 1's is the baseline)."""
        return BASELINE if self.release_1 else self.revision

    @property
    def current(self) -> bool:
        return self.problem is None and self.revision == head()

    @property
    def pending(self) -> list[str]:
        """The revisions an upgrade would run, oldest first."""
        if self.problem is not None:
            return []
        revisions = known_revisions()
        start = self.effective
        return list(revisions if start is None else revisions[revisions.index(start) + 1:])


def read_state(conn: Connection) -> SchemaState:
    """Where the database of ``conn`` stands (reads only)."""
    tables = set(inspect(conn).get_table_names()) - INBOX_TABLES
    if VERSION_TABLE in tables:
        revisions = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
        if len(revisions) > 1:
            return SchemaState(None, problem=f"the database has several revisions ({', '.join(revisions)}); "
                                             "this release knows one line of revisions")
        if revisions:
            revision = revisions[0]
            if revision not in known_revisions():
                return SchemaState(revision, problem=ahead_message(revision))
            return SchemaState(revision)
        tables.discard(VERSION_TABLE)  # emptied by a downgrade to nothing: as if absent
    known = RELEASE_1_TABLES | CORE_TABLES
    if not tables & known:
        return SchemaState(None, empty=True)
    version = None
    if "newsletter_meta" in tables:
        version = conn.scalar(select(meta_table.c.value).where(meta_table.c.key == "schema_version"))
    if version is not None and version != "1":
        return SchemaState(None, problem=f"the database has schema version {version} but no revision; "
                                         "it was made by a newer release or changed by hand")
    if RELEASE_1_TABLES <= tables:
        # (A release-1 database may lack the version row: release 1 wrote it
        # just after creating the tables.)
        return SchemaState(None, release_1=True)
    missing = ", ".join(sorted(RELEASE_1_TABLES - tables))
    return SchemaState(None, problem=f"the database holds some of the newsletter's tables but not all "
                                     f"(missing: {missing}) and no revision; it cannot be upgraded safely")


@dataclass(frozen=True)
class Migration:
    """What :func:`upgrade` did: from ``from_revision`` (None: the database
    was empty) to ``to_revision``."""

    from_revision: str | None
    to_revision: str

    def __str__(self) -> str:
        if self.from_revision is None:
            return f"Created the database at revision {self.to_revision}."
        return f"Upgraded the database from {self.from_revision} to {self.to_revision}."


def _quick_revision(reader: Engine) -> str | None:
    """The database's revision in one query; None when it has no
    ``alembic_version`` table (or not exactly one row in it)."""
    try:
        with reader.connect() as conn:
            revisions = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    except ProgrammingError:  # PostgreSQL: no such table
        return None
    except OperationalError as exc:
        if "no such table" in str(exc):  # SQLite
            return None
        raise
    return revisions[0] if len(revisions) == 1 else None


@contextlib.contextmanager
def _migration_lock(writer: Engine) -> Iterator[Connection]:
    """A connection in a transaction that no other migration (and, with
    SQLite, no other writer) can enter until it ends; committed when the
    block ends without error, else rolled back."""
    with writer.connect() as conn:
        if conn.dialect.name == "sqlite":
            # Foreign keys are not enforced while a table is copied and
            # swapped (batch mode); the pragma is ignored inside a
            # transaction, so it is set on the bare connection first, and the
            # result is checked before committing.
            raw = conn.connection.driver_connection
            raw.execute("PRAGMA foreign_keys=OFF")
            try:
                with conn.begin():  # BEGIN IMMEDIATE (see engine.sqlite_engine): waits for other writers
                    yield conn
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").first()
                    if broken is not None:
                        raise StoreError(f"the migration would leave a broken reference in table {broken[0]}; "
                                         "nothing was changed")
            finally:
                raw.execute("PRAGMA foreign_keys=ON")
        else:
            with conn.begin():
                # Released when the transaction ends, whatever happens.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                yield conn


def describe_url(url) -> str:
    """Where a database is, for messages: a SQLite file's absolute path, or
    the URL without its password (see :func:`masked_url`)."""
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return str(Path(url.database).absolute())
    return masked_url(url.render_as_string(hide_password=False))


def upgrade(writer: Engine, reader: Engine, create: bool = True) -> Migration | None:
    """Bring the database to :func:`head`; return what was done, or None
    when it was current (one query on ``reader``). An empty database is
    built only with ``create``: otherwise raises :class:`DatabaseMissing`,
    creating nothing. Raises :class:`StoreError`, changing nothing, when
    the database is ahead of this release, is not a newsletter database, or
    a migration fails; other database errors (unreachable, locked too long:
    SQLAlchemy's) go to the caller."""
    revision = _quick_revision(reader)
    if revision == head():
        return None
    if revision is not None and revision not in known_revisions():
        raise StoreError(ahead_message(revision))
    with _migration_lock(writer) as conn:
        state = read_state(conn)  # again: another process may have migrated while this one waited
        if state.problem:
            raise StoreError(state.problem)
        if state.current:
            return None
        if state.empty and not create:
            where = describe_url(writer.url)
            raise DatabaseMissing(f"the database at {where} holds none of the newsletter's tables", where)
        from alembic import command

        config = alembic_config(conn)
        try:
            if state.release_1:
                command.stamp(config, BASELINE)
            command.upgrade(config, "head")
        except SQLAlchemyError as exc:  # rolled back as the exception leaves the lock's transaction
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise StoreError(f"upgrading the database from {state.effective or 'nothing'} to {head()} failed, "
                             f"and changed nothing: {reason}") from exc
        return Migration(state.effective, head())


def status(database_url: str) -> SchemaState:
    """Where the database at ``database_url`` stands, changing nothing (a
    SQLite file is opened read-only; a missing one reads as empty). Raises
    :class:`StoreError` when it cannot be read."""
    try:
        try:
            url = make_url(database_url)
        except ValueError as exc:
            raise ArgumentError("malformed URL") from exc
        if url.get_backend_name() == "sqlite":
            path = Path(url.database or "")
            if not url.database or url.database == ":memory:" or not path.exists():
                return SchemaState(None, empty=True)
            engine = read_only_sqlite(path)
        else:
            engine = create_engine(url)
        try:
            with engine.connect() as conn:
                return read_state(conn)
        finally:
            engine.dispose()
    except ArgumentError as exc:
        raise StoreError(f"malformed database URL {masked_url(database_url)!r}") from exc
    except (OperationalError, ProgrammingError, sqlite3.Error) as exc:
        reason = getattr(exc, "orig", None) or exc
        raise StoreError(f"cannot read the database: {str(reason).strip().splitlines()[0]}") from exc
    except ModuleNotFoundError as exc:
        raise StoreError(f"the database driver is not installed ({exc.name})") from exc


def read_only_sqlite(path: Path, immutable: bool = False) -> Engine:
    """An engine reading the SQLite file at ``path`` without ever writing it.

    With ``immutable``, for a file nothing else writes (a backup), SQLite
    takes no locks and leaves no -wal or -shm file beside it; without it
    (a live database), a WAL database may keep those two, as it does for
    any reader."""
    uri = f"{path.resolve().as_uri()}?{'immutable=1' if immutable else 'mode=ro'}"
    return create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))


def new_revision(database_url: str, rev_id: str, message: str) -> None:
    """Write a new revision file comparing ``schema.metadata`` with the
    database at ``database_url`` (which must be at :func:`head`). For
    developers; the result is to be read and corrected by hand."""
    from alembic import command

    command.revision(alembic_config(url=database_url), message=message, autogenerate=True, rev_id=rev_id)
