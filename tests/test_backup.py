"""``newsletter db backup`` and ``db restore``, with real processes:

- a backup taken while ``newsletter serve`` answers one-click unsubscribes
  and ``newsletter send`` sends is one consistent moment of the database,
  opens, and sends the next issue to exactly its active readers;
- the web app's writes go on while a backup holds its snapshot (a backup
  never takes the write lock), and reader actions still waiting are in it;
- a restore refuses while the web app has the database open and works once
  it is stopped, keeping the replaced database; a restored older database
  is upgraded when next opened;
- a command and the web app started during a restore's copy are refused
  and write nothing to the file it replaces; a process that opened the
  file without the lock meanwhile stops the restore before its swap;
- files that are not sound newsletter databases are refused (exit 2), and a
  failed backup never replaces the destination;
- PostgreSQL: both commands explain pg_dump / pg_restore and exit 2.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from conftest import (FIXTURES, SECRET, STARTUP_SECONDS, batch_file, clean_env, digest, free_port, newsletter_process,
                      newsletter_run, newsletter_server, readers_in_outbox, wait_until)
from newsletter.core.errors import StoreError
from newsletter.core.models import SubscriberRow, SubscriberStatus
from newsletter.store import backup as backup_module
from newsletter.store import UnsubscribePayload, migrate, open_store
from newsletter.readers.tokens import Signer

UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED
RELEASE_1_DB = FIXTURES / "release-1" / "release-1.db"


# --------------------------------------------------------------------------
# helpers


@pytest.fixture
def database(env) -> Path:
    """The SQLite file of the test's database."""
    return Path(make_url(env["NEWSLETTER_DATABASE_URL"]).database)


def add_readers(database: Path, count: int) -> list:
    """Add ``count`` active readers; return them."""
    store = open_store(f"sqlite:///{database}")
    try:
        report = store.import_subscribers(SubscriberRow(i, f"reader{i}@example.org", f"Reader {i}")
                                          for i in range(count))
        assert len(report.added) == count
        return list(store.iter_subscribers())
    finally:
        store.close()


def query(path: Path, sql: str):
    """One value from the database file at ``path`` (a reader: never waits for writers)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()






def one_click(url: str) -> int:
    """POST what a mail client sends for RFC 8058 one-click; return the status."""
    request = urllib.request.Request(url, data=b"List-Unsubscribe=One-Click",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def serve(tmp_path: Path, env: dict[str, str]):
    port = free_port()
    server_env = clean_env(**env, NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}")
    return newsletter_server(["serve", "--port", str(port)], port, tmp_path, server_env)


class OneClicks(threading.Thread):
    """Unsubscribes readers one after the other through the web app's
    one-click endpoint until stopped; records (status, finished at)."""

    def __init__(self, base: str, readers: list):
        super().__init__(daemon=True)
        self.links = [Signer(SECRET).unsubscribe_url(base, r.ref) for r in readers]
        self.answers: list[tuple[int, float]] = []
        self.stop = threading.Event()

    def run(self):
        for link in self.links:
            if self.stop.is_set():
                return
            status = one_click(link)
            self.answers.append((status, time.monotonic()))


# --------------------------------------------------------------------------
# backups of a running system


def test_a_backup_taken_while_the_web_app_and_a_send_run_is_one_consistent_moment(tmp_path, database, env, cli_run):
    readers = add_readers(database, 600)
    # At most 40 messages a second: the send lasts 15 s or more, so it is
    # certainly still running when the backup ends (and is stopped then).
    send_env = {**env, "NEWSLETTER_MAX_SEND_RATE": "40"}
    first_day = dt.date(2025, 3, 12)
    with serve(tmp_path, env) as base:
        sending = newsletter_process("send", str(batch_file(tmp_path, first_day)), folder=tmp_path, env=send_env,
                                     stderr=subprocess.STDOUT)
        clicks = OneClicks(base, readers[-200:])  # readers the send reaches last
        try:
            wait_until(lambda: query(database, "SELECT count(*) FROM deliveries") > 0, "the send to begin")
            clicks.start()
            wait_until(lambda: len(clicks.answers) >= 5, "the first one-click unsubscribes")
            answered_before = len(clicks.answers)
            deliveries_before = query(database, "SELECT count(*) FROM deliveries")
            started = time.monotonic()
            backup = newsletter_run("db", "backup", str(tmp_path / "b.db"), folder=tmp_path, env=env)
            ended = time.monotonic()
            assert backup.returncode == 0, backup.stderr
            assert sending.poll() is None, "the send ended before the backup did"
            deliveries_after = query(database, "SELECT count(*) FROM deliveries")
            wait_until(lambda: any(at > ended for _status, at in clicks.answers), "a one-click after the backup")
        finally:
            clicks.stop.set()
            clicks.join(timeout=60)
            sending.send_signal(signal.SIGTERM)
            sending.wait(timeout=60)
    # Every reader who clicked was answered, also while the backup ran.
    assert all(status == 200 for status, _at in clicks.answers), clicks.answers
    assert any(started <= at <= ended for _status, at in clicks.answers), "no one-click was answered during the backup"

    copy = tmp_path / "b.db"
    assert "Backed up the database to" in backup.stdout
    checked = backup_module.inspect_file(copy)  # integrity_check, tables, revision
    assert checked.revision == migrate.head() and checked.subscribers == 600
    said = f"{checked.subscribers:,} subscribers, {checked.issues:,} issues, revision {checked.revision}"
    assert said in backup.stdout
    # One moment: each unsubscribe is a status change and its event, written
    # together; the copy holds both or neither. Those answered before the
    # backup began are in it; the ledger is between before and after.
    unsubscribed = query(copy, "SELECT count(*) FROM subscribers WHERE status = 'unsubscribed'")
    assert unsubscribed == query(copy, "SELECT count(*) FROM subscriber_events WHERE new_status = 'unsubscribed'")
    assert answered_before <= unsubscribed <= len(clicks.answers)
    ledger = query(copy, "SELECT count(*) FROM deliveries")
    assert deliveries_before <= ledger <= deliveries_after
    assert query(copy, "SELECT count(*) FROM deliveries WHERE subscriber_id NOT IN (SELECT id FROM subscribers)") == 0

    # The copy opens as a database of its own and sends the next issue to
    # exactly its active readers, once.
    restored = tmp_path / "elsewhere" / "newsletter.db"
    restored.parent.mkdir()
    shutil.copyfile(copy, restored)
    elsewhere = {**env, "NEWSLETTER_DATABASE_URL": f"sqlite:///{restored}",
                 "NEWSLETTER_OUTBOX_DIR": str(tmp_path / "outbox2")}
    next_day = dt.date(2025, 3, 13)
    sent = cli_run("send", str(batch_file(tmp_path, next_day)), **elsewhere)
    assert sent.exit_code == 0, sent.output
    active = {row[0] for row in sqlite3.connect(restored).execute("SELECT id FROM subscribers WHERE status = 'active'")}
    assert len(active) == 600 - unsubscribed
    outbox = tmp_path / "outbox2" / next_day.isoformat()
    assert readers_in_outbox(outbox) == active
    again = cli_run("send", str(batch_file(tmp_path, next_day)), **elsewhere)
    assert again.exit_code == 0 and "already sent" in again.stdout
    assert len(list(outbox.glob("*.eml"))) == len(active)


def test_the_web_app_writes_while_a_backup_holds_its_snapshot(tmp_path, database, env, monkeypatch):
    readers = add_readers(database, 300)
    # Small steps, so the copy pauses between them with its snapshot held.
    monkeypatch.setattr(backup_module, "STEP_PAGES", 2)
    store = open_store(env["NEWSLETTER_DATABASE_URL"])  # to read the live database meanwhile
    clicked = readers[:3]
    paused = []
    with serve(tmp_path, env) as base:

        def meanwhile(_status, remaining, _total):
            if paused or remaining == 0:
                return
            paused.append(remaining)
            # Mid-copy: the web app's unsubscribes are answered and written
            # to the database at once (it is not locked by the copy).
            for reader in clicked:
                assert one_click(Signer(SECRET).unsubscribe_url(base, reader.ref)) == 200
            wait_until(lambda: all(store.get(ref=r.ref).status == UNSUBSCRIBED for r in clicked),
                       "the unsubscribes to be written during the backup")

        copy = backup_module.backup(database, tmp_path / "b.db", progress=meanwhile)
    store.close()
    assert paused, "the copy never paused"
    # The copy is the moment it began: before those unsubscribes.
    assert copy.subscribers == 300
    assert query(tmp_path / "b.db", "SELECT count(*) FROM subscribers WHERE status = 'unsubscribed'") == 0
    assert query(database, "SELECT count(*) FROM subscribers WHERE status = 'unsubscribed'") == 3
    assert query(tmp_path / "b.db", "PRAGMA integrity_check") == "ok"


def test_reader_actions_still_waiting_are_applied_before_the_copy(tmp_path, database, env, cli_run):
    readers = add_readers(database, 3)
    store = open_store(env["NEWSLETTER_DATABASE_URL"])
    try:
        # Recorded by the web app while the database was busy, not applied yet.
        store.record_action(UnsubscribePayload(source="one-click", reason="one-click unsubscribe (RFC 8058)",
                                               ref=readers[1].ref), subscriber_id=readers[1].id)
    finally:
        store.close()
    result = cli_run("db", "backup", str(tmp_path / "backups" / "b.db"))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "Applied 1 waiting reader actions first."
    assert query(tmp_path / "backups" / "b.db",
                 f"SELECT status FROM subscribers WHERE id = {readers[1].id}") == "unsubscribed"


def test_a_failed_backup_leaves_the_destination_as_it_was(tmp_path, database, env, monkeypatch):
    add_readers(database, 3)
    destination = tmp_path / "b.db"
    destination.write_bytes(b"yesterday's backup")

    def refuse(path):
        raise StoreError(f"{path}: the database is damaged (for the test)")

    monkeypatch.setattr(backup_module, "inspect_file", refuse)
    with pytest.raises(StoreError, match="damaged"):
        backup_module.backup(database, destination)
    assert destination.read_bytes() == b"yesterday's backup"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def test_a_backup_over_the_database_itself_is_refused(tmp_path, database, env, cli_run):
    add_readers(database, 1)
    before = query(database, "SELECT count(*) FROM subscribers")
    result = cli_run("db", "backup", str(database))
    assert result.exit_code == 2
    assert result.stderr == f"Error: {database} is the database itself; give another file name\n"
    assert query(database, "SELECT count(*) FROM subscribers") == before


def test_a_database_behind_this_release_is_backed_up_as_it_is(tmp_path, database, env, cli_run):
    database.parent.mkdir()
    shutil.copyfile(RELEASE_1_DB, database)
    result = cli_run("db", "backup", str(tmp_path / "before-upgrade.db"))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # no "Upgraded ..."
    size = backup_module.human_size((tmp_path / "before-upgrade.db").stat().st_size)
    assert result.stdout.splitlines() == [
        f"Backed up the database to {tmp_path / 'before-upgrade.db'}: 7 subscribers, 2 issues, "
        f"revision 0001 (release 1), {size}.",
        f"The database was copied as it is, before its upgrade to revision {migrate.head()} "
        "(which the next command to open it does).",
    ]
    assert migrate.status(env["NEWSLETTER_DATABASE_URL"]).release_1  # the database was not upgraded
    assert migrate.status(f"sqlite:///{tmp_path / 'before-upgrade.db'}").release_1


def test_no_database_no_backup(tmp_path, database, env, cli_run):
    result = cli_run("db", "backup", str(tmp_path / "b.db"))
    assert result.exit_code == 2
    assert result.stderr == f"Error: there is no database at {database} to back up\n"
    assert not database.exists() and not (tmp_path / "b.db").exists()


# --------------------------------------------------------------------------
# restores


def test_restore_refuses_while_the_web_app_has_the_database_open_then_works(tmp_path, database, env, cli_run):
    add_readers(database, 3)
    assert cli_run("db", "backup", str(tmp_path / "b.db")).exit_code == 0
    store = open_store(env["NEWSLETTER_DATABASE_URL"])
    store.add("later@example.com")
    store.close()
    with serve(tmp_path, env) as base:
        refused = cli_run("db", "restore", str(tmp_path / "b.db"))
        assert refused.exit_code == 2
        port = base.rsplit(":", 1)[1]
        assert refused.stderr.startswith(f"Error: the database {database} is open in process ")
        assert f"serve --port {port})" in refused.stderr
        assert len(refused.stderr.splitlines()) == 1
        assert query(database, "SELECT count(*) FROM subscribers") == 4
    assert not list(database.parent.glob("*before-restore*"))

    restored = cli_run("db", "restore", str(tmp_path / "b.db"))
    assert restored.exit_code == 0, restored.output
    kept = next(database.parent.glob("newsletter.before-restore-*.db"))
    assert restored.stdout.splitlines() == [
        f"Restored {tmp_path / 'b.db'} into {database}: 3 subscribers, 0 issues, revision {migrate.head()}, "
        f"{backup_module.human_size((tmp_path / 'b.db').stat().st_size)}.",
        f"The replaced database is kept as {kept}.",
    ]
    assert query(database, "SELECT count(*) FROM subscribers") == 3
    assert query(kept, "SELECT count(*) FROM subscribers") == 4  # with what was in its write-ahead log
    assert not Path(f"{database}-wal").exists() and not Path(f"{database}-shm").exists()
    with serve(tmp_path, env):
        pass  # the web app starts on the restored database
    counted = cli_run("subscribers", "count")
    assert counted.exit_code == 0 and counted.stderr == ""
    assert "total               3" in counted.stdout


# `newsletter db restore` in a process of its own that stops at the start of
# its copy of the backup (a real one takes seconds to minutes): it creates
# the file argv[1] then, and goes on once the file argv[2] exists.
PAUSED_RESTORE = """
import shutil, sys, time
from pathlib import Path

from newsletter.cli import cli

paused, go_on, backup = (Path(arg) for arg in sys.argv[1:4])
copy = shutil.copyfile


def copy_when_told(source, target, *args, **kwargs):
    paused.touch()
    while not go_on.exists():
        time.sleep(0.01)
    return copy(source, target, *args, **kwargs)


shutil.copyfile = copy_when_told
cli(["db", "restore", str(backup)], prog_name="newsletter")
"""


class PausedRestore:
    """A real restore of ``backup``, stopped in the middle of its copy."""

    def __init__(self, folder: Path, env: dict[str, str], backup: Path):
        self.paused, self.go_on = folder / "restore-paused", folder / "restore-go-on"
        self.process = subprocess.Popen(
            [sys.executable, "-c", PAUSED_RESTORE, str(self.paused), str(self.go_on), str(backup)],
            cwd=folder, env=clean_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: self.paused.exists() or self.process.poll() is not None, "the restore to begin its copy")
        assert self.process.poll() is None, self.process.communicate()

    def finish(self) -> subprocess.CompletedProcess:
        """Let the copy go on; return how the restore ended."""
        self.go_on.touch()
        stdout, stderr = self.process.communicate(timeout=120)
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, stdout, stderr)


def answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def test_nothing_started_during_a_restore_writes_to_the_replaced_database(tmp_path, database, env, cli_run):
    readers = add_readers(database, 3)
    assert cli_run("db", "backup", str(tmp_path / "b.db")).exit_code == 0
    restore = PausedRestore(tmp_path, env, tmp_path / "b.db")
    being_restored = (f"Error: the database {database} is being restored from a backup (`newsletter db restore`); "
                      "run this again once the restore has finished\n")

    # During the copy: a command that adds a reader, and the web app, to
    # which a reader sends a one-click unsubscribe if it answers.
    added = newsletter_run("subscribers", "add", "late@example.com", folder=tmp_path, env=env)
    port = free_port()
    server = newsletter_process("serve", "--port", str(port), folder=tmp_path,
                                env={**env, "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}"})
    try:
        wait_until(lambda: server.poll() is not None or answers(port), "the web app to start or stop",
                   timeout=STARTUP_SECONDS)
        clicked = None
        if server.poll() is None:
            clicked = one_click(Signer(SECRET).unsubscribe_url(f"http://127.0.0.1:{port}", readers[0].ref))
    finally:
        if server.poll() is None:
            server.terminate()
        _, served_stderr = server.communicate(timeout=60)
    restored = restore.finish()
    assert restored.returncode == 0, restored.stderr
    kept = next(database.parent.glob("newsletter.before-restore-*.db"))

    # What each of them was told holds in the database as restored; nothing
    # was written to the file it replaced.
    late = query(database, "SELECT count(*) FROM subscribers WHERE email = 'late@example.com'")
    assert added.returncode == 2 or late == 1, "the reader was added, but not to the restored database"
    status = query(database, f"SELECT status FROM subscribers WHERE id = {readers[0].id}")
    assert clicked in (None, 503) or status == "unsubscribed", f"one-click answered {clicked}, and the reader is {status}"
    assert query(kept, "SELECT count(*) FROM subscribers") == 3
    assert query(kept, "SELECT count(*) FROM subscribers WHERE status = 'active'") == 3
    # Both were refused at once, saying why.
    assert (added.returncode, added.stderr) == (2, being_restored)
    assert (server.returncode, served_stderr) == (2, being_restored)
    assert clicked is None and late == 0 and status == "active"


def test_a_restore_stops_before_the_swap_when_the_database_was_opened_without_its_lock(tmp_path, database, env,
                                                                                      cli_run):
    add_readers(database, 3)
    assert cli_run("db", "backup", str(tmp_path / "b.db")).exit_code == 0
    store = open_store(env["NEWSLETTER_DATABASE_URL"])
    store.add("later@example.com")
    store.close()
    restore = PausedRestore(tmp_path, env, tmp_path / "b.db")
    # The sqlite3 shell, say, or a process of an older release: it does not
    # know the lock, and has the database open when the copy ends.
    shell = sqlite3.connect(database)
    try:
        assert shell.execute("SELECT count(*) FROM subscribers").fetchone() == (4,)
        refused = restore.finish()
    finally:
        shell.close()
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"Error: the database {database} is open in process {os.getpid()} (")
    assert len(refused.stderr.splitlines()) == 1 and refused.stdout == ""
    assert query(database, "SELECT count(*) FROM subscribers") == 4
    assert not [p.name for p in database.parent.iterdir() if "before-restore" in p.name or p.suffix == ".tmp"]


def test_a_restored_older_database_is_upgraded_when_next_opened(tmp_path, database, env, cli_run):
    add_readers(database, 2)
    before = digest(RELEASE_1_DB)
    restored = cli_run("db", "restore", str(RELEASE_1_DB))
    assert restored.exit_code == 0, restored.output
    assert "7 subscribers, 2 issues, revision 0001 (release 1)" in restored.stdout
    assert f"It will be upgraded to revision {migrate.head()} when it is next opened" in restored.stdout
    # The file restored from is left as it was, with nothing beside it.
    assert digest(RELEASE_1_DB) == before
    assert sorted(p.name for p in RELEASE_1_DB.parent.iterdir()) == ["make_fixture.py", "release-1.db", "release-1.sql"]
    counted = cli_run("subscribers", "count")
    assert counted.exit_code == 0
    assert counted.stderr == f"Upgraded the database from 0001 to {migrate.head()}.\n"
    assert "total               7" in counted.stdout


def make_foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.commit()
    conn.close()


def make_ahead(path: Path) -> None:
    open_store(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE alembic_version SET version_num = 'f00d0042'")
    conn.commit()
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()


def make_damaged(path: Path) -> None:
    shutil.copyfile(RELEASE_1_DB, path)
    data = bytearray(path.read_bytes())
    data[4096 * 3:4096 * 5] = b"\xff" * (4096 * 2)  # two pages overwritten
    path.write_bytes(bytes(data))


def make_with_wal(path: Path) -> None:
    shutil.copyfile(RELEASE_1_DB, path)
    Path(f"{path}-wal").write_bytes(b"")


@pytest.mark.parametrize("kind, make, says", [
    ("missing", lambda path: None, "no such file"),
    ("text", lambda path: path.write_text("email,name\nada@example.com,Ada\n"), "not a SQLite database"),
    ("foreign", make_foreign, "not a newsletter database"),
    ("ahead", make_ahead, "upgraded by a newer release (revision f00d0042); this release knows up to"),
    ("damaged", make_damaged, ""),
    ("with-wal", make_with_wal, "a write-ahead log"),
])
def test_restore_refuses_a_file_that_is_not_a_sound_newsletter_database(tmp_path, database, env, kind, make, says,
                                                                        cli_run):
    add_readers(database, 2)
    before = digest(database)
    bad = tmp_path / f"{kind}.db"
    make(bad)
    result = cli_run("db", "restore", str(bad))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: {bad}: ") and says in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.output
    assert digest(database) == before
    assert not list(database.parent.glob("*before-restore*"))
    assert sorted(p.name for p in database.parent.iterdir()) == ["newsletter.db", "newsletter.db.lock",
                                                                 "newsletter.inbox.db"]


def test_a_damaged_file_is_named_damaged_or_unusable(tmp_path):
    bad = tmp_path / "damaged.db"
    make_damaged(bad)
    with pytest.raises(StoreError, match=r"damaged|not a usable SQLite database"):
        backup_module.inspect_file(bad)


# --------------------------------------------------------------------------
# PostgreSQL


def test_postgresql_backups_and_restores_are_left_to_its_own_tools(tmp_path, cli_run):
    env = {"NEWSLETTER_DATABASE_URL": "postgresql+psycopg://mailer:s3cret-Pass@db.internal:6432/newsletter",
           "NEWSLETTER_SECRET_KEY": SECRET}
    backup = cli_run("db", "backup", str(tmp_path / "b.dump"), **env)
    assert backup.exit_code == 2
    assert backup.stderr == (
        "Error: this command backs up SQLite databases only; back up PostgreSQL with pg_dump: "
        "pg_dump --host=db.internal --port=6432 --username=mailer --format=custom --file=FILE newsletter "
        "(give the password with PGPASSWORD or ~/.pgpass)\n")
    restore = cli_run("db", "restore", str(tmp_path / "b.dump"), **env)
    assert restore.exit_code == 2
    assert "pg_restore --host=db.internal --port=6432 --username=mailer --clean --if-exists --dbname=newsletter FILE" \
        in restore.stderr
    for result in (backup, restore):
        assert "s3cret" not in result.output and "Traceback" not in result.output
    assert not (tmp_path / "b.dump").exists()
