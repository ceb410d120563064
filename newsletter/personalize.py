"""Turning one rendered issue into each reader's message, cheaply.

The expensive work (MJML, CSS inlining, building the MIME structure,
encoding the bodies) happens once per issue in :class:`PreparedMessage`; what
is left per recipient is joining pre-encoded byte strings around the few
personal values (the address, the unsubscribe link, a Message-ID).
"""

from __future__ import annotations

import base64
import email.policy
import email.utils
import secrets
from dataclasses import dataclass
from email.message import EmailMessage
from html import escape

from newsletter.models import UNSUBSCRIBE_URL_MARK, Issue
from newsletter.text import clean_name, quoted_printable

ONE_CLICK = "List-Unsubscribe=One-Click"
ISSUE_HEADER = "X-Newsletter-Issue"

# Stand-ins in the prepared message; only capital letters, so neither header
# folding nor quoted-printable encoding can split or change them.
_TO = b"XNEWSLETTERTOX"
_URL = b"XNEWSLETTERURLX"
_MSGID = b"XNEWSLETTERMSGIDX"
_TEXT = "XNEWSLETTERTEXTBODYX"
_HTML = "XNEWSLETTERHTMLBODYX"
_SOFT_BREAK = b"=\r\n"


@dataclass(frozen=True)
class Recipient:
    """One reader of one send: who, and their personal unsubscribe link."""

    subscriber_id: int
    email: str
    name: str | None
    unsubscribe_url: str


def _qp_around_mark(text: str) -> list[bytes]:
    """Encode the parts of ``text`` between unsubscribe marks, so the link can
    be put in per recipient without encoding the whole body again."""
    return [quoted_printable(part) for part in text.split(UNSUBSCRIBE_URL_MARK)]


def _join_qp(parts: list[bytes], url_qp: bytes) -> bytes:
    # Soft line breaks around the link keep every line within the limit.
    glue = _SOFT_BREAK + url_qp + _SOFT_BREAK
    return glue.join(parts)


def format_address(email_address: str, name: str | None) -> str:
    """Return a To/From header value, RFC 2047-encoding a non-ASCII name.

    The name is cleaned again here (see :func:`clean_name`): a row written
    before names were cleaned, or by hand, must not put a control character
    into a header."""
    return email.utils.formataddr((clean_name(name) or "", email_address), charset="utf-8")


def _to_field(email_address: str, name: str | None) -> str:
    """Return the To header value for a message: :func:`format_address`, with
    a long non-ASCII name cut into encoded words of at most 75 characters,
    one a line (RFC 2047), then the address on a line of its own, so no
    header line is longer than 78 characters (998 is the hard limit)."""
    name = clean_name(name)
    value = format_address(email_address, name)
    if len(value) <= 74 or not name or name.isascii():
        return value
    words, chunk = [], ""
    for char in name:
        if chunk and len((chunk + char).encode("utf-8")) > 45:  # 60 base64 characters
            words.append(chunk)
            chunk = ""
        chunk += char
    words.append(chunk)
    encoded = [f"=?utf-8?b?{base64.b64encode(word.encode('utf-8')).decode('ascii')}?=" for word in words]
    return "\r\n ".join([*encoded, f"<{email_address}>"])


class PreparedMessage:
    """The issue as one RFC 5322 message, built once, filled per recipient.

    Every message carries From, one To, the dated subject, Date, Message-ID,
    ``List-Unsubscribe: <personal link>``, ``List-Unsubscribe-Post:
    List-Unsubscribe=One-Click``, ``X-Newsletter-Issue: <date>`` and a
    multipart/alternative body (text first, then HTML), both parts
    quoted-printable so no line is longer than SES and SMTP allow.

    With ``list_unsubscribe=False`` the two List-Unsubscribe headers are left
    out: for a message to someone who is not a subscriber (a test message),
    for whom there is no link to offer.
    """

    def __init__(self, issue: Issue, from_address: str, list_unsubscribe: bool = True):
        self.issue = issue
        self.from_address = from_address
        self.domain = email.utils.parseaddr(from_address)[1].rpartition("@")[2] or "localhost"
        skeleton = EmailMessage(policy=email.policy.SMTP)
        skeleton["From"] = from_address
        skeleton["To"] = _TO.decode()
        skeleton["Subject"] = issue.subject
        skeleton["Date"] = email.utils.format_datetime(email.utils.localtime())
        skeleton["Message-ID"] = f"<{_MSGID.decode()}@{self.domain}>"
        if list_unsubscribe:
            skeleton["List-Unsubscribe"] = f"<{_URL.decode()}>"
            skeleton["List-Unsubscribe-Post"] = ONE_CLICK
        skeleton[ISSUE_HEADER] = issue.date.isoformat()
        skeleton.set_content(_TEXT, subtype="plain", charset="utf-8", cte="quoted-printable")
        skeleton.add_alternative(_HTML, subtype="html", charset="utf-8", cte="quoted-printable")
        raw = skeleton.as_bytes()
        head, rest = raw.split(b"\r\n\r\n", 1)
        # The header block, cut around its three personal values.
        self._head = _split_all(head + b"\r\n\r\n", (_TO, _MSGID, _URL))
        before_text, after_text = rest.split(_TEXT.encode() + b"\r\n", 1)
        between, after_html = after_text.split(_HTML.encode() + b"\r\n", 1)
        self._before_text, self._between, self._after_html = before_text, between, after_html
        # The part's own line break comes from the skeleton.
        self._text_parts = _qp_around_mark(issue.text.rstrip("\r\n"))
        self._html_parts = _qp_around_mark(issue.html.rstrip("\r\n"))

    def message_id(self, recipient: Recipient) -> str:
        """A fresh, unique Message-ID local part for ``recipient``."""
        return f"{self.issue.date:%Y%m%d}.{recipient.subscriber_id}.{secrets.token_hex(6)}"

    def render(self, recipient: Recipient, message_id: str | None = None) -> bytes:
        """Return the whole message for ``recipient`` as bytes (CRLF lines)."""
        values = {
            _TO: _to_field(recipient.email, recipient.name).encode("utf-8"),
            _MSGID: (message_id or self.message_id(recipient)).encode("ascii"),
            _URL: recipient.unsubscribe_url.encode("ascii"),
        }
        head = b"".join(values.get(piece, piece) for piece in self._head)
        text_url = quoted_printable(recipient.unsubscribe_url)
        html_url = quoted_printable(escape(recipient.unsubscribe_url))
        return b"".join(
            (
                head,
                self._before_text,
                _join_qp(self._text_parts, text_url),
                b"\r\n",
                self._between,
                _join_qp(self._html_parts, html_url),
                b"\r\n",
                self._after_html,
            )
        )


def _split_all(data: bytes, marks: tuple[bytes, ...]) -> list[bytes]:
    """Split ``data`` into a list where each mark is its own item."""
    pieces = [data]
    for mark in marks:
        split: list[bytes] = []
        for piece in pieces:
            if piece in marks:
                split.append(piece)
                continue
            chunks = piece.split(mark)
            for index, chunk in enumerate(chunks):
                if index:
                    split.append(mark)
                split.append(chunk)
        pieces = split
    return pieces
