"""Schema migrations, on SQLite and PostgreSQL:

- a database made by release 1 (tests/fixtures/release-1: see its
  make_fixture.py) is upgraded when it is opened, keeps every row, and the
  next issue goes to exactly its active readers, once;
- the migrations build exactly ``schema.metadata`` (a drift between the two
  fails here);
- a database upgraded by a newer release is refused and left alone;
- two processes opening a release-1 database together upgrade it once;
- ``db status`` shows what is pending and changes nothing; ``db upgrade``
  says what it did.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, MetaData, String, create_engine, inspect, text
from sqlalchemy.engine import make_url

from conftest import (FIXTURES, SECRET, batch_file, clean_env, digest, free_port, newsletter_process, newsletter_server,
                      readers_in_outbox, wait_until)
from newsletter.papers.batches import load_batch
from newsletter.core.config import Settings
from newsletter.core.errors import StoreError
from newsletter.core.models import Muting, RestOfDay
from newsletter.issue.render import render_issue
from newsletter.sending.dispatch import Dispatcher, SendOptions
from newsletter.sending.senders.outbox import OutboxSender
from newsletter.store import Ledger, migrate, open_store
from newsletter.store.backup import processes_holding
from newsletter.store.schema import SCHEMA_VERSION, metadata
from newsletter.readers.tokens import Signer

RELEASE_1 = FIXTURES / "release-1"
HEAD = migrate.head()
UPGRADED = f"Upgraded the database from 0001 to {HEAD}."
# The revisions after release 1's baseline, and how db status lists them.
AFTER_BASELINE = list(migrate.known_revisions()[1:])


@pytest.fixture
def database_url(empty_database_url):
    """Every test here starts from a database with no tables at all: it
    loads release 1's, or watches what a first open makes."""
    return empty_database_url


def pending_line(revisions: list[str]) -> str:
    return "Pending migrations: " + ", ".join(f"{r} ({migrate.describe(r)})" for r in revisions)

# What release 1 left in the fixture (see its make_fixture.py).
RELEASE_1_SUBSCRIBERS = {
    "ada@example.com": ("active", "Ada Lovelace"),
    "Bob@example.org": ("active", "Bób Ñoño"),
    "carol@example.com": ("unsubscribed", None),
    "dave@example.net": ("bounced", "Dave"),
    "erin@example.com": ("complained", "Erin"),
    "frank@example.com": ("unsubscribed", "Frank"),
    "grace@example.com": ("active", "Grace Hopper"),
}
ACTIVE_IDS = {1, 2, 7}  # ada, bob, grace
LEDGER = {
    ("2025-03-10", 1): "sent", ("2025-03-10", 2): "sent", ("2025-03-10", 7): "sent",
    ("2025-03-11", 1): "sent", ("2025-03-11", 2): "sent", ("2025-03-11", 7): "failed",
}
# Tables whose rows must all survive the upgrade, with an order for reading them.
KEPT_TABLES = {
    "subscribers": "id", "subscriber_events": "id", "issues": "date", "deliveries": "issue_date, subscriber_id",
    "send_locks": "issue_date", "feedback": "id", "sns_messages": "message_id",
}


# --------------------------------------------------------------------------
# helpers


def sql_statements(dump: str):
    """The statements of a pg_dump file, split at semicolons outside quoted
    strings and comments (the issues' HTML holds plenty of both)."""
    start, i, quoted = 0, 0, False
    while i < len(dump):
        char = dump[i]
        if quoted:
            if char == "'":
                if dump.startswith("''", i):
                    i += 1  # an escaped quote
                else:
                    quoted = False
        elif char == "'":
            quoted = True
        elif dump.startswith("--", i):
            end = dump.find("\n", i)
            i = len(dump) if end < 0 else end
            continue
        elif char == ";":
            statement = dump[start:i]
            if re.sub(r"--[^\n]*", "", statement).strip():
                yield statement.strip()
            start = i + 1
        i += 1


def load_release_1(database_url: str) -> None:
    """Put release 1's database at ``database_url`` (an empty database):
    the SQLite file as release 1 wrote it, or the PostgreSQL dump loaded
    statement by statement."""
    if database_url.startswith("sqlite"):
        path = Path(make_url(database_url).database)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(RELEASE_1 / "release-1.db", path)
        return
    conninfo = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for statement in sql_statements((RELEASE_1 / "release-1.sql").read_text(encoding="utf-8")):
            conn.execute(statement)


def raw_rows(database_url: str, columns: bool = False) -> dict[str, list]:
    """Every row of the tables that must survive, as the database holds them:
    tuples, or ``{column: value}`` with ``columns``."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return {table: [dict(row._mapping) if columns else tuple(row)
                            for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))]
                    for table, order in KEPT_TABLES.items()}
    finally:
        engine.dispose()


def schema_facts(database_url: str) -> dict:
    """The tables, the revision and the schema version of a database."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            revision = (conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
                        if "alembic_version" in tables else None)
            version = conn.execute(text("SELECT value FROM newsletter_meta WHERE key = 'schema_version'")).scalar()
            indexes = {ix["name"] for ix in inspect(conn).get_indexes("deliveries")}
        return {"tables": tables, "revision": revision, "schema_version": version, "delivery_indexes": indexes}
    finally:
        engine.dispose()


def differences(database_url: str, target: MetaData = metadata) -> list:
    """What Alembic finds different between the database and ``target``."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_name": migrate.include_name})
            return compare_metadata(context, target)
    finally:
        engine.dispose()


def sqlite_file(database_url: str) -> Path:
    return Path(make_url(database_url).database)






def send_issue(store, day: dt.date, outbox: Path):
    """Send a batch dated ``day`` with the outbox sender."""
    settings = Settings(secret_key=SECRET)
    issue = render_issue(load_batch(batch_file(outbox.parent, day), date=day), settings)
    store.save_issue(issue)
    return Dispatcher(store, OutboxSender(outbox), Signer.from_settings(settings), settings.base_url,
                      settings.from_address, SendOptions(), threading.Event()).run(issue)


def outbox_ids(outbox: Path, day: dt.date) -> list[int]:
    return sorted(readers_in_outbox(outbox / day.isoformat()))


# --------------------------------------------------------------------------
# the release-1 fixture


def test_the_fixture_is_release_1s(database_url):
    load_release_1(database_url)
    facts = schema_facts(database_url)
    assert facts["tables"] == migrate.RELEASE_1_TABLES
    assert (facts["revision"], facts["schema_version"]) == (None, "1")
    state = migrate.status(database_url)
    assert state.release_1 and state.pending == AFTER_BASELINE


def test_a_release_1_database_is_upgraded_on_open_and_keeps_every_row(database_url):
    load_release_1(database_url)
    before = raw_rows(database_url)
    before_columns = {table: list(rows[0].keys()) for table, rows in raw_rows(database_url, columns=True).items()
                      if rows}
    store = open_store(database_url)
    try:
        assert str(store.migration) == UPGRADED
        subscribers = {s.email: (s.status, s.name) for s in store.iter_subscribers()}
        assert subscribers == RELEASE_1_SUBSCRIBERS
        history = {s.email: [(e.old_status, e.new_status, e.source) for e in store.events(s.id)]
                   for s in store.iter_subscribers()}
        assert history["carol@example.com"][-1] == ("active", "unsubscribed", "one-click")
        assert history["frank@example.com"][-1][1:] == ("unsubscribed", "cli")
        assert history["dave@example.net"][-1][1] == "bounced"
        assert history["erin@example.com"][-1][1] == "complained"
        assert [i.date.isoformat() for i in store.list_issues()] == ["2025-03-11", "2025-03-10"]
        assert store.get_issue(dt.date(2025, 3, 10)).preheader.startswith("Sparse Attention at Scale")
        ledger = {(day, subscriber): status for day in ("2025-03-10", "2025-03-11")
                  for subscriber, status, *_ in Ledger(store, dt.date.fromisoformat(day)).rows()}
        assert ledger == LEDGER
        assert store.feedback_counts(["2025-03-10"]) == {"2025-03-10": {"bounce": 1, "complaint": 1}}
    finally:
        store.close()
    # Row for row, as release 1 wrote them; the columns added since hold
    # their defaults (every reader daily, every stored issue a daily).
    after = raw_rows(database_url, columns=True)
    assert {table: [tuple(row[name] for name in before_columns[table]) for row in rows]
            for table, rows in after.items()} == before
    assert {row["frequency"] for row in after["subscribers"]} == {"daily"}
    assert {(row["weekday"], row["paused_until"]) for row in after["subscribers"]} == {(None, None)}
    assert {row["kind"] for row in after["issues"]} == {"daily"}
    assert [row[0] for row in before["sns_messages"]] == ["sns-bounce-1", "sns-complaint-1"]
    facts = schema_facts(database_url)
    assert facts["revision"] == HEAD and facts["schema_version"] == str(SCHEMA_VERSION)
    assert "signup_requests" not in facts["tables"]
    assert {"ix_deliveries_updated_at", "ix_deliveries_subscriber_updated"} <= facts["delivery_indexes"]
    # Opening it again changes nothing.
    again = open_store(database_url)
    assert again.migration is None
    again.close()


def test_the_upgraded_database_sends_the_next_issue_to_exactly_its_active_readers_once(database_url, tmp_path):
    load_release_1(database_url)
    outbox = tmp_path / "outbox"
    store = open_store(database_url)
    try:
        day = dt.date(2025, 3, 12)
        report = send_issue(store, day, outbox)
        assert report.sent == len(ACTIVE_IDS)
        assert outbox_ids(outbox, day) == sorted(ACTIVE_IDS)
        again = send_issue(store, day, outbox)
        assert again.sent == 0 and again.already_sent
        assert outbox_ids(outbox, day) == sorted(ACTIVE_IDS)
        # The issues release 1 sent are not sent again (grace's refusal stays "failed").
        old = send_issue(store, dt.date(2025, 3, 11), outbox)
        assert old.sent == 0
        assert not (outbox / "2025-03-11").exists()
        # A reader added after the upgrade gets the next id (PostgreSQL: the
        # sequence kept its place) and the next issue.
        newcomer, _ = store.add("new@example.com", "New Reader", source="cli")
        assert newcomer.id == 8
        later = dt.date(2025, 3, 13)
        assert send_issue(store, later, outbox).sent == len(ACTIVE_IDS) + 1
        assert outbox_ids(outbox, later) == sorted(ACTIVE_IDS | {8})
    finally:
        store.close()


def test_the_send_command_on_a_release_1_database_upgrades_it_and_says_so_once(tmp_path, env, cli_run):
    load_release_1(env["NEWSLETTER_DATABASE_URL"])
    batch = batch_file(tmp_path, dt.date(2025, 3, 12))
    first = cli_run("send", str(batch))
    assert first.exit_code == 0, first.output
    assert first.stderr.splitlines().count(UPGRADED) == 1
    assert outbox_ids(tmp_path / "outbox", dt.date(2025, 3, 12)) == sorted(ACTIVE_IDS)
    rerun = cli_run("send", str(batch))
    assert rerun.exit_code == 0, rerun.output
    assert "already sent" in rerun.stdout
    assert "Upgraded" not in rerun.stderr
    assert outbox_ids(tmp_path / "outbox", dt.date(2025, 3, 12)) == sorted(ACTIVE_IDS)


# --------------------------------------------------------------------------
# models and migrations


def test_the_revisions_known_without_alembic_are_alembics():
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    assert migrate.known_revisions() == tuple(s.revision for s in reversed(list(scripts.walk_revisions())))
    assert migrate.head() == scripts.get_current_head()


def test_opening_a_current_database_does_not_import_alembic(tmp_path):
    url = f"sqlite:///{tmp_path / 'news.db'}"
    open_store(url).close()  # made, and migrated, here
    code = ("import sys; from newsletter.store import open_store; "
            f"open_store({url!r}).close(); print('alembic' in sys.modules)")
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert answer.stdout.strip() == "False"


def test_the_migrations_build_exactly_the_models(database_url):
    open_store(database_url).close()  # an empty database, built by the migrations
    assert schema_facts(database_url)["revision"] == HEAD
    assert differences(database_url) == []


def test_an_upgraded_release_1_database_equals_the_models(database_url):
    load_release_1(database_url)
    open_store(database_url).close()
    assert differences(database_url) == []


def test_the_comparison_sees_a_drift(database_url):
    # The check above would catch a model changed without a migration: a
    # column added, a type changed, an index dropped.
    open_store(database_url).close()
    drifted = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["subscribers"].append_column(Column("nickname", String(50)))
    drifted.tables["issues"].c.subject.type = String(500)
    index = next(ix for ix in drifted.tables["deliveries"].indexes if ix.name == "ix_deliveries_updated_at")
    drifted.tables["deliveries"].indexes.discard(index)
    found = differences(database_url, drifted)
    kinds = {diff[0][0] if isinstance(diff, list) else diff[0] for diff in found}
    assert {"add_column", "modify_type", "remove_index"} <= kinds, found


# --------------------------------------------------------------------------
# a database ahead of the code


def test_a_database_upgraded_by_a_newer_release_is_refused_and_left_alone(database_url):
    open_store(database_url).close()
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'a1b2c3d4'"))
        conn.execute(text("UPDATE newsletter_meta SET value = '3' WHERE key = 'schema_version'"))
    engine.dispose()
    before = schema_facts(database_url)
    with pytest.raises(StoreError) as refused:
        open_store(database_url)
    assert str(refused.value) == ("the database was upgraded by a newer release (revision a1b2c3d4); "
                                  f"this release knows up to {HEAD}")
    assert schema_facts(database_url) == before
    assert migrate.status(database_url).problem == str(refused.value)


def test_a_newer_database_is_refused_by_every_command_with_exit_2_and_unchanged(env, cli_run):
    database_url = env["NEWSLETTER_DATABASE_URL"]
    open_store(database_url).close()
    path = sqlite_file(database_url)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'a1b2c3d4'")
    conn.close()
    before = digest(path)
    for args in (["subscribers", "count"], ["db", "upgrade"], ["subscribers", "add", "x@example.com"]):
        result = cli_run(*args)
        assert result.exit_code == 2, result.output
        assert result.stderr == ("Error: the database was upgraded by a newer release (revision a1b2c3d4); "
                                 f"this release knows up to {HEAD}\n")
        assert "Traceback" not in result.output
    assert digest(path) == before
    status = cli_run("db", "status")
    assert status.exit_code == 0
    assert "Current revision: a1b2c3d4 (the database was upgraded by a newer release" in status.stdout
    assert "Pending migrations: none (this release cannot upgrade it)" in status.stdout


def test_a_schema_version_above_release_1_without_a_revision_is_refused(database_url):
    load_release_1(database_url)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE newsletter_meta SET value = '3' WHERE key = 'schema_version'"))
    engine.dispose()
    with pytest.raises(StoreError, match="schema version 3 but no revision"):
        open_store(database_url)
    assert schema_facts(database_url)["revision"] is None


def test_a_partial_set_of_tables_is_refused_not_guessed(database_url):
    if database_url.startswith("sqlite"):
        sqlite_file(database_url).parent.mkdir(parents=True)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE subscribers (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(StoreError, match="holds some of the newsletter's tables but not all"):
        open_store(database_url)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == {"subscribers"}
    engine.dispose()


def test_a_migration_that_fails_changes_nothing(database_url):
    # An index made by hand under the name 0002 creates: its step fails,
    # and the stamp and the steps before it are rolled back with it.
    load_release_1(database_url)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE INDEX ix_deliveries_updated_at ON deliveries (updated_at)"))
    engine.dispose()
    before = raw_rows(database_url), schema_facts(database_url)
    with pytest.raises(StoreError, match=f"upgrading the database from 0001 to {HEAD} failed, and changed nothing: "):
        open_store(database_url)
    assert (raw_rows(database_url), schema_facts(database_url)) == before
    assert "signup_requests" in before[1]["tables"] and before[1]["revision"] is None


# --------------------------------------------------------------------------
# two processes at once


class HeldMigrationLock:
    """Holds what an upgrade must get first (SQLite: the write lock;
    PostgreSQL: the migration's advisory lock), so processes started
    meanwhile all wait for it and then race."""

    def __init__(self, database_url: str):
        self.database_url = database_url

    def __enter__(self):
        if self.database_url.startswith("sqlite"):
            self.conn = sqlite3.connect(sqlite_file(self.database_url), isolation_level=None)
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.engine = create_engine(self.database_url)
            self.conn = self.engine.connect()
            self.transaction = self.conn.begin()
            self.conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": migrate.MIGRATION_LOCK_KEY})
        return self

    def waiting(self, pids: list[int]) -> bool:
        """Whether every process in ``pids`` has reached the lock (SQLite:
        has the database open; PostgreSQL: is queued on the lock)."""
        if self.database_url.startswith("sqlite"):
            holding = {pid for pid, _ in processes_holding(sqlite_file(self.database_url))}
            return set(pids) <= holding
        with self.engine.connect() as conn:
            queued = conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).scalar_one()
        return queued >= len(pids)

    def __exit__(self, *exc):
        if self.database_url.startswith("sqlite"):
            self.conn.execute("ROLLBACK")
            self.conn.close()
        else:
            self.transaction.rollback()
            self.conn.close()
            self.engine.dispose()


def test_two_processes_opening_a_release_1_database_at_once_upgrade_it_once(database_url, env, tmp_path):
    load_release_1(database_url)
    with HeldMigrationLock(database_url) as lock:
        processes = [newsletter_process("db", "upgrade", folder=tmp_path, env=env) for _ in range(2)]
        wait_until(lambda: lock.waiting([p.pid for p in processes]) or any(p.poll() is not None for p in processes),
                   "both upgrades to wait for the migration lock")
    outputs = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    said = sorted(out.strip() for out, _err in outputs)
    assert said == sorted([UPGRADED, f"The database is current (revision {HEAD}); nothing to do."]), outputs
    assert all(err == "" for _out, err in outputs), outputs
    assert schema_facts(database_url)["revision"] == HEAD
    store = open_store(database_url)
    try:
        assert {s.email: (s.status, s.name) for s in store.iter_subscribers()} == RELEASE_1_SUBSCRIBERS
    finally:
        store.close()


def test_two_commands_opening_a_release_1_database_together_both_work(tmp_path, env):
    database_url = env["NEWSLETTER_DATABASE_URL"]
    load_release_1(database_url)
    with HeldMigrationLock(database_url) as lock:
        processes = [newsletter_process("subscribers", "count", folder=tmp_path, env=env) for _ in range(2)]
        wait_until(lambda: lock.waiting([p.pid for p in processes]) or any(p.poll() is not None for p in processes),
                   "both commands to open the database")
    outputs = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert [err for _out, err in outputs].count(UPGRADED + "\n") == 1, outputs
    assert sorted(err for _out, err in outputs) == ["", UPGRADED + "\n"]
    for out, _err in outputs:
        assert re.search(r"^active\s+3$", out, re.M) and re.search(r"^total\s+7$", out, re.M), out


# --------------------------------------------------------------------------
# db status, db upgrade


def test_db_status_shows_the_pending_migration_and_changes_nothing(database_url, cli_run):
    load_release_1(database_url)
    before = raw_rows(database_url), schema_facts(database_url)
    digest_before = digest(sqlite_file(database_url)) if database_url.startswith("sqlite") else None
    result = cli_run("db", "status")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "Current revision: none: made by release 1, which counts as 0001",
        f"Latest revision:  {HEAD}",
        pending_line(AFTER_BASELINE),
    ]
    assert (raw_rows(database_url), schema_facts(database_url)) == before
    if digest_before is not None:
        assert digest(sqlite_file(database_url)) == digest_before
        assert not sqlite_file(database_url).with_name("newsletter.inbox.db").exists()
    upgraded = cli_run("db", "upgrade")
    assert (upgraded.exit_code, upgraded.stdout, upgraded.stderr) == (0, UPGRADED + "\n", "")
    current = cli_run("db", "upgrade")
    assert current.stdout == f"The database is current (revision {HEAD}); nothing to do.\n"
    after = cli_run("db", "status")
    assert after.stdout.splitlines() == [f"Current revision: {HEAD}", f"Latest revision:  {HEAD}",
                                         "Pending migrations: none"]


def test_db_status_of_a_database_not_made_yet_creates_nothing(tmp_path, cli_run):
    result = cli_run("db", "status")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "Current revision: none: the database is new or empty"
    assert result.stdout.splitlines()[2] == pending_line(migrate.known_revisions())
    assert not (tmp_path / "db").exists()
    created = cli_run("db", "upgrade")
    assert created.stdout == f"Created the database at revision {HEAD}.\n"


def test_a_new_database_is_created_by_an_import_which_says_so(tmp_path, env, cli_run):
    database_url = env["NEWSLETTER_DATABASE_URL"]
    (tmp_path / "list.csv").write_text("email\nada@example.com\n", encoding="utf-8")
    result = cli_run("subscribers", "import", str(tmp_path / "list.csv"))
    assert (result.exit_code, result.stderr) == (0, f"Created a new database at {tmp_path / 'db' / 'newsletter.db'}\n")
    assert schema_facts(database_url)["revision"] == HEAD


def test_db_status_on_an_unreachable_database_is_one_clean_error(cli_run):
    result = cli_run("db", "status", NEWSLETTER_DATABASE_URL="postgresql+psycopg://nobody:pw@127.0.0.1:1/none")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: cannot read the database:")
    assert "Traceback" not in result.output and "pw" not in result.stderr


def test_the_help_describes_every_db_command(cli_run):
    for command in ("status", "upgrade", "backup", "restore"):
        result = cli_run("db", command, "--help", NEWSLETTER_DATABASE_URL="sqlite:///unused.db")
        assert result.exit_code == 0
        assert len(result.stdout.split("\n\n")[1].strip()) > 20, result.stdout



def test_serve_upgrades_a_release_1_database_and_says_so_once(tmp_path, env):
    database_url = env["NEWSLETTER_DATABASE_URL"]
    load_release_1(database_url)
    port = free_port()
    server_env = clean_env(**env, NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}")
    with newsletter_server(["serve", "--port", str(port)], port, tmp_path, server_env) as base:
        with urllib.request.urlopen(f"{base}/issues/2025-03-10", timeout=30) as page:
            assert page.status == 200 and "Sparse Attention at Scale" in page.read().decode()
    log = (tmp_path / f"server-{port}.log").read_text()
    assert log.splitlines().count(UPGRADED) == 1, log
    assert schema_facts(database_url)["revision"] == HEAD


def test_an_upgrade_keeps_sent_editions_on_the_web_and_takes_off_those_never_sent(database_url, cli_run, web_client):
    load_release_1(database_url)
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:  # rendered (or a dry run) before this release: stored, never sent
            conn.execute(text("INSERT INTO issues (date, subject, preheader, paper_count, web_html, text, created_at,"
                              " updated_at) VALUES ('2027-03-12', 'A mistyped date', '', 1, '<p>typo</p>', 'typo',"
                              " '2025-03-12 06:00:00', '2025-03-12 06:00:00')"))
    finally:
        engine.dispose()
    upgraded = cli_run("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    store = open_store(database_url)
    try:
        assert [i.date.isoformat() for i in store.list_issues(published_only=True)] == ["2025-03-11", "2025-03-10"]
        assert store.get_issue(dt.date(2027, 3, 12)).published_at is None  # still stored, for `publish`
        client = web_client()
        assert client.get("/issues/2025-03-10").status_code == 200
        assert client.get("/issues/2027-03-12").status_code == 404
        assert "2027-03-12" not in client.get("/issues/feed.xml").get_data(as_text=True)
    finally:
        store.close()


def test_an_upgrade_keeps_every_stored_profile_at_every_title_for_the_rest_of_the_day(database_url):
    from alembic import command

    load_release_1(database_url)
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            command.stamp(migrate.alembic_config(conn), migrate.BASELINE)  # as an upgrade does first
            command.upgrade(migrate.alembic_config(conn), "0007")
            ids = list(conn.execute(text("SELECT id FROM subscribers ORDER BY id")).scalars())[:2]
            for n, subscriber_id in enumerate(ids):
                conn.execute(text("INSERT INTO profiles (subscriber_id, lists, picks, updated_at)"
                                  " VALUES (:id, :lists, :picks, '2026-12-01 06:00:00')"),
                             {"id": subscriber_id, "lists": '{"interests":["concept erasure"]}', "picks": n})
    finally:
        engine.dispose()
    store = open_store(database_url)
    try:
        assert str(store.migration) == f"Upgraded the database from 0007 to {HEAD}."
        profiles = store.profiles(ids)
        assert [(p.interests, p.picks, p.rest) for p in profiles.values()] == [
            (("concept erasure",), 0, RestOfDay.TITLES), (("concept erasure",), 1, RestOfDay.TITLES)]
        # Saved again with the other choice, it is kept.
        store.save_profile(dataclasses.replace(profiles[ids[0]], rest=RestOfDay.COUNT))
        assert store.profile(ids[0]).rest == RestOfDay.COUNT and store.profile(ids[1]).rest == RestOfDay.TITLES
    finally:
        store.close()


def test_an_upgrade_merges_a_paper_stored_without_and_with_an_arxiv_id(database_url):
    from alembic import command

    load_release_1(database_url)
    engine = create_engine(database_url)
    stamp = "'2025-03-12 06:00:00'"
    try:
        with engine.begin() as conn:
            command.stamp(migrate.alembic_config(conn), migrate.BASELINE)
            command.upgrade(migrate.alembic_config(conn), "0009")
            reader = list(conn.execute(text("SELECT id FROM subscribers ORDER BY id")).scalars())[0]
            for key, arxiv_id, title in (("title:sparse-attention", None, "Sparse Attention"),
                                         ("2503.00001", "2503.00001", "Sparse attention!")):
                conn.execute(text("INSERT INTO papers (key, arxiv_id, title, abstract, authors, keywords, categories,"
                                  f" updated_at) VALUES (:k, :a, :t, 'Text.', '[]', '[]', '[]', {stamp})"),
                             {"k": key, "a": arxiv_id, "t": title})
            conn.execute(text("INSERT INTO appearances (date, rank, paper_key) VALUES"
                              " ('2025-03-11', 0, 'title:sparse-attention'), ('2025-03-12', 0, '2503.00001')"))
            conn.execute(text("INSERT INTO votes (subscriber_id, paper_key, vote, edition, at) VALUES"
                              f" (:r, 'title:sparse-attention', 1, '2025-03-11', {stamp})"), {"r": reader})
            conn.execute(text("INSERT INTO profiles (subscriber_id, lists, picks, updated_at) VALUES"
                              f" (:r, '{{\"liked\":[\"title:sparse-attention\"]}}', 5, {stamp})"), {"r": reader})
            conn.execute(text("INSERT INTO picks (edition, subscriber_id, position, paper_key, paper_rank, score,"
                              " why_kind, why_subject) VALUES ('2025-03-11', :r, 0, 'title:sparse-attention', 0, 0.5,"
                              " 'interest', 'attention')"), {"r": reader})
    finally:
        engine.dispose()
    store = open_store(database_url)
    try:
        assert str(store.migration) == f"Upgraded the database from 0009 to {HEAD}."
        assert store.paper("title:sparse-attention") is None
        assert {a.date for a in store.paper("2503.00001")[1]} == {dt.date(2025, 3, 11), dt.date(2025, 3, 12)}
        assert store.canonical_keys(["title:sparse-attention"]) == {"title:sparse-attention": "2503.00001"}
        assert [v.paper_key for v in store.votes(reader)] == ["2503.00001"]
        assert store.profile(reader).liked == ("2503.00001",)
        assert store.picks_of("2025-03-11", [reader])[reader][0].key == "2503.00001"
    finally:
        store.close()


def test_an_upgrade_keeps_the_30_day_rule_for_papers_picked_before_it(database_url):
    from alembic import command

    load_release_1(database_url)
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            command.stamp(migrate.alembic_config(conn), migrate.BASELINE)
            command.upgrade(migrate.alembic_config(conn), "0012")
            first, second = list(conn.execute(text("SELECT id FROM subscribers ORDER BY id")).scalars())[:2]
            for reader, key in ((first, "2503.00001"), (first, "2503.00002"), (second, "2503.00001")):
                conn.execute(text("INSERT INTO picks (edition, subscriber_id, position, paper_key, paper_rank, score,"
                                  " why_kind, why_subject) VALUES ('2025-03-04', :r, :n, :k, 0, 0.5, 'interest', 'x')"),
                             {"r": reader, "n": int(key[-1]), "k": key})
            for reader in (first, second):
                conn.execute(text("INSERT INTO deliveries (issue_date, subscriber_id, status, message_id, updated_at)"
                                  " VALUES ('2025-03-04', :r, 'sent', 'm', '2025-03-04 06:00:00')"), {"r": reader})
    finally:
        engine.dispose()
    store = open_store(database_url)
    try:
        assert str(store.migration) == f"Upgraded the database from 0012 to {HEAD}."
        # Each edition's picked papers, once each, from the picks stored before.
        with store.engine.connect() as conn:
            assert sorted(conn.execute(text("SELECT edition, paper_key FROM picked_papers")).all()) == [
                ("2025-03-04", "2503.00001"), ("2025-03-04", "2503.00002")]
        tuesday = dt.date(2025, 3, 11)
        assert store.recently_picked(tuesday, ["2503.00001", "2503.00003"], [first, second]) == {
            first: {"2503.00001"}, second: {"2503.00001"}}
    finally:
        store.close()


def test_an_upgrade_keeps_every_stored_profile_without_muted_phrases_hiding_from_picks_only(database_url):
    from alembic import command

    load_release_1(database_url)
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            command.stamp(migrate.alembic_config(conn), migrate.BASELINE)  # as an upgrade does first
            command.upgrade(migrate.alembic_config(conn), "0009")
            subscriber_id = conn.execute(text("SELECT id FROM subscribers ORDER BY id")).scalars().first()
            conn.execute(text("INSERT INTO profiles (subscriber_id, lists, picks, rest, updated_at)"
                              " VALUES (:id, :lists, 2, 'count', '2026-12-01 06:00:00')"),
                         {"id": subscriber_id, "lists": '{"interests":["concept erasure"]}'})
    finally:
        engine.dispose()
    store = open_store(database_url)
    try:
        assert str(store.migration) == f"Upgraded the database from 0009 to {HEAD}."
        profile = store.profile(subscriber_id)
        assert (profile.interests, profile.picks, profile.rest, profile.muted, profile.muting) == (
            ("concept erasure",), 2, RestOfDay.COUNT, (), Muting.PICKS)
        store.save_profile(dataclasses.replace(profile, muted=("robots",), muting=Muting.TOP))
        assert store.profile(subscriber_id) == dataclasses.replace(profile, muted=("robots",), muting=Muting.TOP)
    finally:
        store.close()


