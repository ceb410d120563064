"""What every sender does, and what it answers.

A sender delivers one issue to batches of recipients. The dispatcher
(``newsletter.sending.dispatch``) owns the loop, the pacing, the retries and the
ledger; a sender only knows its provider. For each batch it returns one
:class:`Delivery` per recipient, or raises for the whole batch:

- :class:`~newsletter.core.errors.Throttled` or
  :class:`~newsletter.core.errors.TransientError`: nothing was sent, try again;
- :class:`StoppedMidBatch`: the provider refused to go on partway through
  the batch; it carries each recipient's outcome, then the run stops;
- :class:`~newsletter.core.errors.AccountError`: nothing was sent; stop the run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from newsletter.core.errors import AccountError
from newsletter.core.models import DeliveryStatus, Issue
from newsletter.sending.personalize import PreparedMessage, Recipient


@dataclass(frozen=True)
class Delivery:
    """The outcome for one recipient of a batch."""

    recipient: Recipient
    status: DeliveryStatus  # SENT, FAILED, RETRY or UNKNOWN
    message_id: str | None = None
    reason: str | None = None

    @property
    def subscriber_id(self) -> int:
        """The reader's id: with status, message id and reason, what the ledger stores."""
        return self.recipient.subscriber_id


class StoppedMidBatch(AccountError):
    """The provider refused to go on partway through a batch (account
    suspended or paused, quota used up, sender refused). ``deliveries`` has
    one outcome per recipient of the batch: those accepted before the refusal
    are SENT with their message ids; the refused and untried ones are RETRY
    (not sent). The dispatcher records them, then stops the run."""

    def __init__(self, message: str, deliveries: list[Delivery]):
        super().__init__(message)
        self.deliveries = deliveries


@dataclass(frozen=True)
class Quota:
    """The provider's sending limits; None means unlimited."""

    max_send_rate: float | None
    max_24_hour_send: float | None
    sent_last_24_hours: float

    @property
    def remaining_24_hours(self) -> float | None:
        """Messages still allowed in the rolling 24 hours, or None (unlimited)."""
        if self.max_24_hour_send is None:
            return None
        return max(0.0, self.max_24_hour_send - self.sent_last_24_hours)


class Sender(Protocol):
    """A way of delivering messages (outbox, SES, SMTP)."""

    name: str
    batch_size: int  # recipients per send() call

    def quota(self) -> Quota:
        """Return the account's limits (read once at the start of a send)."""

    def check_ahead(self, issue: Issue, stop: threading.Event) -> None:
        """Check what can be checked of ``issue`` before its send starts,
        while an earlier edition of the run sends (SES in bulk mode: its
        pre-flight); :meth:`open` then skips what passed. Returns when done,
        or soon after ``stop`` is set; raises nothing: what it found wrong,
        ``open`` raises (SES: a template it cannot render) or meets again."""

    def open(self, issue: Issue, message: PreparedMessage) -> None:
        """Prepare to send ``issue`` (e.g. store an SES template)."""

    def send(self, recipients: list[Recipient]) -> list[Delivery]:
        """Deliver to ``recipients``; one Delivery each, in order."""

    def close(self, complete: bool) -> None:
        """Finish; ``complete`` when every reader of the issue was handled."""

    def where(self, issue: Issue) -> str | None:
        """Where the messages of ``issue`` can be looked at, for the send's
        summary (the outbox's folder); None when they left for a provider."""

    def send_single(self, to_address: str, data: bytes) -> str:
        """Send one ready-made message outside any issue (a sign-up
        confirmation); return the message id. Raises a SendError subclass
        when it was not sent."""

