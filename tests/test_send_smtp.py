"""`newsletter send` with the SMTP sender, against a real SMTP server on
127.0.0.1 (aiosmtpd) that records every envelope and can answer chosen
addresses or commands with an error.

Covered: the envelope (MAIL FROM the From address, RCPT TO the reader) and
the headers of each message; a 550 recipient (failed, with the server's
text); 451 to RCPT or DATA (retried, then sent once); 421 and 5xx to MAIL
FROM; a connection the server closed while idle; login; STARTTLS not
offered; an address the sender cannot encode; a re-run sending nothing; and
one message sent outside an issue (``send_single``).
"""

from __future__ import annotations

import collections
import datetime as dt
import email.parser
import email.policy
import threading
from dataclasses import dataclass
from email.message import EmailMessage

import pytest
from click.testing import CliRunner
from sqlalchemy import insert

from conftest import EXAMPLE, SECRET, free_port
from newsletter.cli import cli
from newsletter.core.config import load_settings
from newsletter.core.errors import AccountError, SendError, TransientError
from newsletter.sending.senders.smtp import SmtpSender
from newsletter.store import Ledger, open_store
from newsletter.store.schema import subscribers_table
from newsletter.readers.tokens import Signer

aiosmtpd = pytest.importorskip("aiosmtpd", reason="aiosmtpd is not installed (pip install -e '.[test]')")
from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import AuthResult  # noqa: E402

DAY = dt.date(2025, 3, 11)
SUBJECT = "Daily Papers · Tue 11 Mar 2025 · 85 papers"
FROM = "Daily Papers <newsletter@example.com>"
ENVELOPE_FROM = "newsletter@example.com"
READERS = 25  # more than one SMTP batch (20)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self):
        return email.parser.BytesParser(policy=email.policy.default).parsebytes(self.content)


class Recorder:
    """An aiosmtpd handler: records what it accepts; answers chosen
    commands with queued replies (each used once) or, for ``refuse``, always."""

    def __init__(self):
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.refuse: dict[str, str] = {}  # address -> reply to every RCPT TO
        self.rcpt_replies: dict[str, list[str]] = collections.defaultdict(list)  # address -> next replies
        self.data_replies: dict[str, list[str]] = collections.defaultdict(list)  # first address -> next replies
        self.mail_replies: list[str | None] = []  # replies to the next MAIL FROMs (None: accept)
        self.rcpt_attempts: collections.Counter = collections.Counter()
        self.mail_commands = 0
        self.connections = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        with self.lock:
            self.mail_commands += 1
            reply = self.mail_replies.pop(0) if self.mail_replies else None
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            self.rcpt_attempts[address] += 1
            queued = self.rcpt_replies.get(address)
            reply = self.refuse.get(address) or (queued.pop(0) if queued else None)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            queued = self.data_replies.get(envelope.rcpt_tos[0])
            if queued:
                return queued.pop(0)
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"

    def by_recipient(self) -> collections.Counter:
        with self.lock:
            return collections.Counter(to for r in self.received for to in r.rcpt_tos)


@pytest.fixture
def recorder():
    return Recorder()


def start_server(recorder: Recorder, **smtp_parameters) -> Controller:
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port(), **smtp_parameters)
    controller.start()
    return controller


@pytest.fixture
def server(recorder):
    controller = start_server(recorder)
    yield controller
    controller.stop()


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'subscribers' / 'newsletter.db'}"


@pytest.fixture
def readers(db_url) -> dict[str, object]:
    """READERS active subscribers, by address."""
    store = open_store(db_url)
    try:
        added = [store.add(f"reader{i:02d}@example.org", f"Reader {i}" if i % 2 else None)[0]
                 for i in range(READERS)]
    finally:
        store.close()
    return {s.email: s for s in added}


def env_for(port: int, db_url: str, **extra: str) -> dict[str, str]:
    env = {
        "NEWSLETTER_SENDER": "smtp",
        "NEWSLETTER_SMTP_HOST": "127.0.0.1",
        "NEWSLETTER_SMTP_PORT": str(port),
        "NEWSLETTER_SMTP_STARTTLS": "false",
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_FROM": FROM,
    }
    env.update(extra)
    return env


def send(port: int, db_url: str, *args: str, **extra: str):
    return CliRunner().invoke(
        cli, ["send", str(EXAMPLE), "--date", "2025-03-11", *args], env=env_for(port, db_url, **extra),
        catch_exceptions=False,
    )


def ledger_rows(db_url: str) -> dict[str, tuple[str, str | None, str | None]]:
    """address -> (status, message id, reason)."""
    store = open_store(db_url)
    try:
        emails = {s.id: s.email for s in store.iter_subscribers()}
        return {emails[i]: (status, mid, why) for i, status, mid, why in Ledger(store, DAY).rows()}
    finally:
        store.close()


# --------------------------------------------------------------------------
# the messages


def test_each_reader_gets_one_message_with_the_right_envelope_and_headers(server, recorder, readers, db_url):
    result = send(server.port, db_url)
    assert result.exit_code == 0, result.output
    assert f"sent {READERS:,}, failed 0, unknown 0" in result.stdout
    assert "via smtp" in result.stdout

    assert recorder.by_recipient() == {address: 1 for address in readers}
    rows = ledger_rows(db_url)
    assert {a: r[0] for a, r in rows.items()} == {address: "sent" for address in readers}
    signer = Signer(SECRET)
    for received in recorder.received:
        # The envelope: MAIL FROM the From address, RCPT TO the one reader.
        assert received.mail_from == ENVELOPE_FROM
        assert len(received.rcpt_tos) == 1
        address = received.rcpt_tos[0]
        reader = readers[address]
        msg = received.message
        assert msg["From"] == FROM
        assert msg["To"].addresses[0].addr_spec == address
        if reader.name:
            assert msg["To"].addresses[0].display_name == reader.name
        assert msg["Subject"] == SUBJECT
        assert msg["Date"]
        assert msg["X-Newsletter-Issue"] == "2025-03-11"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        # The personal, signed unsubscribe link, in the header and both bodies.
        link = msg["List-Unsubscribe"]
        assert link.startswith("<http://127.0.0.1:8000/u/") and link.endswith(">"), link
        url = link[1:-1]
        assert signer.subscriber_ref(url.rsplit("/", 1)[1]) == reader.ref
        assert msg.get_content_type() == "multipart/alternative"
        text = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        assert url in text and url in html
        # The ledger keeps the message's own Message-ID.
        assert rows[address][1] == msg["Message-ID"], (rows[address][1], msg["Message-ID"])
    assert len({r.message["Message-ID"] for r in recorder.received}) == READERS

    # Running again sends nothing.
    again = send(server.port, db_url)
    assert again.exit_code == 0, again.output
    assert "already sent" in again.stdout
    assert len(recorder.received) == READERS


# --------------------------------------------------------------------------
# refusals and retries


def test_a_550_recipient_is_failed_with_the_servers_reason(server, recorder, readers, db_url):
    refused = "reader07@example.org"
    recorder.refuse[refused] = "550 5.1.1 <reader07@example.org>: Recipient address rejected: User unknown"
    result = send(server.port, db_url)
    assert result.exit_code == 1, result.output  # a reader failed: the operator should know
    assert f"sent {READERS - 1:,}, failed 1, unknown 0" in result.stdout
    assert result.stderr.splitlines()[-1].startswith("Error: 1 reader was refused for good")
    assert f"failed: {refused}: SMTP 550 5.1.1" in result.stderr
    rows = ledger_rows(db_url)
    status, message_id, reason = rows[refused]
    assert status == "failed" and message_id is None
    assert reason.startswith("SMTP 550 5.1.1") and "User unknown" in reason
    assert recorder.rcpt_attempts[refused] == 1  # a permanent refusal is not retried
    assert recorder.by_recipient() == {a: 1 for a in readers if a != refused}
    assert all(r[0] == "sent" for a, r in rows.items() if a != refused)
    # A re-run neither retries the failed reader nor resends anyone.
    again = send(server.port, db_url)
    assert again.exit_code == 0 and "already sent" in again.stdout, again.output
    assert recorder.rcpt_attempts[refused] == 1
    assert len(recorder.received) == READERS - 1


def test_a_554_to_data_fails_that_reader_with_the_servers_reason(server, recorder, readers, db_url):
    refused = "reader03@example.org"
    recorder.data_replies[refused] = ["554 5.6.0 Message rejected: content refused"] * 10
    result = send(server.port, db_url)
    assert result.exit_code == 1, result.output
    status, _mid, reason = ledger_rows(db_url)[refused]
    assert status == "failed"
    assert reason == "SMTP 554 5.6.0 Message rejected: content refused"
    assert len(recorder.data_replies[refused]) == 9  # refused once, not retried
    assert recorder.by_recipient() == {a: 1 for a in readers if a != refused}


def test_a_451_is_retried_then_sent_exactly_once(server, recorder, readers, db_url):
    at_rcpt, at_data = "reader04@example.org", "reader21@example.org"
    recorder.rcpt_replies[at_rcpt] = ["451 4.3.0 Temporary lookup failure"] * 2
    recorder.data_replies[at_data] = ["451 4.7.1 Try again later"]
    result = send(server.port, db_url)
    assert result.exit_code == 0, result.output
    assert f"sent {READERS:,}, failed 0, unknown 0" in result.stdout
    assert recorder.rcpt_attempts[at_rcpt] == 3  # two 451s, then accepted
    assert recorder.data_replies[at_data] == []
    assert recorder.by_recipient() == {a: 1 for a in readers}
    assert {r[0] for r in ledger_rows(db_url).values()} == {"sent"}


def test_a_421_to_mail_from_is_retried_on_a_new_connection(server, recorder, readers, db_url):
    # 421: the server is closing the connection; nothing was sent.
    recorder.mail_replies = [None, None, "421 4.3.2 Service not available, closing transmission channel"]
    result = send(server.port, db_url, NEWSLETTER_SEND_CONCURRENCY="1")
    assert result.exit_code == 0, result.output
    assert f"sent {READERS:,}, failed 0, unknown 0" in result.stdout
    assert recorder.by_recipient() == {a: 1 for a in readers}
    assert recorder.connections == 2


def test_a_connection_the_server_closed_while_idle_is_reopened(recorder, readers, db_url):
    # The server drops a connection after 0.3 s without a command; the send
    # pauses ~1 s between calls of 10 (10 a second, one worker), so each call
    # after the first finds its connection closed. Nothing was sent on it:
    # the reader must be sent on a new connection, not marked "unknown".
    controller = start_server(recorder, timeout=0.3)
    try:
        result = send(controller.port, db_url, NEWSLETTER_SEND_CONCURRENCY="1", NEWSLETTER_MAX_SEND_RATE="10")
    finally:
        controller.stop()
    assert result.exit_code == 0, result.output
    assert f"sent {READERS:,}, failed 0, unknown 0" in result.stdout
    assert recorder.by_recipient() == {a: 1 for a in readers}
    assert {r[0] for r in ledger_rows(db_url).values()} == {"sent"}
    assert recorder.connections == 3  # one per call of 10


def test_a_sender_refused_mid_batch_stops_the_run_and_keeps_what_was_sent(server, recorder, readers, db_url):
    # The first 5 messages go through; then the server refuses the sender for
    # good (554). The run stops with exit 3; the 5 readers stay "sent", so the
    # next run (once fixed) sends the other 20 and nobody twice.
    recorder.mail_replies = [None] * 5 + ["554 5.7.1 Sending paused for this account"] * 100
    result = send(server.port, db_url, NEWSLETTER_SEND_CONCURRENCY="1")
    assert result.exit_code == 3, result.output
    assert "refused the sender newsletter@example.com: 554 5.7.1 Sending paused" in result.stderr
    assert len(recorder.received) == 5
    rows = ledger_rows(db_url)
    assert sorted(a for a, r in rows.items() if r[0] == "sent") == sorted(recorder.by_recipient())
    assert all(r[0] == "sent" for r in rows.values())  # no pending, unknown or failed rows

    recorder.mail_replies = []
    again = send(server.port, db_url)
    assert again.exit_code == 0, again.output
    assert f"sent {READERS - 5:,}, failed 0" in again.stdout
    assert recorder.by_recipient() == {a: 1 for a in readers}


def test_an_address_smtp_cannot_carry_fails_that_reader_only(server, recorder, readers, db_url):
    # normalize_email refuses such an address now; a database from before
    # may still hold one. It must fail that reader, not stop the run.
    store = open_store(db_url)
    try:
        stamp = dt.datetime.now(dt.timezone.utc)
        with store.engine.begin() as conn:
            conn.execute(insert(subscribers_table).values(
                ref="legacy-ref-0001", email="josé@example.org", email_key="josé@example.org", name=None,
                status="active", source="legacy", created_at=stamp, updated_at=stamp,
            ))
    finally:
        store.close()
    result = send(server.port, db_url)
    assert result.exit_code == 1, result.output
    assert f"sent {READERS:,}, failed 1, unknown 0" in result.stdout
    status, _mid, reason = ledger_rows(db_url)["josé@example.org"]
    assert status == "failed" and "not ASCII" in reason
    assert recorder.by_recipient() == {a: 1 for a in readers}


# --------------------------------------------------------------------------
# one message outside an issue (sign-up confirmations)


def single_message(to: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = FROM
    msg["To"] = to
    msg["Subject"] = "Confirm your subscription"
    msg["Message-ID"] = "<confirm.1@example.com>"
    msg.set_content("Click the link to confirm.")
    return msg.as_bytes()


def test_send_single(server, recorder, tmp_path):
    settings = load_settings(env_for(server.port, f"sqlite:///{tmp_path / 'x.db'}"))
    sender = SmtpSender(settings)
    assert sender.send_single("new@example.org", single_message("new@example.org")) == "<confirm.1@example.com>"
    assert [(r.mail_from, r.rcpt_tos) for r in recorder.received] == [(ENVELOPE_FROM, ["new@example.org"])]
    assert recorder.received[0].message["Subject"] == "Confirm your subscription"

    recorder.refuse["nobody@example.org"] = "550 5.1.1 User unknown"
    with pytest.raises(SendError, match="550 5.1.1 User unknown") as refused:
        sender.send_single("nobody@example.org", single_message("nobody@example.org"))
    assert type(refused.value) is SendError  # the recipient, not the account
    recorder.rcpt_replies["later@example.org"] = ["451 4.3.0 Try again"]
    with pytest.raises(TransientError, match="451"):
        sender.send_single("later@example.org", single_message("later@example.org"))
    recorder.mail_replies = ["554 5.7.1 Sending paused"]
    with pytest.raises(AccountError, match="554 5.7.1 Sending paused"):
        sender.send_single("new@example.org", single_message("new@example.org"))
    assert len(recorder.received) == 1
    assert sender._connections == []  # each message had its own connection, closed since


# --------------------------------------------------------------------------
# connection set-up


def test_starttls_required_but_not_offered_stops_with_exit_3(server, recorder, readers, db_url):
    result = send(server.port, db_url, NEWSLETTER_SMTP_STARTTLS="true")
    assert result.exit_code == 3, result.output
    assert "does not offer STARTTLS" in result.stderr
    assert recorder.received == []
    assert ledger_rows(db_url) == {}  # nobody marked: the next run sends to everyone


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = getattr(auth_data, "login", None) == b"mailer" and getattr(auth_data, "password", None) == b"s3cret-pw"
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@pytest.mark.parametrize("password, code", [("s3cret-pw", 0), ("wrong", 3)])
def test_login(recorder, readers, db_url, password, code):
    # AUTH without TLS: allowed on this local test server only.
    controller = start_server(recorder, authenticator=_authenticator, auth_require_tls=False)
    try:
        result = send(controller.port, db_url, NEWSLETTER_SMTP_USERNAME="mailer", NEWSLETTER_SMTP_PASSWORD=password)
    finally:
        controller.stop()
    assert result.exit_code == code, result.output
    if code == 0:
        assert recorder.by_recipient() == {a: 1 for a in readers}
    else:
        assert "SMTP login refused by 127.0.0.1: 535" in result.stderr
        assert "wrong" not in result.output  # the password is never shown
        assert recorder.received == []
