"""Sending through Amazon SES v2, over real HTTP to the SES stand-in
(tests/sesv2_standin.py) and, for the raw wire path, to moto's server.

Nothing here contacts AWS: every client is pointed at 127.0.0.1 with dummy
credentials. The stand-in records what SES would have accepted, so each
test can hold the ledger against it: every reader exactly once, and a
"sent" row for exactly the messages SES accepted, with the same message id.
"""

from __future__ import annotations

import collections
import datetime as dt
import email
import email.header
import email.policy
import email.utils
import html as htmllib
import json
import threading
import urllib.request
from html import escape
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from conftest import EXAMPLE, SECRET, free_port, reader_parts, unavailable, wait_until
from newsletter.papers.batches import load_batch
from newsletter.cli import cli
from newsletter.issue.render import render_for_readers
from newsletter.core.config import Settings
from newsletter.core.errors import TemplateRejected
from newsletter.core.models import Frequency, SubscriberRow
from newsletter.sending.dispatch import Dispatcher, SendOptions
from newsletter.sending.personalize import PreparedMessage
from newsletter.sending.senders import ses as ses_sender
from newsletter.sending.senders.ses import SesSender
from newsletter.store import Ledger
from newsletter.store.schema import subscribers_table
from newsletter.readers.tokens import Signer
from sesv2_standin import SesV2StandIn
from test_picks_email import assert_controls_signed_for

DAY = dt.date(2025, 3, 11)
DATE = DAY.isoformat()
BASE = "http://127.0.0.1:8000"
FROM = "Daily Papers <newsletter@example.com>"
TEMPLATE = f"newsletter-{DATE}"


# --------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(autouse=True)
def aws(monkeypatch, tmp_path):
    """Dummy credentials, and no AWS configuration from this machine."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SESV2"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # The stand-in answers TestRenderEmailTemplate at any rate unless a test
    # asks for SES's one call a second; then it sets the real pacing back.
    monkeypatch.setattr(ses_sender, "RENDER_INTERVAL", 0.0)


@pytest.fixture
def standin():
    """Start stand-ins with the given quota; all are stopped afterwards."""
    started = []

    def start(**options) -> SesV2StandIn:
        ses = SesV2StandIn(**options).start()
        started.append(ses)
        return ses

    yield start
    for ses in started:
        ses.stop()


@pytest.fixture
def database_file(env) -> str:
    """The URL of the test's database (``db`` is it, opened)."""
    return env["NEWSLETTER_DATABASE_URL"]


def settings_for(ses: SesV2StandIn, database_url: str = "sqlite://", **overrides) -> Settings:
    return Settings(**{"secret_key": SECRET, "database_url": database_url, "sender": "ses",
                       "ses_endpoint_url": ses.endpoint_url, "from_address": FROM, **overrides})


def cli_env(database_url: str, ses: SesV2StandIn, **extra: str) -> dict[str, str]:
    return {
        "NEWSLETTER_DATABASE_URL": database_url,
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_SENDER": "ses",
        "NEWSLETTER_SES_ENDPOINT_URL": ses.endpoint_url,
        "NEWSLETTER_FROM": FROM,
        **extra,
    }


def send(env: dict[str, str], *args: str, batch: Path | str = EXAMPLE):
    return CliRunner().invoke(cli, ["send", str(batch), "--date", DATE, *args], env=env, catch_exceptions=False)


def add_readers(store, count: int, start: int = 0) -> list:
    """Add ``count`` readers; every tenth has a non-ASCII name."""
    report = store.import_subscribers(
        SubscriberRow(i, f"reader{i}@example.org", "Zoë Ünïcode" if i % 10 == 3 else None)
        for i in range(start, start + count)
    )
    assert len(report.added) == count
    return [store.get(email=f"reader{i}@example.org") for i in range(start, start + count)]


def the_issue(batch=EXAMPLE):
    """The issue as the send command renders it for readers."""
    return render_for_readers(load_batch(batch, date=DAY), Settings(secret_key=SECRET), Signer(SECRET))


def links(readers) -> dict[str, str]:
    """address -> that reader's own unsubscribe link."""
    signer = Signer(SECRET)
    return {r.email: signer.unsubscribe_url(BASE, r.ref) for r in readers}


def address(value: str) -> str:
    return email.utils.parseaddr(value)[1]


def display_name(value: str) -> str:
    """The decoded display name of an address as sent (RFC 2047 words decoded)."""
    return email.utils.parseaddr(str(email.header.make_header(email.header.decode_header(value))))[0]


def received(ses: SesV2StandIn) -> collections.Counter:
    """address -> messages the stand-in accepted for it."""
    return collections.Counter({address(a): n for a, n in ses.count_by_recipient().items()})


def ledger_rows(store, status: str | None = None) -> list[tuple]:
    return Ledger(store, DAY).rows(status)


def ledger_counts(store) -> dict[str, int]:
    return Ledger(store, DAY).counts()


def assert_ledger_matches(store, ses: SesV2StandIn, readers) -> None:
    """The ledger's "sent" rows are exactly the messages SES accepted: same
    readers, same message ids; no row is left "pending"."""
    emails = {r.id: r.email for r in readers}
    sent = {(emails[sid], message_id) for sid, _status, message_id, _ in ledger_rows(store, "sent")}
    accepted = {(address(m.to[0]), m.message_id) for m in ses.sent}
    assert sent == accepted
    assert ledger_counts(store)["pending"] == 0


def dispatch(store, ses, mode="bulk", options: SendOptions | None = None, after_call=None, issue=None, stop=None):
    """Run the Dispatcher with a real SesSender against ``ses``; ``after_call``
    runs after each send() with the call number."""
    settings = settings_for(ses)
    sender = SesSender(settings, mode=mode)
    if after_call is not None:
        inner = sender.send
        calls = [0]

        def send_and_hook(recipients):
            try:
                return inner(recipients)
            finally:
                calls[0] += 1
                after_call(calls[0])

        sender.send = send_and_hook
    dispatcher = Dispatcher(store, sender, Signer(SECRET), BASE, FROM, options or SendOptions(), stop)
    return dispatcher.run(issue or the_issue())


def operations(ses, name: str, status: int | None = None):
    return [r for r in ses.requests if r.operation == name and (status is None or r.status == status)]


# --------------------------------------------------------------------------
# bulk mode


def test_a_bulk_call_is_signed_over_the_entries_it_carries(standin, db, monkeypatch):
    """The entries go into the request body after botocore serialized the
    call's other members (ses._entries_into_body): the body sent must hold
    them all, whole, and botocore's SigV4 signature and Content-Length must
    be those of that body, or SES would refuse every call."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    ses = standin(max_send_rate=1000)
    readers = add_readers(db, 60)
    prepared = []
    make_client = ses_sender.ses_client

    def watched_client(settings):
        client = make_client(settings)
        client.meta.events.register("before-send.sesv2.SendBulkEmail",
                                    lambda request, **_kwargs: prepared.append(request))
        return client

    monkeypatch.setattr(ses_sender, "ses_client", watched_client)
    report = dispatch(db, ses)
    assert report.sent == 60 and received(ses) == collections.Counter({r.email: 1 for r in readers})
    assert [len(json.loads(p.body)["BulkEmailEntries"]) for p in prepared] == [50, 10]
    for request in prepared:
        body = json.loads(request.body)
        assert set(body) == {"FromEmailAddress", "DefaultContent", "BulkEmailEntries"}
        assert all(json.loads(e["ReplacementEmailContent"]["ReplacementTemplate"]["ReplacementTemplateData"])["f"]
                   for e in body["BulkEmailEntries"])
        headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        assert int(headers["Content-Length"]) == len(request.body)
        # The signature botocore's own signer makes for this very body, with
        # the headers it signed, at the request's time.
        signed = headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
        again = AWSRequest(method=request.method, url=request.url, data=request.body,
                           headers={k: v for k, v in headers.items() if k.lower() in signed})
        again.context["timestamp"] = headers["X-Amz-Date"]
        signer = SigV4Auth(Credentials("testing", "testing"), "ses", "us-east-1")
        signature = signer.signature(signer.string_to_sign(again, signer.canonical_request(again)), again)
        assert headers["Authorization"].endswith(f"Signature={signature}")


def test_bulk_sends_one_template_in_calls_of_50_every_reader_once(standin, db):
    ses = standin(max_send_rate=1000)
    readers = add_readers(db, 120)
    issue = the_issue()
    report = dispatch(db, ses, issue=issue)
    assert report.complete and (report.sent, report.failed, report.unknown) == (120, 0, 0)
    assert report.rate == 1000

    assert len(operations(ses, "CreateEmailTemplate")) == 1
    bulk = operations(ses, "SendBulkEmail")
    assert all(r.status == 200 and 1 <= r.n_recipients <= 50 for r in bulk)
    assert sum(r.n_recipients for r in bulk) == 120 and len(bulk) == 3
    assert not operations(ses, "SendEmail")
    assert ses.requests[-1].operation == "DeleteEmailTemplate" and ses.templates == {}

    assert received(ses) == collections.Counter({r.email: 1 for r in readers})
    own = links(readers)
    by_address = {r.email: r for r in readers}
    names = {r.email: r.name for r in readers}
    assert ses.events == []  # no entry lacked a name the template uses
    for message in ses.sent:
        to = address(message.to[0])
        url = own[to]
        assert message.template_name == TEMPLATE
        assert message.from_address == FROM
        assert display_name(message.to[0]) == (names[to] or "")
        assert message.header("List-Unsubscribe") == f"<{url}>"
        assert message.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
        assert message.header("X-Newsletter-Issue") == DATE
        assert message.subject == issue.subject
        # Exactly the email the outbox would carry for this reader.
        html, text = reader_parts(issue, by_address[to], picks_state="off")  # no picker given
        # The link three times: Unsubscribe, and its weekly and pause pages.
        assert message.text == text and message.text.count(url) == 3
        assert message.html == html and message.html.count(escape(url)) == 3
        assert_controls_signed_for(message.html, message.text, by_address[to].ref)
    assert_ledger_matches(db, ses, readers)


def test_literal_braces_in_paper_text_are_delivered_as_text(standin, database_file, db, tmp_path):
    papers = [
        {"title": "Braces {{ x }} and {{{y}}} in a title", "abstract": "We render {{ x }} and {{{y}}} and "
         "LaTeX sets like $\\{{\\bf v}_i\\}$ literally.", "authors": ["Ada {Lovelace}"],
         "arxiv_id": "2503.00001", "url": "https://arxiv.org/abs/2503.00001", "upvotes": 5},
        {"title": "A plain second paper", "abstract": "Nothing special here, {{unsubscribe_url}} included.",
         "authors": ["B. C."], "arxiv_id": "2503.00002", "upvotes": 1},
    ]
    batch = tmp_path / "braces.json"
    batch.write_text(json.dumps({"format": "newsletter-batch/1", "date": DATE, "papers": papers}), encoding="utf-8")
    ses = standin(max_send_rate=1000)
    readers = add_readers(db, 4)

    result = send(cli_env(database_file, ses), batch=batch)
    assert result.exit_code == 0, result.output
    assert len(ses.sent) == 4
    issue = the_issue(batch)
    assert "{{ x }}" in issue.text and "{{{y}}}" in htmllib.unescape(issue.html)  # the test means something
    own = links(readers)
    by_address = {r.email: r for r in readers}
    assert ses.events == []
    for message in ses.sent:
        url = own[address(message.to[0])]
        html, text = reader_parts(issue, by_address[address(message.to[0])])
        assert message.text == text
        assert htmllib.unescape(message.html) == htmllib.unescape(html)
        assert "Braces {{ x }} and {{{y}}} in a title" in message.text
        assert "Braces {{ x }} and {{{y}}} in a title" in htmllib.unescape(message.html)
        assert "\\{{\\bf v}_i\\}" in message.text
        assert "{{unsubscribe_url}} included" in message.text  # a paper cannot fill in the link
        assert message.text.count(url) == 3  # Unsubscribe, and its weekly and pause pages


# --------------------------------------------------------------------------
# raw mode


def test_raw_mode_sends_one_raw_message_per_reader(standin, database_file, db):
    ses = standin(max_send_rate=1000)
    readers = add_readers(db, 30)
    result = send(cli_env(database_file, ses), "--ses-mode", "raw")
    assert result.exit_code == 0, result.output
    assert "sent 30," in result.stdout

    raw_calls = operations(ses, "SendEmail")
    assert len(raw_calls) == 30 and all(r.status == 200 and r.n_recipients == 1 for r in raw_calls)
    assert not operations(ses, "SendBulkEmail") and not operations(ses, "CreateEmailTemplate")
    assert received(ses) == collections.Counter({r.email: 1 for r in readers})

    issue = the_issue()
    own = links(readers)
    by_address = {r.email: r for r in readers}
    for message in ses.sent:
        assert message.content_kind == "Raw"
        parsed = email.message_from_bytes(message.raw, policy=email.policy.default)
        (to,) = parsed["To"].addresses
        url = own[to.addr_spec]
        assert address(message.to[0]) == to.addr_spec
        assert parsed["From"] == FROM
        assert parsed["Subject"] == issue.subject
        assert parsed["List-Unsubscribe"] == f"<{url}>"
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert parsed["X-Newsletter-Issue"] == DATE
        assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
        html, text = reader_parts(issue, by_address[to.addr_spec])
        assert message.text.replace("\r\n", "\n").rstrip("\n") == text.rstrip("\n")
        assert message.html.replace("\r\n", "\n").rstrip("\n") == html.rstrip("\n")
        assert max(len(line) for line in message.raw.split(b"\r\n")) <= 998
    assert_ledger_matches(db, ses, readers)


# --------------------------------------------------------------------------
# faults, throttling and refusals


def test_faults_and_throttling_still_send_everyone_exactly_once(standin, store):
    ses = standin(max_send_rate=100)
    readers = add_readers(store, 300)
    rejected = {r.email for r in readers[7::60]}
    assert len(rejected) == 5
    ses.fail_next(1, 500, operation="GetAccount")
    ses.throttle_next(1, operation="CreateEmailTemplate")
    ses.reject_addresses(rejected)
    both_held = []

    def release_once_two_are_held():
        # Two calls wait at the provider at once while the others go on.
        try:
            wait_until(lambda: ses.held == 2, "two calls held by SES")
            both_held.append(True)
        finally:
            ses.release()

    releaser = threading.Thread(target=release_once_two_are_held)

    def faults_after_a_few_calls(call):
        if call == 4:  # by then the paced calls have run into SES's rate
            ses.throttle_next(3, operation="SendBulkEmail")
            ses.fail_next(3, 500, operation="SendBulkEmail")
            ses.fail_next(1, 503, "ServiceUnavailable", "Service unavailable.", operation="SendBulkEmail")
            ses.hold_next(2, operation="SendBulkEmail")
            releaser.start()

    # Paced far faster than the account allows, so SES answers
    # ACCOUNT_THROTTLED for the entries beyond its rate.
    report = dispatch(store, ses, options=SendOptions(max_rate=1000, concurrency=4, backoff_base=0.05),
                      after_call=faults_after_a_few_calls)
    releaser.join(timeout=60)
    assert both_held == [True]
    assert report.complete, report
    assert (report.sent, report.failed, report.unknown, report.left) == (295, 5, 0, 0)
    assert report.throttles >= 7
    assert ses.throttled > 3  # ACCOUNT_THROTTLED entries besides the three 429s
    assert [r.status for r in operations(ses, "GetAccount")] == [500, 200]
    assert [r.status for r in operations(ses, "CreateEmailTemplate")] == [429, 200]
    assert len(operations(ses, "SendBulkEmail", 500)) == 3
    assert len(operations(ses, "SendBulkEmail", 503)) == 1
    assert len(operations(ses, "SendBulkEmail", 429)) == 3

    assert received(ses) == collections.Counter({r.email: 1 for r in readers if r.email not in rejected})
    assert_ledger_matches(store, ses, readers)
    failed = ledger_rows(store, "failed")
    by_id = {r.id: r.email for r in readers}
    assert {by_id[sid] for sid, *_ in failed} == rejected
    assert all(message_id is None and reason.startswith("MESSAGE_REJECTED") for _, _, message_id, reason in failed)
    assert sorted(a for a, _ in report.failures) == sorted(rejected)
    assert ledger_counts(store) == {"pending": 0, "sent": 295, "failed": 5, "unknown": 0}
    assert ses.templates == {}


def test_whole_call_throttling_is_retried(standin, db):
    ses = standin(max_send_rate=100, throttle_style="call")
    # 8 calls of 50 where the account allows 100 a second after a burst of
    # 100: the send (paced at 1,000/s) is throttled however slow the machine.
    readers = add_readers(db, 400)
    report = dispatch(db, ses, options=SendOptions(max_rate=1000, backoff_base=0.05))
    assert report.complete and report.sent == 400
    assert ses.throttled > 0 and operations(ses, "SendBulkEmail", 429)
    assert received(ses) == collections.Counter({r.email: 1 for r in readers})
    assert_ledger_matches(db, ses, readers)


def test_a_lost_answer_leaves_readers_unknown_until_resend_unknown(standin, database_file, db):
    ses = standin(max_send_rate=1000)
    readers = add_readers(db, 100)  # two calls of 50
    env = cli_env(database_file, ses)
    ses.drop_next(1, operation="SendBulkEmail")

    first = send(env)
    assert first.exit_code == 0, first.output
    assert "sent 50, failed 0, unknown 50" in first.stdout
    assert "--resend-unknown" in first.stderr
    # SES did accept all of them: nobody got two, nobody none.
    assert received(ses) == collections.Counter({r.email: 1 for r in readers})
    unknown = {sid for sid, *_ in ledger_rows(db, "unknown")}
    assert len(unknown) == 50
    assert all(reason.startswith("no answer from SES") for *_, reason in ledger_rows(db, "unknown"))
    emails = {r.id: r.email for r in readers}
    sent = {(emails[sid], mid) for sid, _, mid, _ in ledger_rows(db, "sent")}
    assert sent == {(address(m.to[0]), m.message_id) for m in ses.sent if address(m.to[0]) not in
                    {emails[sid] for sid in unknown}}
    assert len(sent) == 50

    again = send(env)
    assert again.exit_code == 0 and "already sent" in again.stdout
    assert len(ses.sent) == 100

    resent = send(env, "--resend-unknown")
    assert resent.exit_code == 0, resent.output
    assert "sent 50," in resent.stdout
    assert received(ses) == collections.Counter({r.email: (2 if r.id in unknown else 1) for r in readers})
    assert ledger_counts(db) == {"pending": 0, "sent": 100, "failed": 0, "unknown": 0}
    latest = {address(m.to[0]): m.message_id for m in ses.sent}  # the later message wins
    assert {emails[sid]: mid for sid, _, mid, _ in ledger_rows(db, "sent")} == latest


@pytest.mark.parametrize("code", ["AccountSuspendedException", "SendingPausedException"])
def test_a_refusing_account_sends_nothing(standin, database_file, db, code):
    ses = standin(max_send_rate=1000)
    add_readers(db, 20)
    ses.account_error(code)
    result = send(cli_env(database_file, ses))
    assert result.exit_code == 3, result.output
    assert result.stderr.startswith("Error:") and "disabled" in result.stderr
    assert ses.sent == [] and not operations(ses, "SendBulkEmail") and ses.templates == {}
    assert ledger_counts(db) == {"pending": 0, "sent": 0, "failed": 0, "unknown": 0}


@pytest.mark.parametrize("code", ["AccountSuspendedException", "SendingPausedException"])
def test_an_account_error_mid_run_stops_at_once(standin, database_file, db, monkeypatch, code):
    ses = standin(max_send_rate=1000)
    readers = add_readers(db, 300)
    original = SesSender.send
    calls = []

    def send_then_suspend(self, recipients):
        try:
            return original(self, recipients)
        finally:
            calls.append(len(recipients))
            if len(calls) == 1:
                ses.account_error(code)

    monkeypatch.setattr(SesSender, "send", send_then_suspend)
    env = cli_env(database_file, ses, NEWSLETTER_SEND_CONCURRENCY="1")
    result = send(env)
    assert result.exit_code == 3, result.output
    assert "stopped" in result.stderr and code in result.stderr
    assert len(ses.sent) == 50
    assert len(operations(ses, "SendBulkEmail")) <= 2  # the refused call, then nothing more
    assert ledger_counts(db) == {"pending": 0, "sent": 50, "failed": 0, "unknown": 0}
    assert_ledger_matches(db, ses, readers)

    # Once the account is fine again, the next run sends the rest, once.
    ses.account_error(None)
    monkeypatch.setattr(SesSender, "send", original)
    again = send(env)
    assert again.exit_code == 0, again.output
    assert received(ses) == collections.Counter({r.email: 1 for r in readers})
    assert_ledger_matches(db, ses, readers)


def test_many_refusals_in_a_row_stop_the_run(standin, database_file, db):
    ses = standin(max_send_rate=1000)
    add_readers(db, 400)
    ses.reject_addresses(lambda _address: True)
    result = send(cli_env(database_file, ses, NEWSLETTER_SEND_CONCURRENCY="2"))
    assert result.exit_code == 3, result.output
    assert "in a row were refused" in result.stderr
    assert ses.sent == []
    counts = ledger_counts(db)
    assert counts["pending"] == 0 and counts["sent"] == 0 and counts["unknown"] == 0
    assert 50 <= counts["failed"] <= 150  # stopped after the calls in flight, not at the end
    assert len(operations(ses, "SendBulkEmail")) <= 3


# --------------------------------------------------------------------------
# the 24-hour quota


def test_a_quota_too_small_refuses_before_sending(standin, database_file, db):
    ses = standin(max_send_rate=1000, max_24_hour_send=100, sent_last_24_hours=40)
    readers = add_readers(db, 150)
    env = cli_env(database_file, ses)

    refused = send(env)
    assert refused.exit_code == 3, refused.output
    assert "60 messages left" in refused.stderr and "--allow-partial" in refused.stderr
    assert ses.sent == [] and [r.operation for r in ses.requests] == ["GetAccount"]
    assert ledger_counts(db) == {"pending": 0, "sent": 0, "failed": 0, "unknown": 0}

    partial = send(env, "--allow-partial")
    assert partial.exit_code == 0, partial.output
    assert "sent 60," in partial.stdout
    assert len(ses.sent) == 60 and set(received(ses).values()) == {1}
    assert_ledger_matches(db, ses, readers)
    assert Ledger(db, DAY).count_unsent() == 90


@pytest.mark.parametrize("mode,allowed", [("bulk", 25), ("raw", 5)])
def test_a_quota_used_up_mid_call_keeps_what_was_accepted(standin, db, mode, allowed):
    """SES accepts part of a call and then refuses the rest for the daily
    quota: the accepted readers must be recorded "sent", not sent again."""
    ses = standin(max_send_rate=1000)
    readers = add_readers(db, 120)

    def quota_runs_out(call):
        if call == 1:
            ses.set_quota(max_24_hour_send=ses.sent_last_24_hours + allowed)

    report = dispatch(db, ses, mode=mode, options=SendOptions(concurrency=1), after_call=quota_runs_out)
    assert report.stopped_by is not None and "quota" in str(report.stopped_by)
    first_call = 50 if mode == "bulk" else 10
    assert len(ses.sent) == first_call + allowed
    assert report.sent == first_call + allowed
    assert_ledger_matches(db, ses, readers)

    ses.set_quota(max_24_hour_send=100_000)
    again = dispatch(db, ses, mode=mode)
    assert again.complete
    assert received(ses) == collections.Counter({r.email: 1 for r in readers})
    assert_ledger_matches(db, ses, readers)


# --------------------------------------------------------------------------
# resuming, and the rate


def test_a_resumed_bulk_run_updates_the_stored_template(standin, database_file, db):
    ses = standin(max_send_rate=1000)
    readers = add_readers(db, 100)
    env = cli_env(database_file, ses)
    first = send(env, "--limit", "60")
    assert first.exit_code == 0, first.output
    assert set(ses.templates) == {TEMPLATE}  # kept: the issue is not fully sent
    # Pretend the stored template is from an older render of the day.
    ses.add_template(TEMPLATE, subject="stale", text="stale {{unsubscribe_url}}", html="<p>stale</p>")
    before = len(ses.sent)

    second = send(env)
    assert second.exit_code == 0, second.output
    create = operations(ses, "CreateEmailTemplate")
    assert [r.status for r in create] == [200, 400]  # the second met AlreadyExists...
    assert [r.status for r in operations(ses, "UpdateEmailTemplate")] == [200]  # ...and updated it
    later = ses.sent[before:]
    assert len(later) == 40
    assert all("stale" not in m.text for m in later) and ses.events == []
    assert received(ses) == collections.Counter({r.email: 1 for r in readers})
    assert_ledger_matches(db, ses, readers)
    assert ses.templates == {}


def test_max_send_rate_setting_overrides_the_account_rate(standin, database_file, db):
    ses = standin(max_send_rate=1000)
    readers = add_readers(db, 45)
    result = send(cli_env(database_file, ses, NEWSLETTER_MAX_SEND_RATE="20"))
    assert result.exit_code == 0, result.output
    assert "at up to 20/s" in result.stdout
    bulk = operations(ses, "SendBulkEmail")
    assert max(r.n_recipients for r in bulk) == 20  # one second's worth per call
    assert received(ses) == collections.Counter({r.email: 1 for r in readers})


def test_without_the_setting_the_account_rate_is_used(standin, db):
    ses = standin(max_send_rate=321)
    add_readers(db, 5)
    report = dispatch(db, ses)
    assert report.rate == 321 and report.sent == 5


# --------------------------------------------------------------------------
# moto


@pytest.mark.filterwarnings("ignore:When using MotoServer")
def test_raw_mode_against_moto(db):
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        unavailable(f"moto's server is not installed ({exc}); pip install 'moto[server]'")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("sesv2", endpoint_url=endpoint, region_name="us-east-1")
        client.create_email_identity(EmailIdentity="example.com")
        readers = add_readers(db, 6)
        settings = Settings(secret_key=SECRET, sender="ses", ses_endpoint_url=endpoint, from_address=FROM)

        class MotoSes(SesSender):
            def quota(self):  # moto's SES v2 has no GetAccount
                from newsletter.sending.senders.base import Quota

                return Quota(max_send_rate=None, max_24_hour_send=None, sent_last_24_hours=0)

        report = Dispatcher(db, MotoSes(settings, mode="raw"), Signer(SECRET), BASE, FROM).run(the_issue())
        assert report.complete and report.sent == 6

        with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=10) as answer:
            data = json.load(answer)
        stored = data["ses"]["RawMessage"]
        assert len(stored) == 6
        own = links(readers)
        seen = collections.Counter()
        ids = {}
        for item in stored:
            message = email.message_from_bytes(item["raw_data"].encode("utf-8"), policy=email.policy.default)
            (to,) = message["To"].addresses
            seen[to.addr_spec] += 1
            ids[to.addr_spec] = item["id"]
            assert message["List-Unsubscribe"] == f"<{own[to.addr_spec]}>"
            assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert message["X-Newsletter-Issue"] == DATE
        assert seen == collections.Counter({r.email: 1 for r in readers})
        emails = {r.id: r.email for r in readers}
        assert {emails[sid]: mid for sid, _, mid, _ in ledger_rows(db, "sent")} == ids
    finally:
        server.stop()


# -- the pre-flight ------------------------------------------------------------


def test_the_preflight_renders_each_shape_once_a_second_before_the_first_send(standin, database_file, db,
                                                                             monkeypatch):
    monkeypatch.setattr(ses_sender, "RENDER_INTERVAL", 1.0)
    ses = standin(max_send_rate=1000, render_rate=1)  # faster calls would be refused, as by SES
    readers = add_readers(db, 30)
    ses.throttle_next(1, operation="TestRenderEmailTemplate")  # a throttled call is retried
    result = send(cli_env(database_file, ses))
    assert result.exit_code == 0, result.output
    calls = [r.operation for r in ses.requests]
    renders = operations(ses, "TestRenderEmailTemplate")
    # picks, picks with just the top, no match, held, invite, off
    assert [r.status for r in renders] == [429, 200, 200, 200, 200, 200, 200]
    assert calls.index("SendBulkEmail") > max(i for i, op in enumerate(calls) if op == "TestRenderEmailTemplate")
    assert received(ses) == collections.Counter({r.email: 1 for r in readers}) and ses.events == []


def leave_out_invite(monkeypatch) -> None:
    """Make every entry's data lack ``invite``: a bug that leaves a name out."""
    complete = ses_sender.template_data

    def without_invite(recipient, issue):
        data = complete(recipient, issue)
        del data["invite"]
        return data

    monkeypatch.setattr(ses_sender, "template_data", without_invite)


def test_a_template_missing_a_name_stops_the_edition_before_any_send(standin, database_file, db, monkeypatch):
    ses = standin(max_send_rate=1000)
    add_readers(db, 30)
    leave_out_invite(monkeypatch)
    result = send(cli_env(database_file, ses))
    assert result.exit_code == 2, result.output
    assert TEMPLATE in result.stderr and "Attribute 'invite' is not present in the rendering data." in result.stderr
    assert "nothing was sent" in result.stderr
    assert len(operations(ses, "TestRenderEmailTemplate")) == 1  # stopped at the first failure
    assert not operations(ses, "SendBulkEmail") and ses.sent == [] and ses.events == []
    assert ledger_counts(db) == {"pending": 0, "sent": 0, "failed": 0, "unknown": 0}


def test_a_second_edition_is_checked_while_the_first_sends_on_a_copy_of_its_template(standin, database_file, db):
    """A run of two editions (the day's, then the weekly edition of the
    day) runs the weekly's pre-flight while the daily sends, not between
    the two: once the daily's own pre-flight is over, on a copy of the
    weekly's template under a name of the check's own, deleted after; the
    weekly's own template is stored when its send starts, and every reader
    gets their edition once."""
    ses = standin(max_send_rate=1000)
    daily = add_readers(db, 30)
    weekly = add_readers(db, 5, start=30)
    with db.engine.begin() as conn:
        conn.execute(update(subscribers_table).where(subscribers_table.c.id.in_([r.id for r in weekly]))
                     .values(frequency=Frequency.WEEKLY.value, weekday=DAY.weekday()))
    ses.hold_next(1, operation="SendBulkEmail")  # the daily's first call waits at SES
    seen = {}

    def watch():  # the send runs in the main thread: it sets signal handlers
        try:
            wait_until(lambda: ses.held == 1, "the daily edition's first call")
            # Both editions' pre-flights (six shapes of reader data each),
            # the weekly's on a copy, deleted, while the daily's first call
            # is held.
            wait_until(lambda: len(operations(ses, "DeleteEmailTemplate")) == 1, "the weekly edition's check")
            seen.update(renders=len(operations(ses, "TestRenderEmailTemplate", 200)), templates=set(ses.templates))
        except AssertionError as exc:
            seen["failed"] = exc
        finally:
            ses.release()

    watcher = threading.Thread(target=watch)
    watcher.start()
    result = send(cli_env(database_file, ses))
    watcher.join()
    assert "failed" not in seen, seen.get("failed")
    assert seen == {"renders": 12, "templates": {TEMPLATE}}  # the weekly's own template not stored yet
    assert result.exit_code == 0, result.output
    editions = {address(m.to[0]): m.header("X-Newsletter-Issue") for m in ses.sent}
    assert editions == {**{r.email: DATE for r in daily}, **{r.email: f"{DATE}-weekly" for r in weekly}}
    assert len(ses.sent) == len(daily) + len(weekly)
    assert ses.templates == {}  # each edition's template deleted once it was sent to everyone


def test_open_skips_the_preflight_checked_ahead_and_raises_the_refusal_it_found(standin, monkeypatch):
    ses = standin(max_send_rate=1000)
    issue = the_issue()
    renders = lambda: len(operations(ses, "TestRenderEmailTemplate"))  # noqa: E731

    checked = SesSender(settings_for(ses))
    checked.check_ahead(issue, threading.Event())
    assert renders() == 6 and ses.templates == {}  # its copy is deleted
    checked.open(issue, PreparedMessage(issue, FROM))
    assert renders() == 6 and set(ses.templates) == {TEMPLATE}
    checked.close(complete=True)

    stop = threading.Event()
    stop.set()  # a stop before the check: nothing checked, open checks for itself
    stopped = SesSender(settings_for(ses))
    stopped.check_ahead(issue, stop)
    assert renders() == 6 and ses.templates == {}
    stopped.open(issue, PreparedMessage(issue, FROM))
    assert renders() == 12
    stopped.close(complete=True)

    leave_out_invite(monkeypatch)
    refused = SesSender(settings_for(ses))
    refused.check_ahead(issue, threading.Event())
    assert renders() == 13 and ses.templates == {}
    with pytest.raises(TemplateRejected, match=f"{TEMPLATE} .*Attribute 'invite' is not present"):
        refused.open(issue, PreparedMessage(issue, FROM))
    assert renders() == 13 and ses.templates == {}  # not stored, and not rendered again
    assert ses.sent == []


def test_bulk_results_read_as_json_are_what_botocores_parser_makes_of_them():
    """SendBulkEmail's results are read with the JSON decoder alone
    (ses._results_aside, a "before-parse" hook): what the call returns must
    be what botocore's own parser makes of the same answer, for every
    status and with members SES may add later; an error answer, or a body
    that is not JSON, is left to botocore whole."""
    import botocore.session
    from botocore.parsers import create_parser

    model = botocore.session.get_session().get_service_model("sesv2").operation_model("SendBulkEmail")
    answer = {"BulkEmailEntryResults": [
        {"Status": "SUCCESS", "MessageId": "0100-a"},
        {"Status": "MESSAGE_REJECTED", "Error": "Email address is not verified: \"Ada\" <ada@example.com> é"},
        {"Status": "ACCOUNT_THROTTLED", "Error": "Maximum sending rate exceeded.", "Later": 1},
        {"Status": "FAILED"},
    ], "Unmodelled": "kept out"}

    def parsed(body: bytes, status: int = 200, hook: bool = True) -> dict:
        response = {"headers": {"content-type": "application/json"}, "status_code": status, "body": body,
                    "context": {"operation_name": "SendBulkEmail"}}
        custom: dict = {}
        if hook:
            ses_sender._results_aside(response_dict=response, customized_response_dict=custom)
        result = create_parser("rest-json").parse(response, model.output_shape)
        result.update(custom)
        result.pop("ResponseMetadata", None)
        return result

    body = json.dumps(answer).encode()
    ours = parsed(body)
    assert ours["BulkEmailEntryResults"][:2] == answer["BulkEmailEntryResults"][:2]
    # Botocore drops the members its model lacks; the dispatcher reads only
    # Status, Error and MessageId, the same either way.
    fields = ("Status", "Error", "MessageId")
    assert ([{k: r.get(k) for k in fields} for r in ours["BulkEmailEntryResults"]]
            == [{k: r.get(k) for k in fields} for r in parsed(body, hook=False)["BulkEmailEntryResults"]])
    for status, odd in ((400, json.dumps({"message": "bad"}).encode()), (200, b"not json")):
        assert parsed(odd, status) == parsed(odd, status, hook=False)
