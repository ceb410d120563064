"""``newsletter send`` with the outbox sender, and the send machinery itself:
the ledger's exactly-once rules, the per-issue lock, dead runs, interruption,
the rate limiter and per-reader personalization.

Most tests drive the real command (click's CliRunner, settings from
NEWSLETTER_* variables, a SQLite database in tmp); the rest drive
:class:`newsletter.sending.dispatch.Dispatcher` directly, on both databases where
the ledger's behaviour is the point.
"""

from __future__ import annotations

import collections
import datetime as dt
import email
import email.header
import email.policy
import email.utils
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
from html import escape
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from conftest import EXAMPLE, SECRET, readers_in_outbox, wait_until
from newsletter.papers.batches import load_batch
from newsletter.cli import cli
from newsletter.core.config import Settings
from newsletter.core.errors import AccountError, ReadersFailed, SendError, SendLocked, StoreError, TransientError
from newsletter.core.models import DeliveryStatus, Profile, RestOfDay, SubscriberRow, SubscriberStatus
from newsletter.sending.personalize import PreparedMessage, Recipient
from newsletter.issue.render import render_issue
from newsletter.picks.picking import EditionPicks
from newsletter.sending.dispatch import Dispatcher, SendOptions, SendReport
from newsletter.sending.ratelimit import RateLimiter
from newsletter.sending.senders.outbox import OutboxSender
from newsletter.store import Ledger
from newsletter.store.ledger import LedgerRow
from newsletter.store.schema import send_locks_table
from newsletter.readers.tokens import Signer
from test_picks_email import assert_controls_signed_for

BOUNCED = SubscriberStatus.BOUNCED
COMPLAINED = SubscriberStatus.COMPLAINED
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED

DAY = dt.date(2025, 3, 11)
DATE = DAY.isoformat()
BASE = "http://127.0.0.1:8000"  # Settings().base_url
FROM = "Daily Papers <newsletter@example.com>"
ONE_CLICK = b"List-Unsubscribe=One-Click"


# --------------------------------------------------------------------------
# helpers


def send(env: dict[str, str], *args: str, batch: Path | str = EXAMPLE):
    return CliRunner().invoke(cli, ["send", str(batch), "--date", DATE, *args], env=env, catch_exceptions=False)


def add_readers(store, count: int, start: int = 0, name=lambda i: f"Reader {i}") -> list:
    """Add ``count`` active readers quickly (one transaction); return them in id order."""
    report = store.import_subscribers(SubscriberRow(i, f"reader{i}@example.org", name(i))
                                      for i in range(start, start + count))
    assert len(report.added) == count
    return [store.get(email=f"reader{i}@example.org") for i in range(start, start + count)]


def outbox(env) -> Path:
    return Path(env["NEWSLETTER_OUTBOX_DIR"]) / DATE


def outbox_ids(env) -> set[int]:
    return readers_in_outbox(outbox(env))


def rows(store, status: str | None = None) -> list[tuple]:
    return Ledger(store, DAY).rows(status)


def counts(store) -> dict[str, int]:
    return Ledger(store, DAY).counts()


def personal_token(url: str) -> str:
    path = urlsplit(url).path
    assert path.startswith("/u/"), url
    return path[len("/u/"):]


def the_issue(settings: Settings | None = None, batch=EXAMPLE):
    return render_issue(load_batch(batch, date=DAY), settings or Settings(secret_key=SECRET))


def canonical_batch(path: Path, papers: list[dict]) -> Path:
    path.write_text(json.dumps({"format": "newsletter-batch/1", "date": DATE, "papers": papers}), encoding="utf-8")
    return path


def dispatcher(store, sender, options: SendOptions | None = None, stop=None, progress=None) -> Dispatcher:
    settings = Settings(secret_key=SECRET)
    return Dispatcher(store, sender, Signer.from_settings(settings), settings.base_url, FROM,
                      options or SendOptions(), stop, progress)


class Recording:
    """Wraps a sender: counts every recipient handed to ``send`` and can run
    a hook after each call (to stop the run, unsubscribe someone, ...)."""

    def __init__(self, inner, after_call=None):
        self.inner = inner
        self.name = inner.name
        self.batch_size = inner.batch_size
        self.after_call = after_call
        self.calls = 0
        self.in_flight = 0  # calls that started and have not returned yet
        self.recipients: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def quota(self):
        return self.inner.quota()

    def open(self, issue, message):
        return self.inner.open(issue, message)

    def send(self, recipients):
        with self._lock:
            self.in_flight += 1
        try:
            deliveries = self.inner.send(recipients)
            with self._lock:
                self.calls += 1
                call = self.calls
                self.recipients.update(r.subscriber_id for r in recipients)
            if self.after_call:
                self.after_call(call, recipients)
            return deliveries
        finally:
            with self._lock:
                self.in_flight -= 1

    def close(self, complete):
        return self.inner.close(complete)


def dead_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# --------------------------------------------------------------------------
# end to end


def check_message(raw: bytes, reader, signer: Signer, footer: bool = True) -> str:
    """Check one .eml against everything a message must carry (with
    ``footer``, each of its footer's controls too); return its unsubscribe
    link."""
    lines = raw.split(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF"
    assert max(len(line) for line in lines) <= 998

    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["From"] == FROM
    to = msg["To"].addresses
    assert len(to) == 1 and len(msg.get_all("To")) == 1
    assert to[0].addr_spec == reader.email
    assert to[0].display_name == reader.name
    assert msg["Subject"] == "Daily Papers · Tue 11 Mar 2025 · 85 papers"
    assert msg["Date"] and msg["Message-ID"].endswith("@example.com>")
    assert msg["X-Newsletter-Issue"] == DATE
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    match = re.fullmatch(r"<(https?://[^>\s]+)>", msg["List-Unsubscribe"])
    assert match, msg["List-Unsubscribe"]
    url = match.group(1)
    assert url.startswith(f"{BASE}/u/")
    # The reader's own link: the signed token carries their reference.
    assert signer.subscriber_ref(personal_token(url)) == reader.ref

    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    text, html = (p.get_content() for p in parts)
    # The same personal link in both footers (after the papers), and nowhere
    # else: Unsubscribe, and its weekly and pause pages.
    assert text.count(url) == 3 and text.index(url) > text.index("1. ")
    assert html.count(escape(url)) == 3 and f'href="{escape(url)}"' in html
    assert "/u/" not in text.replace(url, "") and "/u/" not in html.replace(escape(url), "")
    if footer:
        assert_controls_signed_for(html, text, reader.ref)
    # A view-in-browser link without any token.
    web = f"{BASE}/issues/{DATE}"
    assert f'href="{web}"' in html and web in text
    assert set(re.findall(r'href="([^"]*/issues/[^"]*)"', html)) == {web}
    return url


def test_send_to_1000_readers_end_to_end(env, db, web_client):
    readers = add_readers(db, 1000, name=lambda i: "Zoë Ünïcode" if i % 100 == 7 else f"Reader {i}")
    signer = Signer(SECRET)

    result = send(env)
    assert result.exit_code == 0, result.output
    assert "sent 1,000, failed 0, unknown 0" in result.stdout
    assert str(outbox(env)) in result.stdout

    files = sorted(outbox(env).iterdir())
    # One file a reader, named by id and address; nothing else, no temp files.
    assert [p.name for p in files] == sorted(f"{r.id}-{r.email}.eml" for r in readers)
    links = {}
    for n, reader in enumerate(readers):
        # Every tenth reader's footer controls too (parsing the HTML of all
        # 1,000 takes most of the test's time; the links are the same code).
        links[reader.id] = check_message((outbox(env) / f"{reader.id}-{reader.email}.eml").read_bytes(), reader,
                                         signer, footer=n % 10 == 0)
    assert len(set(links.values())) == 1000

    ledger = rows(db)
    assert len(ledger) == 1000
    assert {(sid, status, message_id) for sid, status, message_id, _ in ledger} == {
        (r.id, "sent", f"{r.id}-{r.email}.eml") for r in readers
    }

    # Each reader's one-click link unsubscribes that reader, and only them.
    client = web_client()
    sample = readers[::50]
    assert len(sample) == 20
    for reader in sample:
        response = client.post(urlsplit(links[reader.id]).path, data=ONE_CLICK,
                                content_type="application/x-www-form-urlencoded")
        assert response.status_code == 200
        assert db.get(ref=reader.ref).status == UNSUBSCRIBED
        assert db.events(reader.id)[-1].source == "one-click"
    assert db.counts()["unsubscribed"] == 20

    before = {p.name: p.stat().st_mtime_ns for p in files}
    again = send(env)
    assert again.exit_code == 0, again.output
    assert "already sent" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in outbox(env).iterdir()} == before
    assert counts(db)["sent"] == 1000


# --------------------------------------------------------------------------
# who gets mail


def test_inactive_readers_never_get_mail(env, db):
    readers = add_readers(db, 30)
    for reader, status in zip(readers[:9], [UNSUBSCRIBED, BOUNCED, COMPLAINED] * 3):
        assert db.change_status(reader.id, status, source="test", reason="test")
    active = [r.id for r in readers[9:]]

    first = send(env, "--limit", "10")
    assert first.exit_code == 0, first.output
    assert outbox_ids(env) == set(active[:10])

    # A reader who leaves between two runs is not sent by the second.
    leaving = active[15]
    assert db.unsubscribe(db.get(email=f"reader{15 + 9}@example.org").ref, source="web", reason="test")[1]
    second = send(env)
    assert second.exit_code == 0, second.output
    expected = set(active) - {leaving}
    assert outbox_ids(env) == expected
    assert {r[0] for r in rows(db)} == expected  # no ledger row for anyone inactive
    assert counts(db) == {"pending": 0, "sent": 20, "failed": 0, "unknown": 0}


def test_an_unsubscribe_during_the_send_is_honoured(store, tmp_path):
    readers = add_readers(store, 120)
    late = readers[-1]

    def leave_after_first_call(call, _recipients):
        if call == 1:
            store.unsubscribe(late.ref, source="one-click", reason="test")

    sender = Recording(OutboxSender(tmp_path / "outbox"), leave_after_first_call)
    report = dispatcher(store, sender, SendOptions(concurrency=1)).run(the_issue())
    assert report.complete
    assert (report.sent, report.skipped, report.left) == (119, 1, 0)
    assert late.id not in sender.recipients
    assert late.id not in {r[0] for r in rows(store)}
    assert late.id not in readers_in_outbox(tmp_path / "outbox" / DATE)


# --------------------------------------------------------------------------
# options and bad input


def test_dry_run_sends_nothing(env, db):
    add_readers(db, 25)
    result = send(env, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Would send" in result.stdout and "to 25 readers" in result.stdout
    assert "Nothing was sent" in result.stdout
    assert not Path(env["NEWSLETTER_OUTBOX_DIR"]).exists()
    assert counts(db) == {"pending": 0, "sent": 0, "failed": 0, "unknown": 0}

    limited = send(env, "--dry-run", "--limit", "7")
    assert "to 7 readers" in limited.stdout


def test_to_sends_one_test_message_outside_the_ledger(env, db):
    add_readers(db, 5)
    result = send(env, "--to", "Editor@Example.org")
    assert result.exit_code == 0, result.output
    assert "Sent a test" in result.stdout and "Editor@example.org" in result.stdout
    files = list(outbox(env).iterdir())
    assert len(files) == 1
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert [a.addr_spec for a in msg["To"].addresses] == ["Editor@example.org"]
    assert msg["X-Newsletter-Issue"] == DATE
    assert counts(db) == {"pending": 0, "sent": 0, "failed": 0, "unknown": 0}

    # The real send afterwards still goes to everyone.
    assert send(env).exit_code == 0
    assert counts(db)["sent"] == 5


def test_limit_then_rerun_sends_the_rest_without_duplicates(env, db):
    readers = add_readers(db, 25)
    first = send(env, "--limit", "10")
    assert first.exit_code == 0, first.output
    assert "sent 10," in first.stdout
    assert outbox_ids(env) == {r.id for r in readers[:10]}
    stamps = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in outbox(env).iterdir()}

    second = send(env)
    assert second.exit_code == 0, second.output
    assert "sent 15," in second.stdout
    assert outbox_ids(env) == {r.id for r in readers}
    # The first ten were not written again.
    assert {name: ((outbox(env) / name).stat().st_ino, (outbox(env) / name).stat().st_mtime_ns)
            for name in stamps} == stamps
    assert counts(db) == {"pending": 0, "sent": 25, "failed": 0, "unknown": 0}


def test_the_collectors_settings_are_the_processs_own_again_after_a_send(env, db, monkeypatch):
    """A send runs with the collector's youngest generation collected less
    often and what was loaded before it frozen (run._send_edition); both
    are put back once it ends, whether it sent or failed, so whatever
    the process does next (a test, an embedding program) runs as before."""
    import gc

    from newsletter.sending import run as send_run

    add_readers(db, 5)
    before = gc.get_threshold()
    during = []
    real_run = Dispatcher.run

    def watched(self, issue, picker=None, opened=None):
        during.append((gc.get_threshold(), gc.get_freeze_count() > 0))
        return real_run(self, issue, picker, opened)

    monkeypatch.setattr(Dispatcher, "run", watched)
    assert send(env).exit_code == 0
    assert during == [((send_run.SEND_GC_THRESHOLD, *before[1:]), True)]
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0

    def failing(self, issue, picker=None, opened=None):
        raise SendLocked("another run holds it")

    monkeypatch.setattr(Dispatcher, "run", failing)
    assert send(env).exit_code != 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_an_empty_batch_sends_nothing(env, db, tmp_path):
    add_readers(db, 3)
    batch = canonical_batch(tmp_path / "empty.json", [])
    result = send(env, batch=batch)
    assert result.exit_code == 0, result.output
    assert "nothing sent" in result.stdout
    assert not Path(env["NEWSLETTER_OUTBOX_DIR"]).exists()
    assert counts(db)["sent"] == 0


def test_a_stray_control_character_in_one_abstract_does_not_stop_the_day(env, db, tmp_path):
    add_readers(db, 3)
    batch = canonical_batch(tmp_path / "day.json", [
        {"title": "First", "abstract": "Fine."},
        {"title": "Second", "abstract": "One stray\x00 NUL."},
    ])
    result = send(env, batch=batch)
    assert result.exit_code == 0, result.output
    assert "sent 3, failed 0" in result.stdout
    assert result.stderr.splitlines()[0] == (
        'Warning: {}, papers[1] ("Second"): removed 1 control character from the abstract'.format(batch))
    assert sum("Warning:" in line for line in result.stderr.splitlines()) == 1
    assert counts(db)["sent"] == 3


@pytest.mark.parametrize("content", [b"", b"{\"date\": \"2025-03-11\", \"papers\": [{\"title\": 3}]}"])
def test_a_bad_batch_exits_2_and_sends_nothing(env, db, tmp_path, content):
    add_readers(db, 3)
    batch = tmp_path / "bad.json"
    batch.write_bytes(content)
    result = send(env, batch=batch)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error:") and "bad.json" in result.stderr
    assert not Path(env["NEWSLETTER_OUTBOX_DIR"]).exists()
    assert counts(db)["sent"] == 0


def test_a_missing_secret_key_exits_2(env, db):
    add_readers(db, 3)
    del env["NEWSLETTER_SECRET_KEY"]
    result = send(env)
    assert result.exit_code == 2, result.output
    assert "NEWSLETTER_SECRET_KEY" in result.stderr
    assert not Path(env["NEWSLETTER_OUTBOX_DIR"]).exists()
    assert counts(db)["sent"] == 0


# --------------------------------------------------------------------------
# the lock


def test_a_live_lock_holder_blocks_the_send(env, db):
    add_readers(db, 10)
    holder = f"{socket.gethostname()}:{os.getpid()}:other-run"
    assert Ledger(db, DAY).acquire(holder, lambda owner: False) is None

    result = send(env)
    assert result.exit_code == 4, result.output  # the lock's own code
    assert "another run" in result.stderr and holder in result.stderr
    assert not outbox_ids(env) and counts(db)["sent"] == 0

    Ledger(db, DAY).release(holder)
    assert send(env).exit_code == 0
    assert counts(db)["sent"] == 10


def test_a_lock_of_a_dead_process_is_taken_over(env, db):
    add_readers(db, 10)
    holder = f"{socket.gethostname()}:{dead_pid()}:dead-run"
    assert Ledger(db, DAY).acquire(holder, lambda owner: False) is None

    result = send(env)
    assert result.exit_code == 0, result.output
    assert counts(db)["sent"] == 10
    with db.reader.connect() as conn:  # released at the end
        assert conn.execute(send_locks_table.select()).all() == []


def test_a_lock_with_a_stale_heartbeat_is_taken_over(env, db):
    add_readers(db, 10)
    holder = "another-host.example:4242:far-away"  # its pid cannot be checked from here
    assert Ledger(db, DAY).acquire(holder, lambda owner: False) is None
    refused = send(env)
    assert refused.exit_code == 4 and "another run" in refused.stderr  # fresh heartbeat: alive

    with db.engine.begin() as conn:
        conn.execute(update(send_locks_table).values(
            heartbeat_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)))
    result = send(env)
    assert result.exit_code == 0, result.output
    assert counts(db)["sent"] == 10


def lock_heartbeat(store) -> dt.datetime:
    """When the issue's send lock last had a heartbeat."""
    with store.reader.connect() as conn:
        beat = conn.execute(send_locks_table.select()).one().heartbeat_at
    return beat if beat.tzinfo else beat.replace(tzinfo=dt.timezone.utc)


def test_the_heartbeat_goes_on_while_the_last_calls_drain(store, tmp_path):
    add_readers(store, 5)
    beats = []

    def slow_call(_call, _recipients):
        # The only call: every chunk has been submitted, so the run only
        # waits for this call now. Three more beats while it is in flight
        # (the run's main thread is done submitting long before the last).
        beats.append(lock_heartbeat(store))
        while len(beats) < 4:
            wait_until(lambda: lock_heartbeat(store) != beats[-1], "the next heartbeat while the call is in flight")
            beats.append(lock_heartbeat(store))

    sender = Recording(OutboxSender(tmp_path / "outbox"), slow_call)
    report = dispatcher(store, sender, SendOptions(heartbeat_seconds=0.02)).run(the_issue())
    assert report.complete and report.sent == 5 and sender.calls == 1
    assert beats == sorted(beats) and len(set(beats)) == 4


def test_a_failing_heartbeat_is_logged_and_the_next_beat_goes_on(store, tmp_path, monkeypatch, caplog):
    add_readers(store, 5)
    beat = Ledger.heartbeat
    failures = [StoreError("database unreachable (OperationalError)")]

    def one_failing_beat(self, owner):
        if failures:
            raise failures.pop()
        beat(self, owner)

    monkeypatch.setattr(Ledger, "heartbeat", one_failing_beat)

    def warned() -> list[logging.LogRecord]:
        return [r for r in list(caplog.records) if "heartbeat" in r.getMessage()]

    def slow_call(_call, _recipients):
        wait_until(warned, "the failed beat's warning")
        after = lock_heartbeat(store)
        wait_until(lambda: lock_heartbeat(store) != after, "a beat after the failed one")

    with caplog.at_level(logging.WARNING, logger="newsletter.sending.dispatch"):
        report = dispatcher(store, Recording(OutboxSender(tmp_path / "outbox"), slow_call),
                            SendOptions(heartbeat_seconds=0.02)).run(the_issue())
    assert report.complete and report.sent == 5
    [record] = warned()
    assert record.levelno == logging.WARNING
    assert "StoreError: database unreachable (OperationalError)" in record.getMessage()


# --------------------------------------------------------------------------
# dead runs and unknown outcomes


def test_pending_rows_of_a_dead_run_become_unknown_and_are_not_resent(env, db):
    readers = add_readers(db, 30)
    # A run that died mid-call: its lock, and "pending" rows for its call.
    ledger = Ledger(db, DAY)
    assert ledger.acquire(f"{socket.gethostname()}:{dead_pid()}:died", lambda owner: False) is None
    in_flight = [r.id for r in readers[10:15]]
    ledger.mark_pending(in_flight)

    result = send(env)
    assert result.exit_code == 0, result.output
    assert "5 readers from a run that died mid-call are marked unknown" in result.stderr
    assert "--resend-unknown" in result.stderr
    assert counts(db) == {"pending": 0, "sent": 25, "failed": 0, "unknown": 5}
    assert {r[0] for r in rows(db, "unknown")} == set(in_flight)
    assert outbox_ids(env) == {r.id for r in readers} - set(in_flight)

    again = send(env)
    assert again.exit_code == 0 and "already sent" in again.stdout
    assert outbox_ids(env) == {r.id for r in readers} - set(in_flight)

    resent = send(env, "--resend-unknown")
    assert resent.exit_code == 0, resent.output
    assert "sent 5," in resent.stdout
    assert outbox_ids(env) == {r.id for r in readers}
    assert counts(db) == {"pending": 0, "sent": 30, "failed": 0, "unknown": 0}


def test_a_dead_run_after_everyone_else_was_sent_is_still_reported(env, db):
    readers = add_readers(db, 10)
    assert send(env, "--limit", "7").exit_code == 0
    ledger = Ledger(db, DAY)
    assert ledger.acquire(f"{socket.gethostname()}:{dead_pid()}:died", lambda owner: False) is None
    ledger.mark_pending(r.id for r in readers[7:])

    result = send(env)
    assert result.exit_code == 0, result.output
    assert "already sent" in result.stdout
    assert "3 readers from a run that died mid-call are marked unknown" in result.stderr
    assert counts(db) == {"pending": 0, "sent": 7, "failed": 0, "unknown": 3}


def test_an_interrupted_resend_keeps_the_unknown_readers_unknown(store, tmp_path):
    readers = add_readers(store, 40)
    ledger = Ledger(store, DAY)
    ledger.mark_pending(r.id for r in readers)
    assert ledger.resolve_abandoned() == 40  # all "unknown" now
    stop = threading.Event()

    def stop_after_first(call, _recipients):
        if call == 1:
            stop.set()

    sender = Recording(OutboxSender(tmp_path / "outbox"), stop_after_first)
    options = SendOptions(resend_unknown=True, concurrency=1)
    # A small batch size, so the first call is not the whole list.
    sender.batch_size = 10
    report = dispatcher(store, sender, options, stop).run(the_issue())
    assert report.interrupted and report.sent == 10
    # Those not resent are still "unknown": a later plain run leaves them alone.
    assert counts(store) == {"pending": 0, "sent": 10, "failed": 0, "unknown": 30}
    plain = dispatcher(store, Recording(OutboxSender(tmp_path / "outbox"))).run(the_issue())
    assert plain.already_sent and plain.sent == 0


def test_each_recipient_carries_their_choice_of_the_rest_of_the_day(store, tmp_path):
    readers = add_readers(store, 6)
    for reader in readers[::2]:
        store.save_profile(Profile(reader.id, picks=0, rest=RestOfDay.COUNT))
    store.save_profile(Profile(readers[1].id, picks=0))  # a profile left at the default
    seen = {}

    def note(_call, recipients):
        seen.update({r.subscriber_id: r.rest for r in recipients})

    issue = the_issue()
    picks = EditionPicks(store, issue.edition, DAY, issue.papers)
    report = dispatcher(store, Recording(OutboxSender(tmp_path / "outbox"), note)).run(issue, picks.for_readers)
    assert report.sent == 6
    assert seen == {r.id: RestOfDay.COUNT if n % 2 == 0 else RestOfDay.TITLES for n, r in enumerate(readers)}
    # Without picks (no picker): every title.
    seen.clear()
    Ledger(store, DAY).record((), forget=[r.id for r in readers])
    dispatcher(store, Recording(OutboxSender(tmp_path / "again"), note)).run(issue)
    assert set(seen.values()) == {RestOfDay.TITLES} and len(seen) == 6


# --------------------------------------------------------------------------
# the ledger, the report, and runs one after another


def test_the_ledger_records_outcomes_forgets_and_marks_unknown(store):
    ids = [r.id for r in add_readers(store, 6)]
    ledger = Ledger(store, DAY)
    ledger.mark_pending(ids)
    ledger.record([LedgerRow(ids[0], DeliveryStatus.SENT, "m-0"),
                   LedgerRow(ids[1], DeliveryStatus.FAILED, reason="refused")], forget=[ids[2]])
    ledger.record((), forget=[ids[3]])
    ledger.mark_unknown([ids[4]], "no answer")
    expected = [(ids[0], "sent", "m-0", None), (ids[1], "failed", None, "refused"),
                (ids[4], "unknown", None, "no answer"), (ids[5], "pending", None, None)]
    assert ledger.rows() == expected
    assert ledger.rows("unknown")[0].reason == "no answer"
    # A sender's "retry" (and "pending") is never an outcome to store.
    with pytest.raises(ValueError):
        ledger.record([LedgerRow(ids[5], DeliveryStatus.RETRY)])
    assert ledger.rows() == expected

    # The forgotten readers are the ones a run would send to.
    plan = ledger.plan()
    assert (plan.to_send, plan.sent, plan.failed, plan.unknown) == (2, 1, 1, 1)
    assert ledger.plan(resend_unknown=True).to_send == 3
    assert ledger.plan(resend_unknown=True, limit=2).to_send == 2


def test_dry_run_shows_the_plan_after_a_partial_send(env, db):
    add_readers(db, 25)
    assert send(env, "--limit", "10").exit_code == 0
    result = send(env, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "to 15 readers via outbox; already sent 10, failed 0, unknown 0." in result.stdout
    assert "to 4 readers" in send(env, "--dry-run", "--limit", "4").stdout
    assert counts(db)["sent"] == 10


def test_the_report_gives_the_error_and_exit_code_of_the_run():
    done = SendReport(DATE, to_send=5, sent=4, unknown=1)
    assert done.error() is None and done.exit_code == 0

    refused = AccountError("SES refuses to send for this account: AccountSuspendedException: suspended")
    stopped = SendReport(DATE, to_send=5, sent=2, left=3, stopped_by=refused)
    error = stopped.error()
    assert type(error) is AccountError and stopped.exit_code == 3
    assert str(error) == f"stopped: {refused}. 3 readers left; run again once fixed."
    assert error.__cause__ is refused  # the root cause stays with the error

    faults = SendReport(DATE, to_send=5, left=5, stopped_by=SendError("gave up after 12 attempts: HTTP 500"))
    assert type(faults.error()) is SendError and faults.exit_code == 1
    assert str(faults.error()).startswith("stopped: gave up after 12 attempts")

    interrupted = SendReport(DATE, to_send=5, sent=2, left=3, interrupted=True)
    assert type(interrupted.error()) is SendError and interrupted.exit_code == 1
    assert str(interrupted.error()).startswith("stopped before the end: 3 readers left")

    refusals = SendReport(DATE, to_send=5, sent=3, failed=2)
    assert type(refusals.error()) is ReadersFailed and refusals.exit_code == 1
    assert str(refusals.error()).startswith("2 readers were refused for good")


class Unreachable(Recording):
    """A sender whose provider cannot be reached."""

    def quota(self):
        raise TransientError("cannot reach SES: connection refused")


def test_set_up_faults_that_persist_stop_the_run_with_their_cause(store, tmp_path):
    add_readers(store, 3)
    run = dispatcher(store, Unreachable(OutboxSender(tmp_path / "outbox")),
                     SendOptions(max_attempts=2, backoff_base=0.001))
    with pytest.raises(AccountError) as caught:
        run.run(the_issue())
    assert str(caught.value) == "gave up after 2 attempts: cannot reach SES: connection refused"
    assert isinstance(caught.value.__cause__, TransientError)  # the root cause, for the logs
    assert counts(store) == {"pending": 0, "sent": 0, "failed": 0, "unknown": 0}
    with store.reader.connect() as conn:  # the lock was released
        assert conn.execute(send_locks_table.select()).all() == []


class Refusing(Recording):
    """A sender whose provider refuses the account while ``refusing`` is set."""

    def __init__(self, inner):
        super().__init__(inner)
        self.refusing = True

    def send(self, recipients):
        if self.refusing:
            raise AccountError("SES refuses to send for this account: SendingPausedException: paused")
        return super().send(recipients)


def test_a_dispatcher_run_again_starts_afresh(store, tmp_path):
    """What one run learns (the error that stopped it, its stop) stays with
    that run: the same dispatcher's next run sends."""
    add_readers(store, 30)
    sender = Refusing(OutboxSender(tmp_path / "outbox"))
    sender.batch_size = 10
    again = dispatcher(store, sender, SendOptions(concurrency=1))

    first = again.run(the_issue())
    assert isinstance(first.stopped_by, AccountError) and "SendingPausedException" in str(first.stopped_by)
    assert (first.sent, first.left, first.exit_code) == (0, 30, 3)
    assert counts(store) == {"pending": 0, "sent": 0, "failed": 0, "unknown": 0}

    sender.refusing = False
    second = again.run(the_issue())
    assert second.complete and second.stopped_by is None and not second.interrupted
    assert (second.sent, second.exit_code) == (30, 0)
    assert counts(store) == {"pending": 0, "sent": 30, "failed": 0, "unknown": 0}


# --------------------------------------------------------------------------
# interruption (SIGTERM, Ctrl-C)


def test_a_stopped_run_finishes_its_calls_and_the_next_run_completes(store, tmp_path):
    readers = add_readers(store, 600)  # 12 calls of 50: far more than can be in flight
    stop = threading.Event()

    def stop_after_three(call, _recipients):
        if call == 3:
            # What the SIGTERM/SIGINT handler does, while another call is in flight.
            wait_until(lambda: first_sender.in_flight >= 2, "another call in flight")
            stop.set()
        elif call > 3:
            stop.wait(60)  # still in flight when the stop comes

    first_sender = Recording(OutboxSender(tmp_path / "outbox"), stop_after_three)
    first = dispatcher(store, first_sender, SendOptions(concurrency=4), stop).run(the_issue())
    assert first.interrupted and not first.complete
    # The calls in flight finished whole; nothing more was started.
    assert 150 <= first.sent < 600 and first.sent % 50 == 0
    assert first.sent == sum(first_sender.recipients.values())
    assert first.left == 600 - first.sent
    ledger = counts(store)
    assert ledger["pending"] == 0 and ledger["unknown"] == 0
    assert ledger["sent"] == first.sent
    assert {r[0] for r in rows(store)} == set(first_sender.recipients)
    folder = tmp_path / "outbox" / DATE
    assert readers_in_outbox(folder) == set(first_sender.recipients)
    assert len(list(folder.iterdir())) == len(first_sender.recipients)  # no other file, no temp file

    second_sender = Recording(OutboxSender(tmp_path / "outbox"))
    second = dispatcher(store, second_sender).run(the_issue())
    assert second.complete and second.sent == 600 - first.sent
    together = first_sender.recipients + second_sender.recipients
    assert together == collections.Counter({r.id: 1 for r in readers})
    assert counts(store) == {"pending": 0, "sent": 600, "failed": 0, "unknown": 0}


# --------------------------------------------------------------------------
# the rate limiter


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeStop:
    """A stop event whose waits advance the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.waits: list[float] = []
        self.set_ = False

    def wait(self, seconds: float) -> bool:
        self.waits.append(round(seconds, 9))
        self.clock.now += seconds
        return self.set_

    def is_set(self) -> bool:
        return self.set_


def test_rate_limiter_spaces_calls_by_count_over_rate():
    clock = FakeClock()
    stop = FakeStop(clock)
    limiter = RateLimiter(100, clock=clock)
    starts = []
    for count in (10, 10, 20, 50, 1):
        assert limiter.take(count, stop)
        starts.append(round(clock.now - 100, 9))
    # Each call starts once the previous one's recipients fit in the rate.
    assert starts == [0.0, 0.1, 0.2, 0.4, 0.9]
    assert stop.waits == [0.1, 0.1, 0.2, 0.5]

    # Idle time banks no burst: after a pause, calls are spaced again.
    clock.now += 10
    stop.waits.clear()
    assert limiter.take(50, stop) and limiter.take(50, stop)
    assert stop.waits == [0.5]

    # A stop while waiting: False, so the caller sends nothing.
    stop.set_ = True
    assert limiter.take(10, stop) is False


def test_rate_limiter_slows_down_and_recovers_within_bounds():
    limiter = RateLimiter(100, clock=FakeClock())
    limiter.slow_down()
    assert limiter.rate == pytest.approx(70)
    limiter.slow_down()
    assert limiter.rate == pytest.approx(49)
    for _ in range(100):
        limiter.slow_down()
    assert limiter.rate == 1.0  # never below one a second
    limiter.speed_up()
    assert limiter.rate == pytest.approx(3.0)  # +2% of the maximum per good call
    for _ in range(100):
        limiter.speed_up()
    assert limiter.rate == 100  # never above the maximum

    slow = RateLimiter(0.5, clock=FakeClock())  # NEWSLETTER_MAX_SEND_RATE below 1/s
    for _ in range(5):
        slow.slow_down()
        assert 0 < slow.rate <= 0.5
    for _ in range(100):
        slow.speed_up()
    assert slow.rate == 0.5


def test_rate_limiter_paces_a_real_dispatch(store, tmp_path):
    """With a rate, calls carry at most a second's worth of recipients."""
    add_readers(store, 30)
    sender = Recording(OutboxSender(tmp_path / "outbox"))
    report = dispatcher(store, sender, SendOptions(max_rate=2000)).run(the_issue())
    assert report.complete and report.rate == 2000 and report.sent == 30

    sizes = []
    sender = Recording(OutboxSender(tmp_path / "outbox2"), lambda _c, r: sizes.append(len(r)))
    add_readers(store, 6, start=100)
    report = dispatcher(store, sender, SendOptions(max_rate=4)).run(the_issue())
    assert report.sent == 6 and report.rate == 4 and max(sizes) == 4


# --------------------------------------------------------------------------
# personalization


def bodies(raw: bytes) -> tuple[str, str]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()


def same_text(a: str, b: str) -> bool:
    return a.replace("\r\n", "\n").rstrip("\n") == b.replace("\r\n", "\n").rstrip("\n")


@pytest.mark.parametrize("url", [
    "https://news.example.org/u/IjNvYlg4Nm9UYmtOeUlFaHpXY1ZERXci.kwzqPO7dj4waozjM13LlqBx3y7M",
    "https://news.example.org/a/very/long/path/" + "x" * 150 + "/u/tok?a=1&b=2",
])
def test_render_fills_in_the_reader_and_matches_personalized(url):
    issue = the_issue()
    prepared = PreparedMessage(issue, FROM)
    recipient = Recipient(42, "zoe@example.org", "Zoë Ünïcode-Ærøskøbing", url)
    raw = prepared.render(recipient)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998

    msg = email.message_from_bytes(raw, policy=email.policy.default)
    (to,) = msg["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Zoë Ünïcode-Ærøskøbing", "zoe@example.org")
    assert msg["List-Unsubscribe"] == f"<{url}>"
    html_expected, text_expected = issue.personalized(url)
    text, html = bodies(raw)
    assert same_text(text, text_expected)
    assert same_text(html, html_expected)


def test_each_render_has_a_unique_message_id():
    prepared = PreparedMessage(the_issue(), FROM)
    recipient = Recipient(7, "a@example.org", None, "https://news.example.org/u/t")
    ids = [email.message_from_bytes(prepared.render(recipient))["Message-ID"] for _ in range(200)]
    assert len(set(ids)) == 200
    assert all(re.fullmatch(r"<20250311\.7\.[0-9a-f]+@example\.com>", i) for i in ids)
    other = Recipient(8, "b@example.org", None, "https://news.example.org/u/t")
    assert email.message_from_bytes(prepared.render(other, "fixed.id"))["Message-ID"] == "<fixed.id@example.com>"


@pytest.mark.parametrize("name", ["😀" * 200, "名前" * 100, "Zoë " * 45 + "Z", "a" * 200, 'Jo "Q", Smith'])
def test_long_or_unusual_names_keep_header_lines_short(name):
    prepared = PreparedMessage(the_issue(), FROM)
    raw = prepared.render(Recipient(3, "n@example.org", name, "https://news.example.org/u/t"))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    if not name.isascii():
        assert max(len(line) for line in head.split(b"\r\n")) <= 78  # encoded words, folded
    to = email.message_from_bytes(raw)["To"]  # unparsed, with its folds
    decoded = str(email.header.make_header(email.header.decode_header(to)))
    assert email.utils.parseaddr(decoded) == (name, "n@example.org")
