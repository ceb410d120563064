"""The paper archive: ``/papers?q=…&page=N`` searches every paper the
newsletter carried (with no query: the latest first), and
``/papers/<key>`` shows one with the days it appeared;
``/papers/<key>/thumbnail.png`` is the stored copy of its thumbnail (see
:mod:`newsletter.papers.thumbnails`), which emails and the paper's page show.

A paper's key may hold a slash (old-style arXiv ids such as
``hep-th/9901001``) or a colon (``title:…``): the route takes the rest of
the path as the key, and links quote everything else
(:func:`newsletter.core.models.paper_path`). The ``title:`` key of a paper
later found with an arXiv id redirects to the arXiv id's page."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from flask import Blueprint, Response, redirect, request

from newsletter.core.errors import InvalidQuery
from newsletter.core.models import Paper, daily_papers_url, paper_path, thumbnail_path
from newsletter.core.text import plural
from newsletter.issue.render import card_teaser
from newsletter.store import Appearance, SearchPage
from newsletter.store.search import MAX_PAGE, MAX_QUERY_CHARS
from newsletter.web.app import page, state

blueprint = Blueprint("papers", __name__)

PER_PAGE = 20
# Authors a result names before "and N more" (a paper's page names all).
SHOWN_AUTHORS = 6
# A stored thumbnail never changes under its address (a copy is made once),
# so mail clients and browsers may keep it: a year.
THUMBNAIL_MAX_AGE = 365 * 24 * 3600


def day_label(date: dt.date) -> str:
    """``Tue 11 Mar 2025``."""
    return f"{date:%a} {date.day} {date:%b %Y}"


def link(url: str | None) -> str | None:
    """``url`` when it is a web address, else None (only those are linked)."""
    return url if url and url.lower().startswith(("https://", "http://")) else None


def days(appearances: tuple[Appearance, ...]) -> list[dict]:
    """What a page shows of each day a paper appeared: the day, the link
    to that day's issue (when it is stored), its rank from 1, its upvotes."""
    return [{"label": day_label(a.date), "iso": a.date.isoformat(),
             "href": f"/issues/{a.date.isoformat()}" if a.issue else None,
             "rank": a.rank + 1, "upvotes": a.upvotes} for a in appearances]


def paper_links(paper: Paper, appearances: tuple[Appearance, ...]) -> list[tuple[str, str, str]]:
    """The links of a paper's page as ``(label, href, stars)``: the paper,
    its PDF, its daily papers page, its code (with its GitHub stars, such
    as ``"1,234 stars"``, when known) and its project page, those it has."""
    stars = plural(paper.github_stars, "star") if paper.github_stars is not None else ""
    # The archive keeps a paper's upvotes on its appearances.
    daily = daily_papers_url(paper, counted=any(a.upvotes is not None for a in appearances))
    return [(label, href, count) for label, href, count in (
        ("Paper", link(paper.url), ""), ("PDF", link(paper.pdf_url), ""),
        ("Hugging Face", daily if daily != link(paper.url) else None, ""),
        ("Code", link(paper.code_url), stars), ("Project page", link(paper.project_url), "")) if href]


def authors_line(paper: Paper, shown: int | None = None) -> str:
    """The authors, the first ``shown`` of them and how many more."""
    names = paper.authors if shown is None else paper.authors[:shown]
    line = ", ".join(names)
    if len(paper.authors) > len(names):
        line += f" and {len(paper.authors) - len(names)} more"
    return line


def teaser(paper: Paper, source: str) -> tuple[tuple[str, bool], ...]:
    """The teaser a card of ``paper`` shows (its TL;DR, see
    ``render.card_teaser``; ``source`` is ``NEWSLETTER_TEASER``), as one
    snippet piece."""
    return ((card_teaser(paper, source), False),)


def page_url(query: str, number: int) -> str:
    """The address of page ``number`` of the results for ``query``."""
    params = {"q": query} if query else {}
    if number > 1:
        params["page"] = str(number)
    return "/papers" + ("?" + urlencode(params) if params else "")


def results(found: SearchPage, source: str) -> list[dict]:
    """What the results page shows of each hit: a search's matched words in
    context, else (no search) the paper's teaser from ``source``."""
    return [{
        "title": hit.paper.title,
        "href": link(hit.paper.url) or paper_path(hit.key),
        "path": paper_path(hit.key),
        "authors": authors_line(hit.paper, SHOWN_AUTHORS),
        "snippet": hit.snippet or teaser(hit.paper, source),
        "days": days(hit.appearances),
    } for hit in found.hits]


@blueprint.get("/papers")
def search() -> Response:
    query = request.args.get("q", "")
    number = request.args.get("page", default=1, type=int)  # None when it is not a number
    number = number if number and number >= 1 else 1
    shown = query.strip()
    try:
        found = state().store.search_papers(shown, min(number, MAX_PAGE + 1), PER_PAGE)
    except InvalidQuery:
        # The form keeps what fits, for the reader to shorten.
        return page("web/papers.html", 400, query=shown[:MAX_QUERY_CHARS], max_chars=MAX_QUERY_CHARS,
                    error=f"Your search is too long: {len(shown):,} characters, and at most {MAX_QUERY_CHARS} "
                          "are searched. Please shorten it.",
                    found=None, results=[], previous=None, next=None)
    return page(
        "web/papers.html", query=shown, max_chars=MAX_QUERY_CHARS, error=None, found=found,
        results=results(found, state().settings.teaser),
        previous=page_url(shown, min(number - 1, found.pages)) if number > 1 else None,
        next=page_url(shown, number + 1) if found.has_more else None,
    )


@blueprint.get("/papers/")
def search_slash() -> Response:
    return redirect(page_url(request.args.get("q", "").strip(), 1))


@blueprint.get("/papers/<path:key>/thumbnail.png")
def thumbnail(key: str) -> Response:
    """The stored copy of paper ``key``'s thumbnail (whatever the setting
    now: emails already sent show it), or 404."""
    stored = state().store.thumbnail(key)
    if stored is None:
        return moved(key, thumbnail_path) or page("web/not_found.html", 404)
    response = Response(stored.png, mimetype="image/png")
    response.headers["Cache-Control"] = f"public, max-age={THUMBNAIL_MAX_AGE}, immutable"
    return response


def moved(key: str, path) -> Response | None:
    """A permanent redirect (308) to ``path`` of the paper ``key`` names
    when ``key`` is an old ``title:`` key of a paper later stored with an
    arXiv id (emails sent before link to it), else None."""
    same = state().store.canonical_keys([key]).get(key) if "\x00" not in key else None
    return redirect(path(same), 308) if same else None


@blueprint.get("/papers/<path:key>")
def paper(key: str) -> Response:
    archived = state().store.paper(key)
    if archived is None:
        return moved(key, paper_path) or page("web/not_found.html", 404)
    paper, appearances = archived
    comments = plural(paper.comment_count, "comment") if paper.comment_count is not None else ""
    shown = state().settings.thumbnails and state().store.thumbnail_size(key)
    return page("web/paper.html", title=paper.title, authors=authors_line(paper), tldr=card_teaser(paper),
                abstract=paper.abstract, links=paper_links(paper, appearances), comments=comments,
                days=days(appearances),
                thumbnail={"src": thumbnail_path(key), "width": shown[0], "height": shown[1],
                           "alt": f"Figure from {paper.title}"} if shown else None)
