"""Reading SES bounce, complaint, delivery and rendering failure notifications.

SES publishes them to SNS in two shapes: identity notifications carry
``notificationType`` and configuration-set events carry ``eventType``; both
have ``mail`` and one of ``bounce``, ``complaint`` or ``delivery``, or (an
event only) ``failure`` for a Rendering Failure: SES accepted a templated
message, then could not render it for that recipient and dropped it. Either
way the SNS envelope's ``Message`` field is the JSON string parsed here.
Every field read is type-checked first: a notification holding anything SES
would not send is refused whole (:class:`SnsMalformed`), never half applied.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re

from newsletter.core.errors import SnsError, SnsMalformed
from newsletter.feedback.sns import is_text, shown
from newsletter.core.models import RENDERING_FAILURE_REASON, SES_TEMPLATE_PREFIX, Edition, Feedback, FeedbackKind
from newsletter.sending.personalize import ISSUE_HEADER

KINDS = {"Bounce": FeedbackKind.BOUNCE, "Complaint": FeedbackKind.COMPLAINT, "Delivery": FeedbackKind.DELIVERY,
         "Rendering Failure": FeedbackKind.RENDERING_FAILURE}


# The longest values the store keeps (see newsletter.store.feedback_table):
# anything longer is not from SES.
MAX_ADDRESS = 320
MAX_BOUNCE_TYPE = 32
MAX_BOUNCE_SUBTYPE = 64
ISSUE_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _object(value, where: str, optional: bool = True) -> dict:
    """Return ``value`` when it is a JSON object ({} for a missing one when
    ``optional``); raise :class:`SnsMalformed` naming ``where`` otherwise."""
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise SnsMalformed(f"{where} is not an object: {shown(value)}")
    return value


def _list(value, where: str) -> list:
    """Return ``value`` when it is a JSON array ([] for a missing one); raise
    :class:`SnsMalformed` otherwise."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise SnsMalformed(f"{where} is not an array: {shown(value)}")
    return value


def _text(value, where: str, limit: int | None = None, optional: bool = True) -> str | None:
    """Return ``value`` when it is a string that can be stored, of at most
    ``limit`` characters (None for a missing one when ``optional``); raise
    :class:`SnsMalformed` otherwise."""
    if value is None and optional:
        return None
    if not is_text(value):
        raise SnsMalformed(f"{where} is not a string: {shown(value)}")
    if limit is not None and len(value) > limit:
        raise SnsMalformed(f"{where} is longer than {limit} characters")
    return value


def _address(value, where: str) -> str:
    """Return the recipient address ``value``; raise :class:`SnsMalformed`
    unless it is a string the store can keep (as it keeps it: trimmed and
    lower-cased, which can make it longer)."""
    address = _text(value, where, optional=False)
    if len(address.strip().lower()) > MAX_ADDRESS:
        raise SnsMalformed(f"{where} is longer than {MAX_ADDRESS} characters")
    return address


def _issue_of(mail: dict) -> str | None:
    """Return the edition key from the X-Newsletter-Issue header in ``mail``,
    or None when SES sent no headers or the header holds no edition. Raises
    :class:`SnsMalformed` when the headers are not a list of name and value
    strings."""
    issue, found = None, False
    for i, header in enumerate(_list(mail.get("headers"), "mail.headers")):  # all checked, not just the first
        header = _object(header, f"mail.headers[{i}]", optional=False)
        name = _text(header.get("name"), f"mail.headers[{i}].name", optional=False)
        value = _text(header.get("value"), f"mail.headers[{i}].value", optional=False)
        if not found and name.lower() == ISSUE_HEADER.lower():
            found = True
            issue = _edition_key(value.strip())
    return issue


def _edition_key(value: str) -> str | None:
    """The edition key (see models.Edition) in a header's ``value`` (else
    the date it starts with: a daily edition), or None."""
    try:
        return Edition.parse(value).key
    except ValueError:
        return value[:10] if ISSUE_DATE.fullmatch(value[:10]) else None


def _time(value, where: str) -> dt.datetime | None:
    """Return the timestamp ``value`` in UTC; None when it is missing, not a
    time, or out of range once in UTC. Raises :class:`SnsMalformed` when it is
    not a string."""
    text = _text(value, where)
    if text is None:
        return None
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return stamp.astimezone(dt.timezone.utc) if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved into UTC
        return None


def _recipients(section: dict, name: str, field: str):
    """Yield (where, recipient object, address) for each recipient listed in
    ``section[field]`` (``name`` is the section's name, for messages);
    raises :class:`SnsMalformed` for a recipient that is not as SES sends it."""
    for i, recipient in enumerate(_list(section.get(field), f"{name}.{field}")):
        where = f"{name}.{field}[{i}]"
        recipient = _object(recipient, where, optional=False)
        yield where, recipient, _address(recipient.get("emailAddress"), f"{where}.emailAddress")


def _bounce_detail(recipient: dict, where: str) -> str | None:
    """A bounced recipient's diagnostic code, else its status (both checked)."""
    diagnostic = _text(recipient.get("diagnosticCode"), f"{where}.diagnosticCode")
    status = _text(recipient.get("status"), f"{where}.status")
    return diagnostic or status


def parse_ses_notification(message: str) -> list[Feedback]:
    """Return one :class:`Feedback` per recipient named in the SES
    notification ``message`` (the SNS ``Message`` string); an empty list for
    other kinds (such as Send or Open events). Raises :class:`SnsMalformed`
    when it is not JSON, not an SES notification, or any field read is not
    of the type and size SES sends (every one is checked before anything is
    returned, so a malformed notification changes nothing)."""
    try:
        payload = json.loads(message)
    except (ValueError, TypeError, RecursionError) as exc: # RecursionError: brackets nested too deeply
        raise SnsMalformed("the notification's Message is not JSON") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("mail"), dict):
        raise SnsMalformed("the notification is not from SES (no mail object)")
    notification_type = _text(payload.get("notificationType"), "notificationType")
    event_type = _text(payload.get("eventType"), "eventType")
    kind = KINDS.get(notification_type or event_type or "")
    if kind is None:
        return []
    issue = _issue_of(payload["mail"])
    if kind == FeedbackKind.BOUNCE:
        bounce = _object(payload.get("bounce"), "bounce")
        bounce_type = _text(bounce.get("bounceType"), "bounce.bounceType", MAX_BOUNCE_TYPE)
        bounce_subtype = _text(bounce.get("bounceSubType"), "bounce.bounceSubType", MAX_BOUNCE_SUBTYPE)
        at = _time(bounce.get("timestamp"), "bounce.timestamp")
        return [
            Feedback(kind, email, issue, bounce_type=bounce_type, bounce_subtype=bounce_subtype, at=at,
                     detail=_bounce_detail(recipient, where))
            for where, recipient, email in _recipients(bounce, "bounce", "bouncedRecipients")
        ]
    if kind == FeedbackKind.COMPLAINT:
        complaint = _object(payload.get("complaint"), "complaint")
        detail = _text(complaint.get("complaintFeedbackType"), "complaint.complaintFeedbackType")
        at = _time(complaint.get("timestamp"), "complaint.timestamp")
        return [Feedback(kind, email, issue, detail=detail, at=at)
                for _where, _recipient, email in _recipients(complaint, "complaint", "complainedRecipients")]
    if kind == FeedbackKind.RENDERING_FAILURE:
        failure = _object(payload.get("failure"), "failure", optional=False)
        template = _text(failure.get("templateName"), "failure.templateName") or ""
        error = _text(failure.get("errorMessage"), "failure.errorMessage") or "no message"
        # SES's example record carries no headers: the template's name says the edition.
        if issue is None and template.startswith(SES_TEMPLATE_PREFIX):
            issue = _edition_key(template.removeprefix(SES_TEMPLATE_PREFIX))
        detail = f"{RENDERING_FAILURE_REASON}: {error} (template {template or 'unknown'})"
        at = _time(payload["mail"].get("timestamp"), "mail.timestamp")
        # A destination may carry the display name it was sent with.
        return [Feedback(kind, email.utils.parseaddr(address)[1] or address, issue, detail=detail, at=at)
                for address in (_address(value, f"mail.destination[{i}]") for i, value in
                                enumerate(_list(payload["mail"].get("destination"), "mail.destination")))]
    delivery = _object(payload.get("delivery"), "delivery")
    at = _time(delivery.get("timestamp"), "delivery.timestamp")
    return [Feedback(kind, _address(address, f"delivery.recipients[{i}]"), issue, at=at)
            for i, address in enumerate(_list(delivery.get("recipients"), "delivery.recipients"))]


def handle_sns(envelope: dict, verifier, store, confirm: bool = True) -> str:
    """Verify and act on one SNS envelope; return what was done, in words.

    ``Notification``: the SES feedback in it is applied (idempotently, by
    SNS message id). ``SubscriptionConfirmation``: the subscription is
    confirmed by fetching ``SubscribeURL``, only when it is on an SNS host of
    AWS (and ``confirm`` is true). ``UnsubscribeConfirmation``: nothing to do.
    Raises :class:`SnsMalformed` for a malformed envelope or SES notification
    and :class:`SnsError` for a message that fails verification or a
    confirmation that fails; nothing changes then.
    """
    verifier.verify(envelope)  # from here on, every field of the type is a string
    kind = envelope["Type"]
    if kind == "SubscriptionConfirmation":
        url = envelope["SubscribeURL"]
        verifier.check_url(url, "SubscribeURL")
        if not confirm:
            return "subscription confirmation (not confirmed here)"
        try:
            verifier.download(url)
        except OSError as exc:
            raise SnsError(f"could not confirm the subscription: {exc}") from exc
        return f"confirmed the subscription to {envelope['TopicArn']}"
    if kind == "UnsubscribeConfirmation":
        return f"unsubscribed from {envelope['TopicArn']}"
    records = parse_ses_notification(envelope["Message"])
    outcome = store.apply_feedback(envelope["MessageId"], records)
    if outcome is None:
        return "already handled"
    kinds = sorted({r.kind for r in records}) or ["nothing relevant"]
    suppressed = f", suppressed {len(outcome['suppressed'])}" if outcome["suppressed"] else ""
    return f"{'/'.join(kinds)} for {len(outcome['recorded'])} recipients{suppressed}"
