"""The send ledger and the send lock of one edition."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, NamedTuple, Protocol

from sqlalchemy import bindparam, func, insert, select, update

from newsletter.core.models import (
    LEDGER_STATUSES,
    RENDERING_FAILURE_REASON,
    Addressee,
    DeliveryStatus,
    Edition,
    EditionKind,
    Frequency,
    Pick,
    SubscriberStatus,
)
from newsletter.store.dashboard import forget_totals
from newsletter.store.engine import as_utc, driver_value, execute_expanded, execute_many, insert_many
from newsletter.store.picks import write_picks
from newsletter.store.schema import (
    deliveries_table,
    send_locks_table,
    subscribers_table,
)
from newsletter.store.subscribers import paged_rows

if TYPE_CHECKING:
    from newsletter.store import Store

# The outcomes a send stores over a reader's "pending" row.
OUTCOMES = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN)
PENDING = DeliveryStatus.PENDING.value  # as the driver takes it (see engine.execute_many)
# What a send writes for every call, with a row per reader (see
# engine.insert_many and execute_many): a reader's "pending" row, and the
# outcome over it.
_DELIVERY_COLUMNS = ("issue_date", "subscriber_id", "status", "message_id", "reason", "updated_at")
_OUTCOME_PARAMETERS = ("st", "mid", "why", "day", "sid", "at")
# Before "pending" rows: the "unknown" rows of readers being resent.
_FORGET_UNKNOWN = deliveries_table.delete().where(
    deliveries_table.c.issue_date == bindparam("day"),
    deliveries_table.c.subscriber_id.in_(bindparam("ids", expanding=True)),
    deliveries_table.c.status == DeliveryStatus.UNKNOWN,
)
_RECORD_OUTCOME = (
    update(deliveries_table)
    .where(deliveries_table.c.issue_date == bindparam("day"), deliveries_table.c.subscriber_id == bindparam("sid"))
    .values(status=bindparam("st"), message_id=bindparam("mid"), reason=bindparam("why"), updated_at=bindparam("at"))
)


class LedgerRow(NamedTuple):
    """One reader's row in the ledger of an issue."""

    subscriber_id: int
    status: DeliveryStatus
    message_id: str | None = None  # the provider's, once it accepted the message
    reason: str | None = None  # why it failed, or why its outcome is unknown


class Outcome(Protocol):
    """What became of one reader's send: a :class:`LedgerRow`, or a sender's
    ``Delivery``."""

    subscriber_id: int
    status: DeliveryStatus
    message_id: str | None
    reason: str | None


@dataclass(frozen=True)
class SendPlan:
    """What a run of the issue would do now: send to ``to_send`` readers
    (the limit applied), with ``counts`` the ledger's rows per status so far."""

    to_send: int
    counts: dict[str, int]

    @property
    def sent(self) -> int:
        return self.counts[DeliveryStatus.SENT]

    @property
    def failed(self) -> int:
        return self.counts[DeliveryStatus.FAILED]

    @property
    def unknown(self) -> int:
        return self.counts[DeliveryStatus.UNKNOWN]


class Ledger:
    """The send ledger and the send lock of one edition, in a :class:`Store`:
    ``edition`` is an :class:`Edition`, or a date for its daily edition.
    ``default_weekday`` is the day (0 Monday) of weekly readers who chose
    none."""

    def __init__(self, store: Store, edition: Edition | dt.date, default_weekday: int = 0):
        self.store = store
        self.edition = edition if isinstance(edition, Edition) else Edition(edition)
        self.day = self.edition.key  # the ledger's issue_date column holds the edition's key
        self.default_weekday = default_weekday
        # The stored key of each paper key picks were written with (see
        # picks.write_picks): a send's picks name the same few papers.
        self._stored_keys: dict[str, str] = {}
        # The edition's picked papers this ledger stored, in transactions
        # that committed: not written again (see picks.write_picks).
        self._picked: set[str] = set()
        self._picks_before: bool | None = None  # whether the edition had picks stored (see mark_pending)

    # ---------------------------------------------------------------- lock

    def acquire(self, owner: str, is_dead: Callable[[str], bool], stale_after: float = 120.0) -> str | None:
        """Take the send lock of this issue for ``owner``.

        A lock whose holder is dead (``is_dead(owner)``) or whose heartbeat is
        older than ``stale_after`` seconds is taken over. Returns None when
        the lock was taken, else the owner holding it. Taking it forgets the
        edition's kept totals (the dashboard's): this run changes them.
        """
        engine = self.store.engine
        stamp = self.store.clock()
        with engine.begin() as conn:
            row = conn.execute(select(send_locks_table).where(send_locks_table.c.issue_date == self.day)).first()
            if row is None:
                conn.execute(insert(send_locks_table).values(issue_date=self.day, owner=owner, heartbeat_at=stamp))
                forget_totals(conn, self.day)
                return None
            age = (stamp - as_utc(row.heartbeat_at)).total_seconds()
            if row.owner != owner and not is_dead(row.owner) and age < stale_after:
                return row.owner
            conn.execute(
                update(send_locks_table)
                .where(send_locks_table.c.issue_date == self.day, send_locks_table.c.owner == row.owner)
                .values(owner=owner, heartbeat_at=stamp)
            )
            forget_totals(conn, self.day)
        return None

    def heartbeat(self, owner: str) -> None:
        """Show that ``owner`` is still alive."""
        with self.store.engine.begin() as conn:
            conn.execute(
                update(send_locks_table)
                .where(send_locks_table.c.issue_date == self.day, send_locks_table.c.owner == owner)
                .values(heartbeat_at=self.store.clock())
            )

    def release(self, owner: str) -> None:
        """Give the lock up (only if ``owner`` still holds it)."""
        with self.store.engine.begin() as conn:
            conn.execute(
                send_locks_table.delete().where(
                    send_locks_table.c.issue_date == self.day, send_locks_table.c.owner == owner
                )
            )

    # ---------------------------------------------------------------- rows

    def _unsent(self, resend_unknown: bool):
        """The condition on ``subscribers`` selecting the readers this
        edition is for (see models.Schedule) who have no row for it (with
        ``resend_unknown``, or an "unknown" one), nor for the other edition
        of its date: a reader who changed their frequency gets one edition a
        date, never two.

        Both rows are asked for with NOT EXISTS, a lookup by the ledger's
        primary key per reader: as an outer join, PostgreSQL's planner read
        the edition's whole ledger for every page of readers (200 ms a page
        of a 330,000-reader list)."""
        d = deliveries_table
        s = subscribers_table
        mine = select(d.c.subscriber_id).where(d.c.issue_date == self.day, d.c.subscriber_id == s.c.id)
        if resend_unknown:
            mine = mine.where(d.c.status != DeliveryStatus.UNKNOWN)
        edition = self.edition
        if edition.kind == EditionKind.DAILY:
            scheduled = s.c.frequency == Frequency.DAILY
        else:
            scheduled = (s.c.frequency == Frequency.WEEKLY) & (
                func.coalesce(s.c.weekday, self.default_weekday) == edition.date.weekday())
        date = edition.date.isoformat()
        awake = s.c.paused_until.is_(None) | (s.c.paused_until <= date)
        other = Edition(edition.date, next(k for k in EditionKind if k != edition.kind)).key
        o = deliveries_table.alias("other_edition")
        other_sent = select(o.c.subscriber_id).where(o.c.issue_date == other, o.c.subscriber_id == s.c.id).exists()
        return (s.c.status == SubscriberStatus.ACTIVE) & scheduled & awake & ~other_sent & ~mine.exists()

    def forget_rendering_failures(self) -> int:
        """Delete this edition's "failed" rows of readers whose message SES
        dropped with a Rendering Failure (their reason starts with
        :data:`RENDERING_FAILURE_REASON`): those readers got nothing, so the
        next run sends to them. Returns how many rows were deleted."""
        d = deliveries_table
        with self.store.engine.begin() as conn:
            deleted = conn.execute(d.delete().where(
                d.c.issue_date == self.day, d.c.status == DeliveryStatus.FAILED,
                d.c.reason.startswith(RENDERING_FAILURE_REASON, autoescape=True),
            )).rowcount
            if deleted:
                forget_totals(conn, self.day)
        return deleted

    def count_unsent(self, resend_unknown: bool = False) -> int:
        """Return how many active readers have not been sent this issue."""
        with self.store.reader.connect() as conn:
            return conn.scalar(select(func.count()).select_from(subscribers_table).where(self._unsent(resend_unknown)))

    def iter_unsent(self, resend_unknown: bool = False, page: int = 1000) -> Iterator[Addressee]:
        """Yield the active readers not yet sent this issue, in id order, one
        short read per page (so the rows written meanwhile are seen)."""
        s = subscribers_table.c
        query = select(s.id, s.ref, s.email, s.name).where(self._unsent(resend_unknown))
        return map(Addressee._make, paged_rows(self.store.reader, query, page))

    def mark_pending(self, subscriber_ids: Iterable[int], picks: dict[int, list[Pick]] | None = None,
                     resending_unknown: bool = True, first_try: bool = False) -> None:
        """Write "pending" rows for these readers in one transaction, just
        before the provider is called (replacing an "unknown" being resent:
        ``resending_unknown`` False says none is), with the papers picked
        for them in this edition (kept once written: a rerun sends the same
        picks).

        ``first_try`` says this ledger never marked these readers before:
        then, unless the edition had picks stored before (an earlier run),
        theirs are known not to be stored and are not looked for."""
        ids = list(subscriber_ids)
        stamp = self.store.clock()
        if self._picks_before is None and picks:
            self._picks_before = self.store.has_picks(self.day)
        with self.store.engine.begin() as conn:
            picked = write_picks(conn, self.day, picks or {}, self._stored_keys,
                                 stored_before=self._picks_before is not False or not first_try,
                                 recorded=self._picked)
            if resending_unknown:
                execute_expanded(conn, _FORGET_UNKNOWN, day=self.day, ids=ids)
            at = driver_value(conn, deliveries_table.c.updated_at, stamp)
            insert_many(conn, deliveries_table, _DELIVERY_COLUMNS, [(self.day, i, PENDING, None, None, at) for i in ids])
        self._picked |= picked

    def record(self, outcomes: Iterable[Outcome], forget: Iterable[int] = ()) -> None:
        """Store each reader's outcome over their row ("sent" with the
        provider's message id, "failed" or "unknown" with the reason), and
        remove the rows of the readers in ``forget``, in one transaction, so
        the outcomes of one call are written whole or not at all.

        Raises ValueError for a status that is never stored as an outcome
        (pending, retry).
        """
        stamp = self.store.clock()
        kept = []
        for outcome in outcomes:
            if outcome.status not in OUTCOMES:
                raise ValueError(f"{outcome.status!r} is not an outcome the ledger stores")
            kept.append((outcome.status.value, outcome.message_id, (outcome.reason or "")[:1000] or None,
                         self.day, outcome.subscriber_id))
        dropped = list(forget)
        d = deliveries_table
        with self.store.engine.begin() as conn:
            if kept:
                at = driver_value(conn, d.c.updated_at, stamp)
                execute_many(conn, _RECORD_OUTCOME, _OUTCOME_PARAMETERS, [(*row, at) for row in kept])
            if dropped:
                conn.execute(d.delete().where(d.c.issue_date == self.day, d.c.subscriber_id.in_(dropped)))

    def mark_unknown(self, subscriber_ids: Iterable[int], reason: str) -> None:
        """Mark these readers "unknown" (their message may or may not have
        gone out): they are not resent unless asked."""
        self.record(LedgerRow(i, DeliveryStatus.UNKNOWN, None, reason) for i in subscriber_ids)

    def resolve_abandoned(self) -> int:
        """Turn "pending" rows left by a run that died into "unknown" (its
        calls may or may not have gone out). Call only while holding the lock.
        Returns how many rows changed."""
        d = deliveries_table
        with self.store.engine.begin() as conn:
            return conn.execute(
                update(d)
                .where(d.c.issue_date == self.day, d.c.status == DeliveryStatus.PENDING)
                .values(status=DeliveryStatus.UNKNOWN, reason="the run sending it stopped before the outcome was known",
                        updated_at=self.store.clock())
            ).rowcount

    def started(self) -> bool:
        """Whether any reader has a row in this edition's ledger (a send of
        it has begun)."""
        with self.store.reader.connect() as conn:
            return conn.scalar(select(deliveries_table.c.subscriber_id)
                               .where(deliveries_table.c.issue_date == self.day).limit(1)) is not None

    def counts(self) -> dict[str, int]:
        """Return the number of ledger rows per status for this issue."""
        d = deliveries_table
        with self.store.reader.connect() as conn:
            rows = conn.execute(
                select(d.c.status, func.count()).where(d.c.issue_date == self.day).group_by(d.c.status)
            ).all()
        result = dict.fromkeys(LEDGER_STATUSES, 0)
        result.update({status: count for status, count in rows})
        return result

    def rows(self, status: str | None = None) -> list[LedgerRow]:
        """Return this issue's rows (only those with ``status``, if given), by subscriber id."""
        d = deliveries_table
        query = select(d.c.subscriber_id, d.c.status, d.c.message_id, d.c.reason).where(d.c.issue_date == self.day)
        if status:
            query = query.where(d.c.status == status)
        with self.store.reader.connect() as conn:
            return [
                LedgerRow(r.subscriber_id, DeliveryStatus(r.status), r.message_id, r.reason)
                for r in conn.execute(query.order_by(d.c.subscriber_id))
            ]

    def plan(self, resend_unknown: bool = False, limit: int | None = None) -> SendPlan:
        """Return what a run would do now (see :class:`SendPlan`), writing nothing."""
        to_send = self.count_unsent(resend_unknown)
        if limit is not None:
            to_send = min(to_send, limit)
        return SendPlan(to_send=to_send, counts=self.counts())
