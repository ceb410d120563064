"""The list's rules: what suppresses an address, and who may make it
active again. The store applies them inside its transactions; nothing here
touches a database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

from newsletter.core.models import Feedback, FeedbackKind, SubscriberStatus

# Sources of a change made by the reader themself (and so reversible by them).
READER_SOURCES = ("web", "one-click")
# Transient bounces within this window that suppress an address.
TRANSIENT_LIMIT = 3
TRANSIENT_WINDOW = dt.timedelta(days=30)


def reader_may_reactivate(status: SubscriberStatus | None, last_source: str | None) -> bool:
    """Whether the reader themself may make an address active (by signing
    up, confirming or resubscribing): a new address (``status`` None) or one
    that unsubscribed itself (its last change came from the reader). Never
    one the operator removed, nor one that bounced or complained."""
    return status is None or (status == SubscriberStatus.UNSUBSCRIBED and last_source in READER_SOURCES)


def operator_reactivation_refusal(status: SubscriberStatus, confirmed: bool) -> str | None:
    """Why the operator may not make an address of ``status`` active again
    now, or None when they may: any address that is not active, but one
    that complained (marked an issue as spam) only when ``confirmed``,
    since mailing it again risks another complaint against the account."""
    if status == SubscriberStatus.ACTIVE:
        return "the address is already active"
    if status == SubscriberStatus.COMPLAINED and not confirmed:
        return ("this address complained (marked an issue as spam): confirm that its owner asked to get the "
                "newsletter again")
    return None


@dataclass(frozen=True)
class Suppression:
    """A status SES feedback gives an address, and why (for its event)."""

    status: SubscriberStatus
    reason: str
    # The statuses it may replace: a complaint is never downgraded to a bounce.
    only_from: tuple[SubscriberStatus, ...] = (
        SubscriberStatus.ACTIVE, SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED)


def suppression(record: Feedback, recent_transient_bounces: Callable[[dt.timedelta], int]) -> Suppression | None:
    """Return what ``record`` does to its address, or None (a delivery, an
    undetermined bounce, or too few transient ones).

    A complaint or a permanent bounce suppresses at once;
    :data:`TRANSIENT_LIMIT` transient bounces within
    :data:`TRANSIENT_WINDOW` (``recent_transient_bounces(window)`` counts
    them, this one included) suppress too.
    """
    issue = f" (issue {record.issue_date})" if record.issue_date else ""
    details = "; ".join(x for x in (record.bounce_subtype, record.detail) if x)
    if record.kind == FeedbackKind.COMPLAINT:
        return Suppression(SubscriberStatus.COMPLAINED, f"complaint: {record.detail or 'abuse'}{issue}")
    if record.kind != FeedbackKind.BOUNCE:
        return None
    if record.bounce_type == "Permanent":
        return Suppression(SubscriberStatus.BOUNCED, f"permanent bounce: {details}{issue}")
    if record.bounce_type == "Transient":
        recent = recent_transient_bounces(TRANSIENT_WINDOW)
        if recent >= TRANSIENT_LIMIT:
            return Suppression(SubscriberStatus.BOUNCED,
                               f"{recent} transient bounces in {TRANSIENT_WINDOW.days} days, last: {details}{issue}")
    return None
