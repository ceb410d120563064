"""The SES v2 stand-in (tests/sesv2_standin.py), driven by real boto3 clients.

Everything runs against 127.0.0.1; nothing here talks to AWS.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import threading
import time
from email.message import EmailMessage

import botocore.config
import botocore.exceptions
import pytest

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


def simple(to="reader@example.com", subject="Hello", **extra):
    request = {
        "FromEmailAddress": FROM,
        "Destination": {"ToAddresses": [to] if isinstance(to, str) else list(to)},
        "Content": {
            "Simple": {
                "Subject": {"Data": subject},
                "Body": {"Text": {"Data": "text body"}, "Html": {"Data": "<p>html</p>"}},
            }
        },
    }
    request.update(extra)
    return request


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
        client.send_email(**simple(to=["a@example.com", "b@example.com"]))
        assert client.get_account()["SendQuota"]["SentLast24Hours"] == 9.0
        assert ses.endpoint_url.startswith("http://127.0.0.1:")


def test_template_create_get_update_list_delete(ses, client):
    content = {"Subject": "Papers for {{date}}", "Text": "t", "Html": "<p>h</p>"}
    client.create_email_template(TemplateName="daily", TemplateContent=content)
    got = client.get_email_template(TemplateName="daily")
    assert got["TemplateName"] == "daily"
    assert got["TemplateContent"] == content

    with pytest.raises(client.exceptions.AlreadyExistsException) as e:
        client.create_email_template(TemplateName="daily", TemplateContent=content)
    assert http_status(e) == 400

    client.update_email_template(TemplateName="daily", TemplateContent={"Subject": "New"})
    assert client.get_email_template(TemplateName="daily")["TemplateContent"] == {"Subject": "New"}

    client.create_email_template(TemplateName="weekly", TemplateContent={"Subject": "w"})
    page = client.list_email_templates(PageSize=1)
    assert [t["TemplateName"] for t in page["TemplatesMetadata"]] == ["daily"]
    rest = client.list_email_templates(PageSize=1, NextToken=page["NextToken"])
    assert [t["TemplateName"] for t in rest["TemplatesMetadata"]] == ["weekly"]
    assert "NextToken" not in rest

    client.delete_email_template(TemplateName="daily")
    assert set(ses.templates) == {"weekly"}
    for call in (
        lambda: client.get_email_template(TemplateName="daily"),
        lambda: client.delete_email_template(TemplateName="daily"),
        lambda: client.update_email_template(TemplateName="daily", TemplateContent=content),
    ):
        with pytest.raises(client.exceptions.NotFoundException) as e:
            call()
        assert http_status(e) == 404
        assert "daily" in e.value.response["Error"]["Message"]


def test_template_names_in_the_path_are_decoded(ses, client):
    client.create_email_template(TemplateName="a b/c", TemplateContent={"Subject": "s"})
    assert client.get_email_template(TemplateName="a b/c")["TemplateName"] == "a b/c"


# -- SendEmail ---------------------------------------------------------------


def test_send_simple_records_headers(ses, client):
    request = simple(
        to=["a@example.com"],
        ConfigurationSetName="newsletter",
        ReplyToAddresses=["editor@example.com"],
        EmailTags=[{"Name": "issue", "Value": "2025-03-11"}],
    )
    request["Destination"]["CcAddresses"] = ["c@example.com"]
    request["Content"]["Simple"]["Headers"] = [
        {"Name": "List-Unsubscribe", "Value": "<https://example.com/u/1>"},
        {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
    ]
    response = client.send_email(**request)
    [message] = ses.sent
    assert message.message_id == response["MessageId"]
    assert message.operation == "SendEmail"
    assert message.content_kind == "Simple"
    assert message.from_address == FROM
    assert message.to == ["a@example.com"]
    assert message.cc == ["c@example.com"]
    assert message.reply_to == ["editor@example.com"]
    assert (message.subject, message.text, message.html) == ("Hello", "text body", "<p>html</p>")
    assert message.headers == [
        ("List-Unsubscribe", "<https://example.com/u/1>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ]
    assert message.header("list-unsubscribe") == "<https://example.com/u/1>"
    assert message.configuration_set == "newsletter"
    assert message.tags == [("issue", "2025-03-11")]
    assert message.raw is None
    assert abs(message.accepted_at - time.time()) < 5


def test_send_simple_duplicate_unique_header_is_rejected(ses, client):
    request = simple()
    request["Content"]["Simple"]["Headers"] = [
        {"Name": "List-Unsubscribe", "Value": "<a>"},
        {"Name": "list-unsubscribe", "Value": "<b>"},
    ]
    with pytest.raises(client.exceptions.MessageRejected) as e:
        client.send_email(**request)
    assert "Duplicate header" in e.value.response["Error"]["Message"]
    assert ses.sent == []


def test_send_raw_parses_the_mime_message(ses, client):
    mime = EmailMessage()
    mime["From"] = FROM
    mime["To"] = "Reader <reader@example.com>, other@example.com"
    mime["Subject"] = "Papers du jour — ünïcode"
    mime["List-Unsubscribe"] = "<https://example.com/u/1>"
    mime.set_content("plain text")
    mime.add_alternative("<p>html text</p>", subtype="html")
    mime.add_attachment(b"%PDF", maintype="application", subtype="pdf", filename="p.pdf")
    data = mime.as_bytes()

    response = client.send_email(Content={"Raw": {"Data": data}})
    [message] = ses.sent
    assert message.message_id == response["MessageId"]
    assert message.content_kind == "Raw"
    assert message.raw == data
    assert message.from_address == "papers@example.com"
    assert message.to == ["reader@example.com", "other@example.com"]
    assert message.subject == "Papers du jour — ünïcode"
    assert message.text.strip() == "plain text"
    assert message.html.strip() == "<p>html text</p>"
    assert message.header("List-Unsubscribe") == "<https://example.com/u/1>"
    assert message.header("Content-Type").startswith("multipart/mixed")
    assert [a["FileName"] for a in message.attachments] == ["p.pdf"]
    assert ses.requests[-1].n_recipients == 2

    # A Destination, when given, decides the recipients.
    client.send_email(
        Destination={"BccAddresses": ["hidden@example.com"]}, Content={"Raw": {"Data": data}}
    )
    assert ses.sent[-1].to == [] and ses.sent[-1].bcc == ["hidden@example.com"]


def test_send_raw_with_duplicate_header_is_rejected(ses, client):
    data = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: 1\r\nSubject: 2\r\n\r\nbody\r\n"
    with pytest.raises(client.exceptions.MessageRejected):
        client.send_email(Content={"Raw": {"Data": data}})


def test_send_template_by_name_and_inline(ses, client):
    client.create_email_template(
        TemplateName="welcome",
        TemplateContent={
            "Subject": "Hi {{name}}",
            "Text": "Hello {{name}}, see {{link}}",
            "Html": "<p>Hello {{name}}</p><p>{{{badge}}}</p>",
        },
    )
    client.send_email(
        FromEmailAddress=FROM,
        Destination={"ToAddresses": ["r@example.com"]},
        Content={
            "Template": {
                "TemplateName": "welcome",
                "TemplateData": json.dumps({"name": "Ada & <Bob>", "badge": "<b>new</b>"}),
                "Headers": [{"Name": "X-Issue", "Value": "42"}],
            }
        },
    )
    message = ses.sent[-1]
    assert message.content_kind == "Template"
    assert message.template_name == "welcome"
    assert message.subject == "Hi Ada & <Bob>"
    assert message.text == "Hello Ada & <Bob>, see "
    assert message.html == "<p>Hello Ada &amp; &lt;Bob&gt;</p><p><b>new</b></p>"
    assert message.missing == ("link",)
    assert message.headers == [("X-Issue", "42")]

    client.send_email(
        FromEmailAddress=FROM,
        Destination={"ToAddresses": ["r@example.com"]},
        Content={
            "Template": {
                "TemplateContent": {"Subject": "Inline {{n}}", "Text": "n={{n}}"},
                "TemplateData": '{"n": 3}',
            }
        },
    )
    assert (ses.sent[-1].subject, ses.sent[-1].text, ses.sent[-1].html) == ("Inline 3", "n=3", None)

    with pytest.raises(client.exceptions.NotFoundException):
        client.send_email(
            FromEmailAddress=FROM,
            Destination={"ToAddresses": ["r@example.com"]},
            Content={"Template": {"TemplateName": "nope", "TemplateData": "{}"}},
        )
    with pytest.raises(client.exceptions.BadRequestException):
        client.send_email(
            FromEmailAddress=FROM,
            Destination={"ToAddresses": ["r@example.com"]},
            Content={"Template": {"TemplateName": "welcome", "TemplateData": "not json"}},
        )
    assert len(ses.sent) == 2


def test_render_subset_of_handlebars():
    data = {
        "s": "<a href='x'>&</a>",
        "n": 2.0,
        "f": 1.5,
        "t": True,
        "z": None,
        "xs": [1, "b"],
        "o": {"k": "v"},
        "user": {"name": "Ada", "tags": ["x", "y"]},
    }
    assert render("{{s}}", data, html=True) == "&lt;a href&#x3D;&#x27;x&#x27;&gt;&amp;&lt;/a&gt;"
    assert render("{{s}}", data) == "<a href='x'>&</a>"
    assert render("{{{s}}}|{{&s}}", data, html=True) == "<a href='x'>&</a>|<a href='x'>&</a>"
    assert render("{{n}} {{f}} {{t}} [{{z}}] {{xs}} {{o}}", data) == "2 1.5 true [] 1,b [object Object]"
    assert render("{{ user.name }}/{{user.tags.1}}/{{user.nope}}", data) == "Ada/y/"
    assert render("a{{! a comment }}b", data) == "ab"
    block = "{{#if t}}yes{{else}}no{{/if}}"
    assert render(block, data) == block  # not implemented: left verbatim
    assert render(None, data) is None


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
        entry("bob@example.com"),  # default data and headers only
    ]
    response = client.send_bulk_email(**request)
    results = response["BulkEmailEntryResults"]
    assert statuses(response) == ["SUCCESS", "SUCCESS"]
    ada, bob = ses.sent
    assert [ada.message_id, bob.message_id] == [r["MessageId"] for r in results]
    assert ada.operation == "SendBulkEmail" and ada.to == ["ada@example.com"]
    assert ada.subject == "Papers for Ada"
    assert ada.text == "Hi Ada: https://example.com/u?t=1&x=2"
    assert ada.html == '<a href="https://example.com/u?t&#x3D;1&amp;x&#x3D;2">Ada</a>'
    assert ada.template_data == {
        "title": "Papers", "name": "Ada", "unsubscribe": "https://example.com/u?t=1&x=2"
    }
    assert ada.missing == ()
    assert ada.headers == [
        ("X-Campaign", "daily"),
        ("list-unsubscribe", "<https://example.com/u/1>"),
    ]
    assert bob.subject == "Papers for reader"
    assert bob.missing == ("unsubscribe",)
    assert bob.headers == [
        ("List-Unsubscribe", "<https://example.com/u/default>"),
        ("X-Campaign", "daily"),
    ]
    # Templated bodies are rendered when read; records still compare and convert.
    assert dataclasses.asdict(ada)["html"] == ada.html
    assert ses.sent[0] == ada


def test_bulk_inline_template_and_invalid_entry_data(ses, client):
    request = bulk(["a@example.com", "b@example.com"])
    request["DefaultContent"]["Template"] = {
        "TemplateContent": {"Subject": "S {{x}}", "Html": "<i>{{x}}</i>"},
        "TemplateData": '{"x": "d"}',
    }
    request["BulkEmailEntries"][1]["ReplacementEmailContent"] = {
        "ReplacementTemplate": {"ReplacementTemplateData": "[1, 2]"}
    }
    response = client.send_bulk_email(**request)
    assert statuses(response) == ["SUCCESS", "INVALID_PARAMETER"]
    assert [m.subject for m in ses.sent] == ["S d"]


def test_bulk_reject_addresses_gives_per_entry_statuses(ses, client):
    ses.add_template("daily", subject="s", text="t")
    ses.reject_addresses({"Bounced@Example.com"})
    ses.reject_addresses(
        lambda a: a.endswith("@blocked.example"),
        status="MAIL_FROM_DOMAIN_NOT_VERIFIED",
        error="Domain not verified: {address}",
    )
    response = client.send_bulk_email(
        **bulk(["ok@example.com", "Bob <bounced@example.com>", "x@blocked.example"])
    )
    results = response["BulkEmailEntryResults"]
    assert statuses(response) == ["SUCCESS", "MESSAGE_REJECTED", "MAIL_FROM_DOMAIN_NOT_VERIFIED"]
    assert "MessageId" not in results[1]
    assert "bounced@example.com" in results[1]["Error"]
    assert results[2]["Error"] == "Domain not verified: x@blocked.example"
    assert [m.to for m in ses.sent] == [["ok@example.com"]]

    with pytest.raises(client.exceptions.MessageRejected) as e:
        client.send_email(**simple(to="bounced@example.com"))
    assert http_status(e) == 400
    with pytest.raises(client.exceptions.MailFromDomainNotVerifiedException):
        client.send_email(**simple(to="y@blocked.example"))

    ses.reject_addresses(None)
    client.send_email(**simple(to="bounced@example.com"))
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
    with SesV2StandIn(max_send_rate=5) as ses:
        ses.add_template("daily", subject="s")
        client = ses.client()
        response = client.send_bulk_email(**bulk([f"r{i}@example.com" for i in range(12)]))
        assert statuses(response) == ["SUCCESS"] * 5 + ["ACCOUNT_THROTTLED"] * 7
        assert response["BulkEmailEntryResults"][5]["Error"] == "Maximum sending rate exceeded."
        assert len(ses.sent) == 5

        # Three recipients need three tokens: 0.6 s of refill at 5/s.
        with pytest.raises(client.exceptions.TooManyRequestsException) as e:
            client.send_email(**simple(to=["a@example.com", "b@example.com", "c@example.com"]))
        assert error_code(e) == "TooManyRequestsException"
        assert http_status(e) == 429
        assert e.value.response["Error"]["Message"] == "Maximum sending rate exceeded."
        assert ses.throttled == 8
        assert ses.requests[-1].status == 429

        time.sleep(0.25)  # 5 tokens/s: one recipient's worth is back
        client.send_email(**simple())
        assert len(ses.sent) == 6


def test_throttling_whole_call_style():
    with SesV2StandIn(max_send_rate=5, throttle_style="call") as ses:
        ses.add_template("daily", subject="s")
        client = ses.client()
        assert statuses(client.send_bulk_email(**bulk(["a@example.com"] * 4))) == ["SUCCESS"] * 4
        with pytest.raises(client.exceptions.TooManyRequestsException):
            client.send_bulk_email(**bulk(["b@example.com"] * 5))  # 1 token left of 5
        assert len(ses.sent) == 4
        assert ses.throttled == 1

    # A call bigger than the burst capacity goes through from a full bucket,
    # leaving it in debt, so the long-run rate still holds.
    with SesV2StandIn(max_send_rate=5, throttle_style="call") as ses:
        ses.add_template("daily", subject="s")
        client = ses.client()
        assert statuses(client.send_bulk_email(**bulk(["a@example.com"] * 8))) == ["SUCCESS"] * 8
        with pytest.raises(client.exceptions.TooManyRequestsException):
            client.send_email(**simple())


def test_daily_quota():
    with SesV2StandIn(max_send_rate=INF, max_24_hour_send=3, sent_last_24_hours=1) as ses:
        ses.add_template("daily", subject="s")
        client = ses.client()
        response = client.send_bulk_email(**bulk([f"r{i}@example.com" for i in range(4)]))
        assert statuses(response) == ["SUCCESS"] * 2 + ["ACCOUNT_DAILY_QUOTA_EXCEEDED"] * 2
        with pytest.raises(client.exceptions.LimitExceededException) as e:
            client.send_email(**simple())
        assert http_status(e) == 400
        assert e.value.response["Error"]["Message"] == "Daily message quota exceeded."
        assert client.get_account()["SendQuota"]["SentLast24Hours"] == 3.0


# -- faults ------------------------------------------------------------------


def test_fail_next(ses, client):
    ses.fail_next(2)
    for _ in range(2):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            client.send_email(**simple())
        assert error_code(e) == "InternalFailure" and http_status(e) == 500
    client.send_email(**simple())
    assert len(ses.sent) == 1

    ses.fail_next(1, status=503, error_type="ServiceUnavailable", operation="SendBulkEmail")
    client.get_account()  # not the operation asked for
    client.send_email(**simple())
    ses.add_template("daily", subject="s")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.send_bulk_email(**bulk(["a@example.com"]))
    assert error_code(e) == "ServiceUnavailable" and http_status(e) == 503
    assert len(ses.sent) == 2


def test_slow_next(ses, client):
    ses.slow_next(1, 0.3, operation="GetAccount")
    started = time.monotonic()
    client.get_account()
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    client.get_account()
    assert time.monotonic() - started < 0.3


def test_slow_next_beyond_the_read_timeout(ses):
    client = ses.client(config=botocore.config.Config(
        read_timeout=0.2, retries={"mode": "standard", "total_max_attempts": 1}
    ))
    ses.slow_next(1, 0.5)
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        client.send_email(**simple())
    # The slow request still finishes on the server: it is accepted.
    deadline = time.monotonic() + 5
    while not ses.sent and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(ses.sent) == 1


def test_drop_next_before_accept(ses, client):
    ses.drop_next(1)
    with pytest.raises(botocore.exceptions.BotoCoreError):
        client.send_email(**simple())
    assert ses.sent == []
    assert ses.requests[-1].status == 0
    client.send_email(**simple())
    assert len(ses.sent) == 1


def test_drop_next_after_accept_records_the_message(ses, client):
    ses.add_template("daily", subject="s")
    ses.drop_next(2, after_accept=True)
    with pytest.raises(botocore.exceptions.BotoCoreError):
        client.send_email(**simple(to="a@example.com"))
    with pytest.raises(botocore.exceptions.BotoCoreError):
        client.send_bulk_email(**bulk(["b@example.com", "c@example.com"]))
    assert [m.to for m in ses.sent] == [["a@example.com"], ["b@example.com"], ["c@example.com"]]
    assert [r.status for r in ses.requests] == [0, 0]


def test_one_retry_hides_a_dropped_answer_and_sends_twice(ses):
    """``retries={"max_attempts": 1}`` (legacy mode) means one *retry*."""
    client = ses.client(config=botocore.config.Config(retries={"max_attempts": 1}))
    ses.drop_next(1, after_accept=True)
    response = client.send_email(**simple())
    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    assert len(ses.sent) == 2  # the same message, accepted twice


def test_throttle_next(ses, client):
    ses.throttle_next(1, operation="SendEmail")
    with pytest.raises(client.exceptions.TooManyRequestsException) as e:
        client.send_email(**simple())
    assert http_status(e) == 429
    assert ses.throttled == 1
    client.send_email(**simple())
    assert len(ses.sent) == 1


@pytest.mark.parametrize("error_type", ["AccountSuspendedException", "SendingPausedException"])
def test_account_error(ses, client, error_type):
    ses.add_template("daily", subject="s")
    ses.account_error(error_type)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.send_email(**simple())
    assert error_code(e) == error_type and http_status(e) == 400
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.send_bulk_email(**bulk(["a@example.com"]))
    assert error_code(e) == error_type
    assert client.get_account()["SendingEnabled"] is False
    assert ses.sent == []
    ses.account_error(None)
    client.send_email(**simple())
    assert client.get_account()["SendingEnabled"] is True


# -- the wire: checks from the model, logging ---------------------------------


def test_requests_are_checked_against_the_model(ses):
    loose = ses.client(config=botocore.config.Config(
        parameter_validation=False, retries={"mode": "standard", "total_max_attempts": 1}
    ))
    with pytest.raises(loose.exceptions.BadRequestException) as e:
        loose.send_email(FromEmailAddress=FROM, Destination={"ToAddresses": ["a@example.com"]})
    assert "Content" in e.value.response["Error"]["Message"]

    request = simple()
    request["Content"]["Simple"]["Subject"] = {"Charset": "UTF-8"}  # no Data
    with pytest.raises(loose.exceptions.BadRequestException) as e:
        loose.send_email(**request)
    assert "Content.Simple.Subject" in e.value.response["Error"]["Message"]

    request = simple()
    request["Content"]["Simple"]["Headers"] = [{"Name": "X:Bad", "Value": "v"}]  # pattern
    with pytest.raises(loose.exceptions.BadRequestException):
        loose.send_email(**request)
    assert ses.sent == []


def test_unknown_members_and_paths_over_raw_http(ses):
    def post(path, body, method="POST"):
        conn = http.client.HTTPConnection("127.0.0.1", ses.port, timeout=5)
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        out = response.status, response.getheader("x-amzn-ErrorType"), json.loads(response.read())
        conn.close()
        return out

    body = json.dumps({**simple(), "Bogus": 1})
    status, kind, payload = post("/v2/email/outbound-emails", body)
    assert (status, kind) == (400, "BadRequestException")
    assert "Bogus" in payload["message"]
    assert post("/v2/email/outbound-emails", "{not json")[:2] == (400, "BadRequestException")
    assert post("/v2/nowhere", "{}")[:2] == (404, "UnknownOperationException")
    # In the model, not implemented here:
    assert post("/v2/email/configuration-sets/news", "", "GET")[:2] == (501, "NotImplemented")


def test_request_log_and_bytes(ses, client):
    ses.add_template("daily", subject="s")
    client.get_account()
    client.send_email(**simple(to=["a@example.com", "b@example.com"]))
    client.send_bulk_email(**bulk([f"r{i}@example.com" for i in range(3)]))
    log = ses.requests
    assert [(r.operation, r.n_recipients, r.status) for r in log] == [
        ("GetAccount", 0, 200),
        ("SendEmail", 2, 200),
        ("SendBulkEmail", 3, 200),
    ]
    assert log[0].body_bytes == 0 and log[2].body_bytes > log[1].body_bytes > 0
    assert ses.bytes_received == sum(r.body_bytes for r in log)


def test_count_by_recipient_and_reset(ses, client):
    client.send_email(**simple(to=["a@example.com", "b@example.com"]))
    client.send_email(**simple(to="a@example.com"))
    assert ses.count_by_recipient() == {"a@example.com": 2, "b@example.com": 1}
    ses.add_template("daily", subject="s")
    ses.fail_next(5)
    ses.reset()
    assert ses.sent == [] and ses.requests == [] and ses.bytes_received == 0
    assert ses.sent_last_24_hours == 0 and "daily" in ses.templates
    client.send_email(**simple())  # the queued faults went too
    ses.reset(templates=True)
    assert ses.templates == {}


def test_eight_threads_send_200_messages(ses, client):
    ses.set_quota(max_send_rate=INF)
    errors = []

    def work(worker):
        try:
            for i in range(25):
                client.send_email(**simple(to=f"w{worker}-{i}@example.com"))
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
