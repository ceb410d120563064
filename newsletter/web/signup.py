"""Confirmed sign-up: ``GET``/``POST /subscribe`` (the form, with optional
interests; the same reply whoever signs up) and ``GET``/``POST
/confirm/<token>`` (GET changes nothing; the button's POST makes the reader
active, their profile starting with the interests the link carries)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from newsletter.errors import InvalidEmail, TokenError
from newsletter.interests import parse_interests
from newsletter.signup import CONFIRM_MAX_AGE, request_signup
from newsletter.web.app import mask_email, page, state

log = logging.getLogger("newsletter.web")
blueprint = Blueprint("signup", __name__)

# How much of the interests typed a form with an error shows back.
MAX_SHOWN_CHARS = 5000


@blueprint.get("/subscribe")
def subscribe_form() -> Response:
    return page("web/subscribe.html", heading="Subscribe", state="form", error="", email="", reader_name="",
                interests="")


@blueprint.post("/subscribe")
def subscribe() -> Response:
    address = request.form.get("email", "")[:320]
    reader_name = request.form.get("name", "")[:200]
    typed_interests = request.form.get("interests", "")
    # Cut to the limits: the confirmation link carries them.
    interests = parse_interests(typed_interests).values
    if request.form.get("website"):  # the honeypot: only bots fill it in
        return page("web/subscribe.html", heading="Almost there", state="sent")
    try:
        recorded = request_signup(state().store, address, reader_name, request.remote_addr or "unknown", interests)
    except InvalidEmail:
        return page("web/subscribe.html", 400, heading="Subscribe", state="form",
                    error="Please enter a valid email address.", email=address, reader_name=reader_name,
                    interests=typed_interests[:MAX_SHOWN_CHARS])
    log.info("sign-up: %s", "recorded" if recorded else "limit reached: nothing recorded")
    # The same reply whatever happened: it never tells who is on the list.
    return page("web/subscribe.html", heading="Almost there", state="sent")


def confirmation(token: str) -> tuple[str, str | None, tuple[str, ...]] | None:
    """The (address, name, interests) of a valid confirmation token, or None."""
    try:
        return state().signer.confirmed(token, CONFIRM_MAX_AGE)
    except TokenError:
        return None


@blueprint.get("/confirm/<token>")
def confirm_form(token: str) -> Response:
    found = confirmation(token)
    if found is None:
        return page("web/subscribe.html", 400, heading="Invalid link", state="invalid")
    return page("web/subscribe.html", heading="Confirm your subscription", state="confirm",
                masked=mask_email(found[0]), action=f"/confirm/{token}", interests=found[2])


@blueprint.post("/confirm/<token>")
def confirm(token: str) -> Response:
    found = confirmation(token)
    if found is None:
        return page("web/subscribe.html", 400, heading="Invalid link", state="invalid")
    if state().actions.confirm(*found) == "refused":
        return page("web/subscribe.html", heading="Not subscribed", state="refused")
    return page("web/subscribe.html", heading="You are subscribed", state="subscribed")
