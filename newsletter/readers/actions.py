"""Reader actions from the web: recorded first, applied at once when the
database allows, else as soon as it is free; never lost.

An unsubscribe is a legal obligation, and it may arrive while a long
operation (an import of a million rows, a migration) holds the database.
So every reader action (unsubscribe, resubscribe, a confirmed sign-up, a
sign-up request: see ``newsletter.readers.signup``; saved preferences, a 👍 or 👎,
"Forget my votes")
is first recorded in the store's action inbox, which a long operation never
holds, and only then applied: at once, waiting at most a second for the
database, or later by the worker. Until it is applied, an unsubscribe
already counts: the send loop never mails a reader whose unsubscribe is
waiting (``Store.active_ids``), and the reader's pages show their saved
preferences, schedule and votes (:meth:`ReaderActions.profile_of`,
:meth:`ReaderActions.schedule_of`, :meth:`ReaderActions.votes_of`).

A reader's changes (votes, saved preferences, resubscribes) are limited:
``READER_LIMITS`` per reader and per client address in an hour, and so many
waiting for the database at once; beyond them a change is refused
(:class:`RateLimited`) and nothing is recorded. A change that changes
nothing (the vote the reader already gave, the preferences they already
have) records nothing either, so the inbox grows only with real changes;
applied actions are deleted once they no longer count for a limit.

Sign-up requests are never handled in the request itself: the worker sends
the confirmation emails. So a sign-up does the same work whether or not the
address is on the list (nothing to learn from its timing), and a request
that was accepted is mailed even if the server stops right after answering.
Likewise, a seed paper a reader names that is not in the database is
fetched from the arXiv API by a worker of its own, never while the reader
waits and never ahead of a confirmation email: each download has a total
deadline, readers' papers are taken in turn (one reader's twenty never hold
up another's one), and a reader has at most :data:`MAX_PENDING_LOOKUPS`
waiting (those they no longer ask for are dropped).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Callable

from newsletter.core.errors import BatchError, FetchError, SendError, StoreBusy
from newsletter.papers.fetch import ARXIV_MAX_IDS, fetch_arxiv_papers
from newsletter.picks import reader_model
from newsletter.picks.interests import MAX_SEEDS
from newsletter.core.models import (
    ConfirmOutcome,
    Frequency,
    NotApplied,
    Profile,
    ReaderActionKind,
    Schedule,
    Subscriber,
    SubscriberStatus,
)
from newsletter.store import (
    ActionLimits,
    ActionPayload,
    ConfirmPayload,
    ForgetVotesPayload,
    PreferencesPayload,
    ReaderAction,
    ResubscribePayload,
    Store,
    UnsubscribePayload,
    Vote,
    VotePayload,
)

log = logging.getLogger("newsletter.readers.actions")

# Actions the store applies by itself (a sign-up needs an email sent, a
# seed paper a download).
STORE_KINDS = (ReaderActionKind.UNSUBSCRIBE, ReaderActionKind.RESUBSCRIBE, ReaderActionKind.CONFIRM,
               ReaderActionKind.PREFERENCES, ReaderActionKind.VOTE, ReaderActionKind.FORGET_VOTES)
# A confirmation email or a seed paper's download that failed is tried again
# after these many seconds (doubling, at most an hour) for 7 days (when the
# email's link would have expired).
RETRY_BASE_SECONDS = 30.0
RETRY_CAP_SECONDS = 3600.0
GIVE_UP_AFTER = dt.timedelta(days=7)
PURGE_EVERY_SECONDS = 3600.0
# The arXiv API is asked with a short deadline for the whole answer (the
# worker waits for it), and at most once every three seconds, as arXiv asks
# of its API's clients.
ARXIV_TIMEOUT_SECONDS = 10.0
ARXIV_SPACING_SECONDS = 3.0
# A reader's changes: at most 60 an hour per reader (a vote on every paper
# of a long day's issue is about that), 300 an hour per client address
# (readers behind one office's address), and 30 waiting for the database.
READER_LIMITS = ActionLimits(kinds=(ReaderActionKind.PREFERENCES, ReaderActionKind.VOTE, ReaderActionKind.RESUBSCRIBE,
                                    ReaderActionKind.FORGET_VOTES),
                             per_reader=60, per_client=300, window=dt.timedelta(hours=1), max_pending=30)
# Readers' models of votes fitted per round of the worker (a few ms each).
MODELS_PER_ROUND = 20
# A reader's seed papers waiting to be looked up at once: one form's worth.
MAX_PENDING_LOOKUPS = MAX_SEEDS
# What applying an action comes to: whether an unsubscribe or a resubscribe
# changed anything, what a confirmation came to, or words (kept in the inbox).
Outcome = bool | ConfirmOutcome | str


class ReaderActions:
    """Records and applies reader actions on ``store``.

    ``send_confirmation(email, name, interests, frequency)`` sends a sign-up's
    confirmation email (raising a :class:`SendError` subclass when it could
    not); without it, sign-up requests wait for a worker that has one.
    Seed papers are fetched from the arXiv API at ``arxiv_api_url``; without
    it, they wait for a worker that has one.
    """

    def __init__(self, store: Store, send_confirmation: Callable[..., None] | None = None,
                 arxiv_api_url: str | None = None):
        self.store = store
        self.send_confirmation = send_confirmation
        self.arxiv_api_url = arxiv_api_url
        self._next_fetch = 0.0  # time.monotonic() before which arXiv is not asked again
        self._last_purge = 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---------------------------------------------------------------- actions

    def unsubscribe(self, subscriber: Subscriber, *, one_click: bool) -> str:
        """Unsubscribe ``subscriber`` (idempotent); return the status they
        have (or will have once it is applied): "unsubscribed", or their
        status when it is neither active nor unsubscribed (bounced,
        complained: left alone)."""
        status = self.store.pending_status(subscriber.id) or subscriber.status
        if status != SubscriberStatus.ACTIVE:
            return status
        payload = UnsubscribePayload(
            source="one-click" if one_click else "web",
            reason="one-click unsubscribe (RFC 8058)" if one_click else "unsubscribed on the web page",
            ref=subscriber.ref)
        self._submit(payload, subscriber_id=subscriber.id)
        return SubscriberStatus.UNSUBSCRIBED

    def resubscribe(self, subscriber: Subscriber, client: str | None = None) -> bool:
        """Make ``subscriber`` active again if they unsubscribed themself;
        return whether they are (or will be, once it is applied) active.
        Raises :class:`RateLimited` beyond :data:`READER_LIMITS` (``client``:
        the client address asking; None: not counted by client)."""
        if (self.store.pending_status(subscriber.id) or subscriber.status) == SubscriberStatus.ACTIVE:
            return True
        _found, allowed = self.store.signup_state(subscriber.email)
        if not allowed:
            return False
        changed = self._submit(ResubscribePayload(subscriber.ref), subscriber_id=subscriber.id, client=client)
        if changed is NotApplied.WAITING or changed:
            return True
        return self.store.get(ref=subscriber.ref).status == SubscriberStatus.ACTIVE  # made active meanwhile

    def confirm(self, email: str, name: str | None, interests: tuple[str, ...] = (),
                frequency: Frequency = Frequency.DAILY) -> ConfirmOutcome:
        """Apply a used confirmation link (a new reader's profile starts
        with ``interests``, and they get the newsletter at ``frequency``);
        return what it comes to (refused: the address may not be made
        active from the web: the operator removed it, or it bounced or
        complained since the link was sent). The address's status is
        checked when the confirmation is applied."""
        found, allowed = self.store.signup_state(email)
        if found is not None and found.status == SubscriberStatus.ACTIVE:
            return ConfirmOutcome.ALREADY
        if not allowed:
            return ConfirmOutcome.REFUSED
        outcome = self._submit(ConfirmPayload(email, name, tuple(interests), frequency), email=email)
        if outcome is NotApplied.WAITING:  # applied later: say what it will do
            return ConfirmOutcome.SUBSCRIBED if found is None else ConfirmOutcome.RESUBSCRIBED
        return outcome

    def save_preferences(self, subscriber: Subscriber, profile: Profile, schedule: Schedule | None = None,
                         client: str | None = None) -> bool:
        """Save what the reader told us: ``profile``'s interests, authors,
        categories, seed papers, number of picks and how their email shows
        the rest of the day (their votes stay as they are), and their ``schedule`` when given, together. Seed papers
        that are not in the database are queued for the worker to fetch
        from arXiv. Returns whether it is saved now (False: it will be as
        soon as the database is free); preferences the reader already has
        record nothing. Raises :class:`RateLimited` beyond
        :data:`READER_LIMITS` (``client``: the client address asking;
        None: not counted by client)."""
        payload = PreferencesPayload.of(subscriber.id, profile, schedule)

        def unchanged(waiting: list[ReaderAction]) -> bool:
            current = _profile_after(self.store.profile(subscriber.id), waiting)
            return payload.applied_to(current) == current and (
                schedule is None or schedule == _schedule_after(self._stored_schedule(subscriber), waiting))

        outcome = self._submit(payload, subscriber_id=subscriber.id, client=client, unchanged=unchanged)
        if outcome is not NotApplied.UNCHANGED:
            self.queue_papers(profile.seeds, subscriber.id)
        return outcome is not NotApplied.WAITING

    def save_schedule(self, subscriber: Subscriber, schedule: Schedule, client: str | None = None) -> bool:
        """Save ``schedule`` as the reader's, their other preferences as
        they are: what a schedule link of the email's footer does (see
        :meth:`save_preferences`, whose limits and return it shares)."""
        return self.save_preferences(subscriber, self.profile_of(subscriber.id), schedule, client)

    def queue_papers(self, arxiv_ids: tuple[str, ...], subscriber_id: int | None = None) -> list[str]:
        """Queue those of ``arxiv_ids`` that are not in the database for the
        worker to fetch from arXiv, for the reader ``subscriber_id`` (None:
        for no reader), once: one already queued is not queued again; return
        those queued. For a reader, ``arxiv_ids`` are all their seed papers:
        their lookups of papers no longer among them are dropped, and at
        most :data:`MAX_PENDING_LOOKUPS` wait."""
        known = self.store.papers(arxiv_ids)
        missing = [arxiv_id for arxiv_id in arxiv_ids if arxiv_id not in known]
        return self.store.queue_lookups(missing, subscriber_id=subscriber_id,
                                        max_pending=None if subscriber_id is None else MAX_PENDING_LOOKUPS)

    def vote(self, subscriber: Subscriber, paper_key: str, vote: int, edition: str, client: str | None = None) -> bool:
        """Record the reader's ``vote`` on a paper: +1 (👍), -1 (👎) or 0
        (undo). Idempotent: the vote the reader already gave (or an undo of
        none) records nothing; a new vote replaces the old one. Returns
        whether it is recorded now (False: as soon as the database is free).
        Raises :class:`RateLimited` beyond :data:`READER_LIMITS` (``client``:
        the client address asking; None: not counted by client)."""
        if vote not in (-1, 0, 1):
            raise ValueError(f"a vote is +1, -1 or 0 (undo), not {vote!r}")
        def unchanged(waiting: list[ReaderAction]) -> bool:
            for action in reversed(waiting):
                if action.payload.paper_key == paper_key:
                    return action.payload.vote == vote
            return next((v.vote for v in self.store.votes(subscriber.id) if v.paper_key == paper_key), 0) == vote

        return self._submit(VotePayload(subscriber.id, paper_key, vote, edition), subscriber_id=subscriber.id,
                            client=client, unchanged=unchanged) is not NotApplied.WAITING

    def forget_votes(self, subscriber: Subscriber, undo: bool = False, client: str | None = None) -> bool:
        """Forget the reader's votes ("Forget my votes": they no longer
        shape their picks, and their model of votes goes), or with ``undo``
        bring back those forgotten in the last ``FORGOTTEN_DAYS`` days (see
        ``Store.forget_votes``). Nothing to forget (or to bring back)
        records nothing. Returns whether it is done now (False: as soon as
        the database is free). Raises :class:`RateLimited` beyond
        :data:`READER_LIMITS`."""
        def unchanged(waiting: list[ReaderAction]) -> bool:
            if waiting:  # the last one waiting is what this one would change
                return waiting[-1].payload.undo == undo
            # The stored votes only: this runs inside the inbox's transaction,
            # which a read of the inbox (votes waiting) would wait for.
            return self.store.forgotten(subscriber.id) is None if undo else not self.store.votes(subscriber.id)

        return self._submit(ForgetVotesPayload(subscriber.id, undo), subscriber_id=subscriber.id, client=client,
                            unchanged=unchanged) is not NotApplied.WAITING

    def fit_models(self, limit: int = MODELS_PER_ROUND) -> int:
        """Fit the readers' models of votes that are due (their votes
        changed: see ``newsletter.picks.reader_model``), up to ``limit``;
        return how many were stored. The worker does it after each round
        of actions, so a vote's request never waits for a fit."""
        return reader_model.fit_due(self.store, limit)

    # ---------------------------------------------------------------- views

    def profile_of(self, subscriber_id: int) -> Profile:
        """The reader's profile as it is once their waiting preferences are
        applied: a form saved while the database was held shows as saved."""
        return _profile_after(self.store.profile(subscriber_id),
                              self.store.pending_actions(subscriber_id, (ReaderActionKind.PREFERENCES,)))

    def schedule_of(self, subscriber: Subscriber) -> Schedule:
        """The reader's schedule as it is once their waiting preferences are
        applied (read again: a form saved a moment ago shows as saved)."""
        return _schedule_after(self._stored_schedule(subscriber),
                               self.store.pending_actions(subscriber.id, (ReaderActionKind.PREFERENCES,)))

    def _stored_schedule(self, subscriber: Subscriber) -> Schedule:
        """The reader's schedule as stored now (``subscriber``'s when they
        are no longer stored)."""
        return (self.store.get(ref=subscriber.ref) or subscriber).schedule

    def votes_of(self, subscriber_id: int) -> list[Vote]:
        """The reader's votes, newest first, as they are once their waiting
        votes are applied (see ``Store.votes``)."""
        votes = {vote.paper_key: vote for vote in self.store.votes(subscriber_id)}
        waiting = self.store.pending_actions(subscriber_id, (ReaderActionKind.VOTE, ReaderActionKind.FORGET_VOTES))
        papers = self.store.papers(action.payload.paper_key for action in waiting
                                   if action.kind == ReaderActionKind.VOTE) if waiting else {}
        for action in waiting:
            if action.kind == ReaderActionKind.FORGET_VOTES:
                if not action.payload.undo:  # an undo waiting shows once applied
                    votes.clear()
                continue
            key, value = action.payload.paper_key, action.payload.vote
            votes.pop(key, None)
            if value:
                paper = papers.get(key)
                votes[key] = Vote(key, value, action.payload.edition, action.received_at,
                                  paper.title if paper else None)
        return sorted(votes.values(), key=lambda vote: vote.at, reverse=True)

    # ---------------------------------------------------------------- applying

    def _submit(self, payload: ActionPayload, *, subscriber_id: int | None = None, email: str | None = None,
                client: str | None = None,
                unchanged: Callable[[list[ReaderAction]], bool] | None = None) -> Outcome | NotApplied:
        """Record an action, then try to apply it at once. Returns its
        outcome, :attr:`NotApplied.WAITING` when it was left for the worker
        (the database is held, or an older action about the same reader is
        still waiting), or :attr:`NotApplied.UNCHANGED` for a reader's
        change (a kind of :data:`READER_LIMITS`) that ``unchanged`` finds
        would change nothing: then nothing is recorded. Raises
        :class:`RateLimited` when a reader's change goes beyond the limits."""
        if payload.kind in READER_LIMITS.kinds:
            action_id = self.store.record_reader_action(payload, subscriber_id=subscriber_id, client=client,
                                                        limits=READER_LIMITS,
                                                        unchanged=unchanged or (lambda _waiting: False))
            if action_id is None:
                return NotApplied.UNCHANGED
        else:
            action_id = self.store.record_action(payload, subscriber_id=subscriber_id, email=email, claim=True)
        if self.store.has_earlier_pending(action_id, subscriber_id=subscriber_id, email=email):
            self.store.release_action(action_id)
            return NotApplied.WAITING
        try:
            outcome = self._apply(payload, quick=True)
        except StoreBusy:
            log.warning("the database is busy: a reader's %s is kept and applied when it is free", payload.kind)
            self.store.release_action(action_id)
            return NotApplied.WAITING
        except BaseException:
            self.store.release_action(action_id)
            raise
        self.store.finish_action(action_id, str(outcome))
        return outcome

    def _apply(self, payload: ActionPayload, quick: bool = False) -> Outcome:
        """Apply one action of :data:`STORE_KINDS` to the store; returns its
        outcome. Raises ValueError for an action of another kind."""
        match payload:
            case UnsubscribePayload():
                _subscriber, changed = self.store.unsubscribe(payload.ref, source=payload.source,
                                                              reason=payload.reason, quick=quick)
                return changed
            case ResubscribePayload():
                _subscriber, changed = self.store.resubscribe(payload.ref, source="web", quick=quick)
                return changed
            case ConfirmPayload():
                return self.store.confirm_signup(payload.email, payload.name, payload.interests, quick=quick,
                                                 frequency=payload.frequency)
            case PreferencesPayload():
                self.store.save_profile(payload.applied_to(Profile(payload.subscriber_id)), quick=quick,
                                        schedule=payload.schedule)
                return "saved"
            case VotePayload():
                before = self.store.record_vote(payload.subscriber_id, payload.paper_key, payload.vote,
                                                payload.edition, quick=quick)
                return f"vote {payload.vote} (was {before})"
            case ForgetVotesPayload():
                if payload.undo:
                    return f"{self.store.restore_votes(payload.subscriber_id, quick=quick)} votes back"
                return f"{self.store.forget_votes(payload.subscriber_id, quick=quick)} votes forgotten"
        raise ValueError(f"not a reader action the store applies: {payload.kind!r}")

    def apply_pending(self) -> int:
        """Apply every waiting store action (unsubscribes, resubscribes,
        confirmations, preferences, votes), oldest first; return how many
        were applied. Waits for the database as long as any writer does."""
        applied = 0
        while True:
            due = self.store.due_actions(STORE_KINDS)
            progress = False
            for action in due:
                # Actions about one reader are applied in the order they came.
                if self.store.has_earlier_pending(action.id, subscriber_id=action.subscriber_id,
                                                  email=action.email_key) or not self.store.claim_action(action.id):
                    continue
                try:
                    outcome = self._apply(action.payload)
                except BaseException:
                    self.store.release_action(action.id)
                    raise
                self.store.finish_action(action.id, str(outcome))
                applied += 1
                progress = True
            if not due or not progress:
                return applied

    def send_pending_confirmations(self) -> int:
        """Send the confirmation email of every waiting sign-up request
        whose address may be made active (see ``Store.signup_state``);
        return how many were sent. A failed email is tried again later,
        with a growing delay, until its link would have expired."""
        if self.send_confirmation is None:
            return 0
        sent = 0
        for action in self.store.due_actions((ReaderActionKind.SIGNUP,)):
            if not self.store.claim_action(action.id):
                continue
            signup = action.payload
            found, allowed = self.store.signup_state(signup.email)
            if not allowed or (found is not None and found.status == SubscriberStatus.ACTIVE):
                self.store.finish_action(action.id, f"nothing sent: {found.status if found else 'new'}")
                continue
            try:
                self.send_confirmation(signup.email, signup.name, signup.interests, signup.frequency)
            except SendError as exc:
                self._retry_later(action, f"not sent: {exc}")
                log.error("sign-up confirmation not sent: %s", exc)
                continue
            except BaseException:
                self.store.release_action(action.id)
                raise
            self.store.finish_action(action.id, "confirmation sent")
            sent += 1
        return sent

    def fetch_pending_papers(self) -> int:
        """Fetch the seed papers waiting for it from the arXiv API (up to
        :data:`ARXIV_MAX_IDS` in one request, taken in turn by reader, at
        most one request every :data:`ARXIV_SPACING_SECONDS`, each within
        :data:`ARXIV_TIMEOUT_SECONDS` in all) and store those it knows;
        return how many were stored. When arXiv cannot be reached or answers nonsense,
        they are tried again later, with a growing delay, for 7 days."""
        if self.arxiv_api_url is None or time.monotonic() < self._next_fetch:
            return 0
        claimed = [a for a in self.store.due_lookups(ARXIV_MAX_IDS) if self.store.claim_action(a.id)]
        if not claimed:
            return 0
        try:
            ids = sorted({action.payload.arxiv_id for action in claimed})
            known = self.store.papers(ids)  # stored meanwhile (by a batch, or an earlier fetch)
            missing = [arxiv_id for arxiv_id in ids if arxiv_id not in known]
            found = {}
            if missing:
                self._next_fetch = time.monotonic() + ARXIV_SPACING_SECONDS
                try:
                    found = fetch_arxiv_papers(self.arxiv_api_url, missing, ARXIV_TIMEOUT_SECONDS)
                except (FetchError, BatchError) as exc:
                    log.warning("seed papers not fetched from arXiv, tried again later: %s", exc)
                    for action in claimed:
                        self._retry_later(action, f"not fetched: {exc}")
                    return 0
                self.store.store_papers(found.values())
        except BaseException:
            for action in claimed:
                self.store.release_action(action.id)
            raise
        for action in claimed:
            arxiv_id = action.payload.arxiv_id
            self.store.finish_action(action.id, "fetched" if arxiv_id in found else
                                     "already stored" if arxiv_id in known else "not on arXiv")
        return len(found)

    def _retry_later(self, action: ReaderAction, outcome: str) -> None:
        """Give back a claimed action that failed, to be tried again after
        a delay that doubles with each attempt; finish it (given up) once it
        is older than :data:`GIVE_UP_AFTER`."""
        if self.store.clock() - action.received_at > GIVE_UP_AFTER:
            self.store.finish_action(action.id, f"gave up: {outcome}")
        else:
            delay = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** action.attempts)
            self.store.release_action(action.id, retry_in=delay, outcome=outcome)

    def run_pending(self) -> None:
        """Apply waiting actions, send waiting confirmations and fetch
        waiting seed papers."""
        self.apply_pending()
        self.send_pending_confirmations()
        self.fetch_pending_papers()

    # ---------------------------------------------------------------- workers

    def start(self, interval: float = 0.5) -> None:
        """Every ``interval`` seconds until :meth:`stop`, in two daemon
        threads: one applies waiting actions, sends waiting confirmations
        and deletes what the inbox no longer needs; the other fetches
        waiting seed papers (so a slow arXiv never delays a confirmation).
        Failures are logged and retried."""
        if self._threads:
            return
        self._stop.clear()
        self._threads = [threading.Thread(target=self._work, args=(interval, rounds), name=name, daemon=True)
                         for name, rounds in (("reader-actions", self._actions_round),
                                              ("seed-papers", self.fetch_pending_papers))]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop the worker threads (after the round in progress)."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _actions_round(self) -> None:
        """One round of the first worker: apply, send confirmations, fit
        the models of votes that changed, and once an hour delete what the
        inbox and the forgotten votes no longer need."""
        self.apply_pending()
        self.send_pending_confirmations()
        self.fit_models()
        if (stamp := self.store.clock().timestamp()) - self._last_purge > PURGE_EVERY_SECONDS:
            # Applied reader changes are kept only as long as they count for the limits.
            self.store.purge_actions(others_older_than=READER_LIMITS.window)
            self.store.purge_forgotten_votes()
            self._last_purge = stamp

    def _work(self, interval: float, rounds: Callable[[], object]) -> None:
        while not self._stop.wait(interval):
            try:
                rounds()
            except Exception:  # a database hiccup: log it, the next round tries again
                log.exception("the %s worker failed; retrying", threading.current_thread().name)


def _profile_after(profile: Profile, waiting: list[ReaderAction]) -> Profile:
    """``profile`` once the "preferences" actions ``waiting`` are applied."""
    for action in waiting:
        profile = action.payload.applied_to(profile)
    return profile


def _schedule_after(schedule: Schedule, waiting: list[ReaderAction]) -> Schedule:
    """``schedule`` once the "preferences" actions ``waiting`` are applied
    (one that leaves the schedule as it is leaves it)."""
    for action in waiting:
        schedule = action.payload.schedule or schedule
    return schedule
