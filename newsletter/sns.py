"""Verifying Amazon SNS messages before acting on them.

SNS signs every message it delivers (HTTP POST or SQS): the signature covers a
canonical string of named fields, made with the private key of a certificate
that SNS publishes at ``SigningCertURL``. A message is accepted only when

- its topic is one of the configured ``NEWSLETTER_SNS_TOPIC_ARNS``;
- ``SigningCertURL`` is https on an SNS host of AWS
  (``sns.<region>.amazonaws.com``) and ends in ``.pem``;
- the signature (version 1: SHA1 with RSA; version 2: SHA256 with RSA) checks
  out with that certificate's public key;
- it is not older than ``max_age`` (a replayed old message is refused).

Certificates are cached by URL, so a burst of notifications costs one fetch.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import threading
import urllib.request
from typing import Callable
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from newsletter.errors import SnsError

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


def canonical_string(message: dict) -> bytes:
    """Return the bytes SNS signs for ``message``: each field of its type that
    is present, as ``name\\nvalue\\n``, in the documented order."""
    fields = TYPES.get(message.get("Type", ""))
    if fields is None:
        raise SnsError(f"unknown SNS message type {message.get('Type')!r}")
    parts = []
    for name in fields:
        if name in message and message[name] is not None:
            parts.append(f"{name}\n{message[name]}\n")
    return "".join(parts).encode("utf-8")


def _download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read(64 * 1024)


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
        """Raise :class:`SnsError` unless ``url`` is on an allowed SNS host."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise SnsError(f"{what} is not a URL") from None
        if parts.scheme != self.cert_scheme or not parts.hostname or not self.cert_host.match(parts.hostname):
            raise SnsError(f"{what} is not on an SNS host: {parts.hostname or url!r}")
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
                raise SnsError(f"cannot load the signing certificate: {exc}") from None
            with self._lock:
                self._certs[url] = cert
        return cert

    def verify(self, message: dict) -> None:
        """Return None when ``message`` is authentic, fresh and for a
        configured topic; raise :class:`SnsError` saying why not otherwise."""
        if not isinstance(message, dict):
            raise SnsError("not an SNS message")
        if not self.topic_arns:
            raise SnsError("no SNS topic is configured (NEWSLETTER_SNS_TOPIC_ARNS)")
        if message.get("TopicArn") not in self.topic_arns:
            raise SnsError(f"topic {message.get('TopicArn')!r} is not configured")
        version = str(message.get("SignatureVersion", ""))
        if version not in HASHES:
            raise SnsError(f"unsupported SignatureVersion {version!r}")
        try:
            signature = base64.b64decode(message.get("Signature") or "", validate=True)
        except (binascii.Error, ValueError):
            raise SnsError("the signature is not base64") from None
        if not signature:
            raise SnsError("the message is not signed")
        cert = self._certificate(str(message.get("SigningCertURL", "")))
        try:
            cert.public_key().verify(signature, canonical_string(message), padding.PKCS1v15(), HASHES[version]())
        except (InvalidSignature, TypeError, ValueError):
            raise SnsError("the signature does not match") from None
        try:
            sent = dt.datetime.fromisoformat(str(message.get("Timestamp", "")).replace("Z", "+00:00"))
        except ValueError:
            raise SnsError("the message has no valid Timestamp") from None
        if sent.tzinfo is None:
            sent = sent.replace(tzinfo=dt.timezone.utc)
        if self.clock() - sent > self.max_age:
            raise SnsError(f"the message is older than {self.max_age} (a replay?)")
