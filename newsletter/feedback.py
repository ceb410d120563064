"""Reading SES bounce, complaint and delivery notifications.

SES publishes them to SNS in two shapes: identity notifications carry
``notificationType`` and configuration-set events carry ``eventType``; both
have ``mail`` and one of ``bounce``, ``complaint`` or ``delivery``. Either
way the SNS envelope's ``Message`` field is the JSON string parsed here.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from newsletter.errors import SnsError
from newsletter.personalize import ISSUE_HEADER

KINDS = {"Bounce": "bounce", "Complaint": "complaint", "Delivery": "delivery"}


@dataclass(frozen=True)
class Feedback:
    """One recipient's bounce, complaint or delivery, as reported by SES."""

    kind: str  # bounce, complaint, delivery
    email: str
    issue_date: str | None  # from the X-Newsletter-Issue header, when SES included headers
    bounce_type: str | None = None  # Permanent, Transient, Undetermined
    bounce_subtype: str | None = None
    detail: str | None = None  # the diagnostic code or complaint feedback type
    at: dt.datetime | None = None


def _issue_of(mail: dict) -> str | None:
    for header in mail.get("headers") or []:
        if str(header.get("name", "")).lower() == ISSUE_HEADER.lower():
            value = str(header.get("value", "")).strip()
            return value[:10] if len(value) >= 10 else None
    return None


def _time(value) -> dt.datetime | None:
    try:
        stamp = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)


def parse_ses_notification(message: str) -> list[Feedback]:
    """Return one :class:`Feedback` per recipient named in the SES
    notification ``message`` (the SNS ``Message`` string); an empty list for
    other kinds (such as Send or Open events). Raises :class:`SnsError` when
    it is not JSON or not an SES notification."""
    try:
        payload = json.loads(message)
    except (json.JSONDecodeError, TypeError):
        raise SnsError("the notification's Message is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("mail"), dict):
        raise SnsError("the notification is not from SES (no mail object)")
    kind = KINDS.get(payload.get("notificationType") or payload.get("eventType") or "")
    if kind is None:
        return []
    mail = payload["mail"]
    issue = _issue_of(mail)
    if kind == "bounce":
        bounce = payload.get("bounce") or {}
        return [
            Feedback(
                kind, str(r.get("emailAddress", "")), issue,
                bounce_type=bounce.get("bounceType"), bounce_subtype=bounce.get("bounceSubType"),
                detail=r.get("diagnosticCode") or r.get("status"), at=_time(bounce.get("timestamp")),
            )
            for r in bounce.get("bouncedRecipients") or []
        ]
    if kind == "complaint":
        complaint = payload.get("complaint") or {}
        return [
            Feedback(
                kind, str(r.get("emailAddress", "")), issue,
                detail=complaint.get("complaintFeedbackType"), at=_time(complaint.get("timestamp")),
            )
            for r in complaint.get("complainedRecipients") or []
        ]
    delivery = payload.get("delivery") or {}
    return [Feedback(kind, str(address), issue, at=_time(delivery.get("timestamp")))
            for address in delivery.get("recipients") or []]


def handle_sns(envelope: dict, verifier, store, confirm: bool = True) -> str:
    """Verify and act on one SNS envelope; return what was done, in words.

    ``Notification``: the SES feedback in it is applied (idempotently, by
    SNS message id). ``SubscriptionConfirmation``: the subscription is
    confirmed by fetching ``SubscribeURL``, only when it is on an SNS host of
    AWS (and ``confirm`` is true). ``UnsubscribeConfirmation``: nothing to do.
    Raises :class:`SnsError` for a message that fails verification; nothing
    changes then.
    """
    verifier.verify(envelope)
    kind = envelope.get("Type")
    if kind == "SubscriptionConfirmation":
        url = str(envelope.get("SubscribeURL", ""))
        verifier.check_url(url, "SubscribeURL")
        if not confirm:
            return "subscription confirmation (not confirmed here)"
        try:
            verifier.download(url)
        except OSError as exc:
            raise SnsError(f"could not confirm the subscription: {exc}") from None
        return f"confirmed the subscription to {envelope.get('TopicArn')}"
    if kind == "UnsubscribeConfirmation":
        return f"unsubscribed from {envelope.get('TopicArn')}"
    records = parse_ses_notification(envelope.get("Message"))
    outcome = store.apply_feedback(str(envelope.get("MessageId")), records)
    if outcome is None:
        return "already handled"
    kinds = sorted({r.kind for r in records}) or ["nothing relevant"]
    suppressed = f", suppressed {len(outcome['suppressed'])}" if outcome["suppressed"] else ""
    return f"{'/'.join(kinds)} for {len(outcome['recorded'])} recipients{suppressed}"
