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

import datetime as dt
import logging
import re
import textwrap
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import jinja2
from mjml import mjml2html
from premailer import Premailer

from newsletter.config import Settings
from newsletter.errors import BatchError, RenderError
from newsletter.models import UNSUBSCRIBE_URL_MARK, Batch, Issue, Paper
from newsletter.text import quoted_printable

HTML_LIMIT_BYTES = 100_000
GMAIL_CLIP_BYTES = 102 * 1024
# Room kept free for the reader's unsubscribe link, which is longer than the
# mark it replaces, so a personalized email is still under the limit.
PERSONAL_LINK_RESERVE = 500
EMAIL_TEMPLATE = "email.mjml"
TEXT_TEMPLATE = "email.txt"
PACKAGE_TEMPLATES = Path(__file__).parent / "templates"

TEASER_CHARS = 240
TEXT_COLUMNS = 78  # the plain-text part's longest line, URLs apart (RFC 5322's advice)
MIN_CARDS = 3  # even a huge day shows its top papers in full
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_URL_START = re.compile(r"\(?https?://", re.IGNORECASE)


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
    part (before the reader's own link goes in; ``PERSONAL_LINK_RESERVE``
    keeps room for it)."""
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
    sentences = _SENTENCE_END.split(abstract)
    text = sentences[0]
    if len(sentences) > 1 and len(text) < limit // 2 and len(text) + len(sentences[1]) < limit:
        text = f"{text} {sentences[1]}"
    if len(text) <= limit:
        return text
    cut = text[: limit + 1].rsplit(" ", 1)[0] if " " in text[:limit] else text[:limit]
    return cut.rstrip(" ,;:.-–—") + "…"


def card_teaser(paper: Paper, source: str = "summary") -> str:
    """Return the teaser a card shows for ``paper``: with ``source``
    ``"summary"`` its AI summary when it has one, else (and always with
    ``"abstract"``) the first sentences of its abstract; cut by :func:`teaser`."""
    if source == "summary" and paper.ai_summary:
        return teaser(paper.ai_summary)
    return teaser(paper.abstract)


def wrap_text(text: str, width: int = TEXT_COLUMNS, indent: str = "", first: str | None = None) -> str:
    """Return ``text`` wrapped to lines of at most ``width`` characters, each
    starting with ``indent`` (the first with ``first`` when given, such as a
    number). A URL is never split: one longer than a line keeps a line of
    its own. Any other run longer than a line (text without spaces, such as
    Chinese) is cut to fit."""
    first = indent if first is None else first
    room = max(1, width - max(len(indent), len(first)))
    words = []
    for word in text.split():
        if len(word) > room and not _URL_START.match(word):
            words.extend(word[i : i + room] for i in range(0, len(word), room))
        else:
            words.append(word)
    return textwrap.fill(
        " ".join(words),
        width=width,
        initial_indent=first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def link_line(url: str, label: str = "", indent: str = "", width: int = TEXT_COLUMNS) -> str:
    """Return ``label: url`` on one line when it fits in ``width``,
    else the label on one line and the whole URL alone on the next (so a
    long URL is never broken, and stays clickable)."""
    if not label:
        return indent + url
    line = f"{indent}{label}: {url}"
    return line if len(line) <= width else f"{indent}{label}:\n{indent}{url}"


def plural(count: int, noun: str) -> str:
    """Return ``"1 upvote"``, ``"12 upvotes"``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def short_authors(authors: tuple[str, ...], shown: int = 3) -> str:
    """Return ``"A, B and C"`` or, for a long list, ``"A, B, C and 9 others"``."""
    if len(authors) <= 1:
        return "".join(authors)
    if len(authors) <= shown:
        return f"{', '.join(authors[:-1])} and {authors[-1]}"
    return f"{', '.join(authors[:shown])} and {len(authors) - shown} others"


def _paper_view(paper: Paper, teaser_source: str) -> dict[str, Any]:
    """What the templates show of ``paper``: its links as (label, URL) pairs
    and its counts as words (``"12 upvotes"``), among the rest."""
    links = []
    if paper.pdf_url:
        links.append(("PDF", paper.pdf_url))
    if paper.code_url:
        links.append(("Code", paper.code_url))
    if paper.project_url:
        links.append(("Project page", paper.project_url))
    counts = []
    if paper.upvotes is not None:
        counts.append("▲ " + plural(paper.upvotes, "upvote"))
    if paper.comment_count is not None:
        counts.append(plural(paper.comment_count, "comment"))
    return {
        "title": paper.title,
        "url": paper.url,
        "authors": short_authors(paper.authors) if paper.authors else "",
        "teaser": card_teaser(paper, teaser_source),
        "links": links,
        "upvotes": paper.upvotes,
        "comments": paper.comment_count,
        "counts": " · ".join(counts),
        "keywords": paper.keywords,
        "categories": paper.categories,
    }


def one_line(text: str) -> str:
    """Collapse all whitespace, CR and LF included, so ``text`` is safe in a header."""
    return " ".join(text.split())


def subject_for(name: str, date: dt.date, count: int) -> str:
    """Return e.g. ``"Daily Papers · Tue 11 Mar 2025 · 85 papers"``."""
    plural = "paper" if count == 1 else "papers"
    return one_line(f"{name} · {date:%a} {date.day} {date:%b %Y} · {count} {plural}")


def preheader_for(papers: tuple[Paper, ...], limit: int = 140) -> str:
    """Return the inbox preview line: the top title and how many follow."""
    top = papers[0].title
    rest = len(papers) - 1
    tail = f" — and {rest} more trending paper{'s' if rest != 1 else ''}" if rest else ""
    if len(top) + len(tail) > limit:
        top = top[: max(20, limit - len(tail) - 1)].rsplit(" ", 1)[0] + "…"
    return one_line(top + tail)


# --------------------------------------------------------------------------
# the issue


def render_issue(batch: Batch, settings: Settings, limit: int = HTML_LIMIT_BYTES) -> Issue:
    """Render ``batch`` into an :class:`Issue` whose email HTML, once
    personalized and quoted-printable encoded, is at most ``limit`` bytes.

    Raises :class:`BatchError` when the batch has no papers and
    :class:`RenderError` when the templates are broken or cannot fit the
    limit even with the smallest layout.
    """
    if not batch.papers:
        raise BatchError(batch.source or "batch", "no papers to render")
    env = template_environment(settings.templates_dir)
    limit -= PERSONAL_LINK_RESERVE
    views = [_paper_view(p, settings.teaser) for p in batch.papers]
    total = len(views)
    web_url = f"{settings.web_base}/issues/{batch.date.isoformat()}"
    base = {
        "name": settings.name,
        "subject": subject_for(settings.name, batch.date, total),
        "preheader": preheader_for(batch.papers),
        "date": batch.date,
        "date_long": f"{batch.date:%A} {batch.date.day} {batch.date:%B %Y}",
        "paper_count": total,
        "web_url": web_url,
        "unsubscribe_url": UNSUBSCRIBE_URL_MARK,
        "postal_address": settings.postal_address,
    }

    def context(cards: int, listed: int, web: bool = False) -> dict[str, Any]:
        return {
            **base,
            "web": web,
            "cards": views[:cards],
            "listed": views[cards : cards + listed],
            "all_listed": views[cards:],
            "more_count": total - cards - listed,
        }

    sizes: dict[tuple[int, int], int] = {}

    def compiled_size(cards: int, listed: int) -> int:
        if (cards, listed) not in sizes:
            html = compile_mjml(render_template(env, EMAIL_TEMPLATE, context(cards, listed)))
            sizes[cards, listed] = encoded_bytes(html)
        return sizes[cards, listed]

    # Inlining adds style attributes, so aim a little under the limit before
    # it and tighten the aim if the inlined result still comes out too big.
    budget = int(limit * 0.95)
    for _attempt in range(5):
        cards, listed = _fit(compiled_size, total, budget)
        html = inline_css(compile_mjml(render_template(env, EMAIL_TEMPLATE, context(cards, listed))))
        size = encoded_bytes(html)
        if size <= limit:
            break
        budget -= size - limit + 500
    else:
        raise RenderError(f"could not fit the email under {limit:,} bytes; simplify the templates")

    web_html = with_main_landmark(compile_mjml(render_template(env, EMAIL_TEMPLATE, context(total, 0, web=True))))
    text = render_template(env, TEXT_TEMPLATE, context(cards, listed))
    return Issue(
        date=batch.date,
        subject=base["subject"],
        preheader=base["preheader"],
        html=html,
        text=text,
        web_html=web_html,
        paper_count=total,
        card_count=cards,
        listed_count=listed,
        web_url=web_url,
    )


def _fit(size: Callable[[int, int], int], total: int, budget: int) -> tuple[int, int]:
    """Return (cards, listed): the most cards, then the most listed titles,
    whose compiled size is within ``budget``. ``size`` is monotonic in both."""
    if size(total, 0) <= budget:
        return total, 0
    floor = min(MIN_CARDS, total)
    if size(floor, total - floor) <= budget:
        low, high = floor, total - 1  # most cards with every other paper listed
        while low < high:
            mid = (low + high + 1) // 2
            if size(mid, total - mid) <= budget:
                low = mid
            else:
                high = mid - 1
        return low, total - low
    low, high = 0, total - floor  # too many papers even to list: list what fits
    while low < high:
        mid = (low + high + 1) // 2
        if size(floor, mid) <= budget:
            low = mid
        else:
            high = mid - 1
    if size(floor, low) > budget:
        raise RenderError(f"the templates alone exceed {budget:,} bytes")
    return floor, low
