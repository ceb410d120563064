"""`newsletter send` as a real process, run from an empty folder: its exit
codes, as the docs and `send --help` document them, and its progress
output on a terminal (a rich bar, through a real pseudo-terminal) and
elsewhere (timestamped lines, for cron mail).

0 every reader handled; 1 readers refused for good, or left for the next
run; 2 bad input or configuration; 3 a quota or account problem; 4 another
run holds the lock. Waits are on output or on the SES stand-in, never fixed
sleeps; deadlines only catch a hang.
"""

from __future__ import annotations

import collections
import datetime as dt
import email.utils
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import EXAMPLE, SECRET, clean_env
from newsletter.cli import cli
from newsletter.core.models import SubscriberRow
from newsletter.sending.dispatch import Dispatcher
from newsletter.store import Ledger, open_store
from sesv2_standin import SesV2StandIn

DATE = "2025-03-11"
DAY = dt.date(2025, 3, 11)
DEADLINE = 60  # seconds: a run that takes longer is a hang
ISO_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d) sent ([\d,]+) of ([\d,]+), failed (\d+), unknown (\d+); "
    r"([\d,.]+)/s$"
)

# `newsletter` without the SES pre-flight's one-second pacing (see the file).
UNPACED = Path(__file__).resolve().parent / "newsletter_unpaced.py"


# --------------------------------------------------------------------------
# helpers


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "subscribers" / "newsletter.db"


def add_readers(db: Path, count: int) -> list[str]:
    store = open_store(f"sqlite:///{db}")
    try:
        store.import_subscribers(SubscriberRow(i, f"reader{i:03d}@example.org", None) for i in range(count))
    finally:
        store.close()
    return [f"reader{i:03d}@example.org" for i in range(count)]


def ledger_counts(db: Path) -> dict[str, int]:
    store = open_store(f"sqlite:///{db}")
    try:
        return Ledger(store, DAY).counts()
    finally:
        store.close()


def settings_env(db: Path, tmp_path: Path, ses: SesV2StandIn | None = None, **extra: str) -> dict[str, str]:
    """NEWSLETTER_* settings for a run (SES through the stand-in when given,
    else the outbox), with no AWS configuration from this machine."""
    settings = {
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{db}",
        "NEWSLETTER_SECRET_KEY": SECRET,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        **extra,
    }
    if ses is not None:
        settings.update(NEWSLETTER_SENDER="ses", NEWSLETTER_SES_ENDPOINT_URL=ses.endpoint_url)
    return settings


def process_env(settings: dict[str, str]) -> dict[str, str]:
    """The environment of a real run: no NEWSLETTER_* setting from outside,
    and nothing that makes rich pretend a pipe is a terminal."""
    env = clean_env(**settings)
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", "COLUMNS", "LINES"):
        env.pop(name, None)
    return env


class Run:
    """One `python -m newsletter send` process with standard output and
    error merged into one pipe, as in `>> send.log 2>&1`."""

    def __init__(self, settings: dict[str, str], folder: Path, *args: str, batch: Path | str = EXAMPLE):
        self.process = subprocess.Popen(
            [sys.executable, str(UNPACED), "send", str(batch), "--date", DATE, *args],
            cwd=folder, env=process_env(settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_line(self) -> str | None:
        """The next line of output (waiting for it), or None at the end."""
        ready, _, _ = select.select([self.process.stdout], [], [], DEADLINE)
        if not ready:
            self.process.kill()
            pytest.fail(f"no output for {DEADLINE} s:\n{self.output()}")
        raw = self.process.stdout.readline()
        if not raw:
            return None
        line = raw.decode("utf-8").rstrip("\n")
        self.lines.append(line)
        return line

    def finish(self) -> int:
        """Read the rest of the output; return the exit code."""
        while self.read_line() is not None:
            pass
        try:
            return self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"send did not finish:\n{self.output()}")

    def output(self) -> str:
        return "\n".join(self.lines)


def received(ses: SesV2StandIn) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for address, n in ses.count_by_recipient().items():
        counts[email.utils.parseaddr(address)[1].lower()] += n
    return counts


def wait_for(predicate, what: str, run: Run) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if run.process.poll() is not None:
            pytest.fail(f"send exited ({run.process.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def ses():
    with SesV2StandIn(max_send_rate=1000, max_24_hour_send=-1) as standin:
        yield standin


def assert_summary_then_error(lines: list[str], error_start: str) -> None:
    """The summary line comes first; the last line is the one-line error."""
    summaries = [i for i, line in enumerate(lines) if line.startswith("Daily Papers · ")]
    assert summaries, lines
    assert lines[-1].startswith(error_start), lines
    assert summaries[0] < len(lines) - 1
    assert sum(line.startswith("Error:") for line in lines) == 1, lines
    assert not any("Traceback" in line for line in lines), lines


# --------------------------------------------------------------------------
# exit codes


def test_exit_0_when_every_reader_is_sent(ses, db, tmp_path):
    readers = add_readers(db, 20)
    run = Run(settings_env(db, tmp_path, ses), tmp_path)
    assert run.finish() == 0, run.output()
    assert "sent 20, failed 0, unknown 0" in run.output()
    assert "Error:" not in run.output()
    assert received(ses) == collections.Counter(dict.fromkeys(readers, 1))


def test_exit_1_when_readers_are_refused_for_good(ses, db, tmp_path):
    readers = add_readers(db, 30)
    refused = {readers[4], readers[17]}
    ses.reject_addresses(refused)  # MESSAGE_REJECTED for these entries, as SES does

    run = Run(settings_env(db, tmp_path, ses), tmp_path)

    assert run.finish() == 1, run.output()
    assert_summary_then_error(run.lines, "Error: 2 readers were refused for good (marked failed, not retried)")
    assert any("sent 28, failed 2, unknown 0" in line for line in run.lines), run.output()
    for address in refused:
        assert any(line.startswith(f"  failed: {address}: MESSAGE_REJECTED") for line in run.lines)
    assert ledger_counts(db) == {"pending": 0, "sent": 28, "failed": 2, "unknown": 0}
    assert received(ses) == collections.Counter({a: 1 for a in readers if a not in refused})

    # They are not retried: the next run has nothing to do, and says so.
    again = Run(settings_env(db, tmp_path, ses), tmp_path)
    assert again.finish() == 0, again.output()
    assert "already sent" in again.output() and "failed 2" in again.output()
    assert sum(received(ses).values()) == 28


def test_exit_1_when_faults_persist(db, tmp_path, monkeypatch):
    # In process (CliRunner): twelve attempts with the real backoff take
    # minutes, so the backoff is shortened.
    monkeypatch.setattr(Dispatcher, "_backoff", lambda self, attempt: 0.01)
    add_readers(db, 10)
    with SesV2StandIn(max_send_rate=1000, max_24_hour_send=-1) as ses:
        ses.fail_next(1000, 500, operation="SendBulkEmail")
        for name, value in settings_env(db, tmp_path, ses).items():
            monkeypatch.setenv(name, value)
        result = CliRunner().invoke(cli, ["send", str(EXAMPLE), "--date", DATE], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "sent 0, failed 0, unknown 0" in result.stdout and "left 10" in result.stdout
    assert result.stderr.splitlines()[-1].startswith("Error: stopped: gave up after 12 attempts")
    assert ses.sent == []
    assert ledger_counts(db) == {"pending": 0, "sent": 0, "failed": 0, "unknown": 0}  # all left for the next run


def test_exit_2_for_a_batch_that_does_not_load(ses, db, tmp_path):
    add_readers(db, 5)
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "newsletter-batch/1", "date": ', encoding="utf-8")
    run = Run(settings_env(db, tmp_path, ses), tmp_path, batch=bad)
    assert run.finish() == 2, run.output()
    assert len(run.lines) == 1 and run.lines[0].startswith("Error:") and "bad.json" in run.lines[0], run.lines
    assert ses.requests == []


def test_exit_2_for_a_bad_setting(ses, db, tmp_path):
    add_readers(db, 5)
    run = Run(settings_env(db, tmp_path, ses, NEWSLETTER_MAX_SEND_RATE="fast"), tmp_path)
    assert run.finish() == 2, run.output()
    assert len(run.lines) == 1 and "NEWSLETTER_MAX_SEND_RATE" in run.lines[0], run.lines
    assert ses.requests == []


def test_exit_3_when_the_quota_cannot_cover_the_send(db, tmp_path):
    add_readers(db, 30)
    with SesV2StandIn(max_send_rate=1000, max_24_hour_send=100, sent_last_24_hours=90) as ses:
        run = Run(settings_env(db, tmp_path, ses), tmp_path)
        assert run.finish() == 3, run.output()
        assert ses.sent == []
    assert len(run.lines) == 1 and run.lines[0].startswith("Error: the SES 24-hour quota has 10 messages left")


def test_exit_4_while_another_run_holds_the_lock(ses, db, tmp_path):
    readers = add_readers(db, 200)
    # A first run, paced to last far longer than the second takes to start.
    settings = settings_env(db, tmp_path, ses, NEWSLETTER_MAX_SEND_RATE="5")
    first = Run(settings, tmp_path)
    wait_for(lambda: len(ses.sent) >= 1, "the first run to send", first)  # it holds the lock now

    second = Run(settings, tmp_path)
    assert second.finish() == 4, second.output()
    [message] = second.lines
    assert message.startswith("Error: another run (") and f":{first.pid}:" in message, message
    assert "is sending the 2025-03-11 issue" in message

    # The first run is still sending, alone; stopped, it exits 1 (readers left).
    assert first.process.poll() is None
    first.process.send_signal(signal.SIGTERM)
    assert first.finish() == 1, first.output()
    assert_summary_then_error(first.lines, "Error: stopped before the end:")

    # A third run finishes the job: everyone has exactly one message.
    third = Run(settings_env(db, tmp_path, ses), tmp_path)
    assert third.finish() == 0, third.output()
    assert received(ses) == collections.Counter(dict.fromkeys(readers, 1))
    assert ledger_counts(db) == {"pending": 0, "sent": 200, "failed": 0, "unknown": 0}


# --------------------------------------------------------------------------
# progress


# Ten readers per call at 10 a second, one call at a time: about six seconds,
# long enough for the dispatcher's progress calls every two seconds.
PACED = {"NEWSLETTER_MAX_SEND_RATE": "10", "NEWSLETTER_SEND_CONCURRENCY": "1"}


def test_progress_is_timestamped_lines_when_not_on_a_terminal(db, tmp_path):
    add_readers(db, 60)
    run = Run(settings_env(db, tmp_path, **PACED), tmp_path)

    first = run.read_line()
    while first is not None and not ISO_LINE.match(first):
        first = run.read_line()
    assert first is not None, run.output()
    assert run.process.poll() is None  # written while the send goes on, not at the end
    assert run.finish() == 0, run.output()

    progress = [ISO_LINE.match(line) for line in run.lines if ISO_LINE.match(line)]
    summary = next(i for i, line in enumerate(run.lines) if line.startswith("Daily Papers · "))
    assert run.lines.index(first) < summary
    for match in progress:
        moment = dt.datetime.fromisoformat(match[1])
        assert moment.tzinfo is not None
        sent, total = int(match[2].replace(",", "")), int(match[3].replace(",", ""))
        assert total == 60 and 0 < sent <= 60
        assert (match[4], match[5]) == ("0", "0")
        assert float(match[6].replace(",", "")) > 0
    sent_counts = [int(m[2]) for m in progress]
    assert sent_counts == sorted(sent_counts)
    output = run.output()
    assert "\r" not in output and "\x1b" not in output  # nothing a mail reader shows as garbage
    assert "sent 60, failed 0, unknown 0" in output


def test_progress_is_a_bar_on_a_terminal(db, tmp_path):
    add_readers(db, 60)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    env = process_env({**settings_env(db, tmp_path, **PACED), "TERM": "xterm-256color"})
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "send", str(EXAMPLE), "--date", DATE],
        cwd=tmp_path, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True,
    )
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], DEADLINE)
            if not ready:
                pytest.fail("no output from the send for a minute")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = process.wait(timeout=DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    output = b"".join(chunks).decode("utf-8")
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)

    assert code == 0, plain
    assert "━" in plain  # the bar
    frames = [frame for frame in re.split(r"[\r\n]+", plain) if frame.startswith("Sending")]
    assert len(frames) >= 2, plain  # redrawn in place
    last = frames[-1]
    assert "60/60" in last and "sent 60 · failed 0 · unknown 0" in last, last
    assert re.search(r"[\d.]+/s", last) and "ETA" in last, last
    assert re.search(r"\d+/60 sent \d+ · failed 0 · unknown 0", frames[0]), frames[0]
    assert not any(ISO_LINE.match(line.strip()) for line in plain.splitlines())
    assert "sent 60, failed 0, unknown 0" in plain  # the summary after the bar
