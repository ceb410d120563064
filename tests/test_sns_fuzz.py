"""Fuzzing ``POST /sns`` and the SQS poller with generated input (hypothesis).

Whatever arrives, the answer is never a 5xx and a refused message changes
nothing in the store: arbitrary JSON, arbitrary bytes, envelopes whose known
fields hold random JSON types, random strings or nothing, deep nesting, huge
strings, and SES notifications full of hostile values inside messages that
are properly signed (with the local certificate set-up of test_sns.py), so
that the code after signature verification is reached too.

Examples are derandomized (the same ones every run), at most a few hundred
per test, on SQLite and PostgreSQL alike; the store is shared by the examples
of one test, so each example compares the store before and after itself.
``pytest --hypothesis-show-statistics`` shows which answers the examples got.
"""

from __future__ import annotations

import datetime as dt
import json
import threading

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_sns import (  # noqa: F401 (fixtures: pki, _server, server, cert_url, verifier, client, readers)
    CONFIRM_PATH,
    LOOPBACK,
    READERS,
    TOPIC,
    _server,
    cert_url,
    client,
    count,
    notification,
    pki,
    readers,
    server,
    ses,
    sign,
    state,
    unsigned,
    verifier,
)

from newsletter.feedback.sns import SnsVerifier
from newsletter.feedback.sqs import poll
from newsletter.store.schema import sns_seen_table


def fuzz(examples: int):
    """Hypothesis settings for these tests: ``examples`` examples, the same
    ones every run, no deadline, no example database written to disk. The
    fixtures (store, server, client) are shared by a test's examples on
    purpose, hence the function-scoped-fixture health check is off."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                               HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


# --------------------------------------------------------------------------
# strategies

# Characters that have broken string handling somewhere: NUL (PostgreSQL),
# lone surrogates (UTF-8 encoding), a character that grows when lower-cased,
# line breaks, quotes and brackets.
AWKWARD = st.sampled_from(["\x00", "\ud800", "\udfff", "İ", "\n", "\r", "\"", "\\", "[", "{", "\ufeff", "é"])
TEXT = st.text(st.characters() | AWKWARD, max_size=30)
HUGE = st.builds(lambda char, size: char * size, st.sampled_from(["x", "é", "\x00", "[", "İ", "\ud800"]),
                 st.integers(1_000, 200_000))
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                    max_leaves=12)
NOT_STRINGS = JSON.filter(lambda value: not isinstance(value, str) and value is not None)
# The envelope fields SNS documents (Notification, SubscriptionConfirmation).
FIELDS = ["Type", "MessageId", "TopicArn", "Subject", "Message", "Timestamp", "SignatureVersion", "Signature",
          "SigningCertURL", "SubscribeURL", "Token", "UnsubscribeURL"]
KINDS = st.sampled_from(["Notification", "SubscriptionConfirmation"])
# What SNS signs for each kind (its documentation, not newsletter.feedback.sns).
SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def what_counts(envelope: dict, kind: str) -> dict:
    """The fields that decide whether ``envelope``, made as a ``kind``, is
    authentic: those SNS signs for it and the signature's own (a null
    Subject is no Subject). Other fields may change without harm."""
    names = SIGNED[kind] + ("SignatureVersion", "Signature", "SigningCertURL")
    return {name: envelope[name] for name in names
            if name in envelope and not (name == "Subject" and envelope[name] is None)}


def signed_envelope(pki, cert_url: str, server, kind: str) -> dict:
    """A fresh, valid, signed envelope of ``kind``: a delivery notification
    for a reader (changes no status), or a subscription confirmation whose
    SubscribeURL is on the local server."""
    if kind == "Notification":
        return notification(pki, cert_url, ses("notification-delivery.json"))
    url = f"{server.base}{CONFIRM_PATH}?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=x"
    return sign(unsigned(kind, cert_url=cert_url, subscribe_url=url), pki.key)


def post_body(client, body: bytes | str):
    """POST ``body`` to /sns, noting the status for hypothesis's statistics."""
    response = client.post("/sns", data=body, content_type="text/plain; charset=UTF-8")
    event(f"HTTP {response.status_code}")
    return response


def assert_refused_cleanly(response, before, store) -> None:
    """A refusal: a 4xx, and the store exactly as it was."""
    assert 400 <= response.status_code < 500, response.status_code
    assert state(store) == before


# --------------------------------------------------------------------------
# bodies that are not SNS envelopes


@fuzz(100)
@given(value=JSON)
def test_arbitrary_json_is_refused_and_fetches_nothing(client, store, readers, server, value):
    before, requests = state(store), len(server.requests)
    response = post_body(client, json.dumps(value))
    assert response.status_code in (400, 403)
    assert state(store) == before
    assert len(server.requests) == requests


@fuzz(100)
@given(body=st.binary(max_size=2_000) | HUGE.map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_arbitrary_bytes_are_refused(client, store, readers, body):
    before = state(store)
    response = post_body(client, body)
    assert response.status_code in (400, 413)  # 413: over the 512 KB a request may have
    assert state(store) == before


@fuzz(40)
@given(depth=st.integers(500, 30_000), opener=st.sampled_from(["[", '{"a": ', '{"Message": ']),
       closed=st.booleans(), field=st.sampled_from(FIELDS + [None]))
def test_deep_nesting_is_refused_as_malformed(pki, cert_url, server, client, store, readers, depth, opener, closed,
                                              field):
    closer = {"[": "]", '{"a": ': "}", '{"Message": ': "}"}[opener]
    nested = opener * depth + (("1" if opener != "[" else "") + closer * depth if closed else "")
    if field is None:
        body = nested
    else:  # in place of one field of a valid envelope
        envelope = signed_envelope(pki, cert_url, server, "Notification")
        body = json.dumps({**envelope, field: "@@"}).replace('"@@"', nested)
    before = state(store)
    response = post_body(client, body)
    assert response.status_code == 400
    assert state(store) == before


# --------------------------------------------------------------------------
# envelopes with broken fields


@fuzz(100)
@given(kind=KINDS, broken=st.dictionaries(st.sampled_from(FIELDS), NOT_STRINGS, min_size=1, max_size=4))
def test_fields_of_any_other_json_type_are_malformed(pki, cert_url, server, client, store, readers, kind, broken):
    envelope = {**signed_envelope(pki, cert_url, server, kind), **broken}
    before, requests = state(store), len(server.requests)

    response = post_body(client, json.dumps(envelope))

    assert response.status_code == 400
    assert state(store) == before
    assert len(server.requests) == requests  # refused before any download


@fuzz(100)
@given(kind=KINDS, changes=st.dictionaries(st.sampled_from(FIELDS), st.none() | TEXT | HUGE, max_size=4),
       removed=st.sets(st.sampled_from(FIELDS), max_size=3))
def test_fields_with_other_strings_or_missing_are_refused(pki, cert_url, server, client, store, readers, kind,
                                                          changes, removed):
    original = signed_envelope(pki, cert_url, server, kind)
    envelope = {k: v for k, v in {**original, **changes}.items() if k not in removed}
    before, confirmations = state(store), server.hits(CONFIRM_PATH)

    response = post_body(client, json.dumps(envelope))

    assert response.status_code < 500
    if response.status_code == 200:  # only when nothing signed changed
        assert what_counts(envelope, kind) == what_counts(original, kind)
    else:
        assert_refused_cleanly(response, before, store)
        assert server.hits(CONFIRM_PATH) == confirmations


@fuzz(100)
@given(offset=st.integers(0, 10_000), junk=st.binary(min_size=1, max_size=6))
def test_bytes_spliced_into_a_signed_envelope(pki, cert_url, server, client, store, readers, offset, junk):
    envelope = signed_envelope(pki, cert_url, server, "Notification")
    body = json.dumps(envelope).encode("utf-8")
    offset %= len(body) + 1
    body = body[:offset] + junk + body[offset:]
    before = state(store)

    response = post_body(client, body)

    assert response.status_code < 500
    if response.status_code == 200:  # only when the splice changed nothing signed (a space between tokens...)
        assert what_counts(json.loads(body), "Notification") == what_counts(envelope, "Notification")
    else:
        assert_refused_cleanly(response, before, store)


# --------------------------------------------------------------------------
# signed, but hostile SES notifications (reach the code after verification)


def anything(*valid):
    """One of ``valid``, or a hostile value of any type."""
    return (st.sampled_from(valid) if valid else st.nothing()) | JSON | TEXT | HUGE.map(lambda s: s[:3_000])


STAMPS = st.builds(
    lambda moment, zone: moment.isoformat() + zone,
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.sampled_from(["Z", "+14:00", "-14:00", "", "+05:30"]),
)
ADDRESSES = anything(*READERS, "Jane@Example.COM", " jane@example.com ", "", "İ" * 200, "stranger@example.org")
RECIPIENT = st.fixed_dictionaries({}, optional={
    "emailAddress": ADDRESSES, "status": anything("5.1.1", "4.2.2"),
    "diagnosticCode": anything("smtp; 550 5.1.1 user unknown"), "action": anything("failed"),
})
BOUNCE = st.fixed_dictionaries({}, optional={
    "bounceType": anything("Permanent", "Transient", "Undetermined"),
    "bounceSubType": anything("General", "MailboxFull", "Suppressed"),
    "bouncedRecipients": st.lists(RECIPIENT | JSON, max_size=3) | JSON,
    "timestamp": STAMPS | anything(),
})
COMPLAINT = st.fixed_dictionaries({}, optional={
    "complainedRecipients": st.lists(RECIPIENT | JSON, max_size=3) | JSON,
    "complaintFeedbackType": anything("abuse", "fraud"),
    "timestamp": STAMPS | anything(),
})
DELIVERY = st.fixed_dictionaries({}, optional={
    "recipients": st.lists(ADDRESSES, max_size=3) | JSON,
    "timestamp": STAMPS | anything(),
})
HEADER = st.fixed_dictionaries({
    "name": anything("X-Newsletter-Issue", "x-newsletter-issue", "From"),
    "value": anything("2025-03-11", " 2025-03-11 ", "2025-03", "2025-03-11\x00"),
})
MAIL = st.fixed_dictionaries({}, optional={"headers": st.lists(HEADER | JSON, max_size=3) | JSON}) | JSON
SES_PAYLOAD = st.fixed_dictionaries({"mail": MAIL}, optional={
    "notificationType": anything("Bounce", "Complaint", "Delivery", "Send"),
    "eventType": anything("Bounce", "Complaint", "Delivery", "Open"),
    "bounce": BOUNCE | JSON,
    "complaint": COMPLAINT | JSON,
    "delivery": DELIVERY | JSON,
})
MESSAGES = SES_PAYLOAD.map(json.dumps) | JSON.map(json.dumps) | TEXT


@fuzz(200)
@given(message=MESSAGES)
def test_signed_hostile_ses_notifications_never_fail_the_server(pki, cert_url, client, store, readers, message):
    envelope = notification(pki, cert_url, message)
    before = state(store)
    seen = count(store, sns_seen_table)

    response = post_body(client, json.dumps(envelope))

    assert response.status_code in (200, 400), response.status_code
    if response.status_code == 400:
        assert state(store) == before
    else:  # applied once, under its message id
        assert count(store, sns_seen_table) == seen + 1


# --------------------------------------------------------------------------
# the SQS poller


class FakeQueue:
    """Just enough of a boto3 SQS client for ``poll``: hands out the given
    bodies ten at a time and records deletions."""

    def __init__(self, bodies: list[str]):
        self.waiting = [{"MessageId": str(i), "ReceiptHandle": f"r{i}", "Body": body} for i, body in enumerate(bodies)]
        self.deleted: list[str] = []

    def receive_message(self, **_options) -> dict:
        batch, self.waiting = self.waiting[:10], self.waiting[10:]
        return {"Messages": batch}

    def delete_message(self, QueueUrl: str, ReceiptHandle: str) -> None:  # noqa: N803 (boto3's names)
        self.deleted.append(ReceiptHandle)


@fuzz(40)
@given(bodies=st.lists(
    JSON.map(json.dumps) | TEXT | MESSAGES | st.integers(500, 60_000).map(lambda depth: "[" * depth)
    | st.tuples(KINDS, st.dictionaries(st.sampled_from(FIELDS), NOT_STRINGS, min_size=1, max_size=3)),
    min_size=1, max_size=12,
))
def test_poll_counts_every_malformed_message_as_refused(pki, cert_url, server, store, readers, bodies):
    verifier = SnsVerifier((TOPIC,), max_age=dt.timedelta(days=14), cert_host=LOOPBACK, cert_scheme="http")
    texts = [  # a tuple stands for a signed envelope of that kind with those fields broken
        json.dumps({**signed_envelope(pki, cert_url, server, body[0]), **body[1]}) if isinstance(body, tuple)
        else body
        for body in bodies
    ]
    queue = FakeQueue(texts)
    before = state(store)

    report = poll(queue, "queue", verifier, store, once=True, stop=threading.Event(), wait=0)

    assert (report.handled, report.refused, queue.deleted) == (0, len(texts), [])
    assert all(outcome.startswith("refused ") for outcome in report.outcomes)
    assert state(store) == before
