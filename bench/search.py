"""Benchmark: searching the paper archive of 100,000 papers, on SQLite and
on PostgreSQL, and storing one more day of 500 papers into it.

Run from anywhere: ``python bench/search.py [--papers 100000] [--queries 200]``
(``make bench``). PostgreSQL is measured when ``BENCH_POSTGRES_URL`` names a
scratch database (such as
``postgresql+psycopg://newsletter_test:newsletter_test@127.0.0.1:5432/newsletter_test``):
the newsletter's tables in it are dropped first. Without it, only SQLite is
measured (a scratch file in a temporary folder).

For each database it builds an archive (not timed against the targets): N
synthetic papers with realistic text (titles and abstracts made of the
example day's words and sentences, 1 to 8 authors from a list of names),
500 a day, one in ten carried again on a later day, written in bulk with
the search index kept by the database as the app keeps it (SQLite's
triggers, PostgreSQL's generated column). Then it runs the queries, the
same on both (drawn with a fixed seed): common and rare words, two and
three words, quoted phrases, author names, words no paper has, hostile
input, and no query (the latest papers), each a page of 20 results as
``/papers`` asks (ranking, snippets, days). Printed: p50, p95 and max per
database and per kind of query. Last, ``store_batch`` of a new day of 500
papers (what ``send`` and ``render`` do), timed three times (the day, then
the same day again, then a corrected one).

Targets (printed next to the figures, never asserted): a day of 500
papers stored in under 1 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

try:
    import newsletter  # noqa: F401
except ImportError:  # run with a Python that does not have the package installed
    sys.path.insert(0, str(ROOT))

from common import EXAMPLE, database_url  # noqa: E402
from sqlalchemy import create_engine, insert  # noqa: E402

from newsletter.papers.batches import load_batch  # noqa: E402
from newsletter.core.models import Batch, Paper  # noqa: E402
from newsletter.store import open_store  # noqa: E402
from newsletter.store.migrate import RELEASE_1_TABLES, VERSION_TABLE  # noqa: E402
from newsletter.store.schema import appearances_table, inbox_metadata, metadata, papers_table  # noqa: E402

PER_DAY = 500
FIRST_DAY = dt.date(2024, 1, 1)
CHUNK = 5_000  # rows a bulk insert writes at once
PER_PAGE = 20
FIRST_NAMES = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Claude",
               "Yann", "Fei-Fei", "Geoffrey", "Yoshua", "Daphne", "Andrew", "Jürgen", "Ilya", "Zhang", "Wei",
               "Priya", "Ahmed", "Olga", "Kenji", "Sofía", "Lucas", "Amara", "Chen", "Ines", "Mateo"]
LAST_NAMES = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "McCarthy", "Hamilton",
              "Shannon", "LeCun", "Li", "Hinton", "Bengio", "Koller", "Ng", "Schmidhuber", "Sutskever", "Wang",
              "Zhou", "Sharma", "Hassan", "Ivanova", "Tanaka", "García", "Silva", "Okafor", "Chen", "Müller", "Rossi"]
HOSTILE = ['"', "AND OR", "NEAR(", "*", "title:", '"unclosed phrase', "- NOT diffusion", "\x00", "😀 emoji"]
NO_MATCH = ["zyzzyva", "qwertyuiop", "xylophonist", "floccinaucinihilipilification"]


class Text:
    """Words and sentences of the example day, to make papers and queries of."""

    def __init__(self) -> None:
        day = load_batch(EXAMPLE, date=dt.date(2025, 3, 11))
        self.title_words = [w for p in day.papers for w in p.title.split()]
        self.sentences = [s.strip().rstrip(".") + "." for p in day.papers for s in p.abstract.split(". ")
                          if len(s) > 40]
        words = [w.strip(".,;:()\"'").lower() for s in self.sentences for w in s.split()]
        counts: dict[str, int] = {}
        for word in words:
            if word.isalpha() and len(word) > 3:
                counts[word] = counts.get(word, 0) + 1
        ranked = sorted(counts, key=counts.get, reverse=True)
        self.common = ranked[:60]
        self.rare = [w for w in ranked if counts[w] == 1][:400]

    def paper(self, rnd: random.Random, number: int) -> Paper:
        """A synthetic paper: a title of 5 to 12 of the day's title words,
        an abstract of 5 to 9 of its sentences, 1 to 8 authors."""
        return Paper(
            title=" ".join(rnd.sample(self.title_words, rnd.randint(5, 12))),
            abstract=" ".join(rnd.sample(self.sentences, rnd.randint(5, 9))),
            authors=tuple(f"{rnd.choice(FIRST_NAMES)} {rnd.choice(LAST_NAMES)}" for _ in range(rnd.randint(1, 8))),
            arxiv_id=f"{2401 + number // 99_999}.{number % 99_999 + 1:05d}",  # unique, of arXiv's form
            upvotes=rnd.randint(0, 300),
        )

    def queries(self, rnd: random.Random, count: int) -> list[tuple[str, str]]:
        """``count`` queries as ``(kind, query)``, in a shuffled order."""
        def phrase() -> str:
            words = rnd.choice(self.sentences).rstrip(".").split()
            start = rnd.randrange(max(1, len(words) - 3))
            return '"' + " ".join(words[start:start + rnd.randint(2, 3)]) + '"'

        makers = {
            "common word": lambda: rnd.choice(self.common),
            "rare word": lambda: rnd.choice(self.rare),
            "two words": lambda: " ".join(rnd.sample(self.common, 1) + rnd.sample(self.rare, 1)),
            "three words": lambda: " ".join(rnd.sample(self.title_words, 3)),
            "phrase": phrase,
            "author": lambda: f"{rnd.choice(FIRST_NAMES)} {rnd.choice(LAST_NAMES)}",
            "no match": lambda: rnd.choice(NO_MATCH),
            "hostile": lambda: rnd.choice(HOSTILE),
            "no query": lambda: "",
        }
        kinds = list(makers)
        chosen = [(kinds[n % len(kinds)], makers[kinds[n % len(kinds)]]()) for n in range(count)]
        rnd.shuffle(chosen)
        return chosen


def reset_postgres(url: str) -> None:
    """Drop the newsletter's tables from the scratch PostgreSQL database."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for name in sorted({*metadata.tables, *inbox_metadata.tables, *RELEASE_1_TABLES, VERSION_TABLE}):
                conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}" CASCADE')
    finally:
        engine.dispose()


def build(store, text: Text, papers: int, seed: int = 1) -> tuple[float, list[Paper]]:
    """Fill ``store`` with ``papers`` papers, :data:`PER_DAY` a day (one in
    ten carried again on a later day), in bulk; return the seconds it took
    and the papers, in order."""
    rnd = random.Random(seed)
    started = time.perf_counter()
    made = [text.paper(rnd, n) for n in range(papers)]
    stamp = dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)
    with store.engine.begin() as conn:
        for start in range(0, papers, CHUNK):
            conn.execute(insert(papers_table), [
                dict(key=p.arxiv_id, arxiv_id=p.arxiv_id, title=p.title, abstract=p.abstract,
                     authors=json.dumps(list(p.authors), ensure_ascii=False), url=f"https://arxiv.org/abs/{p.arxiv_id}",
                     keywords="[]", categories="[]", updated_at=stamp)
                for p in made[start:start + CHUNK]])
        rows = []
        for day_number, start in enumerate(range(0, papers, PER_DAY)):
            day = (FIRST_DAY + dt.timedelta(days=day_number)).isoformat()
            carried = made[start:start + PER_DAY]
            again = made[max(0, start - 3 * PER_DAY):start][::10][:PER_DAY // 10]  # from a few days before
            rows += [dict(date=day, rank=rank, paper_key=p.arxiv_id, upvotes=p.upvotes)
                     for rank, p in enumerate(carried + again)]
            if len(rows) >= CHUNK:
                conn.execute(insert(appearances_table), rows)
                rows = []
        if rows:
            conn.execute(insert(appearances_table), rows)
    return time.perf_counter() - started, made


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(name: str, url: str, args, text: Text) -> dict:
    """Build the archive at ``url``, time the queries and storing a day."""
    store = open_store(url)
    try:
        built, made = build(store, text, args.papers)
        print(f"{name}: {args.papers:,} papers stored and indexed in {built:.0f} s", flush=True)
        queries = text.queries(random.Random(2), args.queries)
        for _kind, query in queries[:10]:  # warm-up: the first queries read the index from disk
            store.search_papers(query, per_page=PER_PAGE)
        times: dict[str, list[float]] = {}
        found: dict[str, list[int]] = {}
        for kind, query in queries:
            began = time.perf_counter()
            page = store.search_papers(query, per_page=PER_PAGE)
            times.setdefault(kind, []).append((time.perf_counter() - began) * 1000)
            found.setdefault(kind, []).append(page.total)
        rnd = random.Random(3)
        last = FIRST_DAY + dt.timedelta(days=-(-args.papers // PER_DAY))
        day = Batch(last, tuple(text.paper(rnd, args.papers + n) for n in range(PER_DAY)), source="bench")
        corrected = Batch(last, day.papers[:PER_DAY - 20] + tuple(made[:20]), source="bench")
        stored = []
        for batch in (day, day, corrected):
            began = time.perf_counter()
            store.store_batch(batch)
            stored.append(time.perf_counter() - began)
        words = [w for w in day.papers[0].title.split() if w.isalpha() and len(w) > 4][:3]
        assert not words or store.search_papers(" ".join(words)).total >= 1  # the new day is searchable at once
        return {"times": times, "found": found, "stored": stored}
    finally:
        store.close()


def report(name: str, result: dict) -> None:
    every = [t for values in result["times"].values() for t in values]
    print(f"\n{name}: {len(every)} queries, a page of {PER_PAGE} each: p50 {percentile(every, 0.5):.1f} ms, "
          f"p95 {percentile(every, 0.95):.1f} ms, max {max(every):.1f} ms")
    print(f"  {'kind':<12} {'queries':>7} {'p50':>9} {'p95':>9} {'max':>9} {'papers found (median)':>22}")
    for kind, values in result["times"].items():
        print(f"  {kind:<12} {len(values):>7} {percentile(values, 0.5):>6.1f} ms {percentile(values, 0.95):>6.1f} ms "
              f"{max(values):>6.1f} ms {statistics.median(result['found'][kind]):>22,.0f}")
    new, again, corrected = result["stored"]
    print(f"  store_batch, a day of {PER_DAY} new papers: {new * 1000:.0f} ms "
          f"(target < 1 s: {'met' if new < 1 else 'MISSED'}); the same day again: {again * 1000:.0f} ms; "
          f"corrected (20 papers replaced): {corrected * 1000:.0f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", type=int, default=100_000, help="papers in the archive")
    parser.add_argument("--queries", type=int, default=200, help="queries timed on each database")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (the SQLite database)")
    args = parser.parse_args(argv)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its progress lines are not figures
    text = Text()
    postgres = os.environ.get("BENCH_POSTGRES_URL")
    print(f"Search benchmark: {args.papers:,} papers, {args.queries} queries, Python {sys.version.split()[0]}\n",
          flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-search-"))
    results = {}
    try:
        results["SQLite"] = measure("SQLite", database_url(workdir / "search.db"), args, text)
        if postgres:
            reset_postgres(postgres)
            try:
                results["PostgreSQL"] = measure("PostgreSQL", postgres, args, text)
            finally:
                reset_postgres(postgres)
    finally:
        if args.keep:
            print(f"(kept {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for name, result in results.items():
        report(name, result)
    if not postgres:
        print("\nPostgreSQL: not measured (set BENCH_POSTGRES_URL to a scratch database; "
              "its newsletter tables are dropped)")


if __name__ == "__main__":
    main()
