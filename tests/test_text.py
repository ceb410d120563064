"""Text hygiene (newsletter/core/text.py): names lose control characters at every
way in (the command line, a CSV import, the sign-up form) and never reach a
header with one; the commands never print stored text to a terminal
unescaped; and the helpers themselves."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest
from sqlalchemy import update

from conftest import EXAMPLE, CliRun
from newsletter.core.models import SubscriberRow
from newsletter.sending.personalize import format_address
from newsletter.store import open_store
from newsletter.store.schema import subscribers_table
from newsletter.core.text import (
    clean_name,
    csv_safe,
    csv_unescape,
    strip_controls,
    terminal_safe,
)

# NUL, BEL, ESC (a terminal's title, clear screen and colour), DEL, a C1 CSI,
# bidirectional overrides and isolates.
HOSTILE = "\x00Ada\x07 \x1b]0;pwned\x07Love\x1b[2J\x1b[31mlace\x7f\x9b\u202e\u2066 \u2069"
CLEANED = "Ada ]0;pwnedLove[2J[31mlace"
# Any character a name, a header or a terminal line must never carry.
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
DATE = "2025-03-11"


@pytest.fixture
def cli_run(env) -> CliRun:
    """The command with its output as a terminal would be given it, escape
    codes and all: what must never hold a raw control character."""
    return CliRun(env, color=True)


def stored_name(url: str, address: str) -> str | None:
    store = open_store(url)
    try:
        return store.get(email=address).name
    finally:
        store.close()


def write_directly(url: str, address: str, **values) -> None:
    """Change a row as an old release or a hand-written SQL statement could
    have, past every check of the store."""
    store = open_store(url)
    try:
        with store.engine.begin() as conn:
            conn.execute(update(subscribers_table).where(subscribers_table.c.email_key == address).values(**values))
    finally:
        store.close()


# --------------------------------------------------------------------------
# the helpers


@pytest.mark.parametrize(
    "raw, clean",
    [
        (HOSTILE, CLEANED),
        ("  Grace \t Hopper\r\n", "Grace Hopper"),
        ("Zoë Ünïcode 李小龍 🙂", "Zoë Ünïcode 李小龍 🙂"),
        ("Ada\x0bLovelace", "Ada Lovelace"),  # a separating control keeps the words apart
        ("\ud800Edsger\udfff", "Edsger"),  # lone surrogates cannot even be encoded
        ("\x00\x1b\u202e", None),
        ("", None),
        (None, None),
        ("x" * 300, "x" * 200),
    ],
)
def test_clean_name(raw, clean):
    assert clean_name(raw) == clean


def test_strip_controls_keeps_tab_and_newlines_and_counts():
    assert strip_controls("a\tb\nc\r\n\x00d\x1b\u202e") == ("a\tb\nc\r\nd", 3)


def test_terminal_safe_shows_every_control_as_a_visible_escape():
    assert terminal_safe("a\x1b]0;t\x07b\x00\x9b\t\n\r\u202e\u2028é李🙂") == (
        "a\\x1b]0;t\\x07b\\x00\\x9b\\t\\n\\r\\u202e\\u2028é李🙂"
    )
    assert terminal_safe(Path("out/2025")) == "out/2025"
    assert terminal_safe("plain text, Unicode kept: Zoë") == "plain text, Unicode kept: Zoë"


def test_csv_safe_and_back():
    for cell in ("=HYPERLINK(\"http://evil\")", "+1", "-x@example.com", "@SUM(A1)", "\tx", "\rx"):
        assert csv_safe(cell) == "'" + cell
        assert csv_unescape(csv_safe(cell)) == cell
    for cell in ("Ada", "", "'quoted'", "1+1", "a=b"):
        assert csv_safe(cell) == cell
        assert csv_unescape(cell) == cell


# --------------------------------------------------------------------------
# every way in stores a clean name


def test_a_name_from_the_command_line_is_stored_clean(env, cli_run):
    result = cli_run("subscribers", "add", "ada@example.com", "--name", HOSTILE)
    assert result.exit_code == 0, result.output
    assert stored_name(env["NEWSLETTER_DATABASE_URL"], "ada@example.com") == CLEANED


def test_names_from_a_csv_import_are_stored_clean(env, tmp_path, cli_run):
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(f'email,name\nada@example.com,"{HOSTILE}"\nbob@example.com,\x1b[2J\x00\n', encoding="utf-8")
    result = cli_run("subscribers", "import", str(csv_file))
    assert result.exit_code == 0, result.output
    assert "added 2" in result.stdout
    url = env["NEWSLETTER_DATABASE_URL"]
    assert stored_name(url, "ada@example.com") == CLEANED
    assert stored_name(url, "bob@example.com") == "[2J"


def test_the_store_cleans_names_on_both_databases(store):
    # On PostgreSQL a NUL cannot even be stored: it used to fail the whole add.
    subscriber, created = store.add("ada@example.com", HOSTILE)
    assert created and subscriber.name == CLEANED
    report = store.import_subscribers([SubscriberRow(2, "bob@example.com", "Bob\x00\x1b[31m\u202e")])
    assert len(report.added) == 1
    assert store.get(email="bob@example.com").name == "Bob[31m"


def test_a_name_from_the_sign_up_form_is_stored_clean(store, web_client, tmp_path):
    outbox = tmp_path / "outbox"
    client = web_client(outbox_dir=outbox, base_url="https://papers.example.org")
    app = client.application
    response = client.post("/subscribe", data={"email": "ada@example.com", "name": HOSTILE, "website": ""},
                           environ_base={"REMOTE_ADDR": "198.51.100.1"})
    assert response.status_code == 200
    app.extensions["newsletter"].actions.run_pending()  # the worker sends the confirmation
    (sent,) = (outbox / "single").iterdir()
    message = email.message_from_bytes(sent.read_bytes(), policy=email.policy.default)
    token = re.search(r"/confirm/([A-Za-z0-9_\-.]+)", message.get_body(("plain",)).get_content()).group(1)
    assert client.post(f"/confirm/{token}").status_code == 200
    assert store.get(email="ada@example.com").name == CLEANED


# --------------------------------------------------------------------------
# headers


def test_the_to_header_of_a_sent_message_carries_no_control_character(env, cli_run):
    url = env["NEWSLETTER_DATABASE_URL"]
    assert cli_run("subscribers", "add", "ada@example.com", "--name", HOSTILE).exit_code == 0
    assert cli_run("subscribers", "add", "bob@example.com", "--name", "Bob").exit_code == 0
    # A row written before names were cleaned (SQLite keeps even a NUL).
    write_directly(url, "bob@example.com", name="Bob\x00\r\nBcc: eve@example.com\x1b[2J")

    result = cli_run("send", str(EXAMPLE), "--date", DATE)
    assert result.exit_code == 0, result.output
    messages = sorted((Path(env["NEWSLETTER_OUTBOX_DIR"]) / DATE).glob("*.eml"))
    assert len(messages) == 2
    to_headers = []
    for path in messages:
        raw = path.read_bytes()
        head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
        (to_line,) = [line for line in re.split(r"\r\n(?![ \t])", head) if line.startswith("To:")]
        assert not CONTROL.search(to_line.replace("\r\n ", "")), to_line
        assert "Bcc" not in re.findall(r"^([A-Za-z-]+):", head, re.M)
        to_headers.append(email.message_from_bytes(raw, policy=email.policy.default)["To"])
    names = sorted(str(h.addresses[0].display_name) for h in to_headers)
    assert names == [CLEANED, "Bob Bcc: eve@example.com[2J"]


def test_format_address_cleans_the_name():
    assert format_address("ada@example.com", "Ada\x00\x1b") == "Ada <ada@example.com>"
    assert format_address("ada@example.com", "\x00") == "ada@example.com"


# --------------------------------------------------------------------------
# the terminal


def test_subscribers_list_never_prints_a_raw_control_character(env, cli_run):
    url = env["NEWSLETTER_DATABASE_URL"]
    assert cli_run("subscribers", "add", "ada@example.com", "--name", "Ada").exit_code == 0
    write_directly(url, "ada@example.com", name="\x1b]0;pwned\x07\x1b[2J\tAda\nLovelace\u202e\x00",
                   email="ada\x1b[2J@example.com")
    result = cli_run("subscribers", "list")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and not CONTROL.search(result.stdout)
    (line,) = result.stdout.splitlines()
    fields = line.split("\t")
    assert len(fields) == 4  # a tab or newline in a name cannot shift the columns
    assert fields[0] == "ada\\x1b[2J@example.com"
    assert fields[1] == "active"
    assert fields[3] == "\\x1b]0;pwned\\x07\\x1b[2J\\tAda\\nLovelace\\u202e\\x00"


def test_commands_that_echo_an_address_escape_it(env, cli_run):
    url = env["NEWSLETTER_DATABASE_URL"]
    assert cli_run("subscribers", "add", "ada@example.com").exit_code == 0
    key = "ada\x1b]0;x\x07@example.com"
    write_directly(url, "ada@example.com", email=key, email_key=key)
    outputs = []
    for args in (("remove", key), ("remove", key), ("reactivate", key), ("reactivate", key), ("add", key)):
        result = cli_run("subscribers", *args)
        outputs.append(result.output)
    # An address not on the list comes back in the error line, escaped too.
    missing = cli_run("subscribers", "remove", "\x1b[2Jnobody@example.com")
    assert missing.exit_code == 2
    outputs.append(missing.output)
    for output in outputs:
        assert output and not CONTROL.search(output), output
    assert outputs[0].strip() == "Unsubscribed ada\\x1b]0;x\\x07@example.com"
    assert missing.stderr.strip() == "Error: \\x1b[2Jnobody@example.com is not on the list"


def test_an_import_report_escapes_what_it_quotes(env, tmp_path, cli_run):
    csv_file = tmp_path / "list\x1b[2J.csv"
    csv_file.write_text("email,name\nnot-an-address\x1b[31m,Ada\n", encoding="utf-8")
    result = cli_run("subscribers", "import", str(csv_file))
    assert result.exit_code == 0, result.output
    assert "line 2" in result.stderr and "invalid 1" in result.stdout
    assert not CONTROL.search(result.output), result.output
