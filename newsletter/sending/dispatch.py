"""The send loop: every active reader gets the issue exactly once.

How "exactly once" holds under cron, crashes and throttling:

- One run per issue at a time: a lock row in the database, taken over when
  its holder is dead (same host, process gone) or silent for two minutes.
- The ledger (:class:`newsletter.store.Ledger`) has a row per reader and
  issue. A worker writes "pending" immediately before calling the provider
  and "sent" (with the provider's message id) only once the provider
  accepted that reader. Readers with no row are the ones still to send, so a
  re-run after a crash, a kill -9 or a Ctrl-C sends to them and nobody else.
- A call that certainly sent nothing (throttled, 5xx, connection refused)
  has its rows removed and is retried with capped, jittered exponential
  backoff; a call whose answer was lost leaves its readers "unknown", which
  are reported and not resent unless asked. Rows still "pending" when a run
  starts belong to a run that died mid-call: they become "unknown" too.
- Each chunk's readers are checked against the list just before sending, so
  an unsubscribe that arrives during the send is honoured.

Pacing is :class:`newsletter.sending.ratelimit.RateLimiter`, a token bucket
at the provider's rate.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, TypeVar

from newsletter.core.errors import (
    AccountError,
    ReadersFailed,
    SendError,
    SendLocked,
    Throttled,
    TransientError,
)
from newsletter.core.models import Addressee, DeliveryStatus, Edition, Issue, PicksState, RestOfDay, Subscriber
from newsletter.sending.personalize import PreparedMessage, Recipient
from newsletter.sending.ratelimit import RateLimiter, chunked
from newsletter.sending.senders.base import Delivery, Sender, StoppedMidBatch
from newsletter.store import Ledger, Store
from newsletter.store.ledger import LedgerRow
from newsletter.readers.tokens import Signer

T = TypeVar("T")

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
# How often a run waiting (for the rate, a backoff) looks at the operator's
# stop event; an error that stops the run wakes it at once.
STOP_POLL_SECONDS = 0.1
# Readers ranked for their picks at a time: ranking costs per call as well
# as per reader, and 50 at a time (a bulk call) costs twice as much each.
RANK_PAGE = 500


@dataclass
class SendOptions:
    """How one run behaves (the ``newsletter send`` options)."""

    limit: int | None = None  # send to at most this many readers this run
    resend_unknown: bool = False
    allow_partial: bool = False  # send what the 24-hour quota allows instead of refusing
    max_rate: float | None = None  # messages per second; None: the provider's quota
    concurrency: int = 8
    max_attempts: int = 12  # calls per chunk before leaving it to the next run
    max_consecutive_failures: int = 50
    backoff_base: float = 0.2
    backoff_cap: float = 20.0
    heartbeat_seconds: float = HEARTBEAT_SECONDS  # between two heartbeats of the send lock
    page_size: int = 1000  # readers read from the list per query
    weekly_day: int = 0  # the day (0 Monday) of weekly readers who chose none


@dataclass
class SendReport:
    """What a run did. Counts are readers; ``ledger`` holds the issue's totals."""

    edition: str  # the edition's key (see models.Edition)
    to_send: int = 0
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    left: int = 0  # certainly not sent (stopped, or kept failing): the next run sends them
    skipped: int = 0  # unsubscribed after the send began
    abandoned: int = 0  # "pending" rows of a dead run, now "unknown"
    throttles: int = 0
    already_sent: bool = False
    interrupted: bool = False
    stopped_by: SendError | None = None  # the error that stopped the run midway
    waiting: int = 0  # readers still without the issue after this run (quota, --limit, a stop)
    rate: float | None = None
    elapsed: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (address, reason), first few
    ledger: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every targeted reader was handled (sent, failed or unknown)."""
        return self.left == 0 and not self.interrupted and self.stopped_by is None

    def error(self) -> SendError | None:
        """Return the error a run that did this ends with, or None when it
        is done: every targeted reader handled and none refused for good.

        An error that stopped the run midway gives :class:`AccountError`
        (the provider refuses: exit 3) or :class:`SendError` (faults that
        may pass: exit 1), caused by that error; an interrupted run, or one
        that left readers, gives :class:`SendError`; readers refused for
        good give :class:`ReadersFailed`.
        """
        if self.stopped_by is not None:
            kind = AccountError if isinstance(self.stopped_by, AccountError) else SendError
            error = kind(f"stopped: {self.stopped_by}. {self.left:,} readers left; run again once fixed.")
            error.__cause__ = self.stopped_by  # as "raise ... from": the root cause stays in logs
            return error
        if self.interrupted or self.left:
            return SendError(f"stopped before the end: {self.left:,} readers left; "
                             "run the same command again to finish.")
        if self.failed:
            who = "1 reader was" if self.failed == 1 else f"{self.failed:,} readers were"
            return ReadersFailed(f"{who} refused for good (marked failed, not retried); "
                                 "every other reader was handled.")
        return None

    @property
    def exit_code(self) -> int:
        """The exit code of ``newsletter send`` for this run (0: done)."""
        error = self.error()
        return 0 if error is None else error.exit_code


def _owner_is_dead(owner: str) -> bool:
    """Whether the run named ``owner`` (host:pid:nonce) is known to be gone."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another host: only a stale heartbeat tells
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _beat(ledger: Ledger, owner: str, done: threading.Event, seconds: float) -> None:
    """Renew ``owner``'s send lock every ``seconds`` until ``done`` is set.
    A beat that fails (a database hiccup) is logged and the next one tries
    again; only two minutes without a beat let another run take over."""
    while not done.wait(seconds):
        try:
            ledger.heartbeat(owner)
        except Exception as exc:
            log.warning("the send lock's heartbeat failed (%s: %s); the next beat tries again",
                        type(exc).__name__, exc)


class _RunStop:
    """Whether a run must stop: it halted itself (an error that stops it)
    or the operator asked (the dispatcher's ``stop`` event, set on SIGTERM
    or Ctrl-C). Has an Event's ``is_set`` and ``wait``, so the rate limiter
    can wait on it."""

    def __init__(self, requested: threading.Event):
        self.requested = requested
        self._halted = threading.Event()

    def halt(self) -> None:
        self._halted.set()

    def is_set(self) -> bool:
        return self._halted.is_set() or self.requested.is_set()

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``; return True as soon as the run must stop
        (within STOP_POLL_SECONDS of the operator's request), else False."""
        deadline = time.monotonic() + seconds
        while not self.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._halted.wait(min(left, STOP_POLL_SECONDS))
        return True


# The reason kept for a reader resent with --resend-unknown whose resend did not go out.
RESEND_NOT_SENT = "an earlier run may have sent it; the resend did not go out"


class _Run:
    """The state of one :meth:`Dispatcher.run`, made afresh by each run so
    nothing carries over to the next: its report (the counts), whether it
    must stop and the error that stopped it, the refusals in a row, and the
    "unknown" readers it resends (--resend-unknown). Its methods write the
    outcomes of calls to the ledger and count them."""

    def __init__(self, ledger: Ledger, report: SendReport, stop_requested: threading.Event,
                 max_consecutive_failures: int):
        self.ledger = ledger
        self.report = report
        self.stop = _RunStop(stop_requested)
        self.error: SendError | None = None
        self.resending: frozenset[int] = frozenset()
        self.max_consecutive_failures = max_consecutive_failures
        self.consecutive_failures = 0
        self.lock = threading.Lock()  # guards the report's counts and the fields above

    def halt(self, error: SendError) -> None:
        """Stop the run because of ``error`` (the first such error is kept)."""
        with self.lock:
            if self.error is None:
                self.error = error
        self.stop.halt()

    def record(self, deliveries: Iterable[Delivery]) -> None:
        """Write the outcome of one call, in one transaction: sent, failed
        and unknown readers as they are; readers not sent (RETRY) as
        :meth:`leave` says."""
        deliveries = list(deliveries)
        self._write(
            [d for d in deliveries if d.status != DeliveryStatus.RETRY],
            [d.subscriber_id for d in deliveries if d.status == DeliveryStatus.RETRY],
        )

    def leave(self, recipients: Iterable[Recipient]) -> None:
        """These readers were certainly not sent by this run: their rows are
        removed, so the next run sends to them; but a reader an earlier run
        may have sent (resent here with --resend-unknown) stays "unknown",
        so a later run without that option leaves them alone."""
        self._write([], [r.subscriber_id for r in recipients])

    def _write(self, outcomes: list, not_sent: list[int]) -> None:
        still_unknown = [LedgerRow(i, DeliveryStatus.UNKNOWN, None, RESEND_NOT_SENT)
                         for i in not_sent if i in self.resending]
        self.ledger.record(outcomes + still_unknown, forget=[i for i in not_sent if i not in self.resending])

    def count(self, deliveries: Iterable[Delivery]) -> None:
        """Add one call's outcomes to the report; too many refusals in a row
        halt the run (to protect the sending reputation)."""
        halt = None
        report = self.report
        with self.lock:
            for d in deliveries:
                if d.status == DeliveryStatus.SENT:
                    report.sent += 1
                    self.consecutive_failures = 0
                elif d.status == DeliveryStatus.UNKNOWN:
                    report.unknown += 1
                elif d.status == DeliveryStatus.FAILED:
                    report.failed += 1
                    self.consecutive_failures += 1
                    if len(report.failures) < 20:
                        report.failures.append((d.recipient.email, d.reason or ""))
            if self.consecutive_failures >= self.max_consecutive_failures:
                halt = AccountError(
                    f"{self.consecutive_failures} readers in a row were refused (last: {report.failures[-1][1]}); "
                    "stopped to protect the sending reputation"
                )
        if halt:
            self.halt(halt)


class Dispatcher:
    """Sends one issue to every active reader not yet sent it.

    It holds only what does not change from run to run (the store, the
    sender, the options, the operator's ``stop`` event); what one run learns
    lives in that run's own state, so a dispatcher can run again.
    """

    def __init__(
        self,
        store: Store,
        sender: Sender,
        signer: Signer,
        base_url: str,
        from_address: str,
        options: SendOptions | None = None,
        stop: threading.Event | None = None,
        progress: Callable[[SendReport], None] | None = None,
    ):
        self.store = store
        self.sender = sender
        self.signer = signer
        self.base_url = base_url
        self.from_address = from_address
        self.options = options or SendOptions()
        self.stop = stop or threading.Event()  # the operator's request to stop (SIGTERM, Ctrl-C)
        self.progress = progress

    # ---------------------------------------------------------------- entry

    def run(self, issue: Issue, picker: Callable[[list[int]], dict] | None = None,
            opened: threading.Event | None = None) -> SendReport:
        """Send ``issue``; return the report. ``picker(subscriber ids)``
        gives each reader's picks (``picking.EditionPicks.for_readers``);
        they are written with the readers' ledger rows just before the call
        that sends them. ``opened`` is set once the sender is open (its
        checks done: SES's pre-flight) or the run ends without opening it.

        Raises :class:`SendLocked` when another run holds the issue, and
        :class:`AccountError` (nothing sent) when the provider refuses at the
        start (sending disabled, template refused, set-up calls that keep
        failing) or the 24-hour quota cannot cover the send and partial
        sends are not allowed, and :class:`TemplateRejected` (nothing sent)
        when SES cannot render the edition's template for some kind of
        reader (the bulk mode's pre-flight). An error that stops a run midway is the
        report's ``stopped_by`` instead. The lock is held, with a heartbeat,
        until it returns or raises.
        """
        opts = self.options
        ledger = Ledger(self.store, Edition(issue.date, issue.kind), opts.weekly_day)
        owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        holder = ledger.acquire(owner, _owner_is_dead)
        if holder is not None:
            raise SendLocked(f"another run ({holder}) is sending the {issue.edition} issue; it was not started twice")
        run = _Run(ledger, SendReport(edition=issue.edition), self.stop, opts.max_consecutive_failures)
        report = run.report
        started = time.monotonic()
        # The lock's heartbeat, all through the run: also while the last
        # calls drain or wait out a backoff, so no other run takes over.
        beating = threading.Event()
        heart = threading.Thread(target=_beat, args=(ledger, owner, beating, opts.heartbeat_seconds),
                                 name="send-heartbeat", daemon=True)
        heart.start()
        try:
            report.abandoned = ledger.resolve_abandoned()
            if opts.resend_unknown:
                run.resending = frozenset(row.subscriber_id for row in ledger.rows(DeliveryStatus.UNKNOWN))
            plan = ledger.plan(opts.resend_unknown, opts.limit)
            if plan.to_send == 0:
                report.ledger = plan.counts
                report.already_sent = any(plan.counts.values())
                return report
            to_send = plan.to_send
            quota = self._retrying(run, self.sender.quota)
            remaining = quota.remaining_24_hours
            if remaining is not None and remaining < to_send:
                if not opts.allow_partial or remaining < 1:
                    raise AccountError(
                        f"the SES 24-hour quota has {int(remaining):,} messages left and this issue needs "
                        f"{to_send:,}; nothing was sent (use --allow-partial to send what fits)"
                    )
                to_send = int(remaining)
            report.to_send = to_send
            rate = opts.max_rate or quota.max_send_rate
            report.rate = rate
            limiter = RateLimiter(rate) if rate else None
            self._retrying(run, lambda: self.sender.open(issue, PreparedMessage(issue, self.from_address)))
            if opened:
                opened.set()
            self._loop(run, issue, to_send, limiter, picker)
            report.ledger = ledger.counts()
            report.waiting = ledger.count_unsent()
            self.sender.close(complete=report.complete and report.waiting == 0)
        finally:
            if opened:
                opened.set()
            report.elapsed = time.monotonic() - started
            beating.set()
            heart.join()
            ledger.release(owner)
        return report

    # ---------------------------------------------------------------- loop

    def _loop(self, run: _Run, issue: Issue, to_send: int, limiter: RateLimiter | None,
              picker: Callable[[list[int]], dict] | None) -> None:
        opts = self.options
        report = run.report
        slots = threading.BoundedSemaphore(opts.concurrency * 2)  # chunks queued or in flight
        futures: list[Future] = []
        submitted = 0
        exhausted = False  # every unsent reader was read: none is left unread
        last_progress = time.monotonic()
        with ThreadPoolExecutor(max_workers=opts.concurrency, thread_name_prefix="send") as pool:
            # A call never carries more than one second's worth of recipients.
            batch_size = self.sender.batch_size if limiter is None else max(
                1, min(self.sender.batch_size, int(limiter.max_rate))
            )
            for chunk, picks in self._chunks(run, batch_size, picker):
                if run.stop.is_set() or submitted >= to_send:
                    break
                chunk = chunk[: to_send - submitted]
                submitted += len(chunk)
                # The page query read only active readers; _work checks again
                # just before the call, for unsubscribes made meanwhile.
                recipients = [self._recipient(s, issue, picks.get(s.id)) for s in chunk]
                while not slots.acquire(timeout=0.5):
                    if run.stop.is_set():
                        break
                if run.stop.is_set():
                    break
                future = pool.submit(self._work, run, recipients, limiter)
                future.add_done_callback(lambda _f: slots.release())
                futures.append(future)
                if len(futures) > 4 * opts.concurrency:
                    # Only the calls not done yet are kept: a long send makes
                    # tens of thousands, and each kept one is objects for the
                    # collector to walk. A bug in a done one surfaces now.
                    in_flight = []
                    for kept in futures:
                        if kept.done():
                            kept.result()
                        else:
                            in_flight.append(kept)
                    futures = in_flight
                now = time.monotonic()
                if self.progress and now - last_progress > 2.0:
                    self.progress(report)
                    last_progress = now
            else:
                exhausted = True
        for future in futures:
            future.result()  # surface a bug in a worker instead of hiding it
        if exhausted:
            # Readers counted at the start who left the list before their
            # page was read: unsubscribed meanwhile, not left for a next run.
            with run.lock:
                report.skipped += max(0, to_send - submitted)
        handled = report.sent + report.failed + report.unknown + report.skipped
        report.left = max(0, to_send - handled)
        if run.error is not None:
            report.stopped_by = run.error
        elif run.stop.is_set():
            report.interrupted = True

    def _chunks(self, run: _Run, batch_size: int, picker: Callable[[list[int]], dict] | None):
        """Yield the unsent readers in chunks of ``batch_size``, each with
        ``{subscriber id: picks}`` for (at least) its readers, ranked
        :data:`RANK_PAGE` readers at a time."""
        opts = self.options
        unsent = run.ledger.iter_unsent(opts.resend_unknown, page=opts.page_size)
        for page in chunked(unsent, max(batch_size, RANK_PAGE) if picker else batch_size):
            picks = picker([s.id for s in page]) if picker else {}
            for chunk in chunked(page, batch_size):
                yield chunk, picks

    def _backoff(self, attempt: int) -> float:
        opts = self.options
        return min(opts.backoff_cap, opts.backoff_base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    def _retrying(self, run: _Run, call: Callable[[], T]) -> T:
        """Run a set-up call (quota, template), retrying throttles and
        transient faults; raises :class:`AccountError` when they persist."""
        for attempt in range(1, self.options.max_attempts + 1):
            try:
                return call()
            except (Throttled, TransientError) as exc:
                if attempt == self.options.max_attempts or run.stop.wait(self._backoff(attempt)):
                    raise AccountError(f"gave up after {attempt} attempts: {exc}") from exc
        raise AssertionError("unreachable")

    def _recipient(self, subscriber: Addressee, issue: Issue, picks=None) -> Recipient:
        return reader_recipient(self.signer, self.base_url, issue, subscriber, picks)

    def _work(self, run: _Run, recipients: list[Recipient], limiter: RateLimiter | None) -> None:
        """Send one chunk until every reader in it is sent, failed or unknown,
        or the run stops (then the rest is left for the next run). Readers
        no longer active just before a call are skipped."""
        opts = self.options
        report = run.report
        attempt = 0
        while recipients:
            if run.stop.is_set() or (limiter and not limiter.take(len(recipients), run.stop)):
                run.leave(recipients)
                return
            # Checked again here, just before the call: the chunk may have
            # waited in the queue, for the rate or for a retry meanwhile.
            active = self.store.active_ids(r.subscriber_id for r in recipients)
            if len(active) < len(recipients):
                with run.lock:
                    report.skipped += len(recipients) - len(active)
                recipients = [r for r in recipients if r.subscriber_id in active]
                if not recipients:
                    return
            run.ledger.mark_pending((r.subscriber_id for r in recipients),
                                    picks={r.subscriber_id: list(r.picks) for r in recipients if r.picks},
                                    resending_unknown=bool(run.resending), first_try=attempt == 0)
            try:
                deliveries = self.sender.send(recipients)
            except (Throttled, TransientError) as exc:
                deliveries = [Delivery(r, DeliveryStatus.RETRY, reason=str(exc)) for r in recipients]
            except StoppedMidBatch as exc:
                # The provider refused to go on partway through the batch:
                # the readers it accepted before are kept, then the run stops.
                run.record(exc.deliveries)
                run.count(exc.deliveries)
                run.halt(exc)
                return
            except AccountError as exc:
                run.leave(recipients)
                run.halt(exc)
                return
            except Exception as exc:
                # A bug or an unforeseen library error: the outcome of this
                # call is unknown, so its readers must not be resent blindly.
                run.ledger.mark_unknown((r.subscriber_id for r in recipients), "unexpected error during the call")
                stopped = AccountError("an unexpected error stopped the send; see the traceback")
                stopped.__cause__ = exc
                run.halt(stopped)
                raise
            retry = [d.recipient for d in deliveries if d.status == DeliveryStatus.RETRY]
            run.record(deliveries)
            run.count(deliveries)
            if limiter:
                if retry:
                    limiter.slow_down()
                else:
                    limiter.speed_up()
            if not retry:
                return
            attempt += 1
            if attempt >= opts.max_attempts:
                # Faults that may pass (exit 1): the next run retries these readers.
                run.halt(SendError(f"gave up after {attempt} attempts: {deliveries[0].reason}"))
                return
            with run.lock:
                report.throttles += 1
            if run.stop.wait(self._backoff(attempt)):
                run.leave(retry)
                return
            recipients = retry


def reader_recipient(signer, base_url: str, issue: Issue, subscriber: Subscriber | Addressee, picks=None,
                     file_id: int | None = None) -> Recipient:
    """Return the reader as a sender needs them for ``issue``: their links
    (signed by ``signer`` under ``base_url``), the reader part of their
    feedback tokens, and their picks, choice of the rest of the day and papers muted on top (a
    ``picking.ReaderPicks``; None: no picks section, every title). ``file_id`` stands for their id where the outbox names
    the file (0 for a copy outside the ledger, which must not replace the
    send's own)."""
    unsubscribe_url, preferences_url = signer.reader_urls(base_url, subscriber.ref)
    return Recipient(
        subscriber_id=subscriber.id if file_id is None else file_id,
        email=subscriber.email,
        name=subscriber.name,
        unsubscribe_url=unsubscribe_url,
        preferences_url=preferences_url,
        feedback=signer.feedback_reader_part(subscriber.ref, issue.edition) if issue.paper_codes else "",
        picks_state=picks.state if picks is not None else PicksState.OFF,
        held=picks.held if picks is not None else 0,
        picks=picks.picks if picks is not None else (),
        rest=picks.rest if picks is not None else RestOfDay.TITLES,
        muted=picks.muted if picks is not None else frozenset(),
    )
