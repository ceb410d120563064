"""Benchmark: storing a day's papers, and building the weekly edition.

Run from anywhere: ``python bench/weekly.py [--runs N]`` (``make bench``).
On SQLite (a file in a temporary folder) and on PostgreSQL when
``BENCH_POSTGRES_URL`` names an empty database it may fill,
prints the median, min and max over N runs of:

* storing a day of 500 papers (``Store.store_batch``): the first time (every
  paper new), and the same day again (nothing changes: the idempotent path);
* building the weekly edition of seven stored days of 86 papers each (6 of
  them on the day before's list too: 566 papers in all): reading the week's
  papers (``editions.edition_batch``), then rendering it as readers get it
  (``render_for_readers``: 👍/👎 links, room for picks, under Gmail's clip).

Targets: storing 500 papers under 1 s; the weekly edition built (read and
rendered) from 7 stored days under 1 s. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import DATE, EXAMPLE, database_url

from newsletter.papers.batches import load_batch
from newsletter.issue.render import render_for_readers
from newsletter.core.config import Settings
from newsletter.issue.editions import edition_batch
from newsletter.core.models import Batch, Edition, EditionKind
from newsletter.issue.render import encoded_bytes
from newsletter.store import open_store
from newsletter.readers.tokens import Signer

SECRET = "dxtEQZMdnn6B4mWzyuJiERci05PjOKsu7h92_qLYz9M"
DAY_PAPERS = 500
WEEK_PAPERS = 86  # per day
CARRIED = 6  # papers of a day also on the next day's list


def day_of(template: Batch, day: dt.date, first: int, count: int) -> Batch:
    """A day of ``count`` papers numbered from ``first``, made from the
    example day's texts."""
    papers = []
    for n in range(first, first + count):
        model = template.papers[n % len(template.papers)]
        papers.append(dataclasses.replace(model, title=f"{model.title} ({n})", arxiv_id=f"2503.{20000 + n}",
                                          url=f"https://arxiv.org/abs/2503.{20000 + n}", upvotes=(7 * n) % 300))
    return Batch(date=day, papers=tuple(papers), source="synthetic")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:9.1f} ms"


def row(label: str, times: list[float]) -> str:
    return f"  {label:<52}{ms(statistics.median(times))}{ms(min(times))}{ms(max(times))}"


def measure(url: str, runs: int, example: Batch) -> None:
    settings = Settings(secret_key=SECRET)
    signer = Signer(SECRET)
    store = open_store(url)
    try:
        first, again = [], []
        for run in range(runs):
            day = day_of(example, DATE + dt.timedelta(days=100 + run), run * DAY_PAPERS, DAY_PAPERS)
            start = time.perf_counter()
            store.store_batch(day)
            first.append(time.perf_counter() - start)
            start = time.perf_counter()
            store.store_batch(day)
            again.append(time.perf_counter() - start)
        week = [DATE - dt.timedelta(days=6 - i) for i in range(7)]
        for i, day in enumerate(week):
            store.store_batch(day_of(example, day, 1_000_000 + i * (WEEK_PAPERS - CARRIED), WEEK_PAPERS))
        edition = Edition(DATE, EditionKind.WEEKLY)
        read, built = [], []
        for _ in range(runs + 1):  # the first is a warm-up
            start = time.perf_counter()
            papers = edition_batch(store, edition)
            middle = time.perf_counter()
            issue = render_for_readers(papers, settings, signer)
            end = time.perf_counter()
            read.append(middle - start)
            built.append(end - start)
        read, built = read[1:], built[1:]
    finally:
        store.close()
    print(row(f"store a day of {DAY_PAPERS} papers (all new)", first))
    print(row("store the same day again (no change)", again))
    print(row(f"read the week: {issue.paper_count} papers of 7 days", read))
    print(row("build the weekly edition (read + render for readers)", built))
    print(f"    {issue.subject!r}: {issue.card_count} cards, {issue.listed_count} listed, {issue.more_count} web-only; "
          f"HTML {encoded_bytes(issue.html):,} B as sent")
    print(f"    targets: store 500 papers < 1 s -> {'met' if statistics.median(first) < 1 else 'MISSED'}; "
          f"weekly edition < 1 s -> {'met' if statistics.median(built) < 1 else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measure (default: 5)")
    args = parser.parse_args(argv)
    example = load_batch(EXAMPLE, date=DATE)
    print(f"Weekly edition benchmark, {args.runs} runs each; Python {sys.version.split()[0]}")
    print(f"  {'':<52}{'median':>12}{'min':>12}{'max':>12}")
    with tempfile.TemporaryDirectory(prefix="bench-weekly-") as folder:
        print("SQLite")
        measure(database_url(Path(folder) / "weekly.db"), args.runs, example)
    if os.environ.get("BENCH_POSTGRES_URL"):
        print("PostgreSQL")
        measure(os.environ["BENCH_POSTGRES_URL"], args.runs, example)
    return 0


if __name__ == "__main__":
    sys.exit(main())
