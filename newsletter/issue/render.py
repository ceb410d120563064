"""Rendering a batch into an issue: Jinja2 fills MJML, mjml-python compiles it,
premailer inlines the CSS (never touching the network).

The email's HTML is kept under ``HTML_LIMIT_BYTES`` because Gmail clips a
message whose HTML is over about 102 KB and hides everything after the cut,
the unsubscribe link included. The size that counts is the HTML part as it
is sent: quoted-printable (see :func:`encoded_bytes`), a few per cent more
than the HTML itself for English text and up to three times as much for
text outside ASCII. When the whole day does not fit as cards, the top papers
get cards, the next ones a compact list of linked titles, and any left after
that are counted and linked through the web version: no paper disappears
silently.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import jinja2
from mjml import mjml2html
from premailer import Premailer

from newsletter.core.config import Settings
from newsletter.core.errors import BatchError, RenderError
from newsletter.core.models import (
    FEEDBACK_MARK,
    MAX_PICKS,
    listed_span_count,
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
    REASON_KINDS,
    SUBJECT_PICK_MARK,
    UNSUBSCRIBE_URL_MARK,
    Batch,
    Edition,
    EditionKind,
    Issue,
    Paper,
    PicksLayout,
    PicksPart,
    daily_papers_url,
    fill_marks,
    fill_picks,
    paper_key,
    paper_path,
    thumbnail_path,
)
from newsletter.core.text import TEXT_COLUMNS, html_escape, is_http_url, plural, quoted_printable, wrap_text
from newsletter.issue.tldr import sentences, shorten, tldr
from newsletter.store.picks import REPEAT_WINDOW

HTML_LIMIT_BYTES = 100_000
GMAIL_CLIP_BYTES = 102 * 1024
EMAIL_TEMPLATE = "email.mjml"
TEXT_TEMPLATE = "email.txt"
PICKS_HTML_TEMPLATE = "email_picks.html"
PICKS_TEXT_TEMPLATE = "email_picks.txt"
# The longest a reader's personal values can be (links with their signed
# tokens, the feedback token's reader part), for the size budget.
PERSONAL_URL_CHARS = 120  # after the base URL
PACKAGE_TEMPLATES = Path(__file__).parents[1] / "templates"

TEASER_CHARS = 240
PREHEADER_CHARS = 140
SUBJECT_TITLE_CHARS = 90  # a title in a subject (NEWSLETTER_SUBJECT's {pick})
MIN_CARDS = 3  # even a huge day shows its top papers in full
WEEKLY_TOP_CARDS = 10  # a weekly's "Top of the week" (a daily's: settings.top_cards)
INVITE_PAPERS = 5  # the papers a reader who told us nothing yet can vote on
# The pick cards' papers, HTML and text, rendered once per issue: the SES
# template holds every one of them (see ses.paper_tree), and SES keeps a
# template up to 500 KB. Past this many bytes, in the edition's order, a
# paper's pick card shows its title and authors only (a big weekly's tail).
PICK_BODIES_BYTES = 180_000
# The SES template (the email's HTML and text and every paper's pick card)
# stays within this many bytes: SES keeps a template up to 500 KB ("Each
# template can be up to 500 KB in size, including both the text and HTML
# parts", *Using templates to send personalized email*); the rest is room
# for the placeholders and blocks the SES sender writes in. Past it, in the
# edition's order, a paper has no pick card and is not picked for anyone,
# whatever the sender (the tail of a week of more than about 500 papers).
TEMPLATE_BYTES = 480 * 1024
PICK_TREE_BYTES = 64  # each pick card's share of the blocks that choose it (ses.paper_tree)


# --------------------------------------------------------------------------
# templates


@lru_cache(maxsize=8)
def template_environment(templates_dir: Path | None) -> jinja2.Environment:
    """Return the Jinja2 environment for the user's templates folder.

    Files in ``templates_dir`` (when it exists) override the defaults shipped
    in the package, one file at a time. Templates are reloaded when they
    change on disk. HTML and MJML are autoescaped; ``.txt`` templates are not.
    """
    # The user's folder is searched even when it does not exist yet, so a
    # folder created later is seen once the environment is made anew.
    search = [str(templates_dir)] if templates_dir else []
    search.append(str(PACKAGE_TEMPLATES))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(search),
        autoescape=lambda name: not (name or "").endswith(".txt"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=True,
    )
    env.filters["wrap"] = wrap_text
    env.filters["link_line"] = link_line
    return env


def render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    """Render template ``name``; raises :class:`RenderError` for a missing or
    broken template, or one that uses an undefined variable."""
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"template {exc.name!r} not found") from exc
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"template {exc.name or name}, line {exc.lineno}: {exc.message}") from exc
    except jinja2.UndefinedError as exc:
        raise RenderError(f"template {name}: {exc.message}") from exc
    except Exception as exc:  # templates are user code: a filter may raise anything
        raise RenderError(f"template {name} failed: {type(exc).__name__}: {exc}") from exc


def compile_mjml(source: str) -> str:
    """Compile MJML to HTML with no web fonts. Raises :class:`RenderError`."""
    try:
        return mjml2html(source, disable_comments=True, fonts={})
    except Exception as exc:  # mjml-python raises plain exceptions from Rust
        raise RenderError(f"MJML did not compile: {exc}") from exc


def encoded_bytes(html: str) -> int:
    """Return the size of ``html`` as the message carries it: its
    quoted-printable bytes, encoded as ``personalize.py`` encodes the HTML
    part."""
    return len(quoted_printable(html))


def with_main_landmark(html: str) -> str:
    """Return the compiled page ``html`` with its body's content inside a
    ``<main>`` element, the landmark a web page's readers (and screen
    readers) look for. MJML has no element for it; an email keeps its plain
    ``<body>``, as not every mail client keeps HTML5 elements."""
    opened = re.sub(r"(<body\b[^>]*>)", r"\1<main>", html, count=1, flags=re.IGNORECASE)
    if opened == html:
        raise RenderError("the compiled email has no <body>")
    head, sep, tail = opened.rpartition("</body>")
    return f"{head}</main>{sep}{tail}" if sep else opened + "</main>"


def inline_css(html: str) -> str:
    """Inline the ``<style>`` rules into style attributes, offline.

    Rules that cannot be inlined (media queries: dark mode, phones) stay in a
    ``<style>`` block. Never fetches anything: ``allow_network=False``.
    """
    inlined = Premailer(
        html,
        allow_network=False,
        remove_classes=False,
        strip_important=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
    ).transform()
    # lxml drops the doctype; without it clients render in quirks mode.
    if html[:15].lower() == "<!doctype html>" and not inlined[:15].lower() == "<!doctype html>":
        inlined = "<!doctype html>" + inlined
    return inlined


# --------------------------------------------------------------------------
# view of a paper


def teaser(abstract: str, limit: int = TEASER_CHARS) -> str:
    """Return the first sentence or two of ``abstract``, at most ``limit``
    characters, cut at a word boundary with an ellipsis when shortened."""
    parts = sentences(abstract) or [""]
    text = parts[0]
    if len(parts) > 1 and len(text) < limit // 2 and len(text) + len(parts[1]) < limit:
        text = f"{text} {parts[1]}"
    return shorten(text, limit)


def card_teaser(paper: Paper, source: str = "summary") -> str:
    """Return the teaser a card shows for ``paper``: with ``source``
    ``"summary"`` its AI summary when it has one, else its TL;DR (the
    abstract's contribution sentence, see :func:`tldr.tldr`); with
    ``"abstract"`` the first sentences of its abstract (:func:`teaser`).
    At most ``TEASER_CHARS`` characters and an ellipsis."""
    if source == "abstract":
        return teaser(paper.abstract)
    if paper.ai_summary:
        return teaser(paper.ai_summary)
    return tldr(paper.abstract, TEASER_CHARS)


def link_line(url: str, label: str = "", indent: str = "", width: int = TEXT_COLUMNS) -> str:
    """Return ``label: url`` on one line when it fits in ``width``,
    else the label on one line and the whole URL alone on the next (so a
    long URL is never broken, and stays clickable)."""
    if not label:
        return indent + url
    line = f"{indent}{label}: {url}"
    return line if len(line) <= width else f"{indent}{label}:\n{indent}{url}"


def short_authors(authors: tuple[str, ...], shown: int = 3) -> str:
    """Return ``"A, B and C"`` or, for a long list, its first three and how
    many more: ``"A, B, C + 9"``."""
    if len(authors) <= 1:
        return "".join(authors)
    if len(authors) <= shown:
        return f"{', '.join(authors[:-1])} and {authors[-1]}"
    return f"{', '.join(authors[:shown])} + {len(authors) - shown}"


def paper_url(paper: Paper, web_base: str) -> str:
    """Return the link of ``paper``'s title: its own page (its arXiv
    abstract page when its id is known), else, when it has none, its page in
    the archive (``web_base`` and :func:`paper_path`), which shows its full
    abstract."""
    # Batches keep only http(s) links; checked again here, where they
    # become links, for papers that came from anywhere else.
    return paper.url if paper.url and is_http_url(paper.url) else web_base + paper_path(paper_key(paper))


def _paper_view(paper: Paper, teaser_source: str, web_base: str, position: int = 0) -> dict[str, Any]:
    """What the templates show of ``paper``, the ``position``-th of its
    edition: its title's link (see :func:`paper_url`), its other links as
    (label, URL) pairs (its abstract, PDF, code with its GitHub stars,
    project page, and its daily papers page with its comment count, see
    ``models.daily_papers_url``) and its upvotes in words (``"▲ 12
    upvotes"``), among the rest."""
    hf_page = daily_papers_url(paper)
    code = "Code"
    if paper.code_url and paper.github_stars is not None:
        code = f"Code ★ {paper.github_stars:,}"
    hf = "Hugging Face"
    if hf_page and paper.comment_count:
        hf = f"Hugging Face · {plural(paper.comment_count, 'comment')}"
    own_page = paper.url if paper.url and is_http_url(paper.url) else None
    links = [(label, url) for label, url in (("Abstract", own_page), ("PDF", paper.pdf_url), (code, paper.code_url),
                                             ("Project page", paper.project_url), (hf, hf_page))
             if url and is_http_url(url)]
    counts = []
    if paper.upvotes is not None:
        counts.append("▲ " + plural(paper.upvotes, "upvote"))
    if paper.comment_count is not None and not hf_page:
        counts.append(plural(paper.comment_count, "comment"))
    return {
        "position": position,
        "title": paper.title,
        "url": paper_url(paper, web_base),
        "authors": short_authors(paper.authors) if paper.authors else "",
        "teaser": card_teaser(paper, teaser_source),
        "links": links,
        "upvotes": paper.upvotes,
        "comments": paper.comment_count,
        "counts": " · ".join(counts),
        "keywords": paper.keywords,
        "categories": paper.categories,
        # The figure's copy on the operator's own web app, when the send stored
        # one (NEWSLETTER_THUMBNAILS): the same address for every reader.
        "thumbnail": web_base + thumbnail_path(paper_key(paper)) if paper.thumbnail_stored else None,
        "up": None,  # 👍 and 👎 links, in a reader's email (see render_issue)
        "down": None,
        "archive": None,  # its page in the paper archive, on the web version (see _paper_views)
    }


def one_line(text: str) -> str:
    """Collapse all whitespace, CR and LF included, so ``text`` is safe in a header."""
    return " ".join(text.split())


def subject_for(name: str, edition: Edition, count: int) -> str:
    """Return e.g. ``"Daily Papers · Tue 11 Mar 2025 · 85 papers"``, or for
    a weekly edition ``"Daily Papers · Weekly · 9–15 Mar 2026 · 312 papers"``."""
    weekly = "Weekly · " if edition.kind == EditionKind.WEEKLY else ""
    return one_line(f"{name} · {weekly}{edition.describe()} · {plural(count, 'paper')}")


def subject_lines(template: str, dated: str, name: str, edition: Edition, papers: tuple[Paper, ...]) -> tuple[str, str]:
    """Return the issue's subject and its subject for readers (see
    ``Issue.personal_subject``) from the operator's subject ``template``
    (NEWSLETTER_SUBJECT, checked when the settings were read; "" for the
    ``dated`` subject): the first names the day's top paper for ``{pick}``,
    the second holds :data:`SUBJECT_PICK_MARK` there ("" when the template
    names no pick)."""
    if not template:
        return dated, ""
    values = {"subject": dated, "name": name, "date": edition.describe(), "count": str(len(papers))}
    personal = one_line(template.format(**values, pick=SUBJECT_PICK_MARK))
    common = personal.replace(SUBJECT_PICK_MARK, subject_title(papers[0]))
    return common, personal if SUBJECT_PICK_MARK in personal else ""


def subject_title(paper: Paper) -> str:
    """``paper``'s title as a subject names it: one line of at most about
    :data:`SUBJECT_TITLE_CHARS` characters, cut at a word."""
    return _preview_line("", paper.title, "", SUBJECT_TITLE_CHARS)


def preheader_for(papers: tuple[Paper, ...], limit: int = PREHEADER_CHARS) -> str:
    """Return the inbox preview line: the top title and how many follow."""
    rest = len(papers) - 1
    tail = f" — and {rest} more trending paper{'s' if rest != 1 else ''}" if rest else ""
    return _preview_line("", papers[0].title, tail, limit)


def picked_preheader(paper: Paper, limit: int = PREHEADER_CHARS) -> str:
    """Return the inbox preview line of a reader whose first pick is
    ``paper``: "Picked for you: <its title>"."""
    return _preview_line("Picked for you: ", paper.title, "", limit)


def _preview_line(head: str, title: str, tail: str, limit: int) -> str:
    """``head``, ``title`` and ``tail`` on one line of at most about
    ``limit`` characters, the title cut at a word with an ellipsis."""
    if len(head) + len(title) + len(tail) > limit:
        title = title[: max(20, limit - len(head) - len(tail) - 1)].rsplit(" ", 1)[0] + "…"
    return one_line(head + title + tail)


# --------------------------------------------------------------------------
# the issue


def render_issue(batch: Batch, settings: Settings, limit: int = HTML_LIMIT_BYTES,
                 paper_code: Callable[[int, str], str] | None = None, feedback_chars: int = 64) -> Issue:
    """Render ``batch`` into an :class:`Issue` whose email HTML, once
    personalized for any reader (their links, the most picks any reader can
    get) and quoted-printable encoded, is at most ``limit`` bytes.

    With ``paper_code(position, key)`` (the paper's part of its feedback
    tokens, see ``tokens.Signer.paper_code``), every paper gets 👍 and 👎
    links and the email a "Picked for you" slot that each reader's picks
    fill; without it (a rendering no reader gets), neither.
    ``feedback_chars`` is the longest a reader's part of those tokens is.

    Raises :class:`BatchError` when the batch has no papers and
    :class:`RenderError` when the templates are broken or cannot fit the
    limit even with the smallest layout.
    """
    if not batch.papers:
        raise BatchError(batch.source or "batch", "no papers to render")
    env = template_environment(settings.templates_dir)
    personal = paper_code is not None
    codes = tuple(paper_code(i, paper_key(p)) for i, p in enumerate(batch.papers)) if personal else ()
    views = _paper_views(batch, settings, codes)
    total = len(views)
    top = min(total, WEEKLY_TOP_CARDS if batch.kind == EditionKind.WEEKLY else settings.top_cards)
    candidates = min(total, top + MAX_PICKS) if personal else 0
    layout = _Layout(env, _issue_values(batch, settings, personal, candidates), views)
    picks = picks_layout(env, settings, views, codes) if personal else None
    longest = _longest_marks(settings, feedback_chars, _largest_picks(picks.html) if picks else "",
                             _longest_preheader(batch))
    html, cards, listed = _fitted_email(layout, longest, limit, top)
    web_html = _web_page(layout)
    text = render_template(env, TEXT_TEMPLATE, layout.context(cards, listed))
    if picks:
        picks = _pickable_within(picks, TEMPLATE_BYTES - len(html.encode("utf-8")) - len(text.encode("utf-8")))
        spans = listed_span_count(candidates, len(picks.html.bodies))  # as Issue.listed_spans
        html, text = _listed_within(html, spans), _listed_within(text, spans)
    subject, personal_subject = subject_lines(settings.subject, layout.values["subject"], settings.name,
                                              batch.edition, batch.papers)
    return Issue(
        date=batch.date,
        subject=subject,
        personal_subject=personal_subject if personal else "",
        preheader=layout.values["preheader"],
        html=html,
        text=text,
        web_html=web_html,
        paper_count=layout.total,
        card_count=cards,
        listed_count=listed,
        web_url=layout.values["web_url"],
        kind=batch.kind,
        picks=picks,
        papers=batch.papers,
        paper_codes=codes,
        paper_urls=tuple(view["url"] for view in layout.views),
        top_count=cards,
        candidates=candidates,
    )


def _paper_views(batch: Batch, settings: Settings, codes: tuple[str, ...]) -> list[dict[str, Any]]:
    """What the templates show of each paper of ``batch`` (see
    :func:`_paper_view`), with the link to its archive page (shown on the
    web version), and 👍 and 👎 links when the papers have their feedback
    ``codes`` (none: no links)."""
    views = [_paper_view(p, settings.teaser, settings.web_base, i) for i, p in enumerate(batch.papers)]
    for view, paper in zip(views, batch.papers):
        view["archive"] = settings.web_base + paper_path(paper_key(paper))
    for position, (view, code) in enumerate(zip(views, codes)):
        base_link = f"{settings.web_base}/f/{position}-{code}.{FEEDBACK_MARK}"
        view["up"], view["down"] = f"{base_link}/up", f"{base_link}/down"
    return views


def _issue_values(batch: Batch, settings: Settings, personal: bool, candidates: int) -> dict[str, Any]:
    """What the templates show of the issue as a whole, whatever its
    layout: its name, subject, date, links and the marks that stand for a
    reader's values (the preferences link, picks and the spans that differ
    from reader to reader, for papers 0 to ``candidates`` - 1, only when
    ``personal``)."""
    edition = batch.edition
    weekly = edition.kind == EditionKind.WEEKLY
    return {
        "name": settings.name,
        "subject": subject_for(settings.name, edition, len(batch.papers)),
        "preheader": preheader_for(batch.papers),
        "date": batch.date,
        "date_long": (f"Weekly · {edition.describe()}" if weekly
                      else f"{batch.date:%A} {batch.date.day} {batch.date:%B %Y}"),
        "weekly": weekly,
        "missing_days": [f"{day:%a} {day.day} {day:%b}" for day in batch.missing_days],
        "paper_count": len(batch.papers),
        "web_url": f"{settings.web_base}/issues/{batch.date.isoformat()}{'/weekly' if weekly else ''}",
        "unsubscribe_url": UNSUBSCRIBE_URL_MARK,
        "preferences_url": PREFERENCES_URL_MARK if personal else "",
        "subscribe_url": settings.signup_url,  # on the web version
        "picks_slot": PICKS_MARK if personal else "",
        # The reader's preheader (see personalize.reader_preheader), in the email only.
        "preheader_slot": PREHEADER_MARK if personal else preheader_for(batch.papers),
        "postal_address": settings.postal_address,
        "personal": personal,
        "candidates": candidates,
        # For the pieces of email_picks.html the email draws its cards with.
        "base_url": settings.web_base,
        "feedback": FEEDBACK_MARK,
    }


@dataclass(frozen=True)
class _Layout:
    """An issue's papers (``views``) and ``values``, to be laid out in the
    email template of ``env``: so many cards, then so many listed titles."""

    env: jinja2.Environment
    values: dict[str, Any]
    views: list[dict[str, Any]]

    @property
    def total(self) -> int:
        """How many papers the issue has."""
        return len(self.views)

    def context(self, cards: int, listed: int, web: bool = False) -> dict[str, Any]:
        """The templates' context with ``cards`` papers as cards, the next
        ``listed`` as titles and the rest counted (``web``: for the web
        version). In a copy for readers (``personal``) a reader's picks give
        their top cards to the next papers: the first ``candidates`` papers
        are drawn as cards and as titles, in spans a reader's copy keeps
        or not (see ``Issue.shown_spans``)."""
        personal = self.values["personal"] and not web
        candidates = self.values["candidates"]
        return {
            **self.values,
            "web": web,
            "cards": self.views[: max(cards, candidates)] if personal else self.views[:cards],
            "listed": self.views[: cards + listed] if personal else self.views[cards : cards + listed],
            # The text part is never clipped: it lists every title.
            "all_listed": self.views if personal else self.views[cards:],
            "more_count": self.total - cards - listed,
            "rest_count": self.total - cards,
        }

    def compiled(self, cards: int, listed: int) -> str:
        """The email with ``cards`` cards and ``listed`` titles, compiled
        (its CSS not inlined yet)."""
        return compile_mjml(render_template(self.env, EMAIL_TEMPLATE, self.context(cards, listed)))


def _longest_marks(settings: Settings, feedback_chars: int, largest_picks: str,
                   longest_preheader: str) -> dict[str, str]:
    """Every personal mark with the longest value a reader can have in its
    place (``largest_picks``: the largest picks section;
    ``longest_preheader``: the longest preheader, escaped), so a size
    measured with them holds for every reader's email."""
    return {
        UNSUBSCRIBE_URL_MARK: "x" * (len(settings.web_base) + PERSONAL_URL_CHARS),
        PREFERENCES_URL_MARK: "x" * (len(settings.web_base) + PERSONAL_URL_CHARS),
        FEEDBACK_MARK: "x" * feedback_chars,
        PICKS_MARK: largest_picks,
        PREHEADER_MARK: longest_preheader,
    }


def _longest_preheader(batch: Batch) -> str:
    """The longest preheader a reader can get from ``batch``, escaped for
    HTML: the issue's, or "Picked for you: " and one of its titles."""
    lines = [preheader_for(batch.papers), *(picked_preheader(p) for p in batch.papers)]
    return max((html_escape(line) for line in lines), key=lambda line: len(line.encode("utf-8")))


def _fitted_email(layout: _Layout, longest: dict[str, str], limit: int, top: int) -> tuple[str, int, int]:
    """Return (html, cards, listed): the email with ``top`` cards (fewer only
    when they cannot fit) and the most listed titles, whose CSS-inlined HTML
    with the ``longest`` values filled in and every span shown (more than
    any reader gets) is at most ``limit`` bytes quoted-printable. Raises
    :class:`RenderError` when even the smallest layout is over."""

    def personalized_bytes(html: str) -> int:
        return encoded_bytes(fill_marks(html, longest))

    sizes: dict[tuple[int, int], int] = {}

    def compiled_size(cards: int, listed: int) -> int:
        if (cards, listed) not in sizes:
            sizes[cards, listed] = personalized_bytes(layout.compiled(cards, listed))
        return sizes[cards, listed]

    # Inlining adds style attributes, so aim a little under the limit before
    # it and tighten the aim if the inlined result still comes out too big.
    budget = int(limit * 0.95)
    for _attempt in range(5):
        cards, listed = _fit(compiled_size, top, layout.total, budget)
        # "{{" written "{&#123;" (shown the same): no paper's text can reach
        # the template engine of an SES template, and every sender sends the
        # same bytes.
        html = inline_css(layout.compiled(cards, listed)).replace("{{", "{&#123;")
        size = personalized_bytes(html)
        if size <= limit:
            return html, cards, listed
        budget -= size - limit + 500
    raise RenderError(f"could not fit the email under {limit:,} bytes; simplify the templates")


def _web_page(layout: _Layout) -> str:
    """The issue's web version: every paper as a card linked to its
    archive page, without 👍 and 👎 links (no reader), with a Subscribe
    link, its content in a ``<main>`` landmark."""
    web = layout.context(layout.total, 0, web=True)
    web["cards"] = [{**view, "up": None, "down": None} for view in web["cards"]]  # no reader, no votes
    web["personal"] = False
    web["preheader_slot"] = web["preheader"]
    return with_main_landmark(compile_mjml(render_template(layout.env, EMAIL_TEMPLATE, web)))


def render_for_readers(batch: Batch, settings: Settings, signer) -> Issue:
    """Render ``batch`` as readers get it: 👍/👎 links with the papers' codes
    signed by ``signer`` (a ``tokens.Signer``), and the "Picked for you"
    slot. Raises as :func:`render_issue`."""
    edition = batch.edition.key
    longest = len(signer.feedback_reader_part("x" * 32, edition))  # a reader's ref is 22 characters
    return render_issue(batch, settings, paper_code=lambda position, key: signer.paper_code(edition, position, key),
                        feedback_chars=longest)


def picks_layout(env: jinja2.Environment, settings: Settings, views: list[dict[str, Any]],
                 codes: tuple[str, ...]) -> PicksLayout:
    """Render the reader's own sections (``email_picks.html`` and
    ``email_picks.txt``) with stand-ins for each reader's values: the pick
    card and each paper's part of it (``views``, with their feedback
    ``codes``; short past :data:`PICK_BODIES_BYTES`), the lines that stand
    for picks, and the invitation with a few varied papers to vote on."""
    values = {"base_url": settings.web_base, "preferences_url": PREFERENCES_URL_MARK, "feedback": FEEDBACK_MARK}
    invited = [(views[i], f"{i}-{codes[i]}") for i in varied_papers(views, INVITE_PAPERS)]
    names = (PICKS_HTML_TEMPLATE, PICKS_TEXT_TEMPLATE)
    try:
        macros = {name: env.get_template(name).make_module(values) for name in names}
        bodies = {name: [str(macros[name].paper_body(view)) for view in views] for name in names}
        _shortened_bodies(macros, bodies, views)
        parts = {name: PicksPart(
            head=str(m.head()),
            card=str(m.card(PICK_NUMBER, PICK_BODY, PICK_CODE, PICK_WHY)),
            tail=str(m.tail()),
            no_match=str(m.no_match()),
            held=str(m.held(PICK_NUMBER, REPEAT_WINDOW.days)),
            invite=str(m.invite(invited)),
            why={kind: str(m.why(kind, PICK_SUBJECT, PICK_ALSO, PICK_WORDS)) for kind in REASON_KINDS},
            bodies=tuple(bodies[name]),
            also=str(m.why_also(PICK_SUBJECT)),
            words=str(m.why_words(PICK_SUBJECT)),
        ) for name, m in macros.items()}
    except jinja2.TemplateError as exc:
        raise RenderError(f"template {getattr(exc, 'name', None) or 'email_picks'}: {exc}") from exc
    except AttributeError as exc:  # a macro missing from an overriding template
        raise RenderError(f"template email_picks lacks a macro: {exc}") from exc
    # As the email's own HTML (see _fitted_email): no "{{" of a paper's text
    # reaches the template engine of an SES template.
    html = PicksPart(**{name: _no_braces(value) for name, value in vars(parts[PICKS_HTML_TEMPLATE]).items()})
    return PicksLayout(html=html, text=parts[PICKS_TEXT_TEMPLATE])


def _shortened_bodies(macros: dict[str, Any], bodies: dict[str, list[str]], views: list[dict[str, Any]]) -> None:
    """Shorten ``bodies`` (each part's pick card bodies, in the edition's
    order) in place: past :data:`PICK_BODIES_BYTES`, a body is the paper's
    title and authors only."""
    total = 0
    for position, view in enumerate(views):
        total += sum(len(bodies[name][position].encode("utf-8")) for name in bodies)
        if total > PICK_BODIES_BYTES:
            plain = [{**view, "teaser": "", "links": [], "counts": "", "thumbnail": None} for view in views[position:]]
            for name in bodies:
                bodies[name][position:] = [str(macros[name].paper_body(view)) for view in plain]
            return


def _pickable_within(picks: PicksLayout, room: int) -> PicksLayout:
    """``picks`` with pick cards only for the papers, from the first, whose
    cards fit in ``room`` bytes with the rest of the section (each card
    counted with :data:`PICK_TREE_BYTES`); the others cannot be picked."""
    parts = (picks.html, picks.text)
    room -= sum(len(piece.encode("utf-8")) for part in parts
                for piece in (part.head, part.card, part.tail, part.no_match, part.held, part.invite, *part.why.values()))
    total = 0
    for position, pair in enumerate(zip(picks.html.bodies, picks.text.bodies)):
        total += sum(len(body.encode("utf-8")) for body in pair) + PICK_TREE_BYTES
        if total > room:
            return PicksLayout(*(replace(part, bodies=part.bodies[:position]) for part in parts))
    return picks


_LIST_SPAN_MARK = re.compile(r"XNL(?:BEGIN|END)L(\d+)X")


def _listed_within(part: str, spans: int) -> str:
    """``part`` with the marks of the list spans "L<n>" kept for the first
    ``spans`` papers only: a later paper can be neither a top card nor a
    pick, so every copy lists it (and an SES entry needs no flag for it)."""
    return _LIST_SPAN_MARK.sub(lambda mark: mark.group() if int(mark.group(1)) < spans else "", part)


def _no_braces(value: Any) -> Any:
    """``value`` (a piece, or a tuple or dict of them) with every ``{{``
    written ``{&#123;``, which HTML shows the same."""
    if isinstance(value, str):
        return value.replace("{{", "{&#123;")
    if isinstance(value, dict):
        return {key: _no_braces(item) for key, item in value.items()}
    return tuple(_no_braces(item) for item in value)


_WORD = re.compile(r"[a-z][a-z-]{3,}")


def varied_papers(views: list[dict[str, Any]], count: int, pool: int = 30) -> list[int]:
    """Return the positions of ``count`` papers of the day's first ``pool``
    that differ most from one another (each next one the paper whose title
    and keywords share the fewest words with those already chosen; ties go
    to the higher ranked), in the day's order: a reader who told us nothing
    yet votes on a spread of the day, not five papers on one topic."""
    words = [set(_WORD.findall(" ".join((v["title"], *v["keywords"])).lower())) for v in views[:pool]]
    chosen: list[int] = []
    while len(chosen) < min(count, len(words)):
        def overlap(i: int) -> float:
            return max((len(words[i] & words[j]) / (len(words[i] | words[j]) or 1) for j in chosen), default=0.0)
        chosen.append(min((i for i in range(len(words)) if i not in chosen), key=lambda i: (overlap(i), i)))
    return sorted(chosen)


def _largest_picks(part: PicksPart) -> str:
    """The largest "Picked for you" HTML a reader can get: :data:`MAX_PICKS`
    cards of the largest papers, and the longest reasons (with a second
    interest and words)."""
    also = fill_picks(part.also, {PICK_SUBJECT: "W" * PICK_ALSO_CHARS})
    words = fill_picks(part.words, {PICK_SUBJECT: "W" * PICK_WORDS_CHARS})
    longest_why = max((fill_picks(why, {PICK_SUBJECT: "W" * PICK_SUBJECT_CHARS, PICK_ALSO: also, PICK_WORDS: words})
                       for why in part.why.values()), key=len)
    bodies = sorted(part.bodies, key=lambda body: len(body.encode("utf-8")), reverse=True)[:MAX_PICKS]
    cards = [fill_picks(part.card, {PICK_NUMBER: str(MAX_PICKS), PICK_BODY: body,
                                    PICK_CODE: "9" * 4 + "-" + "x" * 6, PICK_WHY: longest_why})
             for body in bodies]
    return part.head + "".join(cards) + part.tail


def _fit(size: Callable[[int, int], int], top: int, total: int, budget: int) -> tuple[int, int]:
    """Return (cards, listed): ``top`` cards and the most listed titles
    after them whose compiled size is within ``budget`` (fewer cards, but
    at least :data:`MIN_CARDS`, when even ``top`` cards alone are over).
    ``size`` is monotonic in both. Raises :class:`RenderError` when nothing fits."""
    if size(top, total - top) <= budget:
        return top, total - top
    cards = top
    if size(top, 0) > budget:
        low, high = min(MIN_CARDS, total), top
        if size(low, 0) > budget:
            raise RenderError(f"the templates alone exceed {budget:,} bytes")
        while low < high:
            mid = (low + high + 1) // 2
            if size(mid, 0) <= budget:
                low = mid
            else:
                high = mid - 1
        return low, 0
    low, high = 0, total - cards
    while low < high:
        mid = (low + high + 1) // 2
        if size(cards, mid) <= budget:
            low = mid
        else:
            high = mid - 1
    return cards, low
