"""Unsubscribe pages: ``GET /u/<token>`` shows a page and changes nothing
(mail scanners follow links); ``POST /u/<token>`` unsubscribes, accepting
what RFC 8058 receivers send with no cookie or CSRF token, since the signed
token is the proof; ``POST /u/<token>/resubscribe`` undoes it.

The same token signs the schedule links of the email's footer and of the
unsubscribe page (see :data:`SCHEDULE_LINKS`): ``GET /u/<token>/weekly``
(or ``pause``, ``daily``, ``resume``) shows what would change and a button,
changing nothing; ``POST`` saves the reader's new schedule through the
reader-action inbox, under the limits on a reader's changes."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from flask import Blueprint, Response, request

from newsletter.core.errors import RateLimited, TokenError
from newsletter.core.models import Frequency, Schedule, Subscriber, SubscriberStatus
from newsletter.picks.interests import choose_schedule
from newsletter.web.app import client_address, invalid_link, mask_email, page, slow_down, state

blueprint = Blueprint("unsubscribe", __name__)
# An unsubscribe is never limited; resubscribing is (it counts as a change).
blueprint.register_error_handler(RateLimited, slow_down)

HEADINGS = {
    "confirm": "Unsubscribe",
    "done": "You are unsubscribed",
    "resubscribed": "You are subscribed again",
    "not-resubscribed": "Not resubscribed",
    "inactive": "No more emails",
}


# A pause from a link lasts two weeks (any other length is on the preferences page).
PAUSE_DAYS = 14


class ScheduleLink(NamedTuple):
    """A schedule link: its page's heading, its button, and the link that
    undoes it (None: none; the preferences page does)."""

    heading: str
    button: str
    undo: str | None


SCHEDULE_LINKS = {
    "weekly": ScheduleLink("Get it weekly instead", "Get it weekly", "daily"),
    "pause": ScheduleLink("Pause for two weeks", "Pause for two weeks", "resume"),
    "daily": ScheduleLink("Back to daily", "Get it daily", None),
    "resume": ScheduleLink("Resume", "Resume now", None),
}


def scheduled(change: str, current: Schedule, today: dt.date) -> Schedule:
    """The schedule the link ``change`` (a key of :data:`SCHEDULE_LINKS`)
    gives a reader on ``current`` (as it stands ``today``): weekly on the
    day they had (any pause ends), paused for :data:`PAUSE_DAYS` (a longer
    pause stays as it is), daily (any pause ends), or not paused."""
    if change == "pause":
        until = today + dt.timedelta(days=PAUSE_DAYS)
        return current if current.paused_until and current.paused_until >= until else \
            choose_schedule(current, "paused", paused_until=until)
    if change == "resume":
        return Schedule(current.frequency, current.weekday)
    return choose_schedule(current, change)


def reader(token: str) -> Subscriber | None:
    """The reader of an unsubscribe token, or None. Any bad token and any
    unknown reference get the same answer, so a response never tells
    whether someone is subscribed."""
    app = state()
    try:
        return app.store.get(ref=app.signer.subscriber_ref(token))
    except TokenError:
        return None


def unsubscribe_page(token: str, subscriber: Subscriber | None, state_name: str) -> Response:
    """The unsubscribe page in ``state_name`` (see :data:`HEADINGS`), with
    a link to the reader's preferences page, or the invalid-link page (400)
    when there is no ``subscriber``."""
    if subscriber is None:
        return invalid_link()
    app = state()
    weekly = app.actions.schedule_of(subscriber).frequency == Frequency.WEEKLY
    return page("web/unsubscribe.html", heading=HEADINGS[state_name], state=state_name,
                masked=mask_email(subscriber.email), action=f"/u/{token}", weekly=weekly,
                preferences=f"/p/{app.signer.preferences_token(subscriber.ref)}")


@blueprint.get("/u/<token>")
def unsubscribe_form(token: str) -> Response:
    subscriber = reader(token)
    if subscriber is None:
        return unsubscribe_page(token, None, "invalid")
    status = state().store.pending_status(subscriber.id) or subscriber.status
    shown = {SubscriberStatus.ACTIVE: "confirm", SubscriberStatus.UNSUBSCRIBED: "done"}.get(status, "inactive")
    return unsubscribe_page(token, subscriber, shown)


@blueprint.post("/u/<token>")
def unsubscribe(token: str) -> Response:
    subscriber = reader(token)
    if subscriber is None:
        return unsubscribe_page(token, None, "invalid")
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    status = state().actions.unsubscribe(subscriber, one_click=one_click)
    return unsubscribe_page(token, subscriber, "done" if status == SubscriberStatus.UNSUBSCRIBED else "inactive")


@blueprint.post("/u/<token>/resubscribe")
def resubscribe(token: str) -> Response:
    subscriber = reader(token)
    if subscriber is None:
        return unsubscribe_page(token, None, "invalid")
    active = state().actions.resubscribe(subscriber, client_address())
    return unsubscribe_page(token, subscriber, "resubscribed" if active else "not-resubscribed")


def schedule_page(token: str, change: str, act: bool) -> Response:
    """The page of the schedule link ``change`` for the reader of ``token``:
    what it would change, with its button; with ``act``, the change made
    (with the link that undoes it). A link that would change nothing says
    so; a reader who is not active gets the unsubscribe page instead, and
    a bad token the invalid-link page."""
    subscriber = reader(token)
    if subscriber is None:
        return unsubscribe_page(token, None, "invalid")
    app = state()
    status = app.store.pending_status(subscriber.id) or subscriber.status
    if status != SubscriberStatus.ACTIVE:
        return unsubscribe_page(token, subscriber, "done" if status == SubscriberStatus.UNSUBSCRIBED else "inactive")
    today = app.store.clock().date()
    current = app.actions.schedule_of(subscriber).as_of(today)
    chosen = scheduled(change, current, today)
    link = SCHEDULE_LINKS[change]
    shown = "already" if chosen == current else "done" if act else "confirm"
    if shown == "done":
        app.actions.save_schedule(subscriber, chosen, client_address())
    undo = link.undo if shown == "done" else None
    return page("web/schedule.html", heading=link.heading if shown == "confirm" else "Your schedule",
                state=shown, masked=mask_email(subscriber.email), action=f"/u/{token}/{change}",
                button=link.button, now=current.describe(app.settings.weekly_weekday),
                after=chosen.describe(app.settings.weekly_weekday),
                undo=undo and f"/u/{token}/{undo}", undo_button=undo and SCHEDULE_LINKS[undo].button,
                preferences=f"/p/{app.signer.preferences_token(subscriber.ref)}")


@blueprint.get("/u/<token>/<any(weekly, pause, daily, resume):change>")
def schedule_form(token: str, change: str) -> Response:
    return schedule_page(token, change, act=False)


@blueprint.post("/u/<token>/<any(weekly, pause, daily, resume):change>")
def schedule_change(token: str, change: str) -> Response:
    return schedule_page(token, change, act=True)
