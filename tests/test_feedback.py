"""Reading SES notifications (``newsletter.feedback.parse_ses_notification``)
and applying them to the store (``Store.apply_feedback``).

The samples in tests/fixtures/ses/ are the SES Developer Guide's examples,
in both shapes SES publishes: identity notifications (``notificationType``)
and configuration-set events (``eventType``). The only change to them is an
``X-Newsletter-Issue`` header in ``mail.headers``, as the newsletter's own
mail carries one, and the Rendering Failure's template name, which is the
newsletter's (``newsletter-`` and the edition).
"""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest
from sqlalchemy import select

from conftest import FIXTURES
from newsletter.core.errors import SnsMalformed
from newsletter.feedback.events import parse_ses_notification
from newsletter.core.models import Feedback, SubscriberStatus
from newsletter.store.schema import feedback_table

ACTIVE = SubscriberStatus.ACTIVE
BOUNCED = SubscriberStatus.BOUNCED
COMPLAINED = SubscriberStatus.COMPLAINED
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED

SES = FIXTURES / "ses"


def sample(name: str) -> dict:
    return json.loads((SES / name).read_text(encoding="utf-8"))


def parse(payload: dict) -> list[Feedback]:
    return parse_ses_notification(json.dumps(payload))


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


# --------------------------------------------------------------------------
# parse_ses_notification on each sample


EXPECTED = {
    "notification-bounce.json": [Feedback(
        "bounce", "jane@example.com", "2016-01-27", bounce_type="Permanent", bounce_subtype="General",
        detail="smtp; 550 5.1.1 <jane@example.com>... User", at=utc("2016-01-27T14:59:38.237"),
    )],
    "notification-bounce-no-dsn.json": [
        Feedback("bounce", "jane@example.com", "2016-01-27", bounce_type="Permanent", bounce_subtype="General",
                 detail=None, at=utc("2016-01-27T14:59:38.237")),
        Feedback("bounce", "richard@example.com", "2016-01-27", bounce_type="Permanent",
                 bounce_subtype="General", detail=None, at=utc("2016-01-27T14:59:38.237")),
    ],
    "notification-complaint.json": [Feedback(
        "complaint", "richard@example.com", "2016-01-27", detail="abuse", at=utc("2016-01-27T14:59:38.237"),
    )],
    "notification-complaint-no-feedback.json": [Feedback(
        "complaint", "richard@example.com", "2016-01-27", detail=None, at=utc("2016-01-27T14:59:38.237"),
    )],
    "notification-delivery.json": [Feedback(
        "delivery", "jane@example.com", "2016-01-27", at=utc("2016-01-27T14:59:38.237"),
    )],
    "event-bounce.json": [Feedback(
        "bounce", "recipient@example.com", "2017-08-05", bounce_type="Permanent", bounce_subtype="General",
        detail="smtp; 550 5.1.1 user unknown", at=utc("2017-08-05T00:41:02.669"),
    )],
    "event-complaint.json": [Feedback(
        "complaint", "recipient@example.com", "2017-08-05", detail="abuse", at=utc("2017-08-05T00:41:02.669"),
    )],
    "event-delivery.json": [Feedback(
        "delivery", "recipient@example.com", "2016-10-19", at=utc("2016-10-19T23:21:04.133"),
    )],
    "event-rendering-failure.json": [Feedback(
        "render_failure", "recipient@example.com", "2018-01-22",
        detail="Rendering Failure: Attribute 'attributeName' is not present in the rendering data. "
               "(template newsletter-2018-01-22)", at=utc("2018-01-22T18:43:06.197"),
    )],
    "event-send.json": [],
    "event-open.json": [],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sample_is_read(name):
    assert parse(sample(name)) == EXPECTED[name]


def test_every_fixture_is_covered():
    assert {p.name for p in SES.glob("*.json")} == set(EXPECTED)


def test_timestamps_are_aware_utc():
    for name, expected in EXPECTED.items():
        for record in parse(sample(name)):
            assert record.at.tzinfo is not None and record.at.utcoffset() == dt.timedelta(0), name


@pytest.mark.parametrize("kind", ["bounce", "complaint", "delivery"])
def test_both_payload_styles_read_alike(kind):
    identity = sample(f"notification-{kind}.json")
    event = sample(f"event-{kind}.json")
    assert "notificationType" in identity and "eventType" not in identity
    assert "eventType" in event and "notificationType" not in event
    # The same notification with its type under the other name reads the same.
    renamed = {("eventType" if k == "notificationType" else k): v for k, v in identity.items()}
    assert parse(renamed) == parse(identity)
    assert [r.kind for r in parse(event)] == [r.kind for r in parse(identity)] == [kind]


def test_the_issue_comes_from_the_header_whatever_its_case():
    payload = sample("event-bounce.json")
    for header in payload["mail"]["headers"]:
        if header["name"] == "X-Newsletter-Issue":
            header["name"] = "x-newsletter-issue"
            header["value"] = " 2025-03-11 "
    assert parse(payload)[0].issue_date == "2025-03-11"


def test_without_original_headers_the_issue_is_unknown():
    # SES leaves out headersTruncated, headers and commonHeaders unless the
    # identity is set to include the original headers.
    payload = sample("notification-bounce.json")
    for name in ("headersTruncated", "headers", "commonHeaders"):
        del payload["mail"][name]
    [record] = parse(payload)
    assert record.issue_date is None
    assert (record.email, record.bounce_type) == ("jane@example.com", "Permanent")


@pytest.mark.parametrize("value", ["", "soon", "2025-03"])
def test_a_header_too_short_for_a_date_gives_no_issue(value):
    payload = sample("notification-delivery.json")
    payload["mail"]["headers"][-1]["value"] = value
    assert parse(payload)[0].issue_date is None


def test_a_status_stands_in_for_a_missing_diagnostic():
    payload = sample("event-bounce.json")
    del payload["bounce"]["bouncedRecipients"][0]["diagnosticCode"]
    assert parse(payload)[0].detail == "5.1.1"


def test_a_transient_bounce_keeps_its_type_and_subtype():
    payload = sample("notification-bounce.json")
    payload["bounce"].update(bounceType="Transient", bounceSubType="MailboxFull")
    [record] = parse(payload)
    assert (record.bounce_type, record.bounce_subtype) == ("Transient", "MailboxFull")


def test_a_bad_timestamp_gives_no_time():
    payload = sample("event-delivery.json")
    payload["delivery"]["timestamp"] = "not a time"
    assert parse(payload)[0].at is None


@pytest.mark.parametrize("event_type", ["Send", "Reject", "Open", "Click", "DeliveryDelay",
                                        "Subscription", "Received", ""])
def test_other_event_types_give_nothing(event_type):
    payload = sample("event-send.json")
    payload["eventType"] = event_type
    assert parse(payload) == []


@pytest.mark.parametrize("message", [
    "not json", "", "{\"eventType\": ", None, b"\xff\xfe",
])
def test_a_message_that_is_not_json_is_refused(message):
    with pytest.raises(SnsMalformed, match="not JSON"):
        parse_ses_notification(message)


@pytest.mark.parametrize("message", [
    "[]", "\"Bounce\"", "42", "{}", json.dumps({"notificationType": "Bounce", "bounce": {}}),
    json.dumps({"eventType": "Bounce", "mail": "not an object"}),
])
def test_json_that_is_not_an_ses_notification_is_refused(message):
    with pytest.raises(SnsMalformed):
        parse_ses_notification(message)


def recipients_of(payload: dict) -> list:
    """The recipient list of a bounce, complaint or delivery sample."""
    for kind, key in (("bounce", "bouncedRecipients"), ("complaint", "complainedRecipients"),
                      ("delivery", "recipients")):
        if kind in payload:
            return payload[kind][key]
    raise AssertionError("not a bounce, complaint or delivery")


def kind_of(payload: dict) -> str:
    return next(k for k in ("bounce", "complaint", "delivery") if k in payload)


def first_address(value):
    """A change putting ``value`` where the first recipient's address is."""
    def change(payload: dict) -> None:
        recipients = recipients_of(payload)
        recipients[0] = value if kind_of(payload) == "delivery" else {**recipients[0], "emailAddress": value}
    return change


# Each breaks one field SES fills (for every sample it applies to) in a way
# SES never would: a wrong JSON type, NUL, a lone surrogate, too long.
MALFORMED = {
    "notificationType a list": lambda p: p.update({"notificationType" if "notificationType" in p else "eventType":
                                                   ["Bounce"]}),
    "the kind's object a list": lambda p: p.update({kind_of(p): [p[kind_of(p)]]}),
    "the kind's object a string": lambda p: p.update({kind_of(p): "Permanent"}),
    "recipients a string": lambda p: p[kind_of(p)].update(
        {"bounce": {"bouncedRecipients": "x"}, "complaint": {"complainedRecipients": "x"},
         "delivery": {"recipients": "x"}}[kind_of(p)]),
    "recipients an object": lambda p: p[kind_of(p)].update(
        {"bounce": {"bouncedRecipients": {"emailAddress": "x@example.com"}},
         "complaint": {"complainedRecipients": {"emailAddress": "x@example.com"}},
         "delivery": {"recipients": {"x@example.com": 1}}}[kind_of(p)]),
    "a recipient a number": lambda p: recipients_of(p).append(7),
    "an address a number": first_address(5),
    "an address null": first_address(None),
    "an address with NUL": first_address("a\x00@example.com"),
    "an address with a lone surrogate": first_address("a\ud800@example.com"),
    "an address too long": first_address("a" * 321),
    # "İ" is one character but two once lower-cased, as the store keeps addresses.
    "an address too long once lower-cased": first_address("İ" * 200),
    "the timestamp a number": lambda p: p[kind_of(p)].update(timestamp=1453906778),
    "the timestamp an object": lambda p: p[kind_of(p)].update(timestamp={"at": "2016-01-27T14:59:38.237Z"}),
    "headers an object": lambda p: p["mail"].update(headers={"X-Newsletter-Issue": "2016-01-27"}),
    "headers a string": lambda p: p["mail"].update(headers="X-Newsletter-Issue: 2016-01-27"),
    "a header a list": lambda p: p["mail"]["headers"].append(["X-Newsletter-Issue", "2016-01-27"]),
    "a header name a number": lambda p: p["mail"]["headers"].append({"name": 1, "value": "x"}),
    "a header value missing": lambda p: p["mail"]["headers"].append({"name": "X-Newsletter-Issue"}),
    "the issue header value a list": lambda p: p["mail"]["headers"].insert(
        0, {"name": "X-Newsletter-Issue", "value": ["2016-01-27"]}),
    "the issue header with NUL": lambda p: p["mail"]["headers"].insert(
        0, {"name": "X-Newsletter-Issue", "value": "2016-01-27\x00"}),
}
BOUNCE_ONLY = {
    "bounceType an object": lambda p: p["bounce"].update(bounceType={"Permanent": True}),
    "bounceType a number": lambda p: p["bounce"].update(bounceType=1),
    "bounceType too long": lambda p: p["bounce"].update(bounceType="P" * 33),
    "bounceSubType a list": lambda p: p["bounce"].update(bounceSubType=["General"]),
    "bounceSubType too long": lambda p: p["bounce"].update(bounceSubType="G" * 65),
    "diagnosticCode a number": lambda p: p["bounce"]["bouncedRecipients"][0].update(diagnosticCode=550),
    "status an object": lambda p: p["bounce"]["bouncedRecipients"][0].update(status={"code": "5.1.1"}),
    "diagnosticCode with NUL": lambda p: p["bounce"]["bouncedRecipients"][0].update(diagnosticCode="550\x00"),
}
COMPLAINT_ONLY = {
    "complaintFeedbackType a list": lambda p: p["complaint"].update(complaintFeedbackType=["abuse"]),
    "complaintFeedbackType with a lone surrogate": lambda p: p["complaint"].update(complaintFeedbackType="\udfff"),
}
# A Rendering Failure's fields are others (see test_a_malformed_rendering_failure_is_refused).
FEEDBACK_SAMPLES = [name for name in sorted(EXPECTED) if EXPECTED[name] and "rendering" not in name]


@pytest.mark.parametrize("name", FEEDBACK_SAMPLES)
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_field_ses_would_not_send_refuses_the_whole_notification(name, case):
    payload = sample(name)
    MALFORMED[case](payload)
    with pytest.raises(SnsMalformed):
        parse(payload)


@pytest.mark.parametrize("name", [n for n in FEEDBACK_SAMPLES if "bounce" in n])
@pytest.mark.parametrize("case", sorted(BOUNCE_ONLY))
def test_a_bounce_field_ses_would_not_send_refuses_the_bounce(name, case):
    payload = sample(name)
    BOUNCE_ONLY[case](payload)
    with pytest.raises(SnsMalformed):
        parse(payload)


@pytest.mark.parametrize("name", [n for n in FEEDBACK_SAMPLES if "complaint" in n])
@pytest.mark.parametrize("case", sorted(COMPLAINT_ONLY))
def test_a_complaint_field_ses_would_not_send_refuses_the_complaint(name, case):
    payload = sample(name)
    COMPLAINT_ONLY[case](payload)
    with pytest.raises(SnsMalformed):
        parse(payload)


def test_a_second_malformed_recipient_refuses_the_first_too():
    payload = sample("notification-bounce-no-dsn.json")
    payload["bounce"]["bouncedRecipients"][1]["emailAddress"] = {"address": "richard@example.com"}
    with pytest.raises(SnsMalformed):
        parse(payload)


@pytest.mark.parametrize("message", ["[" * 100_000, "{\"mail\": " * 100_000])
def test_a_message_nested_too_deeply_is_refused(message):
    with pytest.raises(SnsMalformed):
        parse_ses_notification(message)


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_timestamp_that_cannot_be_put_in_utc_gives_no_time(stamp):
    payload = sample("event-delivery.json")
    payload["delivery"]["timestamp"] = stamp
    assert parse(payload)[0].at is None


def test_a_timestamp_with_an_offset_is_read_in_utc():
    payload = sample("event-delivery.json")
    payload["delivery"]["timestamp"] = "2016-10-20T01:21:04+02:00"
    assert parse(payload)[0].at == utc("2016-10-19T23:21:04")
    assert parse(payload)[0].at.utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize("value", ["yesterday!", "2025-3-11 or so", "１２３４-５６-７８"])
def test_an_issue_header_that_is_not_a_date_gives_no_issue(value):
    payload = sample("notification-delivery.json")
    payload["mail"]["headers"][-1]["value"] = value
    assert parse(payload)[0].issue_date is None


def test_optional_fields_may_be_null():
    payload = sample("notification-bounce.json")
    payload["bounce"].update(bounceSubType=None, timestamp=None)
    payload["bounce"]["bouncedRecipients"][0].update(diagnosticCode=None, status=None)
    payload["mail"]["headers"] = None
    [record] = parse(payload)
    assert (record.email, record.bounce_type, record.bounce_subtype) == ("jane@example.com", "Permanent", None)
    assert (record.detail, record.at, record.issue_date) == (None, None, None)


def test_a_notification_without_recipients_gives_nothing():
    payload = sample("event-bounce.json")
    payload["bounce"]["bouncedRecipients"] = []
    assert parse(payload) == []
    del payload["bounce"]
    assert parse(payload) == []


# --------------------------------------------------------------------------
# Store.apply_feedback (SQLite and PostgreSQL)


def rows(store) -> list:
    with store.reader.connect() as conn:
        return conn.execute(select(feedback_table).order_by(feedback_table.c.id)).all()


def test_apply_feedback_records_each_recipient_and_suppresses(store):
    jane, _ = store.add("jane@example.com")
    richard, _ = store.add("Richard@Example.com")
    records = parse(sample("notification-bounce-no-dsn.json"))

    outcome = store.apply_feedback("sns-1", records)

    assert outcome == {"suppressed": ["jane@example.com", "richard@example.com"],
                       "recorded": ["jane@example.com", "richard@example.com"]}
    assert store.get(email="jane@example.com").status == BOUNCED
    assert store.get(email="richard@example.com").status == BOUNCED
    stored = rows(store)
    assert [(r.sns_message_id, r.kind, r.email_key, r.subscriber_id, r.issue_date, r.bounce_type)
            for r in stored] == [
        ("sns-1", "bounce", "jane@example.com", jane.id, "2016-01-27", "Permanent"),
        ("sns-1", "bounce", "richard@example.com", richard.id, "2016-01-27", "Permanent"),
    ]
    stamp = stored[0].at if stored[0].at.tzinfo else stored[0].at.replace(tzinfo=dt.timezone.utc)
    assert stamp == utc("2016-01-27T14:59:38.237")


def test_apply_feedback_is_idempotent_by_message_id(store):
    store.add("jane@example.com")
    records = parse(sample("notification-bounce.json"))
    assert store.apply_feedback("sns-1", records) is not None
    assert store.apply_feedback("sns-1", records) is None
    assert store.apply_feedback("sns-1", parse(sample("notification-complaint.json"))) is None
    assert len(rows(store)) == 1


def test_an_unknown_address_is_recorded_and_nothing_else(store):
    outcome = store.apply_feedback("sns-1", parse(sample("event-complaint.json")))
    assert outcome == {"suppressed": [], "recorded": ["recipient@example.com"]}
    assert rows(store)[0].subscriber_id is None
    assert store.counts()[ACTIVE] == 0


def test_a_complaint_wins_over_a_bounce_but_not_the_other_way(store):
    reader, _ = store.add("recipient@example.com")
    store.apply_feedback("sns-1", parse(sample("event-bounce.json")))
    assert store.get(email="recipient@example.com").status == BOUNCED
    store.apply_feedback("sns-2", parse(sample("event-complaint.json")))
    assert store.get(email="recipient@example.com").status == COMPLAINED
    outcome = store.apply_feedback("sns-3", parse(sample("event-bounce.json")))
    assert outcome["suppressed"] == []
    assert store.get(email="recipient@example.com").status == COMPLAINED
    assert [e.new_status for e in store.events(reader.id)] == [ACTIVE, BOUNCED, COMPLAINED]


def test_a_reader_who_unsubscribed_and_complains_is_marked_complained(store):
    reader, _ = store.add("richard@example.com")
    store.unsubscribe(reader.ref, source="web", reason="unsubscribed on the web page")
    store.apply_feedback("sns-1", parse(sample("notification-complaint.json")))
    assert store.get(email="richard@example.com").status == COMPLAINED
    last = store.events(reader.id)[-1]
    assert (last.old_status, last.source) == (UNSUBSCRIBED, "ses")
    assert last.reason == "complaint: abuse (issue 2016-01-27)"


def test_a_complaint_without_feedback_type_still_suppresses(store):
    reader, _ = store.add("richard@example.com")
    store.apply_feedback("sns-1", parse(sample("notification-complaint-no-feedback.json")))
    assert store.get(email="richard@example.com").status == COMPLAINED
    assert "complaint" in store.events(reader.id)[-1].reason


@pytest.mark.parametrize("bounce_type", ["Undetermined", "Transient"])
def test_a_single_soft_bounce_changes_nothing(store, bounce_type):
    store.add("jane@example.com")
    payload = sample("notification-bounce.json")
    payload["bounce"]["bounceType"] = bounce_type
    payload["bounce"]["timestamp"] = dt.datetime.now(dt.timezone.utc).isoformat()
    assert store.apply_feedback("sns-1", parse(payload))["suppressed"] == []
    assert store.get(email="jane@example.com").status == ACTIVE


def test_transient_bounces_count_within_the_window_by_their_time(store):
    reader, _ = store.add("mary@example.com")
    now = dt.datetime.now(dt.timezone.utc)

    def transient(message_id, days_ago):
        return store.apply_feedback(message_id, [Feedback(
            "bounce", "mary@example.com", "2025-03-10", bounce_type="Transient", bounce_subtype="MailboxFull",
            detail="smtp; 452 4.2.2 Mailbox full", at=now - dt.timedelta(days=days_ago),
        )])

    assert transient("a", 45)["suppressed"] == []
    assert transient("b", 31)["suppressed"] == []
    assert transient("c", 29)["suppressed"] == []
    assert transient("d", 1)["suppressed"] == []
    assert store.get(email="mary@example.com").status == ACTIVE  # 2 within 30 days
    assert transient("e", 0)["suppressed"] == ["mary@example.com"]
    assert store.get(email="mary@example.com").status == BOUNCED
    assert store.events(reader.id)[-1].reason.startswith("3 transient bounces in 30 days, last: MailboxFull")


def test_other_readers_transient_bounces_do_not_count(store):
    store.add("mary@example.com")
    now = dt.datetime.now(dt.timezone.utc)
    for i, address in enumerate(["jane@example.com", "richard@example.com", "mary@example.com"]):
        store.apply_feedback(f"m{i}", [Feedback("bounce", address, None, bounce_type="Transient", at=now)])
    assert store.get(email="mary@example.com").status == ACTIVE


def test_feedback_without_a_time_is_stamped_now(store):
    before = dt.datetime.now(dt.timezone.utc)
    store.apply_feedback("sns-1", [Feedback("delivery", "jane@example.com", None)])
    stamp = rows(store)[0].at
    stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)
    assert before - dt.timedelta(seconds=1) <= stamp <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)


def test_a_long_diagnostic_is_cut_to_fit(store):
    store.add("jane@example.com")
    payload = copy.deepcopy(sample("notification-bounce.json"))
    payload["bounce"]["bouncedRecipients"][0]["diagnosticCode"] = "smtp; 550 " + "x" * 5000
    store.apply_feedback("sns-1", parse(payload))
    assert len(rows(store)[0].detail) == 1000
    assert store.get(email="jane@example.com").status == BOUNCED


# --------------------------------------------------------------------------
# a Rendering Failure


def test_a_rendering_failure_fails_the_readers_ledger_row_and_nothing_else(store):
    from newsletter.core.models import DeliveryStatus, Edition
    from newsletter.store import Ledger
    from newsletter.store.ledger import LedgerRow

    reader = store.add("recipient@example.com")[0]
    other = store.add("other@example.com")[0]
    ledger = Ledger(store, Edition(dt.date(2018, 1, 22)))
    ledger.mark_pending([reader.id, other.id])
    ledger.record([LedgerRow(reader.id, DeliveryStatus.SENT, "m1"), LedgerRow(other.id, DeliveryStatus.SENT, "m2")])
    payload = sample("event-rendering-failure.json")
    # SES may name the recipient as it was addressed.
    payload["mail"]["destination"] = ["Zoë <recipient@example.com>"]

    assert store.apply_feedback("sns-1", parse(payload))["recorded"] == ["recipient@example.com"]

    rows = {row.subscriber_id: row for row in ledger.rows()}
    assert rows[reader.id].status == DeliveryStatus.FAILED
    assert rows[reader.id].reason.startswith("Rendering Failure: Attribute 'attributeName' is not present")
    assert rows[other.id].status == DeliveryStatus.SENT
    assert store.get(email="recipient@example.com").status == ACTIVE  # not the reader's fault
    # Sent again after the fix: the row is gone, so the next run sends to the reader.
    assert ledger.forget_rendering_failures() == 1
    assert [row.subscriber_id for row in ledger.rows()] == [other.id]
    assert ledger.count_unsent() == 1


@pytest.mark.parametrize("change", [
    lambda p: p.update(failure="x"),
    lambda p: p.update(failure=[p["failure"]]),
    lambda p: p["failure"].update(errorMessage=7),
    lambda p: p["failure"].update(templateName=["newsletter-2018-01-22"]),
    lambda p: p["failure"].update(errorMessage="a\udfff"),
    lambda p: p["mail"].update(destination="recipient@example.com"),
    lambda p: p["mail"].update(destination=[7]),
    lambda p: p["mail"].update(destination=["a\x00@example.com"]),
    lambda p: p["mail"].update(destination=["a" * 321]),
    lambda p: p["mail"].update(timestamp=1516646586),
    lambda p: p["mail"].update(headers={"X-Newsletter-Issue": "2018-01-22"}),
])
def test_a_malformed_rendering_failure_is_refused(change):
    payload = sample("event-rendering-failure.json")
    change(payload)
    with pytest.raises(SnsMalformed):
        parse(payload)


def test_a_rendering_failure_without_its_failure_is_refused():
    payload = sample("event-send.json")
    payload["eventType"] = "Rendering Failure"
    with pytest.raises(SnsMalformed):
        parse(payload)
