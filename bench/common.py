"""What the benchmarks share: scratch SQLite databases of many readers (with
profiles for personal picks), and a process's peak memory. Imports only
the store and the batch reader, so that a measured process that imports
this carries nothing it would not carry anyway."""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import resource
import secrets
import sqlite3
import time
from pathlib import Path

from newsletter.papers.batches import load_batch
from newsletter.core.models import Batch, Paper
from newsletter.store import open_store

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "daily-papers-mar-11.txt"
DATE = dt.date(2025, 3, 11)


def database_url(path: Path) -> str:
    return f"sqlite:///{path}"


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
