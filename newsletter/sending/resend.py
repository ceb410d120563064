"""Sending one edition again to one reader, outside the ledger (the
dashboard's "send again"): re-rendered from the papers stored for it (see
newsletter.issue.editions), with the reader's own links and the picks stored for
them in that edition."""

from __future__ import annotations

from newsletter.core.config import Settings
from newsletter.issue.editions import edition_batch
from newsletter.core.errors import Refused, SendError
from newsletter.core.models import DeliveryStatus, Edition, Subscriber, SubscriberStatus
from newsletter.sending.personalize import PreparedMessage
from newsletter.picks.picking import reader_picks
from newsletter.issue.render import render_for_readers
from newsletter.sending.dispatch import reader_recipient
from newsletter.sending.senders import create_sender
from newsletter.store import Store
from newsletter.readers.tokens import Signer


def resend(settings: Settings, store: Store, signer: Signer, edition: Edition, subscriber: Subscriber) -> str:
    """Send ``edition`` once more to ``subscriber``, an active reader,
    through the configured sender, recording nothing in the ledger; return
    the provider's message id.

    The email is rendered again from the edition's stored papers (the
    same papers, in the same order; the templates of today). The reader gets their own unsubscribe, preferences and
    👍/👎 links and the picks stored for them in that edition (none stored:
    the line their profile calls for, never a new ranking). Raises
    :class:`Refused` for a reader who is not active or an edition whose
    papers are not stored, and :class:`SendError` when the
    provider did not take it.
    """
    if subscriber.status != SubscriberStatus.ACTIVE:
        raise Refused(f"the reader is {subscriber.status}: nothing is sent to an inactive address")
    batch = edition_batch(store, edition)
    if not batch.papers:
        raise Refused(f"the papers of {edition.key} are not stored: it cannot be rendered again")
    issue = render_for_readers(batch, settings, signer)
    stored = store.picks_of(edition.key, [subscriber.id]).get(subscriber.id, [])
    picks = reader_picks(stored, store.profile(subscriber.id))
    # File id 0: the outbox names files by id, and this copy must replace
    # neither the one the send wrote for the reader nor an earlier copy.
    recipient = reader_recipient(signer, settings.base_url, issue, subscriber, picks, file_id=0)
    sender = create_sender(settings, ses_mode="raw")  # one message needs no stored SES template
    sender.open(issue, PreparedMessage(issue, settings.from_address))
    try:
        sender.quota()  # an account that cannot send says so now (the outbox: no limit)
        delivery = sender.send([recipient])[0]
    finally:
        sender.close(complete=False)
    if delivery.status != DeliveryStatus.SENT:
        raise SendError(f"not sent: {delivery.status} {delivery.reason or ''}".strip())
    return delivery.message_id or ""
