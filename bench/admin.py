"""Benchmark: the dashboard's pages on a large list, on SQLite and PostgreSQL.

Run from anywhere: ``python bench/admin.py [--readers 1000000] [--days 365]
[--ledger-rows 20000] [--runs 20] [--postgres-url URL]``. A smoke test:
``python bench/admin.py --readers 20000 --days 30 --ledger-rows 500 --runs 3``.

For each database it builds (not timed against the targets) a list of
``--readers`` subscribers who joined over the last 400 days (90% active, 6%
unsubscribed, 3% bounced, 1% complained; a tenth weekly; a third with a
name; sources cli, sign-up and two imports), each with their history, and
``--days`` daily editions, one a day up to today, all finished: the newest
sent to every active reader, the others to ``--ledger-rows`` readers each
(the dashboard counts an edition's ledger once, when its send is over, and
keeps the totals: the first view after a send pays for it, measured apart
as "cold totals"), with 1% permanent bounces and 0.05% complaints.

Then, through the web app (Flask's test client, a logged-in operator), it
times each page ``--runs`` times after one warm-up and prints the median
and the 95th percentile: the overview over 30, 90 and 365 days, the sends,
the subscribers' list (no filter, a rare status, a rare source, weekly
readers, an address's start, a name's start, a page deep in the list) and
readers' pages. Nothing is asserted: the figures are for people.

PostgreSQL: ``--postgres-url`` (or ``BENCH_POSTGRES_URL``) names a database
whose newsletter tables are DROPPED and rebuilt: never point it at a real
one. Without one, only SQLite is measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import random
import re
import secrets
import sqlite3
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

from newsletter.operators.admins import add_admin  # noqa: E402
from newsletter.core.config import Settings  # noqa: E402
from newsletter.store import open_store  # noqa: E402
from newsletter.store.migrate import VERSION_TABLE  # noqa: E402
from newsletter.store.schema import inbox_metadata, metadata  # noqa: E402
from newsletter.web import create_app  # noqa: E402

SECRET = "bench-secret-Jq8vX2mN7pL4rT9wK3zB6yH1cF5dG0sA"
PASSWORD = "Operator-pass-9271-xq"
STATUSES = (("active", 0.90), ("unsubscribed", 0.06), ("bounced", 0.03), ("complained", 0.01))
SOURCES = ("cli", "signup", "import:list-a.csv", "import:list-b.csv")
JOINED_OVER_DAYS = 400
BOUNCES, COMPLAINTS = 0.01, 0.0005
# Every table the newsletter makes, as its schema declares them.
TABLES = tuple(sorted({*metadata.tables, *inbox_metadata.tables, VERSION_TABLE}))


# --------------------------------------------------------------------------
# the data


def stamp(moment: dt.datetime) -> str:
    """A time as both databases take it as text (UTC)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def generate(readers: int, days: int, ledger_rows: int, now: dt.datetime, seed: int = 1) -> dict[str, list[tuple]]:
    """Every row of the benchmark's tables, by table."""
    rnd = random.Random(seed)
    subscribers, events, active = [], [], []
    cumulative = []
    total = 0.0
    for status, share in STATUSES:
        total += share
        cumulative.append((total, status))
    refs = sorted(secrets.token_urlsafe(16) for _ in range(readers))
    # Addresses and names are not in the order readers joined, as on a real
    # list: reader0001234 may have joined last.
    numbers = list(range(1, readers + 1))
    rnd.shuffle(numbers)
    for i in range(1, readers + 1):
        # Joined in id order, oldest first, as a real list grows.
        joined = now - dt.timedelta(days=JOINED_OVER_DAYS * (1 - i / readers), seconds=rnd.randint(0, 3600))
        draw = rnd.random()
        status = next(name for edge, name in cumulative if draw <= edge)
        source = SOURCES[i % len(SOURCES)]
        changed = joined if status == "active" else joined + (now - joined) * rnd.random()
        number = numbers[i - 1]
        address = f"reader{number:07d}@example.org"
        name = f"Reader {number}" if i % 3 == 0 else None
        subscribers.append((i, refs[i - 1], address, address, name, status, source, stamp(joined), stamp(changed),
                            "weekly" if i % 10 == 0 else "daily"))
        events.append((i, stamp(joined), None, "active", source, "subscribed"))
        if status != "active":
            events.append((i, stamp(changed), "active", status, "web" if status == "unsubscribed" else "ses",
                           "unsubscribed by the reader" if status == "unsubscribed" else f"{status}: bench"))
        else:
            active.append(i)
    addresses = {row[0]: row[3] for row in subscribers}
    issues, deliveries, feedback = [], [], []
    today = now.date()
    for n in range(days):
        day = today - dt.timedelta(days=days - 1 - n)
        started = dt.datetime.combine(day, dt.time(6, 30), dt.timezone.utc)
        if started > now:
            started = now - dt.timedelta(minutes=30)
        newest = n == days - 1
        block = active if newest else [active[(n * ledger_rows + k) % len(active)] for k in range(ledger_rows)]
        block = sorted(set(block))
        for k, subscriber_id in enumerate(block):
            status = "failed" if k % 500 == 7 else "sent"
            deliveries.append((day.isoformat(), subscriber_id, status, f"m-{n}-{k}" if status == "sent" else None,
                               None if status == "sent" else "refused", stamp(started + dt.timedelta(milliseconds=k))))
        finished = started + dt.timedelta(milliseconds=len(block) + 1000)
        issues.append((day.isoformat(), "daily", f"Daily Papers · {day}", "preheader", 85, "<p>web</p>", "text",
                       None, stamp(started), stamp(started), stamp(finished)))
        for k in rnd.sample(range(len(block)), int(len(block) * BOUNCES)):
            feedback.append((f"sns-b-{n}-{k}", "bounce", addresses[block[k]], block[k], day.isoformat(),
                             "Permanent", "General", "550", stamp(finished)))
        for k in rnd.sample(range(len(block)), max(1, int(len(block) * COMPLAINTS))):
            feedback.append((f"sns-c-{n}-{k}", "complaint", addresses[block[k]], block[k],
                             day.isoformat(), None, None, "abuse", stamp(finished)))
    return {"subscribers": subscribers, "subscriber_events": events, "issues": issues, "deliveries": deliveries,
            "feedback": feedback}


COLUMNS = {
    "subscribers": ("id", "ref", "email", "email_key", "name", "status", "source", "created_at", "updated_at",
                    "frequency"),
    "subscriber_events": ("subscriber_id", "at", "old_status", "new_status", "source", "reason"),
    "issues": ("date", "kind", "subject", "preheader", "paper_count", "web_html", "text", "paper_keys", "created_at",
               "updated_at", "finished_at"),
    "deliveries": ("issue_date", "subscriber_id", "status", "message_id", "reason", "updated_at"),
    "feedback": ("sns_message_id", "kind", "email_key", "subscriber_id", "issue_date", "bounce_type",
                 "bounce_subtype", "detail", "at"),
}


def load_sqlite(path: Path, rows: dict[str, list[tuple]]) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA cache_size=-400000")
        conn.execute("PRAGMA synchronous=OFF")  # a scratch database
        with conn:
            for table, columns in COLUMNS.items():
                marks = ", ".join("?" for _ in columns)
                conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows[table])
        conn.execute("ANALYZE")
    finally:
        conn.close()


def reset_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_conninfo(url), autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')


def postgres_conninfo(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def load_postgres(url: str, rows: dict[str, list[tuple]]) -> None:
    import psycopg

    with psycopg.connect(postgres_conninfo(url)) as conn:
        for table, columns in COLUMNS.items():
            with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows[table]:
                    copy.write_row(row)
        conn.execute("SELECT setval(pg_get_serial_sequence('subscribers', 'id'), (SELECT max(id) FROM subscribers))")
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE")


# --------------------------------------------------------------------------
# the measurements


def logged_in(app):
    client = app.test_client()
    page = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    answer = client.post("/admin/login", data={"name": "bench", "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 303, answer.status_code
    return client


def timed(client, path: str, runs: int) -> tuple[float, float]:
    """Median and 95th percentile of GET ``path``, in milliseconds, after one warm-up."""
    assert client.get(path).status_code == 200, path
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path)
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 200, path
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return statistics.median(seconds) * 1000, p95 * 1000


def measure(name: str, url: str, args) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    started = time.perf_counter()
    logging.getLogger("alembic").setLevel(logging.WARNING)
    rows = generate(args.readers, args.days, args.ledger_rows, now)
    store = open_store(url)  # the schema, as the app makes it
    store.close()
    (load_sqlite(Path(url.removeprefix("sqlite:///")), rows) if name == "SQLite" else load_postgres(url, rows))
    counts = {table: len(found) for table, found in rows.items()}
    del rows
    print(f"\n{name}: {counts['subscribers']:,} readers, {counts['subscriber_events']:,} events, "
          f"{counts['issues']:,} editions, {counts['deliveries']:,} ledger rows, {counts['feedback']:,} feedback rows "
          f"(built in {time.perf_counter() - started:.0f} s)")
    store = open_store(url)
    add_admin(store, "bench", PASSWORD)
    app = create_app(Settings(secret_key=SECRET, database_url=url), store, background=False)
    client = logged_in(app)
    newest = now.date().isoformat()
    began = time.perf_counter()
    store.edition_totals([newest])
    print(f"  cold totals of the newest edition ({counts['deliveries'] - (args.days - 1) * args.ledger_rows:,} "
          f"ledger rows): {(time.perf_counter() - began) * 1000:,.0f} ms (kept afterwards)")
    began = time.perf_counter()
    client.get("/admin/")
    print(f"  first overview (counting and keeping the other editions' totals): "
          f"{(time.perf_counter() - began) * 1000:,.0f} ms")
    deep = int(args.readers * 0.9)
    pages = [
        ("overview, 30 days", "/admin/?days=30"),
        ("overview, 90 days", "/admin/?days=90"),
        ("overview, 365 days", "/admin/?days=365"),
        ("sends", "/admin/sends"),
        ("subscribers, no filter", "/admin/subscribers"),
        ("subscribers, complained", "/admin/subscribers?status=complained"),
        ("subscribers, weekly and bounced", "/admin/subscribers?frequency=weekly&status=bounced"),
        ("subscribers, source and status", "/admin/subscribers?source=import%3Alist-b.csv&status=complained"),
        ("subscribers, address starts with (100 readers)", f"/admin/subscribers?q=reader{deep // 100:05d}"),
        ("subscribers, address starts with (a tenth)", "/admin/subscribers?q=reader09"),
        ("subscribers, name starts with", f"/admin/subscribers?q=Reader%20{deep // 100}"),
        ("subscribers, a page deep in the list", f"/admin/subscribers?status=active&after={deep}"),
        ("a reader's page", f"/admin/subscribers/{deep}"),
    ]
    width = max(len(label) for label, _ in pages)
    print(f"  {'page':<{width}}  median    p95")
    for label, path in pages:
        median, p95 = timed(client, path, args.runs)
        print(f"  {label:<{width}}  {median:6,.0f}  {p95:5,.0f} ms")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365, help="daily editions, one a day up to today")
    parser.add_argument("--ledger-rows", type=int, default=20_000,
                        help="ledger rows of each edition but the newest (which goes to every active reader)")
    parser.add_argument("--runs", type=int, default=20, help="timed requests per page")
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", ""),
                        help="a scratch PostgreSQL database (its newsletter tables are dropped)")
    args = parser.parse_args()
    print(f"Dashboard pages: {args.readers:,} readers, {args.days} daily editions, {args.runs} runs a page")
    with tempfile.TemporaryDirectory(prefix="bench-admin-") as folder:
        measure("SQLite", f"sqlite:///{Path(folder) / 'newsletter.db'}", args)
    if args.postgres_url:
        reset_postgres(args.postgres_url)
        measure("PostgreSQL", args.postgres_url, args)
    else:
        print("\nPostgreSQL: not measured (give --postgres-url or BENCH_POSTGRES_URL, a scratch database)")


if __name__ == "__main__":
    main()
