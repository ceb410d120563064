"""Confirmed sign-up: ``GET``/``POST /subscribe`` (the form, with optional
interests and a choice of daily or weekly; the same reply whoever signs
up) and ``GET``/``POST /confirm/<token>`` (GET changes nothing; the
button's POST makes the reader active, their profile starting with the
interests the link carries, at the frequency it carries)."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from newsletter.core.errors import InvalidEmail, TokenError
from newsletter.picks.interests import parse_interests
from newsletter.core.models import WEEKDAY_NAMES, ConfirmOutcome, Frequency
from newsletter.readers.signup import CONFIRM_MAX_AGE, request_signup
from newsletter.readers.tokens import Confirmation
from newsletter.web.app import mask_email, page, state

log = logging.getLogger("newsletter.web")
blueprint = Blueprint("signup", __name__)

# How much of the interests typed a form with an error shows back.
MAX_SHOWN_CHARS = 5000


def weekly_day() -> str:
    """The day of the list's weekly edition, by name ("Monday")."""
    return WEEKDAY_NAMES[state().settings.weekly_weekday]


def form_page(status: int = 200, error: str = "", **typed: str) -> Response:
    """The sign-up form, with an ``error`` and the fields as ``typed``
    (email, reader_name, interests, frequency)."""
    values = {"email": "", "reader_name": "", "interests": "", "frequency": Frequency.DAILY, **typed}
    return page("web/subscribe.html", status, heading="Subscribe", state="form", error=error,
                weekly_day=weekly_day(), **values)


@blueprint.get("/subscribe")
def subscribe_form() -> Response:
    return form_page()


@blueprint.post("/subscribe")
def subscribe() -> Response:
    address = request.form.get("email", "")[:320]
    reader_name = request.form.get("name", "")[:200]
    typed_interests = request.form.get("interests", "")
    # Cut to the limits: the confirmation link carries them.
    interests = parse_interests(typed_interests).values
    typed = dict(email=address, reader_name=reader_name, interests=typed_interests[:MAX_SHOWN_CHARS])
    if request.form.get("website"):  # the honeypot: only bots fill it in
        return page("web/subscribe.html", heading="Almost there", state="sent")
    # Daily unless weekly is chosen (a form from before the choice sends none).
    choice = request.form.get("frequency", Frequency.DAILY)
    if choice not in tuple(Frequency):
        return form_page(400, "Please choose daily or weekly.", **typed)
    try:
        recorded = request_signup(state().store, address, reader_name, request.remote_addr or "unknown", interests,
                                  Frequency(choice))
    except InvalidEmail:
        return form_page(400, "Please enter a valid email address.", frequency=choice, **typed)
    log.info("sign-up: %s", "recorded" if recorded else "limit reached: nothing recorded")
    # The same reply whatever happened: it never tells who is on the list.
    return page("web/subscribe.html", heading="Almost there", state="sent")


def confirmation(token: str) -> Confirmation | None:
    """What a valid confirmation token carries, or None."""
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
                masked=mask_email(found.email), action=f"/confirm/{token}", interests=found.interests,
                weekly_day=weekly_day() if found.frequency == Frequency.WEEKLY else "")


@blueprint.post("/confirm/<token>")
def confirm(token: str) -> Response:
    found = confirmation(token)
    if found is None:
        return page("web/subscribe.html", 400, heading="Invalid link", state="invalid")
    outcome = state().actions.confirm(*found)
    if outcome == ConfirmOutcome.REFUSED:
        return page("web/subscribe.html", heading="Not subscribed", state="refused")
    # A returning reader keeps the schedule they had: their next issue is said only for a new one.
    weekly = found.frequency == Frequency.WEEKLY and outcome == ConfirmOutcome.SUBSCRIBED
    return page("web/subscribe.html", heading="You are subscribed", state="subscribed",
                weekly_day=weekly_day() if weekly else "")
