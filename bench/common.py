"""What the benchmarks share: scratch SQLite databases of many readers, and
a process's peak memory. Imports only the store, so that a measured
process that imports this carries nothing it would not carry anyway."""

from __future__ import annotations

import resource
import secrets
import sqlite3
import time
from pathlib import Path

from newsletter.store import open_store


def database_url(path: Path) -> str:
    return f"sqlite:///{path}"


def create_subscribers(path: Path, count: int) -> float:
    """A database at ``path`` with ``count`` active subscribers, inserted in
    one transaction with executemany (every third one has a name). The
    random refs are sorted, so every index grows at its end. Returns the
    seconds it took."""
    started = time.perf_counter()
    open_store(database_url(path)).close()  # the schema, as the app makes it
    stamp = "2025-03-01 00:00:00.000000"  # SQLAlchemy's DateTime format on SQLite
    refs = sorted(secrets.token_urlsafe(16) for _ in range(count))
    rows = (
        (refs[i], f"reader{i:07d}@example.org", f"reader{i:07d}@example.org",
         None if i % 3 else f"Reader {i}", "active", "bench", stamp, stamp)
        for i in range(count)
    )
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA cache_size=-200000")  # 200 MB
        conn.execute("PRAGMA synchronous=OFF")  # a scratch database
        with conn:
            conn.executemany(
                "INSERT INTO subscribers (ref, email, email_key, name, status, source, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    finally:
        conn.close()
    return time.perf_counter() - started


def peak_rss_mb() -> float:
    """This process's peak resident set size. VmHWM from /proc where there is
    one: ru_maxrss would also count the parent's pages (Linux keeps the
    high-water mark across fork and exec, and the parent here is large)."""
    try:
        for row in Path("/proc/self/status").read_text().splitlines():
            if row.startswith("VmHWM:"):
                return int(row.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
