"""The subscriber store on SQLite and PostgreSQL: adding, status changes and
their history, paging, imports in one transaction, stored issues, the schema
version, SQLite's WAL and busy timeout, and clear errors for bad URLs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time

import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy.engine import make_url

from conftest import POSTGRES_URL, free_port
from newsletter.core.config import Settings
from newsletter.core.errors import InvalidEmail, StoreError
from newsletter.core.models import UNSUBSCRIBE_URL_MARK, Batch, Paper, SubscriberRow, SubscriberStatus
from newsletter.issue.render import render_issue
from newsletter.store import Ledger, open_store
from newsletter.store.schema import SCHEMA_VERSION, events_table, issues_table, meta_table, subscribers_table

STATUSES = tuple(SubscriberStatus)

UTC = dt.timezone.utc


def assert_recent_utc(stamp: dt.datetime) -> None:
    assert stamp.tzinfo is not None, stamp
    assert stamp.utcoffset() == dt.timedelta(0), stamp
    assert abs(dt.datetime.now(UTC) - stamp) < dt.timedelta(minutes=2), stamp


def table_count(store, table) -> int:
    with store.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(table))


def add_many(store, count: int) -> list:
    return [store.add(f"reader{i:02d}@example.com", f"Reader {i}")[0] for i in range(count)]


# --------------------------------------------------------------------------
# add


def test_add_normalizes_and_records_the_subscription(store):
    subscriber, created = store.add("  ada@EXAMPLE.com ", "Ada   Lovelace", source="cli")
    assert created is True
    assert subscriber.email == "ada@example.com"
    assert subscriber.name == "Ada Lovelace"
    assert subscriber.status == "active"
    assert subscriber.source == "cli"
    assert subscriber.ref and "ada" not in subscriber.ref.lower()
    assert_recent_utc(subscriber.created_at)
    assert_recent_utc(subscriber.updated_at)

    (event,) = store.events(subscriber.id)
    assert event.old_status is None
    assert event.new_status == "active"
    assert event.reason == "subscribed"
    assert event.source == "cli"
    assert_recent_utc(event.at)

    assert store.get(email="ADA@example.com") == subscriber
    assert store.get(ref=subscriber.ref) == subscriber


def test_add_is_unique_case_insensitively(store):
    first, created = store.add("ada@example.com", "Ada")
    assert created
    again, created = store.add("Ada@Example.COM", "Someone Else")
    assert created is False
    assert again == first  # same id, ref, address and name
    assert store.counts()["active"] == 1
    assert len(store.events(first.id)) == 1


def test_add_without_a_name(store):
    subscriber, _ = store.add("grace@example.com")
    assert subscriber.name is None


@pytest.mark.parametrize(
    "address", ["", "not-an-address", "a@b@example.com", "ada@", "@example.com", "ada example.com"]
)
def test_add_rejects_invalid_addresses(store, address):
    with pytest.raises(InvalidEmail):
        store.add(address)
    assert sum(store.counts().values()) == 0


@pytest.mark.parametrize("status", ["unsubscribed", "bounced", "complained"])
def test_add_never_reactivates(store, status):
    subscriber, _ = store.add("ada@example.com")
    assert store.change_status(subscriber.id, status, source="test", reason="setup")
    again, created = store.add("ADA@example.com", source="cli")
    assert created is False
    assert again.status == status
    assert store.get(email="ada@example.com").status == status
    assert len(store.events(subscriber.id)) == 2


# --------------------------------------------------------------------------
# status changes


def test_change_status_records_old_and_new_status(store):
    subscriber, _ = store.add("ada@example.com")
    assert store.change_status(subscriber.id, "bounced", source="smtp", reason="550 no such user")
    history = store.events(subscriber.id)
    assert [(e.old_status, e.new_status) for e in history] == [(None, "active"), ("active", "bounced")]
    assert (history[-1].source, history[-1].reason) == ("smtp", "550 no such user")
    assert_recent_utc(history[-1].at)
    after = store.get(ref=subscriber.ref)
    assert after.status == "bounced"
    assert after.updated_at >= subscriber.updated_at
    assert_recent_utc(after.updated_at)


def test_change_status_to_the_same_status_changes_nothing(store):
    subscriber, _ = store.add("ada@example.com")
    assert store.change_status(subscriber.id, "active", source="test", reason="noop") is False
    assert len(store.events(subscriber.id)) == 1


def test_change_status_respects_only_from(store):
    subscriber, _ = store.add("ada@example.com")
    store.change_status(subscriber.id, "complained", source="feedback-loop", reason="spam report")
    assert store.change_status(subscriber.id, "unsubscribed", source="web", reason="x", only_from=("active",)) is False
    assert store.get(ref=subscriber.ref).status == "complained"
    assert len(store.events(subscriber.id)) == 2


def test_change_status_of_an_unknown_id_or_to_an_unknown_status(store):
    assert store.change_status(12345, "unsubscribed", source="cli", reason="x") is False
    subscriber, _ = store.add("ada@example.com")
    with pytest.raises(ValueError):
        store.change_status(subscriber.id, "deleted", source="cli", reason="x")
    assert store.get(ref=subscriber.ref).status == "active"


def test_unsubscribe_is_idempotent(store):
    subscriber, _ = store.add("ada@example.com")
    found, changed = store.unsubscribe(subscriber.ref, source="web", reason="clicked the link")
    assert changed is True
    assert found.id == subscriber.id and found.status == "unsubscribed"
    last = store.events(subscriber.id)[-1]
    assert (last.old_status, last.new_status, last.source, last.reason) == (
        "active", "unsubscribed", "web", "clicked the link",
    )
    assert_recent_utc(last.at)

    found, changed = store.unsubscribe(subscriber.ref, source="one-click", reason="again")
    assert changed is False
    assert found.status == "unsubscribed"
    assert len(store.events(subscriber.id)) == 2
    assert store.counts()["unsubscribed"] == 1


@pytest.mark.parametrize("status", ["bounced", "complained"])
def test_unsubscribe_leaves_bounced_and_complained_alone(store, status):
    subscriber, _ = store.add("ada@example.com")
    store.change_status(subscriber.id, status, source="smtp", reason="setup")
    found, changed = store.unsubscribe(subscriber.ref, source="web", reason="clicked")
    assert changed is False
    assert found.status == status
    assert len(store.events(subscriber.id)) == 2


def test_unknown_ref(store):
    store.add("ada@example.com")
    assert store.unsubscribe("no-such-ref", source="web", reason="x") == (None, False)
    assert store.resubscribe("no-such-ref") == (None, False)
    assert store.get(ref="no-such-ref") is None
    assert store.get(email="nobody@example.com") is None


@pytest.mark.parametrize("source", ["web", "one-click"])
def test_resubscribe_after_the_reader_unsubscribed(store, source):
    subscriber, _ = store.add("ada@example.com")
    store.unsubscribe(subscriber.ref, source=source, reason="clicked")
    found, changed = store.resubscribe(subscriber.ref, source="web")
    assert changed is True
    assert found.status == "active"
    last = store.events(subscriber.id)[-1]
    assert (last.old_status, last.new_status, last.source) == ("unsubscribed", "active", "web")
    assert last.reason
    # Twice: nothing more happens.
    found, changed = store.resubscribe(subscriber.ref)
    assert (found.status, changed) == ("active", False)
    assert len(store.events(subscriber.id)) == 3


def test_no_resubscribe_after_an_operator_removal(store):
    subscriber, _ = store.add("ada@example.com")
    store.change_status(subscriber.id, "unsubscribed", source="cli", reason="removed by the operator")
    found, changed = store.resubscribe(subscriber.ref)
    assert (found.status, changed) == ("unsubscribed", False)
    assert len(store.events(subscriber.id)) == 2


@pytest.mark.parametrize("status", ["bounced", "complained"])
def test_no_resubscribe_when_bounced_or_complained(store, status):
    subscriber, _ = store.add("ada@example.com")
    store.change_status(subscriber.id, status, source="web", reason="setup")
    found, changed = store.resubscribe(subscriber.ref)
    assert (found.status, changed) == (status, False)


def test_no_resubscribe_when_bounced_after_unsubscribing(store):
    subscriber, _ = store.add("ada@example.com")
    store.unsubscribe(subscriber.ref, source="web", reason="clicked")
    store.change_status(subscriber.id, "bounced", source="smtp", reason="550")
    store.change_status(subscriber.id, "unsubscribed", source="cli", reason="cleanup")
    found, changed = store.resubscribe(subscriber.ref)
    assert (found.status, changed) == ("unsubscribed", False)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_timestamps_are_utc_whatever_the_session_time_zone(database_url):
    """PostgreSQL returns timestamptz in the session's zone: still UTC here."""
    url = make_url(database_url)
    options = f"{url.query.get('options', '')} -c timezone=Asia/Tokyo".strip()
    tokyo = open_store(url.update_query_dict({"options": options}).render_as_string(hide_password=False))
    try:
        subscriber, _ = tokyo.add("ada@example.com")
        tokyo.unsubscribe(subscriber.ref, source="web", reason="clicked")
        found = tokyo.get(ref=subscriber.ref)
        for stamp in (found.created_at, found.updated_at, *(e.at for e in tokyo.events(found.id))):
            assert_recent_utc(stamp)
    finally:
        tokyo.close()


# --------------------------------------------------------------------------
# reading


def test_iter_subscribers_pages_in_id_order(store):
    added = add_many(store, 10)
    for subscriber in added[2:5]:
        store.change_status(subscriber.id, "unsubscribed", source="cli", reason="x")
    assert [s.id for s in store.iter_subscribers(page=3)] == [s.id for s in added]
    assert sorted(s.id for s in added) == [s.id for s in added]
    active = [s.id for s in store.iter_subscribers(status="active", page=3)]
    assert active == [s.id for s in added[:2] + added[5:]]
    assert [s.id for s in store.iter_subscribers(status="unsubscribed", page=3)] == [s.id for s in added[2:5]]
    assert list(store.iter_subscribers(status="bounced", page=3)) == []


def test_iter_subscribers_sees_changes_committed_between_pages(store):
    added = add_many(store, 10)
    pages = store.iter_subscribers(status="active", page=3)
    seen = [next(pages).id for _ in range(3)]  # the whole first page
    # Committed while the iteration is between pages: the later pages see it.
    store.unsubscribe(added[7].ref, source="web", reason="clicked")
    late, _ = store.add("late@example.com")
    seen += [s.id for s in pages]
    assert seen == [s.id for s in added if s is not added[7]] + [late.id]


def test_pages_find_sparse_readers_across_many_spans_and_readers_who_join_at_the_end(store):
    """Each read spans a few pages' worth of ids (more while reads come back
    sparse): readers far apart are all found, in order, once."""
    added = add_many(store, 300)
    kept = {0, 1, 2, 150, 298, 299}
    for i, subscriber in enumerate(added):
        if i not in kept:
            store.change_status(subscriber.id, "unsubscribed", source="cli", reason="x")
    pages = store.iter_subscribers(status="active", page=2)
    seen = [next(pages).id for _ in range(5)]  # up to the list's last id
    late, _ = store.add("late@example.com")  # joins once the reading reached the end
    seen += [s.id for s in pages]
    assert seen == [added[i].id for i in sorted(kept)] + [late.id]
    # The ledger's readers still to send, most of the list sent already.
    ledger = Ledger(store, dt.date(2025, 3, 11))
    unsent = [added[1].id, added[150].id, added[299].id]
    ledger.mark_pending([s.id for s in added if s.id not in unsent])
    assert [s.id for s in ledger.iter_unsent(page=2)] == [*unsent, late.id]
    assert ledger.count_unsent() == 4


def test_iter_subscribers_on_an_empty_store(store):
    assert list(store.iter_subscribers(page=3)) == []


def test_active_ids(store):
    added = add_many(store, 5)
    store.change_status(added[1].id, "unsubscribed", source="web", reason="x")
    store.change_status(added[3].id, "bounced", source="smtp", reason="x")
    ids = [s.id for s in added]
    assert store.active_ids(ids) == {added[0].id, added[2].id, added[4].id}
    assert store.active_ids([added[1].id, added[3].id, 99999]) == set()
    assert store.active_ids([]) == set()
    assert store.active_ids(iter(ids[:1])) == {added[0].id}


def test_counts_lists_every_status(store):
    assert store.counts() == dict.fromkeys(STATUSES, 0)
    added = add_many(store, 6)
    store.change_status(added[0].id, "unsubscribed", source="web", reason="x")
    store.change_status(added[1].id, "bounced", source="smtp", reason="x")
    store.change_status(added[2].id, "bounced", source="smtp", reason="x")
    counts = store.counts()
    assert list(counts) == list(STATUSES)
    assert counts == {"active": 3, "unsubscribed": 1, "bounced": 2, "complained": 0}


# --------------------------------------------------------------------------
# import


def test_import_reports_each_line(store):
    ada, _ = store.add("ada@example.com")
    for email, status in [("gone@example.com", "unsubscribed"), ("bounce@example.com", "bounced"),
                          ("spam@example.com", "complained")]:
        subscriber, _ = store.add(email)
        store.change_status(subscriber.id, status, source="test", reason="setup")
    rows = [
        SubscriberRow(2, "new@example.com", "New Reader"),
        SubscriberRow(3, "ADA@example.com", None),
        SubscriberRow(4, "not an address", None),
        SubscriberRow(5, "Gone@Example.com", None),
        SubscriberRow(6, "bounce@example.com", None),
        SubscriberRow(7, "spam@example.com", None),
        SubscriberRow(9, "other@example.com", None),
    ]
    report = store.import_subscribers(rows, source="import:test.csv")
    assert report.added == [2, 9]
    assert report.present == [3]
    assert [line for line, _ in report.invalid] == [4]
    assert "not an address" in report.invalid[0][1]
    assert report.refused == [(5, "unsubscribed"), (6, "bounced"), (7, "complained")]

    new = store.get(email="new@example.com")
    assert (new.name, new.status, new.source) == ("New Reader", "active", "import:test.csv")
    assert store.events(new.id)[0].source == "import:test.csv"
    for email, status in [("gone@example.com", "unsubscribed"), ("bounce@example.com", "bounced"),
                          ("spam@example.com", "complained")]:
        found = store.get(email=email)
        assert found.status == status
        assert len(store.events(found.id)) == 2  # nothing recorded by the import
    assert store.get(email="ada@example.com") == ada
    assert store.counts() == {"active": 3, "unsubscribed": 1, "bounced": 1, "complained": 1}


def test_import_duplicates_in_the_same_file(store):
    gone, _ = store.add("gone@example.com")
    store.change_status(gone.id, "unsubscribed", source="web", reason="x")
    rows = [
        SubscriberRow(2, "ada@example.com", "Ada"),
        SubscriberRow(3, "Ada@Example.com", "Ada again"),
        SubscriberRow(4, "ada@example.com", None),
        SubscriberRow(5, "gone@example.com", None),
        SubscriberRow(6, "GONE@example.com", None),
        SubscriberRow(7, "bad@", None),
        SubscriberRow(8, "bad@", None),
    ]
    report = store.import_subscribers(rows)
    assert report.added == [2]
    assert report.present == [3, 4]
    assert report.refused == [(5, "unsubscribed"), (6, "unsubscribed")]
    assert [line for line, _ in report.invalid] == [7, 8]
    assert store.get(email="ada@example.com").name == "Ada"
    assert store.counts()["active"] == 1


def test_import_is_all_or_nothing(store):
    before, _ = store.add("before@example.com")
    statements = []

    # The write fails after the new subscribers were inserted, while their
    # events are being written: the whole write must roll back.
    def fail_on_events(_conn, _cursor, statement, *_args):
        statements.append(statement)
        if statement.lstrip().upper().startswith("INSERT INTO SUBSCRIBER_EVENTS"):
            raise RuntimeError("disk full")

    event.listen(store.reader, "before_cursor_execute", fail_on_events)
    rows = [SubscriberRow(line, f"reader{line}@example.com", None) for line in range(2, 7)]
    try:
        with pytest.raises(RuntimeError, match="disk full"):
            store.import_subscribers(rows)
    finally:
        event.remove(store.reader, "before_cursor_execute", fail_on_events)
    assert any(s.lstrip().upper().startswith("INSERT INTO SUBSCRIBERS") for s in statements)
    # Only the subscriber from before is left.
    assert [s.email for s in store.iter_subscribers()] == ["before@example.com"]
    assert table_count(store, subscribers_table) == 1
    assert table_count(store, events_table) == 1
    assert store.events(before.id)[0].new_status == "active"

    report = store.import_subscribers(rows)
    assert report.added == [2, 3, 4, 5, 6]
    assert store.counts()["active"] == 6
    assert all(len(store.events(store.get(email=f"reader{line}@example.com").id)) == 1 for line in range(2, 7))


def test_import_of_nothing(store):
    report = store.import_subscribers([])
    assert (report.added, report.present, report.invalid, report.refused) == ([], [], [], [])


# --------------------------------------------------------------------------
# issues


def small_issue(day: dt.date, title: str = "Sparse attention at scale"):
    paper = Paper(
        title=title,
        abstract="We study sparse attention for long documents and find it works well. " * 4,
        authors=("Ada Lovelace", "Alan Turing"),
        arxiv_id="2503.01234",
        url="https://arxiv.org/abs/2503.01234",
    )
    return render_issue(Batch(date=day, papers=(paper,), source="test"), Settings())


@pytest.fixture(scope="module")
def issues(tmp_path_factory):
    """Two small rendered issues (rendered once: it takes a moment)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("issues"))
        return small_issue(dt.date(2025, 3, 10)), small_issue(dt.date(2025, 3, 11), "Diffusion for graphs")


def test_save_and_get_issue(store, issues):
    first, _ = issues
    assert UNSUBSCRIBE_URL_MARK in first.text  # the rendered text has the mark...
    store.save_issue(first)
    stored = store.get_issue(dt.date(2025, 3, 10))
    assert stored.date == dt.date(2025, 3, 10)
    assert stored.subject == first.subject
    assert stored.preheader == first.preheader
    assert stored.paper_count == 1
    assert stored.web_html == first.web_html
    assert "Sparse attention at scale" in stored.web_html
    # ...the stored copy has no personal link to fill in, anywhere.
    assert UNSUBSCRIBE_URL_MARK not in stored.text
    assert UNSUBSCRIBE_URL_MARK not in stored.web_html
    assert "Sparse attention at scale" in stored.text
    assert_recent_utc(stored.updated_at)
    assert store.get_issue(dt.date(2025, 3, 12)) is None


def test_list_issues_newest_first(store, issues):
    first, second = issues
    assert store.list_issues() == []
    store.save_issue(second)
    store.save_issue(first)
    assert [i.date for i in store.list_issues()] == [dt.date(2025, 3, 11), dt.date(2025, 3, 10)]
    assert [i.subject for i in store.list_issues(limit=1)] == [second.subject]


def test_saving_the_same_date_again_replaces_it(store, issues):
    first, _ = issues
    store.save_issue(first)
    old = store.get_issue(first.date)
    changed = dataclasses.replace(first, subject="Corrected subject", paper_count=2, web_html="<p>new</p>")
    store.save_issue(changed)
    stored = store.get_issue(first.date)
    assert (stored.subject, stored.paper_count, stored.web_html) == ("Corrected subject", 2, "<p>new</p>")
    assert stored.updated_at >= old.updated_at
    assert len(store.list_issues()) == 1
    assert table_count(store, issues_table) == 1


# --------------------------------------------------------------------------
# schema


def test_schema_version_is_recorded(store):
    with store.engine.connect() as conn:
        rows = conn.execute(select(meta_table.c.key, meta_table.c.value)).all()
    assert [tuple(r) for r in rows] == [("schema_version", str(SCHEMA_VERSION))]


def test_opening_twice_keeps_the_data(store, database_url):
    subscriber, _ = store.add("ada@example.com")
    second = open_store(database_url)
    try:
        assert second.get(email="ada@example.com") == subscriber
        assert table_count(second, meta_table) == 1
        second.add("grace@example.com")
    finally:
        second.close()
    assert store.counts()["active"] == 2


def test_a_newer_schema_is_refused(store, database_url):
    # A newer release's migration leaves a revision this release does not know.
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="upgraded by a newer release .revision 9999.; this release knows up to"):
        open_store(database_url)


def test_an_older_or_equal_schema_opens(store, database_url):
    with store.engine.begin() as conn:
        conn.execute(insert(subscribers_table).values(
            ref="r1", email="x@example.com", email_key="x@example.com", status="active", source="old",
            created_at=dt.datetime.now(UTC), updated_at=dt.datetime.now(UTC),
        ))
    reopened = open_store(database_url)
    try:
        assert reopened.get(ref="r1").email == "x@example.com"
    finally:
        reopened.close()


def test_ping(store):
    store.ping()


# --------------------------------------------------------------------------
# SQLite specifics


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'deep' / 'er' / 'newsletter.db'}"


def test_sqlite_file_is_created_with_its_folder(tmp_path, sqlite_url):
    assert not (tmp_path / "deep").exists()
    store = open_store(sqlite_url)
    try:
        assert (tmp_path / "deep" / "er" / "newsletter.db").is_file()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    finally:
        store.close()


def test_sqlite_waits_for_another_writer(sqlite_url):
    holder, writer = open_store(sqlite_url), open_store(sqlite_url)
    locked, errors = threading.Event(), []

    def hold_a_write_transaction():
        try:
            with holder.engine.begin() as conn:
                holder._insert_subscriber(conn, "holder@example.com", None, "test")
                locked.set()
                time.sleep(0.4)
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)
            locked.set()

    thread = threading.Thread(target=hold_a_write_transaction)
    try:
        thread.start()
        assert locked.wait(5)
        started = time.monotonic()
        subscriber, created = writer.add("writer@example.com")
        waited = time.monotonic() - started
        thread.join(5)
        assert not errors
        assert created and subscriber.status == "active"
        assert waited > 0.2  # it really was blocked, and waited instead of failing
        assert {s.email for s in writer.iter_subscribers()} == {"holder@example.com", "writer@example.com"}
    finally:
        thread.join(5)
        holder.close()
        writer.close()


def test_sqlite_in_a_folder_that_cannot_be_created(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(StoreError, match="cannot open the database"):
        open_store(f"sqlite:///{tmp_path / 'a-file' / 'newsletter.db'}")


# --------------------------------------------------------------------------
# bad URLs


@pytest.mark.parametrize(
    "url",
    ["nonsense", "://nothing", "nosuchdb://user:hunter2secret@host/db",
     "postgresql+psycopg://user:hunter2secret@host:notaport/db",
     "postgresql+psycopg://user@host:notaport/db?password=hunter2secret"],
)
def test_malformed_urls(url):
    with pytest.raises(StoreError, match="malformed database URL") as caught:
        open_store(url)
    assert "hunter2secret" not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unreachable_postgres():
    url = f"postgresql+psycopg://newsletter_test:hunter2secret@127.0.0.1:{free_port()}/newsletter_test"
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot open the database") as caught:
        open_store(url)
    message = str(caught.value)
    assert "hunter2secret" not in message
    assert "\n" not in message
    assert "127.0.0.1" in message  # says where it tried
    assert time.monotonic() - started < 10


def test_wrong_postgres_password_is_not_shown():
    """Against the real server (or none): either way the password stays out."""
    url = make_url(POSTGRES_URL).set(password="hunter2-wrong-password")
    with pytest.raises(StoreError) as caught:
        open_store(url.render_as_string(hide_password=False))
    assert "hunter2" not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_driver():
    with pytest.raises(StoreError, match="driver is not installed"):
        open_store("mysql+mysqldb://user:hunter2secret@127.0.0.1/db")
