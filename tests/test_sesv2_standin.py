"""The SES v2 stand-in (tests/sesv2_standin.py), driven by real boto3 clients.

Everything runs against 127.0.0.1; nothing here talks to AWS. The stand-in
models what the newsletter calls (GetAccount, its template, SendBulkEmail,
raw SendEmail, and the identity and configuration-set reads of
``newsletter doctor``) and the faults its tests inject; these tests hold it
to that.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import threading
from email.message import EmailMessage

import botocore.config
import botocore.exceptions
import pytest

from conftest import wait_until
from sesv2_standin import SentMessage, SesV2StandIn, render

FROM = "Daily Papers <papers@example.com>"
INF = float("inf")


@pytest.fixture
def ses():
    with SesV2StandIn(max_send_rate=1000) as standin:
        yield standin


@pytest.fixture
def client(ses):
    return ses.client()


class Clock:
    """Seconds that move only when a test moves them."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def mime(to="reader@example.com", subject="Hello", headers=()) -> bytes:
    message = EmailMessage()
    message["From"] = FROM
    message["To"] = to if isinstance(to, str) else ", ".join(to)
    message["Subject"] = subject
    for name, value in headers:
        message[name] = value
    message.set_content("text body")
    message.add_alternative("<p>html</p>", subtype="html")
    return message.as_bytes()


def raw(to="reader@example.com", subject="Hello", **extra):
    """A raw SendEmail request; the recipients are the MIME To header's."""
    return {"Content": {"Raw": {"Data": mime(to, subject)}}, **extra}


def entry(address, data=None, headers=None):
    out = {"Destination": {"ToAddresses": [address]}}
    if data is not None:
        out["ReplacementEmailContent"] = {
            "ReplacementTemplate": {"ReplacementTemplateData": json.dumps(data)}
        }
    if headers:
        out["ReplacementHeaders"] = [{"Name": k, "Value": v} for k, v in headers]
    return out


def bulk(addresses, template="daily", data=None):
    return {
        "FromEmailAddress": FROM,
        "DefaultContent": {
            "Template": {"TemplateName": template, "TemplateData": json.dumps(data or {})}
        },
        "BulkEmailEntries": [entry(a) for a in addresses],
    }


def statuses(response):
    return [r["Status"] for r in response["BulkEmailEntryResults"]]


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def http_status(excinfo):
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def in_thread(call):
    """Run ``call`` in a thread; return the thread and where its outcome goes."""
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = call()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


# -- account and templates ---------------------------------------------------


def test_get_account_reports_quota_and_counts_sends():
    with SesV2StandIn(max_send_rate=14, max_24_hour_send=50000, sent_last_24_hours=7) as ses:
        client = ses.client()
        account = client.get_account()
        assert account["SendQuota"] == {
            "Max24HourSend": 50000.0,
            "MaxSendRate": 14.0,
            "SentLast24Hours": 7.0,
        }
        assert account["SendingEnabled"] is True
        assert account["ProductionAccessEnabled"] is True
        client.send_email(**raw(to=["a@example.com", "b@example.com"]))
        assert client.get_account()["SendQuota"]["SentLast24Hours"] == 9.0
        assert ses.endpoint_url.startswith("http://127.0.0.1:")


def test_account_sandbox_and_sending_are_settable():
    with SesV2StandIn(production_access=False) as ses:
        client = ses.client()
        account = client.get_account()
        assert account["ProductionAccessEnabled"] is False and account["SendingEnabled"] is True
        client.send_email(**raw())  # the sandbox is only reported
        ses.set_account(production_access=True, sending_enabled=False)
        account = client.get_account()
        assert account["ProductionAccessEnabled"] is True and account["SendingEnabled"] is False
        with pytest.raises(botocore.exceptions.ClientError) as e:
            client.send_email(**raw())
        assert error_code(e) == "SendingPausedException"
        assert len(ses.sent) == 1
        ses.set_account(sending_enabled=True)
        client.send_email(**raw())
        assert len(ses.sent) == 2


def test_email_identities(ses, client):
    with pytest.raises(client.exceptions.NotFoundException) as e:
        client.get_email_identity(EmailIdentity="example.org")
    assert http_status(e) == 404

    ses.add_identity("Example.org", mail_from="bounce.example.org", mail_from_status="PENDING",
                     behavior_on_mx_failure="REJECT_MESSAGE")
    domain = client.get_email_identity(EmailIdentity="example.org")  # names match in any case
    assert domain["IdentityType"] == "DOMAIN" and domain["VerifiedForSendingStatus"] is True
    assert domain["DkimAttributes"]["Status"] == "SUCCESS" and domain["DkimAttributes"]["SigningEnabled"] is True
    assert len(domain["DkimAttributes"]["Tokens"]) == 3
    assert domain["MailFromAttributes"] == {
        "MailFromDomain": "bounce.example.org", "MailFromDomainStatus": "PENDING",
        "BehaviorOnMxFailure": "REJECT_MESSAGE",
    }

    ses.add_identity("papers@example.com", verified=False)
    address = client.get_email_identity(EmailIdentity="papers@example.com")
    assert address["IdentityType"] == "EMAIL_ADDRESS" and address["VerifiedForSendingStatus"] is False
    assert address["VerificationStatus"] == "PENDING"
    assert address["DkimAttributes"]["Status"] == "NOT_STARTED"
    assert address["MailFromAttributes"]["MailFromDomain"] == ""

    ses.remove_identity("example.org")
    with pytest.raises(client.exceptions.NotFoundException):
        client.get_email_identity(EmailIdentity="example.org")
    with pytest.raises(ValueError):
        ses.add_identity("example.net", dkim="VERIFIED")  # not a DkimStatus


def test_configuration_sets_and_event_destinations(ses, client):
    with pytest.raises(client.exceptions.NotFoundException):
        client.get_configuration_set(ConfigurationSetName="news")
    with pytest.raises(client.exceptions.NotFoundException):
        client.get_configuration_set_event_destinations(ConfigurationSetName="news")

    ses.add_configuration_set("news", sending_enabled=False)
    answer = client.get_configuration_set(ConfigurationSetName="news")
    assert answer["ConfigurationSetName"] == "news" and answer["SendingOptions"] == {"SendingEnabled": False}
    assert client.get_configuration_set_event_destinations(ConfigurationSetName="news")["EventDestinations"] == []

    topic = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
    ses.add_event_destination("news", "to-sns", ["BOUNCE", "COMPLAINT"], sns_topic_arn=topic)
    ses.add_event_destination("news", "metrics", ["SEND", "DELIVERY"], enabled=False)
    first, second = client.get_configuration_set_event_destinations(ConfigurationSetName="news")["EventDestinations"]
    assert first == {"Name": "to-sns", "Enabled": True, "MatchingEventTypes": ["BOUNCE", "COMPLAINT"],
                     "SnsDestination": {"TopicArn": topic}}
    assert second["Name"] == "metrics" and second["Enabled"] is False and "SnsDestination" not in second
    assert "CloudWatchDestination" in second

    with pytest.raises(ValueError):
        ses.add_event_destination("news", "bad", ["BOUNCES"])
    ses.remove_configuration_set("news")
    with pytest.raises(client.exceptions.NotFoundException):
        client.get_configuration_set(ConfigurationSetName="news")


def test_template_create_update_delete(ses, client):
    content = {"Subject": "Papers for {{date}}", "Text": "t", "Html": "<p>h</p>"}
    client.create_email_template(TemplateName="daily", TemplateContent=content)
    assert ses.templates == {"daily": content}

    with pytest.raises(client.exceptions.AlreadyExistsException) as e:
        client.create_email_template(TemplateName="daily", TemplateContent=content)
    assert http_status(e) == 400

    client.update_email_template(TemplateName="daily", TemplateContent={"Subject": "New"})
    assert ses.templates == {"daily": {"Subject": "New"}}

    client.delete_email_template(TemplateName="daily")
    assert ses.templates == {}
    for call in (
        lambda: client.delete_email_template(TemplateName="daily"),
        lambda: client.update_email_template(TemplateName="daily", TemplateContent=content),
    ):
        with pytest.raises(client.exceptions.NotFoundException) as e:
            call()
        assert http_status(e) == 404
        assert "daily" in e.value.response["Error"]["Message"]


def test_template_names_in_the_path_are_decoded(ses, client):
    client.create_email_template(TemplateName="a b/c", TemplateContent={"Subject": "s"})
    client.update_email_template(TemplateName="a b/c", TemplateContent={"Subject": "t"})
    assert ses.templates == {"a b/c": {"Subject": "t"}}
    client.delete_email_template(TemplateName="a b/c")
    assert ses.templates == {}


# -- SendEmail (raw) -----------------------------------------------------------


def test_send_raw_parses_the_mime_message(ses, client):
    message = EmailMessage()
    message["From"] = FROM
    message["To"] = "Reader <reader@example.com>, other@example.com"
    message["Subject"] = "Papers du jour — ünïcode"
    message["List-Unsubscribe"] = "<https://example.com/u/1>"
    message.set_content("plain text")
    message.add_alternative("<p>html text</p>", subtype="html")
    data = message.as_bytes()

    response = client.send_email(Content={"Raw": {"Data": data}}, ConfigurationSetName="newsletter")
    [sent] = ses.sent
    assert sent.message_id == response["MessageId"]
    assert sent.operation == "SendEmail" and sent.content_kind == "Raw"
    assert sent.raw == data
    assert sent.from_address == "papers@example.com"
    assert sent.to == ["reader@example.com", "other@example.com"]
    assert sent.subject == "Papers du jour — ünïcode"
    assert sent.text.strip() == "plain text"
    assert sent.html.strip() == "<p>html text</p>"
    assert sent.header("list-unsubscribe") == "<https://example.com/u/1>"
    assert sent.header("Content-Type").startswith("multipart/alternative")
    assert sent.configuration_set == "newsletter"
    assert ses.requests[-1].n_recipients == 2

    # A Destination, when given, decides the recipients (as the newsletter sends).
    client.send_email(FromEmailAddress=FROM, Destination={"ToAddresses": ["Zoë <z@example.com>"]},
                      Content={"Raw": {"Data": data}})
    assert ses.sent[-1].to == ["Zoë <z@example.com>"] and ses.sent[-1].from_address == FROM


def test_send_raw_with_duplicate_header_is_rejected(ses, client):
    data = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: 1\r\nSubject: 2\r\n\r\nbody\r\n"
    with pytest.raises(client.exceptions.MessageRejected):
        client.send_email(Content={"Raw": {"Data": data}})
    assert ses.sent == []


def test_what_the_newsletter_does_not_send_is_not_implemented(ses, client):
    """Simple or Template content, Cc or Bcc, an inline bulk template, and
    the model's other operations: 501, and nothing accepted."""
    simple = {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "t"}}}}
    template = {"Template": {"TemplateName": "daily", "TemplateData": "{}"}}
    ses.add_template("daily", subject="s")
    calls = [
        lambda: client.send_email(FromEmailAddress=FROM, Destination={"ToAddresses": ["a@example.com"]},
                                  Content=simple),
        lambda: client.send_email(FromEmailAddress=FROM, Destination={"ToAddresses": ["a@example.com"]},
                                  Content=template),
        lambda: client.send_email(Destination={"ToAddresses": ["a@example.com"], "CcAddresses": ["c@example.com"]},
                                  Content={"Raw": {"Data": mime()}}),
        lambda: client.send_email(Content={"Raw": {"Data": mime(headers=[("Cc", "c@example.com")])}}),
        lambda: client.send_bulk_email(**{**bulk(["a@example.com"]), "DefaultContent": {
            "Template": {"TemplateContent": {"Subject": "s"}, "TemplateData": "{}"}}}),
        lambda: client.get_email_template(TemplateName="daily"),
        lambda: client.list_email_templates(),
    ]
    for call in calls:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert (error_code(e), http_status(e)) == ("NotImplemented", 501)
    assert ses.sent == []


# -- templates -----------------------------------------------------------------


def test_render_subset_of_handlebars():
    data = {"s": "<a href='x'>&</a>", "name": "Ada", "a.b": "flat"}
    # SES does not escape: every form inserts the value as it is.
    assert render("{{s}}", data) == "<a href='x'>&</a>"
    assert render("{{{s}}}|{{&s}}", data) == "<a href='x'>&</a>|<a href='x'>&</a>"
    assert render("{{ name }}/{{name.first}}/{{a.b}}/{{nope}}", data) == "Ada///"
    assert render("a{{! a comment }}b", data) == "ab"
    block = "{{#if t}}yes{{else}}no{{/if}} {{\\bf v}}"
    assert render(block, data) == block  # not understood: left verbatim
    assert render(None, data) is None


def test_a_template_with_blocks_is_rendered_as_handlebars_with_nested_data(ses, client):
    ses.add_template(
        "daily",
        subject="{{n}} papers",
        text="{{#each picks}}{{n}}. {{{t}}} ({{../who}})\n{{/each}}{{#if invite}}tell us{{/if}}",
        html="{{#each picks}}<b>{{t}}</b>{{/each}}{{#if invite}}<i>tell us</i>{{/if}}",
    )
    data = {"n": "2", "who": "Ada", "invite": False,
            "picks": [{"n": "1", "t": "<Erasure & Co>"}, {"n": "2", "t": "Plain"}]}
    client.send_bulk_email(**bulk(["a@example.com"], data=data))
    client.send_bulk_email(**bulk(["b@example.com"], data={"n": "0", "who": "Bo", "picks": [], "invite": True}))
    first, second = ses.sent
    assert first.subject == "2 papers"
    assert first.text == "1. <Erasure & Co> (Ada)\n2. Plain (Ada)\n"
    assert first.html == "<b><Erasure & Co></b><b>Plain</b>"  # not escaped, as SES documents
    assert (second.text, second.html) == ("tell us", "<i>tell us</i>")


# -- SendBulkEmail ------------------------------------------------------------


def test_bulk_substitutes_and_merges_headers(ses, client):
    ses.add_template(
        "daily",
        subject="{{title}} for {{name}}",
        text="Hi {{name}}: {{unsubscribe}}",
        html="<a href=\"{{unsubscribe}}\">{{name}}</a>",
    )
    request = bulk([], data={"title": "Papers", "name": "reader"})
    request["DefaultContent"]["Template"]["Headers"] = [
        {"Name": "List-Unsubscribe", "Value": "<https://example.com/u/default>"},
        {"Name": "X-Campaign", "Value": "daily"},
    ]
    request["BulkEmailEntries"] = [
        entry(
            "ada@example.com",
            {"name": "Ada", "unsubscribe": "https://example.com/u?t=1&x=2"},
            [("list-unsubscribe", "<https://example.com/u/1>")],
        ),
        entry("bob@example.com", {"unsubscribe": "https://example.com/u/2"}),  # default headers only
        entry("carol@example.com"),  # default data and headers only
    ]
    response = client.send_bulk_email(**request)
    results = response["BulkEmailEntryResults"]
    assert statuses(response) == ["SUCCESS", "SUCCESS", "SUCCESS"]
    ada, bob = ses.sent
    assert [ada.message_id, bob.message_id] == [r["MessageId"] for r in results[:2]]
    assert ada.operation == "SendBulkEmail" and ada.to == ["ada@example.com"]
    assert ada.subject == "Papers for Ada"
    assert ada.text == "Hi Ada: https://example.com/u?t=1&x=2"
    assert ada.html == '<a href="https://example.com/u?t=1&x=2">Ada</a>'
    assert ada.template_data == {
        "title": "Papers", "name": "Ada", "unsubscribe": "https://example.com/u?t=1&x=2"
    }
    assert ada.headers == [
        ("X-Campaign", "daily"),
        ("list-unsubscribe", "<https://example.com/u/1>"),
    ]
    assert bob.subject == "Papers for reader"
    assert bob.headers == [
        ("List-Unsubscribe", "<https://example.com/u/default>"),
        ("X-Campaign", "daily"),
    ]
    # Carol's data lacks "unsubscribe": accepted, then dropped with a
    # Rendering Failure, as SES does.
    (failure,) = ses.events
    assert failure["eventType"] == "Rendering Failure"
    assert failure["mail"]["destination"] == ["carol@example.com"]
    assert failure["mail"]["messageId"] == results[2]["MessageId"]
    assert failure["failure"] == {"templateName": "daily",
                                  "errorMessage": "Attribute 'unsubscribe' is not present in the rendering data."}
    # Templated bodies are rendered when read; records still compare and convert.
    assert dataclasses.asdict(ada)["html"] == ada.html
    assert ses.sent[0] == ada


def test_bulk_invalid_entry_data_is_invalid_parameter(ses, client):
    ses.add_template("daily", subject="S {{x}}", html="<i>{{x}}</i>")
    request = bulk(["a@example.com", "b@example.com"], data={"x": "d"})
    request["BulkEmailEntries"][1]["ReplacementEmailContent"] = {
        "ReplacementTemplate": {"ReplacementTemplateData": "[1, 2]"}
    }
    response = client.send_bulk_email(**request)
    assert statuses(response) == ["SUCCESS", "INVALID_PARAMETER"]
    assert [m.subject for m in ses.sent] == ["S d"]


def test_reject_addresses_per_entry_and_single(ses, client):
    ses.add_template("daily", subject="s", text="t")
    ses.reject_addresses({"Bounced@Example.com"})
    ses.reject_addresses(lambda a: a.endswith("@blocked.example"))
    response = client.send_bulk_email(
        **bulk(["ok@example.com", "Bob <bounced@example.com>", "x@blocked.example"])
    )
    results = response["BulkEmailEntryResults"]
    assert statuses(response) == ["SUCCESS", "MESSAGE_REJECTED", "MESSAGE_REJECTED"]
    assert "MessageId" not in results[1]
    assert "bounced@example.com" in results[1]["Error"] and "x@blocked.example" in results[2]["Error"]
    assert [m.to for m in ses.sent] == [["ok@example.com"]]

    with pytest.raises(client.exceptions.MessageRejected) as e:
        client.send_email(**raw(to="bounced@example.com"))
    assert http_status(e) == 400
    with pytest.raises(client.exceptions.MessageRejected):
        client.send_email(**raw(to="y@blocked.example"))

    ses.reject_addresses(None)
    client.send_email(**raw(to="bounced@example.com"))
    assert len(ses.sent) == 2


def test_bulk_with_more_than_50_entries_is_a_bad_request(ses, client):
    ses.add_template("daily", subject="s")
    addresses = [f"r{i}@example.com" for i in range(51)]
    with pytest.raises(client.exceptions.BadRequestException) as e:
        client.send_bulk_email(**bulk(addresses))
    assert "50" in e.value.response["Error"]["Message"]
    assert ses.sent == []
    response = client.send_bulk_email(**bulk(addresses[:50]))
    assert statuses(response) == ["SUCCESS"] * 50


def test_bulk_missing_template_is_template_not_found(ses, client):
    response = client.send_bulk_email(**bulk(["a@example.com", "b@example.com"], template="nope"))
    assert statuses(response) == ["TEMPLATE_NOT_FOUND"] * 2
    assert ses.sent == []


# -- rate and quota ----------------------------------------------------------


def test_throttling_per_entry_and_single():
    clock = Clock()
    with SesV2StandIn(max_send_rate=5, clock=clock) as ses:
        ses.add_template("daily", subject="s")
        client = ses.client()
        response = client.send_bulk_email(**bulk([f"r{i}@example.com" for i in range(12)]))
        assert statuses(response) == ["SUCCESS"] * 5 + ["ACCOUNT_THROTTLED"] * 7
        assert response["BulkEmailEntryResults"][5]["Error"] == "Maximum sending rate exceeded."
        assert len(ses.sent) == 5

        # Three recipients need three tokens: 0.6 s of refill at 5/s.
        clock.now += 0.5  # 2.5 tokens
        with pytest.raises(client.exceptions.TooManyRequestsException) as e:
            client.send_email(**raw(to=["a@example.com", "b@example.com", "c@example.com"]))
        assert error_code(e) == "TooManyRequestsException"
        assert http_status(e) == 429
        assert e.value.response["Error"]["Message"] == "Maximum sending rate exceeded."
        assert ses.throttled == 8
        assert ses.requests[-1].status == 429

        clock.now += 0.25  # 3.75 tokens
        client.send_email(**raw(to=["a@example.com", "b@example.com", "c@example.com"]))
        assert len(ses.sent) == 6
        with pytest.raises(client.exceptions.TooManyRequestsException):
            client.send_email(**raw())  # 0.75 tokens left


def test_throttling_whole_call_style():
    clock = Clock()
    with SesV2StandIn(max_send_rate=5, throttle_style="call", clock=clock) as ses:
        ses.add_template("daily", subject="s")
        client = ses.client()
        assert statuses(client.send_bulk_email(**bulk(["a@example.com"] * 4))) == ["SUCCESS"] * 4
        with pytest.raises(client.exceptions.TooManyRequestsException):
            client.send_bulk_email(**bulk(["b@example.com"] * 5))  # 1 token left of 5
        assert len(ses.sent) == 4
        assert ses.throttled == 1
        clock.now += 1.0  # the bucket is full again
        assert statuses(client.send_bulk_email(**bulk(["b@example.com"] * 5))) == ["SUCCESS"] * 5

    # A call bigger than the burst capacity goes through from a full bucket,
    # leaving it in debt, so the long-run rate still holds.
    clock = Clock()
    with SesV2StandIn(max_send_rate=5, throttle_style="call", clock=clock) as ses:
        ses.add_template("daily", subject="s")
        client = ses.client()
        assert statuses(client.send_bulk_email(**bulk(["a@example.com"] * 8))) == ["SUCCESS"] * 8
        clock.now += 0.5  # 2.5 tokens: still half a token in debt
        with pytest.raises(client.exceptions.TooManyRequestsException):
            client.send_email(**raw())
        clock.now += 0.5  # 2 tokens
        client.send_email(**raw())


def test_daily_quota():
    with SesV2StandIn(max_send_rate=INF, max_24_hour_send=3, sent_last_24_hours=1) as ses:
        ses.add_template("daily", subject="s")
        client = ses.client()
        response = client.send_bulk_email(**bulk([f"r{i}@example.com" for i in range(4)]))
        assert statuses(response) == ["SUCCESS"] * 2 + ["ACCOUNT_DAILY_QUOTA_EXCEEDED"] * 2
        with pytest.raises(client.exceptions.LimitExceededException) as e:
            client.send_email(**raw())
        assert http_status(e) == 400
        assert e.value.response["Error"]["Message"] == "Daily message quota exceeded."
        assert client.get_account()["SendQuota"]["SentLast24Hours"] == 3.0


# -- faults ------------------------------------------------------------------


def test_fail_next(ses, client):
    ses.fail_next(2)
    for _ in range(2):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            client.send_email(**raw())
        assert error_code(e) == "InternalFailure" and http_status(e) == 500
    client.send_email(**raw())
    assert len(ses.sent) == 1

    ses.fail_next(1, status=503, error_type="ServiceUnavailable", operation="SendBulkEmail")
    client.get_account()  # not the operation asked for
    client.send_email(**raw())
    ses.add_template("daily", subject="s")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.send_bulk_email(**bulk(["a@example.com"]))
    assert error_code(e) == "ServiceUnavailable" and http_status(e) == 503
    assert len(ses.sent) == 2


def test_hold_next_waits_for_release(ses, client):
    ses.add_template("daily", subject="s")
    ses.hold_next(1, operation="SendBulkEmail")
    client.get_account()  # not held: another operation
    held, outcome = in_thread(lambda: client.send_bulk_email(**bulk(["a@example.com"])))
    wait_until(lambda: ses.held == 1, "the request to be held")
    assert ses.busy == 1 and ses.sent == [] and held.is_alive()
    client.send_email(**raw())  # the next request is not held
    assert ses.held == 1 and len(ses.sent) == 1

    ses.release()
    held.join(timeout=30)
    assert statuses(outcome["result"]) == ["SUCCESS"]
    # The answer is written before the handler counts itself done: wait for it.
    wait_until(lambda: ses.busy == 0, "the stand-in to be idle")
    assert ses.held == 0
    assert [m.to for m in ses.sent] == [["reader@example.com"], ["a@example.com"]]


def test_a_held_request_whose_client_gave_up_is_still_accepted(ses):
    client = ses.client(config=botocore.config.Config(
        read_timeout=0.2, retries={"mode": "standard", "total_max_attempts": 1}
    ))
    ses.hold_next(1)
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        client.send_email(**raw())
    assert ses.held == 1 and ses.sent == []
    # Released, the request is handled: accepted, and the client never knew.
    ses.release()
    wait_until(lambda: ses.busy == 0, "the held request to be handled")
    assert len(ses.sent) == 1


def test_stop_lets_held_requests_go():
    ses = SesV2StandIn().start()
    client = ses.client()
    ses.hold_next(1)
    thread, _outcome = in_thread(client.get_account)
    wait_until(lambda: ses.held == 1, "the request to be held")
    ses.stop()
    thread.join(timeout=30)
    assert not thread.is_alive() and ses.held == 0


def test_drop_next_accepts_then_gives_no_answer(ses, client):
    ses.add_template("daily", subject="s")
    ses.drop_next(2)
    with pytest.raises(botocore.exceptions.BotoCoreError):
        client.send_email(**raw(to="a@example.com"))
    with pytest.raises(botocore.exceptions.BotoCoreError):
        client.send_bulk_email(**bulk(["b@example.com", "c@example.com"]))
    assert [m.to for m in ses.sent] == [["a@example.com"], ["b@example.com"], ["c@example.com"]]
    assert [r.status for r in ses.requests] == [0, 0]


def test_one_retry_hides_a_dropped_answer_and_sends_twice(ses):
    """``retries={"max_attempts": 1}`` (legacy mode) means one *retry*."""
    client = ses.client(config=botocore.config.Config(retries={"max_attempts": 1}))
    ses.drop_next(1)
    response = client.send_email(**raw())
    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    assert len(ses.sent) == 2  # the same message, accepted twice


def test_throttle_next(ses, client):
    ses.throttle_next(1, operation="SendEmail")
    with pytest.raises(client.exceptions.TooManyRequestsException) as e:
        client.send_email(**raw())
    assert http_status(e) == 429
    assert ses.throttled == 1
    client.send_email(**raw())
    assert len(ses.sent) == 1


@pytest.mark.parametrize("error_type", ["AccountSuspendedException", "SendingPausedException"])
def test_account_error(ses, client, error_type):
    ses.add_template("daily", subject="s")
    ses.account_error(error_type)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.send_email(**raw())
    assert error_code(e) == error_type and http_status(e) == 400
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.send_bulk_email(**bulk(["a@example.com"]))
    assert error_code(e) == error_type
    assert client.get_account()["SendingEnabled"] is False
    assert ses.sent == []
    ses.account_error(None)
    client.send_email(**raw())
    assert client.get_account()["SendingEnabled"] is True


def test_clear_faults(ses, client):
    ses.fail_next(3)
    ses.hold_next(3)
    ses.reject_addresses({"reader@example.com"})
    ses.account_error("SendingPausedException")
    ses.clear_faults()
    client.send_email(**raw())
    assert len(ses.sent) == 1 and ses.held == 0


# -- the wire: checks from the model, logging ---------------------------------


def test_requests_are_checked_against_the_model(ses):
    loose = ses.client(config=botocore.config.Config(
        parameter_validation=False, retries={"mode": "standard", "total_max_attempts": 1}
    ))
    with pytest.raises(loose.exceptions.BadRequestException) as e:
        loose.send_email(FromEmailAddress=FROM, Destination={"ToAddresses": ["a@example.com"]})
    assert "Content" in e.value.response["Error"]["Message"]

    with pytest.raises(loose.exceptions.BadRequestException) as e:
        loose.send_email(Content={"Raw": {}})  # no Data
    assert "Content.Raw" in e.value.response["Error"]["Message"]

    ses.add_template("daily", subject="s")
    request = bulk(["a@example.com"])
    request["DefaultContent"]["Template"]["Headers"] = [{"Name": "X:Bad", "Value": "v"}]  # pattern
    with pytest.raises(loose.exceptions.BadRequestException):
        loose.send_bulk_email(**request)
    assert ses.sent == []


def test_unknown_members_and_paths_over_raw_http(ses):
    def post(path, body, method="POST"):
        conn = http.client.HTTPConnection("127.0.0.1", ses.port, timeout=5)
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        out = response.status, response.getheader("x-amzn-ErrorType"), json.loads(response.read())
        conn.close()
        return out

    body = json.dumps({"Content": {"Raw": {"Data": "aGk="}}, "Bogus": 1})
    status, kind, payload = post("/v2/email/outbound-emails", body)
    assert (status, kind) == (400, "BadRequestException")
    assert "Bogus" in payload["message"]
    assert post("/v2/email/outbound-emails", "{not json")[:2] == (400, "BadRequestException")
    assert post("/v2/nowhere", "{}")[:2] == (404, "UnknownOperationException")
    # In the model, not implemented here:
    assert post("/v2/email/contact-lists/news", "", "GET")[:2] == (501, "NotImplemented")


def test_request_log_and_bytes(ses, client):
    ses.add_template("daily", subject="s")
    client.get_account()
    client.send_email(**raw(to=["a@example.com", "b@example.com"]))
    client.send_bulk_email(**bulk([f"r{i}@example.com" for i in range(3)]))
    log = ses.requests
    assert [(r.operation, r.n_recipients, r.status) for r in log] == [
        ("GetAccount", 0, 200),
        ("SendEmail", 2, 200),
        ("SendBulkEmail", 3, 200),
    ]
    assert log[0].body_bytes == 0 and log[1].body_bytes > 0 and log[2].body_bytes > 0
    assert ses.bytes_received == sum(r.body_bytes for r in log)


def test_count_by_recipient_and_reset(ses, client):
    client.send_email(**raw(to=["a@example.com", "b@example.com"]))
    client.send_email(**raw(to="a@example.com"))
    assert ses.count_by_recipient() == {"a@example.com": 2, "b@example.com": 1}
    ses.add_template("daily", subject="s")
    ses.fail_next(5)
    ses.reset()
    assert ses.sent == [] and ses.requests == [] and ses.bytes_received == 0
    assert ses.sent_last_24_hours == 0 and "daily" in ses.templates
    client.send_email(**raw())  # the queued faults went too
    ses.reset(templates=True)
    assert ses.templates == {}


def test_eight_threads_send_200_messages(ses, client):
    ses.set_quota(max_send_rate=INF)
    errors = []

    def work(worker):
        try:
            for i in range(25):
                client.send_email(**raw(to=f"w{worker}-{i}@example.com"))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    sent = ses.sent
    assert len(sent) == 200
    assert len({m.message_id for m in sent}) == 200
    assert all(n == 1 for n in ses.count_by_recipient().values())
    assert len(ses.requests) == 200


def test_stop_closes_the_server():
    ses = SesV2StandIn().start()
    client = ses.client()
    client.get_account()  # leaves a kept-alive connection in the pool
    ses.stop()
    with pytest.raises(botocore.exceptions.BotoCoreError):
        client.get_account()
    with pytest.raises(RuntimeError):
        ses.endpoint_url


def test_sent_message_is_a_dataclass():
    names = [f.name for f in dataclasses.fields(SentMessage)][:11]
    assert names == [
        "message_id", "operation", "from_address", "to", "subject", "text", "html",
        "headers", "raw", "configuration_set", "accepted_at",
    ]


@pytest.mark.parametrize("data, missing", [
    ({"who": "Ada", "invite": False, "picks": [{"t": "A", "u": "x"}]}, None),
    ({"who": "Ada", "picks": [{"t": "A", "u": "x"}]}, "invite"),  # a name used only in {{#if}}
    ({"who": "Ada", "invite": None, "picks": []}, "invite"),  # null is missing too
    ({"invite": False, "picks": [{"t": "A", "u": "x"}]}, "../who"),  # a parent path in {{#each}}
    ({"who": "Ada", "invite": False, "picks": [{"t": "A", "u": "x"}, {"t": "B"}]}, "u"),  # one item of {{#each}}
    ({"who": "Ada", "invite": True, "picks": [{"t": "A", "u": "x"}]}, None),
    ({"who": "Ada", "invite": False}, "picks"),
])
def test_a_name_missing_anywhere_fails_the_entry_with_a_rendering_failure(data, missing):
    events = []
    with SesV2StandIn(max_send_rate=1000, on_event=events.append) as ses:
        ses.add_template(
            "daily", subject="Papers",
            text="{{#each picks}}{{t}} {{u}} {{../who}}{{/each}}{{#if invite}}tell us{{else}}ok{{/if}}",
            html="<p>{{#each picks}}<a href=\"{{u}}\">{{{t}}}</a>{{/each}}</p>",
        )
        response = ses.client().send_bulk_email(**bulk(["a@example.com"], data=data))
        assert statuses(response) == ["SUCCESS"]  # accepted either way
        if missing is None:
            assert len(ses.sent) == 1 and ses.events == [] and events == []
        else:
            assert ses.sent == []
            assert events == ses.events and len(events) == 1
            assert events[0]["failure"]["errorMessage"] == f"Attribute '{missing}' is not present in the rendering data."


def test_an_arrays_item_is_read_by_its_segment_literal_and_one_past_the_end_is_missing(ses, client):
    ses.add_template("daily", subject="s", text="{{#if k.[0]}}zero{{/if}}{{#unless k.[1]}} not one{{/unless}}",
                     html="<p>{{#if k.[0]}}zero{{/if}}</p>")
    client.send_bulk_email(**bulk(["a@example.com", "b@example.com"], data={"k": [True, []]}))
    assert [message.text for message in ses.sent] == ["zero not one"] * 2
    with pytest.raises(client.exceptions.BadRequestException) as e:
        client.test_render_email_template(TemplateName="daily", TemplateData=json.dumps({"k": [True]}))
    assert "Attribute 'k.[1]' is not present" in str(e.value)


def test_nothing_is_escaped_in_blocks_either(ses, client):
    ses.add_template("daily", subject="s", text="{{#if x}}{{x}}{{/if}}", html="{{#if x}}<i>{{x}}</i>{{/if}}")
    client.send_bulk_email(**bulk(["a@example.com"], data={"x": "<b>&amp;</b>"}))
    (message,) = ses.sent
    assert (message.text, message.html) == ("<b>&amp;</b>", "<i><b>&amp;</b></i>")


def test_test_render_email_template_renders_or_fails_with_the_missing_name(client, ses):
    ses.add_template("daily", subject="For {{who}}", text="{{#if invite}}tell us{{/if}} {{who}}",
                     html="<p>{{who}}</p>")
    answer = client.test_render_email_template(TemplateName="daily", TemplateData=json.dumps({"who": "<Ada>",
                                                                                             "invite": True}))
    rendered = answer["RenderedTemplate"]
    assert "Subject: For <Ada>" in rendered and "<p><Ada></p>" in rendered and "tell us" in rendered
    with pytest.raises(client.exceptions.BadRequestException) as e:
        client.test_render_email_template(TemplateName="daily", TemplateData=json.dumps({"who": "Ada"}))
    assert e.value.response["Error"]["Message"] == "Attribute 'invite' is not present in the rendering data."
    with pytest.raises(client.exceptions.NotFoundException):
        client.test_render_email_template(TemplateName="nope", TemplateData="{}")
    assert ses.sent == [] and ses.events == []


def test_test_render_email_template_allows_one_call_a_second():
    clock = Clock()
    with SesV2StandIn(render_rate=1, clock=clock) as ses:
        ses.add_template("daily", subject="s", text="t")
        client = ses.client()
        client.test_render_email_template(TemplateName="daily", TemplateData="{}")
        clock.now += 0.5
        with pytest.raises(client.exceptions.TooManyRequestsException):
            client.test_render_email_template(TemplateName="daily", TemplateData="{}")
        clock.now += 1
        client.test_render_email_template(TemplateName="daily", TemplateData="{}")
