"""The lock that keeps a SQLite database's users and its restore apart.

A file beside the database (``newsletter.db.lock`` beside
``newsletter.db``) is locked with ``flock``: every process that opens the
database holds it shared for as long as it has the database open, and
``newsletter db restore`` holds it exclusive from before its copy until
after its swap. A restore therefore never begins while a process uses the
database, and no process opens the database while a restore runs: it is
refused at once instead of writing to the file about to be replaced.

The file stays (it is empty); removing it while a process holds it would
let a restore and that process miss each other.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from newsletter.core.errors import StoreError


def lock_file(database: Path) -> Path:
    """The lock file of the SQLite database file ``database``."""
    return database.with_name(f"{database.name}.lock")


class DatabaseLock:
    """A held lock on a database's lock file; :meth:`release` gives it up."""

    def __init__(self, fd: int):
        self._fd: int | None = fd

    def release(self) -> None:
        """Give the lock up (safe to call more than once)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases its flock
            self._fd = None

    # A database dropped without being closed lets go of its lock too, as
    # its engines let go of their connections.
    __del__ = release


def _take(database: Path, mode: int) -> DatabaseLock | None:
    """Lock ``database``'s lock file (created when missing) in ``mode``
    without waiting; return the lock, or None when another process holds
    it in a conflicting mode. Raises ``OSError`` when the file cannot be
    opened or created."""
    # Read-only is enough for flock, so a user who may only read the
    # database's folder can still take it once it exists.
    fd = os.open(lock_file(database), os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return DatabaseLock(fd)


def hold_shared(database: Path) -> DatabaseLock:
    """Take ``database``'s lock as one of its users, to hold while the
    database is open. Raises :class:`StoreError` when a restore holds it,
    and ``OSError`` when the lock file cannot be opened or created."""
    lock = _take(database, fcntl.LOCK_SH)
    if lock is None:
        raise StoreError(f"the database {database} is being restored from a backup (`newsletter db restore`); "
                         "run this again once the restore has finished")
    return lock


def hold_exclusive(database: Path) -> DatabaseLock | None:
    """Take ``database``'s lock for a restore; return None when another
    process holds it (it has the database open, or restores it). Raises
    ``OSError`` when the lock file cannot be opened or created."""
    return _take(database, fcntl.LOCK_EX)
