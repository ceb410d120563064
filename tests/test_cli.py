"""The ``newsletter`` command: render's outputs, one-line errors with exit
code 2, settings errors, help texts, and ``python -m newsletter``."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import html
import json
from pathlib import Path

import click
import pytest
from sqlalchemy.engine import make_url

from conftest import EXAMPLE, SECRET, CliRun, _reset_postgres, newsletter_run, ok, one_line_error, outbox_file
from newsletter.cli import cli
from newsletter.core.config import load_settings
from newsletter.core.models import UNSUBSCRIBE_URL_MARK, Edition, Profile
from newsletter.issue.render import GMAIL_CLIP_BYTES, encoded_bytes, subject_title
from newsletter.papers.batches import load_batch
from newsletter.picks.picking import EditionPicks
from newsletter.readers.tokens import Signer
from newsletter.store import Ledger, migrate

OUTPUTS = {"issue.html", "issue.txt", "web.html", "issue.json"}
DAY = dt.date(2025, 3, 11)


# The command with no settings of its own: the folder's .env, else the defaults.
run = CliRun()




# --------------------------------------------------------------------------
# render


def test_render_writes_the_four_files(tmp_path):
    out = tmp_path / "issue-out"
    result = run("render", str(EXAMPLE), "--date", "2025-03-11", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""

    # Exactly the four files: no temporary files left behind.
    assert {p.name for p in out.iterdir()} == OUTPUTS

    facts = json.loads((out / "issue.json").read_text(encoding="utf-8"))
    assert facts["subject"] == "Daily Papers · Tue 11 Mar 2025 · 85 papers"
    assert facts["preheader"]
    assert facts["paper_count"] == 85
    assert facts["date"] == "2025-03-11"

    html_file = (out / "issue.html").read_bytes()
    html = html_file.decode("utf-8")
    assert len(html_file) < 100_000
    assert facts["html_bytes"] < 100_000
    # html_bytes is measured before personalization: the saved file differs
    # from it only by the link that replaced the unsubscribe mark: the
    # public sign-up page, since the file is no one's in particular.
    assert UNSUBSCRIBE_URL_MARK not in html
    assert 'href="http://127.0.0.1:8000/subscribe"' in html and "/unsubscribe" not in html
    assert abs(len(html_file) - facts["html_bytes"]) <= len("http://127.0.0.1:8000/subscribe")

    text = (out / "issue.txt").read_text(encoding="utf-8")
    assert UNSUBSCRIBE_URL_MARK not in text
    assert "http://127.0.0.1:8000/subscribe" in text and "/unsubscribe" not in text
    assert abs(len(text.encode("utf-8")) - facts["text_bytes"]) <= len("http://127.0.0.1:8000/subscribe")
    assert facts["subject"].split(" · ")[0].upper() in text

    web = (out / "web.html").read_text(encoding="utf-8")
    assert web.lower().startswith("<!doctype html>")
    assert UNSUBSCRIBE_URL_MARK not in web

    # One summary line, with the size in bytes.
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert f"{facts['html_bytes']:,}" in lines[0]
    assert "bytes" in lines[0]
    assert facts["subject"] in lines[0]


def test_render_default_output_folder(isolated):
    result = run("render", str(EXAMPLE), "--date", "2025-03-11")
    assert result.exit_code == 0, result.output
    out = isolated / "out" / "2025-03-11"
    assert {p.name for p in out.iterdir()} == OUTPUTS
    # Only out/: render never creates a database (there is none here), and says it stored nothing.
    assert {p.name for p in isolated.iterdir()} == {"out"}
    assert str(Path("out") / "2025-03-11") in result.stdout
    assert f"; not stored: there is no database at {isolated / 'subscribers' / 'newsletter.db'}" in result.stdout


def test_render_twice_overwrites_cleanly(tmp_path):
    out = tmp_path / "again"
    for _ in range(2):
        result = run("render", str(EXAMPLE), "--date", "2025-03-11", "--out", str(out))
        assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == OUTPUTS


def test_render_reads_settings_from_dotenv(isolated):
    (isolated / ".env").write_text(
        "NEWSLETTER_NAME=Morning Papers\nNEWSLETTER_BASE_URL=https://papers.example.org/\n",
        encoding="utf-8",
    )
    result = run("render", str(EXAMPLE), "--date", "2025-03-11", "--out", "o")
    assert result.exit_code == 0, result.output
    facts = json.loads((isolated / "o" / "issue.json").read_text(encoding="utf-8"))
    assert facts["subject"].startswith("Morning Papers · ")
    assert facts["web_url"] == "https://papers.example.org/issues/2025-03-11"
    assert "https://papers.example.org/subscribe" in (isolated / "o" / "issue.html").read_text(encoding="utf-8")


def test_a_stray_control_character_is_removed_with_one_warning_not_a_refusal(isolated):
    papers = [{"title": "First", "abstract": "Fine."},
              {"title": "Second\x1b]0;x\x07", "abstract": "Bad\x00 abstract\x00.", "authors": ["Eve\x07"]},
              {"title": "Third", "abstract": "Fine too."}]
    (isolated / "day.json").write_text(json.dumps({"date": "2025-03-11", "papers": papers}), encoding="utf-8")
    result = run("render", "day.json", "--out", "o")
    assert result.exit_code == 0, result.output
    assert result.stderr == ('Warning: day.json, papers[1] ("Second]0;x"): removed 5 control characters from '
                             "the title, the abstract and the author names\n")
    facts = json.loads((isolated / "o" / "issue.json").read_text(encoding="utf-8"))
    assert facts["paper_count"] == 3
    html = (isolated / "o" / "issue.html").read_text(encoding="utf-8")
    assert "Bad abstract." in html and "\x00" not in html and "\x1b" not in html


def test_preview_prints_the_warnings_before_serving(isolated, monkeypatch):
    served = []
    monkeypatch.setattr("newsletter.cli.common.serve_app", lambda app, host, port, what: served.append(what))
    papers = [{"title": "Only", "abstract": "Text\u202e here."}]
    (isolated / "day.json").write_text(json.dumps({"date": "2025-03-11", "papers": papers}), encoding="utf-8")
    result = run("preview", "day.json")
    assert result.exit_code == 0, result.output
    assert served == ["Previewing day.json"]
    assert result.stderr == 'Warning: day.json, papers[0] ("Only"): removed 1 control character from the abstract\n'


# --------------------------------------------------------------------------
# preview --as: one reader's own copy


def served_preview(monkeypatch) -> list:
    """Where the preview's app and its line go instead of a server: (app, what) pairs."""
    served = []
    monkeypatch.setattr("newsletter.cli.common.serve_app", lambda app, host, port, what: served.append((app, what)))
    return served


def test_preview_as_a_reader_shows_their_picks_links_and_size_as_the_send_makes_them(cli_run, db, env, monkeypatch):
    reader, _ = db.add("ada@example.com", "Ada Lovelace")
    db.save_profile(Profile(reader.id, ("machine unlearning", "concept erasure")))
    served = served_preview(monkeypatch)
    subject = {"NEWSLETTER_SUBJECT": "{pick} · {name}"}  # the operator's: it names the reader's first pick
    ok(cli_run("preview", str(EXAMPLE), "--date", DAY.isoformat(), "--as", "ADA@example.com", **subject))
    [(app, what)] = served
    assert what == f"Previewing {EXAMPLE} as ada@example.com"
    client = app.test_client()
    page = client.get("/").get_data(as_text=True)
    email_html = client.get("/email.html").get_data(as_text=True).replace('<base target="_blank">', "", 1)

    # Their picks, ranked as the send ranks them, head the email; recorded nowhere.
    papers = load_batch(EXAMPLE, date=DAY).papers
    picks = EditionPicks(db, DAY.isoformat(), DAY, papers).for_readers([reader.id])[reader.id].picks
    assert len(picks) == 5
    section = email_html.split("Picked for you", 1)[1].split("Today&#39;s papers", 1)[0]
    for pick in picks:
        assert html.escape(papers[pick.position].title) in section
    assert not db.has_picks(DAY.isoformat()) and not Ledger(db, Edition(DAY)).rows()
    # Their own links, signed as the send signs them.
    signer, base = Signer(SECRET), load_settings(env).base_url
    for link in (signer.unsubscribe_url(base, reader.ref), signer.preferences_url(base, reader.ref),
                 signer.feedback_reader_part(reader.ref, DAY.isoformat())):
        assert link in email_html
    # Whose copy, and its size against Gmail's clip: in the page, not in the email.
    assert "ada@example.com (Ada Lovelace), active" in page and "5 picked for them" in page
    assert f"{encoded_bytes(email_html):,} bytes as sent" in page and f"Gmail's {GMAIL_CLIP_BYTES:,}-byte clip" in page
    assert "Gmail" not in email_html
    assert f'<dd id="subject">{html.escape(subject_title(papers[picks[0].position]), quote=False)} · Daily Papers</dd>' in page

    # The send makes that very email: the reader's HTML part and subject are the preview's.
    ok(cli_run("send", str(EXAMPLE), "--date", DAY.isoformat(), **subject))
    sent = email.message_from_bytes(outbox_file(Path(env["NEWSLETTER_OUTBOX_DIR"]) / DAY.isoformat(), reader.id)
                                    .read_bytes(), policy=email.policy.default)
    assert sent.get_body(("html",)).get_content().replace("\r\n", "\n").strip() == email_html.strip()
    assert f'<dd id="subject">{html.escape(str(sent["Subject"]), quote=False)}</dd>' in page


def test_preview_as_a_reader_with_nothing_to_pick_by_says_so(cli_run, db, monkeypatch):
    db.add("edsger@example.com")
    served = served_preview(monkeypatch)
    ok(cli_run("preview", str(EXAMPLE), "--date", DAY.isoformat(), "--as", "edsger@example.com"))
    page = served[0][0].test_client().get("/").get_data(as_text=True)
    assert "none: they told us nothing to pick by" in page


def test_preview_as_an_address_not_on_the_list(cli_run, db, monkeypatch):
    db.add("ada@example.com")
    served = served_preview(monkeypatch)
    one_line_error(cli_run("preview", str(EXAMPLE), "--as", "nobody@example.com"), "nobody@example.com")
    assert served == []


# --------------------------------------------------------------------------
# bad input


def test_missing_file(isolated):
    result = run("render", "no-such-batch.json")
    one_line_error(result, "no-such-batch.json")
    assert not (isolated / "out").exists()


def test_empty_file(isolated):
    (isolated / "empty.json").write_bytes(b"")
    result = run("render", "empty.json", "--out", "o")
    one_line_error(result, "empty.json")
    assert not (isolated / "o").exists()


def test_malformed_json(isolated):
    (isolated / "broken.json").write_text('{"date": "2025-03-11", "papers": [\n  {"title": ', encoding="utf-8")
    result = run("render", "broken.json", "--out", "o")
    message = one_line_error(result, "broken.json")
    assert "line 2" in message
    assert not (isolated / "o").exists()


def test_directory_instead_of_a_file(isolated):
    (isolated / "a-folder").mkdir()
    one_line_error(run("render", "a-folder"), "a-folder")


def test_bad_date():
    result = run("render", str(EXAMPLE), "--date", "2025-13-40")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "--date" in result.stderr and "2025-13-40" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error:")


def test_date_that_disagrees_with_the_file():
    result = run("render", str(EXAMPLE), "--date", "2025-03-12")
    one_line_error(result, EXAMPLE.name, "2025-03-12")


def test_empty_batch_exits_2(isolated):
    (isolated / "zero.json").write_text('{"date": "2025-03-11", "papers": []}', encoding="utf-8")
    result = run("render", "zero.json", "--out", "o")
    one_line_error(result, "zero.json")
    assert not (isolated / "o").exists()


def test_output_folder_not_writable(isolated):
    (isolated / "blocker").write_text("a file, not a folder", encoding="utf-8")
    result = run("render", str(EXAMPLE), "--date", "2025-03-11", "--out", "blocker/sub")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.strip().startswith("Error:")
    assert "blocker" in result.stderr


# --------------------------------------------------------------------------
# settings


@pytest.mark.parametrize(
    "name, value",
    [
        ("NEWSLETTER_BASE_URL", "ftp://x"),
        ("NEWSLETTER_FETCH_TIMEOUT", "abc"),
        ("NEWSLETTER_FETCH_TIMEOUT", "-5"),
        ("NEWSLETTER_API_BASE_URL", "not a url"),
    ],
)
def test_malformed_setting_in_the_environment(name, value):
    result = run("render", str(EXAMPLE), "--date", "2025-03-11", "--out", "o", **{name: value})
    one_line_error(result, name)


def test_malformed_setting_in_dotenv(isolated):
    (isolated / ".env").write_text("NEWSLETTER_BASE_URL=ftp://x\n", encoding="utf-8")
    result = run("render", str(EXAMPLE), "--date", "2025-03-11", "--out", "o")
    one_line_error(result, "NEWSLETTER_BASE_URL")


def test_unreadable_dotenv_is_a_one_line_error(isolated):
    (isolated / ".env").write_bytes(b"NEWSLETTER_NAME=\xff\xfe broken\n")
    result = run("render", str(EXAMPLE), "--date", "2025-03-11", "--out", "o")
    one_line_error(result, ".env")


# --------------------------------------------------------------------------
# help


def test_top_level_help():
    result = run("--help")
    assert result.exit_code == 0
    for name in cli.commands:
        assert name in result.output


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_and_option_has_help(name):
    command = cli.commands[name]
    assert (command.help or "").strip(), f"{name} has no help"
    assert (command.get_short_help_str() or "").strip()
    result = run(name, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    for param in command.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), f"{name} {param.opts} has no help"
            for opt in param.opts:
                assert opt in result.output


def test_group_options_have_help():
    for param in cli.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), param.opts


def test_python_dash_m_help(tmp_path):
    done = newsletter_run("--help", folder=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout
    for name in cli.commands:
        assert name in done.stdout
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------
# run from the wrong folder: no database is created behind the user's back


def test_send_from_a_folder_without_env_creates_no_database_and_fails_naming_both(tmp_path):
    """The cron trap: the key in the environment, the job started in the
    wrong folder. It must fail loudly, not send nothing and exit 0."""
    done = newsletter_run("send", str(EXAMPLE), "--date", "2025-03-11", folder=tmp_path,
                          env={"NEWSLETTER_SECRET_KEY": SECRET})
    assert done.returncode == 2, done.stdout + done.stderr
    [message] = done.stderr.splitlines()
    assert message.startswith(f"Error: there is no database at {tmp_path / 'subscribers' / 'newsletter.db'};")
    assert f"{tmp_path / '.env'} (none there)" in message
    assert "`newsletter subscribers import`" in message
    assert list(tmp_path.iterdir()) == []  # no subscribers/newsletter.db, no outbox


@pytest.mark.parametrize("args", [
    ["send", "--date", "2025-03-11"],
    ["send", str(EXAMPLE), "--date", "2025-03-11", "--dry-run"],
    ["stats"],
    ["picks", str(EXAMPLE), "--date", "2025-03-11", "--all"],
    ["subscribers", "export"],
    ["subscribers", "list"],
    ["subscribers", "count"],
    ["subscribers", "remove", "ada@example.com"],
    ["publish", "2025-03-11"],
    ["render", "--weekly", "--date", "2025-03-11"],
    ["admin", "list"],
    ["bounces", "poll", "--queue", "http://127.0.0.1:1/queue", "--once"],
])
def test_commands_that_read_the_list_never_create_a_database(database_url, cli_run, tmp_path, args):
    """A missing SQLite file, or a PostgreSQL database with no tables: exit
    2 naming it, and nothing created."""
    if not database_url.startswith("sqlite"):
        _reset_postgres(empty=True)  # no tables at all
    result = cli_run(*args)
    assert result.exit_code == 2, result.output
    if database_url.startswith("sqlite"):
        assert result.stderr.startswith(f"Error: there is no database at {make_url(database_url).database};")
    else:
        assert result.stderr.startswith("Error: the database at postgresql+psycopg://newsletter_test:••••••@")
        assert "holds none of the newsletter's tables" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "subscribers").exists()
    assert migrate.status(database_url).empty


def test_serve_never_creates_a_database(tmp_path):
    done = newsletter_run("serve", "--port", "0", folder=tmp_path, env={"NEWSLETTER_SECRET_KEY": SECRET})
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"Error: there is no database at {tmp_path / 'subscribers' / 'newsletter.db'};")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["subscribers", "add", "ada@example.com"], ["db", "upgrade"]])
def test_the_commands_that_create_a_database_say_so(tmp_path, args):
    database = tmp_path / "db" / "newsletter.db"
    result = run(*args, NEWSLETTER_DATABASE_URL=f"sqlite:///{database}")
    assert result.exit_code == 0, result.output
    assert database.is_file()
    assert f"Created a new database at {database}" in result.stderr if args[0] == "subscribers" else \
        result.stdout.startswith("Created the database at revision")
    again = run(*args, NEWSLETTER_DATABASE_URL=f"sqlite:///{database}")
    assert "Created" not in again.output


def test_a_missing_secret_key_names_the_folder_searched_for_env(tmp_path):
    done = newsletter_run("send", str(EXAMPLE), "--date", "2025-03-11", folder=tmp_path)
    assert done.returncode == 2
    [message] = done.stderr.splitlines()
    assert message.startswith("Error: NEWSLETTER_SECRET_KEY is not set, in the environment or in "
                              f"{tmp_path / '.env'} (none there); run from the folder that holds your .env")
    assert list(tmp_path.iterdir()) == []
