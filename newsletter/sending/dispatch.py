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

import os
import random
import secrets
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from newsletter.errors import (
    AccountError,
    SendError,
    SendLocked,
    Throttled,
    TransientError,
)
from newsletter.models import DeliveryStatus, Issue, Subscriber
from newsletter.personalize import PreparedMessage, Recipient
from newsletter.sending.ratelimit import RateLimiter, chunked
from newsletter.sending.senders.base import Delivery, Sender
from newsletter.store import Ledger, Store
from newsletter.tokens import Signer

T = TypeVar("T")

HEARTBEAT_SECONDS = 15.0


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


@dataclass
class SendReport:
    """What a run did. Counts are readers; ``ledger`` holds the issue's totals."""

    issue_date: str
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
    stopped_by: str | None = None  # the error that stopped the run
    stopped_exit: int = 0  # its exit code: 3 the provider refuses, 1 faults that may pass
    waiting: int = 0  # readers still without the issue after this run (quota, --limit, a stop)
    rate: float | None = None
    elapsed: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (address, reason), first few
    ledger: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every targeted reader was handled (sent, failed or unknown)."""
        return self.left == 0 and not self.interrupted and self.stopped_by is None


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


class Dispatcher:
    """Sends one issue to every active reader not yet sent it."""

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
        self.stop = stop or threading.Event()
        self.progress = progress
        self._lock = threading.Lock()
        self._consecutive_failures = 0
        self._fatal: SendError | None = None
        self._was_unknown: set[int] = set()  # readers this run resends (--resend-unknown)

    # ---------------------------------------------------------------- entry

    def run(self, issue: Issue) -> SendReport:
        """Send ``issue``; return the report.

        Raises :class:`SendLocked` when another run holds the issue, and
        :class:`AccountError` (nothing sent) when the provider refuses at the
        start (sending disabled, template refused, set-up calls that keep
        failing) or the 24-hour quota cannot cover the send and partial
        sends are not allowed. Errors that stop a run midway are reported in
        ``stopped_by`` instead. The lock is held, with a heartbeat, until it
        returns or raises.
        """
        ledger = Ledger(self.store, issue.date)
        report = SendReport(issue_date=issue.date.isoformat())
        owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        holder = ledger.acquire(owner, _owner_is_dead)
        if holder is not None:
            raise SendLocked(f"another run ({holder}) is sending the {issue.date} issue; it was not started twice")
        started = time.monotonic()
        # The lock's heartbeat, all through the run: also while the last
        # calls drain or wait out a backoff, so no other run takes over.
        beating = threading.Event()
        heart = threading.Thread(target=self._beat, args=(ledger, owner, beating), name="send-heartbeat", daemon=True)
        heart.start()
        try:
            report.abandoned = ledger.resolve_abandoned()
            if self.options.resend_unknown:
                self._was_unknown = {row[0] for row in ledger.rows(DeliveryStatus.UNKNOWN)}
            to_send = ledger.count_unsent(self.options.resend_unknown)
            if self.options.limit is not None:
                to_send = min(to_send, self.options.limit)
            if to_send == 0:
                report.ledger = ledger.counts()
                report.already_sent = any(report.ledger.values())
                return report
            quota = self._retrying(self.sender.quota)
            remaining = quota.remaining_24_hours
            if remaining is not None and remaining < to_send:
                if not self.options.allow_partial or remaining < 1:
                    raise AccountError(
                        f"the SES 24-hour quota has {int(remaining):,} messages left and this issue needs "
                        f"{to_send:,}; nothing was sent (use --allow-partial to send what fits)"
                    )
                to_send = int(remaining)
            report.to_send = to_send
            rate = self.options.max_rate or quota.max_send_rate
            report.rate = rate
            limiter = RateLimiter(rate) if rate else None
            self._retrying(lambda: self.sender.open(issue, PreparedMessage(issue, self.from_address)))
            self._loop(ledger, owner, to_send, limiter, report)
            report.ledger = ledger.counts()
            report.waiting = ledger.count_unsent()
            if report.complete and report.waiting == 0:
                self.sender.close(complete=True)
            else:
                self.sender.close(complete=False)
        finally:
            report.elapsed = time.monotonic() - started
            beating.set()
            heart.join()
            ledger.release(owner)
        return report

    @staticmethod
    def _beat(ledger: Ledger, owner: str, done: threading.Event) -> None:
        while not done.wait(HEARTBEAT_SECONDS):
            try:
                ledger.heartbeat(owner)
            except Exception:  # a database hiccup: the next beat tries again
                pass

    # ---------------------------------------------------------------- loop

    def _loop(self, ledger: Ledger, owner: str, to_send: int, limiter: RateLimiter | None, report: SendReport):
        opts = self.options
        slots = threading.BoundedSemaphore(opts.concurrency * 2)  # chunks queued or in flight
        futures: list[Future] = []
        submitted = 0
        last_progress = time.monotonic()
        with ThreadPoolExecutor(max_workers=opts.concurrency, thread_name_prefix="send") as pool:
            # A call never carries more than one second's worth of recipients.
            batch_size = self.sender.batch_size if limiter is None else max(
                1, min(self.sender.batch_size, int(limiter.max_rate))
            )
            for chunk in chunked(ledger.iter_unsent(opts.resend_unknown), batch_size):
                if self.stop.is_set() or submitted >= to_send:
                    break
                chunk = chunk[: to_send - submitted]
                submitted += len(chunk)
                # The page query read only active readers; _work checks again
                # just before the call, for unsubscribes made meanwhile.
                recipients = [self._recipient(s) for s in chunk]
                while not slots.acquire(timeout=0.5):
                    if self.stop.is_set():
                        break
                if self.stop.is_set():
                    break
                future = pool.submit(self._work, ledger, recipients, limiter, report)
                future.add_done_callback(lambda _f: slots.release())
                futures.append(future)
                now = time.monotonic()
                if self.progress and now - last_progress > 2.0:
                    self.progress(report)
                    last_progress = now
        for future in futures:
            future.result()  # surface a bug in a worker instead of hiding it
        handled = report.sent + report.failed + report.unknown + report.skipped
        report.left = max(0, to_send - handled)
        if self._fatal is not None:
            report.stopped_by = str(self._fatal)
            report.stopped_exit = self._fatal.exit_code
        elif self.stop.is_set():
            report.interrupted = True

    def _backoff(self, attempt: int) -> float:
        opts = self.options
        return min(opts.backoff_cap, opts.backoff_base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)

    def _retrying(self, call: Callable[[], T]) -> T:
        """Run a set-up call (quota, template), retrying throttles and
        transient faults; raises :class:`AccountError` when they persist."""
        for attempt in range(1, self.options.max_attempts + 1):
            try:
                return call()
            except (Throttled, TransientError) as exc:
                if attempt == self.options.max_attempts or self.stop.wait(self._backoff(attempt)):
                    raise AccountError(f"gave up after {attempt} attempts: {exc}") from None
        raise AssertionError("unreachable")

    def _recipient(self, subscriber: Subscriber) -> Recipient:
        return Recipient(
            subscriber_id=subscriber.id,
            email=subscriber.email,
            name=subscriber.name,
            unsubscribe_url=self.signer.unsubscribe_url(self.base_url, subscriber.ref),
        )

    def _halt(self, error: SendError) -> None:
        with self._lock:
            if self._fatal is None:
                self._fatal = error
        self.stop.set()

    def _work(self, ledger: Ledger, recipients: list[Recipient], limiter: RateLimiter | None, report: SendReport):
        """Send one chunk until every reader in it is sent, failed or unknown,
        or the run stops (then the rest is left for the next run). Readers
        no longer active just before a call are skipped. An AccountError
        carrying ``deliveries`` (a sender that stopped partway through the
        batch) has those outcomes recorded before the run stops."""
        opts = self.options
        attempt = 0
        while recipients:
            if self.stop.is_set() or (limiter and not limiter.take(len(recipients), self.stop)):
                self._leave(ledger, recipients)
                return
            # Checked again here, just before the call: the chunk may have
            # waited in the queue, for the rate or for a retry meanwhile.
            active = self.store.active_ids(r.subscriber_id for r in recipients)
            if len(active) < len(recipients):
                with self._lock:
                    report.skipped += len(recipients) - len(active)
                recipients = [r for r in recipients if r.subscriber_id in active]
                if not recipients:
                    return
            ledger.mark_pending(r.subscriber_id for r in recipients)
            try:
                deliveries = self.sender.send(recipients)
            except (Throttled, TransientError) as exc:
                deliveries = [Delivery(r, DeliveryStatus.RETRY, reason=str(exc)) for r in recipients]
            except AccountError as exc:
                # A sender that stopped partway through the batch says what
                # became of each reader (see senders.base.StoppedMidBatch).
                known = getattr(exc, "deliveries", None)
                if known:
                    self._record(ledger, known)
                    self._count(known, report)
                else:
                    self._leave(ledger, recipients)
                self._halt(exc)
                return
            except Exception:
                # A bug or an unforeseen library error: the outcome of this
                # call is unknown, so its readers must not be resent blindly.
                ledger.record((r.subscriber_id, DeliveryStatus.UNKNOWN, None, "unexpected error during the call") for r in recipients)
                self._halt(AccountError("an unexpected error stopped the send; see the traceback"))
                raise
            retry = [d.recipient for d in deliveries if d.status == DeliveryStatus.RETRY]
            self._record(ledger, deliveries)
            self._count(deliveries, report)
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
                self._halt(SendError(f"gave up after {attempt} attempts: {deliveries[0].reason}"))
                return
            with self._lock:
                report.throttles += 1
            if self.stop.wait(self._backoff(attempt)):
                self._leave(ledger, retry)
                return
            recipients = retry

    def _not_sent(self, subscriber_id: int) -> tuple[int, str | None, None, str | None]:
        """The ledger result for a reader this run certainly did not send: no
        row (status None), so the next run sends them; but a reader an
        earlier run may have sent (resent with --resend-unknown) stays
        "unknown", so a later run without that option leaves them alone."""
        if subscriber_id in self._was_unknown:
            return subscriber_id, DeliveryStatus.UNKNOWN, None, "an earlier run may have sent it; the resend did not go out"
        return subscriber_id, None, None, None

    def _record(self, ledger: Ledger, deliveries: list[Delivery]) -> None:
        """Write the outcome of one call to the ledger (DeliveryStatus.RETRY: not sent)."""
        ledger.record(
            self._not_sent(d.recipient.subscriber_id)
            if d.status == DeliveryStatus.RETRY
            else (d.recipient.subscriber_id, d.status, d.message_id, d.reason)
            for d in deliveries
        )

    def _leave(self, ledger: Ledger, recipients: list[Recipient]) -> None:
        """These readers were certainly not sent by this run (see _not_sent)."""
        ledger.record(self._not_sent(r.subscriber_id) for r in recipients)

    def _count(self, deliveries: list[Delivery], report: SendReport) -> None:
        halt = None
        with self._lock:
            for d in deliveries:
                if d.status == DeliveryStatus.SENT:
                    report.sent += 1
                    self._consecutive_failures = 0
                elif d.status == DeliveryStatus.UNKNOWN:
                    report.unknown += 1
                elif d.status == DeliveryStatus.FAILED:
                    report.failed += 1
                    self._consecutive_failures += 1
                    if len(report.failures) < 20:
                        report.failures.append((d.recipient.email, d.reason or ""))
            if self._consecutive_failures >= self.options.max_consecutive_failures:
                halt = AccountError(
                    f"{self._consecutive_failures} readers in a row were refused (last: {report.failures[-1][1]}); "
                    "stopped to protect the sending reputation"
                )
        if halt:
            self._halt(halt)
