"""A reader's preferences page: ``GET /p/<token>`` shows what they told us
(interests, followed authors, arXiv categories, seed papers, the number of
picks) as a form, and the papers they rated; it changes nothing.
``POST /p/<token>`` saves the form and ``POST /p/<token>/undo`` removes one
vote, through the reader-action inbox (``newsletter.actions``). As for
unsubscribing, the signed token is the proof: no cookie or session."""

from __future__ import annotations

from flask import Blueprint, Response, request

from newsletter.errors import TokenError
from newsletter.interests import MAX_AUTHORS, MAX_CATEGORIES, MAX_INTERESTS, MAX_SEEDS, PARSERS
from newsletter.models import MAX_PICKS, Profile, Subscriber
from newsletter.web.app import invalid_link, mask_email, page, state

blueprint = Blueprint("preferences", __name__)

# The newest votes the page lists (with an undo button each).
MAX_SHOWN_VOTES = 100
# How much of each field a form with an error shows back as it was typed.
MAX_SHOWN_CHARS = 5000
# Sent back by the undo buttons: what a paper key can be at most.
MAX_KEY_CHARS = 220


def reader(token: str) -> Subscriber | None:
    """The reader of a preferences token, or None for any bad token or
    unknown reference (the same answer: see :func:`invalid_link`)."""
    app = state()
    try:
        return app.store.get(ref=app.signer.preferences_ref(token))
    except TokenError:
        return None


def form_values(profile: Profile) -> dict[str, str]:
    """The form's fields filled with ``profile``, as a reader would type them."""
    return {"interests": "\n".join(profile.interests), "authors": "\n".join(profile.authors),
            "categories": ", ".join(profile.categories), "seeds": "\n".join(profile.seeds),
            "picks": str(profile.picks)}


def paper_link(key: str) -> str | None:
    """The arXiv page of the paper ``key`` (None for a paper without an id)."""
    return None if key.startswith("title:") else f"https://arxiv.org/abs/{key}"


def preferences_page(token: str, subscriber: Subscriber, *, values: dict[str, str] | None = None,
                     errors: dict[str, str] | None = None, notes: dict[str, tuple[str, ...]] | None = None,
                     notice: str = "", code: int = 200) -> Response:
    """The page for ``subscriber``: the form with ``values`` (default: their
    profile), ``errors`` and ``notes`` next to their fields, a ``notice``
    line ("saved", "undone") and the papers they rated."""
    app = state()
    profile = app.actions.profile_of(subscriber.id)
    votes = app.actions.votes_of(subscriber.id)
    titles = app.store.papers(profile.seeds) if profile.seeds and not errors else {}
    return page(
        "web/preferences.html", code, heading="Your preferences", masked=mask_email(subscriber.email),
        action=f"/p/{token}", values=values or form_values(profile), errors=errors or {}, notes=notes or {},
        notice=notice, picks_off=profile.picks == 0, max_picks=MAX_PICKS,
        limits={"interests": MAX_INTERESTS, "authors": MAX_AUTHORS, "categories": MAX_CATEGORIES,
                "seeds": MAX_SEEDS},
        seeds=[] if errors else [(key, titles[key].title if key in titles else None) for key in profile.seeds],
        votes=[{"key": v.paper_key, "up": v.vote > 0, "title": v.title or v.paper_key, "link": paper_link(v.paper_key)}
               for v in votes[:MAX_SHOWN_VOTES]],
        more_votes=max(0, len(votes) - MAX_SHOWN_VOTES),
    )


@blueprint.get("/p/<token>")
def preferences_form(token: str) -> Response:
    subscriber = reader(token)
    if subscriber is None:
        return invalid_link()
    return preferences_page(token, subscriber)


@blueprint.post("/p/<token>")
def save(token: str) -> Response:
    """Save the form, all or nothing: with an error in any field nothing is
    saved, and the form comes back as typed with the error beside it."""
    subscriber = reader(token)
    if subscriber is None:
        return invalid_link()
    typed = {name: request.form.get(name, "") for name in PARSERS}
    parsed = {name: parse(typed[name]) for name, parse in PARSERS.items()}
    errors = {name: found.error for name, found in parsed.items() if found.error}
    if errors:
        shown = {name: value[:MAX_SHOWN_CHARS] for name, value in typed.items()}
        return preferences_page(token, subscriber, values=shown, errors=errors, code=400)
    profile = Profile(subscriber.id, interests=parsed["interests"].values, authors=parsed["authors"].values,
                      categories=parsed["categories"].values, seeds=parsed["seeds"].values,
                      picks=parsed["picks"].values[0])
    state().actions.save_preferences(subscriber, profile)
    notes = {name: found.notes for name, found in parsed.items() if found.notes}
    return preferences_page(token, subscriber, values=form_values(profile), notes=notes, notice="saved")


@blueprint.post("/p/<token>/undo")
def undo(token: str) -> Response:
    """Remove the reader's vote on the paper the button names (a paper they
    did not rate changes nothing)."""
    subscriber = reader(token)
    if subscriber is None:
        return invalid_link()
    key = request.form.get("paper", "")[:MAX_KEY_CHARS]
    rated = {vote.paper_key: vote for vote in state().actions.votes_of(subscriber.id)}
    if key not in rated:
        return preferences_page(token, subscriber)
    state().actions.vote(subscriber, key, 0, rated[key].edition)
    return preferences_page(token, subscriber, notice="undone")
