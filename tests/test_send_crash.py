"""`newsletter send` as a real process against the SES v2 stand-in, killed
and stopped mid-run: every reader still ends with exactly one message, and
the ledger agrees with what the provider accepted.

- SIGKILL at several points, each where it is meant to land: between calls
  (the run frozen with no reader "pending") or mid-call (every worker's
  call held by the provider), re-running after each kill;
- SIGKILL while calls are stuck before reaching the provider (a relay that
  stops passing bytes on): readers "unknown" with no message, which
  --resend-unknown then delivers once;
- two runs started at once: one sends, the other is refused by the lock;
- SIGTERM: a prompt, clean stop (exit 1, no "pending" rows), then a re-run
  that finishes the job.

Every wait is for a condition (messages accepted, requests held or
finished by the provider, requests swallowed by a relay, a frozen run with
nothing pending); the deadlines only catch a hang.
"""

from __future__ import annotations

import collections
import datetime as dt
import email.utils
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from conftest import EXAMPLE, SECRET, clean_env, free_port
from newsletter.core.models import Edition, Profile, SubscriberRow
from newsletter.store import Ledger, open_store
from newsletter.store.schema import subscribers_table
from sesv2_standin import SesV2StandIn

DATE = "2025-03-11"
DAY = dt.date(2025, 3, 11)
READERS = 2000
RATE = 400  # messages per second the send paces itself to (50 per call: 8 calls/s)
CONCURRENCY = 8  # calls a run has in flight at most (the setting's default), one per worker
DEADLINE = 60  # seconds: a run or a wait that takes longer is a hang
INTERESTS = ["machine unlearning", "contrastive learning", "neural architecture search", "open-vocabulary detection",
             "concept bottleneck models"]

# `newsletter` without the SES pre-flight's one-second pacing (see the file).
UNPACED = Path(__file__).resolve().parent / "newsletter_unpaced.py"


# --------------------------------------------------------------------------
# a database of READERS subscribers, built once and copied for each test


@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("crash-db") / "newsletter.db"
    store = open_store(f"sqlite:///{path}")
    try:
        # Some readers have a name, one of them not ASCII: the address the
        # stand-in sees is then "Name <address>" or RFC 2047-encoded.
        rows = []
        for i in range(READERS):
            name = None if i % 3 else (f"Lectora Nº {i}" if i % 7 == 0 else f"Reader {i}")
            rows.append(SubscriberRow(i + 1, f"reader{i:04d}@example.org", name))
        report = store.import_subscribers(rows)
        assert len(report.added) == READERS
        # Half the readers have interests, so most of them get picks.
        for subscriber in store.iter_subscribers():
            if subscriber.id % 2 == 0:
                store.save_profile(Profile(subscriber.id, interests=(INTERESTS[subscriber.id % len(INTERESTS)],)))
    finally:
        store.close()  # checkpoints the WAL into the file
    return path


@pytest.fixture
def db(template_db, tmp_path) -> Path:
    folder = tmp_path / "subscribers"
    folder.mkdir()
    shutil.copy(template_db, folder / "newsletter.db")
    return folder / "newsletter.db"


@pytest.fixture
def ses():
    # The provider allows more than the send asks for (no throttling) and has
    # no daily quota, so every message counted here is one the send meant.
    with SesV2StandIn(max_send_rate=1000, max_24_hour_send=-1) as standin:
        yield standin


# --------------------------------------------------------------------------
# helpers


def send_env(ses: SesV2StandIn, db: Path, tmp_path: Path, endpoint_url: str | None = None) -> dict[str, str]:
    return clean_env(
        NEWSLETTER_SENDER="ses",
        NEWSLETTER_SES_ENDPOINT_URL=endpoint_url or ses.endpoint_url,
        NEWSLETTER_DATABASE_URL=f"sqlite:///{db}",
        NEWSLETTER_SECRET_KEY=SECRET,
        NEWSLETTER_MAX_SEND_RATE=str(RATE),
        NEWSLETTER_SEND_CONCURRENCY=str(CONCURRENCY),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="",
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )


class HoldingProxy:
    """A TCP relay on 127.0.0.1 in front of the stand-in. Once ``hold()`` is
    called, bytes are no longer passed on in either direction: a request
    sent after that never reaches the provider. ``swallowed`` counts the
    requests that went into the relay that way."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.held = threading.Event()
        self.swallowed = 0
        self.listener = socket.create_server(("127.0.0.1", free_port()))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold(self) -> None:
        self.held.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, outbound: bool) -> None:
        try:
            while data := source.recv(65536):
                if not self.held.is_set():
                    target.sendall(data)
                elif outbound:
                    self.swallowed += data.count(b"POST /v2/")  # one pump thread per connection
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            sock.close()


class Run:
    """One `python -m newsletter send` process, its output in files."""

    count = 0

    def __init__(self, env: dict[str, str], folder: Path, *extra: str):
        Run.count += 1
        self.out = folder / f"send-{Run.count}.out"
        self.err = folder / f"send-{Run.count}.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(UNPACED), "send", str(EXAMPLE), "--date", DATE, *extra],
                cwd=folder, env=env, stdout=out, stderr=err,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self, timeout: float = DEADLINE) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"send did not finish within {timeout} s:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL, and reap it: an unreaped child still looks alive to the
        next run's lock check."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def frozen(self) -> bool:
        """Whether every thread of the run is stopped (by SIGSTOP)."""
        states = []
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass  # a thread that ended meanwhile
        return all(state in ("T", "t") for state in states)

    def kill_between_calls(self, db: Path) -> None:
        """SIGKILL at a moment no reader is "pending": no call is in flight,
        and no worker is between writing "pending" and its request reaching
        the provider. The run is frozen (SIGSTOP) while the ledger is read,
        so it cannot start a call meanwhile; let go on (SIGCONT) and tried
        again when a worker was there after all, or was frozen mid-write
        (see :func:`writing`)."""
        while True:
            wait_for(lambda: pending_rows(db) == 0, "a moment with no call in flight", self)
            self.process.send_signal(signal.SIGSTOP)
            wait_for(self.frozen, "the run to be frozen", self)
            if not writing(db) and pending_rows(db) == 0:
                break
            self.process.send_signal(signal.SIGCONT)
        self.kill()

    def kill_in_calls(self, ses: SesV2StandIn, db: Path) -> set[str]:
        """SIGKILL while every call the run has under way is held at the
        provider (the caller armed ``ses.hold_next``), so no worker is
        between writing "pending" and its request going out: each worker's
        call held, or, near the end of the list, every "pending" reader in a
        held call. The run is frozen (SIGSTOP) while that is checked, so no
        worker writes "pending" meanwhile; let go on (SIGCONT) and checked
        again when one did, or was frozen mid-write (see :func:`writing`).
        Then the provider finishes those calls, whose
        answers nobody reads. Returns the readers they carried (each
        accepted once)."""
        def all_held() -> bool:
            return ses.held > 0 and pending_rows(db) == ses.held_recipients

        while True:
            wait_for(all_held, "every call under way held by the provider", self)
            self.process.send_signal(signal.SIGSTOP)
            wait_for(self.frozen, "the run to be frozen", self)
            if not writing(db) and all_held():
                break
            self.process.send_signal(signal.SIGCONT)
        killed_at = time.time()
        self.kill()
        ses.clear_faults()
        # Released at once, the held calls are a burst: let the provider's
        # rate have room for all of them, or it would throttle some, which a
        # killed run can no longer retry (their readers would stay "unknown").
        held = ses.held_recipients
        wait_for(lambda: ses.rate_room >= held, f"room in the provider's rate for the {held} held messages")
        ses.release()
        wait_for(lambda: ses.busy == 0, "the held requests to finish on the provider's side")
        late = [m for m in ses.sent if m.accepted_at > killed_at]
        return {email.utils.parseaddr(a)[1].lower() for m in late for a in m.to}

    @property
    def stdout(self) -> str:
        return self.out.read_text(encoding="utf-8")

    @property
    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8")

    def output(self) -> str:
        return f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"


def wait_for(predicate, what: str, run: Run | None = None, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if run is not None and run.process.poll() is not None:
            pytest.fail(f"send exited ({run.process.returncode}) before {what}:\n{run.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def writing(db: Path) -> bool:
    """Whether a transaction holds the database's write lock now: a run
    frozen (SIGSTOP) in the middle of committing "pending" rows has written
    them where a reader does not see them yet, and a kill then would leave
    them for the next run to find, with no request sent. (``BEGIN
    IMMEDIATE`` takes the write lock, which only another writer holds.)"""
    conn = sqlite3.connect(db, timeout=0)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.rollback()
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


def pending_rows(db: Path) -> int:
    """The ledger's "pending" rows, in every edition (read without waiting
    for a writer, frozen or not)."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM deliveries WHERE status = 'pending'").fetchone()[0]
    finally:
        conn.close()


def accepted(ses: SesV2StandIn) -> collections.Counter:
    """Messages the stand-in accepted, by bare lower-cased address."""
    counts: collections.Counter = collections.Counter()
    for address, n in ses.count_by_recipient().items():
        counts[email.utils.parseaddr(address)[1].lower()] += n
    return counts


class LedgerView:
    """The ledger of the issue, read from the test process."""

    def __init__(self, db: Path):
        self.store = open_store(f"sqlite:///{db}")
        self.ledger = Ledger(self.store, DAY)
        self.email = {s.id: s.email.lower() for s in self.store.iter_subscribers()}

    def close(self) -> None:
        self.store.close()

    def by_status(self) -> dict[str, set[str]]:
        rows: dict[str, set[str]] = collections.defaultdict(set)
        for subscriber_id, status, _message_id, _reason in self.ledger.rows():
            rows[status].add(self.email[subscriber_id])
        return rows

    def counts(self) -> dict[str, int]:
        return self.ledger.counts()


@pytest.fixture
def ledger(db):
    view = LedgerView(db)
    yield view
    view.close()


def assert_exactly_once(ses: SesV2StandIn, ledger: LedgerView) -> None:
    """Every reader has one message, and the ledger says "sent" for each
    (the runs here never lost an outcome)."""
    counts = accepted(ses)
    readers = set(ledger.email.values())
    assert set(counts) == readers
    assert max(counts.values()) == 1, [a for a, n in counts.items() if n > 1][:10]
    assert sum(counts.values()) == READERS == len(ses.sent)
    rows = ledger.by_status()
    assert rows["sent"] == readers
    assert ledger.counts() == {"pending": 0, "sent": READERS, "failed": 0, "unknown": 0}


# --------------------------------------------------------------------------
# SIGKILL


def assert_picks_as_stored(db: Path, ses: SesV2StandIn) -> None:
    """Every message carries its reader's picks as the ledger's picks table
    holds them (written with the reader's row, before the call), whichever
    run sent it: a rerun after a kill sends the same picks."""
    store = open_store(f"sqlite:///{db}")
    try:
        ids = {s.email: s.id for s in store.iter_subscribers()}
        stored = store.picks_of(DATE, ids.values())
    finally:
        store.close()
    with_picks = 0
    for message in ses.sent:
        reader = ids[email.utils.parseaddr(message.to[0])[1].lower()]
        carried = [int(p["c"].split("-")[0]) for p in message.template_data.get("picks", [])]
        assert carried == [pick.position for pick in stored.get(reader, [])], reader
        with_picks += bool(carried)
    assert with_picks > READERS // 4  # the test means something


def test_kill_9_at_several_points_then_rerun_sends_each_reader_exactly_once(ses, db, ledger, tmp_path):
    env = send_env(ses, db, tmp_path)
    abandoned_total = last_pending = 0  # "pending" rows found by the next run (each becomes "unknown")
    in_flight_at_kill: set[str] = set()  # readers whose request the stand-in finished after a kill

    def pending_now() -> int:
        return ledger.counts()["pending"]

    # Each run is killed once it has sent a few hundred messages: twice
    # between calls (the run frozen with no reader "pending": the kill lands
    # in its own work) and twice mid-call (every worker's call held by the
    # provider, which finishes them after the kill; enough readers are left
    # for all the workers). Never between writing "pending" and a request
    # going out: the relay test below makes that happen on purpose.
    for step, (after, where) in enumerate(((300, "between calls"), (300, "in calls"), (300, "between calls"),
                                           (200, "in calls"))):
        kill_at = len(ses.sent) + after
        if where == "in calls":
            # The provider holds the calls that arrive once kill_at messages
            # are in, whatever the test's own pace on a busy machine.
            ses.hold_next(READERS, operation="SendBulkEmail", once_sent=kill_at)
        run = Run(env, tmp_path)
        wait_for(lambda: len(ses.sent) >= kill_at, f"{after} messages from this run", run)
        if where == "in calls":
            carried = run.kill_in_calls(ses, db)
            assert carried, "no request was in flight when the run was killed"
            in_flight_at_kill |= carried
        else:
            run.kill_between_calls(db)
        assert run.process.returncode == -signal.SIGKILL
        pending = pending_now()
        assert (pending > 0) == (where == "in calls"), (where, pending)
        abandoned_total += pending
        last_pending = pending
        print(f"kill {step + 1} ({where}): accepted {len(ses.sent)}, ledger {ledger.counts()}")

    final = Run(env, tmp_path)
    assert final.wait() == 0, final.output()
    print(final.output())
    # The last kill's "pending" rows are reported as such by the run that found them.
    assert f"Warning: {last_pending:,} readers from a run that died mid-call are marked unknown" in final.stderr
    assert "Traceback" not in final.stderr

    counts = accepted(ses)
    readers = set(ledger.email.values())
    rows = ledger.by_status()
    sent, unknown = rows.get("sent", set()), rows.get("unknown", set())
    unknown_sent_once = {a for a in unknown if counts[a] == 1}
    unknown_never_sent = {a for a in unknown if counts[a] == 0}
    print(f"final: accepted {sum(counts.values())} for {len(counts)} readers; ledger {ledger.counts()}; "
          f"unknown with one message {len(unknown_sent_once)}, unknown with none {len(unknown_never_sent)}; "
          f"in flight at the kill {len(in_flight_at_kill)}")

    # Nothing left "pending", nothing failed; every reader has a row.
    assert ledger.counts()["pending"] == 0
    assert ledger.counts()["failed"] == 0
    assert sent | unknown == readers and not sent & unknown
    # "unknown" rows are exactly the "pending" rows the kills left behind.
    assert len(unknown) == abandoned_total
    # No reader got two messages; "sent" readers got exactly one.
    assert max(counts.values()) == 1, [a for a, n in counts.items() if n > 1][:10]
    assert all(counts[a] == 1 for a in sent)
    # The ledger agrees with the provider: sent == accepted minus unknown.
    assert sent == set(counts) - unknown
    # A reader whose call was in flight at the kill is "unknown", and the
    # provider has exactly one message for them (it finished the request).
    assert in_flight_at_kill <= unknown
    assert all(counts[a] == 1 for a in in_flight_at_kill)

    assert_picks_as_stored(db, ses)

    # No kill landed between writing "pending" and the request going out:
    # every "unknown" reader did get the issue, one message each, for all.
    assert not unknown_never_sent, sorted(unknown_never_sent)[:10]
    assert set(counts) == readers
    assert sum(counts.values()) == len(ses.sent) == READERS
    # And a re-run sends nothing more.
    again = Run(env, tmp_path)
    assert again.wait() == 0, again.output()
    assert "already sent" in again.stdout
    assert sum(accepted(ses).values()) == READERS


def test_a_kill_before_requests_reach_the_provider_leaves_unknown_readers_resend_unknown_delivers_once(
    ses, db, ledger, tmp_path
):
    # The run talks to the provider through a relay that stops passing bytes
    # on: the calls made after that never reach it. Killed then, those
    # readers are left "pending" (so "unknown") with no message at all; the
    # same happens, rarely, when a kill lands between writing "pending" and
    # the request going out. --resend-unknown is how they get the issue.
    proxy = HoldingProxy(ses.port)
    try:
        run = Run(send_env(ses, db, tmp_path, proxy.endpoint_url), tmp_path)
        wait_for(lambda: len(ses.sent) >= 300, "300 messages", run)
        proxy.hold()
        wait_for(lambda: proxy.swallowed >= 3, "more calls to go out into the relay", run)
        run.kill()
    finally:
        proxy.close()
    wait_for(lambda: ses.busy == 0, "the provider to finish the requests it had")
    env = send_env(ses, db, tmp_path)

    rerun = Run(env, tmp_path)
    assert rerun.wait() == 0, rerun.output()
    counts = accepted(ses)
    rows = ledger.by_status()
    unknown = rows["unknown"]
    never_sent = {a for a in unknown if counts[a] == 0}
    sent_once = unknown - never_sent
    print(f"unknown after the kill: {len(unknown)} ({len(never_sent)} with no message, {len(sent_once)} with one)")
    assert never_sent, "no call was held in the relay when the run was killed"
    assert f"Warning: {len(unknown):,} readers from a run that died mid-call are marked unknown" in rerun.stderr
    assert "--resend-unknown" in rerun.stderr
    # Without the option, nobody is sent twice and the unknown are left alone.
    assert max(counts.values()) == 1
    assert rows["sent"] == set(counts) - unknown
    assert len(rows["sent"]) + len(unknown) == READERS and ledger.counts()["pending"] == 0

    resend = Run(env, tmp_path, "--resend-unknown")
    assert resend.wait() == 0, resend.output()
    after = accepted(ses)
    assert all(after[a] == 1 for a in never_sent)  # delivered, exactly once
    assert all(after[a] == 2 for a in sent_once)  # the copy the option warns about
    assert all(after[a] == 1 for a in rows["sent"])
    assert set(after) == set(ledger.email.values())
    assert ledger.counts() == {"pending": 0, "sent": READERS, "failed": 0, "unknown": 0}


# --------------------------------------------------------------------------
# the lock


def test_two_runs_at_once_only_one_sends(ses, db, ledger, tmp_path):
    env = send_env(ses, db, tmp_path)
    first, second = Run(env, tmp_path), Run(env, tmp_path)
    codes = {first.pid: first.wait(), second.pid: second.wait()}
    runs = {first.pid: first, second.pid: second}
    winners = [pid for pid, code in codes.items() if code == 0]
    losers = [pid for pid, code in codes.items() if code != 0]
    assert len(winners) == 1 and len(losers) == 1, {pid: runs[pid].output() for pid in runs}
    winner, loser = runs[winners[0]], runs[losers[0]]
    assert codes[loser.pid] == 4, loser.output()  # the lock's own exit code
    message = loser.stderr.strip()
    assert message.startswith("Error: another run (") and "is sending the 2025-03-11 issue" in message, message
    assert f":{winner.pid}:" in message  # it names the run that holds the lock
    assert "Traceback" not in loser.stderr
    assert loser.stdout == ""
    assert f"sent {READERS:,}" in winner.stdout, winner.output()
    assert_exactly_once(ses, ledger)


# --------------------------------------------------------------------------
# SIGTERM


def test_sigterm_stops_promptly_and_cleanly_then_a_rerun_finishes(ses, db, ledger, tmp_path):
    env = send_env(ses, db, tmp_path)
    run = Run(env, tmp_path)
    wait_for(lambda: len(ses.sent) >= 300, "300 messages", run)
    run.process.send_signal(signal.SIGTERM)
    code = run.wait(timeout=10)  # prompt: a run that takes longer fails here
    assert code == 1, run.output()
    assert "SIGTERM: finishing the calls in flight, then stopping" in run.stderr, run.output()
    assert "stopped before the end" in run.stderr, run.output()
    assert "Traceback" not in run.stderr

    # A clean stop: the calls in flight finished and were recorded, so no
    # row is "pending" or "unknown", and "sent" is what the provider took.
    counts = ledger.counts()
    assert counts["pending"] == 0 and counts["unknown"] == 0, counts
    sent_so_far = accepted(ses)
    assert 300 <= counts["sent"] < READERS
    assert ledger.by_status()["sent"] == set(sent_so_far)
    left = READERS - counts["sent"]
    assert f"{left:,} readers left" in run.stderr, run.output()

    again = Run(env, tmp_path)
    assert again.wait() == 0, again.output()
    assert f"sent {left:,}," in again.stdout, again.output()
    assert "marked unknown" not in again.stderr
    assert_exactly_once(ses, ledger)


# --------------------------------------------------------------------------
# a mixed send: daily and weekly readers


def make_every_third_reader_weekly(db: Path) -> set[str]:
    """2025-03-11 is a Tuesday: every third reader is made weekly on
    Tuesdays, so one run sends the daily edition to the others, then the
    weekly one; returns their addresses."""
    store = open_store(f"sqlite:///{db}")
    try:
        with store.engine.begin() as conn:
            conn.execute(update(subscribers_table).where(subscribers_table.c.id % 3 == 0)
                         .values(frequency="weekly", weekday=1))
        return {s.email.lower() for s in store.iter_subscribers() if s.id % 3 == 0}
    finally:
        store.close()


def test_sigterm_while_the_weekly_is_checked_ends_the_run_without_a_copy_of_its_template_left(ses, db, ledger,
                                                                                               tmp_path):
    """The weekly edition's pre-flight runs while the daily sends, on a
    copy of its template: a stop then ends the daily after its calls in
    flight (every outcome recorded) and the check after its call in
    flight, deletes the copy, and never starts the weekly."""
    make_every_third_reader_weekly(db)
    env = send_env(ses, db, tmp_path)
    # The weekly's first render, the first to come once the daily sends, waits at SES.
    ses.hold_next(1, operation="TestRenderEmailTemplate", once_sent=1)
    run = Run(env, tmp_path)
    wait_for(lambda: ses.held == 1, "the weekly edition's check", run)
    run.process.send_signal(signal.SIGTERM)
    ses.release()
    code = run.wait(timeout=10)  # prompt: a run that takes longer fails here
    assert code == 1, run.output()
    assert "Not started: the weekly edition of 2025-03-11" in run.stderr, run.output()
    assert "Traceback" not in run.stderr
    assert [name for name in ses.templates if "-check-" in name] == []
    counts = ledger.counts()  # the daily's
    assert counts["pending"] == 0 and counts["unknown"] == 0 and counts["sent"] == len(ses.sent), counts
    store = open_store(f"sqlite:///{db}")
    try:
        assert sum(Ledger(store, Edition.parse("2025-03-11-weekly")).counts().values()) == 0
    finally:
        store.close()


def test_kill_9_in_a_mixed_send_then_rerun_gives_every_reader_exactly_their_edition_once(ses, db, tmp_path):
    weekly = make_every_third_reader_weekly(db)
    env = send_env(ses, db, tmp_path)
    daily_count = READERS - len(weekly)
    # Killed once in each edition: mid-daily with every worker's call held
    # by the provider, then between calls once the weekly is going out.
    ses.hold_next(READERS, operation="SendBulkEmail", once_sent=daily_count // 2)
    run = Run(env, tmp_path)
    wait_for(lambda: len(ses.sent) >= daily_count // 2, f"{daily_count // 2} messages", run)
    assert run.kill_in_calls(ses, db), "no request was in flight when the run was killed"
    run = Run(env, tmp_path)
    wait_for(lambda: len(ses.sent) >= daily_count + len(weekly) // 3, "the weekly edition going out", run)
    run.kill_between_calls(db)
    final = Run(env, tmp_path)
    assert final.wait() == 0, final.output()

    editions: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for message in ses.sent:
        for address in message.to:
            editions[email.utils.parseaddr(address)[1].lower()][message.header("X-Newsletter-Issue")] += 1
    store = open_store(f"sqlite:///{db}")
    try:
        emails = {s.id: s.email.lower() for s in store.iter_subscribers()}
        rows = {key: {emails[r.subscriber_id]: r.status for r in Ledger(store, Edition.parse(key)).rows()}
                for key in ("2025-03-11", "2025-03-11-weekly")}
    finally:
        store.close()
    for address in emails.values():
        want = "2025-03-11-weekly" if address in weekly else "2025-03-11"
        other = "2025-03-11" if address in weekly else "2025-03-11-weekly"
        got = editions.get(address, collections.Counter())
        # Their own edition, at most once, never the other one; a row in
        # their edition's ledger only.
        assert set(got) <= {want} and got[want] <= 1, (address, got)
        assert address in rows[want] and address not in rows[other]
        if rows[want][address] == "sent":
            assert got[want] == 1, address
        else:  # "unknown": a kill landed mid-call; the message went out or not
            assert rows[want][address] == "unknown", (address, rows[want][address])
    # Neither kill landed between writing "pending" and the call, and the
    # provider throttled none of the calls the killed runs left: everyone
    # has their edition.
    assert ses.throttled == 0
    missing = [a for a in emails.values() if not editions.get(a)]
    assert not missing, missing[:10]
    assert sum(sum(got.values()) for got in editions.values()) == len(ses.sent) == READERS
