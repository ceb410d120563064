"""Opening the database: the engines, their settings, and short writes.

SQLAlchemy Core over the embedded SQLite database by default, or PostgreSQL
for deployments where the web app and the sender run on different hosts; the
same code serves both. With SQLite, writers take the write lock up front and
wait for another writer (a busy timeout); readers never wait (WAL); the
reader-action inbox is a file of its own, so a long writer never holds it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import re
from pathlib import Path
from typing import Iterator

from sqlalchemy import Column, Table, create_engine, event, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
)

from newsletter.core.config import masked_url
from newsletter.core.errors import DatabaseMissing, StoreBusy, StoreError
from newsletter.store.filelock import DatabaseLock, hold_shared
from newsletter.store.migrate import Migration, describe_url, upgrade
from newsletter.store.schema import inbox_metadata

# How long a reader's action waits for the database before it is left to
# the worker (the reader is answered within two seconds whatever holds it).
QUICK_WAIT_SECONDS = 1.0
BUSY_TIMEOUT_SECONDS = 15.0
# Connections an engine keeps open (see sqlite_engine): more than a send's
# threads at the default concurrency, or the web app's.
POOL_SIZE = 16


def now() -> dt.datetime:
    """The current time in UTC."""
    return dt.datetime.now(dt.timezone.utc)


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` (as read from the database) as an aware UTC datetime."""
    # SQLite hands back naive datetimes; everything stored is UTC. PostgreSQL
    # hands back aware ones in the session's time zone: convert them to UTC.
    return value.astimezone(dt.timezone.utc) if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


@functools.lru_cache(maxsize=64)
def _driver_sql(statement, dialect, names: tuple[str, ...]) -> tuple[str, list[int] | None]:
    """``statement`` compiled for ``dialect``: its SQL, and where each of
    its parameters is in ``names`` when the driver takes them by position
    (None: by name)."""
    compiled = statement.compile(dialect=dialect)
    return compiled.string, [names.index(name) for name in compiled.positiontup] if compiled.positional else None


def execute_many(conn: Connection, statement, names: tuple[str, ...], rows: list[tuple]) -> None:
    """Run ``statement`` once for each of ``rows``, tuples of the values of
    its parameters ``names`` (every one of them), in one executemany of the
    database's driver.

    ``statement`` must be built once (module level: compiled forms are
    kept by it) with every value a bound parameter. The rows go to the
    driver as they are, without SQLAlchemy's processing of each row, which
    cost a bulk send as much as the database's own work, so each value must
    be one the driver takes: text, numbers, None, and a datetime made
    by :func:`driver_value`."""
    sql, order = _driver_sql(statement, conn.dialect, names)
    if order is None:
        params = [dict(zip(names, row)) for row in rows]
    elif order == list(range(len(names))):
        params = rows
    else:
        params = [tuple(row[i] for i in order) for row in rows]
    conn.exec_driver_sql(sql, params)


def insert_many(conn: Connection, table: Table, names: tuple[str, ...], rows: list[tuple]) -> None:
    """Insert ``rows`` (tuples of the values of the columns ``names``, as
    :func:`execute_many` takes them) into ``table``, inside the caller's
    transaction: on PostgreSQL with one ``COPY ... FROM STDIN``, elsewhere
    with :func:`execute_many`.

    psycopg adapts and sends an executemany's parameters row by row: five
    pick rows cost 95 µs of client CPU per reader that way, against 16 µs
    by COPY (a micro-benchmark on the picks' columns). PostgreSQL's manual (COPY): "COPY FROM copies data from a file
    to a table (appending the data to whatever is in the table already)";
    a row that breaks a constraint fails the whole COPY, as it fails the
    INSERT."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        execute_many(conn, _insert_of(table), names, rows)
        return
    from psycopg import sql  # the PostgreSQL driver, loaded only for PostgreSQL

    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table.name),
                                                          sql.SQL(", ").join(map(sql.Identifier, names)))
    driver = conn.dialect.loaded_dbapi
    try:
        # psycopg's Cursor.copy: "write_row(row) - Write a record to a table
        # after a COPY FROM operation", adapting each value as a query would.
        with conn.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except driver.Error as exc:
        # The driver's own error, as SQLAlchemy raises it for a statement it
        # runs (an IntegrityError for a duplicate key, and so on).
        raise DBAPIError.instance(f"COPY {table.name}", None, exc, driver.Error, dialect=conn.dialect) from exc


@functools.cache
def _insert_of(table: Table):
    """The INSERT of ``table``, built once (see :func:`execute_many`)."""
    return table.insert()


# Where SQLAlchemy writes an expanding parameter's values out at execution.
_POSTCOMPILE = re.compile(r"__\[POSTCOMPILE_(\w+)\]")


@functools.lru_cache(maxsize=256)
def _expanded_sql(statement, dialect, sizes: tuple[tuple[str, int], ...]) -> tuple[str, tuple]:
    """``statement`` compiled for ``dialect`` with each expanding parameter
    written out as one parameter per value: those of ``sizes`` (name, how
    many values) given at execution, those with a list of their own (such
    as ``in_([a, b])``) as that list. Returns its SQL and its parameters
    in the driver's order, each (name, names, carried): ``names`` what the
    driver calls an expanding one's values when it takes them by name
    (None for a single value), ``carried`` what the statement carries
    itself as the driver takes it, None for what is given at execution."""
    compiled = statement.compile(dialect=dialect)
    size = dict(sizes)
    carried = {}
    for name, bind in compiled.binds.items():
        if bind.required or name in size:
            continue
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        value = bind.effective_value
        if bind.expanding:
            carried[name] = [item if process is None else process(item) for item in value]
            size[name] = len(value)
        else:
            carried[name] = value if process is None else process(value)
    written = {name: [f"{name}_{i}" for i in range(count)] for name, count in size.items()}

    def placeholders(match: re.Match) -> str:
        name = match.group(1)
        if compiled.positional:
            return ", ".join("?" * size[name])
        return ", ".join(f"%({each})s" for each in written[name])

    names = compiled.positiontup if compiled.positional else list(compiled.binds)
    plan = tuple((name, written.get(name), carried.get(name)) for name in names)
    return _POSTCOMPILE.sub(placeholders, compiled.string), plan


def execute_expanded(conn: Connection, statement, **params):
    """Run ``statement`` (built once, module level) with ``params`` (a
    list for each of its expanding parameters), and return the result,
    whose rows hold the values as the driver gives them (text, numbers,
    bytes: not SQLAlchemy's types). SQLAlchemy writes an expanding
    parameter out anew for every execution, which cost a send's per-call
    queries (50 ids each) and the ranking's reads (500 each) more than the
    database's own work; here its SQL is kept for each number of values,
    and the values go to the driver as they are (see :func:`execute_many`
    for what the driver takes)."""
    sizes = tuple(sorted((name, len(value)) for name, value in params.items() if isinstance(value, list)))
    if any(count == 0 for _name, count in sizes):
        return conn.execute(statement, params)  # SQLAlchemy's own form of an empty IN
    sql, plan = _expanded_sql(statement, conn.dialect, sizes)
    if conn.dialect.positional:
        values = []
        for name, names, carried in plan:
            value = params[name] if carried is None else carried
            if names is None:
                values.append(value)
            else:
                values.extend(value)
        return conn.exec_driver_sql(sql, tuple(values))
    named = {}
    for name, names, carried in plan:
        value = params[name] if carried is None else carried
        if names is None:
            named[name] = value
        else:
            named.update(zip(names, value))
    return conn.exec_driver_sql(sql, named)


def driver_value(conn: Connection, column: Column, value):
    """``value`` as the database's driver takes it for ``column`` (see
    :func:`execute_many`): SQLite's driver, for one, takes a datetime
    as the text SQLAlchemy writes."""
    process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return value if process is None else process(value)


def sqlite_engine(url, begin: str, busy_seconds: float = BUSY_TIMEOUT_SECONDS) -> Engine:
    """An engine whose transactions start with ``BEGIN <begin>`` and whose
    connections wait up to ``busy_seconds`` for another writer."""
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # Connections kept for every thread that may use one at once (a
        # send's workers, its reading and ranking, the web app's threads):
        # past the pool's size, SQLAlchemy opens a connection for each use
        # and closes it after, and opening one (its pragmas, the schema read
        # again) cost a send's call more than its statements.
        engine = create_engine(url, pool_size=POOL_SIZE)
    else:
        engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event issue BEGIN itself (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cursor.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")  # wait for a writer instead of failing
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # A connection may ask for another mode (see Imports._bulk_add).
        connection.exec_driver_sql(f"BEGIN {connection.get_execution_options().get('sqlite_begin', begin)}")

    return engine


def inbox_url(url):
    """The SQLite file of the reader-action inbox, beside the database file
    (``subscribers/newsletter.db`` → ``subscribers/newsletter.inbox.db``)."""
    path = Path(url.database)
    return url.set(database=str(path.with_name(f"{path.stem}.inbox{path.suffix or '.db'}")))


def dialect_insert(conn: Connection, table: Table):
    """An INSERT of the connection's dialect (for ON CONFLICT clauses)."""
    if conn.dialect.name == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)


def is_busy(exc: OperationalError) -> bool:
    """Whether ``exc`` means another writer held the database too long
    (SQLite's "database is locked", PostgreSQL's lock timeout)."""
    text = str(getattr(exc, "orig", exc)).lower()
    return "locked" in text or "lock timeout" in text or "busy" in text


class Database:
    """The engines of one database: ``engine`` for writes (waiting up to the
    busy timeout for another writer), ``reader`` for reads, ``inbox`` for
    the reader-action inbox, and short writes through :meth:`_writing`.
    ``clock`` gives the current time (UTC) to everything stored.
    ``migration`` says what opening it did to its schema (see
    ``newsletter.store.migrate``): None when it was current; callers report it.
    ``where`` names the database for messages (a file's path, a URL
    without its password)."""

    clock = staticmethod(now)
    migration: Migration | None = None
    _lock: DatabaseLock | None = None  # a SQLite file's, held while it is open (see ``newsletter.store.filelock``)

    def __init__(self, database_url: str, create: bool = True):
        """Open the database at ``database_url`` (with ``create``, creating
        it when there is none), upgrading its schema when it is behind this
        release.

        A SQLite database's lock is held shared until :meth:`close` (see
        ``newsletter.store.filelock``).

        Raises :class:`DatabaseMissing` without ``create`` when there is no
        SQLite file or the database holds none of the newsletter's tables
        (nothing is created), and :class:`StoreError` when the URL is
        malformed, the database cannot be reached, is being restored, or was
        upgraded by a newer release (then nothing is changed).
        """
        try:
            try:
                url = make_url(database_url)
            except ValueError as exc: # such as a port that is not a number
                raise ArgumentError("malformed URL") from exc
            self.where = describe_url(url)
            if url.get_backend_name() == "sqlite":
                in_memory = not url.database or url.database == ":memory:"
                if not create and not in_memory and not Path(url.database).exists():
                    raise DatabaseMissing(f"there is no database at {self.where}", self.where)
                # Writers take the write lock up front: a deferred transaction
                # that reads and then writes fails at once with "database is
                # locked" when another process wrote in between, whatever the
                # busy timeout. Readers need no lock at all under WAL.
                self.engine = sqlite_engine(url, "IMMEDIATE")
                self.reader = sqlite_engine(url, "DEFERRED")
                self._quick = sqlite_engine(url, "IMMEDIATE", busy_seconds=QUICK_WAIT_SECONDS)
                self.inbox = self.engine if in_memory else sqlite_engine(inbox_url(url), "IMMEDIATE")
                if not in_memory:
                    # Before the first connection: never open a file a restore is replacing.
                    self._lock = hold_shared(Path(url.database))
            else:
                self.engine = self.reader = self._quick = self.inbox = create_engine(
                    url, pool_pre_ping=True, pool_size=POOL_SIZE)
            self._prepare_schema(create)
        except ArgumentError as exc:
            raise StoreError(f"malformed database URL {masked_url(database_url)!r}") from exc
        except (OperationalError, OSError) as exc:
            reason = getattr(exc, "orig", None) or exc
            raise StoreError(f"cannot open the database: {str(reason).strip().splitlines()[0]}") from exc
        except ModuleNotFoundError as exc:
            raise StoreError(f"the database driver is not installed ({exc.name})") from exc
        except BaseException:
            self.close()
            raise

    def _prepare_schema(self, create: bool) -> None:
        """Upgrade the database to this release's schema when it is behind
        (recording what was done in ``migration``; an empty one only with
        ``create``, else :class:`DatabaseMissing`), then create the
        reader-action inbox if it is missing."""
        self.migration = upgrade(self.engine, self.reader, create=create)
        try:
            inbox_metadata.create_all(self.inbox)
        except (IntegrityError, OperationalError, ProgrammingError):  # another process created it at the same moment
            inbox_metadata.create_all(self.inbox)

    def ping(self) -> None:
        """Run a trivial query; raises :class:`StoreError` when the database is unreachable."""
        try:
            with self.reader.connect() as conn:
                conn.execute(select(1))
        except SQLAlchemyError as exc:
            raise StoreError(f"database unreachable ({exc.__class__.__name__})") from exc

    def close(self) -> None:
        """Release every pooled connection (safe to call more than once)."""
        for name in ("engine", "reader", "_quick", "inbox"):
            engine = getattr(self, name, None)
            if engine is not None:
                engine.dispose()
        if self._lock is not None:
            self._lock.release()

    @contextlib.contextmanager
    def _writing(self, quick: bool = False) -> Iterator[Connection]:
        """A write transaction. With ``quick``, it waits at most
        :data:`QUICK_WAIT_SECONDS` for the database (held by a long import or
        a migration) and then raises :class:`StoreBusy`; otherwise it waits
        up to the busy timeout."""
        engine = self._quick if quick else self.engine
        try:
            with engine.begin() as conn:
                if quick and engine.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(QUICK_WAIT_SECONDS * 1000)}ms'")
                yield conn
        except OperationalError as exc:
            if quick and is_busy(exc):
                raise StoreBusy("the database is busy with a long operation") from exc
            raise
