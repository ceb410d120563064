"""Benchmark: ranking every reader's personal picks for one edition, at
100,000 and 1,000,000 readers, on SQLite.

Run from anywhere: ``python bench/picks.py [--readers 100000,1000000]``
(``make bench``). For each size it builds a scratch database (not timed
against the target): the readers, the example day's 85 papers and 300
papers of ten earlier days, and one profile per reader like a real list's
(``common.create_readers``: 1 to 5 interest phrases, topics of the day and
others; a followed author for a fifth of them; 20 votes; 5 picks). It
times fitting one reader's model of their votes (below), then gives every
reader a stored model (:func:`give_models`), as a list whose readers all
voted has once the web app's worker fitted them.

Then, in a fresh process (so the figures are the ranking's alone), it does
what ``newsletter send`` does for picks: load the ranking's libraries and
model, index the edition (``picking.EditionPicks``), and rank every reader,
read from the ledger's pager as a send reads them, :data:`RANK_PAGE` at a
time. Printed: the start-up (imports, WordLlama's weights), the index, the
ranking, per reader, picks per reader (medians of ``--runs`` processes for
lists up to 200,000, one otherwise), and the peak RSS (VmHWM) next to the
floor (the same process before ranking anyone).

Then the 30-day rule with a month behind it (``--history-readers``, 20,000
by default; 0 skips it): the same readers ranked with no earlier picks,
with a month of them (:func:`give_history`), and with a month where
yesterday's edition had some of today's papers, in alternating fresh
processes; the ranking per reader of each is printed.

Fitting one reader's model of their votes is timed in a fresh process too
(``reader_model.fit_reader``: 14 👍 and 6 👎 on earlier days, reading
the papers, embedding them and fitting): the median over readers.

Targets (printed next to the figures, never asserted): 100,000 readers
ranked in at most 5 s; peak memory under 250 MB and flat from 100,000 to
1,000,000 readers; fitting one reader's model at most 50 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

try:
    import newsletter  # noqa: F401
except ImportError:  # run with a Python that does not have the package installed
    sys.path.insert(0, str(ROOT))

from common import (DATE, EARLIER_DAYS, EARLIER_PAPERS, EXAMPLE, create_readers, database_url,  # noqa: E402
                    peak_rss_mb)

from newsletter.core.models import paper_key  # noqa: E402

from newsletter.papers.batches import load_batch  # noqa: E402
from newsletter.sending.dispatch import RANK_PAGE  # noqa: E402
from newsletter.store import open_store  # noqa: E402

# A month of earlier editions (the 30-day rule's window): see give_history.
HISTORY_DAYS = 30
# Of the example day's papers, how many were on the day before too, in the
# history with repeats.
REPEATED = 10

# --------------------------------------------------------------------------
# the measured process


def probe(db: Path) -> None:
    """In a fresh process: rank every reader as a send does. Prints one
    JSON line."""
    started = time.perf_counter()
    import sklearn.feature_extraction.text  # noqa: F401  (the ranking's own imports, timed here)

    from newsletter.picks import ranking
    from newsletter.picks.picking import EditionPicks
    from newsletter.sending.ratelimit import chunked
    from newsletter.store import Ledger

    ranking._embedder()
    start_up = time.perf_counter() - started
    batch = load_batch(EXAMPLE, date=DATE)
    store = open_store(database_url(db))
    began = time.perf_counter()
    edition = EditionPicks(store, DATE.isoformat(), DATE, batch.papers)
    edition.index  # noqa: B018 -- built here (else by the first reader who needs it), to be timed apart
    index = time.perf_counter() - began
    gc.freeze()  # as `newsletter send` does before sending
    floor = peak_rss_mb()
    readers = picks = without = 0
    rank = 0.0
    began = time.perf_counter()
    for page in chunked(Ledger(store, DATE).iter_unsent(), RANK_PAGE):
        ranking_began = time.perf_counter()
        found = edition.for_readers(s.id for s in page)
        rank += time.perf_counter() - ranking_began
        for reader in found.values():
            readers += 1
            picks += len(reader.picks)
            without += not reader.picks
    listing = time.perf_counter() - began - rank
    store.close()
    print(json.dumps({"readers": readers, "start_up": start_up, "index": index, "rank": rank, "listing": listing,
                      "picks": picks, "without": without, "floor_mb": floor, "peak_mb": peak_rss_mb()}))


def probe_fit(db: Path, readers: int = 30) -> None:
    """In a fresh process: fit the models of ``readers`` readers (the first
    after a warm-up: WordLlama's weights and scikit-learn loaded). Prints
    one JSON line: the median milliseconds."""
    from newsletter.picks import reader_model

    store = open_store(database_url(db))
    reader_model.fit_reader(store, store.profile(1))
    times = [reader_model.fit_reader(store, store.profile(i)).ms for i in range(2, readers + 2)]
    store.close()
    print(json.dumps({"fit_ms": statistics.median(times), "fits": len(times)}))


def give_models(db: Path) -> int:
    """Give every reader a stored model of votes, as a list whose readers
    all voted has once the worker fitted them: one reader's model, fitted
    as the worker fits it, copied (the ranking reads and applies one per
    reader, at a cost that does not depend on its weights). Returns how
    many readers have one."""
    from newsletter.picks import reader_model
    from newsletter.store.profiles import mark_model_due

    store = open_store(database_url(db))
    try:  # reader 1's votes "changed", and the worker's fit of due models
        with store.engine.begin() as conn:
            mark_model_due(conn, 1, store.clock())
        reader_model.fit_due(store, 1)
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        features, weights, fitted = conn.execute(
            "SELECT features, weights, fitted_at FROM reader_models WHERE weights IS NOT NULL LIMIT 1").fetchone()
        conn.execute("INSERT OR REPLACE INTO reader_models (subscriber_id, due, features, weights, changed_at, "
                     "fitted_at) SELECT id, 0, ?, ?, ?, ? FROM subscribers", (features, weights, fitted, fitted))
        return conn.execute("SELECT count(*) FROM reader_models WHERE weights IS NOT NULL").fetchone()[0]


def give_history(db: Path, days: int = HISTORY_DAYS, repeats: int = 0) -> int:
    """Give every reader a month of earlier daily editions, as a list that
    has been sending with picks has: for each of the ``days`` days before
    the example day, a "sent" ledger row and 5 picks per reader, drawn from
    the earlier days' papers, with each edition's picked papers. With
    ``repeats``, that many of the example day's papers were on the day
    before too (trending for two days), and yesterday's edition picked one
    of them for every third reader. Returns how many picks were written."""
    rnd = random.Random(days * 1000 + repeats)
    earlier = [f"2503.{d:02d}{k:03d}" for d in range(EARLIER_DAYS) for k in range(EARLIER_PAPERS)]
    today = [paper_key(p) for p in load_batch(EXAMPLE, date=DATE).papers][:repeats]
    stamp = "2025-03-01 06:00:00.000000"
    written = 0
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("PRAGMA synchronous=OFF")  # a scratch database
        ids = [row[0] for row in conn.execute("SELECT id FROM subscribers ORDER BY id")]
        for back in range(1, days + 1):
            edition = (DATE - dt.timedelta(days=back)).isoformat()
            rows, picked = [], set()
            for reader in ids:
                keys = rnd.sample(earlier, 5)
                if back == 1 and today and reader % 3 == 0:
                    keys[0] = rnd.choice(today)
                picked.update(keys)
                rows += [(edition, reader, n, key, n, 0.5, "interest", "bench") for n, key in enumerate(keys)]
            conn.executemany("INSERT INTO deliveries (issue_date, subscriber_id, status, message_id, updated_at) "
                             "VALUES (?, ?, 'sent', 'bench', ?)", ((edition, reader, stamp) for reader in ids))
            conn.executemany("INSERT INTO picks (edition, subscriber_id, position, paper_key, paper_rank, score, "
                             "why_kind, why_subject) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.executemany("INSERT INTO picked_papers (paper_key, edition) VALUES (?, ?)",
                             ((key, edition) for key in sorted(picked)))
            written += len(rows)
    return written


def run_probe(db: Path) -> dict:
    answer = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--probe", str(db)],
                            capture_output=True, text=True, check=True)
    return json.loads(answer.stdout.strip().splitlines()[-1])


def measure_history(workdir: Path, readers: int, runs: int) -> dict[str, dict]:
    """Rank ``readers`` readers (with models of votes) three ways, in
    alternating fresh processes, ``runs`` times each: with no earlier
    picks, with a month of them (every day's papers new), and with a month
    where yesterday's edition had :data:`REPEATED` of today's papers.
    Returns each way's median probe."""
    base = workdir / "history-none.db"
    create_readers(base, readers)
    give_models(base)
    ways = {"none": base}
    for name, repeats in (("month", 0), ("repeats", REPEATED)):
        ways[name] = workdir / f"history-{name}.db"
        shutil.copyfile(base, ways[name])
        give_history(ways[name], repeats=repeats)
    print(f"{readers:,} readers with a month of earlier picks ({HISTORY_DAYS} editions, 5 picks each)", flush=True)
    probes: dict[str, list[dict]] = {name: [] for name in ways}
    for _ in range(runs):
        for name, db in ways.items():
            probes[name].append(run_probe(db))
    return {name: {**found[0], "rank": statistics.median(p["rank"] for p in found), "runs": len(found)}
            for name, found in probes.items()}


def print_history(readers: int, history: dict[str, dict]) -> None:
    """Print the ranking's cost per reader with and without earlier picks."""
    print(f"\nThe 30-day rule with a month behind it: {readers:,} readers ranked, medians of "
          f"{history['none']['runs']} alternating runs")
    labels = {"none": "no earlier picks (a list's first day)",
              "month": f"{HISTORY_DAYS} days of picks, every day's papers new",
              "repeats": f"{HISTORY_DAYS} days, {REPEATED} of today's papers on yesterday's list"}
    for name, label in labels.items():
        r = history[name]
        assert r["readers"] == readers, r
        print(f"   {label:55} {r['rank'] / readers * 1e6:6.1f} us per reader, {r['picks'] / readers:.2f} picks")


# --------------------------------------------------------------------------
# report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", default="100000,1000000", help="comma-separated list sizes")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of lists up to 200,000 (the median is shown)")
    parser.add_argument("--history-readers", type=int, default=20_000,
                        help="readers of the list ranked with a month of earlier picks behind it (0: not measured)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (databases)")
    parser.add_argument("--probe", metavar="DB", help=argparse.SUPPRESS)
    parser.add_argument("--probe-fit", metavar="DB", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        probe(Path(args.probe))
        return
    if args.probe_fit:
        probe_fit(Path(args.probe_fit))
        return
    sizes = [int(s) for s in args.readers.split(",") if s.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="bench-picks-"))
    rows = []
    try:
        print(f"Picks benchmark: the example day's 85 papers, SQLite, Python {sys.version.split()[0]}, "
              f"ranked {RANK_PAGE} readers at a time\n", flush=True)
        for size in sizes:
            db = workdir / f"picks-{size}.db"
            built = create_readers(db, size)
            print(f"{size:,} readers with profiles in {built:.0f} s", flush=True)
            # Fitting some readers' models is timed; then every reader gets one.
            answer = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--probe-fit", str(db)],
                                    capture_output=True, text=True, check=True)
            if not rows:  # reported once: it does not depend on the list's size
                fitting = json.loads(answer.stdout.strip().splitlines()[-1])
            print(f"{give_models(db):,} readers with a stored model of votes", flush=True)
            # Timed several times where that is quick; the median is printed.
            probes = [run_probe(db) for _ in range(args.runs if size <= 200_000 else 1)]
            middle = {key: statistics.median(p[key] for p in probes)
                      for key in ("start_up", "index", "rank", "listing")}
            rows.append((size, {**probes[0], **middle, "runs": len(probes),
                                "peak_mb": max(p["peak_mb"] for p in probes)}))
            if not args.keep:
                for suffix in ("", "-wal", "-shm"):
                    Path(str(db) + suffix).unlink(missing_ok=True)
        history = measure_history(workdir, args.history_readers, args.runs) if args.history_readers else None
    finally:
        if args.keep:
            print(f"(kept {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    head = ("readers", "runs", "start-up", "index", "rank", "per reader", "picks/reader", "no pick", "list read",
            "floor", "peak")
    widths = (10, 5, 9, 7, 8, 11, 13, 8, 10, 9, 9)
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    for size, r in rows:
        assert r["readers"] == size, r
        cells = (f"{size:,}", r["runs"], f"{r['start_up']:.2f} s", f"{r['index']:.2f} s", f"{r['rank']:.2f} s",
                 f"{r['rank'] / size * 1e6:.1f} us", f"{r['picks'] / size:.2f}", f"{r['without'] / size:.1%}",
                 f"{r['listing']:.2f} s",
                 f"{r['floor_mb']:.0f} MB", f"{r['peak_mb']:.0f} MB")
        print("  ".join(str(c).rjust(w) for c, w in zip(cells, widths)))
    print("   start-up: importing scikit-learn and loading WordLlama's weights, once per send; index: the "
          "edition's TF-IDF and embeddings; rank: profiles, votes and recent picks read from the database "
          "and every reader ranked (medians of the runs); list read: reading the readers themselves from "
          "the ledger's pager, which a send does with or without picks; floor: peak RSS before ranking anyone")
    for size, r in rows:
        if size == 100_000:
            total = r["start_up"] + r["index"] + r["rank"]
            print(f"   target: 100,000 readers in <= 5 s -> {'met' if total <= 5 else 'MISSED'} "
                  f"({total:.2f} s with start-up and index)")
    if rows:
        print(f"   fitting one reader's model of votes (14 liked, 6 disliked, 30 shown): median "
              f"{fitting['fit_ms']:.0f} ms over {fitting['fits']} readers -> target <= 50 ms "
              f"{'met' if fitting['fit_ms'] <= 50 else 'MISSED'}")
    if history:
        print_history(args.history_readers, history)
    peaks = [r["peak_mb"] for _size, r in rows]
    flat = max(peaks) - min(peaks) < 10
    print(f"   target: peak < 250 MB and flat -> {'met' if max(peaks) < 250 and flat else 'MISSED'} "
          f"(peak {max(peaks):.0f} MB; spread {max(peaks) - min(peaks):.1f} MB)")


if __name__ == "__main__":
    main()
