"""Confirmed sign-up (double opt-in).

A sign-up is recorded, and a worker sends the confirmation email with a
signed link that expires after 7 days; the address joins the list when that
link's button is pressed. The reply to a sign-up, and the work done to give
it, are the same whatever the address's state, so neither reveals who is on
the list. Abuse limits: at most ``PER_ADDRESS_PER_DAY`` sign-ups per address
a day and ``PER_CLIENT_PER_HOUR`` per client address an hour, counted and
recorded in one atomic step; no email to an address that is active, that
bounced or complained, or that the operator removed.
"""

from __future__ import annotations

import email.policy
import email.utils
from email.message import EmailMessage
from typing import Callable

from newsletter.core.config import Settings
from newsletter.core.models import Frequency
from newsletter.issue.render import render_template, template_environment
from newsletter.store import Store, normalize_email
from newsletter.core.text import clean_name
from newsletter.readers.tokens import Signer

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


def confirmation_sender(settings: Settings, signer: Signer, sender) -> Callable[..., None]:
    """Return a function ``send(address, name, interests=(), frequency=DAILY)``
    that sends ``address`` its confirmation email (a link signed now, valid
    for 7 days, carrying the interests and frequency given with the
    sign-up) through ``sender``; it raises a :class:`SendError` subclass
    when the email could not go."""

    def send(address: str, name: str | None, interests: tuple[str, ...] = (),
             frequency: Frequency = Frequency.DAILY) -> None:
        url = f"{settings.web_base}/confirm/{signer.confirm_token(address, name, interests, frequency)}"
        sender.send_single(address, confirmation_message(settings, address, url))

    return send


def request_signup(store: Store, address: str, name: str | None, client: str,
                   interests: tuple[str, ...] = (), frequency: Frequency = Frequency.DAILY) -> bool:
    """Record a sign-up form for the worker that sends confirmation emails
    (``newsletter.readers.actions``), with the ``interests`` and ``frequency`` it
    gave (see ``newsletter.picks.interests``: the confirmation link carries them,
    and the reader's profile and schedule start with them); return whether it was recorded
    (False: a limit was reached). The work is the same whatever the
    address's state, so
    neither the reply nor its timing tells who is on the list. Raises
    :class:`InvalidEmail` for a malformed address or one that is not ASCII
    (no sender supports SMTPUTF8, so it could be sent neither this email nor
    any issue)."""
    return store.record_signup(normalize_email(address), clean_name(name), client,
                               per_address_per_day=PER_ADDRESS_PER_DAY, per_client_per_hour=PER_CLIENT_PER_HOUR,
                               interests=interests, frequency=frequency)
