"""Benchmark: how long an import holds the database, and how fast readers'
one-click unsubscribes are answered while it runs.

Run from anywhere: ``python bench/import_lock.py [--rows 100000 1000000]``
(``make bench``). For each size, in a fresh folder with an embedded SQLite
database of 5,000 readers:

* a real ``newsletter serve`` answers one-click unsubscribe POSTs from a
  client that sends one every 20 ms for as long as the import runs;
* a real ``newsletter subscribers import`` of that many new addresses runs
  meanwhile, and reports how long it held the database for writing (its
  bulk write transaction);

then prints the import's total time and lock hold time, the POSTs'
latency (median, 99th percentile, maximum) and how many landed while the
database was held, and checks that every one of them was applied once
the import ended. Nothing here asserts a time: the figures are for people.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-Jq8vX2mN7pL4rT9wK3zB6yH1cF5dG0sA"
READERS = 5_000
CLICK_EVERY = 0.02  # seconds between one-click POSTs: 50 a second, for up to 100 s

try:
    import newsletter  # noqa: F401
except ImportError:  # run with a Python that does not have the package installed
    sys.path.insert(0, str(ROOT))

from newsletter.core.models import SubscriberRow, SubscriberStatus
from newsletter.store import open_store  # noqa: E402
from newsletter.readers.tokens import Signer  # noqa: E402

UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_click(url: str) -> float:
    """POST a one-click unsubscribe; return the seconds it took."""
    request = urllib.request.Request(url, data=b"List-Unsubscribe=One-Click", method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
        assert response.status == 200
    return time.perf_counter() - started


def wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("newsletter serve exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("newsletter serve did not start")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(rows: int, folder: Path) -> dict:
    database_url = f"sqlite:///{folder / 'newsletter.db'}"
    store = open_store(database_url)
    store.import_subscribers(SubscriberRow(n, f"reader{n}@example.com", None) for n in range(READERS))
    readers = list(store.iter_subscribers())
    big = folder / "big.csv"
    with open(big, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name"])
        writer.writerows((f"new{n}@example.org", f"New Reader {n}") for n in range(rows))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(NEWSLETTER_DATABASE_URL=database_url, NEWSLETTER_SECRET_KEY=SECRET,
               NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}")
    server = subprocess.Popen([sys.executable, "-m", "newsletter", "serve", "--port", str(port)], cwd=folder,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    signer = Signer(SECRET)
    latencies: list[tuple[float, float]] = []  # (when sent, seconds taken)
    try:
        wait_for_port(port, server)
        base = f"http://127.0.0.1:{port}"
        one_click(signer.unsubscribe_url(base, readers[-1].ref))  # warm up
        started = time.perf_counter()
        importing = subprocess.Popen([sys.executable, "-m", "newsletter", "subscribers", "import", str(big)],
                                     cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        n = 0
        while importing.poll() is None and n < len(readers) - 1:
            sent = time.perf_counter() - started
            latencies.append((sent, one_click(signer.unsubscribe_url(base, readers[n].ref))))
            n += 1
            time.sleep(max(0.0, sent + CLICK_EVERY - (time.perf_counter() - started)))
        out, err = importing.communicate()
        total = time.perf_counter() - started
        if importing.returncode != 0:
            raise SystemExit(f"import failed: {err}")
        held = float(re.search(r"database held for ([0-9.]+) s", out).group(1))
        deadline = time.monotonic() + 60
        while store.counts()[UNSUBSCRIBED] < n + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        applied = store.counts()[UNSUBSCRIBED] - 1
    finally:
        server.terminate()
        server.wait()
        store.close()
    times = [seconds for _sent, seconds in latencies]
    # The write phase ends with the import; the clicks sent in the last
    # ``held`` seconds before the import ended overlapped it (roughly).
    during = [seconds for sent, seconds in latencies if sent >= total - held - 0.5]
    return dict(rows=rows, total=total, held=held, clicks=len(times), applied=applied,
                p50=statistics.median(times), p99=percentile(times, 0.99), max=max(times),
                during_max=max(during, default=0.0), during=len(during))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    print(f"{'rows':>10} {'import':>8} {'held':>7} {'clicks':>7} {'applied':>8} "
          f"{'p50':>8} {'p99':>8} {'max':>8} {'max near the write':>20}")
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as folder:
            r = run(rows, Path(folder))
        print(f"{r['rows']:>10,} {r['total']:>7.1f}s {r['held']:>6.2f}s {r['clicks']:>7,} {r['applied']:>8,} "
              f"{r['p50'] * 1000:>6.1f}ms {r['p99'] * 1000:>6.1f}ms {r['max'] * 1000:>6.0f}ms "
              f"{r['during_max'] * 1000:>9.0f}ms ({r['during']} clicks)")


if __name__ == "__main__":
    main()
