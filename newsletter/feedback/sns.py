"""Verifying Amazon SNS messages before acting on them.

SNS signs every message it delivers (HTTP POST or SQS): the signature covers a
canonical string of named fields, made with the private key of a certificate
that SNS publishes at ``SigningCertURL``. A message is accepted only when

- its topic is one of the configured ``NEWSLETTER_SNS_TOPIC_ARNS``;
- ``SigningCertURL`` is https on an SNS host of AWS
  (``sns.<region>.amazonaws.com``) and ends in ``.pem``;
- the signature (version 1: SHA1 with RSA; version 2: SHA256 with RSA) checks
  out with that certificate's public key;
- it is not older than ``max_age`` (a replayed old message is refused) nor
  dated more than ``CLOCK_SKEW`` ahead (a message signed for later use).

Before any of that, the message must be well formed (:func:`check_shape`):
a JSON object whose fields are strings, with every field its type signs.
A malformed one raises :class:`SnsMalformed` (HTTP 400), anything refused
for being untrustworthy :class:`SnsError` (HTTP 403); neither fetches
anything first. Certificates are fetched without following redirects and
cached by URL, so a burst of notifications costs one fetch.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import http.client
import json
import re
import threading
import urllib.request
from typing import Callable
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from newsletter.core.errors import SnsError, SnsMalformed
from newsletter.papers.fetch import RefuseRedirects

# sns.<region>.amazonaws.com(.cn), the region being letters and dashes ending
# in a number (us-east-1, us-gov-west-1, cn-north-1). Any label in its place
# would also match S3 endpoints such as sns.s3.amazonaws.com or
# sns.s3-external-1.amazonaws.com, where whoever owns a bucket named "sns"
# could serve a certificate of their own.
AWS_SNS_HOST = re.compile(r"^sns\.[a-z]{2,}(-[a-z]+)+-[0-9]+\.amazonaws\.com(\.cn)?\Z")
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
SUBSCRIPTION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
TYPES = {
    "Notification": NOTIFICATION_FIELDS,
    "SubscriptionConfirmation": SUBSCRIPTION_FIELDS,
    "UnsubscribeConfirmation": SUBSCRIPTION_FIELDS,
}
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
# Every envelope field the newsletter reads or signs: each must be a string
# when present (Subject may also be null, which SNS treats as absent). Other
# fields, such as MessageAttributes in SQS deliveries, are ignored.
STRING_FIELDS = (
    "Type", "MessageId", "TopicArn", "Subject", "Message", "Timestamp", "SignatureVersion", "Signature",
    "SigningCertURL", "SubscribeURL", "Token", "UnsubscribeURL",
)
# SNS message ids are 36-character UUIDs; the store keeps ids of up to 100.
MAX_MESSAGE_ID = 100
# How far ahead of this machine's clock a message may be dated: SNS's clock
# and ours can disagree a little, but a message dated later than this was
# signed to be replayed in the future.
CLOCK_SKEW = dt.timedelta(minutes=5)


def is_text(value) -> bool:
    """Return True when ``value`` is a string that can be encoded and stored:
    no lone surrogate (JSON's ``\\ud800`` escapes make them) and no NUL
    character (PostgreSQL refuses it)."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(value, limit: int = 80) -> str:
    """Return ``repr(value)`` of a string or a scalar, cut to about ``limit``
    characters, or just the type of a list or an object (whose repr may be
    huge or nested too deeply to build): for error messages and logs that
    must stay one short line whatever was sent."""
    if isinstance(value, (list, dict)):
        return f"a JSON {'array' if isinstance(value, list) else 'object'}"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def parse_envelope(body: bytes | str) -> dict:
    """Return the JSON object in ``body`` (an HTTP request or SQS message
    body). Raises :class:`SnsMalformed` when it is not UTF-8, not JSON,
    nested too deeply to parse, or not a JSON object."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SnsMalformed("the body is not UTF-8") from exc
    try:
        envelope = json.loads(body)
    except (ValueError, TypeError, RecursionError) as exc: # RecursionError: brackets nested too deeply
        raise SnsMalformed("the body is not JSON") from exc
    if not isinstance(envelope, dict):
        raise SnsMalformed("not an SNS message (not a JSON object)")
    return envelope


def _timestamp(value: str) -> dt.datetime:
    try:
        sent = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SnsMalformed(f"the Timestamp {shown(value)} is not a time") from exc
    return sent if sent.tzinfo else sent.replace(tzinfo=dt.timezone.utc)


def check_shape(message) -> dt.datetime:
    """Return the ``Timestamp`` of ``message`` (aware) when ``message`` is
    well formed: a dict whose known fields (``STRING_FIELDS``) are strings
    that can be stored, of a known ``Type``, with every field that type signs
    (but ``Subject``), a ``MessageId`` of at most ``MAX_MESSAGE_ID``
    characters and a readable ``Timestamp``. Raises :class:`SnsMalformed`
    saying what is wrong otherwise. Whether it is authentic is not checked."""
    if not isinstance(message, dict):
        raise SnsMalformed("not an SNS message (not a JSON object)")
    for name in STRING_FIELDS:
        value = message.get(name)
        if value is None and (name == "Subject" or name not in message):
            continue
        if not is_text(value):
            raise SnsMalformed(f"{name} is not a string: {shown(value)}")
    kind = message.get("Type")
    if kind not in TYPES:
        raise SnsMalformed(f"unknown SNS message type {shown(kind)}")
    for name in TYPES[kind]:
        if name != "Subject" and name not in message:
            raise SnsMalformed(f"the {kind} has no {name}")
    if len(message["MessageId"]) > MAX_MESSAGE_ID:
        raise SnsMalformed(f"the MessageId is longer than {MAX_MESSAGE_ID} characters")
    return _timestamp(message["Timestamp"])


def canonical_string(message: dict) -> bytes:
    """Return the bytes SNS signs for ``message``: each field of its type that
    is present, as ``name\\nvalue\\n``, in the documented order. Raises
    :class:`SnsMalformed` for an unknown ``Type``."""
    kind = message.get("Type")
    fields = TYPES.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise SnsMalformed(f"unknown SNS message type {shown(kind)}")
    parts = []
    for name in fields:
        if name in message and message[name] is not None:
            parts.append(f"{name}\n{message[name]}\n")
    return "".join(parts).encode("utf-8")


# The URL SNS signs is on an SNS host: no redirect is followed, even to another SNS host.
_OPENER = urllib.request.build_opener(RefuseRedirects())


def _download(url: str) -> bytes:
    """Return the first 64 KB of the body at ``url``. Raises :class:`OSError`
    when it cannot be fetched or answers anything but 200: any redirect (3xx)
    is such a failure, since none is followed."""
    try:
        with _OPENER.open(url, timeout=10) as response:
            if response.status != 200:
                raise OSError(f"HTTP {response.status} from {url}")
            return response.read(64 * 1024)
    except (http.client.HTTPException, ValueError) as exc:  # a malformed answer, or a URL urllib cannot use
        raise OSError(f"cannot fetch {url}: {exc}") from exc


class SnsVerifier:
    """Checks SNS messages; see the module docstring.

    ``cert_host`` and ``cert_scheme`` exist so tests can serve their own
    certificate from 127.0.0.1; production code keeps the defaults.
    """

    def __init__(
        self,
        topic_arns: tuple[str, ...],
        max_age: dt.timedelta = dt.timedelta(hours=1),
        cert_host: re.Pattern = AWS_SNS_HOST,
        cert_scheme: str = "https",
        download: Callable[[str], bytes] = _download,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
    ):
        self.topic_arns = frozenset(topic_arns)
        self.max_age = max_age
        self.cert_host = cert_host
        self.cert_scheme = cert_scheme
        self.download = download
        self.clock = clock
        self._certs: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def check_url(self, url: str, what: str) -> None:
        """Return None when ``url`` is on an allowed SNS host; raise
        :class:`SnsError` otherwise."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise SnsError(f"{what} is not a URL") from exc
        if parts.scheme != self.cert_scheme or not parts.hostname or not self.cert_host.match(parts.hostname):
            raise SnsError(f"{what} is not on an SNS host: {shown(parts.hostname or url)}")
        if parts.username or parts.password or (port is not None and self.cert_scheme == "https" and port != 443):
            raise SnsError(f"{what} has an unexpected form")

    def _certificate(self, url: str) -> x509.Certificate:
        self.check_url(url, "SigningCertURL")
        if not urlsplit(url).path.endswith(".pem"):
            raise SnsError("SigningCertURL is not a .pem file")
        with self._lock:
            cert = self._certs.get(url)
        if cert is None:
            try:
                cert = x509.load_pem_x509_certificate(self.download(url))
            except (OSError, ValueError) as exc:
                raise SnsError(f"cannot load the signing certificate: {exc}") from exc
            with self._lock:
                self._certs[url] = cert
        return cert

    def verify(self, message) -> None:
        """Return None when ``message`` is well formed, authentic, fresh and
        for a configured topic. Raises :class:`SnsMalformed` when it is not
        well formed (before anything else, and before any download), and
        :class:`SnsError` saying why when it is refused otherwise."""
        sent = check_shape(message)
        if not self.topic_arns:
            raise SnsError("no SNS topic is configured (NEWSLETTER_SNS_TOPIC_ARNS)")
        if message["TopicArn"] not in self.topic_arns:
            raise SnsError(f"topic {shown(message['TopicArn'])} is not configured")
        version = message.get("SignatureVersion")
        if version not in HASHES:
            raise SnsError(f"unsupported SignatureVersion {shown(version)}")
        try:
            signature = base64.b64decode(message.get("Signature") or "", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SnsError("the signature is not base64") from exc
        if not signature:
            raise SnsError("the message is not signed")
        cert = self._certificate(message.get("SigningCertURL") or "")
        try:
            cert.public_key().verify(signature, canonical_string(message), padding.PKCS1v15(), HASHES[version]())
        except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError) as exc:
            raise SnsError("the signature does not match") from exc
        now = self.clock()
        if now - sent > self.max_age:
            raise SnsError(f"the message is older than {self.max_age} (a replay?)")
        if sent - now > CLOCK_SKEW:
            raise SnsError(f"the message is dated {sent - now} ahead, more than the allowed clock skew of {CLOCK_SKEW}")
