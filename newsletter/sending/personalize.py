"""Turning one rendered issue into each reader's message, cheaply.

The expensive work (MJML, CSS inlining, building the MIME structure,
encoding the bodies) happens once per issue in :class:`PreparedMessage`; what
is left per recipient is joining pre-encoded byte strings around the few
personal values (the address, their links, a Message-ID) and their picks,
spliced from pick cards rendered once per issue (:func:`picks_section`).
"""

from __future__ import annotations

import base64
import email.policy
import email.utils
import re
import secrets
from dataclasses import dataclass
from email.header import Header
from email.message import EmailMessage

from newsletter.core.models import (
    FEEDBACK_MARK,
    PERSONAL_MARKS,
    PICK_CODE,
    PICK_NUMBER,
    PICK_ALSO,
    PICK_ALSO_CHARS,
    PICK_SUBJECT,
    PICK_SUBJECT_CHARS,
    PICK_WORDS,
    PICK_WORDS_CHARS,
    PICK_BODY,
    PICK_WHY,
    PICKS_MARK,
    PREFERENCES_URL_MARK,
    PREHEADER_MARK,
    SPAN_MARKS,
    SUBJECT_PICK_MARK,
    UNSUBSCRIBE_URL_MARK,
    Issue,
    Pick,
    PicksState,
    Reason,
    RestOfDay,
    fill_marks,
    fill_picks,
    show_spans,
)
from newsletter.core.text import clean_name, html_escape, quoted_printable
from newsletter.issue.render import picked_preheader, subject_title

ONE_CLICK = "List-Unsubscribe=One-Click"
ISSUE_HEADER = "X-Newsletter-Issue"

# Stand-ins in the prepared message; only capital letters, so neither header
# folding nor quoted-printable encoding can split or change them.
_TO = b"XNEWSLETTERTOX"
_URL = b"XNEWSLETTERURLX"
_MSGID = b"XNEWSLETTERMSGIDX"
_SUBJECT = b"XNEWSLETTERSUBJECTX"  # the whole Subject line (see _subject_line)
_SUBJECT_LINE = b"Subject: " + _SUBJECT + b"\r\n"
_TEXT = "XNEWSLETTERTEXTBODYX"
_HTML = "XNEWSLETTERHTMLBODYX"
_SOFT_BREAK = b"=\r\n"


@dataclass(frozen=True)
class Recipient:
    """One reader of one send: who, their personal links (unsubscribe,
    preferences), the reader part of their feedback tokens, and their picks
    (``picks_state``: see :class:`PicksState`; ``held``: how many papers
    matching them were held back when it is ``PicksState.HELD``; ``rest``:
    how their email shows the papers that are neither picks nor top cards;
    ``muted``: the positions of the papers their muted phrases hide from
    their top cards)."""

    subscriber_id: int
    email: str
    name: str | None
    unsubscribe_url: str
    preferences_url: str = ""
    feedback: str = ""
    picks_state: PicksState = PicksState.OFF
    picks: tuple[Pick, ...] = ()
    held: int = 0
    rest: RestOfDay = RestOfDay.TITLES
    muted: frozenset[int] = frozenset()


def shown_subject(reason: Reason) -> str:
    """The subject of ``reason`` as an email shows it: a paper's title up to
    its colon ("Score Forgetting Distillation"), anything longer than
    :data:`PICK_SUBJECT_CHARS` (:data:`PICK_ALSO_CHARS` when the reason
    names a second interest) cut at a word with an ellipsis."""
    subject = reason.subject
    if reason.kind in ("seed", "liked"):
        head = subject.split(": ", 1)[0]
        if len(head) >= 8:
            subject = head
    return _cut(subject, PICK_ALSO_CHARS if reason.also else PICK_SUBJECT_CHARS)


def _cut(text: str, most: int) -> str:
    """``text``, cut at a word with an ellipsis when longer than ``most``."""
    if len(text) > most:
        cut = text[: most - 1]
        if " " in cut[most // 2:]:
            cut = cut[: cut.rindex(" ")]
        text = cut.rstrip() + "…"
    return text


def shown_words(reason: Reason) -> str:
    """The words of ``reason`` as an email shows them: joined by ", ", as
    many as fit in :data:`PICK_WORDS_CHARS` ("" for none)."""
    shown = ""
    for word in reason.words:
        longer = f"{shown}, {word}" if shown else word
        if len(longer) > PICK_WORDS_CHARS:
            break
        shown = longer
    return shown


def pick_values(number: int, pick: Pick, issue: Issue) -> dict[str, str]:
    """The values of one of a reader's pick cards in ``issue``, not yet
    escaped: ``n`` its number, ``c`` the paper's part of its feedback token
    (``<position>-<code>``), ``k`` and ``s`` the reason's kind and subject
    (:func:`shown_subject`), ``a`` the second interest it names ("" for
    none), ``w`` its words (:func:`shown_words`). The paper itself is the
    issue's (``PicksPart.bodies``, at ``pick.position``)."""
    reason = pick.reason
    return {
        "n": str(number),
        "c": f"{pick.position}-{issue.paper_codes[pick.position]}",
        "k": reason.kind,
        "s": shown_subject(reason),
        "a": _cut(reason.also, PICK_ALSO_CHARS) if reason.also else "",
        "w": shown_words(reason),
    }


def why_values(part, values: dict[str, str], escape) -> dict[str, str]:
    """The fields of a reason's sentence in ``part`` (a ``PicksPart``) for
    a pick's ``values`` (see :func:`pick_values`), each escaped by ``escape``: its
    subject, and the second interest and words pieces, or nothing."""
    return {PICK_SUBJECT: escape(values["s"]),
            PICK_ALSO: fill_picks(part.also, {PICK_SUBJECT: escape(values["a"])}) if values["a"] else "",
            PICK_WORDS: fill_picks(part.words, {PICK_SUBJECT: escape(values["w"])}) if values["w"] else ""}


def picks_section(issue: Issue, recipient: Recipient) -> tuple[str, str]:
    """Return the (HTML, text) of ``recipient``'s "Picked for you" section,
    filled from the pieces rendered once per issue (empty when the issue or
    the reader has no picks section). Values go in escaped by
    ``text.html_escape``, as the SES template's data carries them, so this
    reads exactly as SES renders its template."""
    layout = issue.picks
    if layout is None or recipient.picks_state == PicksState.OFF:
        return "", ""
    html, text = layout.html, layout.text
    marks_html = {PREFERENCES_URL_MARK: html_escape(recipient.preferences_url),
                  FEEDBACK_MARK: html_escape(recipient.feedback)}
    marks_text = {PREFERENCES_URL_MARK: recipient.preferences_url, FEEDBACK_MARK: recipient.feedback}
    if recipient.picks_state == PicksState.PICKS and recipient.picks:
        cards_html, cards_text = [], []
        for number, pick in enumerate(recipient.picks, start=1):
            v = pick_values(number, pick, issue)
            why_html = fill_picks(html.why[v["k"]], why_values(html, v, html_escape))
            cards_html.append(fill_picks(html.card, {PICK_NUMBER: v["n"], PICK_BODY: html.bodies[pick.position],
                                                     PICK_CODE: html_escape(v["c"]), PICK_WHY: why_html}))
            why_text = fill_picks(text.why[v["k"]], why_values(text, v, str))
            cards_text.append(fill_picks(text.card, {PICK_NUMBER: v["n"], PICK_BODY: text.bodies[pick.position],
                                                     PICK_CODE: v["c"], PICK_WHY: why_text}))
        return (fill_marks(html.head + "".join(cards_html) + html.tail, marks_html),
                fill_marks(text.head + "".join(cards_text) + text.tail, marks_text))
    if recipient.picks_state == PicksState.HELD:
        held = {PICK_NUMBER: str(recipient.held)}
        return fill_marks(fill_picks(html.held, held), marks_html), fill_marks(fill_picks(text.held, held), marks_text)
    piece = "invite" if recipient.picks_state == PicksState.INVITE else "no_match"
    return fill_marks(getattr(html, piece), marks_html), fill_marks(getattr(text, piece), marks_text)


def reader_spans(issue: Issue, recipient: Recipient) -> set[str]:
    """Return the names of the spans of ``issue`` that ``recipient``'s copy
    shows (see ``Issue.shown_spans``): the top cards of papers that are
    neither their picks nor muted for them (the next papers take their
    places, as they do a pick's), the titles of papers that are neither
    their top cards nor their picks, and every title or the one line, as
    they chose."""
    picked = {pick.position for pick in recipient.picks} if recipient.picks_state == PicksState.PICKS else set()
    return issue.shown_spans(picked, every_title=recipient.rest == RestOfDay.TITLES, muted=recipient.muted)


def reader_preheader(issue: Issue, recipient: Recipient) -> str:
    """Return ``recipient``'s preheader (the inbox preview line), not yet
    escaped: "Picked for you: <title>" of their first pick when they have
    picks, else the issue's (its top paper)."""
    if issue.picks is not None and recipient.picks_state == PicksState.PICKS and recipient.picks:
        return picked_preheader(issue.papers[recipient.picks[0].position])
    return issue.preheader


def reader_subject(issue: Issue, recipient: Recipient) -> str:
    """Return ``recipient``'s subject: the issue's, or with the operator's
    subject template naming ``{pick}`` (``Issue.personal_subject``), the
    title of their first pick there, else of the day's top paper."""
    if not issue.personal_subject:
        return issue.subject
    has_picks = issue.picks is not None and recipient.picks_state == PicksState.PICKS and recipient.picks
    paper = issue.papers[recipient.picks[0].position] if has_picks else issue.papers[0]
    return issue.personal_subject.replace(SUBJECT_PICK_MARK, subject_title(paper))


def _mark_values(issue: Issue, recipient: Recipient) -> tuple[dict[str, str], dict[str, str]]:
    """The values of ``recipient``'s personal marks in ``issue``: (those of
    the HTML part, escaped as SES's template escapes them; those of the
    text part)."""
    picks_html, picks_text = picks_section(issue, recipient)
    html_values = {UNSUBSCRIBE_URL_MARK: html_escape(recipient.unsubscribe_url),
                   PREFERENCES_URL_MARK: html_escape(recipient.preferences_url),
                   FEEDBACK_MARK: html_escape(recipient.feedback), PICKS_MARK: picks_html,
                   PREHEADER_MARK: html_escape(reader_preheader(issue, recipient))}
    text_values = {UNSUBSCRIBE_URL_MARK: recipient.unsubscribe_url, PREFERENCES_URL_MARK: recipient.preferences_url,
                   FEEDBACK_MARK: recipient.feedback, PICKS_MARK: picks_text}
    return html_values, text_values


def reader_copy(issue: Issue, recipient: Recipient) -> tuple[str, str]:
    """Return the (HTML, text) of ``issue`` as ``recipient`` reads it: the
    two parts of the message :meth:`PreparedMessage.render` makes for them,
    before their transfer encoding (their links, 👍/👎 token part, picks
    section and preheader filled in)."""
    html_values, text_values = _mark_values(issue, recipient)
    shown = reader_spans(issue, recipient)
    return show_spans(fill_marks(issue.html, html_values), shown), show_spans(fill_marks(issue.text, text_values), shown)


def _qp_around_marks(text: str) -> tuple[list[bytes], list[str]]:
    """Encode the parts of ``text`` between personal marks and the marks
    around its spans, so each reader's values can be put in, and the spans
    they do not get left out, without encoding the whole body again; return
    the encoded parts and the marks between them, in order."""
    pieces = _MARK_SPLIT.split(text)
    return [quoted_printable(part) for part in pieces[0::2]], pieces[1::2]


_MARK_SPLIT = re.compile("(" + "|".join([re.escape(mark) for mark in PERSONAL_MARKS] + [SPAN_MARKS.pattern]) + ")")
_SPAN_BEGIN = "XNLBEGIN"


def _join_qp(parts: list[bytes], marks: list[str], values: dict[str, bytes], shown: set[str]) -> bytes:
    """Join the encoded ``parts`` with the encoded value of each mark between
    them, leaving out the spans not in ``shown`` (and the marks around
    every span); soft line breaks between pieces keep every line within the
    limit."""
    joined = [parts[0]]
    skip_to = None  # the end mark of the span being left out
    for mark, part in zip(marks, parts[1:]):
        if skip_to is not None:
            if mark != skip_to:
                continue
            skip_to = None
        elif mark.startswith(_SPAN_BEGIN):
            if mark[len(_SPAN_BEGIN):-1] not in shown:
                skip_to = "XNLEND" + mark[len(_SPAN_BEGIN):]
                continue
        elif mark in values:
            joined += (_SOFT_BREAK, values[mark])
        joined += (_SOFT_BREAK, part)
    return b"".join(joined)


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
        skeleton["Subject"] = _SUBJECT.decode()
        self._subject = _subject_line(issue.subject)
        skeleton["Date"] = email.utils.format_datetime(email.utils.localtime())
        skeleton["Message-ID"] = f"<{_MSGID.decode()}@{self.domain}>"
        if list_unsubscribe:
            skeleton["List-Unsubscribe"] = f"<{_URL.decode()}>"
            skeleton["List-Unsubscribe-Post"] = ONE_CLICK
        skeleton[ISSUE_HEADER] = issue.edition
        skeleton.set_content(_TEXT, subtype="plain", charset="utf-8", cte="quoted-printable")
        skeleton.add_alternative(_HTML, subtype="html", charset="utf-8", cte="quoted-printable")
        raw = skeleton.as_bytes()
        head, rest = raw.split(b"\r\n\r\n", 1)
        # The header block, cut around its personal values (the subject line: see _subject_line).
        self._head = _split_all(head + b"\r\n\r\n", (_TO, _MSGID, _URL, _SUBJECT_LINE))
        before_text, after_text = rest.split(_TEXT.encode() + b"\r\n", 1)
        between, after_html = after_text.split(_HTML.encode() + b"\r\n", 1)
        self._before_text, self._between, self._after_html = before_text, between, after_html
        # The part's own line break comes from the skeleton.
        self._text_parts, self._text_marks = _qp_around_marks(issue.text.rstrip("\r\n"))
        self._html_parts, self._html_marks = _qp_around_marks(issue.html.rstrip("\r\n"))

    def message_id(self, recipient: Recipient) -> str:
        """A fresh, unique Message-ID local part for ``recipient``."""
        return f"{self.issue.edition.replace('-', '')}.{recipient.subscriber_id}.{secrets.token_hex(6)}"

    def render(self, recipient: Recipient, message_id: str | None = None) -> bytes:
        """Return the whole message for ``recipient`` as bytes (CRLF lines)."""
        values = {
            _TO: _to_field(recipient.email, recipient.name).encode("utf-8"),
            _MSGID: (message_id or self.message_id(recipient)).encode("ascii"),
            _URL: recipient.unsubscribe_url.encode("ascii"),
        }
        values[_SUBJECT_LINE] = (_subject_line(reader_subject(self.issue, recipient)) if self.issue.personal_subject
                                 else self._subject)
        head = b"".join(values.get(piece, piece) for piece in self._head)
        html_values, text_values = _mark_values(self.issue, recipient)
        shown = reader_spans(self.issue, recipient)
        return b"".join(
            (
                head,
                self._before_text,
                _join_qp(self._text_parts, self._text_marks,
                         {mark: quoted_printable(value) for mark, value in text_values.items()}, shown),
                b"\r\n",
                self._between,
                _join_qp(self._html_parts, self._html_marks,
                         {mark: quoted_printable(value) for mark, value in html_values.items()}, shown),
                b"\r\n",
                self._after_html,
            )
        )


def _subject_line(subject: str) -> bytes:
    """Return the Subject header line of ``subject``, CRLF-ended, no line
    over 78 characters: folded at spaces when it is ASCII, else RFC 2047
    encoded words each holding a whole piece of it, spaces included. (The
    standard library's folding of mixed text leaves a space at the end of
    a folded line and drops the space between two encoded words: a reader
    would see two spaces, or none, where the subject has one.)"""
    if subject.isascii():
        return email.policy.SMTP.fold("Subject", subject).encode("ascii")
    encoded = Header(subject, "utf-8", header_name="Subject").encode(linesep="\r\n", maxlinelen=76)
    return f"Subject: {encoded}\r\n".encode("ascii")


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
