"""Confirmed sign-up (double opt-in).

A sign-up only sends a confirmation email with a signed link that expires
after 7 days; the address joins the list when that link's button is
pressed. The reply to a sign-up is the same whatever the address's state,
so it never reveals who is on the list. Abuse limits: at most
``PER_ADDRESS_PER_DAY`` confirmation emails per address a day and
``PER_CLIENT_PER_HOUR`` per client address an hour, and none to an address
that bounced or complained.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
from email.message import EmailMessage

from newsletter.config import Settings
from newsletter.render import render_template, template_environment
from newsletter.store import ACTIVE, BOUNCED, COMPLAINED, UNSUBSCRIBED, Store, normalize_email, now
from newsletter.text import clean_name
from newsletter.tokens import Signer

CONFIRM_MAX_AGE = 7 * 24 * 3600
PER_ADDRESS_PER_DAY = 3
PER_CLIENT_PER_HOUR = 10


def confirmation_message(settings: Settings, address: str, confirm_url: str) -> bytes:
    """Return the confirmation email for ``address`` as bytes."""
    env = template_environment(settings.templates_dir)
    context = {"name": settings.name, "confirm_url": confirm_url, "postal_address": settings.postal_address,
               "days": CONFIRM_MAX_AGE // 86400}
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = settings.from_address
    message["To"] = address
    message["Subject"] = f"Confirm your subscription to {settings.name}"
    message["Date"] = email.utils.format_datetime(email.utils.localtime())
    message["Message-ID"] = email.utils.make_msgid(domain=settings.from_address.rpartition("@")[2].strip("> "))
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(render_template(env, "confirm_email.txt", context), charset="utf-8",
                        cte="quoted-printable")
    message.add_alternative(render_template(env, "confirm_email.html", context), subtype="html",
                            charset="utf-8", cte="quoted-printable")
    return message.as_bytes()


def request_signup(store: Store, signer: Signer, settings: Settings, sender, address: str,
                   name: str | None, client: str) -> str:
    """Handle a sign-up form; return what happened, for the log only (the
    reader always sees the same reply). Raises :class:`InvalidEmail` for a
    malformed address or one that is not ASCII (no sender supports SMTPUTF8,
    so it could be sent neither this email nor any issue), and SendError
    subclasses when the email could not go."""
    address = normalize_email(address)
    name = clean_name(name)
    existing = store.get(email=address)
    if existing is not None and existing.status == ACTIVE:
        return "already subscribed: nothing sent"
    if existing is not None and existing.status in (BOUNCED, COMPLAINED):
        return f"address is {existing.status}: nothing sent"
    stamp = now()
    if store.count_signups(email=address, since=stamp - dt.timedelta(days=1)) >= PER_ADDRESS_PER_DAY:
        return "daily limit for this address reached: nothing sent"
    if store.count_signups(client=client, since=stamp - dt.timedelta(hours=1)) >= PER_CLIENT_PER_HOUR:
        return "hourly limit for this client reached: nothing sent"
    url = f"{settings.web_base}/confirm/{signer.confirm_token(address, name)}"
    sender.send_single(address, confirmation_message(settings, address, url))
    store.record_signup(address, client)
    return "confirmation sent"


def confirm_signup(store: Store, address: str, name: str | None) -> str:
    """Activate ``address`` after its confirmation link was used; return the
    outcome: "subscribed", "resubscribed", "already", or "refused" (an address
    that complained is never reactivated here: only an operator can)."""
    existing = store.get(email=address)
    if existing is None:
        _subscriber, created = store.add(address, name, source="signup")
        return "subscribed" if created else "already"
    if existing.status == ACTIVE:
        return "already"
    if existing.status == COMPLAINED:
        return "refused"
    changed = store.change_status(existing.id, ACTIVE, source="signup", reason="confirmed a new sign-up",
                                  only_from=(UNSUBSCRIBED, BOUNCED))
    return "resubscribed" if changed else "already"
