"""The Amazon SES v2 sender (boto3 ``sesv2``).

Two modes:

- ``bulk`` (default): the issue is stored once as an SES email template whose
  only placeholder is ``{{unsubscribe_url}}``; ``SendBulkEmail`` then sends up
  to 50 readers per call, each entry carrying only its address, its link (as
  replacement template data) and its ``List-Unsubscribe`` header. Every
  entry's status is checked: a call can partly fail.
- ``raw``: one ``SendEmail`` with ``Content.Raw`` per reader, the MIME message
  prepared once and filled per reader (:mod:`newsletter.sending.personalize`).

Errors are sorted the way the dispatcher needs them: throttling and 5xx
(nothing sent: retry), account-level refusals (stop), per-reader refusals
(that reader failed), and a lost answer (outcome unknown).
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    HTTPClientError,
)

from newsletter.core.config import Settings
from newsletter.core.errors import AccountError, TemplateRejected, Throttled, TransientError
from newsletter.core.models import (
    FEEDBACK_MARK,
    MAX_PICKS,
    PICK_ALSO,
    PICK_CODE,
    PICK_NUMBER,
    PICK_SUBJECT,
    PICK_WORDS,
    PICK_BODY,
    PICK_WHY,
    PICKS_MARK,
    PREFERENCES_URL_MARK,
    PREHEADER_MARK,
    REASON_KINDS,
    SES_TEMPLATE_PREFIX,
    UNSUBSCRIBE_URL_MARK,
    DeliveryStatus,
    Issue,
    Pick,
    PicksLayout,
    PicksPart,
    PicksState,
    RestOfDay,
    SPAN_MARKS,
    Reason,
    fill_marks,
    fill_picks,
)
from newsletter.sending.personalize import (
    ISSUE_HEADER,
    ONE_CLICK,
    PreparedMessage,
    Recipient,
    format_address,
    pick_values,
    reader_preheader,
    reader_subject,
)
from newsletter.sending.senders.base import Delivery, Quota, StoppedMidBatch
from newsletter.core.text import html_escape

THROTTLE_CODES = {"TooManyRequestsException", "Throttling", "ThrottlingException", "LimitExceededException"}
ACCOUNT_CODES = {"AccountSuspendedException", "SendingPausedException", "MailFromDomainNotVerifiedException"}
# Per-entry statuses of SendBulkEmail.
ENTRY_RETRY = {"ACCOUNT_THROTTLED", "TRANSIENT_FAILURE"}
ENTRY_FAILED = {"MESSAGE_REJECTED", "INVALID_PARAMETER", "FAILED"}
# Anything else (account suspended or paused, sender not verified, template
# or configuration set missing, daily quota exceeded) stops the run.

PLACEHOLDER = "{{{unsubscribe_url}}}"
# TestRenderEmailTemplate, as the sesv2 model documents it: "Creates a
# preview of the MIME content of an email when provided with a template and
# a set of replacement data. You can execute this operation no more than
# once per second." The pre-flight paces its calls to that, and retries a
# throttled one a few times.
RENDER_INTERVAL = 1.0
RENDER_ATTEMPTS = 5
MAX_BULK_ENTRIES = 50
# Template data every message carries: the characters that the text and
# subject parts of the template spell as placeholders (see template_content).
LITERALS = {"open_brace": "{", "backslash": "\\"}
_LITERAL_CHARS = re.compile(r"[{\\]")
# What a feedback token or a paper's code is made of (tokens.Signer): no
# character HTML would read, so one value serves both parts.
_TOKEN = re.compile(r"[A-Za-z0-9_.~-]*")


class _LostAnswer(Exception):
    """The request went out but no answer came back."""


def _literal_text(text: str, root: str = "") -> str:
    """``text`` with every ``{`` and ``\\`` spelled as a placeholder, so no
    brace or backslash of it reaches the template engine (``root``:
    ``"@root."`` where the text lies inside ``{{#each}}``, whose items do
    not carry the placeholders' values)."""
    brace, backslash = f"{{{{{{{root}open_brace}}}}}}", f"{{{{{{{root}backslash}}}}}}"
    return _LITERAL_CHARS.sub(lambda m: brace if m.group() == "{" else backslash, text)


def _html_slot(raw: str, escaped: str) -> str:
    """The Handlebars that puts a value in the HTML part: its escaped form
    (``escaped``) when escaping changes it, else the value itself (``raw``,
    then free of anything HTML reads). Both inserted as they are
    (``{{{x}}}``): SES does not escape, and a renderer that would gets no
    chance to, so the email is the same either way."""
    return f"{{{{#if {escaped}}}}}{{{{{{{escaped}}}}}}}{{{{else}}}}{{{{{{{raw}}}}}}}{{{{/if}}}}"


# The characters html_escape changes: a value with none of them (nearly
# every link) is answered "" by one search, without translating it.
_ESCAPED_CHARS = re.compile(r"[&<>\"'`]")


def _escaped_if_changed(value: str) -> str:
    """``value`` escaped for HTML (text or a double-quoted attribute) when
    that changes it, else "" (see :func:`_html_slot`)."""
    return html_escape(value) if _ESCAPED_CHARS.search(value) else ""


def _token(value: str) -> str:
    """Return ``value``, a token (see ``_TOKEN``); raise ValueError for
    anything else, which would need escaping in the HTML part."""
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"not a token: {value!r}")
    return value


def template_content(issue: Issue) -> dict[str, str]:
    """Return the SES template (Subject, Html, Text) for ``issue``.

    SES templates are Handlebars, and paper text may hold ``{{``: in the
    HTML part every ``{{`` becomes ``{&#123;`` (shown the same); in the text
    and subject parts, which are not HTML, every ``{`` and backslash becomes
    ``{{{open_brace}}}`` or ``{{{backslash}}}``, filled from :data:`LITERALS`
    (Handlebars' own ``\\{{`` escape is not used: a backslash in the paper
    text before it would undo it, and not every implementation has it).
    Then each reader's values go where the issue has their marks: their
    unsubscribe link, their preferences page (``p``), the reader part of
    their feedback tokens (``f``), their picks (:func:`picks_template`) and
    their preheader (``pre``), which each entry's data fills
    (:func:`template_data`).

    SES does not HTML-escape template values ("SES doesn't escape HTML
    content when rendering the HTML template for a message", *Advanced
    email personalization*): every value is inserted with ``{{{x}}}``, in
    the HTML part in the escaped form the entry's data carries beside it
    (:func:`_html_slot`), so the email is the same whether the renderer
    escapes or not.
    """
    html_picks, text_picks = picks_template(issue.picks) if issue.picks else ("", "")
    html = fill_marks(_spans_template(_literal_html(issue.html)), {
        UNSUBSCRIBE_URL_MARK: _html_slot("unsubscribe_url", "unsubscribe_html"),
        PREFERENCES_URL_MARK: _html_slot("p", "ph"), FEEDBACK_MARK: "{{{f}}}", PICKS_MARK: html_picks,
        PREHEADER_MARK: _html_slot("pre", "preh")})
    text = fill_marks(_spans_template(_literal_text(issue.text)), {UNSUBSCRIBE_URL_MARK: PLACEHOLDER,
                                                  PREFERENCES_URL_MARK: "{{{p}}}", FEEDBACK_MARK: "{{{f}}}",
                                                  PICKS_MARK: text_picks})
    # A subject that differs from reader to reader (see personalize.reader_subject)
    # is each entry's "sj", whole; SES's subject part is text, not HTML.
    subject = "{{{sj}}}" if issue.personal_subject else _literal_text(issue.subject)
    return {"Subject": subject, "Html": html, "Text": text}


def _spans_template(part: str) -> str:
    """``part`` with its spans (see ``models.SPAN_MARKS``) as Handlebars
    blocks on each entry's flags: ``k.[n]`` (paper n has a top card) keeps
    span "K<n>"; ``l.[n]`` (paper n is a top card or a pick) leaves out
    "L<n>" (its title in the list); ``all`` (every title) keeps "ALL" and
    leaves out "ONE". ``#unless`` is one of Handlebars' built-in helpers,
    which SES's templates have ("Handlebars includes additional features
    beyond those documented in this section. For more information, see
    Built-In Helpers", *Advanced email personalization*); ``k.[n]`` is
    Handlebars' segment-literal notation for an array's item ("To
    reference a property that is not a valid identifier, you can use
    segment-literal notation", handlebarsjs.com, *Expressions*). The
    pre-flight (TestRenderEmailTemplate) renders every shape of entry data
    before a send, so an SES that read them otherwise would stop the send
    before its first message."""

    def block(match: re.Match) -> str:
        mark = match.group()
        end = mark.startswith("XNLEND")
        name = mark[6:-1] if end else mark[8:-1]
        kind, number = name[0], name[1:]
        helper = "unless" if kind in ("L", "O") else "if"
        flag = "all" if kind in ("A", "O") else f"{kind.lower()}.[{number}]"
        return f"{{{{/{helper}}}}}" if end else f"{{{{#{helper} {flag}}}}}"

    return SPAN_MARKS.sub(block, part)


def _literal_html(html: str) -> str:
    """``html`` with every ``{{`` written ``{&#123;`` (shown the same), so
    none of it reaches the template engine."""
    return html.replace("{{", "{&#123;")


# A flag that is not set: [] is false in every Handlebars, and the shortest
# such value in an entry's data (which the request carries as a JSON string,
# each quote escaped: "" would take 5 bytes, false 6, [] 3).
_UNSET = ()  # immutable: one value shared by every entry; JSON writes it []
_UNSET_JSON = json.dumps(_UNSET)  # "[]", as an entry carries it


# A reason's subject, by its kind, in a pick's data (one letter each: every
# entry carries them).
WHY_KEYS = {kind: "w" + kind[0] for kind in REASON_KINDS}


def picks_template(layout: PicksLayout) -> tuple[str, str]:
    """Return the (HTML, text) Handlebars of the "Picked for you" section,
    made of the same pieces every other sender fills in Python
    (``personalize.picks_section``), so both read the same: ``{{#each
    picks}}`` one card per pick (``n`` its number, ``t`` the title, ``u``
    its link, ``c`` the paper's feedback token part,
    ``wi``/``wn``/``wa``/``ws``/``wl``/``wc`` the reason's subject by its
    kind, which says which reason's sentence is shown; ``wo`` a second
    interest and ``ww`` the words that show the match, "" for none; ``th``,
    ``uh``, ``wh``, ``woh`` and ``wwh`` the title, link, subject, second
    interest and words escaped for HTML when escaping changes them), or the ``no_match`` line, the ``held`` line (``held``: how many
    papers were held back) or the ``invite`` line. The HTML part shows
    escaped values (:func:`_html_slot`), the text part raw ones; every value
    is inserted with ``{{{x}}}``. The pieces' own text is made literal first."""

    def section(part: PicksPart, html: bool) -> str:
        literal = _literal_html if html else _literal_text
        # Inside {{#each picks}}, the text's placeholders are the entry's
        # (@root, a Handlebars data variable: an item has no placeholders).
        item_literal = _literal_html if html else (lambda text: _literal_text(text, "@root."))
        slot = _html_slot if html else (lambda raw, _escaped: "{{{" + raw + "}}}")
        outside = {PREFERENCES_URL_MARK: slot("p", "ph"), FEEDBACK_MARK: "{{{f}}}"}
        # Inside {{#each}} only the feedback token is the reader's: a token
        # needs no escaping, so no {{#if}} (whose depth for ../ differs
        # between Handlebars versions) comes between it and its block.
        inside = {FEEDBACK_MARK: "{{{../f}}}"}
        # The second interest (wo) and the words (ww), where the reason has them.
        also = "{{#if wo}}" + fill_picks(item_literal(part.also), {PICK_SUBJECT: slot("wo", "woh")}) + "{{/if}}"
        words = "{{#if ww}}" + fill_picks(item_literal(part.words), {PICK_SUBJECT: slot("ww", "wwh")}) + "{{/if}}"
        why = "".join(f"{{{{#if {key}}}}}{fill_picks(item_literal(part.why[kind]), {PICK_SUBJECT: slot(key, 'wh'), PICK_ALSO: also, PICK_WORDS: words})}"
                      "{{/if}}" for kind, key in WHY_KEYS.items())
        card = fill_picks(item_literal(part.card), {PICK_NUMBER: "{{{n}}}", PICK_BODY: paper_tree(
            [item_literal(body) for body in part.bodies]), PICK_CODE: "{{{c}}}", PICK_WHY: why})
        return "".join((
            "{{#if picks}}", fill_marks(literal(part.head), outside), "{{#each picks}}", fill_marks(card, inside),
            "{{/each}}", fill_marks(literal(part.tail), outside), "{{/if}}",
            "{{#if no_match}}", fill_marks(literal(part.no_match), outside), "{{/if}}",
            "{{#if held}}", fill_marks(fill_picks(literal(part.held), {PICK_NUMBER: "{{{held}}}"}), outside), "{{/if}}",
            "{{#if invite}}", fill_marks(literal(part.invite), outside), "{{/if}}",
        ))

    return section(layout.html, True), section(layout.text, False)


def tree_depth(papers: int) -> int:
    """How many bits (``b``, an array of them) a pick's data carries to
    name one of ``papers`` papers (see :func:`paper_tree`)."""
    return max(1, (papers - 1).bit_length())


def paper_tree(bodies: list[str]) -> str:
    """Return the Handlebars that shows, inside ``{{#each picks}}``, the
    body of the paper whose position a pick's bits ``b.[0]``, ``b.[1]``…
    spell in binary (``b.[0]`` the lowest; each ``true`` or ``[]``, as the
    span flags are). Each paper's card is the same for every
    reader, so it lives once in the stored template and each pick's data
    carries a few booleans instead of the paper's text: an entry with five
    full cards stays small (SES charges and throttles by the call, and
    every entry rides in one). SES keeps a template up to 500 KB ("Each
    template can be up to 500 KB in size, including both the text and HTML
    parts", *Using templates to send personalized email*)."""

    def node(low: int, bit: int) -> str:
        if bit < 0:
            return bodies[low] if low < len(bodies) else ""
        high = low + (1 << bit)
        if high >= len(bodies):  # no paper has this bit set here
            return node(low, bit - 1)
        return f"{{{{#if b.[{bit}]}}}}{node(high, bit - 1)}{{{{else}}}}{node(low, bit - 1)}{{{{/if}}}}"

    return node(0, tree_depth(len(bodies)) - 1)


def template_data(recipient: Recipient, issue: Issue, kept: dict | None = None) -> dict:
    """The template data of ``recipient``'s entry (see :func:`entry_data`),
    as a dict. Raises ValueError for a feedback token that is not one."""
    return json.loads(entry_data(recipient, issue, {} if kept is None else kept))


# JSON as an entry carries it: compact, and UTF-8 rather than \u escapes.
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# The pieces of entries kept per issue (see entry_data) stay under this
# many, whatever the list: a reason names the reader's own phrases, so a
# million readers can make nearly a million pick pieces.
KEPT_MOST = 20_000


def entry_data(recipient: Recipient, issue: Issue, kept: dict, quoted: bool = False) -> str:
    """Return the template data of ``recipient``'s SendBulkEmail entry, as
    the JSON text the entry carries (``quoted``: that text as a JSON
    string, as the request carries it): the reader's links, picks and
    preheader (see :func:`template_content` and :func:`picks_template`),
    plus :data:`LITERALS` (SES may use an entry's data instead of the
    default, not over it).

    Every entry carries exactly the same names, at every level, none of
    them null: SES drops a message whose data lacks a name the template
    uses ("all variables that you include in the template must have an
    exact case-sensitive counterpart in the template data") with a
    Rendering Failure. A name that does not apply is "", false or [].

    ``kept``, a dict kept for one issue, holds the JSON of what readers
    share, made once (and quoted once: quoting a text is quoting each of
    its pieces): the span flags of each kind of reader, each pick's data
    (its number, paper and reason), the preheader of each first pick. A
    send has many readers and few of those; the reader's own links are
    encoded for each. Raises ValueError for a feedback token that is not one."""
    links = {
        "unsubscribe_url": recipient.unsubscribe_url, "unsubscribe_html": _escaped_if_changed(recipient.unsubscribe_url),
        "p": recipient.preferences_url, "ph": _escaped_if_changed(recipient.preferences_url),
        "f": _token(recipient.feedback),
    }
    if issue.personal_subject:
        links["sj"] = reader_subject(issue, recipient)
    state = recipient.picks_state if issue.picks is not None else PicksState.OFF
    picks = recipient.picks if state == PicksState.PICKS else ()
    if len(kept) > KEPT_MOST:
        kept.clear()
    links_json = _json(links)[:-1]
    text = "".join((
        _quote(links_json) if quoted else links_json, ",",
        _kept(kept, ("pre", picks[0].position if picks else None), lambda: _preheader_json(issue, recipient), quoted),
        ",", _span_json(issue, recipient, kept, quoted), _PICKS[quoted],
        ",".join(_kept(kept, (number, pick.position, pick.reason), lambda: _pick_json(number, pick, issue, kept),
                       quoted)
                 for number, pick in enumerate(picks, start=1)), "],",
        _kept(kept, ("state", state, recipient.held), lambda: _state_json(
            state if state != PicksState.PICKS or picks else PicksState.NONE, recipient.held), quoted),
        "}",
    ))
    return f'"{text}"' if quoted else text


def _quote(text: str) -> str:
    """``text`` as it is inside a JSON string (without the quotes)."""
    return _json(text)[1:-1]


# A piece of an entry's data, as it is and inside a JSON string.
_PICKS = (',"picks":[', _quote(',"picks":['))


def _kept(kept: dict, key, make, quoted: bool) -> str:
    """Return the text ``make()`` makes (``quoted``: inside a JSON string),
    made the first time it is asked for and quoted the first time it is
    asked for quoted, then kept in ``kept`` under ``key``."""
    # Tuples, not lists: the collector stops tracking a tuple of texts,
    # and a send keeps thousands of them.
    texts = kept.get(key)
    if texts is None:
        texts = kept[key] = (make(), None)
    if not quoted:
        return texts[0]
    if texts[1] is None:
        texts = kept[key] = (texts[0], _quote(texts[0]))
    return texts[1]


def _preheader_json(issue: Issue, recipient: Recipient) -> str:
    """The JSON members of a reader's preheader, raw and escaped for HTML."""
    preheader = reader_preheader(issue, recipient)
    return _json({"pre": preheader, "preh": _escaped_if_changed(preheader)})[1:-1]


def _state_json(state: PicksState, held: int) -> str:
    """The JSON members that say which line of the picks section a reader
    in ``state`` gets, if any (``held``: how many papers were held back),
    and :data:`LITERALS`: the last of an entry's data."""
    return _json({"no_match": state == PicksState.NONE, "held": str(held) if state == PicksState.HELD else "",
                  "invite": state == PicksState.INVITE, **LITERALS})[1:-1]


# A JSON string as an entry carries it (see _json), for the pieces of
# entries written without an encoder.
_string = json.encoder.py_encode_basestring if json.encoder.c_encode_basestring is None else json.encoder.c_encode_basestring


def _pick_json(number: int, pick: Pick, issue: Issue, kept: dict) -> str:
    """The JSON object of a reader's pick number ``number`` (see
    :func:`picks_template`): ``n``, ``c``, the reason's subject under its
    kind's key (``wi``, ``wn``…, the others "") and escaped (``wh``), its
    second interest (``wo``, ``woh``) and words (``ww``, ``wwh``), then the
    paper's bits ``b``, which are kept in ``kept`` by position. Written
    piece by piece rather than through a dict and the JSON encoder: a
    reason's words are the reader's own, so most picks of a send are
    written once each."""
    v = pick_values(number, pick, issue)
    subject = v["s"]
    kind_key = WHY_KEYS[v["k"]]
    bits = kept.get(("bits", pick.position))
    if bits is None:
        bits = kept[("bits", pick.position)] = _json(
            [(pick.position >> bit) & 1 == 1 or _UNSET for bit in range(tree_depth(issue.pickable))])
    return "".join((
        '{"n":', _string(v["n"]), ',"c":', _string(_token(v["c"])), ",",
        ",".join(f'"{key}":{_string(subject) if key == kind_key else _EMPTY}' for key in WHY_KEYS.values()),
        ',"wh":', _string(_escaped_if_changed(subject)),
        ',"wo":', _string(v["a"]), ',"woh":', _string(_escaped_if_changed(v["a"])),
        ',"ww":', _string(v["w"]), ',"wwh":', _string(_escaped_if_changed(v["w"])),
        ',"b":', bits, "}",
    ))


_EMPTY = _json("")


def _span_json(issue: Issue, recipient: Recipient, kept: dict, quoted: bool = False) -> str:
    """Return the JSON members (``quoted``: inside a JSON string; see
    :func:`entry_data`) of ``recipient``'s span flags (see
    :func:`_spans_template`): ``k``, whose item n is true when paper n has
    a top card; ``l``, whose item n is true when paper n leaves the list
    (a top card or a pick), one for each paper a reader may pick; ``all``,
    every title. Those of a kind of reader are made once and kept: they
    depend only on which of the issue's top candidates are the reader's
    picks or muted for them (see ``personalize.reader_spans``) and on their
    choice of the rest; the reader's other picks then leave the list."""
    picked = (frozenset(p.position for p in recipient.picks)
              if recipient.picks_state == PicksState.PICKS else frozenset())
    on_top = frozenset(position for position in picked if position < issue.candidates)
    muted = frozenset(position for position in recipient.muted if position < issue.candidates)
    key = ("spans", on_top, muted, recipient.rest)
    kind = kept.get(key)
    if kind is None:
        # The spans of a reader of this kind with no other picks: those
        # are set below, reader by reader.
        shown = issue.shown_spans(on_top, every_title=recipient.rest == RestOfDay.TITLES, muted=recipient.muted)
        items = [_json(f"L{i}" not in shown or _UNSET) for i in range(issue.listed_spans)]
        listed = ",".join(items)
        # Where each item of ``listed`` starts, and whether it is set.
        starts = list(itertools.accumulate((len(item) + 1 for item in items), initial=0))[:len(items)]
        # The list's items need no quoting: [], true and commas.
        head = _json({"k": [f"K{i}" in shown or _UNSET for i in range(issue.candidates)]})[1:-1] + ',"l":['
        tail = "]," + _json({"all": "ALL" in shown})[1:-1]
        kind = kept[key] = ((head, _quote(head)), listed, starts, [item == "true" for item in items],
                            (tail, _quote(tail)))
    head, listed, starts, set_already, tail = kind
    # The reader's other picks leave the list: their items become true,
    # cut into the kind's text rather than rebuilt.
    pieces, done = [], 0
    for position in sorted(picked - on_top):
        if position < len(starts) and not set_already[position]:
            pieces += (listed[done:starts[position]], "true")
            done = starts[position] + len(_UNSET_JSON)
    return f'{head[quoted]}{"".join(pieces)}{listed[done:]}{tail[quoted]}'


def data_shapes(issue: Issue, base_url: str) -> list[tuple[str, dict]]:
    """Return (what it is, template data) for each shape of entry data a
    send of ``issue`` can use: a reader with the most picks, of every reason
    kind, their values escaped for HTML and not; with no match; with what
    matched held back (picked recently); invited to set interests; with
    picks off (only that one when the issue has no
    picks section). Every shape carries the same names (see
    :func:`template_data`); the values that differ decide which branches of
    the template are taken."""

    def sample(state: PicksState, picks: tuple[Pick, ...] = (), held: int = 0,
               rest: RestOfDay = RestOfDay.TITLES) -> dict:
        # Links with "&", so the escaped forms are filled too.
        recipient = Recipient(0, "preflight@example.invalid", None, f"{base_url}/u/pre&flight",
                              f"{base_url}/p/pre&flight", "pre.flight", state, picks, held, rest)
        return template_data(recipient, issue)

    if issue.picks is None:
        return [("no picks section", sample(PicksState.OFF))]
    subjects = itertools.cycle(("a <subject> & more", "a plain subject"))
    # The last papers and the first ones: every bit of a pick's data set and
    # clear, and top cards given up to the next papers.
    positions = [len(issue.papers) - 1 - n if n % 2 else n // 2 for n in range(MAX_PICKS)]
    # Every other pick names a second interest and words (escaped and not).
    picks = tuple(Pick(position % len(issue.papers), "", 0.0, Reason(
        kind, next(subjects), *(("a <second> & one", ("a <word>", "and & more")) if n % 2 else ())))
        for n, (position, kind) in enumerate(zip(positions, itertools.cycle(REASON_KINDS))))
    return [(f"{MAX_PICKS} picks of every reason kind", sample(PicksState.PICKS, picks)),
            ("picks, and just the top of the day", sample(PicksState.PICKS, picks[:3], rest=RestOfDay.COUNT)),
            ("no pick matching", sample(PicksState.NONE)),
            ("matching papers held back, picked recently", sample(PicksState.HELD, held=2)),
            ("an invitation to say what they like", sample(PicksState.INVITE)),
            ("picks off", sample(PicksState.OFF))]


def _describe(exc: ClientError) -> tuple[str, str, int]:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return error.get("Code", "Unknown"), error.get("Message", ""), status


# The key, in a call's botocore context, of its SendBulkEmail entries as
# JSON text (see _entries_aside).
_ENTRIES = "newsletter_bulk_entries"


def _entries_aside(params: dict, context: dict, **_kwargs) -> None:
    """Take a SendBulkEmail call's entries, given as JSON text (see
    ``SesSender._send_bulk``), out of what botocore serializes, into the
    call's context. Botocore's serializer walks every member of every entry
    against the operation's model, which cost as much as all the rest of the
    call (about 25 us a message); the entries are made as JSON already.
    (Botocore's events: "before-parameter-build" is emitted with the call's
    ``params`` and ``context`` before they are serialized.)"""
    entries = params.get("BulkEmailEntries")
    if isinstance(entries, str):
        context[_ENTRIES] = params.pop("BulkEmailEntries")


def _entries_into_body(params: dict, context: dict, **_kwargs) -> None:
    """Put the entries set aside by :func:`_entries_aside` into the request
    body botocore serialized from the call's other members: a JSON object,
    so its last ``}`` is where a member goes. ("before-call" is emitted
    with the serialized request, ``params``, before botocore signs and
    sends it: the signature covers the body as sent.) REST-JSON, the
    protocol of SES v2, sends the members by their names in the API
    reference, ``BulkEmailEntries`` among them."""
    entries = context.pop(_ENTRIES, None)
    if entries is not None:
        params["body"] = params["body"][:-1] + b',"BulkEmailEntries":' + entries.encode("utf-8") + b"}"


def _results_aside(response_dict: dict, customized_response_dict: dict, **_kwargs) -> None:
    """Read a successful SendBulkEmail answer's ``BulkEmailEntryResults``
    with the JSON decoder alone, and give botocore's parser what is left.
    Its parser walks each of the 50 results against the operation's model
    (about a tenth of a call's CPU) to turn them into what the JSON already
    is: the members of ``BulkEmailEntryResult`` (Status, Error, MessageId)
    are strings, sent under the names the API reference gives them, and
    none has a ``jsonName`` of its own in the sesv2 model. (Botocore's
    endpoint emits "before-parse" with the HTTP answer, ``response_dict``,
    before parsing it, then adds the items of ``customized_response_dict``
    to what it parsed.) An answer that is not a JSON object, or an error,
    is left to botocore whole."""
    if response_dict.get("status_code", 500) >= 300:
        return
    try:
        answer = json.loads(response_dict["body"])
    except (TypeError, ValueError):
        return
    if isinstance(answer, dict) and isinstance(answer.get("BulkEmailEntryResults"), list):
        customized_response_dict["BulkEmailEntryResults"] = answer.pop("BulkEmailEntryResults")
        response_dict["body"] = _json(answer).encode("utf-8")


def ses_client(settings: Settings):
    """Return a boto3 ``sesv2`` client for ``AWS_REGION`` (or the endpoint
    ``NEWSLETTER_SES_ENDPOINT_URL``), credentials from the standard AWS
    chain, making one attempt per call, that takes SendBulkEmail's entries
    as JSON text (see :func:`_entries_aside`) and reads its results as
    JSON (see :func:`_results_aside`). Building it contacts nothing."""
    client = boto3.client(
        "sesv2",
        region_name=settings.aws_region,
        endpoint_url=settings.ses_endpoint_url,
        config=Config(
            # The dispatcher retries, knowing what is safe to retry:
            # botocore's own retries would resend a call whose answer was lost.
            retries={"mode": "standard", "total_max_attempts": 1},
            # Checking every call's parameters against the model costs about
            # a tenth of a bulk send's client CPU, and SES checks them again
            # ("parameter_validation -- Whether parameter validation should
            # occur when serializing requests", botocore's Config): our calls
            # are made by this module alone, and a malformed one is answered
            # with a BadRequestException, which stops the run like any
            # refusal. The request is still serialized and signed by botocore.
            parameter_validation=False,
            connect_timeout=5,
            read_timeout=30,
            max_pool_connections=max(10, settings.send_concurrency * 2),
        ),
    )
    client.meta.events.register("before-parameter-build.sesv2.SendBulkEmail", _entries_aside)
    client.meta.events.register("before-call.sesv2.SendBulkEmail", _entries_into_body)
    client.meta.events.register("before-parse.sesv2.SendBulkEmail", _results_aside)
    return client


class SesSender:
    """Sends through SES v2; see the module docstring."""

    name = "ses"

    def __init__(self, settings: Settings, mode: str = "bulk", client=None):
        if mode not in ("bulk", "raw"):
            raise ValueError(f"unknown SES mode {mode!r}")
        self.settings = settings
        self.mode = mode
        self.batch_size = MAX_BULK_ENTRIES if mode == "bulk" else 10
        self.client = client or ses_client(settings)
        self.issue: Issue | None = None
        self.message: PreparedMessage | None = None
        self.template_name = ""
        self._kept: dict = {}
        # What check_ahead found of an edition's template: (edition, the
        # template's content, None when it passed, else SES's refusal).
        self._checked: tuple[str, dict, TemplateRejected | None] | None = None
        self._extra = (
            {"ConfigurationSetName": settings.ses_configuration_set} if settings.ses_configuration_set else {}
        )

    # ---------------------------------------------------------------- calls

    def _call(self, operation: str, **params):
        """Call ``operation``; raise :class:`Throttled`, :class:`TransientError`,
        :class:`AccountError` or ``_LostAnswer``, or the ClientError itself for
        the caller to judge."""
        try:
            return getattr(self.client, operation)(**params)
        except ClientError as exc:
            code, message, status = _describe(exc)
            if "daily message quota" in message.lower():
                raise AccountError(f"SES: the 24-hour sending quota is used up ({message})") from exc
            if code in THROTTLE_CODES or "maximum sending rate exceeded" in message.lower():
                raise Throttled(f"SES throttled the call: {code}: {message}") from exc
            if code in ACCOUNT_CODES:
                raise AccountError(f"SES refuses to send for this account: {code}: {message}") from exc
            if status >= 500:
                raise TransientError(f"SES answered HTTP {status}: {code}") from exc
            raise
        except EndpointConnectionError as exc:  # includes connect timeouts: nothing went out
            raise TransientError(f"cannot reach SES: {exc}") from exc
        except HTTPClientError as exc:  # read timeout, reset or closed connection after sending
            raise _LostAnswer(str(exc)) from exc
        except BotoCoreError as exc:  # credentials missing, bad region and the like
            raise AccountError(f"SES client error: {exc}") from exc

    def quota(self) -> Quota:
        try:
            answer = self._call("get_account")
        except _LostAnswer as exc:
            raise TransientError(f"GetAccount got no answer: {exc}") from exc
        except ClientError as exc:
            code, message, _status = _describe(exc)
            raise AccountError(f"SES GetAccount failed: {code}: {message}") from exc
        if answer.get("SendingEnabled") is False:
            raise AccountError("SES sending is disabled for this account (SendingEnabled is false)")
        quota = answer.get("SendQuota", {})

        def limit(key: str) -> float | None:
            value = quota.get(key)
            return None if value is None or value < 0 else float(value)

        return Quota(
            max_send_rate=limit("MaxSendRate"),
            max_24_hour_send=limit("Max24HourSend"),
            sent_last_24_hours=float(quota.get("SentLast24Hours") or 0),
        )

    # ---------------------------------------------------------------- sending

    def check_ahead(self, issue: Issue, stop: threading.Event) -> None:
        """Run the pre-flight of ``issue`` (see :meth:`_preflight`) before
        its send starts, while an earlier edition of the run sends, on a
        copy of its template under a name of this check's own, deleted
        after: the edition's own template may be in use by another run,
        which holds the edition's lock. :meth:`open` then skips the
        pre-flight, or raises the :class:`TemplateRejected` found here;
        anything else that goes wrong, it meets again. Returns when done,
        or after the call in flight once ``stop`` is set. Raw mode has no
        template: nothing to check."""
        if self.mode != "bulk":
            return
        # SES allows one render a second to the account, and the edition
        # before this one may have rendered its last a moment ago.
        if stop.wait(RENDER_INTERVAL):
            return
        content = template_content(issue)
        scratch = f"{SES_TEMPLATE_PREFIX}{issue.edition}-check-{secrets.token_hex(4)}"
        try:
            self._call("create_email_template", TemplateName=scratch, TemplateContent=content)
        except (ClientError, Throttled, TransientError, AccountError, _LostAnswer):
            return  # open stores the template and checks it itself
        try:
            if self._preflight(issue, scratch, stop):
                self._checked = (issue.edition, content, None)
        except TemplateRejected as exc:
            self._checked = (issue.edition, content, exc)
        except (Throttled, TransientError, AccountError):
            pass  # open checks it itself
        finally:
            try:
                self._call("delete_email_template", TemplateName=scratch)
            except (ClientError, Throttled, TransientError, AccountError, _LostAnswer):
                pass  # a copy left behind is harmless: nothing sends with it

    def open(self, issue: Issue, message: PreparedMessage) -> None:
        self.issue = issue
        self.message = message
        self._kept = {}  # what the entries of this issue's readers share (see entry_data)
        if self.mode != "bulk":
            return
        self.template_name = SES_TEMPLATE_PREFIX + issue.edition
        content = template_content(issue)
        checked = self._checked is not None and self._checked[:2] == (issue.edition, content)
        if checked and self._checked[2] is not None:
            raise self._checked[2]
        try:
            self._call("create_email_template", TemplateName=self.template_name, TemplateContent=content)
        except ClientError as exc:
            code, message_text, _status = _describe(exc)
            if code != "AlreadyExistsException":
                raise AccountError(f"SES refused the email template: {code}: {message_text}") from exc
            # A resumed run: make sure the stored template is this render.
            try:
                self._call("update_email_template", TemplateName=self.template_name, TemplateContent=content)
            except ClientError as update_exc:
                code, message_text, _status = _describe(update_exc)
                raise AccountError(f"SES refused to update the email template: {code}: {message_text}") from update_exc
        except _LostAnswer as exc:
            raise TransientError(f"CreateEmailTemplate got no answer: {exc}") from exc
        if not checked:
            self._preflight(issue, self.template_name)

    def _preflight(self, issue: Issue, template_name: str, stop: threading.Event | None = None) -> bool:
        """Render the template stored as ``template_name`` (``issue``'s, or
        a copy of it) with each shape of entry data (:func:`data_shapes`)
        through SES's ``TestRenderEmailTemplate``, one call a second. SES
        accepts a bulk entry it cannot render and drops it later (a
        Rendering Failure), so this is the last moment to find a name
        missing from the data. Returns whether every shape was rendered:
        false when ``stop`` was set before. Raises
        :class:`TemplateRejected` (SES's message, the edition's template's
        name) when one fails, and :class:`Throttled` or
        :class:`TransientError` when SES keeps refusing to answer; nothing
        was sent either way."""
        answered = None  # when the last call's answer came
        for shape, data in data_shapes(issue, self.settings.web_base):
            for attempt in range(1, RENDER_ATTEMPTS + 1):
                if answered is not None:
                    # A second after the last answer, so a second after SES
                    # handled that call however long the request took.
                    delay = max(0.0, answered + RENDER_INTERVAL - time.monotonic())
                    if stop is None:
                        time.sleep(delay)
                    elif stop.wait(delay):
                        return False
                try:
                    self._call("test_render_email_template", TemplateName=template_name,
                               TemplateData=json.dumps(data, ensure_ascii=False, separators=(",", ":")))
                    break
                except Throttled:
                    if attempt == RENDER_ATTEMPTS:
                        raise
                except _LostAnswer as exc:
                    raise TransientError(f"TestRenderEmailTemplate got no answer: {exc}") from exc
                except ClientError as exc:
                    code, message, _status = _describe(exc)
                    raise TemplateRejected(
                        f"SES cannot render the email template {SES_TEMPLATE_PREFIX + issue.edition} for a "
                        f"reader with {shape}: {code}: {message}; nothing was sent") from exc
                finally:
                    answered = time.monotonic()
        return True

    def send(self, recipients: list[Recipient]) -> list[Delivery]:
        """Return one Delivery per recipient, in order. Raises
        :class:`Throttled` or :class:`TransientError` when the call sent
        nothing, :class:`StoppedMidBatch` when SES refused to go on after
        accepting some of them, and :class:`AccountError` when it refused
        the whole call."""
        if self.mode == "bulk":
            return self._send_bulk(recipients)
        deliveries: list[Delivery] = []
        for recipient in recipients:
            try:
                deliveries.append(self._send_raw(recipient))
            except AccountError as exc:
                if not deliveries:
                    raise
                # The readers before this one were handled: keep their outcomes.
                untried = recipients[len(deliveries):]
                deliveries.extend(Delivery(r, DeliveryStatus.RETRY, reason=str(exc)) for r in untried)
                raise StoppedMidBatch(str(exc), deliveries) from exc
        return deliveries

    def _send_bulk(self, recipients: list[Recipient]) -> list[Delivery]:
        # The entries as the request carries them, in JSON (see _entries_aside).
        entries = "[" + ",".join(
            '{"Destination":{"ToAddresses":[' + _json(format_address(r.email, r.name))
            + ']},"ReplacementEmailContent":{"ReplacementTemplate":{"ReplacementTemplateData":'
            + entry_data(r, self.issue, self._kept, quoted=True)
            + '}},"ReplacementHeaders":[{"Name":"List-Unsubscribe","Value":' + _json(f"<{r.unsubscribe_url}>") + "}]}"
            for r in recipients
        ) + "]"
        try:
            answer = self._call(
                "send_bulk_email",
                FromEmailAddress=self.settings.from_address,
                DefaultContent={
                    "Template": {
                        "TemplateName": self.template_name,
                        "TemplateData": json.dumps(LITERALS),
                        "Headers": [
                            {"Name": "List-Unsubscribe-Post", "Value": ONE_CLICK},
                            {"Name": ISSUE_HEADER, "Value": self.issue.edition},
                        ],
                    }
                },
                BulkEmailEntries=entries,
                **self._extra,
            )
        except _LostAnswer as exc:
            return [Delivery(r, DeliveryStatus.UNKNOWN, reason=f"no answer from SES: {exc}") for r in recipients]
        except ClientError as exc:
            code, message, _status = _describe(exc)
            raise AccountError(f"SES refused SendBulkEmail: {code}: {message}") from exc
        results = answer.get("BulkEmailEntryResults", [])
        if len(results) != len(recipients):
            return [Delivery(r, DeliveryStatus.UNKNOWN, reason="SES answered for a different number of entries") for r in recipients]
        deliveries = []
        stopped = None
        for recipient, result in zip(recipients, results):
            status = result.get("Status", "FAILED")
            reason = f"{status}: {result.get('Error', '')}".strip(": ")
            if status == "SUCCESS":
                deliveries.append(Delivery(recipient, DeliveryStatus.SENT, message_id=result.get("MessageId")))
            elif status in ENTRY_RETRY:
                deliveries.append(Delivery(recipient, DeliveryStatus.RETRY, reason=reason))
            elif status in ENTRY_FAILED:
                deliveries.append(Delivery(recipient, DeliveryStatus.FAILED, reason=reason))
            else:
                # Not sent; other entries of the call may have been.
                deliveries.append(Delivery(recipient, DeliveryStatus.RETRY, reason=reason))
                stopped = stopped or f"SES stopped sending: {reason}"
        if stopped:
            raise StoppedMidBatch(stopped, deliveries)
        return deliveries

    def _send_raw(self, recipient: Recipient) -> Delivery:
        try:
            answer = self._call(
                "send_email",
                FromEmailAddress=self.settings.from_address,
                Destination={"ToAddresses": [format_address(recipient.email, recipient.name)]},
                Content={"Raw": {"Data": self.message.render(recipient)}},
                **self._extra,
            )
        except Throttled as exc:
            return Delivery(recipient, DeliveryStatus.RETRY, reason=str(exc))
        except TransientError as exc:
            return Delivery(recipient, DeliveryStatus.RETRY, reason=str(exc))
        except _LostAnswer as exc:
            return Delivery(recipient, DeliveryStatus.UNKNOWN, reason=f"no answer from SES: {exc}")
        except ClientError as exc:
            code, message, _status = _describe(exc)
            if code in ("MessageRejected", "BadRequestException"):
                return Delivery(recipient, DeliveryStatus.FAILED, reason=f"{code}: {message}")
            raise AccountError(f"SES refused SendEmail: {code}: {message}") from exc
        return Delivery(recipient, DeliveryStatus.SENT, message_id=answer.get("MessageId"))

    def close(self, complete: bool) -> None:
        if self.mode != "bulk" or not complete or not self.template_name:
            return
        try:
            self._call("delete_email_template", TemplateName=self.template_name)
        except (ClientError, Throttled, TransientError, AccountError, _LostAnswer):
            pass  # a template left behind is harmless; the next send of this day replaces it

    def where(self, issue: Issue) -> None:
        return None

    def send_single(self, to_address: str, data: bytes) -> str:
        """Send one ready-made MIME message with ``SendEmail`` (Raw); return
        the SES message id. Raises :class:`SendError` subclasses."""
        try:
            answer = self._call(
                "send_email",
                FromEmailAddress=self.settings.from_address,
                Destination={"ToAddresses": [to_address]},
                Content={"Raw": {"Data": data}},
                **self._extra,
            )
        except _LostAnswer as exc:
            raise TransientError(f"no answer from SES: {exc}") from exc
        except ClientError as exc:
            code, message, _status = _describe(exc)
            raise AccountError(f"SES refused SendEmail: {code}: {message}") from exc
        return answer.get("MessageId", "")
