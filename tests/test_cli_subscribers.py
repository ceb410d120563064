"""The ``newsletter subscribers`` commands (add, remove, list, count, export,
import) on a SQLite database, ``render`` saving the issue into the store, and
one-line errors with exit code 2."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from sqlalchemy.engine import make_url

from conftest import EXAMPLE, ROOT, ok, one_line_error
from newsletter.core.models import Frequency
from newsletter.store import open_store

EXAMPLE_CSV = ROOT / "subscribers" / "example.csv"
EXAMPLE_EMAILS = ["ada@example.com", "alan@example.com", "grace@example.com", "edsger@example.com",
                  "barbara@example.com"]


@pytest.fixture
def url(env) -> str:
    return env["NEWSLETTER_DATABASE_URL"]




def counts(cli_run) -> dict[str, int]:
    out = ok(cli_run("subscribers", "count"))
    return {name: int(number) for name, number in (line.split() for line in out.splitlines())}


def status_of(url: str, email: str) -> str | None:
    store = open_store(url)
    try:
        found = store.get(email=email)
        return found.status if found else None
    finally:
        store.close()


# --------------------------------------------------------------------------
# add and remove


def test_add(cli_run, url):
    added = ok(cli_run("subscribers", "add", "Ada@EXAMPLE.com", "--name", "Ada Lovelace"))
    assert added.strip() == "Added Ada@example.com"
    store = open_store(url)
    try:
        ada = store.get(email="ada@example.com")
        assert (ada.name, ada.status, ada.source) == ("Ada Lovelace", "active", "cli")
    finally:
        store.close()


def test_adding_again_says_already_subscribed(cli_run):
    ok(cli_run("subscribers", "add", "ada@example.com"))
    result = cli_run("subscribers", "add", "ADA@example.com")
    assert "ada@example.com is already subscribed" in ok(result)
    assert result.stderr == ""
    assert counts(cli_run)["total"] == 1


def test_an_unsubscribed_address_is_not_reactivated(cli_run, url):
    ok(cli_run("subscribers", "add", "ada@example.com"))
    ok(cli_run("subscribers", "remove", "ada@example.com"))
    one_line_error(cli_run("subscribers", "add", "ada@example.com"), "ada@example.com", "unsubscribed",
                   "not reactivated")
    assert status_of(url, "ada@example.com") == "unsubscribed"


@pytest.mark.parametrize("address", ["not-an-address", "ada@", "a b@example.com"])
def test_adding_an_invalid_address(cli_run, address):
    one_line_error(cli_run("subscribers", "add", address), "not a valid email address")
    assert counts(cli_run)["total"] == 0


def test_remove_keeps_the_row(cli_run, url):
    ok(cli_run("subscribers", "add", "ada@example.com"))
    ok(cli_run("subscribers", "add", "grace@example.com"))
    assert ok(cli_run("subscribers", "remove", "ADA@example.com")).strip() == "Unsubscribed ada@example.com"
    assert counts(cli_run) == {"active": 1, "unsubscribed": 1, "bounced": 0, "complained": 0, "total": 2}
    store = open_store(url)
    try:
        ada = store.get(email="ada@example.com")
        last = store.events(ada.id)[-1]
        assert (ada.status, last.source, last.old_status) == ("unsubscribed", "cli", "active")
        assert "operator" in last.reason
        # The reader cannot undo an operator's removal from the web page.
        assert store.resubscribe(ada.ref) == (ada, False)
    finally:
        store.close()
    # Removing again changes nothing.
    assert "already unsubscribed" in ok(cli_run("subscribers", "remove", "ada@example.com"))


def test_removing_an_unknown_address(cli_run):
    ok(cli_run("subscribers", "add", "ada@example.com"))
    one_line_error(cli_run("subscribers", "remove", "nobody@example.com"), "nobody@example.com", "not on the list")
    assert counts(cli_run)["active"] == 1


# --------------------------------------------------------------------------
# list, count, export


@pytest.fixture
def three(cli_run):
    ok(cli_run("subscribers", "add", "ada@example.com", "--name", "Ada Lovelace"))
    ok(cli_run("subscribers", "add", "grace@example.com"))
    ok(cli_run("subscribers", "add", "alan@example.com", "--name", "Alan, Turing"))
    ok(cli_run("subscribers", "remove", "grace@example.com"))
    return cli_run


def test_list(three):
    lines = ok(three("subscribers", "list")).splitlines()
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert [line.split("\t") for line in lines] == [
        ["ada@example.com", "active", today, "Ada Lovelace"],
        ["grace@example.com", "unsubscribed", today, ""],
        ["alan@example.com", "active", today, "Alan, Turing"],
    ]


def test_list_by_status(three):
    assert [line.split("\t")[0] for line in ok(three("subscribers", "list", "--status", "active")).splitlines()] == [
        "ada@example.com", "alan@example.com",
    ]
    assert ok(three("subscribers", "list", "--status", "unsubscribed")).startswith("grace@example.com\t")
    assert ok(three("subscribers", "list", "--status", "bounced")) == ""


def test_list_rejects_an_unknown_status(three):
    result = three("subscribers", "list", "--status", "deleted")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_count(three):
    assert counts(three) == {"active": 2, "unsubscribed": 1, "bounced": 0, "complained": 0, "total": 3}


def test_count_where_there_is_no_database_creates_none(cli_run, tmp_path):
    result = cli_run("subscribers", "count")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: there is no database at {tmp_path / 'db' / 'newsletter.db'}")
    assert not (tmp_path / "db").exists()
    ok(cli_run("db", "upgrade"))
    assert counts(cli_run) == {"active": 0, "unsubscribed": 0, "bounced": 0, "complained": 0, "total": 0}


def test_export(three):
    rows = list(csv.DictReader(io.StringIO(ok(three("subscribers", "export")))))
    assert [(r["email"], r["name"], r["status"]) for r in rows] == [
        ("ada@example.com", "Ada Lovelace", "active"),
        ("grace@example.com", "", "unsubscribed"),
        ("alan@example.com", "Alan, Turing", "active"),
    ]
    assert all(dt.datetime.fromisoformat(r["created_at"]).tzinfo for r in rows)

    active = list(csv.DictReader(io.StringIO(ok(three("subscribers", "export", "--status", "active")))))
    assert [r["email"] for r in active] == ["ada@example.com", "alan@example.com"]
    nobody = ok(three("subscribers", "export", "--status", "complained"))
    assert list(csv.reader(io.StringIO(nobody))) == [["email", "name", "status", "source", "created_at", "updated_at",
                                                      "frequency", "paused_until"]]


def test_export_neutralises_formulas_and_imports_back(cli_run, url, tmp_path):
    ok(cli_run("subscribers", "add", "--name", '=HYPERLINK("http://evil.example","Click")', "--", "-x@example.com"))
    ok(cli_run("subscribers", "add", "ada@example.com", "--name", "@SUM(1+1)"))
    exported = ok(cli_run("subscribers", "export"))
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [(r["email"], r["name"]) for r in rows] == [
        ("'-x@example.com", '\'=HYPERLINK("http://evil.example","Click")'),
        ("ada@example.com", "'@SUM(1+1)"),
    ]
    export = tmp_path / "export.csv"
    export.write_text(exported, encoding="utf-8")
    other = f"sqlite:///{tmp_path / 'other' / 'newsletter.db'}"
    result = cli_run("subscribers", "import", str(export), NEWSLETTER_DATABASE_URL=other)
    assert "added 2, already present 0, invalid 0, refused 0" in ok(result)
    store = open_store(other)
    try:
        assert [(s.email, s.name) for s in store.iter_subscribers()] == [
            ("-x@example.com", '=HYPERLINK("http://evil.example","Click")'),
            ("ada@example.com", "@SUM(1+1)"),
        ]
    finally:
        store.close()


# --------------------------------------------------------------------------
# import


def test_import_the_example_list_twice(cli_run, url):
    result = cli_run("subscribers", "import", str(EXAMPLE_CSV))
    assert "added 5, already present 0, invalid 0, refused 0" in ok(result)
    assert result.stderr == f"Created a new database at {make_url(url).database}\n"
    store = open_store(url)
    try:
        assert [s.email for s in store.iter_subscribers()] == EXAMPLE_EMAILS
        assert store.get(email="grace@example.com").name == "Grace Hopper"
        assert store.get(email="ada@example.com").source == "import:example.csv"
        # Varied readers, so the demo shows picks: one to three interests each, one with none, one weekly.
        readers = {s.email: s for s in store.iter_subscribers()}
        interests = {email: store.profile(s.id).interests for email, s in readers.items()}
        assert interests["edsger@example.com"] == ()
        assert all(1 <= len(found) <= 3 for email, found in interests.items() if email != "edsger@example.com")
        assert [email for email, s in readers.items() if s.schedule.frequency == Frequency.WEEKLY] == [
            "barbara@example.com"]
    finally:
        store.close()

    again = cli_run("subscribers", "import", str(EXAMPLE_CSV))
    assert "added 0, already present 5, invalid 0, refused 0" in ok(again)
    assert counts(cli_run)["total"] == 5


def test_import_reports_invalid_and_refused_lines(cli_run, url, tmp_path):
    ok(cli_run("subscribers", "add", "gone@example.com"))
    ok(cli_run("subscribers", "remove", "gone@example.com"))
    path = tmp_path / "new.csv"
    path.write_text(
        "email,name\nada@example.com,Ada\n\nnot-an-address,Nobody\ngone@example.com,Gone\ngrace@example.com,Grace\n",
        encoding="utf-8",
    )
    result = cli_run("subscribers", "import", str(path))
    assert "added 2, already present 0, invalid 1, refused 1" in ok(result)
    errors = result.stderr.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"{path}, line 4:") and "not-an-address" in errors[0]
    assert errors[1] == f"{path}, line 5: unsubscribed; not reactivated"
    assert status_of(url, "ada@example.com") == "active"
    assert status_of(url, "grace@example.com") == "active"
    assert status_of(url, "gone@example.com") == "unsubscribed"


def test_a_malformed_csv_imports_nothing(cli_run, tmp_path):
    ok(cli_run("subscribers", "add", "first@example.com"))
    path = tmp_path / "broken.csv"
    path.write_text("email,name\nada@example.com,Ada\ngrace@example.com,Grace,extra\nalan@example.com,Alan\n",
                    encoding="utf-8")
    one_line_error(cli_run("subscribers", "import", str(path)), str(path), "line 3")
    assert counts(cli_run) == {"active": 1, "unsubscribed": 0, "bounced": 0, "complained": 0, "total": 1}


def test_importing_a_missing_file(cli_run, tmp_path):
    one_line_error(cli_run("subscribers", "import", str(tmp_path / "missing.csv")), "missing.csv", "no such file")


# --------------------------------------------------------------------------
# render stores the issue


def test_render_saves_the_issue(cli_run, url, tmp_path):
    ok(cli_run("db", "upgrade"))  # render stores into a database, and never creates one
    result = cli_run("render", str(EXAMPLE), "--date", "2025-03-11", "--out", str(tmp_path / "out"))
    ok(result)
    store = open_store(url)
    try:
        stored = store.get_issue(dt.date(2025, 3, 11))
        assert stored is not None
        assert stored.subject == "Daily Papers · Tue 11 Mar 2025 · 85 papers"
        assert stored.subject in result.stdout
        assert stored.paper_count == 85
        assert stored.web_html == (tmp_path / "out" / "web.html").read_text(encoding="utf-8")
        assert "__NEWSLETTER_UNSUBSCRIBE_URL__" not in stored.text
        assert [i.date for i in store.list_issues()] == [dt.date(2025, 3, 11)]
    finally:
        store.close()


# --------------------------------------------------------------------------
# bad database URLs


@pytest.mark.parametrize(
    "bad, expected",
    [
        ("nonsense", "NEWSLETTER_DATABASE_URL"),
        ("nosuchdb://user:hunter2secret@host/db", "malformed database URL"),
        ("postgresql+psycopg://user:hunter2secret@host:notaport/db", "malformed database URL"),
        ("postgresql+psycopg://user@host:notaport/db?sslmode=require&password=hunter2secret", "malformed database URL"),
    ],
)
def test_a_malformed_database_url(bad, expected, cli_run):
    result = cli_run("subscribers", "count", NEWSLETTER_DATABASE_URL=bad)
    message = one_line_error(result, expected)
    assert "hunter2secret" not in message


def test_a_database_that_cannot_be_opened(tmp_path, cli_run):
    (tmp_path / "a-file").write_text("x")
    result = cli_run("subscribers", "add", "ada@example.com",
                     NEWSLETTER_DATABASE_URL=f"sqlite:///{tmp_path / 'a-file' / 'x.db'}")
    one_line_error(result, "cannot open the database")
