"""Unsubscribe pages: ``GET /u/<token>`` shows a page and changes nothing
(mail scanners follow links); ``POST /u/<token>`` unsubscribes, accepting
what RFC 8058 receivers send with no cookie or CSRF token, since the signed
token is the proof; ``POST /u/<token>/resubscribe`` undoes it."""

from __future__ import annotations

from flask import Blueprint, Response, request

from newsletter.core.errors import RateLimited, TokenError
from newsletter.core.models import Subscriber, SubscriberStatus
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
    return page("web/unsubscribe.html", heading=HEADINGS[state_name], state=state_name,
                masked=mask_email(subscriber.email), action=f"/u/{token}",
                preferences=f"/p/{state().signer.preferences_token(subscriber.ref)}")


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
