"""Benchmark: sending one issue through SES v2, bulk mode vs raw mode vs a
naive baseline, against the SES v2 stand-in on 127.0.0.1 (tests/sesv2_standin.py;
nothing here contacts AWS or any other host).

Run from anywhere: ``python bench/send.py [--subscribers N] [--seconds S] [--rate R]
[--postgres-url URL]`` (``make bench``). It takes a few minutes. The readers have profiles
(``common.create_readers``): nearly all get 5 personal picks. "Without
picks" is the same database with every reader's picks turned off. Measured,
in one run:

1. Preparation CPU per recipient (``time.process_time``, median of
   ``--reps`` repetitions over ``--prep-recipients`` readers):
   - bulk: what the dispatcher does per reader besides the HTTP call: the
     Recipient with its signed links, the SendBulkEmail entry and its share
     of the request's JSON (``SesSender.send`` with a client that
     serializes the request and answers success, no HTTP), without picks
     and with each reader's picks (their template data);
   - ranking: ``EditionPicks.for_readers`` per reader, as the send calls it;
   - raw: the Recipient with picks, then ``PreparedMessage.render``;
   - baseline: the signed URL, then an ``email.message.EmailMessage`` built
     from scratch (headers, ``set_content`` of the text,
     ``add_alternative`` of the HTML) and ``as_bytes()``; on fewer readers
     (``--baseline-recipients``), it is slow.
2. Sending against a stand-in whose MaxSendRate is ``--rate``:
   - bulk: ``newsletter send --limit`` as a real process (the real
     Dispatcher, pacing itself to GetAccount's MaxSendRate) for about
     ``--seconds`` seconds of sending (at least 60 for the target), first
     without picks, then with them; achieved rate over the window,
     throttles, and stand-in accepted vs ledger "sent" (nothing may be
     lost);
   - mixed: every third reader weekly on the issue's day (six earlier days
     stored, so the weekly edition is a full week's); one ``newsletter
     send --limit N`` to completion, daily edition then weekly, the rate
     over the whole run with the switch between editions;
   - raw: ``newsletter send --ses-mode raw`` stopped with SIGTERM after
     ``--raw-seconds``;
   - baseline: one thread, one ``SendEmail`` Raw per reader with the naive
     message, for ``--baseline-seconds``;
   - no quota: the bulk sends again, without and with picks, to
     ``--ceiling-readers`` readers, the stand-in's MaxSendRate at
     1,000,000/s: the ceiling the two shared cores allow;
   and the client CPU per message (the send process's CPU from ``wait4``,
   less its start-up measured with ``--dry-run``; the baseline thread's CPU),
   and for the bulk sends the steady CPU per message (read from /proc while
   the stand-in accepts the middle of the send, from a fifth of its
   messages to nine tenths: the ranking's libraries and index, and the
   pre-flight, left out), the stand-in's beside it (this process's CPU
   over the same messages). Each bulk send starts from the list as it was
   before any send.
   The stand-in runs in this process and shares the machine's CPUs, so the
   raw and baseline rates are bounded by it as much as by the client.
3. Request bytes per recipient: request bodies the stand-in received,
   divided by the recipients it accepted (HTTP headers not counted).
4. Peak memory (peak RSS of a fresh process: VmHWM from /proc, as
   ``ru_maxrss`` there would include the large parent's pages) of streaming
   the whole list through the dispatcher's path without HTTP (``Ledger.iter_unsent``,
   the picks ranked per page, the per-chunk ``active_ids`` check,
   Recipients, bulk entries and their JSON) at ``--memory-sizes``
   subscribers, next to the floor (the same process stopping before the
   iteration: imports, render, database open; the ranking's libraries are
   loaded by the first reader with a profile, so they count in the peak).

PostgreSQL: ``--postgres-url URL`` (or ``BENCH_POSTGRES_URL``), a SQLAlchemy
URL such as ``postgresql+psycopg://user:password@127.0.0.1:5432/bench_send``,
names a scratch database whose newsletter tables are DROPPED: never point it
at a real one. The send database is then made there too (its schema by
``open_store``, every table's rows copied from the SQLite file with COPY; the
time it took is printed), and the sends of 2 (bulk without and with picks,
raw, baseline) and the mixed send run on it as on SQLite, their table and
lines printed after SQLite's, labelled "PostgreSQL". One database serves
them all: before each bulk send and the mixed send, the tables a send changes
(its ledger, picks, stored issue, lock, the dashboard's kept totals, and the
readers' profiles) are put back as they were before any send; before the bulk send
without picks every reader's picks are turned off, and the mixed list is
made on it as on SQLite's copy. Preparation (1), bytes (3), the profile
(``--profile``) and memory (4) are SQLite's only. Without a URL, only SQLite
is measured.

Targets (printed next to the figures, never asserted): bulk preparation
under 100 us per recipient with 5 picks, bulk rate with picks at least 95%
of the quota with no message lost to throttling, bulk with 5 full pick
cards at most 3 KB per recipient on the wire on a day with arXiv ids (each
entry carries every name of the template, the HTML-escaped form of each
value that escaping changes, and the flags of the top cards and of the
titles a reader's picks take out of the list), peak memory under 250 MB and flat from
100,000 to 1,000,000 subscribers.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import gc
import json
import os
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "daily-papers-mar-11.txt"
DATE = dt.date(2025, 3, 11)
SECRET = "dxtEQZMdnn6B4mWzyuJiERci05PjOKsu7h92_qLYz9M"  # secrets.token_urlsafe(32)
ISSUE_HEADER = "X-Newsletter-Issue"

sys.path.insert(0, str(ROOT / "tests"))  # sesv2_standin
try:
    import newsletter  # noqa: F401
except ImportError:  # run with a Python that does not have the package installed
    sys.path.insert(0, str(ROOT))

from common import (  # noqa: E402
    copy_to_postgres,
    create_readers,
    create_subscribers,
    database_url,
    execute_postgres,
    peak_rss_mb,
    reset_postgres,
)

from newsletter.papers.batches import load_batch  # noqa: E402
from newsletter.issue.render import render_for_readers  # noqa: E402
from newsletter.core.config import Settings, masked_url  # noqa: E402
from newsletter.core.models import Batch, Edition  # noqa: E402
from newsletter.sending.personalize import ONE_CLICK, PreparedMessage  # noqa: E402
from newsletter.picks.picking import EditionPicks  # noqa: E402
from newsletter.sending.dispatch import RANK_PAGE, Dispatcher, chunked  # noqa: E402
from newsletter.sending.senders.ses import SesSender  # noqa: E402
from newsletter.store import Ledger, open_store  # noqa: E402
from newsletter.store.schema import subscribers_table  # noqa: E402
from sqlalchemy import update  # noqa: E402
from newsletter.readers.tokens import Signer  # noqa: E402

# --------------------------------------------------------------------------
# set-up


def the_issue(settings: Settings):
    """The example day rendered as `send` renders it for readers (👍/👎 links,
    the picks slot)."""
    return render_for_readers(load_batch(EXAMPLE, date=DATE), settings, Signer(SECRET))


def without_picks(db: Path, copy: Path) -> Path:
    """A copy of ``db`` where every reader turned picks off (0 picks): the
    same list and issue, the email as it was before personal picks."""
    shutil.copyfile(db, copy)
    conn = sqlite3.connect(copy)
    try:
        with conn:
            conn.execute("UPDATE profiles SET picks = 0")
    finally:
        conn.close()
    return copy


class SqliteCopies:
    """The two SQLite send databases (with picks, ``db``, and without,
    ``plain``) as they were before any send, kept beside them, so each
    bulk send starts from a list no send touched (as PostgresCopy does for
    PostgreSQL)."""

    def __init__(self, db: Path, plain: Path):
        self.files = {True: db, False: plain}
        self.kept = {picks: path.with_suffix(".before-sends.db") for picks, path in self.files.items()}
        for picks, path in self.files.items():
            shutil.copyfile(path, self.kept[picks])

    def before_bulk(self, picks: bool) -> None:
        """Put back the database of a send with (or without) ``picks``."""
        path = self.files[picks]
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(self.kept[picks], path)


class OfflineSes:
    """A boto3 sesv2 client without HTTP: each send's body is made as the
    real client makes it (its members serialized to JSON, the entries
    added as the JSON text they come as) and answered with success."""

    def __init__(self):
        self.body_bytes = 0

    def get_account(self):
        return {"SendingEnabled": True,
                "SendQuota": {"MaxSendRate": -1, "Max24HourSend": -1, "SentLast24Hours": 0}}

    def create_email_template(self, **params):
        return {}

    def delete_email_template(self, **params):
        return {}

    def test_render_email_template(self, **params):  # the pre-flight
        return {"RenderedTemplate": ""}

    def send_bulk_email(self, **params):
        entries = params.pop("BulkEmailEntries")
        body = json.dumps(params).encode()[:-1] + b',"BulkEmailEntries":' + entries.encode() + b"}"
        self.body_bytes += len(body)
        return {"BulkEmailEntryResults": [{"Status": "SUCCESS", "MessageId": "m"}] * entries.count('{"Destination":')}


TARGET_ENTRY_BYTES = 3 * 1024  # a bulk entry with 5 full pick cards, on a day with arXiv ids


def offline_sender(settings: Settings, issue) -> SesSender:
    sender = SesSender(settings, mode="bulk", client=OfflineSes())
    sender.open(issue, PreparedMessage(issue, settings.from_address))
    return sender


def entry_bytes(settings: Settings, batch, db: Path, readers: int = 2000) -> float:
    """Request bytes per recipient of bulk sends of ``batch`` to the first
    ``readers`` readers of ``db`` with their picks, serialized as JSON
    offline (no HTTP)."""
    issue = render_for_readers(batch, settings, Signer(SECRET))
    store = open_store(database_url(db))
    try:
        sender = offline_sender(settings, issue)
        dispatcher = Dispatcher(store, sender, Signer(SECRET), settings.base_url, settings.from_address)
        edition = EditionPicks(store, issue.edition, issue.date, issue.papers)
        sent = 0
        for page in chunked(Ledger(store, DATE).iter_unsent(), RANK_PAGE):
            picks = edition.for_readers(s.id for s in page)
            for chunk in chunked(page, sender.batch_size):
                sender.send([dispatcher._recipient(s, issue, picks[s.id]) for s in chunk])
                sent += len(chunk)
            if sent >= readers:
                break
    finally:
        store.close()
    return sender.client.body_bytes / sent


def with_arxiv_ids(batch):
    """``batch`` with an arXiv id on each paper, as the daily papers API
    gives them (the example day's text has none, so its links are arXiv
    title searches, 130 bytes and more)."""
    papers = tuple(replace(p, arxiv_id=f"2503.{i:05d}", url=f"https://arxiv.org/abs/2503.{i:05d}")
                   for i, p in enumerate(batch.papers))
    return replace(batch, papers=papers)


def naive_message(issue, from_address: str, address: str, name: str | None, url: str, domain: str) -> bytes:
    """The baseline: a whole message built from scratch for one reader."""
    html, text = issue.personalized(url)
    msg = EmailMessage()
    msg["From"] = from_address
    msg["To"] = formataddr((name or "", address))
    msg["Subject"] = issue.subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=domain)
    msg["List-Unsubscribe"] = f"<{url}>"
    msg["List-Unsubscribe-Post"] = ONE_CLICK
    msg[ISSUE_HEADER] = issue.date.isoformat()
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


# --------------------------------------------------------------------------
# 1. preparation CPU


def per_recipient_us(works: dict[str, tuple], reps: int) -> dict[str, float]:
    """For each name -> (work, count): the median over ``reps`` of process
    CPU seconds of ``work()`` / ``count``, in us. The repetitions are
    interleaved (one of each, ``reps`` times), so a change in the machine's
    load touches every measurement alike."""
    times: dict[str, list[float]] = {name: [] for name in works}
    for work, _count in works.values():
        work()  # warm-up
    for _ in range(reps):
        for name, (work, count) in works.items():
            started = time.process_time()
            work()
            times[name].append((time.process_time() - started) / count * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def measure_preparation(settings: Settings, issue, store, prep_n: int, baseline_n: int, reps: int) -> dict:
    signer = Signer(SECRET)
    sender = offline_sender(settings, issue)
    dispatcher = Dispatcher(store, sender, signer, settings.base_url, settings.from_address)
    subscribers = []
    for subscriber in Ledger(store, DATE).iter_unsent():
        subscribers.append(subscriber)
        if len(subscribers) == prep_n:
            break
    prep_n = len(subscribers)
    edition = EditionPicks(store, issue.edition, issue.date, issue.papers)
    picks = {}
    for chunk in chunked(subscribers, RANK_PAGE):
        picks.update(edition.for_readers(s.id for s in chunk))
    prepared = PreparedMessage(issue, settings.from_address)
    plain = [dispatcher._recipient(s, issue) for s in subscribers]
    picked = [dispatcher._recipient(s, issue, picks[s.id]) for s in subscribers]
    domain = prepared.domain

    def ranking():
        for chunk in chunked(subscribers, RANK_PAGE):
            edition.for_readers(s.id for s in chunk)

    def recipients(with_picks: bool):
        def work():
            for s in subscribers:
                dispatcher._recipient(s, issue, picks[s.id] if with_picks else None)
        return work

    def bulk(with_picks: bool):
        def work():
            for chunk in chunked(subscribers, 50):
                sender.send([dispatcher._recipient(s, issue, picks[s.id] if with_picks else None) for s in chunk])
        return work

    def bulk_entries(ready):
        def work():
            for chunk in chunked(ready, 50):
                sender.send(chunk)
        return work

    def raw():
        for s in subscribers:
            prepared.render(dispatcher._recipient(s, issue, picks[s.id]))

    def raw_render_only():
        for r in picked:
            prepared.render(r)

    few = subscribers[:baseline_n]

    def baseline():
        for s in few:
            url = signer.unsubscribe_url(settings.base_url, s.ref)
            naive_message(issue, settings.from_address, s.email, s.name, url, domain)

    sizes = {
        "raw": len(prepared.render(picked[0])),
        "baseline": len(naive_message(issue, settings.from_address, few[0].email, few[0].name,
                                      plain[0].unsubscribe_url, domain)),
    }
    measured = per_recipient_us(
        {
            "recipient": (recipients(False), prep_n),
            "recipient_picks": (recipients(True), prep_n),
            "bulk_entries": (bulk_entries(plain), prep_n),
            "bulk_entries_picks": (bulk_entries(picked), prep_n),
            "bulk": (bulk(False), prep_n),
            "bulk_picks": (bulk(True), prep_n),
            "ranking": (ranking, prep_n),
            "raw_render": (raw_render_only, prep_n),
            "raw": (raw, prep_n),
            "baseline": (baseline, len(few)),
        },
        reps,
    )
    with_picks = sum(1 for r in picked if len(r.picks) == 5)
    return {"n": prep_n, "baseline_n": len(few), "message_bytes": sizes, "five_picks": with_picks, **measured}


# --------------------------------------------------------------------------
# 2-3. sending against the stand-in


def send_env(endpoint_url: str, url: str, workdir: Path) -> dict[str, str]:
    """The environment of a `newsletter send` process against the stand-in
    at ``endpoint_url`` and the database at ``url`` (a SQLAlchemy URL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "AWS_"))}
    env.update(
        NEWSLETTER_SENDER="ses",
        NEWSLETTER_SES_ENDPOINT_URL=endpoint_url,
        NEWSLETTER_DATABASE_URL=url,
        NEWSLETTER_SECRET_KEY=SECRET,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_CONFIG_FILE=str(workdir / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(workdir / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def start_send(env: dict[str, str], workdir: Path, name: str, *extra: str,
               profile: Path | None = None) -> tuple[subprocess.Popen, Path]:
    """Start ``newsletter send`` (under cProfile, every thread, when
    ``profile`` names the file for its stats); return it and its log."""
    log = workdir / f"{name}.log"
    command = ["-m", "newsletter"] if profile is None else [str(Path(__file__).resolve()), "--profiled", str(profile)]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, *command, "send", str(EXAMPLE), "--date", DATE.isoformat(), *extra],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    return process, log


def profiled_cli(out: str, argv: list[str]) -> None:
    """Run the newsletter CLI with ``argv`` under cProfile in every thread
    (the send's workers, heartbeat and main thread), and write the merged
    stats to ``out`` at exit."""
    import atexit
    import cProfile
    import pstats
    import threading

    profiles = []
    run = threading.Thread.run

    def profiled_run(thread):
        profile = cProfile.Profile(time.thread_time)
        profiles.append(profile)
        profile.runcall(run, thread)

    threading.Thread.run = profiled_run
    main_profile = cProfile.Profile(time.thread_time)
    profiles.append(main_profile)

    def dump():
        main_profile.disable()
        stats = pstats.Stats(main_profile)
        for profile in profiles[1:]:
            stats.add(profile)
        stats.dump_stats(out)

    atexit.register(dump)
    from newsletter.cli import main as cli_main

    sys.argv = ["newsletter", *argv]
    main_profile.enable()
    cli_main()


# Where a message's CPU goes, by the functions that do each part: (label,
# function name as pstats keys it, file suffix, per "call" or "reader").
PROFILE_PARTS = (
    ("a SendBulkEmail call: botocore build, sign, HTTP, parse", "_call", "senders/ses.py", "call"),
    ("the ledger's pending rows and the picks", "mark_pending", "store/ledger.py", "call"),
    ("the ledger's outcomes", "record", "store/ledger.py", "call"),
    ("the active check before the call", "active_ids", "store/subscribers.py", "call"),
    ("reading the list (a reader)", "paged_rows", "store/subscribers.py", "call"),
    ("ranking the picks (a page of readers)", "for_readers", "picks/picking.py", "call"),
    ("the Recipient: signed links", "reader_recipient", "sending/dispatch.py", "reader"),
    ("the entry's template data", "entry_data", "senders/ses.py", "reader"),
)


def profile_report(path: Path, messages: int, top: int = 15) -> None:
    """Print where the profiled send's CPU went: each part of
    :data:`PROFILE_PARTS` per call or reader and per message, then the
    ``top`` functions by their own time, per message."""
    import pstats

    stats = pstats.Stats(str(path)).stats
    messages = max(messages, 1)
    total = sum(entry[2] for entry in stats.values())
    print(f"   profile (cProfile timing each thread's own CPU, in every thread of the send with picks: time spent "
          f"waiting, for the rate, a lock or an answer, is not counted; the profiler slows the process, so read "
          f"shares, not absolutes): {total / messages * 1e6:,.0f} us of profiled CPU per message")
    print(line("   part", "calls", "us/call", "us/msg", widths=(60, 10, 10, 10)))
    for label, name, suffix, _unit in PROFILE_PARTS:
        found = [(entry[1], entry[3]) for (file, _line, func), entry in stats.items()
                 if func == name and file.endswith(suffix)]
        calls = sum(c for c, _ in found)
        cumulative = sum(t for _, t in found)
        print(line(f"   {label}", f"{calls:,}", f"{cumulative / max(calls, 1) * 1e6:,.0f}",
                   f"{cumulative / messages * 1e6:,.1f}", widths=(60, 10, 10, 10)))
    print(f"   top {top} by own time:")
    ranked = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    for (file, number, func), entry in ranked:
        where = "/".join(Path(file).parts[-2:]) if file != "~" else "(built-in)"
        print(f"     {entry[2] / messages * 1e6:7.1f} us/msg {entry[2] / total:6.1%}  {func} ({where}:{number})")


def window_rate(times: list[float], seconds: float, skip: float = 0.5) -> tuple[float, float, int]:
    """(messages per second, window in seconds, messages in it): the window
    starts ``skip`` seconds after the first acceptance (so its edges cut the
    stream of calls at arbitrary points, not at a call) and lasts
    ``seconds``, or to the last acceptance if sending stopped earlier."""
    times = sorted(times)
    if len(times) < 2:
        return 0.0, 0.0, len(times)
    start = times[0] + min(skip, (times[-1] - times[0]) / 2)
    end = min(start + seconds, times[-1])
    inside = sum(1 for t in times if start <= t < end)
    return inside / (end - start), end - start, inside


def phase_stats(ses, seconds: float, rate: float) -> dict:
    sent = ses.sent
    per_second, window, inside = window_rate([m.accepted_at for m in sent], seconds)
    requests = ses.requests
    send_ops = [r for r in requests if r.operation in ("SendBulkEmail", "SendEmail")]
    accepted = len(sent)
    return {
        "accepted": accepted,
        "rate": per_second,
        "window": window,
        "in_window": inside,
        "share": per_second / rate if rate else 0.0,
        "throttled": ses.throttled,
        "bytes_total": ses.bytes_received,
        "bytes_per_recipient": ses.bytes_received / accepted if accepted else 0.0,
        "send_bytes_per_recipient": sum(r.body_bytes for r in send_ops) / accepted if accepted else 0.0,
        "requests": len(requests),
        "statuses": sorted({r.status for r in send_ops}),
    }


def wait_cpu(process: subprocess.Popen) -> tuple[int, float]:
    """Wait for ``process``; return (exit code, its CPU seconds, user + system)."""
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) the running process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds (user + system) this process has used so far: the
    stand-in's, which serves from its threads, and this benchmark's
    polling, which is little."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def steady_cpu(ses, process: subprocess.Popen, limit: int, poll: float = 0.2) -> tuple[float, float] | None:
    """The CPU per message (seconds) of a running send of ``limit`` readers
    while it sends steadily, as (the client's, the stand-in's: see
    :func:`own_cpu`), from when the stand-in has accepted a fifth of them
    to nine tenths, so that the start (the ranking's libraries, its index,
    the pre-flight) and the end are left out. None when the process ended
    before (or /proc cannot tell)."""
    marks = []
    try:
        # Whether it ended, asked without reaping it (wait_cpu reads its usage).
        while os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None and len(marks) < 2:
            accepted = len(ses.sent)
            if accepted >= limit * (0.2 if not marks else 0.9):
                marks.append((accepted, process_cpu(process.pid), own_cpu()))
            time.sleep(poll)
    except (OSError, ChildProcessError):
        return None
    if len(marks) < 2 or marks[1][0] <= marks[0][0]:
        return None
    (first, client0, standin0), (last, client1, standin1) = marks
    return (client1 - client0) / (last - first), (standin1 - standin0) / (last - first)


def startup_cpu(env: dict[str, str], workdir: Path) -> float:
    """CPU seconds of `send --dry-run`: start-up, render, database; no sending."""
    process, _log = start_send(env, workdir, "dry-run", "--dry-run")
    return wait_cpu(process)[1]


def ledger_counts(url: str, edition: str | None = None) -> dict[str, int]:
    """The ledger's rows per status of ``edition`` (by default the issue's
    daily edition) in the database at ``url``, SQLite or PostgreSQL."""
    store = open_store(url)
    try:
        return Ledger(store, Edition.parse(edition) if edition else DATE).counts()
    finally:
        store.close()


def wait_first(ses, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ses.sent:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the send process stopped before sending anything:\n{log.read_text()}")
        time.sleep(0.01)


def run_bulk(ses, env, workdir: Path, url: str, seconds: float, rate: float, startup: float,
             profile: Path | None = None, limit: int | None = None) -> dict:
    """One ``newsletter send`` in bulk mode, to ``limit`` readers (by
    default a few seconds more than the window at ``rate``); returns its
    figures (:func:`phase_stats`, its exit code, log, ledger change and
    client CPU per message)."""
    ses.reset(templates=True)
    limit = limit or int(rate * (seconds + 5))
    before = ledger_counts(url)
    store = open_store(url)
    try:
        unsent = Ledger(store, DATE).count_unsent()
    finally:
        store.close()
    process, log = start_send(env, workdir, "bulk", "--limit", str(limit), profile=profile)
    steady = steady_cpu(ses, process, min(limit, unsent))
    code, cpu = wait_cpu(process)
    stats = phase_stats(ses, seconds, rate)
    after = ledger_counts(url)
    stats.update(code=code, limit=limit, log=log.read_text(encoding="utf-8"),
                 ledger={k: after[k] - before[k] for k in after},
                 cpu_us=(cpu - startup) / max(stats["accepted"], 1) * 1e6,
                 steady_us=None if steady is None else steady[0] * 1e6,
                 steady_standin_us=None if steady is None else steady[1] * 1e6)
    return stats


def mixed_list(db: Path, copy: Path, batch) -> Path:
    """A copy of ``db`` at ``copy`` made a mixed list (see
    :func:`make_mixed`); returns ``copy``."""
    shutil.copyfile(db, copy)
    make_mixed(database_url(copy), batch)
    return copy


def make_mixed(url: str, batch) -> None:
    """Make the database at ``url`` (SQLite or PostgreSQL) a mixed list:
    every third reader weekly on the issue's weekday (the others daily),
    with six earlier days of ``batch``'s papers stored, so that one `send`
    makes the daily edition and the weekly edition of a full week."""
    store = open_store(url)
    try:
        with store.engine.begin() as conn:
            conn.execute(update(subscribers_table).where(subscribers_table.c.id % 3 == 0)
                         .values(frequency="weekly", weekday=DATE.weekday()))
        for back in range(1, 7):
            day = DATE - dt.timedelta(days=back)
            store.store_batch(Batch(day, tuple(replace(p, arxiv_id=f"{back}{p.arxiv_id or i}", url=None)
                                               for i, p in enumerate(batch.papers)), source="earlier"))
    finally:
        store.close()


def run_mixed(ses, env, workdir: Path, url: str, per_edition: int, rate: float) -> dict:
    """One `send` of a mixed list to completion (``per_edition`` readers of
    each edition at most): the daily edition, then the weekly one; the rate
    is over the whole run, the switch between editions included."""
    ses.reset(templates=True)
    before = {key: ledger_counts(url, key) for key in (DATE.isoformat(), f"{DATE.isoformat()}-weekly")}
    standin = own_cpu()
    process, log = start_send(env, workdir, "mixed", "--limit", str(per_edition))
    code, cpu = wait_cpu(process)
    standin = own_cpu() - standin
    stats = phase_stats(ses, float("inf"), rate)
    after = {key: ledger_counts(url, key) for key in before}
    sent = {key: after[key]["sent"] - before[key]["sent"] for key in after}
    editions = collections.Counter(m.header("X-Newsletter-Issue") for m in ses.sent)
    spans = {}
    for message in ses.sent:
        first, last = spans.get(message.header("X-Newsletter-Issue"), (message.accepted_at, message.accepted_at))
        spans[message.header("X-Newsletter-Issue")] = (min(first, message.accepted_at), max(last, message.accepted_at))
    daily, weekly = (spans.get(key, (0.0, 0.0)) for key in before)
    stats.update(code=code, log=log.read_text(encoding="utf-8"), ledger={"sent": sum(sent.values())},
                 cpu_us=cpu / max(stats["accepted"], 1) * 1e6, standin_us=standin / max(stats["accepted"], 1) * 1e6,
                 per_edition=sent, accepted_per_edition=dict(editions), switch=weekly[0] - daily[1],
                 edition_rates={key: editions[key] / max(end - start, 1e-9) for key, (start, end) in spans.items()})
    return stats


def run_raw(ses, env, workdir: Path, url: str, seconds: float, rate: float, startup: float) -> dict:
    ses.reset(templates=True)
    before = ledger_counts(url)
    process, log = start_send(env, workdir, "raw", "--ses-mode", "raw")
    wait_first(ses, process, log)
    time.sleep(seconds + 0.5)
    process.send_signal(signal.SIGTERM)
    code, cpu = wait_cpu(process)
    stats = phase_stats(ses, seconds, rate)
    after = ledger_counts(url)
    stats.update(code=code, log=log.read_text(encoding="utf-8"), ledger={k: after[k] - before[k] for k in after},
                 cpu_us=(cpu - startup) / max(stats["accepted"], 1) * 1e6)
    return stats


def run_baseline(ses, settings: Settings, issue, url: str, seconds: float, rate: float) -> dict:
    ses.reset(templates=True)
    client = ses.client()
    signer = Signer(SECRET)
    domain = PreparedMessage(issue, settings.from_address).domain
    store = open_store(url)
    sent = failed = 0
    cpu = time.thread_time()  # this thread only: the stand-in answers in its own threads
    try:
        deadline = time.monotonic() + seconds + 0.5
        for subscriber in store.iter_subscribers():
            if time.monotonic() >= deadline:
                break
            url = signer.unsubscribe_url(settings.base_url, subscriber.ref)
            data = naive_message(issue, settings.from_address, subscriber.email, subscriber.name, url, domain)
            try:
                client.send_email(FromEmailAddress=settings.from_address,
                                  Destination={"ToAddresses": [subscriber.email]},
                                  Content={"Raw": {"Data": data}})
                sent += 1
            except Exception:  # a throttle would show here: counted, not retried
                failed += 1
    finally:
        store.close()
    cpu = time.thread_time() - cpu
    stats = phase_stats(ses, seconds, rate)
    stats.update(code=0, ledger={"sent": sent, "failed": failed}, cpu_us=cpu / max(sent, 1) * 1e6)
    return stats


# --------------------------------------------------------------------------
# 4. memory


def probe(kind: str, db: Path) -> None:
    """In a fresh process: set up as `send` does, then (kind "stream") run
    the whole list through the dispatcher's per-reader path with no HTTP,
    picks ranked as the send ranks them. Prints one JSON line."""
    started = time.perf_counter()
    cpu = time.process_time()
    settings = Settings(secret_key=SECRET, database_url=database_url(db))
    issue = the_issue(settings)
    store = open_store(settings.database_url)
    sender = offline_sender(settings, issue)
    dispatcher = Dispatcher(store, sender, Signer(SECRET), settings.base_url, settings.from_address)
    ledger = Ledger(store, DATE)
    edition = EditionPicks(store, issue.edition, issue.date, issue.papers)
    readers = 0
    if kind == "stream":
        for page in chunked(ledger.iter_unsent(), RANK_PAGE):
            picks = edition.for_readers(s.id for s in page)
            for chunk in chunked(page, sender.batch_size):
                active = store.active_ids(s.id for s in chunk)
                recipients = [dispatcher._recipient(s, issue, picks[s.id]) for s in chunk if s.id in active]
                sender.send(recipients)  # entries and the request's JSON, no HTTP
                readers += len(recipients)
    store.close()
    print(json.dumps({
        "kind": kind,
        "readers": readers,
        "maxrss_mb": peak_rss_mb(),
        "seconds": time.perf_counter() - started,
        "cpu": time.process_time() - cpu,
        "body_bytes": sender.client.body_bytes,
    }))


def run_probe(kind: str, db: Path) -> dict:
    answer = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--probe", kind, str(db)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(answer.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------
# report


def line(*cells, widths) -> str:
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def prepare_report(settings: Settings, issue, db: Path, args) -> dict:
    store = open_store(database_url(db))
    try:
        prep = measure_preparation(settings, issue, store, args.prep_recipients, args.baseline_recipients, args.reps)
    finally:
        store.close()
    widths = (44, 10, 12, 10, 12)
    print(f"1. Preparation CPU per recipient, us (process_time, median of {args.reps}; "
          f"{prep['n']:,} readers, {prep['five_picks']:,} of them with 5 picks; baseline {prep['baseline_n']:,})")
    print(line("", "bulk", "bulk+picks", "raw", "baseline", widths=widths))
    print(line("Recipient: signed links, picks attached", f"{prep['recipient']:.1f}",
               f"{prep['recipient_picks']:.1f}", f"{prep['recipient_picks']:.1f}", "(incl.)", widths=widths))
    print(line("mode's own work", f"{prep['bulk_entries']:.1f}", f"{prep['bulk_entries_picks']:.1f}",
               f"{prep['raw_render']:.1f}", f"{prep['baseline']:.1f}", widths=widths))
    print(line("  (entry + JSON | render | EmailMessage)", "", "", "", "", widths=widths))
    print(line("total per recipient", f"{prep['bulk']:.1f}", f"{prep['bulk_picks']:.1f}", f"{prep['raw']:.1f}",
               f"{prep['baseline']:.1f}", widths=widths))
    print(line("ranking the picks (per reader)", "", f"{prep['ranking']:.1f}", f"{prep['ranking']:.1f}", "",
               widths=widths))
    print(line("baseline / mode", f"{prep['baseline'] / prep['bulk']:,.0f}x",
               f"{prep['baseline'] / (prep['bulk_picks'] + prep['ranking']):,.0f}x",
               f"{prep['baseline'] / (prep['raw'] + prep['ranking']):,.0f}x", "1x", widths=widths))
    print(f"   (one message with 5 picks: raw MIME {prep['message_bytes']['raw']:,} B; naive MIME, no picks, "
          f"{prep['message_bytes']['baseline']:,} B. Ranking: {RANK_PAGE} readers at a time, as the send ranks "
          "them: their profiles, votes and recent picks read from the database, then ranked)")
    total = prep["bulk_picks"] + prep["ranking"]
    print(f"   target: bulk < 100 us -> {'met' if prep['bulk'] < 100 else 'MISSED'}; bulk with 5 picks < 100 us -> "
          f"{'met' if prep['bulk_picks'] < 100 else 'MISSED'} ({prep['bulk_picks']:.1f} us; "
          f"{total:.1f} us with the ranking)\n", flush=True)
    return prep


class PostgresCopy:
    """The scratch PostgreSQL database at ``url`` (its newsletter tables are
    dropped) holding a copy of the SQLite send database ``db`` as it is
    before any send, for the same sends as on SQLite. One database serves
    every send, so before each, the tables a send changes are put back as
    they were (:meth:`restore`), from ``source``, a copy of ``db`` made by
    :meth:`load` (the SQLite sends change ``db`` itself)."""

    # What a send changes (its ledger, picks, stored issue, lock and the
    # dashboard's kept totals), and the readers' picks the no-picks send
    # turns off.
    SEND_TABLES = ("deliveries", "picks", "issues", "send_locks", "edition_totals", "profiles")

    def __init__(self, url: str, db: Path, source: Path):
        self.url = url
        self.db = db
        self.source = source

    def load(self) -> tuple[float, float, dict[str, int]]:
        """Reset the database, let ``open_store`` make its schema, and copy
        every table of ``db`` into it (and keep ``db`` as it is now in
        ``source``, for :meth:`restore`). Returns the seconds the reset and
        schema took, the seconds the copy took (analyzing the tables
        included), and the rows copied, by table."""
        started = time.perf_counter()
        shutil.copyfile(self.db, self.source)
        reset_postgres(self.url)
        open_store(self.url).close()  # the schema, as the app makes it
        made = time.perf_counter()
        rows = copy_to_postgres(self.source, self.url)
        return made - started, time.perf_counter() - made, rows

    def restore(self) -> None:
        """Put back the tables a send changes as they were in ``db`` before
        any send."""
        copy_to_postgres(self.source, self.url, self.SEND_TABLES, replace=True)

    def before_bulk(self, picks: bool) -> None:
        """Before a bulk send: :meth:`restore`, then, without ``picks``,
        every reader's picks turned off, as :func:`without_picks` does."""
        self.restore()
        if not picks:
            execute_postgres(self.url, "UPDATE profiles SET picks = 0")


SEND_ROWS = (("bulk", "bulk, no picks"), ("bulk_picks", "bulk, 5 picks"), ("raw", "raw (SIGTERM)"),
             ("baseline", "baseline (1 thread)"))
# The sends with no quota (the stand-in's MaxSendRate at CEILING_RATE): how
# fast the client goes when only the two cores it shares with the stand-in
# hold it back.
CEILING_ROWS = (("ceiling", "no quota, no picks"), ("ceiling_picks", "no quota, 5 picks"))
CEILING_RATE = 1_000_000.0


def send_runs(ses, settings: Settings, issue, workdir: Path, args, plain_url: str, url: str, startup: float,
              before_bulk, profile: bool = False) -> dict[str, dict]:
    """The sends of section 2 against the stand-in ``ses``: bulk without
    picks on the database at ``plain_url``, bulk with picks on ``url``
    (with ``profile``, a third one under the profiler, its report
    printed), raw, the baseline, then (``--ceiling-readers``) bulk without
    and with picks with no quota. ``before_bulk(picks)`` puts the database
    of a send with or without picks back as it was before any send, and is
    called before each send that reads the list. Returns each send's
    figures (:func:`run_bulk`), by name."""
    results = {}
    before_bulk(False)
    results["bulk"] = run_bulk(ses, send_env(ses.endpoint_url, plain_url, workdir), workdir, plain_url,
                               args.seconds, args.rate, startup)
    before_bulk(True)
    env = send_env(ses.endpoint_url, url, workdir)
    results["bulk_picks"] = run_bulk(ses, env, workdir, url, args.seconds, args.rate, startup)
    if profile:
        # A third bulk send with picks, under the profiler (its CPU
        # figures are not the ones above: the profiler slows it).
        before_bulk(True)
        stats_file = workdir / "send.pstats"
        profiled = run_bulk(ses, env, workdir, url, args.seconds, args.rate, startup, profile=stats_file)
        profile_report(stats_file, profiled["accepted"])
    before_bulk(True)
    results["raw"] = run_raw(ses, env, workdir, url, args.raw_seconds, args.rate, startup)
    results["baseline"] = run_baseline(ses, settings, issue, url, args.baseline_seconds, args.rate)
    if args.ceiling_readers:
        ses.set_quota(max_send_rate=CEILING_RATE)
        try:
            for name, picks in (("ceiling", False), ("ceiling_picks", True)):
                before_bulk(picks)
                where = url if picks else plain_url
                results[name] = run_bulk(ses, send_env(ses.endpoint_url, where, workdir), workdir, where,
                                         float("inf"), 0.0, startup, limit=args.ceiling_readers)
        finally:
            ses.set_quota(max_send_rate=args.rate)
    return results


def send_table(results: dict[str, dict], startup: float, label: str = "") -> None:
    """Print section 2's table of ``results`` (:func:`send_runs`), headed
    by ``label`` (the database, when there are two), and what goes with it:
    the ratios, the notes (without a label or for SQLite only), what the
    bulk sends said, and the targets."""
    widths = (20, 8, 10, 10, 9, 10, 12, 6, 5, 14, 9, 16)
    print(line(label, "window", "accepted", "rate/s", "% quota", "throttled", "ledger sent", "lost", "exit",
               "client CPU/msg", "steady", "stand-in, steady", widths=widths))
    for name, row_label in (*SEND_ROWS, *CEILING_ROWS):
        r = results.get(name)
        if r is None:
            continue
        lost = r["accepted"] - r["ledger"].get("sent", 0)
        steady, standin = r.get("steady_us"), r.get("steady_standin_us")
        print(line(row_label, f"{r['window']:.1f} s", f"{r['accepted']:,}", f"{r['rate']:,.1f}",
                   f"{r['share']:.1%}" if r["share"] else "-", f"{r['throttled']:,}",
                   f"{r['ledger'].get('sent', 0):,}", f"{lost:,}", r["code"], f"{r['cpu_us']:,.0f} us",
                   "" if steady is None else f"{steady:,.0f} us", "" if standin is None else f"{standin:,.0f} us",
                   widths=widths))
    bulk, picked, base = results["bulk"], results["bulk_picks"], results["baseline"]
    print(f"   rate: bulk with picks / without {picked['rate'] / max(bulk['rate'], 1e-9):.3f}; "
          f"bulk / baseline {picked['rate'] / max(base['rate'], 1e-9):,.0f}x, "
          f"raw / baseline {results['raw']['rate'] / max(base['rate'], 1e-9):,.1f}x; "
          f"client CPU/msg: baseline / bulk with picks {base['cpu_us'] / picked['cpu_us']:,.0f}x, "
          f"baseline / raw {base['cpu_us'] / results['raw']['cpu_us']:,.1f}x")
    if label in ("", "SQLite"):
        print("   window: from 0.5 s after the first acceptance ('accepted' counts the whole phase). client CPU/msg: "
              f"the send process's CPU less its start-up ({startup:.2f} s, measured with --dry-run), per message, "
              "boto3, ledger writes and (with picks) the ranking and its libraries included; baseline: its thread's "
              "CPU. steady: the bulk send's client CPU per message from a fifth to nine tenths of its messages (its "
              "start, the ranking's libraries, index and the pre-flight, left out); stand-in: the CPU per message of "
              "this process, which serves the stand-in, over the same messages (at a quota of Q/s, client and "
              "stand-in together need under 2 / Q s a message on two cores). No quota: the stand-in's "
              "MaxSendRate at 1,000,000/s, the same sends to --ceiling-readers readers. The stand-in shares this "
              "machine's CPUs. Raw mode sends the picks too.")
    else:
        print(f"   {label}: the same sends and columns; the send process's start-up {startup:.2f} s (--dry-run). "
              "One database serves them all: before each bulk send the ledger, picks, stored issue and profiles "
              "are put back as they were before any send (and for the first, every reader's picks turned off).")
    for name in ("bulk", "bulk_picks"):
        r = results[name]
        said = [ln for ln in r["log"].splitlines() if "via ses" in ln]
        print(f"   {name}: ledger change {r['ledger']}; send calls answered {r['statuses']}; "
              f"it said: {said[-1].strip() if said else r['log'][-300:]}")
    for name, row_label in SEND_ROWS[:2]:
        r = results[name]
        ok = r["share"] >= 0.95 and r["accepted"] == r["ledger"].get("sent", 0) and r["window"] >= 60
        print(f"   target: {(label + ', ') if label else ''}{row_label}: >= 95% of the quota over >= 60 s, "
              f"nothing lost -> {'met' if ok else 'MISSED'}")
    print(flush=True)


# The stand-in's collector while it serves a send: a young collection every
# 20,000 new objects, not every 700.
STANDIN_GC_THRESHOLD = (20_000, 10, 10)


@contextlib.contextmanager
def standin_collector():
    """Run the body with this process's garbage collector tuned for the
    stand-in serving a long send, and put its settings back after.

    The stand-in keeps every message it accepts (about a dozen objects
    each) and decodes each call's 50 entries into thousands of lists (the
    flags). With the default thresholds, the entries still being read when
    a young collection runs are moved to the oldest generation, which soon
    counts a quarter more objects than the last full collection left, and
    CPython then walks the whole heap again: 62 full collections in a send
    of 40,000 messages with picks, 8.2 s of CPU, 200 us a message, as much
    as the rest of the stand-in's work, on the cores the client needs. With
    young collections every 20,000 new objects, the same send made 2 full
    collections (0.1 s); freezing what was loaded before the send as well,
    as `newsletter send` does, did not lower it further."""
    thresholds = gc.get_threshold()
    gc.set_threshold(*STANDIN_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def send_report(settings: Settings, issue, db: Path, plain_db: Path, workdir: Path, args,
                postgres: PostgresCopy | None = None) -> None:
    """Section 2 (on SQLite, then on PostgreSQL when ``postgres`` is
    given, each with its table) and section 3 (SQLite's sends)."""
    from sesv2_standin import SesV2StandIn

    url = database_url(db)
    with standin_collector(), SesV2StandIn(max_send_rate=args.rate, max_24_hour_send=-1) as ses:
        startup = startup_cpu(send_env(ses.endpoint_url, url, workdir), workdir)
        print(f"2. Sending against MaxSendRate {args.rate:,.0f}/s (bulk for {args.seconds:.0f} s of sending, without "
              f"picks then with them; raw {args.raw_seconds:.0f} s, baseline {args.baseline_seconds:.0f} s)",
              flush=True)
        copies = SqliteCopies(db, plain_db)
        results = send_runs(ses, settings, issue, workdir, args, database_url(plain_db), url, startup,
                            copies.before_bulk, profile=args.profile)
    send_table(results, startup, "SQLite" if postgres else "")
    if postgres:
        with standin_collector(), SesV2StandIn(max_send_rate=args.rate, max_24_hour_send=-1) as ses:
            postgres.restore()
            pg_startup = startup_cpu(send_env(ses.endpoint_url, postgres.url, workdir), workdir)
            pg_results = send_runs(ses, settings, issue, workdir, args, postgres.url, postgres.url, pg_startup,
                                   postgres.before_bulk)
        send_table(pg_results, pg_startup, "PostgreSQL")

    picked, base = results["bulk_picks"], results["baseline"]
    names = SEND_ROWS
    widths = (20, 16, 20, 16)
    print("3. Request bytes on the wire per recipient (request bodies; HTTP headers not counted)")
    print(line("", "send calls only", "all calls (+set-up)", "vs baseline", widths=widths))
    base_bytes = base["send_bytes_per_recipient"]
    for name, label in names:
        r = results[name]
        print(line(label, f"{r['send_bytes_per_recipient']:,.0f} B", f"{r['bytes_per_recipient']:,.0f} B",
                   f"{base_bytes / r['send_bytes_per_recipient']:,.1f}x smaller" if name != "baseline" else "",
                   widths=widths))
    print("   (raw and baseline bodies carry the whole message, base64-encoded in JSON; a bulk entry carries the "
          "reader's links and, with picks, each pick's number, title, link, code and reason)")
    example = load_batch(EXAMPLE, date=DATE)
    offline = {name: entry_bytes(settings, batch, db) for name, batch in
               (("example", example), ("ids", with_arxiv_ids(example)))}
    print(f"   serialized offline for 2,000 readers with picks: the example day {offline['example']:,.0f} B, the same "
          f"day with arXiv ids (links https://arxiv.org/abs/...) {offline['ids']:,.0f} B per recipient")
    print(f"   target: bulk with 5 picks <= 3 KB on a day with arXiv ids -> "
          f"{'met' if offline['ids'] <= TARGET_ENTRY_BYTES else 'MISSED'} (the example day, whose papers link their "
          f"archive pages: {'within' if picked['send_bytes_per_recipient'] <= TARGET_ENTRY_BYTES else 'over'} it)\n",
          flush=True)


def mixed_report(db: Path, workdir: Path, args, postgres: PostgresCopy | None = None) -> None:
    """The mixed send: daily and weekly readers, one run (see run_mixed), on
    SQLite, then on PostgreSQL when ``postgres`` is given."""
    from sesv2_standin import SesV2StandIn

    batch = load_batch(EXAMPLE, date=DATE)
    mixed_url = database_url(mixed_list(db, workdir / "send-mixed.db", batch))
    with standin_collector(), SesV2StandIn(max_send_rate=args.rate, max_24_hour_send=-1) as ses:
        env = send_env(ses.endpoint_url, mixed_url, workdir)
        r = run_mixed(ses, env, workdir, mixed_url, args.mixed_per_edition, args.rate)
    print(f"2b. Mixed send against MaxSendRate {args.rate:,.0f}/s: every third reader weekly on the issue's day, "
          f"one run (the daily edition, then the weekly one), at most {args.mixed_per_edition:,} readers each, "
          "with picks")
    mixed_lines(r, "SQLite" if postgres else "")
    if postgres:
        postgres.restore()
        make_mixed(postgres.url, batch)
        with standin_collector(), SesV2StandIn(max_send_rate=args.rate, max_24_hour_send=-1) as ses:
            env = send_env(ses.endpoint_url, postgres.url, workdir)
            r = run_mixed(ses, env, workdir, postgres.url, args.mixed_per_edition, args.rate)
        mixed_lines(r, "PostgreSQL")


def mixed_lines(r: dict, label: str = "") -> None:
    """Print the figures of a mixed send (:func:`run_mixed`), each line
    headed by ``label`` (the database, when there are two)."""
    ok = r["share"] >= 0.95 and r["accepted"] == r["ledger"]["sent"]
    head = f"   {label}: " if label else "   "
    print(f"{head}{r['accepted']:,} accepted in {r['window']:.1f} s: {r['rate']:,.1f}/s = {r['share']:.1%} of the "
          f"quota, the switch between editions included; accepted per edition {r['accepted_per_edition']}, "
          f"ledger sent {r['per_edition']}, throttled {r['throttled']:,}, exit {r['code']}")
    print(f"{head}the switch (the daily's last message to the weekly's first) {r['switch']:.2f} s; each edition's own "
          f"rate {', '.join(f'{key} {rate:,.1f}/s' for key, rate in r['edition_rates'].items())}")
    print(f"{head}CPU per message over the run: the client {r['cpu_us']:,.0f} us (its start-up and both editions' "
          f"indexes and pre-flights included), the stand-in {r['standin_us']:,.0f} us (its pre-flight renders "
          "included: pybars3 compiles each edition's template, seconds for a weekly's)")
    print(f"{head}target: >= 95% of the quota, nothing lost -> {'met' if ok else 'MISSED'}\n", flush=True)


def memory_report(sizes: list[int], workdir: Path) -> None:
    print("4. Peak memory (peak RSS, VmHWM, of a fresh process), streaming the whole list through the "
          "dispatcher's path without HTTP, readers without profiles (the ranking is never loaded) and with "
          "profiles (5 picks each)", flush=True)
    rows = []
    for size in sizes:
        plain, picked = workdir / f"memory-{size}.db", workdir / f"memory-{size}-picks.db"
        create_subscribers(plain, size)
        create_readers(picked, size)
        rows.append((size, run_probe("floor", plain), run_probe("stream", plain), run_probe("stream", picked)))
        for db in (plain, picked):
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
    widths = (12, 10, 18, 18, 16, 16)
    print(line("subscribers", "floor", "no profiles: peak", "with picks: peak", "CPU/rdr, none",
               "CPU/rdr, picks", widths=widths))
    for size, floor, plain, picked in rows:
        assert plain["readers"] == picked["readers"] == size, (plain, picked)
        print(line(f"{size:,}", f"{floor['maxrss_mb']:.1f} MB", f"{plain['maxrss_mb']:.1f} MB",
                   f"{picked['maxrss_mb']:.1f} MB", f"{(plain['cpu'] - floor['cpu']) / size * 1e6:.0f} us",
                   f"{(picked['cpu'] - floor['cpu']) / size * 1e6:.0f} us", widths=widths))
    print("   floor: the same process stopping before the iteration (imports, render, database open). "
          "CPU/rdr: paged ledger reads, (with picks) ranking them, the active check, Recipient, entry and JSON, "
          "per reader. With picks, the peak holds the ranking's libraries and WordLlama's weights (about 140 MB)")
    for label, column in (("no profiles", 2), ("with picks", 3)):
        peaks = [row[column]["maxrss_mb"] for row in rows]
        flat = max(peaks) - min(peaks) < 10
        print(f"   {label}: peak {max(peaks):.1f} MB, spread {max(peaks) - min(peaks):.1f} MB from "
              f"{sizes[0]:,} to {sizes[-1]:,} -> {'flat' if flat else 'NOT FLAT'}")
    print(f"   target: < 250 MB with picks and flat -> "
          f"{'met' if max(r[3]['maxrss_mb'] for r in rows) < 250 and flat else 'MISSED'}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--profiled"]:
        profiled_cli(argv[1], argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=100_000, help="subscribers in the send database")
    parser.add_argument("--seconds", type=float, default=60.0, help="bulk sending window (s)")
    parser.add_argument("--rate", type=float, default=1000.0, help="the stand-in's MaxSendRate (messages/s)")
    parser.add_argument("--mixed-per-edition", type=int, default=40_000,
                        help="readers of each edition in the mixed send (0: skip it)")
    parser.add_argument("--raw-seconds", type=float, default=20.0)
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--prep-recipients", type=int, default=20_000)
    parser.add_argument("--baseline-recipients", type=int, default=300)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--memory-sizes", default="100000,1000000", help="comma-separated; empty to skip")
    parser.add_argument("--phases", default="prep,send,mixed,memory", help="which of prep,send,mixed,memory to run")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (databases, logs)")
    parser.add_argument("--ceiling-readers", type=int, default=30_000,
                        help="readers of each send with no quota, without and with picks (0: skip them)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile a bulk send with picks (cProfile, every thread): where a message's CPU "
                             "goes, per call and per reader, and the top functions")
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL", ""),
                        help="also run the sends on this scratch PostgreSQL database (SQLAlchemy URL; its "
                             "newsletter tables are dropped; default: $BENCH_POSTGRES_URL)")
    parser.add_argument("--probe", nargs=2, metavar=("KIND", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        probe(args.probe[0], Path(args.probe[1]))
        return
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    sizes = [int(s) for s in args.memory_sizes.split(",") if s.strip()]

    workdir = Path(tempfile.mkdtemp(prefix="bench-send-"))
    try:
        settings = Settings(secret_key=SECRET)
        issue = the_issue(settings)
        print(f"Send benchmark: {issue.subject!r} (HTML {issue.html_bytes:,} B, text {issue.text_bytes:,} B), "
              f"SES v2 stand-in on 127.0.0.1, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        if phases & {"prep", "send", "mixed"}:
            db = workdir / "send.db"
            took = create_readers(db, args.subscribers)
            print(f"{args.subscribers:,} subscribers with profiles in SQLite, inserted in {took:.1f} s\n", flush=True)
            postgres = None
            if args.postgres_url and phases & {"send", "mixed"}:
                postgres = PostgresCopy(args.postgres_url, db, workdir / "send-postgres-source.db")
                schema, took, rows = postgres.load()
                print(f"PostgreSQL ({masked_url(args.postgres_url)}): reset and schema made by open_store in "
                      f"{schema:.1f} s; {sum(rows.values()):,} rows of {len(rows)} tables copied from SQLite in "
                      f"{took:.1f} s ({', '.join(f'{table} {count:,}' for table, count in rows.items())})\n",
                      flush=True)
            if "prep" in phases:
                prepare_report(settings, issue, db, args)
            if "send" in phases:
                send_report(settings, issue, db, without_picks(db, workdir / "send-no-picks.db"), workdir, args,
                            postgres)
            if "mixed" in phases and args.mixed_per_edition:
                mixed_report(db, workdir, args, postgres)
        if "memory" in phases and sizes:
            memory_report(sizes, workdir)
    finally:
        if args.keep:
            print(f"(kept {workdir})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
