"""Personal picks in the email: every sender carries exactly the same picks.

The SES bulk mode stores one Handlebars template per issue and sends each
reader's picks as template data; the outbox, raw and SMTP senders splice the
same picks into the message in Python. Rendered with a real Handlebars
implementation (pybars3, a port of Handlebars.js), the template gives each
reader exactly the outbox's message, for hostile paper text and reasons too.
And the email with the most picks any reader can get stays under Gmail's clip.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import functools
import html
import html.parser
import json
import re

import pybars
import pytest

from conftest import EXAMPLE, FIXTURES, SECRET, ok, one_line_error, outbox_file
from newsletter.papers.batches import load_batch
from newsletter.core.config import Settings
from newsletter.core.models import (
    MAX_PICKS,
    PICK_SUBJECT_CHARS,
    REASON_KINDS,
    Batch,
    EditionKind,
    Paper,
    Pick,
    PicksState,
    Reason,
    paper_key,
    paper_path,
)
from newsletter.sending.personalize import PreparedMessage, Recipient
from newsletter.issue.render import HTML_LIMIT_BYTES, preheader_for, render_for_readers
from newsletter.sending.senders.ses import LITERALS, entry_data, template_content, template_data
from newsletter.core.text import html_escape, quoted_printable
from newsletter.readers.tokens import Signer
from sesv2_standin import missing_names, parse_names

DAY = dt.date(2025, 3, 11)
FROM = "Daily Papers <newsletter@example.com>"
HOSTILE_TITLES = [
    "{{#each picks}}{{t}}{{/each}} and {{{f}}} in a title",
    "<script>alert('x')</script> & \"quotes\" `ticks` = equals",
    "Braces { and } and \\{{ escaped }} and {{!comment}}",
    "漢字とかなで書かれた長いタイトル" * 4,
    "A title " + "very " * 60 + "long",
    "Plain title",
]
HOSTILE_SUBJECTS = ["<b>bold</b> & {{x}}", "near <i>{{y}}</i>", "{{{p}}} phrase", "Ada \"Byron\" Lovelace",
                    "x" * 300, "cs.CV {{/if}}"]
# The second interest and the words a reason may carry, by kind.
HOSTILE_EVIDENCE = {"interest": ("<u>second</u> & {{z}}", ("<w>ord", "{{{f}}}", "unlearning")),
                    "near": ("", ("close & near",)), "liked": ("", ("shared <s>",))}


@pytest.fixture(scope="module")
def issue():
    papers = tuple(
        Paper(title, f"Abstract {n} with {{{{ braces }}}} & <tags>.", authors=("A. B.",),
              arxiv_id=f"2503.{n:05d}", url=f"https://arxiv.org/abs/2503.{n:05d}?q=<x>&y=\"z\"")
        for n, title in enumerate(HOSTILE_TITLES, start=1)
    )
    return render_for_readers(Batch(DAY, papers, source="test"), Settings(secret_key=SECRET), Signer(SECRET))


def reader(issue, number: int, state: str, picks=(), held: int = 0) -> Recipient:
    signer = Signer(SECRET)
    ref = f"reader-ref-{number:011d}"
    base = "http://127.0.0.1:8000"
    return Recipient(number, f"reader{number}@example.org", None, signer.unsubscribe_url(base, ref),
                     signer.preferences_url(base, ref), signer.feedback_reader_part(ref, issue.edition), state,
                     tuple(picks), held)


def readers(issue) -> list[Recipient]:
    picks_of_every_kind = [Pick(i, f"2503.{i + 1:05d}", 0.5, Reason(kind, HOSTILE_SUBJECTS[i],
                                                                     *HOSTILE_EVIDENCE.get(kind, ())))
                           for i, kind in enumerate(REASON_KINDS)]
    return [
        reader(issue, 1, "picks", picks_of_every_kind),
        reader(issue, 2, "picks", [Pick(5, "2503.00006", 0.3, Reason("interest", "plain"))]),
        reader(issue, 3, "none"),
        reader(issue, 4, "invite"),
        reader(issue, 5, "off"),
        reader(issue, 6, "held", held=2),
    ]


def outbox_parts(issue, recipient) -> tuple[str, str, str]:
    """(subject, text, HTML) of the message every sender but SES bulk sends."""
    message = email.message_from_bytes(PreparedMessage(issue, FROM).render(recipient), policy=email.policy.default)
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    return str(message["Subject"]), text.replace("\r\n", "\n"), html.replace("\r\n", "\n")


def ses_parts(issue, recipient) -> tuple[str, str, str]:
    """(subject, text, HTML) as SES renders the stored template with the
    entry's data over the default data (which is LITERALS)."""
    content = template_content(issue)
    data = {**LITERALS, **json.loads(json.dumps(template_data(recipient, issue)))}  # through JSON, as sent
    return tuple(str(compiled(content[part])(data)) for part in ("Subject", "Text", "Html"))


@functools.lru_cache(maxsize=32)
def compiled(source: str):
    """``source`` compiled by pybars3, once: compiling an issue's template
    takes seconds. (Whether values are escaped is decided as it renders; see
    :func:`handlebars_escaping`.)"""
    return pybars.Compiler().compile(source)


def test_ses_renders_each_reader_exactly_as_the_outbox(issue):
    for recipient in readers(issue):
        subject, text, html = outbox_parts(issue, recipient)
        ses_subject, ses_text, ses_html = ses_parts(issue, recipient)
        assert ses_subject == subject
        assert ses_text.rstrip("\n") == text.rstrip("\n"), recipient.picks_state
        assert ses_html.rstrip("\n") == html.rstrip("\n"), recipient.picks_state


# The reader's controls in the footer of every reader's email, in order.
CONTROLS = ("Get it weekly instead", "Pause for two weeks", "Your preferences", "Unsubscribe")


class _Links(html.parser.HTMLParser):
    """The links of a document: (text, address)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href, self._text = dict(attrs).get("href"), []

    def handle_data(self, data):
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self._href is not None:
            self.links.append(("".join(self._text).strip(), self._href))
            self._href = None


@functools.cache
def _signer() -> Signer:
    """One signer for every check: making one rates its key's strength
    (about 20 ms)."""
    return Signer(SECRET)


def assert_controls_signed_for(markup: str, text: str, ref: str) -> None:
    """The footer of an email (its HTML ``markup`` and its ``text``) has
    the reader's four controls, each signed for the reader ``ref``: the
    schedule links are their unsubscribe link's pages."""
    parser = _Links()
    parser.feed(markup)
    parser.close()
    links = {label: href for label, href in parser.links if label in CONTROLS}
    assert list(links) == list(CONTROLS), parser.links[-6:]
    signer = _signer()
    unsubscribe = links["Unsubscribe"]
    assert signer.subscriber_ref(unsubscribe.rpartition("/u/")[2]) == ref
    assert links["Get it weekly instead"] == f"{unsubscribe}/weekly"
    assert links["Pause for two weeks"] == f"{unsubscribe}/pause"
    assert signer.preferences_ref(links["Your preferences"].rpartition("/p/")[2]) == ref
    footer = text.replace("\r\n", "\n").rpartition("\n-- \n")[2]
    assert [line[:-1] for line in footer.splitlines() if line[:-1] in CONTROLS] == list(CONTROLS)
    for label, href in links.items():
        assert f"{label}:\n{href}\n" in footer


def test_every_reader_gets_the_footers_controls_signed_for_them(issue):
    for recipient in readers(issue):
        ref = f"reader-ref-{recipient.subscriber_id:011d}"
        for _subject, text, markup in (outbox_parts(issue, recipient), ses_parts(issue, recipient)):
            assert_controls_signed_for(markup, text, ref)


def test_the_weekly_edition_offers_no_weekly_link(issue):
    weekly = render_for_readers(Batch(DAY, issue.papers, source="test", kind=EditionKind.WEEKLY),
                                Settings(secret_key=SECRET), Signer(SECRET))
    recipient = reader(weekly, 1, "off")
    _subject, text, markup = outbox_parts(weekly, recipient)
    assert f"{recipient.unsubscribe_url}/pause" in markup and f"{recipient.unsubscribe_url}/pause" in text
    assert "weekly instead" not in markup + text and f"{recipient.unsubscribe_url}/weekly" not in markup + text


def test_what_each_reader_sees_of_their_picks(issue):
    every_kind, one, none, invite, off, held = readers(issue)
    _, text, html = outbox_parts(issue, every_kind)
    assert "Picked for you" in html and "PICKED FOR YOU" in text
    for kind in REASON_KINDS:
        assert {"interest": "Matches *", "near": "Close to *", "author": ", whom you follow",
                "seed": ", which you like", "liked": ", which you liked", "category": ". In "}[kind] in text
    # The evidence: a second interest and the words, escaped in HTML.
    assert "Matches *<b>bold</b> & {{x}}* and *<u>second</u> & {{z}}*" in text
    assert "   (<w>ord, {{{f}}}, unlearning)" in text and "which you liked\n   (shared <s>)" in text
    assert ("Matches <em>&lt;b&gt;bold&lt;/b&gt; &amp; {{x}}</em> and <em>&lt;u&gt;second&lt;/u&gt; &amp; "
            "{{z}}</em>: &lt;w&gt;ord, {{{f}}}, unlearning") in html
    assert "Close to <em>near &lt;i&gt;{{y}}&lt;/i&gt;</em>: close &amp; near" in html
    # Hostile text is text: escaped in HTML, never template syntax.
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "{{#each picks}}{{t}}{{/each}}" in text  # as the title said, not run
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    long_subject = "x" * (PICK_SUBJECT_CHARS - 1) + "…"  # cut to the limit
    assert long_subject in html and "x" * PICK_SUBJECT_CHARS not in html + text
    # Each pick votes with the reader's own token part.
    assert text.count(f"{every_kind.feedback}/up") >= len(REASON_KINDS)
    assert every_kind.preferences_url in text
    for line in text.splitlines():
        assert len(line) <= 78 or "://" in line, line
    assert "No paper today matched" in outbox_parts(issue, none)[1]
    assert "TELL US WHAT YOU LIKE" in outbox_parts(issue, invite)[1]
    off_text = outbox_parts(issue, off)[1]
    assert "PICKED FOR YOU" not in off_text and "Tell us" not in off_text and "No paper today" not in off_text
    assert "PICKED FOR YOU" in outbox_parts(issue, one)[1]
    _, held_text, held_html = outbox_parts(issue, held)
    assert "Nothing new for you today: 2 papers you would like were picked for\nyou in the last 30 days" \
        in held_text and "No paper today" not in held_text and "PICKED FOR YOU" not in held_text
    assert "Nothing new for you today: 2 papers you would like were picked for you in the last 30 days" in held_html


def _list_titles(html_part: str, text: str) -> tuple[list[str], list[str]]:
    """The titles under "More papers today": (in the HTML's list, in the
    text part's)."""
    listed = html_part.split('<ul class="rest"', 1)[1].split("</ul>", 1)[0]
    text_list = text.split("MORE PAPERS TODAY", 1)[1]
    return (re.findall(r'<li[^>]*>\s*<a [^>]*>([^<]+)</a>', listed),
            re.findall(r"^\d+\. (.+)$", text_list, flags=re.MULTILINE))


def test_a_readers_picks_leave_the_list_of_titles_in_every_sender():
    """A pick has its card under "Picked for you": the rest of the day
    lists neither it nor a top card, whether the pick is among the top
    papers or far down the day, in the outbox and as SES renders it."""
    titles = [f"Paper number {n} of twenty" for n in range(20)]
    papers = tuple(Paper(title, f"We propose method {n}.", authors=("A. B.",), arxiv_id=f"2503.{n:05d}",
                         url=f"https://arxiv.org/abs/2503.{n:05d}", upvotes=100 - n)
                   for n, title in enumerate(titles))
    issue = render_for_readers(Batch(DAY, papers, source="test"), Settings(secret_key=SECRET, top_cards=2),
                               Signer(SECRET))
    assert issue.candidates == 2 + MAX_PICKS < 15
    picked = (1, 15, 18)  # one of the top two, two far down the day
    picker = reader(issue, 1, "picks", [Pick(i, f"2503.{i:05d}", 0.5, Reason("interest", "method"))
                                        for i in picked])
    for recipient, top, hidden in ((picker, (0, 2), {0, 1, 2, 15, 18}), (reader(issue, 2, "none"), (0, 1), {0, 1})):
        _, text, html_part = outbox_parts(issue, recipient)
        listed_html, listed_text = _list_titles(html_part, text)
        expected = [titles[n] for n in range(20) if n not in hidden]
        assert listed_html == expected and listed_text == expected, recipient.picks_state
        cards = re.findall(r'class="t"[^>]*>([^<]+)</a>\s*</h3>', html_part)
        assert sorted(cards) == sorted(titles[n] for n in set(top) | (set(picked) if recipient is picker else set()))
        assert ses_parts(issue, recipient)[1:] == (text, html_part) or (
            [part.rstrip("\n") for part in ses_parts(issue, recipient)[1:]]
            == [text.rstrip("\n"), html_part.rstrip("\n")])
    # Each entry carries a list flag for every paper a reader may pick, and
    # no more; a reader's picks do not stay in the flags of the next reader.
    spans: dict = {}
    data = template_data(picker, issue, spans)
    assert len(data["l"]) == issue.listed_spans == 20
    assert [n for n, hidden in enumerate(data["l"]) if hidden] == [0, 1, 2, 15, 18]
    twin = reader(issue, 3, "picks", [Pick(1, "2503.00001", 0.5, Reason("interest", "method"))])
    assert [n for n, hidden in enumerate(template_data(twin, issue, spans)["l"]) if hidden] == [0, 1, 2]


class _Preheader(html.parser.HTMLParser):
    """The text of the first hidden div (``display:none``): the preheader."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth, self.text = 0, None

    def handle_starttag(self, tag, attrs):
        if self.depth:
            self.depth += tag == "div"
        elif self.text is None and tag == "div" and "display:none" in (dict(attrs).get("style") or "").replace(" ", ""):
            self.depth, self.text = 1, ""

    def handle_endtag(self, tag):
        if self.depth and tag == "div":
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.text += data


def preheader(html_part: str) -> str:
    """The preview text a mail client shows: the hidden preheader div's
    text, before the run of invisible spacers."""
    parser = _Preheader()
    parser.feed(html_part)
    return parser.text.split("\u200c")[0].strip()


def test_the_preheader_is_the_readers_first_pick_else_the_top_paper(issue):
    every_kind, one, none, invite, off, held = readers(issue)
    assert issue.preheader.startswith(HOSTILE_TITLES[0])
    for recipient in readers(issue):
        shown = preheader(outbox_parts(issue, recipient)[2])
        if recipient.picks:
            title = issue.papers[recipient.picks[0].position].title
            assert shown == f"Picked for you: {title}" or (
                shown.startswith(f"Picked for you: {title[:20]}") and shown.endswith("…")), shown
        else:
            assert shown == issue.preheader, recipient.picks_state
    assert preheader(outbox_parts(issue, one)[2]) == "Picked for you: Plain title"
    # A title with markup is text in the preview, never markup.
    markup_first = reader(issue, 7, "picks", [Pick(1, "k", 0.5, Reason("interest", "x"))])
    html_part = outbox_parts(issue, markup_first)[2]
    assert preheader(html_part) == f"Picked for you: {HOSTILE_TITLES[1]}"
    assert "<script>" not in html_part


def test_a_pick_without_an_arxiv_id_links_its_archive_page():
    # The example day has no arXiv ids: a pick links the paper's page in the
    # archive, as its card does, in both parts and from every sender alike.
    batch = load_batch(EXAMPLE, date=DAY)
    settings = Settings(secret_key=SECRET)
    issue = render_for_readers(batch, settings, Signer(SECRET))
    picked = (0, 40, len(batch.papers) - 1)
    recipient = reader(issue, 1, "picks", [Pick(i, paper_key(batch.papers[i]), 0.5, Reason("interest", "x"))
                                           for i in picked])
    _, text, html_part = outbox_parts(issue, recipient)
    _, ses_text, ses_html = ses_parts(issue, recipient)
    assert (ses_text.rstrip("\n"), ses_html.rstrip("\n")) == (text.rstrip("\n"), html_part.rstrip("\n"))
    section_text = text[text.index("PICKED FOR YOU"):text.index("Picked from your interests")]
    section_html = html_part[html_part.index("Picked for you"):html_part.index("Picked from your interests")]
    pages = [settings.web_base + paper_path(paper_key(batch.papers[i])) for i in picked]
    assert [line.strip() for line in section_text.splitlines() if "/papers/" in line] == pages
    assert [html.unescape(href) for href in re.findall(r'<a class="t" href="([^"]+)"', section_html)] == pages
    assert "arxiv.org" not in section_text + section_html


@pytest.mark.parametrize("papers", [85, 500])
def test_the_most_picks_any_reader_can_get_stay_under_the_clip(papers):
    if papers == 85:
        batch = load_batch(EXAMPLE, date=DAY)
    else:
        batch = Batch(DAY, tuple(
            Paper(f"Paper {n}: " + "a long title about models " * 6, "An abstract. " * 20, authors=("A. B.",) * 5,
                  arxiv_id=f"2503.{n:05d}", url=f"https://arxiv.org/abs/2503.{n:05d}", upvotes=500 - n)
            for n in range(500)), source="synthetic")
    issue = render_for_readers(batch, Settings(secret_key=SECRET), Signer(SECRET))
    longest = sorted(range(len(batch.papers)), key=lambda i: -len(batch.papers[i].title))[:MAX_PICKS]
    picks = [Pick(i, "key", 0.9, Reason("liked", "t" * 500)) for i in longest]
    most = reader(issue, 99, "picks", picks)
    message = PreparedMessage(issue, FROM).render(most)
    html_part = message.split(b"Content-Type: text/html", 1)[1].split(b"\r\n\r\n", 1)[1]
    assert len(html_part) <= HTML_LIMIT_BYTES, len(html_part)
    decoded = email.message_from_bytes(message, policy=email.policy.default).get_body(("html",)).get_content()
    assert decoded.count("More like this") >= MAX_PICKS  # the picks are there
    assert len(quoted_printable(decoded)) <= HTML_LIMIT_BYTES


# -- the hostile batch, as SES documents it renders --------------------------------

QUOTED_URL = 'https://example.org/paper?a=1&b="onmouseover="alert(2)'
HOSTILE_INTEREST = "<em><img src=x onerror=alert(3)></em> & \"x\""  # within PICK_SUBJECT_CHARS


@pytest.fixture(scope="module")
def hostile_issue():
    batch = load_batch(FIXTURES / "hostile-batch.json")
    return render_for_readers(batch, Settings(secret_key=SECRET), Signer(SECRET))


def hostile_readers(issue) -> list[Recipient]:
    """A reader of every shape: picks of every reason kind (the reader's
    own interest with markup among them), the most picks, none, invite, off."""
    count = len(issue.papers)
    every_kind = [Pick(i % count, "k", 0.5, Reason(kind, HOSTILE_INTEREST if kind == "interest" else
                                                     issue.papers[(i + 1) % count].title))
                  for i, kind in enumerate(REASON_KINDS)]
    most = [Pick(i % count, "k", 0.5, Reason(REASON_KINDS[i % len(REASON_KINDS)], f"subject {i} <i>&</i>"))
            for i in range(MAX_PICKS)]
    return [reader(issue, 1, "picks", every_kind), reader(issue, 2, "picks", most), reader(issue, 3, "none"),
            reader(issue, 4, "invite"), reader(issue, 5, "off"), reader(issue, 6, "held", held=1)]


@contextlib.contextmanager
def handlebars_escaping(on: bool):
    """pybars3 with its HTML escaping as Handlebars.js has it (``on``) or
    turned off, as SES renders ("SES doesn't escape HTML content")."""
    if on:
        yield
        return
    original = pybars._compiler.escape
    pybars._compiler.escape = lambda value, *args, **kwargs: value
    try:
        yield
    finally:
        pybars._compiler.escape = original


def rendered(content: dict, data: dict, escaping: bool) -> tuple[str, ...]:
    data = json.loads(json.dumps({**LITERALS, **data}))  # through JSON, as sent
    with handlebars_escaping(escaping):
        return tuple(str(compiled(content[part])(data)) for part in ("Subject", "Text", "Html"))


class _Markup(html.parser.HTMLParser):
    """The tags and attributes an HTML document really has."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def assert_no_live_markup(document: str) -> None:
    """No element or attribute of the hostile batch's text is live in
    ``document``: what it said is shown as text."""
    markup = _Markup()
    markup.feed(document)
    for tag, attrs in markup.tags:
        assert tag not in ("script", "iframe", "img"), (tag, attrs)
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        for name in ("href", "src"):
            if name in attrs:
                assert attrs[name].startswith(("http://", "https://")), attrs[name]
    text = "".join(markup.text)
    assert "<script>alert(1)</script>" in text and "</td></tr></table> Layout-breaking" in text
    assert '<a href="https://evil.example/">click</a> for more.' in text  # the teaser, as text


def test_the_hostile_batch_reads_the_same_whether_ses_escapes_or_not(hostile_issue):
    content = template_content(hostile_issue)
    for recipient in hostile_readers(hostile_issue):
        data = template_data(recipient, hostile_issue)
        raw = rendered(content, data, escaping=False)
        escaped = rendered(content, data, escaping=True)
        assert raw == escaped, recipient.picks_state
        subject, text, html_part = raw
        assert_no_live_markup(html_part)
        # The reader's interest is text in their email, never markup.
        if recipient.subscriber_id == 1:
            assert "<img src=x onerror=alert(3)>" not in html_part
            assert html_escape(HOSTILE_INTEREST) in html_part and HOSTILE_INTEREST in text
        # A paper link with a quote stays inside its href, whole; no & is bare.
        markup = _Markup()
        markup.feed(html_part)
        hrefs = [attrs.get("href") for tag, attrs in markup.tags if tag == "a"]
        assert QUOTED_URL in hrefs
        assert not re.search(r"&(?!amp;|lt;|gt;|quot;|#)", re.sub(r"<!--.*?-->", "", html_part, flags=re.S))
        # Handlebars in paper text reached no template engine: shown as written.
        assert html.unescape(html_part).count("Braces {{x}} and {{{y}}} and \\{{z}} in a title") == \
            html.unescape(out_html_of(hostile_issue, recipient)).count("Braces {{x}} and {{{y}}} and \\{{z}}") >= 1
        # Exactly the outbox's message for the same reader.
        out_subject, out_text, out_html = outbox_parts(hostile_issue, recipient)
        assert (subject, text.rstrip("\n"), html_part.rstrip("\n")) == (out_subject, out_text.rstrip("\n"),
                                                                         out_html.rstrip("\n"))
        assert "Braces {{x}} and {{{y}}} and \\{{z}} in a title" in text


def out_html_of(issue, recipient) -> str:
    return outbox_parts(issue, recipient)[2]


def _names(value, path="") -> set[str]:
    """Every name in template data, with its path ("picks[].t")."""
    if isinstance(value, dict):
        found = set()
        for key, item in value.items():
            found |= {f"{path}{key}"} | _names(item, f"{path}{key}.")
        return found
    if isinstance(value, list):
        return set().union(*(_names(item, path[:-1] + "[].") for item in value)) if value else set()
    return set()


def _nulls(value) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(_nulls(item) for item in value.values())
    if isinstance(value, list):
        return any(_nulls(item) for item in value)
    return False


def test_an_entry_quoted_from_its_kept_pieces_is_its_data_as_a_json_string(hostile_issue, issue):
    """A send quotes each kept piece of an entry once (ses.entry_data's
    ``quoted``): for every kind of reader, of a day with markup, quotes,
    backslashes and CJK and of the example day, one kept dict shared as in
    a send, the entry is exactly its data text as a JSON string."""
    kept: dict = {}
    for day in (hostile_issue, issue):
        for recipient in hostile_readers(day) * 2:  # the second time from what was kept
            text = entry_data(recipient, day, kept)
            assert entry_data(recipient, day, kept, quoted=True) == json.dumps(text, ensure_ascii=False)
            assert json.loads(text) == template_data(recipient, day)
        kept.clear()


def test_every_entry_carries_every_name_the_template_uses(hostile_issue):
    content = template_content(hostile_issue)
    trees = [parse_names(content[part]) for part in ("Subject", "Text", "Html")]
    entries = [template_data(r, hostile_issue) for r in hostile_readers(hostile_issue)]
    for data in entries:
        data = json.loads(json.dumps(data))  # as sent: no default data under it
        assert not _nulls(data)
        for tree in trees:
            assert missing_names(tree, [data]) == [], data
    # The same names at every level, in every entry (a pick's too).
    top = {frozenset(data) for data in entries}
    assert len(top) == 1
    picks = {frozenset(pick) for data in entries for pick in data["picks"]}
    assert len(picks) == 1
    # The walk finds names in blocks: without "invite" an entry would fail.
    broken = {key: value for key, value in entries[0].items() if key != "invite"}
    assert missing_names(trees[2], [broken]) == ["invite"]
    broken_pick = {**entries[0], "picks": [{k: v for k, v in entries[0]["picks"][0].items() if k != "wa"}]}
    assert "wa" in missing_names(trees[2], [broken_pick])


def test_a_reader_whose_matches_were_picked_two_days_ago_is_told_so_not_that_nothing_matched(cli_run, db, env,
                                                                                               tmp_path):
    from newsletter.core.models import Profile, SubscriberRow

    def batch_of(day: str):  # the same papers, dated ``day``
        path = tmp_path / f"{day}.json"
        path.write_text(json.dumps({**json.loads((FIXTURES / "picks-day.json").read_text()), "date": day}))
        return path

    db.import_subscribers([SubscriberRow(0, "erasure@example.org", None),
                           SubscriberRow(1, "corals@example.org", None)])
    erasure, corals = (db.get(email=f"{who}@example.org").id for who in ("erasure", "corals"))
    db.save_profile(Profile(erasure, interests=("concept erasure",), picks=MAX_PICKS))
    db.save_profile(Profile(corals, interests=("marine biology of coral reefs",)))
    outbox = tmp_path / "outbox"

    def message(day: str, subscriber_id: int) -> email.message.EmailMessage:
        return email.message_from_bytes(outbox_file(outbox / day, subscriber_id).read_bytes(),
                                        policy=email.policy.default)

    ok(cli_run("send", str(batch_of("2025-03-10"))))
    first = message("2025-03-10", erasure)
    picked = db.picks_of("2025-03-10", [erasure])[erasure]
    assert 0 < len(picked) < MAX_PICKS  # every paper that matches was picked
    papers = load_batch(FIXTURES / "picks-day.json").papers
    # The preview line: their first pick; the top paper for a reader without picks.
    assert preheader(first.get_body(("html",)).get_content()) == f"Picked for you: {papers[picked[0].position].title}"
    assert preheader(message("2025-03-10", corals).get_body(("html",)).get_content()) == preheader_for(papers)
    assert str(first["Subject"]) == str(message("2025-03-10", corals)["Subject"])

    ok(cli_run("send", str(batch_of("2025-03-12"))))  # the same papers, two days later
    assert db.picks_of("2025-03-12", [erasure]) == {}
    text = message("2025-03-12", erasure).get_body(("plain",)).get_content()
    assert (f"Nothing new for you today: {len(picked)} papers you would like were picked for\n"
            "you in the last 30 days.") in text.replace("\r\n", "\n")
    assert "No paper today matched" not in text and "PICKED FOR YOU" not in text
    assert "No paper today matched" in message("2025-03-12", corals).get_body(("plain",)).get_content()
    # Without picks, the preview line is the top paper's again.
    html_part = message("2025-03-12", erasure).get_body(("html",)).get_content()
    assert preheader(html_part) == preheader_for(papers)


def test_a_big_weeks_pick_cards_keep_the_ses_template_under_its_limit():
    """SES keeps a template up to 500 KB, and the template holds every
    paper's pick card: past a budget, in the edition's order, a paper's
    card is its title and authors only, the same from every sender."""
    from test_render import synthetic_batch

    issue = render_for_readers(synthetic_batch(250), Settings(secret_key=SECRET), Signer(SECRET))
    content = template_content(issue)
    assert sum(len(part.encode("utf-8")) for part in content.values()) < 500 * 1024
    first, last = issue.picks.html.bodies[0], issue.picks.html.bodies[-1]
    assert 'class="tz"' in first and 'class="tz"' not in last and 'class="ln"' not in last
    assert html.escape(issue.papers[-1].title, quote=False) in last
    # The last paper picked reads the same through SES as from the outbox.
    reader = Recipient(1, "a@example.org", None, "https://x.example/u/a", "https://x.example/p/a", "a.b",
                       PicksState.PICKS, (Pick(len(issue.papers) - 1, "k", 0.5, Reason("interest", "x")),))
    outbox_html = PreparedMessage(issue, "From <f@example.org>").render(reader)
    rendered_html = compiled(content["Html"])(template_data(reader, issue))
    assert html.escape(issue.papers[-1].title, quote=False) in rendered_html
    assert html.escape(issue.papers[-1].title, quote=False).encode() in quoted_printable_decoded(outbox_html)


def test_a_week_of_1500_papers_keeps_the_ses_template_under_its_limit():
    """Past what SES's 500 KB template holds, the edition's tail has no
    pick card and is never picked, from any sender; the text part still
    lists every title."""
    from test_render import synthetic_batch

    from newsletter.core.models import Profile
    from newsletter.picks.picking import EditionPicks

    batch = synthetic_batch(1500)
    issue = render_for_readers(batch, Settings(secret_key=SECRET), Signer(SECRET))
    content = template_content(issue)
    assert sum(len(part.encode("utf-8")) for part in content.values()) < 500 * 1024
    assert 0 < issue.pickable < 1500 and len(issue.picks.text.bodies) == issue.pickable
    assert all(paper.url in issue.text for paper in batch.papers)

    class NoStore:  # a list nobody voted on or was picked from
        def papers(self, keys):
            return {}

        def has_picks(self, edition):
            return False

        def profiles(self, ids):
            return {1: Profile(1, interests=(batch.papers[-1].title,))}

        def rated(self, keys, ids):
            return {}

        def recently_picked(self, day, keys, ids):
            return {}

    # The last paper's own title as an interest: the paper itself cannot be
    # picked, only papers that have a card.
    picks = EditionPicks(NoStore(), issue.edition, DAY, issue.papers, issue.pickable).for_readers([1])[1].picks
    assert picks and all(pick.position < issue.pickable for pick in picks)


def quoted_printable_decoded(message: bytes) -> bytes:
    """The decoded bodies of a raw message, for searching."""
    import quopri

    return quopri.decodestring(message)


@pytest.mark.parametrize("template, message", [
    ("{oops} · {name}", "NEWSLETTER_SUBJECT has {oops}; it can use {subject}, {name}, {date}, {count}, {pick}"),
    ("{pick:>40}", "NEWSLETTER_SUBJECT has {pick:>40}"),
    ("Papers {pick", "NEWSLETTER_SUBJECT is not a subject template"),
])
def test_a_subject_template_that_is_not_one_is_refused_naming_the_setting(cli_run, template, message):
    one_line_error(cli_run("send", str(FIXTURES / "picks-day.json"), "--dry-run", NEWSLETTER_SUBJECT=template),
                   message)


def test_an_operators_subject_template_names_each_readers_first_pick(cli_run, db, tmp_path):
    """NEWSLETTER_SUBJECT with {pick}: a reader's subject names their first
    pick, a reader without picks the day's top paper; braces written twice
    are braces, and a long or non-ASCII title is folded and encoded as
    headers are."""
    from newsletter.core.models import Profile, SubscriberRow

    db.import_subscribers([SubscriberRow(0, "decoding@example.org", None),
                           SubscriberRow(1, "corals@example.org", None)])
    decoding, corals = (db.get(email=f"{who}@example.org").id for who in ("decoding", "corals"))
    db.save_profile(Profile(decoding, interests=("speculative decoding",)))
    db.save_profile(Profile(corals, interests=("marine biology of coral reefs",)))
    out = ok(cli_run("send", str(FIXTURES / "picks-day.json"),
                     NEWSLETTER_SUBJECT="{pick} · {{{name}}} · {count} papers, {date}"))
    papers = load_batch(FIXTURES / "picks-day.json").papers
    day = load_batch(FIXTURES / "picks-day.json").date.isoformat()
    first_pick = papers[db.picks_of(day, [decoding])[decoding][0].position].title
    assert first_pick != papers[0].title
    for reader_id, title in ((decoding, first_pick), (corals, papers[0].title)):
        raw = outbox_file(tmp_path / "outbox" / day, reader_id).read_bytes()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert re.fullmatch(re.escape(title) + r" · \{Daily Papers\} · 8 papers, \w{3} \d+ \w{3} \d{4}",
                            str(message["Subject"])), message["Subject"]
        head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
        [subject] = re.findall(r"^Subject: .*(?:\r\n[ \t].*)*", head, flags=re.MULTILINE)
        assert max(len(line) for line in subject.split("\r\n")) <= 78
    # What the command prints is the issue's subject: the top paper's.
    assert f"{papers[0].title} · {{Daily Papers}}" in out


def test_each_readers_subject_reads_exactly_as_written_whatever_its_characters():
    """Long, non-ASCII and markup titles in a subject: the header a client
    decodes is the subject, space for space, and no line is over 78."""
    from newsletter.issue.render import subject_title
    from newsletter.sending.personalize import reader_subject

    papers = tuple(Paper(title, "We propose it.", arxiv_id=f"2503.{n:05d}") for n, title in enumerate(
        [*HOSTILE_TITLES, "Speculative Decoding for Large Language Models &amp; \"Friends\" <a href=x> and more words"]))
    issue = render_for_readers(Batch(DAY, papers, source="test"),
                               Settings(secret_key=SECRET, subject="{pick} · {subject}"), Signer(SECRET))
    for position, paper in enumerate(papers):
        recipient = reader(issue, 1, "picks", [Pick(position, paper_key(paper), 0.5, Reason("interest", "it"))])
        raw = PreparedMessage(issue, FROM).render(recipient)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        expected = f"{subject_title(paper)} · Daily Papers · Tue 11 Mar 2025 · {len(papers)} papers"
        assert str(message["Subject"]) == reader_subject(issue, recipient) == expected
        head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
        [subject] = re.findall(r"^Subject: .*(?:\r\n[ \t].*)*", head, flags=re.MULTILINE)
        assert max(len(line) for line in subject.split("\r\n")) <= 78
