"""Backups of the SQLite database, and restoring one.

A backup is taken with SQLite's online backup API while the web app and a
send keep running. It reads one snapshot of the database (a read
transaction: under WAL, readers never block writers, so no reader's
unsubscribe waits for it), writes it to a temporary file beside the
destination, checks the copy (``PRAGMA integrity_check``, the newsletter's
tables, a revision this release knows) and only then renames it into
place: the destination is never left half-written.

A restore checks the file the same way, holds the database's lock
exclusive throughout (see ``filelock``: it refuses while another process
has the database open, and no process opens it meanwhile), checks again
before the swap that no process has opened the file without the lock,
keeps the replaced database beside it and swaps the file in atomically. A
restored database older than this release is upgraded when it is next
opened.

PostgreSQL has its own tools (pg_dump, pg_restore): these functions say so
instead of pretending.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import secrets
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from newsletter.core.config import masked_url
from newsletter.core.errors import StoreError
from newsletter.store import migrate
from newsletter.store.engine import BUSY_TIMEOUT_SECONDS
from newsletter.store.filelock import hold_exclusive, hold_shared, lock_file

SQLITE_HEADER = b"SQLite format 3\x00"
# Pages copied per step of the backup API (4 MB with 4 KB pages): the
# snapshot is held throughout, so the step size only paces the copy.
STEP_PAGES = 1024


@dataclass(frozen=True)
class DatabaseFile:
    """A checked newsletter database file: its ``revision`` (release 1's
    counts as the baseline, with ``release_1`` set), how many subscribers
    and issues it holds, and its size in bytes."""

    path: Path
    revision: str
    release_1: bool
    subscribers: int
    issues: int
    size: int

    @property
    def behind(self) -> bool:
        """Whether this release will upgrade it when it is opened."""
        return self.release_1 or self.revision != migrate.head()

    def summary(self) -> str:
        """One line: what it holds."""
        release = " (release 1)" if self.release_1 else ""
        return (f"{self.subscribers:,} subscribers, {self.issues:,} issues, revision {self.revision}{release}, "
                f"{human_size(self.size)}")


def human_size(size: int) -> str:
    """``size`` bytes, for people (``12.3 MB``)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def sqlite_path(database_url: str, doing: str) -> Path:
    """The file of the SQLite database at ``database_url``. Raises
    :class:`StoreError` for a malformed URL, an in-memory database, or a
    PostgreSQL one (explaining the pg_dump or pg_restore command that does
    ``doing``, "backup" or "restore")."""
    try:
        url = make_url(database_url)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(f"malformed database URL {masked_url(database_url)!r}") from exc
    if url.get_backend_name() == "postgresql":
        raise StoreError(postgresql_advice(url, doing))
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise StoreError(f"{doing} works on a SQLite database file; the database is {masked_url(database_url)}")
    return Path(url.database)


def postgresql_advice(url: URL, doing: str) -> str:
    """How to back up or restore the PostgreSQL database at ``url`` with
    its own tools (the password is never shown)."""
    where = f"--host={url.host or 'localhost'} --port={url.port or 5432} --username={url.username or 'postgres'}"
    password = "give the password with PGPASSWORD or ~/.pgpass"
    if doing == "backup":
        return (f"this command backs up SQLite databases only; back up PostgreSQL with pg_dump: "
                f"pg_dump {where} --format=custom --file=FILE {url.database} ({password})")
    return (f"this command restores SQLite databases only; restore PostgreSQL with pg_restore: "
            f"pg_restore {where} --clean --if-exists --dbname={url.database} FILE ({password}); "
            f"the database is upgraded when it is next opened")


def inspect_file(path: Path) -> DatabaseFile:
    """Check that ``path`` is a sound newsletter database this release can
    use (reading it only) and return what it holds. Raises
    :class:`StoreError` saying why not: missing, not a SQLite database,
    damaged, not a newsletter database, or upgraded by a newer release."""
    if not path.is_file():
        raise StoreError(f"{path}: no such file")
    if Path(f"{path}-wal").exists():
        # Its newest pages may be in that log, not in the file itself.
        raise StoreError(f"{path}: a write-ahead log ({path.name}-wal) is beside it, so the file alone may be "
                         "incomplete; copy a database with `newsletter db backup`, not by copying the file")
    with open(path, "rb") as file:
        if file.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise StoreError(f"{path}: not a SQLite database")
    engine = migrate.read_only_sqlite(path, immutable=True)  # leaves nothing beside the file
    try:
        with engine.connect() as conn:
            problems = [row[0] for row in conn.exec_driver_sql("PRAGMA integrity_check").all()]
            if problems != ["ok"]:
                raise StoreError(f"{path}: the database is damaged ({problems[0]})")
            state = migrate.read_state(conn)
            if state.problem:
                raise StoreError(f"{path}: {state.problem}")
            tables = set(conn.dialect.get_table_names(conn))
            missing = migrate.CORE_TABLES - tables
            if state.empty or missing:
                raise StoreError(f"{path}: not a newsletter database (it has no "
                                 f"{', '.join(sorted(missing or migrate.CORE_TABLES))} table)")
            subscribers = conn.exec_driver_sql("SELECT count(*) FROM subscribers").scalar_one()
            issues = conn.exec_driver_sql("SELECT count(*) FROM issues").scalar_one()
    except (sqlite3.Error, DBAPIError) as exc:
        reason = getattr(exc, "orig", None) or exc
        raise StoreError(f"{path}: not a usable SQLite database ({reason})") from exc
    finally:
        engine.dispose()
    return DatabaseFile(path, state.effective, state.release_1, subscribers, issues, path.stat().st_size)


def backup(database: Path, destination: Path,
           progress: Callable[[int, int, int], None] | None = None) -> DatabaseFile:
    """Copy the SQLite database file ``database`` to ``destination``
    (replaced only once the copy is complete and checked), as it is (a
    database behind this release is not upgraded), and return what the
    copy holds. ``progress(status, remaining, total)`` is called after each
    step of the copy (pages), with the snapshot held. Raises
    :class:`StoreError` when there is no database, when ``destination`` is
    the database itself or a folder, or when the copy fails its check (then
    nothing is replaced), or while the database is being restored."""
    source = Path(database)
    if not source.is_file():
        raise StoreError(f"there is no database at {source} to back up")
    destination = Path(destination)
    if destination.is_dir():
        raise StoreError(f"{destination} is a folder; give the backup's file name")
    if destination.exists() and destination.resolve() == source.resolve():
        raise StoreError(f"{destination} is the database itself; give another file name")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot write the backup: {exc}") from exc
    try:
        lock = hold_shared(source)  # a restore does not replace the database during the copy
    except OSError as exc:
        raise StoreError(f"cannot read the database: {exc}") from exc
    try:
        with _replacing(destination, "backup", "cannot write the backup") as temporary:
            _copy_snapshot(source, temporary, progress)
            copy = inspect_file(temporary)
    finally:
        lock.release()
    return dataclasses.replace(copy, path=destination)


@contextlib.contextmanager
def _replacing(target: Path, purpose: str, failure: str) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` to write the new file to;
    when the block ends without an error, the file is synced and renamed
    over ``target`` (so ``target`` is at every moment the old file or the
    new one); the temporary file never stays behind. An ``OSError`` becomes
    a :class:`StoreError` starting with ``failure``."""
    temporary = _beside(target, purpose)
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, target)
        _fsync_folder(target.parent)
    except OSError as exc:
        raise StoreError(f"{failure}: {exc}") from exc
    finally:
        temporary.unlink(missing_ok=True)


def _copy_snapshot(source: Path, target: Path, progress) -> None:
    """Copy one consistent snapshot of ``source`` into the new file ``target``."""
    try:
        reading = sqlite3.connect(source, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
        try:
            # One read transaction for the whole copy: every step copies the
            # same snapshot (writers go on writing to the WAL meanwhile, and
            # the copy does not restart when they do).
            reading.execute("BEGIN")
            reading.execute("SELECT count(*) FROM sqlite_master").fetchone()
            writing = sqlite3.connect(target, isolation_level=None)
            try:
                reading.backup(writing, pages=STEP_PAGES, progress=progress)
                # A self-contained file in rollback-journal mode: it can be
                # read (even read-only) without a -wal or -shm beside it.
                writing.execute("PRAGMA journal_mode=DELETE").fetchone()
            finally:
                writing.close()
            reading.execute("COMMIT")
        finally:
            reading.close()
    except sqlite3.Error as exc:
        raise StoreError(f"the backup failed: {exc}") from exc


def restore(database_url: str, source: Path) -> tuple[DatabaseFile, Path | None]:
    """Replace the SQLite database of ``database_url`` with the backup at
    ``source``; return what it holds and where the replaced database was
    kept (None when there was none).

    The file is checked first (see :func:`inspect_file`). The database's
    lock (see ``newsletter.store.filelock``) is held exclusive from then
    on until the swap is done, so no process opens the database meanwhile.
    The new file is copied beside the database and checked; just before
    the swap, no process may have the database open (one that opened it
    without the lock: the sqlite3 shell, an older release). The replaced
    database is kept as ``<name>.before-restore-<UTC time>.db`` beside it;
    the new one is synced and renamed over it, so the database is at every
    moment either the old file or the new one.

    Raises :class:`StoreError` (changing nothing) for a PostgreSQL
    database, a file that fails its check, or a database another process
    has open or opens during the copy (the web app, a send: stop it
    first)."""
    database = sqlite_path(database_url, "restore")
    source = Path(source)
    restored = inspect_file(source)
    if database.exists() and database.resolve() == source.resolve():
        raise StoreError(f"{source} is the database itself")
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        lock = hold_exclusive(database)
    except OSError as exc:
        raise StoreError(f"cannot restore: {exc}") from exc
    if lock is None:
        _refuse_while_open(database, processes_holding(database, lock_file(database)))
        raise StoreError(f"the database {database} is in use by another process; stop it (the web app, a send, "
                         "a cron job) and restore again")
    try:
        _refuse_while_open(database, processes_holding(database))
        kept = None
        with _replacing(database, "restore", "cannot restore") as temporary:
            shutil.copyfile(source, temporary)
            inspect_file(temporary)  # the copy itself, not only its original
            _refuse_while_open(database, processes_holding(database))  # again: the copy took a while
            if database.exists():
                kept = _keep(database)
            # A log or shared-memory file left by the replaced database would
            # be applied to the new one.
            for suffix in ("-wal", "-shm", "-journal"):
                Path(f"{database}{suffix}").unlink(missing_ok=True)
    finally:
        lock.release()
    return dataclasses.replace(restored, path=database), kept


def _refuse_while_open(database: Path, holders: list[tuple[int, str]]) -> None:
    """Raise :class:`StoreError` naming the first of ``holders`` (pid,
    command line) of ``database``, if any."""
    if holders:
        pid, command = holders[0]
        raise StoreError(f"the database {database} is open in process {pid} ({command}); stop it (the web app, "
                         "a send, a cron job) and restore again")


def _keep(database: Path) -> Path:
    """Keep the database about to be replaced beside it, complete (its
    write-ahead log folded in first); return where."""
    try:
        conn = sqlite3.connect(database, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot restore: the current database cannot be read ({exc})") from exc
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    kept = database.with_name(f"{database.stem}.before-restore-{stamp}{database.suffix or '.db'}")
    counter = 1
    while kept.exists():
        counter += 1
        kept = database.with_name(f"{database.stem}.before-restore-{stamp}-{counter}{database.suffix or '.db'}")
    try:
        os.link(database, kept)  # the same file under a second name: instant, and the swap below leaves it whole
    except OSError:
        shutil.copy2(database, kept)
        _fsync(kept)
    return kept


def processes_holding(database: Path, *others: Path) -> list[tuple[int, str]]:
    """Other processes that have ``database`` (or its -wal or -shm file, or
    one of ``others``) open, as (pid, command line), found through /proc on
    Linux; empty where /proc is not available or shows nothing. Processes
    of other users are visible only to root."""
    names = {os.path.realpath(f"{database}{suffix}") for suffix in ("", "-wal", "-shm")}
    names |= {os.path.realpath(other) for other in others}
    proc = Path("/proc")
    found = []
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            holds = any(os.readlink(fd) in names for fd in (entry / "fd").iterdir())
            if holds:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                found.append((int(entry.name), command or entry.name))
        except OSError:  # gone meanwhile, or another user's
            continue
    return sorted(found)


def _beside(path: Path, what: str) -> Path:
    """A temporary name in ``path``'s folder (so the final rename is atomic)."""
    return path.with_name(f".{path.name}.{what}-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _fsync(path: Path) -> None:
    with open(path, "rb+") as file:
        os.fsync(file.fileno())


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

