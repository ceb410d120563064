"""Feedback links in emails: ``GET /f/<token>/up`` (or ``/down``) shows the
paper and one button, and changes nothing, since mail scanners follow every
link; the button's ``POST`` records the reader's 👍 or 👎, and
``POST /f/<token>/undo`` removes it, through the reader-action inbox
(``newsletter.readers.actions``). A token names one reader and one paper of an
edition made for them (see ``newsletter.readers.tokens``), so it can only ever
touch that reader's vote on that paper. Beyond the limits on a reader's
changes, a vote gets the 429 page of :func:`slow_down`."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, Response

from newsletter.core.errors import RateLimited, TokenError
from newsletter.core.models import Edition, Paper, Subscriber
from newsletter.web.app import client_address, invalid_link, page, slow_down, state

blueprint = Blueprint("feedback", __name__)
blueprint.register_error_handler(RateLimited, slow_down)

VOTES = {"up": 1, "down": -1}
HEADINGS = {"confirm": "Rate this paper", "up": "More like this", "down": "Fewer like this",
            "undone": "Vote removed"}
# Authors a page names before "and N more".
SHOWN_AUTHORS = 6


@dataclass(frozen=True)
class Target:
    """What a valid feedback token names: a reader, an edition and one of
    its papers."""

    subscriber: Subscriber
    edition: str
    key: str
    paper: Paper


def target(token: str) -> Target | None:
    """What ``token`` names, or None when anything is wrong: a forged,
    tampered or truncated token, another purpose's token, an unknown reader,
    an edition that is not stored, or a paper code that does not match the
    edition's paper at that position. Every such token gets the same page."""
    app = state()
    try:
        ref, edition, position, code = app.signer.feedback_target(token)
    except TokenError:
        return None
    try:
        named = Edition.parse(edition)
    except ValueError:
        return None
    subscriber = app.store.get(ref=ref)
    if subscriber is None:
        return None
    keys = app.store.edition_papers(named)
    if position >= len(keys):
        return None
    # A token made before the paper was found with an arXiv id names its old key.
    if not (app.signer.paper_matches(code, edition, position, keys[position])
            or any(app.signer.paper_matches(code, edition, position, alias)
                   for alias in app.store.paper_aliases(keys[position]))):
        return None
    paper = app.store.papers([keys[position]]).get(keys[position])
    return Target(subscriber, edition, keys[position], paper) if paper else None


def current_vote(found: Target) -> int:
    """The reader's vote on the paper (0: none), waiting votes included."""
    return next((v.vote for v in state().actions.votes_of(found.subscriber.id) if v.paper_key == found.key), 0)


def feedback_page(token: str, found: Target, shown: str, direction: str = "", current: int = 0) -> Response:
    """The page in state ``shown``: "confirm" (the button for ``direction``),
    "up" or "down" (recorded, with an undo button), or "undone"."""
    paper = found.paper
    authors = ", ".join(paper.authors[:SHOWN_AUTHORS])
    if len(paper.authors) > SHOWN_AUTHORS:
        authors += f" and {len(paper.authors) - SHOWN_AUTHORS} more"
    return page("web/feedback.html", heading=HEADINGS[shown], state=shown, direction=direction,
                current={1: "up", -1: "down"}.get(current, ""), title=paper.title, authors=authors,
                link=paper.url or "", action=f"/f/{token}",
                preferences=f"/p/{state().signer.preferences_token(found.subscriber.ref)}")


@blueprint.get("/f/<token>/<any(up, down):direction>")
def confirm_vote(token: str, direction: str) -> Response:
    found = target(token)
    if found is None:
        return invalid_link()
    return feedback_page(token, found, "confirm", direction, current_vote(found))


@blueprint.post("/f/<token>/<any(up, down):direction>")
def vote(token: str, direction: str) -> Response:
    """Record the vote (again: nothing changes; the other way: it replaces it)."""
    found = target(token)
    if found is None:
        return invalid_link()
    state().actions.vote(found.subscriber, found.key, VOTES[direction], found.edition, client_address())
    return feedback_page(token, found, direction)


@blueprint.post("/f/<token>/undo")
def undo(token: str) -> Response:
    found = target(token)
    if found is None:
        return invalid_link()
    state().actions.vote(found.subscriber, found.key, 0, found.edition, client_address())
    return feedback_page(token, found, "undone")
