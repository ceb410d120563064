"""SNS message verification (``newsletter.feedback.sns``) and the two ways SES feedback
reaches the newsletter: ``POST /sns`` on the web app and an SQS queue read by
``newsletter bounces poll``.

Nothing here contacts AWS or any host but 127.0.0.1. The tests make their own
RSA keys and self-signed certificates, sign SNS envelopes themselves exactly
as SNS documents it (the canonical string is rebuilt here, independently of
``newsletter.feedback.sns.canonical_string``), and serve the certificate, plus a
stand-in ``SubscribeURL``, from a real HTTP server on 127.0.0.1 (the redirect
tests start a second one that only redirects to it). The verifier under test
trusts that host only because the tests pass ``cert_host`` and
``cert_scheme="http"``; the production host rules are tested on their own with
an injected ``download`` that fails the test if a refused URL is fetched. SQS
is moto's server, spoken to over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import boto3
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

import newsletter.feedback.sns
from conftest import FIXTURES, free_port
from newsletter.cli import cli
from newsletter.core.errors import SnsError, SnsMalformed
from newsletter.feedback.sns import AWS_SNS_HOST, SnsVerifier, canonical_string
from newsletter.feedback.sqs import poll
from newsletter.core.models import Feedback, SubscriberStatus
from newsletter.store.schema import events_table, feedback_table, sns_seen_table

ACTIVE = SubscriberStatus.ACTIVE
BOUNCED = SubscriberStatus.BOUNCED
COMPLAINED = SubscriberStatus.COMPLAINED

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
SECOND_TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"  # also configured
FOREIGN_TOPIC = "arn:aws:sns:us-east-1:999999999999:someone-elses-topic"  # not configured
LOOPBACK = re.compile(r"^127\.0\.0\.1$")
CERT_PATH = "/SimpleNotificationService-0123456789abcdef.pem"
OTHER_CERT_PATH = "/SimpleNotificationService-other.pem"
CONFIRM_PATH = "/confirm"
PRODUCTION_CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem"
SES = FIXTURES / "ses"
SNS = FIXTURES / "sns"
READERS = ("jane@example.com", "mary@example.com", "richard@example.com", "recipient@example.com")


# --------------------------------------------------------------------------
# keys, certificates and a local HTTP server


@dataclasses.dataclass(frozen=True)
class Pki:
    key: rsa.RSAPrivateKey
    cert_pem: bytes
    other_key: rsa.RSAPrivateKey  # a stranger's key, with its own certificate
    other_cert_pem: bytes


def _self_signed(common_name: str) -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def pki() -> Pki:
    key, pem = _self_signed("sns.test.invalid")
    other_key, other_pem = _self_signed("stranger.test.invalid")
    return Pki(key, pem, other_key, other_pem)


class LocalServer:
    """A real HTTP server on 127.0.0.1 serving fixed bodies, or answering
    with a redirect (``redirects``: path -> (status, Location)); it records
    the path (with query) of every request, so tests can count fetches."""

    def __init__(self, routes: dict[str, bytes], redirects: dict[str, tuple[int, str]] | None = None):
        self.routes = routes
        self.redirects = redirects or {}
        self.requests: list[str] = []
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the http.server API)
                with lock:
                    outer.requests.append(self.path)
                redirect = outer.redirects.get(urlsplit(self.path).path)
                if redirect is not None:
                    self.send_response(redirect[0])
                    self.send_header("Location", redirect[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = outer.routes.get(urlsplit(self.path).path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *_args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def hits(self, path: str) -> int:
        return sum(1 for p in self.requests if urlsplit(p).path == path)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def _server(pki):
    server = LocalServer({
        CERT_PATH: pki.cert_pem,
        OTHER_CERT_PATH: pki.other_cert_pem,
        CONFIRM_PATH: b"<ConfirmSubscriptionResponse/>",
    })
    yield server
    server.close()


@pytest.fixture
def server(_server, monkeypatch):
    """The local server, with its request log emptied for this test."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    _server.requests.clear()
    return _server


@pytest.fixture
def cert_url(server) -> str:
    return server.base + CERT_PATH


@pytest.fixture
def relay(server):
    """Return a function starting another real server on 127.0.0.1 (another
    port: another origin) that answers the certificate and confirmation
    paths with a redirect of the given status to ``server``, where a valid
    certificate and the confirmation are."""
    started: list[LocalServer] = []

    def start(status: int) -> LocalServer:
        started.append(LocalServer({}, redirects={
            path: (status, server.base + path) for path in (CERT_PATH, CONFIRM_PATH)
        }))
        return started[-1]

    yield start
    for one in started:
        one.close()


@pytest.fixture
def verifier(server) -> SnsVerifier:
    """A verifier with the production code path (real urllib download,
    cache, checks), except that it trusts certificates on http://127.0.0.1."""
    return SnsVerifier((TOPIC, SECOND_TOPIC), cert_host=LOOPBACK, cert_scheme="http")


# --------------------------------------------------------------------------
# building and signing SNS envelopes


def sns_time(moment: dt.datetime) -> str:
    """SNS's timestamp format: 2012-05-02T00:54:06.655Z."""
    moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def expected_canonical(envelope: dict) -> bytes:
    """The string SNS signs, as its documentation describes it."""
    if envelope["Type"] == "Notification":
        names = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
    else:
        names = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    return "".join(f"{name}\n{envelope[name]}\n" for name in names if name in envelope).encode("utf-8")


def sign(envelope: dict, key: rsa.RSAPrivateKey, version: str = "2") -> dict:
    """``envelope`` with SignatureVersion and Signature set (1: SHA1, 2: SHA256)."""
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(expected_canonical(envelope), padding.PKCS1v15(), digest)
    return {**envelope, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode("ascii")}


TEMPLATES = {
    "Notification": "notification.json",
    "SubscriptionConfirmation": "subscription-confirmation.json",
    "UnsubscribeConfirmation": "unsubscribe-confirmation.json",
}


def unsigned(kind: str = "Notification", *, cert_url: str, message: str | None = None, topic: str = TOPIC,
             at: dt.datetime | None = None, message_id: str | None = None, subscribe_url: str | None = None,
             subject: str | None = None) -> dict:
    """An envelope shaped like the documented example of ``kind``
    (tests/fixtures/sns/), with fresh values and no signature."""
    envelope = json.loads((SNS / TEMPLATES[kind]).read_text(encoding="utf-8"))
    del envelope["Signature"], envelope["SignatureVersion"]
    envelope.update(
        TopicArn=topic,
        MessageId=message_id or str(uuid.uuid4()),
        Timestamp=sns_time(at or utcnow()),
        SigningCertURL=cert_url,
    )
    if message is not None:
        envelope["Message"] = message
    if kind == "Notification":
        envelope.pop("Subject")  # SES publishes without one
        if subject is not None:
            envelope["Subject"] = subject
    elif subscribe_url is not None:
        envelope["SubscribeURL"] = subscribe_url
    return envelope


def ses(name: str) -> dict:
    """A sample SES notification from tests/fixtures/ses/."""
    return json.loads((SES / name).read_text(encoding="utf-8"))


def notification(pki: Pki, cert_url: str, payload: dict | str, version: str = "2", **options) -> dict:
    """A signed SNS Notification carrying ``payload`` (an SES notification)."""
    message = payload if isinstance(payload, str) else json.dumps(payload)
    return sign(unsigned("Notification", cert_url=cert_url, message=message, **options), pki.key, version)


def count(store, table) -> int:
    with store.reader.connect() as conn:
        return conn.scalar(select(func.count()).select_from(table))


# --------------------------------------------------------------------------
# canonical_string


def test_canonical_string_of_the_documented_notification():
    envelope = json.loads((SNS / "notification.json").read_text(encoding="utf-8"))
    assert canonical_string(envelope) == (
        b"Message\nHello world!\n"
        b"MessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n"
        b"Subject\nMy First Message\n"
        b"Timestamp\n2012-05-02T00:54:06.655Z\n"
        b"TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\n"
        b"Type\nNotification\n"
    )


def test_canonical_string_of_a_notification_without_subject_leaves_it_out():
    envelope = json.loads((SNS / "notification.json").read_text(encoding="utf-8"))
    del envelope["Subject"]
    assert b"Subject" not in canonical_string(envelope)
    assert canonical_string({**envelope, "Subject": None}) == canonical_string(envelope)
    assert canonical_string(envelope) == expected_canonical(envelope)
    assert canonical_string(envelope).startswith(b"Message\nHello world!\nMessageId\n")


@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_canonical_string_of_confirmations(kind):
    envelope = json.loads((SNS / TEMPLATES[kind]).read_text(encoding="utf-8"))
    text = canonical_string(envelope).decode()
    assert text == (
        f"Message\n{envelope['Message']}\n"
        f"MessageId\n{envelope['MessageId']}\n"
        f"SubscribeURL\n{envelope['SubscribeURL']}\n"
        f"Timestamp\n{envelope['Timestamp']}\n"
        f"Token\n{envelope['Token']}\n"
        f"TopicArn\n{envelope['TopicArn']}\n"
        f"Type\n{kind}\n"
    )
    # The signature and the certificate URL are not signed.
    assert "Signature" not in text and "SigningCertURL" not in text


def test_canonical_string_refuses_an_unknown_type():
    with pytest.raises(SnsMalformed):
        canonical_string({"Type": "Something", "Message": "x"})
    with pytest.raises(SnsMalformed):
        canonical_string({"Message": "x"})
    with pytest.raises(SnsMalformed):
        canonical_string({"Type": ["Notification"], "Message": "x"})


# --------------------------------------------------------------------------
# verification


@pytest.mark.parametrize("version", ["1", "2"])
def test_valid_signatures_are_accepted(pki, cert_url, verifier, version):
    verifier.verify(notification(pki, cert_url, ses("notification-bounce.json"), version))
    verifier.verify(notification(pki, cert_url, ses("event-bounce.json"), version, subject="Amazon SES Email Event"))
    verifier.verify(notification(pki, cert_url, "{}", version, topic=SECOND_TOPIC))


@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_valid_confirmations_are_accepted(pki, cert_url, verifier, kind):
    verifier.verify(sign(unsigned(kind, cert_url=cert_url), pki.key, "1"))


@pytest.mark.parametrize("field, value", [
    ("Message", json.dumps(ses("notification-complaint.json"))),
    ("MessageId", "00000000-0000-0000-0000-000000000000"),
    ("Timestamp", None),  # one second later: still fresh, but not what was signed
    ("TopicArn", SECOND_TOPIC),  # also configured: only the signature can tell
    ("Type", "SubscriptionConfirmation"),
    ("Subject", "added after signing"),
])
@pytest.mark.parametrize("version", ["1", "2"])
def test_a_tampered_field_is_refused(pki, cert_url, verifier, field, value, version):
    envelope = notification(pki, cert_url, ses("notification-bounce.json"), version)
    verifier.verify(envelope)  # as signed: fine
    if value is None:
        signed_at = dt.datetime.fromisoformat(envelope["Timestamp"].replace("Z", "+00:00"))
        value = sns_time(signed_at + dt.timedelta(seconds=1))
    with pytest.raises(SnsError):
        verifier.verify({**envelope, field: value})


def test_a_signature_made_with_another_key_is_refused(pki, cert_url, verifier):
    envelope = sign(unsigned(cert_url=cert_url, message="{}"), pki.other_key)
    with pytest.raises(SnsError, match="signature does not match"):
        verifier.verify(envelope)


def test_a_signature_of_another_message_is_refused(pki, cert_url, verifier):
    genuine = notification(pki, cert_url, ses("notification-delivery.json"))
    forged = notification(pki, cert_url, ses("notification-bounce.json"))
    with pytest.raises(SnsError):
        verifier.verify({**forged, "Signature": genuine["Signature"]})


@pytest.mark.parametrize("signature", [None, "", "not base64 at all!", "AAAA", base64.b64encode(b"x" * 256).decode()])
def test_a_missing_or_garbage_signature_is_refused(pki, cert_url, verifier, signature):
    envelope = notification(pki, cert_url, ses("notification-bounce.json"))
    if signature is None:
        del envelope["Signature"]
    else:
        envelope["Signature"] = signature
    with pytest.raises(SnsError):
        verifier.verify(envelope)


@pytest.mark.parametrize("version", ["3", "", "01", None, 2.0])
def test_an_unsupported_signature_version_is_refused(pki, cert_url, verifier, version):
    envelope = notification(pki, cert_url, ses("notification-bounce.json"), "2")
    if version is None:
        del envelope["SignatureVersion"]
    else:
        envelope["SignatureVersion"] = version
    with pytest.raises(SnsError):
        verifier.verify(envelope)


def test_a_version_1_signature_claimed_as_version_2_is_refused(pki, cert_url, verifier):
    envelope = notification(pki, cert_url, ses("notification-bounce.json"), "1")
    with pytest.raises(SnsError):
        verifier.verify({**envelope, "SignatureVersion": "2"})


def test_a_foreign_topic_is_refused_before_any_download(pki, cert_url, server, verifier):
    envelope = notification(pki, cert_url, ses("notification-bounce.json"), topic=FOREIGN_TOPIC)
    with pytest.raises(SnsError, match="not configured"):
        verifier.verify(envelope)
    assert server.requests == []


def test_an_empty_topic_list_refuses_everything(pki, cert_url, server):
    verifier = SnsVerifier((), cert_host=LOOPBACK, cert_scheme="http")
    with pytest.raises(SnsError, match="NEWSLETTER_SNS_TOPIC_ARNS"):
        verifier.verify(notification(pki, cert_url, ses("notification-bounce.json")))
    assert server.requests == []


def test_an_old_message_is_refused_as_a_replay(pki, cert_url):
    signed_at = dt.datetime(2025, 3, 10, 8, 0, tzinfo=dt.timezone.utc)
    envelope = notification(pki, cert_url, ses("notification-bounce.json"), at=signed_at)

    def verifier_at(moment):
        return SnsVerifier((TOPIC,), max_age=dt.timedelta(hours=1), cert_host=LOOPBACK, cert_scheme="http",
                           clock=lambda: moment)

    verifier_at(signed_at + dt.timedelta(minutes=59)).verify(envelope)
    with pytest.raises(SnsError, match="older than"):
        verifier_at(signed_at + dt.timedelta(minutes=61)).verify(envelope)
    with pytest.raises(SnsError, match="older than"):
        verifier_at(signed_at + dt.timedelta(days=30)).verify(envelope)


def test_a_message_with_a_replayed_timestamp_under_the_real_clock_is_refused(pki, cert_url, verifier):
    envelope = notification(pki, cert_url, ses("notification-bounce.json"), at=utcnow() - dt.timedelta(hours=2))
    with pytest.raises(SnsError, match="older than"):
        verifier.verify(envelope)


def test_a_message_dated_ahead_is_accepted_only_within_the_clock_skew(pki, cert_url):
    signed_at = dt.datetime(2025, 3, 10, 8, 0, tzinfo=dt.timezone.utc)
    envelope = notification(pki, cert_url, ses("notification-bounce.json"), at=signed_at)

    def verifier_at(moment):
        return SnsVerifier((TOPIC,), max_age=dt.timedelta(days=14), cert_host=LOOPBACK, cert_scheme="http",
                           clock=lambda: moment)

    assert newsletter.feedback.sns.CLOCK_SKEW == dt.timedelta(minutes=5)
    verifier_at(signed_at - dt.timedelta(minutes=4, seconds=59)).verify(envelope)
    for ahead in (dt.timedelta(minutes=5, seconds=1), dt.timedelta(days=1), dt.timedelta(days=365)):
        with pytest.raises(SnsError, match="ahead") as refused:
            verifier_at(signed_at - ahead).verify(envelope)
        assert not isinstance(refused.value, SnsMalformed)


def test_a_message_dated_a_year_ahead_under_the_real_clock_is_refused(pki, cert_url, verifier):
    envelope = notification(pki, cert_url, ses("notification-bounce.json"), at=utcnow() + dt.timedelta(days=365))
    with pytest.raises(SnsError, match="ahead"):
        verifier.verify(envelope)


@pytest.mark.parametrize("stamp", ["", "yesterday", "2025-13-40T00:00:00Z"])
def test_a_message_without_a_valid_timestamp_is_refused(pki, cert_url, verifier, stamp):
    envelope = sign({**unsigned(cert_url=cert_url, message="{}"), "Timestamp": stamp}, pki.key)
    with pytest.raises(SnsMalformed):
        verifier.verify(envelope)


@pytest.mark.parametrize("thing", [None, [], "a string", 42])
def test_what_is_not_an_sns_message_is_refused(verifier, thing):
    with pytest.raises(SnsMalformed):
        verifier.verify(thing)


def test_the_certificate_is_downloaded_once_for_many_messages(pki, cert_url, server, verifier):
    for i in range(25):
        verifier.verify(notification(pki, cert_url, ses("notification-delivery.json"), "1" if i % 2 else "2"))
    assert server.hits(CERT_PATH) == 1
    # A second certificate URL is one more download, then cached too.
    other = server.base + OTHER_CERT_PATH
    for _ in range(3):
        verifier.verify(sign(unsigned(cert_url=other, message="{}"), pki.other_key))
    assert server.hits(OTHER_CERT_PATH) == 1
    assert len(server.requests) == 2


def test_concurrent_messages_share_the_cached_certificate(pki, cert_url, server, verifier):
    verifier.verify(notification(pki, cert_url, "{}"))
    errors = []

    def check():
        try:
            for _ in range(5):
                verifier.verify(notification(pki, cert_url, "{}"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=check) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert server.hits(CERT_PATH) == 1


def test_a_certificate_that_cannot_be_loaded_is_refused(pki, server, verifier):
    missing = server.base + "/SimpleNotificationService-missing.pem"  # 404
    with pytest.raises(SnsError, match="cannot load"):
        verifier.verify(notification(pki, missing, "{}"))
    junk = SnsVerifier((TOPIC,), cert_host=LOOPBACK, cert_scheme="http", download=lambda url: b"not a certificate")
    with pytest.raises(SnsError, match="cannot load"):
        junk.verify(notification(pki, server.base + CERT_PATH, "{}"))


@pytest.mark.parametrize("url", [
    "http://localhost:{port}" + CERT_PATH,  # another host (the same server)
    "http://evil@127.0.0.1:{port}" + CERT_PATH,  # userinfo
    "https://127.0.0.1:{port}" + CERT_PATH,  # another scheme than configured
    "http://127.0.0.1:{port}/SimpleNotificationService.txt",
])
def test_a_certificate_url_off_the_allowed_host_is_not_fetched(pki, server, verifier, url):
    with pytest.raises(SnsError):
        verifier.verify(notification(pki, url.format(port=server.port), "{}"))
    assert server.requests == []


@pytest.mark.parametrize("status", [300, 301, 302, 303, 307, 308])
def test_a_certificate_url_that_redirects_is_refused_and_nothing_is_cached(pki, server, relay, verifier, status):
    redirecting = relay(status)
    envelope = notification(pki, redirecting.base + CERT_PATH, ses("notification-bounce.json"))

    for attempt in (1, 2):
        with pytest.raises(SnsError, match="cannot load the signing certificate") as refused:
            verifier.verify(envelope)
        assert not isinstance(refused.value, SnsMalformed)
        assert redirecting.hits(CERT_PATH) == attempt  # nothing cached: asked again

    # The certificate it redirects to is valid, but it was never fetched.
    assert server.requests == []
    verifier.verify(notification(pki, server.base + CERT_PATH, ses("notification-bounce.json")))


# --------------------------------------------------------------------------
# the production host rules (no network: ``download`` is injected)


def production_verifier(pki, fetched: list[str]) -> SnsVerifier:
    def download(url: str) -> bytes:
        fetched.append(url)
        if url != PRODUCTION_CERT_URL:
            pytest.fail(f"a refused URL was fetched: {url}")
        return pki.cert_pem

    return SnsVerifier((TOPIC,), download=download)


def test_production_rules_accept_the_sns_certificate_url(pki):
    fetched: list[str] = []
    verifier = production_verifier(pki, fetched)
    for version in ("1", "2"):
        verifier.verify(notification(pki, PRODUCTION_CERT_URL, ses("event-bounce.json"), version))
    assert fetched == [PRODUCTION_CERT_URL]


@pytest.mark.parametrize("url", [
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.us-east-1.amazonaws.com:443/SimpleNotificationService-abc.pem",
    "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
    "https://sns.eu-central-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.ap-southeast-2.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
    "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:1:T&Token=x",
])
def test_check_url_accepts_sns_hosts(url):
    SnsVerifier((TOPIC,)).check_url(url, "SigningCertURL")


REFUSED_CERT_URLS = [
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "ftp://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "//sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotificationService-abc.pem",
    "https://evil.com/sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://evil.com/?https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://evil.com#https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.us-east-1.amazonaws.com@evil.com/SimpleNotificationService-abc.pem",
    "https://evil.com@sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://user:password@sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.us-east-1.amazonaws.com\\@evil.com/SimpleNotificationService-abc.pem",
    "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-abc.pem",
    "https://evilsns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.us-east-1.amazonaws.com.cn.evil.com/SimpleNotificationService-abc.pem",
    "https://sns.us-east-1.evil.com/SimpleNotificationService-abc.pem",
    # Anyone can own an S3 bucket named "sns" and serve a certificate from it
    # on these (legacy) S3 endpoints, which look like sns.<label>.amazonaws.com.
    "https://sns.s3.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.s3-ap-southeast-2.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.s3-external-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.s3-website-us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    # Not a certificate file.
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.txt",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem.txt",
    "https://sns.us-east-1.amazonaws.com/?file=SimpleNotificationService-abc.pem&x=.pem",
    "https://sns.us-east-1.amazonaws.com/",
    # Not URLs.
    "",
    "SimpleNotificationService-abc.pem",
    "https://[sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.us-east-1.amazonaws.com:http/SimpleNotificationService-abc.pem",
]


@pytest.mark.parametrize("url", REFUSED_CERT_URLS)
def test_production_rules_refuse_other_certificate_urls_without_fetching(pki, url):
    fetched: list[str] = []
    verifier = production_verifier(pki, fetched)
    with pytest.raises(SnsError):
        verifier.verify(notification(pki, url, ses("notification-bounce.json")))
    assert fetched == []


@pytest.mark.parametrize("host", [
    "sns.s3.amazonaws.com",
    "sns.s3-ap-southeast-2.amazonaws.com",
    "sns.s3-external-1.amazonaws.com",
    "sns.s3-website-us-east-1.amazonaws.com",
    "sns.us-east-1.amazonaws.com.evil.com",
    "sns.us-east-1.amazonaws.com\n",
])
def test_the_sns_host_pattern_refuses_lookalikes(host):
    assert not AWS_SNS_HOST.match(host)


def test_the_documented_examples_carry_no_valid_signature(pki):
    # The SNS guide's own samples (signatures beginning "EXAMPLE") fail the
    # signature check even when the certificate URL and topic are accepted.
    fetched: list[str] = []
    verifier = SnsVerifier(
        ("arn:aws:sns:us-west-2:123456789012:MyTopic",),
        download=lambda url: fetched.append(url) or pki.cert_pem,
        clock=lambda: dt.datetime(2012, 5, 2, 1, 0, tzinfo=dt.timezone.utc),
    )
    for name in TEMPLATES.values():
        with pytest.raises(SnsError):
            verifier.verify(json.loads((SNS / name).read_text(encoding="utf-8")))
    assert fetched == [json.loads((SNS / "notification.json").read_text())["SigningCertURL"]]


# --------------------------------------------------------------------------
# POST /sns on the web app


@pytest.fixture
def readers(store) -> dict:
    return {address: store.add(address)[0] for address in READERS}


@pytest.fixture
def client(store, web_client, verifier):
    return web_client(sns_topic_arns=(TOPIC, SECOND_TOPIC), sns_verifier=verifier)


def post(client, envelope):
    return client.post("/sns", data=json.dumps(envelope), content_type="text/plain; charset=UTF-8")


def state(store) -> tuple:
    """Everything a notification may change: statuses, events, feedback rows,
    handled SNS message ids."""
    statuses = tuple(sorted((s.email, s.status) for s in store.iter_subscribers()))
    return statuses, count(store, events_table), count(store, feedback_table), count(store, sns_seen_table)


STYLES = {  # identity notifications (notificationType) and configuration-set events (eventType)
    "notification": {"bounce": "notification-bounce.json", "complaint": "notification-complaint.json",
                     "delivery": "notification-delivery.json", "issue": "2016-01-27"},
    "event": {"bounce": "event-bounce.json", "complaint": "event-complaint.json",
              "delivery": "event-delivery.json", "issue": "2017-08-05"},
}


@pytest.mark.parametrize("style", STYLES)
def test_a_permanent_bounce_suppresses_the_reader(pki, cert_url, client, store, readers, style):
    payload = ses(STYLES[style]["bounce"])
    address = payload["bounce"]["bouncedRecipients"][0]["emailAddress"]
    diagnostic = payload["bounce"]["bouncedRecipients"][0]["diagnosticCode"]

    response = post(client, notification(pki, cert_url, payload))

    assert response.status_code == 200, response.data
    reader = store.get(email=address)
    assert reader.status == BOUNCED
    last = store.events(reader.id)[-1]
    assert (last.old_status, last.new_status, last.source) == (ACTIVE, BOUNCED, "ses")
    assert "General" in last.reason
    assert diagnostic in last.reason
    assert STYLES[style]["issue"] in last.reason
    others = [store.get(email=a).status for a in READERS if a != address]
    assert others == [ACTIVE] * 3
    assert count(store, feedback_table) == 1


@pytest.mark.parametrize("style", STYLES)
def test_a_complaint_suppresses_the_reader(pki, cert_url, client, store, readers, style):
    payload = ses(STYLES[style]["complaint"])
    address = payload["complaint"]["complainedRecipients"][0]["emailAddress"]

    response = post(client, notification(pki, cert_url, payload, "1"))

    assert response.status_code == 200, response.data
    reader = store.get(email=address)
    assert reader.status == COMPLAINED
    last = store.events(reader.id)[-1]
    assert (last.new_status, last.source) == (COMPLAINED, "ses")
    assert "abuse" in last.reason and STYLES[style]["issue"] in last.reason


@pytest.mark.parametrize("style", STYLES)
def test_a_delivery_is_recorded_without_changing_the_reader(pki, cert_url, client, store, readers, style):
    payload = ses(STYLES[style]["delivery"])
    address = payload["delivery"]["recipients"][0]
    events_before = count(store, events_table)

    response = post(client, notification(pki, cert_url, payload))

    assert response.status_code == 200, response.data
    assert store.get(email=address).status == ACTIVE
    assert count(store, events_table) == events_before
    with store.reader.connect() as conn:
        rows = conn.execute(select(feedback_table.c.kind, feedback_table.c.email_key,
                                   feedback_table.c.subscriber_id, feedback_table.c.issue_date)).all()
    [issue] = [h["value"] for h in payload["mail"]["headers"] if h["name"] == "X-Newsletter-Issue"]
    assert [tuple(r) for r in rows] == [("delivery", address, readers[address].id, issue)]


def test_the_same_message_id_again_changes_nothing(pki, cert_url, client, store, readers):
    envelope = notification(pki, cert_url, ses("notification-bounce-no-dsn.json"))
    assert post(client, envelope).status_code == 200
    assert store.get(email="jane@example.com").status == BOUNCED
    assert store.get(email="richard@example.com").status == BOUNCED
    # The operator reactivates one of them; a redelivery must not undo that.
    jane = store.get(email="jane@example.com")
    store.change_status(jane.id, ACTIVE, source="cli", reason="reactivated by the operator")
    before = state(store)

    again = post(client, envelope)

    assert again.status_code == 200
    assert state(store) == before
    assert store.get(email="jane@example.com").status == ACTIVE
    assert count(store, feedback_table) == 2  # one per bounced recipient, once


def test_the_same_message_id_with_another_body_is_not_applied(pki, cert_url, client, store, readers):
    first = notification(pki, cert_url, ses("notification-delivery.json"))
    assert post(client, first).status_code == 200
    before = state(store)
    second = notification(pki, cert_url, ses("notification-complaint.json"), message_id=first["MessageId"])
    assert post(client, second).status_code == 200
    assert state(store) == before


def refused_envelopes(pki, cert_url) -> dict[str, dict]:
    bounce = ses("notification-bounce.json")
    forged = notification(pki, cert_url, bounce)
    other = ses("notification-bounce.json")
    other["bounce"]["bouncedRecipients"][0]["emailAddress"] = "mary@example.com"
    forged["Message"] = json.dumps(other)  # changed after signing
    unsigned_one = notification(pki, cert_url, bounce)
    del unsigned_one["Signature"], unsigned_one["SignatureVersion"]
    return {
        "forged": forged,
        "stranger's key": sign(unsigned(cert_url=cert_url, message=json.dumps(bounce)), pki.other_key),
        "unsigned": unsigned_one,
        "foreign topic": notification(pki, cert_url, bounce, topic=FOREIGN_TOPIC),
        "replayed": notification(pki, cert_url, bounce, at=utcnow() - dt.timedelta(hours=3)),
        "dated a year ahead": notification(pki, cert_url, bounce, at=utcnow() + dt.timedelta(days=365)),
        "version 3": {**notification(pki, cert_url, bounce), "SignatureVersion": "3"},
    }


REFUSED = ["forged", "stranger's key", "unsigned", "foreign topic", "replayed", "dated a year ahead", "version 3"]


@pytest.mark.parametrize("case", REFUSED)
def test_refused_messages_get_403_and_change_nothing(pki, cert_url, client, store, readers, case):
    envelope = refused_envelopes(pki, cert_url)[case]
    before = state(store)

    response = post(client, envelope)

    assert response.status_code == 403
    assert state(store) == before
    assert count(store, feedback_table) == count(store, sns_seen_table) == 0


def test_a_refused_message_does_not_use_up_its_message_id(pki, cert_url, client, store, readers):
    genuine = notification(pki, cert_url, ses("notification-bounce.json"))
    forged = {**genuine, "Message": json.dumps(ses("notification-delivery.json"))}
    assert post(client, forged).status_code == 403
    assert post(client, genuine).status_code == 200
    assert store.get(email="jane@example.com").status == BOUNCED


@pytest.mark.parametrize("body", ["", "not json", "{\"Type\": "])
def test_a_body_that_is_not_json_gets_400(client, store, body):
    response = client.post("/sns", data=body, content_type="text/plain")
    assert response.status_code == 400
    assert count(store, sns_seen_table) == 0


def malformed_envelopes(pki, cert_url) -> dict[str, dict]:
    """Signed notifications (a genuine bounce for jane@example.com) with one
    envelope field of the wrong type, missing or unusable. Some are signed
    with the broken field, some broken after signing: either way the shape is
    checked before the signature, and before anything is downloaded."""
    bounce = ses("notification-bounce.json")
    good = notification(pki, cert_url, bounce)

    def signed(**fields) -> dict:
        return sign({**unsigned(cert_url=cert_url, message=json.dumps(bounce)), **fields}, pki.key)

    def without(name: str) -> dict:
        return {k: v for k, v in good.items() if k != name}

    return {
        "TopicArn a list": {**good, "TopicArn": [TOPIC]},
        "TopicArn an object": {**good, "TopicArn": {"arn": TOPIC}},
        "Signature a number": {**good, "Signature": 12345},
        "Signature a list": {**good, "Signature": [good["Signature"]]},
        "SignatureVersion a number": {**good, "SignatureVersion": 2},
        "SigningCertURL a list": {**good, "SigningCertURL": [cert_url]},
        "Type a list": {**good, "Type": ["Notification"]},
        "Type unknown": {**good, "Type": "Something"},
        "Type null": {**good, "Type": None},
        "MessageId a number": {**good, "MessageId": 42},
        "MessageId null": {**good, "MessageId": None},
        "Message an object": {**good, "Message": bounce},
        "Timestamp a number": {**good, "Timestamp": 1700000000},
        "Subject a boolean": {**good, "Subject": True},
        "UnsubscribeURL a number": {**good, "UnsubscribeURL": 1},
        "no Type": without("Type"),
        "no MessageId": without("MessageId"),
        "no Message": without("Message"),
        "no Timestamp": without("Timestamp"),
        "no TopicArn": without("TopicArn"),
        "Timestamp not a time": signed(Timestamp="yesterday"),
        "MessageId too long": signed(MessageId="x" * 101),
        "NUL in MessageId": signed(MessageId="a\x00b"),
        "lone surrogate in Message": {**good, "Message": "\ud800"},
        "lone surrogate in TopicArn": {**good, "TopicArn": TOPIC + "\udfff"},
    }


MALFORMED = [
    "TopicArn a list", "TopicArn an object", "Signature a number", "Signature a list", "SignatureVersion a number",
    "SigningCertURL a list", "Type a list", "Type unknown", "Type null", "MessageId a number", "MessageId null",
    "Message an object", "Timestamp a number", "Subject a boolean", "UnsubscribeURL a number", "no Type",
    "no MessageId", "no Message", "no Timestamp", "no TopicArn", "Timestamp not a time", "MessageId too long",
    "NUL in MessageId", "lone surrogate in Message", "lone surrogate in TopicArn",
]


def test_every_malformed_envelope_is_tested(pki, cert_url):
    assert sorted(malformed_envelopes(pki, cert_url)) == sorted(MALFORMED)


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_envelope_is_refused_as_malformed_before_any_download(pki, cert_url, server, verifier, case):
    with pytest.raises(SnsMalformed):
        verifier.verify(malformed_envelopes(pki, cert_url)[case])
    assert server.requests == []


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_envelope_gets_400_and_changes_nothing(pki, cert_url, server, client, store, readers, case):
    before = state(store)

    response = post(client, malformed_envelopes(pki, cert_url)[case])

    assert response.status_code == 400
    assert state(store) == before
    assert server.requests == []


@pytest.mark.parametrize("case", REFUSED)
def test_a_well_formed_refused_message_is_not_called_malformed(pki, cert_url, verifier, case):
    with pytest.raises(SnsError) as refused:
        verifier.verify(refused_envelopes(pki, cert_url)[case])
    assert not isinstance(refused.value, SnsMalformed)


def deeply_nested(depth: int) -> list[bytes]:
    """Bodies nested ``depth`` levels deep (far beyond Python's recursion
    limit, within the 512 KB a request may have), bare and inside an
    envelope."""
    return [
        b"[" * depth,
        b"[" * depth + b"]" * depth,
        b'{"a":' * depth + b"1" + b"}" * depth,
        b'{"Type": "Notification", "TopicArn": ' + b"[" * depth + b"]" * depth + b"}",
    ]


@pytest.mark.parametrize("body", [
    *deeply_nested(50_000),
    b"\xff\xfe{}",
    b'{"Type": "Notification", "Message": "\xff"}',
    b"42", b"null", b'"Notification"', b"[{}]",
], ids=lambda body: repr(body[:30]))
def test_a_body_that_cannot_be_an_envelope_gets_400(client, store, server, readers, body):
    before = state(store)
    response = client.post("/sns", data=body, content_type="text/plain")
    assert response.status_code == 400
    assert state(store) == before
    assert server.requests == []


def test_a_signed_envelope_with_a_byte_that_is_not_utf8_gets_400(pki, cert_url, client, store, readers):
    body = json.dumps(notification(pki, cert_url, ses("notification-bounce.json"))).encode()
    broken = body.replace(b"jane@example.com", b"jane\xff@example.com", 1)
    assert broken != body
    before = state(store)
    assert client.post("/sns", data=broken, content_type="text/plain").status_code == 400
    assert state(store) == before
    assert client.post("/sns", data=body, content_type="text/plain").status_code == 200


def hostile_ses_payloads() -> dict[str, dict]:
    """SES bounces with one field SES would never send: wrong types, NUL,
    lone surrogates, values too long for the store."""
    def bounce_with(change) -> dict:
        payload = ses("notification-bounce.json")
        change(payload)
        return payload

    def recipient(**fields):
        return lambda p: p["bounce"]["bouncedRecipients"][0].update(fields)

    return {
        "bouncedRecipients a string": bounce_with(lambda p: p["bounce"].update(bouncedRecipients="jane@example.com")),
        "a recipient a string": bounce_with(lambda p: p["bounce"].update(bouncedRecipients=["jane@example.com"])),
        "emailAddress a number": bounce_with(recipient(emailAddress=5)),
        "emailAddress a list": bounce_with(recipient(emailAddress=["jane@example.com"])),
        "emailAddress missing": bounce_with(lambda p: p["bounce"]["bouncedRecipients"][0].pop("emailAddress")),
        "emailAddress with NUL": bounce_with(recipient(emailAddress="jane\x00@example.com")),
        "emailAddress with a lone surrogate": bounce_with(recipient(emailAddress="jane\udc80@example.com")),
        "emailAddress too long": bounce_with(recipient(emailAddress="j" * 400 + "@example.com")),
        "diagnosticCode an object": bounce_with(recipient(diagnosticCode={"smtp": 550})),
        "bounceType an object": bounce_with(lambda p: p["bounce"].update(bounceType={"type": "Permanent"})),
        "bounceType too long": bounce_with(lambda p: p["bounce"].update(bounceType="Permanent" * 10)),
        "bounceSubType too long": bounce_with(lambda p: p["bounce"].update(bounceSubType="General" * 20)),
        "bounce timestamp a number": bounce_with(lambda p: p["bounce"].update(timestamp=1453906778)),
        "bounce a list": bounce_with(lambda p: p.update(bounce=[p["bounce"]])),
        "notificationType a list": bounce_with(lambda p: p.update(notificationType=["Bounce"])),
        "headers an object": bounce_with(lambda p: p["mail"].update(headers={"X-Newsletter-Issue": "2016-01-27"})),
        "a header a string": bounce_with(lambda p: p["mail"]["headers"].append("X-Newsletter-Issue: 2016-01-27")),
        "a header value a number": bounce_with(lambda p: p["mail"]["headers"].append({"name": "X", "value": 1})),
        "deeply nested": bounce_with(lambda p: p["bounce"].update(bounceType=json.loads("[" * 500 + "]" * 500))),
    }


@pytest.mark.parametrize("case", sorted(hostile_ses_payloads()))
def test_a_signed_but_malformed_ses_notification_gets_400_and_changes_nothing(pki, cert_url, client, store,
                                                                               readers, case):
    envelope = notification(pki, cert_url, hostile_ses_payloads()[case])
    before = state(store)

    response = post(client, envelope)

    assert response.status_code == 400
    assert state(store) == before
    assert store.get(email="jane@example.com").status == ACTIVE


@pytest.mark.parametrize("message", ["[" * 100_000, '{"mail": ' * 20_000])
def test_a_signed_message_nested_too_deeply_gets_400(pki, cert_url, client, store, readers, message):
    before = state(store)
    assert post(client, notification(pki, cert_url, message)).status_code == 400
    assert state(store) == before


@pytest.mark.parametrize("body", ["[]", "\"x\"", "{}", "{\"Type\": \"Notification\"}"])
def test_json_that_is_not_an_sns_message_gets_400(client, store, server, body):
    assert client.post("/sns", data=body, content_type="text/plain").status_code == 400
    assert count(store, sns_seen_table) == 0
    assert server.requests == []


def test_a_verified_notification_that_is_not_from_ses_gets_400(pki, cert_url, client, store, readers):
    before = state(store)
    assert post(client, notification(pki, cert_url, "Hello world!")).status_code == 400
    assert state(store) == before


def test_a_subscription_confirmation_fetches_its_subscribe_url(pki, cert_url, server, client, store):
    url = f"{server.base}{CONFIRM_PATH}?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=2336412f37fb"
    envelope = sign(unsigned("SubscriptionConfirmation", cert_url=cert_url, subscribe_url=url), pki.key, "1")

    response = post(client, envelope)

    assert response.status_code == 200, response.data
    assert server.hits(CONFIRM_PATH) == 1
    assert [p for p in server.requests if p.startswith(CONFIRM_PATH)] == [url.removeprefix(server.base)]
    assert count(store, sns_seen_table) == 0  # nothing for the feedback tables


def test_a_certificate_redirect_gets_403_and_changes_nothing(pki, server, relay, client, store, readers):
    redirecting = relay(302)
    before = state(store)

    response = post(client, notification(pki, redirecting.base + CERT_PATH, ses("notification-bounce.json")))

    assert response.status_code == 403
    assert state(store) == before
    assert redirecting.hits(CERT_PATH) == 1
    assert server.requests == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_subscribe_url_that_redirects_is_not_followed(pki, cert_url, server, relay, client, store, status):
    redirecting = relay(status)
    url = f"{redirecting.base}{CONFIRM_PATH}?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=2336412f37fb"
    envelope = sign(unsigned("SubscriptionConfirmation", cert_url=cert_url, subscribe_url=url), pki.key)

    response = post(client, envelope)

    assert response.status_code == 403
    assert redirecting.hits(CONFIRM_PATH) == 1
    assert server.hits(CONFIRM_PATH) == 0  # where the redirect pointed
    assert server.hits(CERT_PATH) == 1  # it was verified, and only then refused


@pytest.mark.parametrize("subscribe_url", [
    "http://localhost:{port}/confirm?Action=ConfirmSubscription&Token=x",
    "http://attacker@127.0.0.1:{port}/confirm?Action=ConfirmSubscription&Token=x",
    "ftp://127.0.0.1:{port}/confirm",
    "/confirm?Action=ConfirmSubscription&Token=x",
])
def test_a_subscribe_url_on_another_host_is_not_fetched(pki, cert_url, server, client, subscribe_url):
    url = subscribe_url.format(port=server.port)
    envelope = sign(unsigned("SubscriptionConfirmation", cert_url=cert_url, subscribe_url=url), pki.key, "2")

    response = post(client, envelope)

    assert response.status_code == 403
    assert server.hits(CONFIRM_PATH) == 0
    assert server.hits(CERT_PATH) == 1  # it was verified, and only then refused


def test_a_forged_subscription_confirmation_is_not_fetched(pki, cert_url, server, client):
    url = f"{server.base}{CONFIRM_PATH}?Action=ConfirmSubscription&Token=genuine"
    envelope = sign(unsigned("SubscriptionConfirmation", cert_url=cert_url, subscribe_url=url), pki.key)
    envelope["SubscribeURL"] = url.replace("genuine", "forged")
    assert post(client, envelope).status_code == 403
    foreign = sign(unsigned("SubscriptionConfirmation", cert_url=cert_url, subscribe_url=url, topic=FOREIGN_TOPIC),
                   pki.key)
    assert post(client, foreign).status_code == 403
    assert server.hits(CONFIRM_PATH) == 0


def test_an_unsubscribe_confirmation_is_acknowledged_and_fetches_nothing(pki, cert_url, server, client, store):
    url = f"{server.base}{CONFIRM_PATH}?Action=ConfirmSubscription&Token=x"
    envelope = sign(unsigned("UnsubscribeConfirmation", cert_url=cert_url, subscribe_url=url), pki.key)
    assert post(client, envelope).status_code == 200
    assert server.hits(CONFIRM_PATH) == 0


def transient_bounce(style: str, address: str, at: dt.datetime) -> dict:
    """The sample bounce of ``style`` turned into a transient one (mailbox
    full) for ``address`` at ``at``."""
    payload = ses(STYLES[style]["bounce"])
    payload["bounce"].update(bounceType="Transient", bounceSubType="MailboxFull", timestamp=sns_time(at))
    recipient = payload["bounce"]["bouncedRecipients"][0]
    recipient.update(emailAddress=address, status="4.2.2", diagnosticCode="smtp; 452 4.2.2 Mailbox full")
    return payload


@pytest.mark.parametrize("style", STYLES)
def test_three_transient_bounces_in_30_days_suppress(pki, cert_url, client, store, readers, style):
    address = "mary@example.com"
    for day in (20, 10):
        payload = transient_bounce(style, address, utcnow() - dt.timedelta(days=day))
        assert post(client, notification(pki, cert_url, payload)).status_code == 200
        assert store.get(email=address).status == ACTIVE
    assert len(store.events(readers[address].id)) == 1  # only "subscribed"

    payload = transient_bounce(style, address, utcnow())
    assert post(client, notification(pki, cert_url, payload)).status_code == 200

    reader = store.get(email=address)
    assert reader.status == BOUNCED
    reason = store.events(reader.id)[-1].reason
    assert "3 transient bounces in 30 days" in reason
    assert "MailboxFull" in reason and "Mailbox full" in reason and STYLES[style]["issue"] in reason


@pytest.mark.parametrize("style", STYLES)
def test_transient_bounces_older_than_30_days_do_not_count(pki, cert_url, client, store, readers, style):
    address = "richard@example.com"
    old = utcnow() - dt.timedelta(days=31)
    for i in range(3):
        store.apply_feedback(f"old-{i}", [Feedback(
            "bounce", address, "2025-01-01", bounce_type="Transient", bounce_subtype="MailboxFull",
            detail="smtp; 452 4.2.2 Mailbox full", at=old - dt.timedelta(days=i),
        )])
    assert store.get(email=address).status == ACTIVE

    for _ in range(2):
        payload = transient_bounce(style, address, utcnow())
        assert post(client, notification(pki, cert_url, payload)).status_code == 200
    assert store.get(email=address).status == ACTIVE  # 2 recent + 3 old

    payload = transient_bounce(style, address, utcnow())
    assert post(client, notification(pki, cert_url, payload)).status_code == 200
    assert store.get(email=address).status == BOUNCED


def test_feedback_for_an_unknown_address_is_recorded_only(pki, cert_url, client, store, readers):
    payload = ses("event-bounce.json")
    payload["bounce"]["bouncedRecipients"][0]["emailAddress"] = "Stranger@Example.com"
    before_statuses = state(store)[0]
    assert post(client, notification(pki, cert_url, payload)).status_code == 200
    assert state(store)[0] == before_statuses
    with store.reader.connect() as conn:
        row = conn.execute(select(feedback_table)).one()
    assert (row.email_key, row.subscriber_id, row.kind) == ("stranger@example.com", None, "bounce")


# --------------------------------------------------------------------------
# SQS: moto's server over HTTP, and the real `bounces poll` command


@pytest.fixture(scope="module")
def moto_url():
    from moto.server import ThreadedMotoServer

    port = free_port()
    motoserver = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    motoserver.start()
    yield f"http://127.0.0.1:{port}"
    motoserver.stop()


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture
def sqs(moto_url, monkeypatch, tmp_path):
    """A boto3 SQS client of moto's server, with dummy credentials only."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return boto3.client("sqs", endpoint_url=moto_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def new_queue(sqs, visibility: int = 30) -> str:
    return sqs.create_queue(QueueName=f"ses-feedback-{uuid.uuid4().hex[:12]}",
                            Attributes={"VisibilityTimeout": str(visibility)})["QueueUrl"]


def enqueue(sqs, queue_url: str, envelope: dict) -> None:
    """Deliver ``envelope`` as SNS does to an SQS subscriber without raw
    message delivery: the whole JSON envelope is the message body."""
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(envelope, indent=2))


def queue_depth(sqs, queue_url: str) -> tuple[int, int]:
    """(messages waiting, messages received but neither deleted nor back yet)."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def run_poll(queue_url: str, database_url: str, moto_url: str):
    env = {
        **AWS_ENV,
        "NEWSLETTER_SQS_ENDPOINT_URL": moto_url,
        "NEWSLETTER_SNS_TOPIC_ARNS": TOPIC,
        "NEWSLETTER_DATABASE_URL": database_url,
    }
    return CliRunner().invoke(cli, ["bounces", "poll", "--queue", queue_url, "--once", "--wait", "0"],
                              env=env, catch_exceptions=False)


def test_poll_handles_and_deletes_verified_messages_and_keeps_refused_ones(pki, cert_url, sqs, store, readers,
                                                                           verifier):
    queue_url = new_queue(sqs)
    enqueue(sqs, queue_url, notification(pki, cert_url, ses("notification-bounce.json")))
    enqueue(sqs, queue_url, notification(pki, cert_url, ses("event-complaint.json"), "1"))
    enqueue(sqs, queue_url, notification(pki, cert_url, ses("event-delivery.json")))
    enqueue(sqs, queue_url, refused_envelopes(pki, cert_url)["forged"])
    sqs.send_message(QueueUrl=queue_url, MessageBody="not json")
    assert queue_depth(sqs, queue_url) == (5, 0)

    report = poll(sqs, queue_url, verifier, store, once=True, stop=threading.Event(), wait=0)

    assert (report.handled, report.refused) == (3, 2)
    assert store.get(email="jane@example.com").status == BOUNCED
    assert store.get(email="recipient@example.com").status == COMPLAINED
    assert store.get(email="mary@example.com").status == ACTIVE  # the forged one named her
    assert count(store, feedback_table) == 3
    # Handled messages are deleted; the two refused ones are still in the
    # queue (in flight until their visibility timeout ends).
    assert queue_depth(sqs, queue_url) == (0, 2)


def test_poll_once_ends_even_when_refused_messages_come_straight_back(pki, cert_url, sqs, store, readers, verifier):
    # With a visibility timeout of 0 a refused message is receivable again at
    # once; --once must still end (a cron job must not run forever).
    queue_url = new_queue(sqs, visibility=0)
    forged = refused_envelopes(pki, cert_url)["forged"]
    enqueue(sqs, queue_url, forged)
    enqueue(sqs, queue_url, notification(pki, cert_url, ses("notification-bounce.json")))
    stop = threading.Event()
    outcome: dict = {}
    worker = threading.Thread(
        target=lambda: outcome.update(report=poll(sqs, queue_url, verifier, store, once=True, stop=stop, wait=0)),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():
        stop.set()
        worker.join(timeout=10)
        pytest.fail("poll(once=True) did not end while a refused message kept coming back")

    report = outcome["report"]
    assert (report.handled, report.refused) == (1, 1)
    assert store.get(email="jane@example.com").status == BOUNCED
    # The refused message was not deleted.
    bodies = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
              .get("Messages", [])]
    assert bodies == [forged]


def test_poll_counts_malformed_messages_as_refused_and_keeps_going(pki, cert_url, sqs, store, readers, verifier):
    queue_url = new_queue(sqs)
    sqs.send_message(QueueUrl=queue_url, MessageBody="[" * 100_000)
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"TopicArn": ["x"]}))
    enqueue(sqs, queue_url, malformed_envelopes(pki, cert_url)["Signature a number"])
    enqueue(sqs, queue_url, notification(pki, cert_url, hostile_ses_payloads()["bouncedRecipients a string"]))
    enqueue(sqs, queue_url, notification(pki, cert_url, hostile_ses_payloads()["bounceType too long"]))
    enqueue(sqs, queue_url, notification(pki, cert_url, ses("event-complaint.json")))

    report = poll(sqs, queue_url, verifier, store, once=True, stop=threading.Event(), wait=0)

    assert (report.handled, report.refused) == (1, 5)
    assert len([o for o in report.outcomes if o.startswith("refused ")]) == 5
    assert store.get(email="recipient@example.com").status == COMPLAINED
    assert store.get(email="jane@example.com").status == ACTIVE  # named by the malformed bounces
    assert count(store, feedback_table) == count(store, sns_seen_table) == 1
    assert queue_depth(sqs, queue_url) == (0, 5)  # refused ones stay for the dead-letter queue


def test_poll_refuses_a_message_dated_in_the_future(pki, cert_url, sqs, store, readers, server):
    # The poller's verifier accepts messages up to 14 days old, as the CLI's;
    # none may be dated ahead.
    verifier = SnsVerifier((TOPIC,), max_age=dt.timedelta(days=14), cert_host=LOOPBACK, cert_scheme="http")
    queue_url = new_queue(sqs)
    enqueue(sqs, queue_url, notification(pki, cert_url, ses("notification-bounce.json"),
                                         at=utcnow() + dt.timedelta(days=365)))
    enqueue(sqs, queue_url, notification(pki, cert_url, ses("event-complaint.json"),
                                         at=utcnow() + dt.timedelta(minutes=6)))
    before = state(store)

    report = poll(sqs, queue_url, verifier, store, once=True, stop=threading.Event(), wait=0)

    assert (report.handled, report.refused) == (0, 2)
    assert all("ahead" in outcome for outcome in report.outcomes)
    assert state(store) == before
    assert queue_depth(sqs, queue_url) == (0, 2)


def test_poll_of_a_redelivered_message_applies_it_once(pki, cert_url, sqs, store, readers, verifier):
    queue_url = new_queue(sqs)
    envelope = notification(pki, cert_url, ses("notification-bounce-no-dsn.json"))
    enqueue(sqs, queue_url, envelope)
    enqueue(sqs, queue_url, envelope)  # SQS delivers at least once

    report = poll(sqs, queue_url, verifier, store, once=True, stop=threading.Event(), wait=0)

    assert (report.handled, report.refused) == (2, 0)
    assert "already handled" in report.outcomes
    assert count(store, feedback_table) == 2
    assert queue_depth(sqs, queue_url) == (0, 0)


def test_poll_of_a_missing_queue_is_an_account_error(sqs, store, verifier, moto_url):
    from newsletter.core.errors import AccountError

    with pytest.raises(AccountError):
        poll(sqs, f"{moto_url}/123456789012/no-such-queue", verifier, store, once=True, stop=threading.Event(),
             wait=0)


def test_cli_poll_refuses_a_message_not_signed_by_sns_and_leaves_it(pki, cert_url, sqs, store, readers,
                                                                    database_url, moto_url, server):
    # The CLI builds its own verifier with the production rules: a message
    # whose certificate is on 127.0.0.1 is not from SNS, and nothing is fetched.
    queue_url = new_queue(sqs)
    enqueue(sqs, queue_url, notification(pki, cert_url, ses("notification-bounce.json")))

    result = run_poll(queue_url, database_url, moto_url)

    assert result.exit_code == 0, result.output
    assert "Handled 0 notifications, refused 1." in result.stdout
    assert "not on an SNS host" in result.stdout
    assert store.get(email="jane@example.com").status == ACTIVE
    assert count(store, feedback_table) == 0
    assert queue_depth(sqs, queue_url) == (0, 1)  # still there, in flight
    assert server.requests == []


def test_cli_poll_applies_verified_messages_and_deletes_them(pki, cert_url, sqs, store, readers, database_url,
                                                             moto_url, monkeypatch):
    # The only way to give the real command a certificate it trusts without
    # AWS is to let its verifier accept http://127.0.0.1. The CLI imports
    # SnsVerifier from newsletter.feedback.sns when it runs, so this subclass replaces
    # it for this test only, keeping every argument the CLI passes (the topic
    # list from NEWSLETTER_SNS_TOPIC_ARNS and its 14-day window) and changing
    # nothing but the certificate host and scheme.
    made: list[dict] = []

    class LoopbackVerifier(SnsVerifier):
        def __init__(self, topic_arns, **options):
            made.append({"topic_arns": tuple(topic_arns), **options})
            super().__init__(topic_arns, cert_host=LOOPBACK, cert_scheme="http", **options)

    monkeypatch.setattr(newsletter.feedback.sns, "SnsVerifier", LoopbackVerifier)
    queue_url = new_queue(sqs)
    three_days_ago = utcnow() - dt.timedelta(days=3)  # queued messages may wait
    enqueue(sqs, queue_url, notification(pki, cert_url, ses("notification-bounce.json"), at=three_days_ago))
    enqueue(sqs, queue_url, notification(pki, cert_url, ses("event-complaint.json")))
    enqueue(sqs, queue_url, notification(pki, cert_url, ses("event-bounce.json"), topic=FOREIGN_TOPIC))

    result = run_poll(queue_url, database_url, moto_url)

    assert result.exit_code == 0, result.output
    assert made == [{"topic_arns": (TOPIC,), "max_age": dt.timedelta(days=14)}]
    assert "Handled 2 notifications, refused 1." in result.stdout
    assert store.get(email="jane@example.com").status == BOUNCED
    assert store.get(email="recipient@example.com").status == COMPLAINED
    assert queue_depth(sqs, queue_url) == (0, 1)  # only the foreign-topic one is left


# --------------------------------------------------------------------------
# Rendering Failures: a real bulk send through the SES stand-in, one reader's
# message dropped by SES, the event read back, the reader sent again


SES_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"}
SEND_DATE = "2025-03-11"


@pytest.fixture
def dropping_send(store, database_url, monkeypatch, tmp_path):
    """Run ``newsletter send`` of the example day through an SES stand-in,
    with a bug that leaves a name out of one reader's data (SES accepts the
    entry, then drops it with a Rendering Failure); yields (stand-in,
    send(*args), fix(), the reader, the others)."""
    from sesv2_standin import SesV2StandIn

    from conftest import EXAMPLE, SECRET
    from newsletter.sending.senders import ses as ses_sender

    monkeypatch.setattr(ses_sender, "RENDER_INTERVAL", 0.0)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    readers = [store.add(address)[0] for address in READERS]
    victim = readers[1]
    complete = ses_sender.entry_data

    def leaves_a_name_out(recipient, issue, kept, quoted=False):
        data = json.loads(complete(recipient, issue, kept))
        if recipient.subscriber_id == victim.id:
            del data["invite"]
        return json.dumps(json.dumps(data)) if quoted else json.dumps(data)

    monkeypatch.setattr(ses_sender, "entry_data", leaves_a_name_out)
    with SesV2StandIn(max_send_rate=1000) as standin:
        env = {**SES_ENV, "NEWSLETTER_DATABASE_URL": database_url, "NEWSLETTER_SECRET_KEY": SECRET,
               "NEWSLETTER_SENDER": "ses", "NEWSLETTER_SES_ENDPOINT_URL": standin.endpoint_url,
               "NEWSLETTER_FROM": "Daily Papers <papers@example.com>", "NEWSLETTER_SNS_TOPIC_ARNS": TOPIC}

        def send(*args):
            return CliRunner().invoke(cli, ["send", str(EXAMPLE), "--date", SEND_DATE, *args], env=env,
                                      catch_exceptions=False)

        def fix():
            monkeypatch.setattr(ses_sender, "entry_data", complete)

        yield standin, send, fix, victim, [r for r in readers if r.id != victim.id], env


def ledger_of(store) -> dict:
    from newsletter.core.models import Edition
    from newsletter.store import Ledger

    return {row.subscriber_id: row for row in Ledger(store, Edition(dt.date.fromisoformat(SEND_DATE))).rows()}


def assert_recovery(store, standin, send, fix, victim, others, env) -> None:
    """After the event was applied: the reader's row failed with SES's error,
    stats say so, and after the fix the reader alone is sent again."""
    rows = ledger_of(store)
    assert rows[victim.id].status == "failed"
    assert rows[victim.id].reason.startswith("Rendering Failure: Attribute 'invite' is not present")
    assert all(rows[r.id].status == "sent" for r in others)
    stats = CliRunner().invoke(cli, ["stats"], env=env, catch_exceptions=False)
    assert stats.exit_code == 0, stats.output
    assert (f"1 messages dropped by SES with a Rendering Failure (the readers got nothing): fix the cause, then "
            f"run newsletter send --date {SEND_DATE} --resend-rendering-failures") in stats.stderr
    assert "already sent" in send().stdout  # without the option, nobody is sent again

    fix()
    again = send("--resend-rendering-failures")
    assert again.exit_code == 0, again.output
    assert "again to 1 readers whose message SES dropped with a Rendering Failure" in again.stdout
    assert [m.to for m in standin.sent[len(others):]] == [[victim.email]]
    assert all(row.status == "sent" for row in ledger_of(store).values())
    assert "Rendering Failure" not in CliRunner().invoke(cli, ["stats"], env=env).stderr


def test_a_rendering_failure_from_sns_fails_the_reader_until_sent_again(pki, cert_url, client, store,
                                                                          dropping_send):
    standin, send, fix, victim, others, env = dropping_send
    first = send()
    assert first.exit_code == 0, first.output  # SES accepted every entry
    assert {m.to[0] for m in standin.sent} == {r.email for r in others}
    (event,) = standin.events
    assert event["failure"]["templateName"] == f"newsletter-{SEND_DATE}"
    assert all(row.status == "sent" for row in ledger_of(store).values())  # what the ledger believed

    response = post(client, notification(pki, cert_url, event))
    assert response.status_code == 200, response.data
    assert store.get(email=victim.email).status == ACTIVE
    assert_recovery(store, standin, send, fix, victim, others, env)


def test_a_rendering_failure_from_sqs_fails_the_reader_until_sent_again(pki, cert_url, sqs, store, verifier,
                                                                          dropping_send):
    standin, send, fix, victim, others, env = dropping_send
    assert send().exit_code == 0
    queue_url = new_queue(sqs)
    (event,) = standin.events
    enqueue(sqs, queue_url, notification(pki, cert_url, event))

    report = poll(sqs, queue_url, verifier, store, once=True, stop=threading.Event(), wait=0)

    assert (report.handled, report.refused) == (1, 0)
    assert queue_depth(sqs, queue_url) == (0, 0)
    assert_recovery(store, standin, send, fix, victim, others, env)
