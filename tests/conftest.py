"""Shared fixtures. Every test runs in its own empty folder with no
NEWSLETTER_* variables set, so no test reads a real .env or environment."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.core.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "daily-papers-mar-11.txt"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# The files that take longest on two workers (a --durations run), longest
# first: run first, so that the two workers (`make test`: -n 2 --dist
# loadfile --no-loadscope-reorder, whole files in collection order) end
# together instead of one running a two-minute file alone at the end.
LONGEST_FIRST = ("test_admin.py", "test_reader_actions.py", "test_send_crash.py", "test_email_look.py",
                 "test_search.py", "test_send_command.py", "test_send.py", "test_send_ses.py", "test_sns.py",
                 "test_sns_fuzz.py", "test_web.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests of :data:`LONGEST_FIRST`'s files first, in its order;
    the others keep theirs."""
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Run in an empty folder with no NEWSLETTER_* settings from outside."""
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def settings() -> Settings:
    """Default settings, as a fresh install has them."""
    return Settings()


def unavailable(reason: str):
    """Skip with ``reason`` locally; fail in CI, where everything must run."""
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def wait_until(predicate, what: str, timeout: float = 20.0, interval: float = 0.01):
    """Return ``predicate()``'s first true value, polling it; fail the test
    naming ``what`` when ``timeout`` seconds pass first (a generous bound
    on a loaded machine: the test waits on the condition, not on time)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def browser():
    """A headless Debian Chromium driven by Playwright (session-wide)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    if not shutil.which(CHROMIUM):
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium; `make test` does it as root)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# --------------------------------------------------------------------------
# databases

# `make test` (tests/ensure-tools.sh) creates this role and database on the
# local PostgreSQL server; TEST_POSTGRES_URL points the tests elsewhere.
BASE_POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://newsletter_test:newsletter_test@127.0.0.1:5432/newsletter_test"
)
# With pytest -n (xdist), each worker has a database of its own, beside the
# configured one: <name>_gw0, <name>_gw1, … (made on first use).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
POSTGRES_URL = BASE_POSTGRES_URL
if _WORKER:
    from sqlalchemy.engine import make_url as _make_url

    _base = _make_url(BASE_POSTGRES_URL)
    POSTGRES_URL = _base.set(database=f"{_base.database}_{_WORKER}").render_as_string(hide_password=False)
# Generated with secrets.token_urlsafe(32), as the configuration reference says: a key that
# looks made up (words, sequences) is refused.
SECRET = "LFyKQE0xc10o8hzuXR9uDhRIeK-8sIqVN71UqgSI5s8"


def _create_worker_database() -> None:
    """Make this worker's database (see POSTGRES_URL) unless it exists."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = make_url(POSTGRES_URL).database
    engine = create_engine(BASE_POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            if conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}) is None:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()


# This worker's PostgreSQL schema (see _schema_of) as the migrations left
# it the last time _reset_postgres built it, and the tables they put rows
# in (kept, not emptied); None before.
_MIGRATED_SCHEMA: tuple[str, frozenset[str]] | None = None
# This worker's connection to its database, kept between tests (an idle
# connection holds no lock): connecting anew took 20 ms a test.
_WORKER_ENGINE = None

# Everything of the database's own schema a test could have changed: the
# columns, indexes, constraints, triggers and functions, and the revision.
_SCHEMA_QUERY = """
SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
  SELECT 'c ' || table_name || ' ' || column_name || ' ' || data_type || ' ' || coalesce(column_default, '')
         || ' ' || is_nullable || ' ' || coalesce(generation_expression, '') AS x
    FROM information_schema.columns WHERE table_schema = 'public'
  UNION ALL SELECT 'i ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
  UNION ALL SELECT 'k ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = 'public'::regnamespace
  UNION ALL SELECT 't ' || tgrelid::regclass || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL SELECT 'f ' || oid::regprocedure::text FROM pg_proc WHERE pronamespace = 'public'::regnamespace
) AS parts
"""


def _schema_of(conn, kept: frozenset[str] | None = None) -> str:
    """The schema of the database ``conn`` is on, as one text, with the
    rows of the tables ``kept`` (default: those of :data:`_MIGRATED_SCHEMA`,
    the migrations' own rows such as the revision and the schema version)."""
    schema = conn.exec_driver_sql(_SCHEMA_QUERY).scalar() or ""
    tables = set(conn.exec_driver_sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").scalars())
    kept = _MIGRATED_SCHEMA[1] if kept is None else kept
    rows = [f"{name}: {sorted(map(tuple, conn.exec_driver_sql(f'SELECT * FROM {chr(34)}{name}{chr(34)}').all()))}"
            for name in sorted(kept) if name in tables]
    return "\n".join([schema, *rows])


def _reset_postgres(empty: bool = False) -> None:
    """Make this worker's database as a new one: with ``empty``, no tables
    at all (today's, the inbox, Alembic's revision, release 1's: a test may
    load a database made by release 1); else as the migrations build it,
    with no rows. The migrations run once per worker: a database whose
    schema is still exactly as they left it is only emptied, and
    one a test changed is dropped and built again."""
    global _MIGRATED_SCHEMA, _WORKER_ENGINE
    from sqlalchemy import create_engine

    from newsletter.store import open_store
    from newsletter.store.migrate import RELEASE_1_TABLES, VERSION_TABLE
    from newsletter.store.schema import inbox_metadata, metadata

    if _WORKER_ENGINE is None:
        try:
            if POSTGRES_URL != BASE_POSTGRES_URL:
                _create_worker_database()
            engine = create_engine(POSTGRES_URL, pool_size=1, pool_pre_ping=True, connect_args={"connect_timeout": 3})
            with engine.begin():
                pass
        except Exception as exc:  # no server, no role, no driver
            unavailable(f"PostgreSQL not reachable at 127.0.0.1:5432 ({type(exc).__name__}); run `make test` as root")
        _WORKER_ENGINE = engine
    engine = _WORKER_ENGINE
    with engine.begin() as conn:
        if not empty and _MIGRATED_SCHEMA is not None and _schema_of(conn) == _MIGRATED_SCHEMA[0]:
            # DELETE, children before parents, and the id sequences set
            # back to their start (the kept tables, the migrations' own rows,
            # have none): on a test's few rows this takes 6 ms where
            # TRUNCATE (new files for every table and index) took 74.
            for table in [*reversed(metadata.sorted_tables), *reversed(inbox_metadata.sorted_tables)]:
                if table.name not in _MIGRATED_SCHEMA[1]:
                    conn.exec_driver_sql(f'DELETE FROM "{table.name}"')
            conn.exec_driver_sql("SELECT setval(s.seqrelid::regclass, s.seqstart, false) FROM pg_sequence s "
                                 "JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace = 'public'::regnamespace")
            return
        names = {*metadata.tables, *inbox_metadata.tables, *RELEASE_1_TABLES, VERSION_TABLE}
        for name in sorted(names):
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}" CASCADE')
    if empty:
        return
    open_store(POSTGRES_URL).close()
    with engine.begin() as conn:
        tables = conn.exec_driver_sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").scalars().all()
        kept = frozenset(t for t in tables if conn.exec_driver_sql(f'SELECT EXISTS (SELECT FROM "{t}")').scalar())
        _MIGRATED_SCHEMA = _schema_of(conn, kept), kept


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A fresh database with no rows: embedded SQLite (no file yet), then the
    real PostgreSQL (its tables made by the migrations, as a first
    ``open_store`` makes them: see :func:`_reset_postgres`)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'subscribers' / 'newsletter.db'}"
    _reset_postgres()
    return POSTGRES_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path) -> str:
    """A database with no tables at all, for what an upgrade or a first
    open does to one: embedded SQLite (no file yet), then the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'subscribers' / 'newsletter.db'}"
    _reset_postgres(empty=True)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """A SQLite database as the migrations made it, made once per worker:
    a test that opens its store at once starts from a copy (see
    :func:`_copy_migrated`). What a first open does to a new file is tested
    where a test opens a path of its own, or runs a command."""
    from newsletter.store import open_store

    template = tmp_path_factory.mktemp("migrated") / "newsletter.db"
    open_store(f"sqlite:///{template}").close()  # the last connection's close leaves no WAL behind
    return template


def _copy_migrated(template: Path, database_url: str) -> None:
    """Copy ``template`` to ``database_url``'s file when it is SQLite's and
    there is no file there yet (8 ms, where running the migrations takes
    85 ms a test); other URLs are left alone."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, url.database)


@pytest.fixture
def store(database_url, migrated_sqlite):
    """An open :class:`Store` on a fresh database (SQLite and PostgreSQL)."""
    from newsletter.store import open_store

    _copy_migrated(migrated_sqlite, database_url)
    opened = open_store(database_url)
    yield opened
    opened.close()


def count_signups(store, *, since, email: str | None = None, client: str | None = None) -> int:
    """How many sign-up requests ``store``'s inbox recorded for ``email`` (or
    from ``client``) since ``since``, applied or not."""
    from sqlalchemy import func, select

    from newsletter.core.models import ReaderActionKind
    from newsletter.store.schema import actions_table as a

    query = select(func.count()).select_from(a).where(a.c.kind == ReaderActionKind.SIGNUP, a.c.received_at >= since)
    if email is not None:
        query = query.where(a.c.email_key == email.strip().lower())
    if client is not None:
        query = query.where(a.c.client == client[:64])
    with store.inbox.connect() as conn:
        return conn.scalar(query)


# A test has one database. A test that uses ``database_url`` (or ``store``)
# runs on both, and its ``env``, ``db``, ``cli_run`` and ``web_client`` are
# on that database, through the same ``store``; any other test has one
# SQLite file in its folder, not made until something makes it.


def _uses_both_databases(request) -> bool:
    return "database_url" in request.fixturenames


@pytest.fixture
def env(request, tmp_path) -> dict[str, str]:
    """Settings for a command run (NEWSLETTER_* variables): the test's
    database, a strong key, an outbox in tmp."""
    if _uses_both_databases(request):
        database_url = request.getfixturevalue("database_url")
    else:
        database_url = f"sqlite:///{tmp_path / 'db' / 'newsletter.db'}"
    return {
        "NEWSLETTER_DATABASE_URL": database_url,
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_OUTBOX_DIR": str(tmp_path / "outbox"),
    }


@pytest.fixture
def db(request, env, migrated_sqlite):
    """The test's database (``env``'s), opened: ``store`` itself on a test
    that runs on both databases."""
    if _uses_both_databases(request):
        yield request.getfixturevalue("store")
        return
    from newsletter.store import open_store

    _copy_migrated(migrated_sqlite, env["NEWSLETTER_DATABASE_URL"])
    opened = open_store(env["NEWSLETTER_DATABASE_URL"])
    yield opened
    opened.close()


# --------------------------------------------------------------------------
# the command line, in this process


class CliRun:
    """The ``newsletter`` command run in this process (click's CliRunner),
    with ``env`` (NEWSLETTER_* variables) over the process's environment.
    With ``color`` its output keeps the escape codes a terminal would be
    given (click strips them from what is not a terminal)."""

    def __init__(self, env: dict[str, str] | None = None, color: bool = False):
        self.env = dict(env or {})
        self.color = color

    def __call__(self, *args: str, input: str | None = None, **settings: str) -> Result:
        """Run ``newsletter ARGS`` with ``settings`` over ``env``, ``input``
        on its stdin; return click's Result. An exception the command lets
        out is raised here (a bug: the command's errors are exit codes)."""
        from newsletter.cli import cli

        return CliRunner().invoke(cli, list(args), env={**self.env, **settings}, input=input, color=self.color,
                                  catch_exceptions=False)


def ok(result: Result) -> str:
    """Assert that the command behind ``result`` exited 0 with no
    traceback; return its standard output."""
    assert result.exit_code == 0, (result.output, result.stderr)
    assert "Traceback" not in result.output
    return result.stdout


def one_line_error(result: Result, *parts: str) -> str:
    """Assert that the command behind ``result`` failed as a user should see
    it: exit 2, one line on stderr starting "Error:" and naming each of
    ``parts``, nothing on stdout, no traceback; return that line."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = result.stderr.strip()
    assert message.startswith("Error:"), message
    assert "\n" not in message, message
    for part in parts:
        assert part in message, (part, message)
    assert result.stdout == ""
    return message


def digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def readers_in_outbox(folder: Path) -> set[int]:
    """The ids of the readers whose messages are in ``folder``, an issue's
    outbox folder (``<id>-<address>.eml`` files; none when it is absent):
    copies outside the ledger (``<UTC time>-<random>.eml``) are left out."""
    return {int(p.name.split("-", 1)[0]) for p in folder.glob("*-*@*.eml")} if folder.exists() else set()


def outbox_file(folder: Path, subscriber_id: int) -> Path:
    """The file of reader ``subscriber_id``'s message in ``folder``, an
    issue's outbox folder; fails unless there is exactly one."""
    [path] = folder.glob(f"{subscriber_id}-*.eml")
    return path


def batch_file(folder: Path, day: dt.date) -> Path:
    """A batch file of two papers dated ``day`` in ``folder``."""
    path = folder / f"{day}.json"
    path.write_text(json.dumps({"format": "newsletter-batch/1", "date": day.isoformat(), "papers": [
        {"title": f"Paper one of {day}", "abstract": "We study it."},
        {"title": f"Paper two of {day}", "abstract": "We study it too."},
    ]}), encoding="utf-8")
    return path


@pytest.fixture
def cli_run(env) -> CliRun:
    """The ``newsletter`` command on the test's settings (``env``)."""
    return CliRun(env)


# --------------------------------------------------------------------------
# the web app, through Flask's test client


@pytest.fixture
def web_client(request, env):
    """Return a function making a test client of the public web app on the
    test's database, through its open store (``db``), with ``env``'s
    settings and ``settings`` (fields of :class:`Settings`) over them.

    The app's worker thread is not started (a test applies what waits with
    ``client.application.extensions["newsletter"].actions.run_pending()``).
    A client keeps no cookies unless ``cookies`` (the dashboard's session).
    ``mailer`` is the app's sender object and ``sns_verifier`` its SNS
    verifier (``create_app``'s ``sender`` and ``sns_verifier``)."""
    from newsletter.web import create_app

    def make(*, cookies: bool = False, mailer=None, sns_verifier=None, **settings):
        config = dataclasses.replace(load_settings(env), **settings)
        app = create_app(config, request.getfixturevalue("db"), sender=mailer, sns_verifier=sns_verifier,
                         background=False)
        return app.test_client(use_cookies=cookies)

    return make


# --------------------------------------------------------------------------
# real server processes

STARTUP_SECONDS = 15


def clean_env(**settings: str) -> dict[str, str]:
    """The environment without any NEWSLETTER_* variable, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(settings)
    return env


def newsletter_process(*args: str, folder: Path, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """Start ``python -m newsletter ARGS`` as a real process in ``folder``
    (which holds no .env), its environment ``clean_env(**env)``; its
    output is piped, as text, unless ``popen`` says otherwise."""
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen}
    return subprocess.Popen([sys.executable, "-m", "newsletter", *args], cwd=folder, env=clean_env(**(env or {})),
                            **options)


def newsletter_run(*args: str, folder: Path, env: dict[str, str] | None = None,
                   timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m newsletter ARGS`` as a real process in ``folder``
    (its environment ``clean_env(**env)``) to its end; return it, its
    output captured as text. ``timeout`` only catches a hang."""
    return subprocess.run([sys.executable, "-m", "newsletter", *args], cwd=folder, env=clean_env(**(env or {})),
                          capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def newsletter_server(args: list[str], port: int, folder: Path, env: dict[str, str]):
    """Run ``python -m newsletter ARGS`` from ``folder`` (which holds no .env)
    and yield its base URL once ``port`` answers; stop it afterwards. Fails
    the test, with the server's log, if it exits or never answers."""
    log_path = folder / f"server-{port}.log"
    with open(log_path, "wb") as log:
        process = newsletter_process(*args, folder=folder, env=env, stdout=log, stderr=subprocess.STDOUT, text=False)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"{args[0]} exited with {process.returncode}: {log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{args[0]} did not answer on port {port} within {STARTUP_SECONDS} s")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# --------------------------------------------------------------------------
# an independent SES emulator (see tests/ses_emulator.py)


@pytest.fixture(scope="session")
def ses_emulator_process(tmp_path_factory):
    """One aws-ses-v2-local process for the session (it starts in well
    under a second, but there is no need to start it per test)."""
    from ses_emulator import EmulatorError, SesEmulator, missing

    reason = missing()
    if reason:
        unavailable(reason)
    emulator = SesEmulator(free_port(), tmp_path_factory.mktemp("ses-emulator") / "emulator.log")
    try:
        emulator.start()
    except EmulatorError as exc:
        pytest.fail(str(exc))
    yield emulator
    emulator.stop()


@pytest.fixture
def ses_emulator(ses_emulator_process):
    """The aws-ses-v2-local emulator with nothing sent and no template
    stored (``POST /clear-store``); its URL is ``.url``, what was sent
    ``.emails()``."""
    ses_emulator_process.clear()
    return ses_emulator_process


# --------------------------------------------------------------------------
# browser pages

PHONE = {"width": 375, "height": 800}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture
def new_page(browser):
    """Return a function opening a page in a fresh browser context (closed
    afterwards); the page records Content-Security-Policy violations in
    ``page.csp``."""
    contexts = []

    def open_page(viewport=None, **options):
        context = browser.new_context(viewport=viewport or DESKTOP, **options)
        contexts.append(context)
        page = context.new_page()
        page.csp = []
        page.on("console", lambda m: page.csp.append(m.text) if "Content Security Policy" in m.text else None)
        return page

    yield open_page
    for context in contexts:
        context.close()


def page_widths(target) -> dict:
    """The document's scroll width and viewport width in the page or frame
    ``target`` (a Page or a FrameLocator)."""
    return target.locator("html").evaluate(
        "el => ({scroll: el.scrollWidth, inner: el.ownerDocument.defaultView.innerWidth})"
    )


# --------------------------------------------------------------------------
# a reader's copy of an issue


def reader_parts(issue, subscriber, picks_state: str = "invite", picks=(), base: str = "http://127.0.0.1:8000",
                 secret: str = SECRET) -> tuple[str, str]:
    """The (HTML, text) of ``issue`` as ``subscriber`` gets it from every
    sender: their links, feedback token part and picks section (a reader who
    never set an interest gets the invitation)."""
    from newsletter.sending.personalize import Recipient, picks_section, reader_preheader
    from newsletter.readers.tokens import Signer

    signer = Signer(secret)
    recipient = Recipient(
        subscriber.id, subscriber.email, subscriber.name, signer.unsubscribe_url(base, subscriber.ref),
        preferences_url=signer.preferences_url(base, subscriber.ref),
        feedback=signer.feedback_reader_part(subscriber.ref, issue.edition) if issue.paper_codes else "",
        picks_state=picks_state if issue.picks else "off", picks=tuple(picks),
    )
    return issue.personalized(recipient.unsubscribe_url, recipient.preferences_url, recipient.feedback,
                              picks_section(issue, recipient), reader_preheader(issue, recipient))
