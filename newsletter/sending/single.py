"""One message of an edition to one address, outside the ledger: a test
message (``send --to``), and an edition sent again to one reader (the
dashboard's "send again"), re-rendered from the papers stored for it (see
newsletter.issue.editions) with the reader's own links and the picks stored
for them in that edition."""

from __future__ import annotations

from dataclasses import dataclass

from newsletter.core.config import Settings
from newsletter.core.errors import Refused, SendError
from newsletter.core.models import DeliveryStatus, Edition, Issue, Subscriber, SubscriberStatus
from newsletter.issue.editions import edition_batch
from newsletter.issue.render import render_for_readers, render_issue
from newsletter.picks.picking import EditionPicks, muted_on_top, reader_picks
from newsletter.readers.tokens import Signer
from newsletter.sending.dispatch import reader_recipient
from newsletter.sending.personalize import PreparedMessage, Recipient
from newsletter.sending.plan import RunPlan
from newsletter.sending.senders import create_sender
from newsletter.store import Store, normalize_email


def send_one(settings: Settings, issue: Issue, recipient: Recipient, sender: str | None = None,
             list_unsubscribe: bool = True, what: str = "") -> str | None:
    """Send ``issue`` to ``recipient`` alone, through the sender called
    ``sender`` (default: ``settings.sender``; SES in its raw mode: one
    message needs no stored template), recording nothing in the ledger;
    return the provider's message id (None when it gave none). With
    ``list_unsubscribe`` false the message has no List-Unsubscribe headers
    (someone with nothing to leave). ``what`` names the message in the error
    ("test message to ...").

    Raises :class:`ConfigError` for an unknown sender, what the sender
    raises when its account cannot send (:class:`AccountError`,
    :class:`TransientError`), and :class:`SendError` when the provider did
    not take the message.
    """
    chosen = create_sender(settings, sender, ses_mode="raw")
    chosen.open(issue, PreparedMessage(issue, settings.from_address, list_unsubscribe=list_unsubscribe))
    try:
        chosen.quota()  # an account that cannot send says so now
        delivery = chosen.send([recipient])[0]
    finally:
        chosen.close(complete=False)
    if delivery.status != DeliveryStatus.SENT:
        raise SendError(f"{what} not sent: {delivery.status} {delivery.reason or ''}".strip())
    return delivery.message_id


def own_copy(settings: Settings, store: Store, signer: Signer, issue: Issue, subscriber: Subscriber) -> Recipient:
    """Return ``subscriber`` as a copy of ``issue`` (rendered for readers,
    see ``render.render_for_readers``) outside the ledger addresses them:
    their links signed by ``signer`` and their picks as the send gives them
    (those stored for the edition by a run that stopped, else ranked now),
    recorded nowhere. File id 0: the outbox names files by id, and a copy
    must not replace the one the send wrote for this reader."""
    picks = EditionPicks(store, issue.edition, issue.date, issue.papers, issue.pickable).for_readers([subscriber.id])[subscriber.id]
    return reader_recipient(signer, settings.base_url, issue, subscriber, picks, file_id=0)


@dataclass(frozen=True)
class SentTest:
    """A test message that went out: ``issue`` as sent, to ``email``
    through the sender called ``sender``, with the provider's
    ``message_id``; ``published`` whether the edition is on the web yet."""

    issue: Issue
    email: str
    sender: str
    message_id: str | None
    published: bool


def send_test(settings: Settings, store: Store, signer: Signer, plan: RunPlan) -> SentTest:
    """Send the first edition of ``plan`` to ``plan.options.test_to`` alone,
    outside the ledger; return what went out. The edition is rendered and
    stored (``newsletter publish`` can then put it on the web; a test does
    not). A subscriber gets exactly their own copy: their working links and
    their picks (recorded nowhere). Anyone else gets the issue with no
    personal link: no List-Unsubscribe header (there is nothing for them to
    leave), no 👍/👎 links, the sign-up page in the footer.

    Raises :class:`SendError` when the plan has no edition or the message
    was not sent, :class:`InvalidEmail` for an address that is not one, and
    as :func:`send_one`.
    """
    if not plan.editions:
        raise SendError("nothing to send as a test: no papers for this edition")
    papers = plan.editions[0]
    issue = render_for_readers(papers, settings, signer)
    store.save_issue(issue)
    email = normalize_email(plan.options.test_to)
    subscriber = store.get(email=email)
    if subscriber is not None:
        recipient = own_copy(settings, store, signer, issue, subscriber)
    else:
        issue = render_issue(papers, settings)
        recipient = Recipient(0, email, None, settings.signup_url)
    name = plan.options.sender_name(settings)
    message_id = send_one(settings, issue, recipient, name, list_unsubscribe=subscriber is not None,
                          what=f"test message to {recipient.email}")
    published = store.get_issue(issue.date, issue.kind, published_only=True) is not None
    return SentTest(issue, recipient.email, name, message_id, published)


def resend(settings: Settings, store: Store, signer: Signer, edition: Edition, subscriber: Subscriber) -> str:
    """Send ``edition`` once more to ``subscriber``, an active reader,
    through the configured sender, recording nothing in the ledger; return
    the provider's message id.

    The email is rendered again from the edition's stored papers (the
    same papers, in the same order; the templates of today). The reader gets their own unsubscribe, preferences and
    👍/👎 links and the picks stored for them in that edition (none stored:
    the line their profile calls for, never a new ranking), and top cards
    without the papers they mute there now. Raises
    :class:`Refused` for a reader who is not active or an edition whose
    papers are not stored, and as :func:`send_one`.
    """
    if subscriber.status != SubscriberStatus.ACTIVE:
        raise Refused(f"the reader is {subscriber.status}: nothing is sent to an inactive address")
    batch = edition_batch(store, edition)
    if not batch.papers:
        raise Refused(f"the papers of {edition.key} are not stored: it cannot be rendered again")
    issue = render_for_readers(batch, settings, signer)
    stored = store.picks_of(edition.key, [subscriber.id]).get(subscriber.id, [])
    profile = store.profile(subscriber.id)
    picks = reader_picks(stored, profile, muted=muted_on_top(batch.papers, profile))
    # File id 0: the outbox names files by id, and this copy must replace
    # neither the one the send wrote for the reader nor an earlier copy.
    recipient = reader_recipient(signer, settings.base_url, issue, subscriber, picks, file_id=0)
    return send_one(settings, issue, recipient) or ""
