"""What the benchmarks share: scratch SQLite databases of many readers (with
profiles for personal picks), a scratch PostgreSQL database reset and
filled with a SQLite database's rows, and a process's peak memory. Imports
only the store and the batch reader (psycopg only when PostgreSQL is used),
so that a measured process that imports this carries nothing it would not
carry anyway."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import random
import resource
import secrets
import sqlite3
import time
from pathlib import Path
from collections.abc import Iterable

from newsletter.papers.batches import load_batch
from newsletter.core.models import Batch, Paper
from newsletter.store import open_store
from newsletter.store.migrate import VERSION_TABLE
from newsletter.store.schema import inbox_metadata, meta_table, metadata

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "daily-papers-mar-11.txt"
DATE = dt.date(2025, 3, 11)


# Every table the newsletter makes, as its schema declares them.
TABLES = tuple(sorted({*metadata.tables, *inbox_metadata.tables, VERSION_TABLE}))


def database_url(path: Path) -> str:
    """The SQLAlchemy URL of the SQLite database at ``path``."""
    return f"sqlite:///{path}"


# --------------------------------------------------------------------------
# PostgreSQL: a scratch database, reset and filled from a SQLite one


def postgres_conninfo(url: str) -> str:
    """The SQLAlchemy URL ``url`` (``postgresql+psycopg://...``) as psycopg
    takes it (``postgresql://...``, the password kept)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def reset_postgres(url: str) -> None:
    """Drop every newsletter table of the PostgreSQL database at ``url``
    (never point it at a real one): ``open_store`` makes them again."""
    import psycopg

    with psycopg.connect(postgres_conninfo(url), autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')


def execute_postgres(url: str, *statements: str) -> None:
    """Run ``statements`` in one transaction on the PostgreSQL database at ``url``."""
    import psycopg

    with psycopg.connect(postgres_conninfo(url)) as conn:
        for statement in statements:
            conn.execute(statement)


def copy_to_postgres(path: Path, url: str, tables: Iterable[str] | None = None, replace: bool = False) -> dict[str, int]:
    """Copy the rows of ``tables`` (by default every table of the schema but
    ``newsletter_meta``, which ``open_store`` writes; the inbox, a file of
    its own with SQLite, is not copied) from the SQLite database at
    ``path`` into the PostgreSQL database at ``url``, whose schema
    ``open_store`` made, in one transaction; with ``replace``, the
    PostgreSQL tables are emptied first (TRUNCATE). Tables are copied parents
    first with ``COPY ... FROM STDIN``, each column by name (booleans as
    SQLite's 0/1 made bools; times as SQLite's text, read as UTC); empty
    ones are skipped. Each copied table's id sequence is set past its
    rows, so later inserts work, and the copied tables are analyzed.
    Returns the rows copied, by table."""
    import psycopg
    from sqlalchemy import Boolean

    wanted = None if tables is None else set(tables)
    order = [table for table in metadata.sorted_tables
             if (table.name in wanted if wanted is not None else table is not meta_table)]
    copied: dict[str, int] = {}
    source = sqlite3.connect(path)
    try:
        with psycopg.connect(postgres_conninfo(url)) as conn:
            conn.execute("SET TIME ZONE 'UTC'")  # SQLite's times are UTC, without a zone
            if replace and order:
                conn.execute("TRUNCATE " + ", ".join(f'"{table.name}"' for table in order))
            for table in order:
                names = [column.name for column in table.columns]
                booleans = [isinstance(column.type, Boolean) for column in table.columns]
                has_booleans = any(booleans)
                listed = ", ".join(f'"{name}"' for name in names)
                rows = source.execute(f'SELECT {listed} FROM "{table.name}"')
                first = rows.fetchone()
                if first is None:
                    continue
                count = 0
                with conn.cursor().copy(f'COPY "{table.name}" ({listed}) FROM STDIN') as copy:
                    for row in itertools.chain((first,), rows):
                        if has_booleans:
                            row = tuple(v if v is None or not boolean else bool(v) for v, boolean in zip(row, booleans))
                        copy.write_row(row)
                        count += 1
                copied[table.name] = count
                if "id" in names:
                    conn.execute(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                 f'(SELECT max(id) FROM "{table.name}"))')
            conn.commit()
            conn.autocommit = True
            for table in order:
                conn.execute(f'ANALYZE "{table.name}"')
    finally:
        source.close()
    return copied


def create_subscribers(path: Path, count: int) -> float:
    """A database at ``path`` with ``count`` active subscribers, inserted in
    one transaction with executemany (every third one has a name). The
    random refs are sorted, so every index grows at its end. Returns the
    seconds it took."""
    started = time.perf_counter()
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its progress lines are not figures
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


# Half are topics of the example day (the evaluation set's), half are not.
PHRASES = [
    "machine unlearning", "concept erasure", "open-vocabulary detection", "concept bottleneck models",
    "contrastive learning", "neural architecture search", "continual learning", "Kolmogorov-Arnold networks",
    "medical AI", "clinical decision support", "multi-concept personalization", "text-to-image customization",
    "interpretability", "neurosymbolic AI", "vision-language models", "self-supervised learning",
    "speech recognition", "protein structure prediction", "graph neural networks", "reinforcement learning",
    "robot manipulation", "time series forecasting", "federated learning", "code generation",
    "mixture of experts", "quantization", "recommender systems", "weather forecasting",
    "autonomous driving", "music generation", "tabular data", "differential privacy",
]
EARLIER_DAYS = 10
EARLIER_PAPERS = 30  # per day
VOTES = 20
LIKED = 14

def earlier_papers(batch: Batch, rnd: random.Random) -> list[Batch]:
    """Ten earlier days of papers to vote on, their text made of the example
    day's sentences (the ranking's cost does not depend on what they say)."""
    sentences = [s.strip() for p in batch.papers for s in p.abstract.split(". ") if len(s) > 40]
    days = []
    for d in range(EARLIER_DAYS):
        day = DATE - dt.timedelta(days=EARLIER_DAYS - d)
        papers = tuple(
            Paper(title=" ".join(rnd.sample(sentences, 1)[0].split()[:10]),
                  abstract=". ".join(rnd.sample(sentences, 6)),
                  authors=(f"Author {d}-{k}",), arxiv_id=f"2503.{d:02d}{k:03d}", upvotes=rnd.randint(0, 40))
            for k in range(EARLIER_PAPERS)
        )
        days.append(Batch(day, papers, source="bench"))
    return days


def create_readers(path: Path, count: int, picks: int = 5, seed: int = 1) -> float:
    """A database at ``path`` with ``count`` readers as
    :func:`create_subscribers` makes them, the example day's papers and ten
    earlier days', and one profile per reader like a real list's: 1 to 5
    interest phrases drawn from :data:`PHRASES`, one followed author for a
    fifth of them (the example day's file names no authors: a lookup that
    never matches), 20 votes (14 👍, 6 👎) on earlier papers, ``picks``
    picks wanted. Returns the seconds it took."""
    started = time.perf_counter()
    rnd = random.Random(seed)
    create_subscribers(path, count)
    batch = load_batch(EXAMPLE, date=DATE)
    store = open_store(database_url(path))
    try:
        for day in (*earlier_papers(batch, rnd), batch):
            store.store_batch(day)
    finally:
        store.close()
    voted_on = [f"2503.{d:02d}{k:03d}" for d in range(EARLIER_DAYS) for k in range(EARLIER_PAPERS)]
    stamp = "2025-03-10 00:00:00.000000"

    def profiles():
        for subscriber_id in range(1, count + 1):
            votes = rnd.sample(voted_on, VOTES)
            lists = {"interests": rnd.sample(PHRASES, rnd.randint(1, 5)), "liked": votes[:LIKED],
                     "disliked": votes[LIKED:]}
            if subscriber_id % 5 == 0:
                lists["authors"] = [f"Author {subscriber_id}"]
            yield subscriber_id, json.dumps(lists, separators=(",", ":")), picks, stamp

    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA synchronous=OFF")  # a scratch database
        with conn:
            conn.executemany("INSERT INTO profiles (subscriber_id, lists, picks, updated_at) VALUES (?, ?, ?, ?)",
                             profiles())
    finally:
        conn.close()
    return time.perf_counter() - started
