"""What every sender promises (the ``Sender`` protocol and its module,
newsletter/sending/senders/base.py), held against each of them as
``create_sender`` makes it: the outbox (files in tmp), SMTP (a real aiosmtpd
server on 127.0.0.1, as in test_send_smtp.py) and SES in bulk and in raw mode
(the SES v2 stand-in, tests/sesv2_standin.py, as in test_send_ses.py).

The promises: a name and a batch size; ``quota()`` is the account's limits;
``open``, ``send`` and ``close`` deliver a batch with one Delivery per
recipient, in order, a SENT one carrying the id the provider knows the
message by; a refused reader fails alone; a throttled or failing call sends
nothing to the readers it hits (raised for the whole batch, or RETRY for
each) and trying them again sends each once; an account refusal sends
nothing (AccountError); a provider that stops partway through a batch
raises StoppedMidBatch with each reader's outcome (SENT, then RETRY); a lost
answer leaves its readers UNKNOWN, never RETRY (a retry could send twice);
``close`` ends the send; ``send_single`` sends one ready-made message and
raises a SendError when it is refused.

The outbox writes files: it has no provider that could refuse a reader,
throttle, stop partway or lose an answer, so those promises are held against
the other three only (see ``PROVIDERS_THAT_FAIL``).
"""

from __future__ import annotations

import collections
import datetime as dt
import email.policy
import email.utils
import shutil
import threading
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path

import pytest
from test_send_ses import aws  # noqa: F401 (autouse: dummy credentials, no AWS configuration, no render pacing)
from test_send_smtp import Recorder, start_server

from conftest import EXAMPLE, SECRET
from newsletter.core.config import Settings
from newsletter.core.errors import AccountError, SendError, Throttled, TransientError
from newsletter.core.models import DeliveryStatus
from newsletter.issue.render import render_for_readers
from newsletter.papers.batches import load_batch
from newsletter.readers.tokens import Signer
from newsletter.sending.personalize import PreparedMessage, Recipient
from newsletter.sending.senders import create_sender
from newsletter.sending.senders.base import Quota, StoppedMidBatch
from sesv2_standin import SesV2StandIn

DAY = dt.date(2025, 3, 11)
BASE = "http://127.0.0.1:8000"
FROM = "Daily Papers <newsletter@example.com>"
SENT, FAILED, RETRY, UNKNOWN = DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.RETRY, DeliveryStatus.UNKNOWN
UNLIMITED = Quota(max_send_rate=None, max_24_hour_send=None, sent_last_24_hours=0)


# --------------------------------------------------------------------------
# the providers, seen from the test


class OutboxProvider:
    """The outbox: a folder in tmp. A message's id is its file's name."""

    name, ses_mode = "outbox", "bulk"

    def __init__(self, folder: Path):
        self.folder = folder

    def settings(self) -> Settings:
        return Settings(secret_key=SECRET, from_address=FROM, outbox_dir=self.folder)

    def received(self) -> dict[str, list[str]]:
        """address -> the ids of the messages the provider took for it."""
        got = collections.defaultdict(list)
        for path in sorted(self.folder.rglob("*.eml")):
            got[to_address(path.read_bytes())].append(path.name)
        return dict(got)

    def limit(self, rate: float, per_day: float, sent: float) -> Quota:
        return UNLIMITED  # no account

    def refuse_account(self, edition: str) -> None:
        """The edition's folder becomes a file: nothing can be written."""
        shutil.rmtree(self.folder / edition)
        (self.folder / edition).write_text("not a folder")

    def refuse_single(self, address: str) -> None:
        """The folder of single messages becomes a file (those written so
        far are kept aside, still counted as received)."""
        single = self.folder / "single"
        if single.exists():
            single.rename(self.folder / "single-written")
        single.write_text("not a folder")

    def holds_nothing(self) -> bool:
        return True  # each file is whole once written: nothing is left open


class ContractRecorder(Recorder):
    """test_send_smtp's recording server, which also counts QUIT and can
    lose the answer to DATA: for ``lose_data`` addresses it takes the
    message, then drops the connection before it answers."""

    def __init__(self):
        super().__init__()
        self.quits = 0
        self.lose_data: set[str] = set()

    async def handle_QUIT(self, server, session, envelope):
        with self.lock:
            self.quits += 1
        return "221 Bye"

    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)
        if envelope.rcpt_tos[0] in self.lose_data:
            server.transport.abort()
        return answer


class SmtpProvider:
    """A real SMTP server on 127.0.0.1. A message's id is its Message-ID."""

    name, ses_mode = "smtp", "bulk"

    def __init__(self, recorder: ContractRecorder, port: int):
        self.recorder = recorder
        self.port = port

    def settings(self) -> Settings:
        return Settings(secret_key=SECRET, from_address=FROM, sender="smtp", smtp_host="127.0.0.1",
                        smtp_port=self.port, smtp_starttls=False)

    def received(self) -> dict[str, list[str]]:
        got = collections.defaultdict(list)
        with self.recorder.lock:
            for message in self.recorder.received:
                got[message.rcpt_tos[0]].append(message.message["Message-ID"])
        return dict(got)

    def limit(self, rate: float, per_day: float, sent: float) -> Quota:
        return UNLIMITED  # SMTP tells no limits

    def refuse(self, address: str) -> None:
        self.recorder.refuse[address] = "550 5.1.1 User unknown"

    refuse_single = refuse

    def throttle_next(self) -> None:
        # SMTP's "slow down" is a 4xx: to MAIL FROM it holds back the sender.
        self.recorder.mail_replies.append("451 4.7.1 Too many messages, slow down")

    def fail_next(self) -> None:
        self.recorder.mail_replies.append("421 4.3.2 Service not available, closing transmission channel")

    def refuse_account(self, edition: str) -> None:
        self.recorder.mail_replies = ["554 5.7.1 Sending paused for this account"] * 100

    def stop_after(self, accepted: int) -> None:
        self.recorder.mail_replies = [None] * accepted + ["554 5.7.1 Sending paused for this account"] * 100

    def lose_answer(self, address: str) -> None:
        self.recorder.lose_data.add(address)

    def holds_nothing(self) -> bool:
        """Every connection the sender opened has said QUIT."""
        with self.recorder.lock:
            return self.recorder.quits == self.recorder.connections


class SesProvider:
    """The SES v2 stand-in, for the bulk or the raw mode. A message's id is
    the MessageId SES answered."""

    name = "ses"

    def __init__(self, ses: SesV2StandIn, mode: str):
        self.ses = ses
        self.ses_mode = mode
        self.operation = "SendBulkEmail" if mode == "bulk" else "SendEmail"

    def settings(self) -> Settings:
        return Settings(secret_key=SECRET, from_address=FROM, sender="ses", ses_endpoint_url=self.ses.endpoint_url)

    def received(self) -> dict[str, list[str]]:
        got = collections.defaultdict(list)
        for message in self.ses.sent:
            got[email.utils.parseaddr(message.to[0])[1]].append(message.message_id)
        return dict(got)

    def limit(self, rate: float, per_day: float, sent: float) -> Quota:
        self.ses.set_quota(max_send_rate=rate, max_24_hour_send=per_day, sent_last_24_hours=sent)
        return Quota(max_send_rate=rate, max_24_hour_send=per_day, sent_last_24_hours=sent)

    def refuse(self, address: str) -> None:
        self.ses.reject_addresses({address})

    refuse_single = refuse

    def throttle_next(self) -> None:
        self.ses.throttle_next(1, operation=self.operation)

    def fail_next(self) -> None:
        self.ses.fail_next(1, 500, operation=self.operation)

    def refuse_account(self, edition: str) -> None:
        self.ses.account_error("SendingPausedException")

    def stop_after(self, accepted: int) -> None:
        # The 24-hour quota runs out after ``accepted`` more messages.
        self.ses.set_quota(max_24_hour_send=self.ses.sent_last_24_hours + accepted)

    def lose_answer(self, address: str) -> None:
        # The next call is handled, then its connection closed unanswered:
        # with the raw mode that is the first reader's, in bulk the batch's.
        self.ses.drop_next(1, operation=self.operation)

    def holds_nothing(self) -> bool:
        """No template is left stored (the raw mode stores none)."""
        return self.ses.templates == {}


PROVIDERS = ["outbox", "smtp", "ses-bulk", "ses-raw"]
# The outbox writes files in a folder of the operator's: there is no
# provider to refuse a reader, to throttle or fail a call, to stop partway
# through a batch or to lose an answer (a write that fails raises
# AccountError for the whole batch; the files written before it are
# written again, the same bytes, by the next run).
PROVIDERS_THAT_FAIL = ["smtp", "ses-bulk", "ses-raw"]


@pytest.fixture
def provider(request, tmp_path):
    """The provider named by the test's parameter, started (and stopped)."""
    kind = request.param
    if kind == "outbox":
        yield OutboxProvider(tmp_path / "outbox")
    elif kind == "smtp":
        recorder = ContractRecorder()
        controller = start_server(recorder)
        try:
            yield SmtpProvider(recorder, controller.port)
        finally:
            controller.stop()
    else:
        # Fast enough for any batch here, with a daily quota to spare.
        with SesV2StandIn(max_send_rate=1000, max_24_hour_send=50000) as ses:
            yield SesProvider(ses, kind.removeprefix("ses-"))


def every(kinds: list[str]):
    return pytest.mark.parametrize("provider", kinds, indirect=True)


# --------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def issue():
    """The example day, rendered for readers as the send command does."""
    return render_for_readers(load_batch(EXAMPLE, date=DAY), Settings(secret_key=SECRET), Signer(SECRET))


def readers(count: int, start: int = 1) -> list[Recipient]:
    """``count`` readers with ids from ``start``; every other one has a name."""
    return [Recipient(i, f"reader{i:03d}@example.org", f"Reader {i}" if i % 2 else None, f"{BASE}/u/link-{i}",
                      f"{BASE}/p/link-{i}") for i in range(start, start + count)]


def to_address(data: bytes) -> str:
    return message_from_bytes(data, policy=email.policy.default)["To"].addresses[0].addr_spec


def opened(provider, issue):
    """A sender for ``provider`` made by name, opened for ``issue``."""
    sender = create_sender(provider.settings(), provider.name, provider.ses_mode)
    sender.open(issue, PreparedMessage(issue, FROM))
    return sender


def assert_one_each_in_order(deliveries, recipients) -> None:
    assert [d.recipient for d in deliveries] == recipients
    assert [d.subscriber_id for d in deliveries] == [r.subscriber_id for r in recipients]


def assert_sent_as_received(provider, deliveries) -> None:
    """Each SENT reader has exactly one message at the provider, under the
    delivery's message id; no other reader has any."""
    sent = {d.recipient.email: [d.message_id] for d in deliveries if d.status == SENT}
    assert all(ids[0] for ids in sent.values())
    assert provider.received() == sent


# --------------------------------------------------------------------------
# the promises


@every(PROVIDERS)
def test_a_sender_is_made_by_name_with_its_batch_size(provider):
    sender = create_sender(provider.settings(), provider.name, provider.ses_mode)
    assert sender.name == provider.name
    assert isinstance(sender.batch_size, int) and sender.batch_size >= 1


@every(PROVIDERS)
def test_the_quota_is_the_accounts_limits(provider):
    expected = provider.limit(rate=14, per_day=200, sent=20)
    sender = create_sender(provider.settings(), provider.name, provider.ses_mode)
    assert sender.quota() == expected


@every(PROVIDERS)
def test_a_batch_gets_one_delivery_per_reader_in_order_and_close_ends_the_send(provider, issue):
    sender = opened(provider, issue)
    batch = readers(sender.batch_size)
    deliveries = sender.send(batch)
    assert_one_each_in_order(deliveries, batch)
    assert {d.status for d in deliveries} == {SENT}
    assert len({d.message_id for d in deliveries}) == len(batch)
    assert_sent_as_received(provider, deliveries)
    sender.close(complete=True)
    assert provider.holds_nothing()


@every(PROVIDERS)
def test_a_check_ahead_changes_nothing_the_send_delivers_and_leaves_nothing_behind(provider, issue):
    """``check_ahead`` (an edition checked while an earlier one sends), then
    the send as usual: one delivery per reader, as without it, and nothing
    left at the provider."""
    sender = create_sender(provider.settings(), provider.name, provider.ses_mode)
    sender.check_ahead(issue, threading.Event())
    sender.open(issue, PreparedMessage(issue, FROM))
    batch = readers(sender.batch_size)
    deliveries = sender.send(batch)
    assert_one_each_in_order(deliveries, batch)
    assert {d.status for d in deliveries} == {SENT}
    assert_sent_as_received(provider, deliveries)
    sender.close(complete=True)
    assert provider.holds_nothing()


@every(PROVIDERS)
def test_where_names_a_place_holding_the_messages_or_nothing(provider, issue):
    """The summary line's place: the outbox names the folder its messages
    are in; a provider's messages left the machine, so it names none."""
    sender = opened(provider, issue)
    deliveries = sender.send(readers(2))
    sender.close(complete=True)
    where = sender.where(issue)
    if provider.name == "outbox":
        folder = Path(where)
        assert sorted(path.name for path in folder.glob("*.eml")) == sorted(d.message_id for d in deliveries)
    else:
        assert where is None


@every(["outbox"])
def test_the_outbox_names_a_readers_file_by_id_then_address_and_a_copy_by_time(provider, issue):
    """An operator tells whose file is whose: ``<id>-<address>.eml``, the
    address made safe for any file system; sending the reader again (a
    re-run) writes that same file, and a copy outside the ledger (id 0: a
    test message, "send again") gets a file of its own beside it."""
    sender = opened(provider, issue)
    odd = Recipient(12, "o'brien/news&x@example.org", None, f"{BASE}/u/odd")
    deliveries = sender.send([*readers(2), odd])
    names = [d.message_id for d in deliveries]
    assert names == ["1-reader001@example.org.eml", "2-reader002@example.org.eml", "12-o_brien_news_x@example.org.eml"]
    folder = Path(sender.where(issue))
    assert sorted(path.name for path in folder.iterdir()) == sorted(names)
    assert to_address((folder / names[2]).read_bytes()) == odd.email
    again = sender.send(readers(1))
    copy = sender.send([Recipient(0, "reader001@example.org", None, f"{BASE}/u/copy")])
    assert again[0].message_id == names[0]
    assert copy[0].message_id not in names and not copy[0].message_id.startswith("0-")
    assert len(list(folder.glob("*.eml"))) == len(names) + 1
    sender.close(complete=True)


@every(PROVIDERS_THAT_FAIL)
def test_a_refused_reader_fails_alone(provider, issue):
    sender = opened(provider, issue)
    batch = readers(5)
    provider.refuse(batch[2].email)
    deliveries = sender.send(batch)
    assert_one_each_in_order(deliveries, batch)
    assert [d.status for d in deliveries] == [SENT, SENT, FAILED, SENT, SENT]
    assert deliveries[2].reason and deliveries[2].message_id is None
    assert_sent_as_received(provider, deliveries)


@every(PROVIDERS_THAT_FAIL)
@pytest.mark.parametrize("fault", ["throttle_next", "fail_next"])
def test_a_throttled_or_failing_call_sends_nothing_to_its_readers_and_a_retry_sends_each_once(provider, issue, fault):
    sender = opened(provider, issue)
    batch = readers(5)
    getattr(provider, fault)()
    try:
        deliveries = sender.send(batch)
    except (Throttled, TransientError):
        deliveries, to_retry = [], batch  # nothing of the batch was sent
    else:
        assert_one_each_in_order(deliveries, batch)
        assert {d.status for d in deliveries} <= {SENT, RETRY} and RETRY in {d.status for d in deliveries}
        to_retry = [d.recipient for d in deliveries if d.status == RETRY]
    deliveries = [d for d in deliveries if d.status == SENT]
    assert_sent_as_received(provider, deliveries)
    retried = sender.send(to_retry)
    assert_one_each_in_order(retried, to_retry)
    assert {d.status for d in retried} == {SENT}
    assert_sent_as_received(provider, deliveries + retried)
    assert sorted(provider.received()) == sorted(r.email for r in batch)


@every(PROVIDERS)
def test_an_account_refusal_sends_nothing(provider, issue):
    sender = opened(provider, issue)
    provider.refuse_account(issue.edition)
    with pytest.raises(AccountError) as refused:
        sender.send(readers(5))
    assert not isinstance(refused.value, StoppedMidBatch)
    assert provider.received() == {}


@every(PROVIDERS_THAT_FAIL)
def test_a_provider_that_stops_partway_keeps_what_it_accepted(provider, issue):
    sender = opened(provider, issue)
    batch = readers(5)
    provider.stop_after(2)
    with pytest.raises(StoppedMidBatch) as stopped:
        sender.send(batch)
    deliveries = stopped.value.deliveries
    assert isinstance(stopped.value, AccountError)  # the run stops
    assert_one_each_in_order(deliveries, batch)
    assert [d.status for d in deliveries] == [SENT, SENT, RETRY, RETRY, RETRY]
    assert_sent_as_received(provider, deliveries)


@every(PROVIDERS_THAT_FAIL)
def test_a_lost_answer_leaves_its_readers_unknown(provider, issue):
    sender = opened(provider, issue)
    batch = readers(5)
    provider.lose_answer(batch[0].email)
    deliveries = sender.send(batch)
    assert_one_each_in_order(deliveries, batch)
    assert deliveries[0].status == UNKNOWN and deliveries[0].reason
    # The others: sent, or (SMTP's connection gone with the answer) not tried.
    assert {d.status for d in deliveries[1:]} <= {SENT, RETRY, UNKNOWN}
    received = provider.received()
    assert batch[0].email in received  # the provider took it: hence never RETRY
    for delivery in deliveries[1:]:
        if delivery.status == SENT:
            assert received[delivery.recipient.email] == [delivery.message_id]
        elif delivery.status == RETRY:
            assert delivery.recipient.email not in received


@every(PROVIDERS)
def test_send_single_sends_one_ready_made_message_and_raises_when_refused(provider):
    sender = create_sender(provider.settings(), provider.name, provider.ses_mode)
    message_id = sender.send_single("new@example.org", single_message("new@example.org"))
    assert message_id
    assert provider.received() == {"new@example.org": [message_id]}
    provider.refuse_single("nobody@example.org")
    with pytest.raises(SendError):
        sender.send_single("nobody@example.org", single_message("nobody@example.org"))
    assert list(provider.received()) == ["new@example.org"]


def single_message(to: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = FROM
    msg["To"] = to
    msg["Subject"] = "Confirm your subscription"
    msg["Message-ID"] = email.utils.make_msgid(domain="example.com")
    msg.set_content("Click the link to confirm.")
    return msg.as_bytes()
