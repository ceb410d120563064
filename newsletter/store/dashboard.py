"""The queries behind the dashboard (/admin/): the list's changes per day,
the editions in the ledger and their totals, the subscribers' search, and
one reader's editions and feedback.

Each is made to stay fast with a million readers and a year of daily
editions: the day counts read ``subscriber_events`` by its time index; the
editions in the ledger are found by hopping along its primary key (one probe
per edition, never a scan of the rows); the totals of an edition whose send
is over are counted once and kept (``edition_totals``); the search pages by
id through an index for each filter.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Iterable

from sqlalchemy import Date, and_, cast, delete, exists, func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement

from newsletter.models import LEDGER_STATUSES, Edition, EditionKind, Subscriber
from newsletter.store.engine import as_utc
from newsletter.store.schema import (
    deliveries_table,
    edition_totals_table,
    events_table,
    feedback_table,
    issues_table,
    send_locks_table,
    subscribers_table,
)
from newsletter.store.subscribers import subscriber_from_row

# An edition's totals are kept once its last ledger write is this old and
# no run holds its lock (the lock's holder deletes them when a run starts).
TOTALS_KEPT_AFTER = dt.timedelta(minutes=10)
# A run's heartbeat older than this: the run is gone (as Ledger.acquire sees it).
LOCK_STALE = dt.timedelta(seconds=120)


@dataclass(frozen=True)
class EditionTotals:
    """An edition's ledger: its rows per status, and when its first and
    last were written (UTC)."""

    edition: str
    first_at: dt.datetime
    last_at: dt.datetime
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def handled(self) -> int:
        """Readers whose send is over (sent, failed or unknown)."""
        return sum(self.counts.get(status, 0) for status in ("sent", "failed", "unknown"))

    @property
    def rate(self) -> float | None:
        """Readers handled per second between the first and the last ledger
        write (None before there is a second between them)."""
        seconds = (self.last_at - self.first_at).total_seconds()
        return self.handled / seconds if seconds >= 1 else None


@dataclass(frozen=True)
class ReaderDelivery:
    """One edition as the ledger has it for one reader."""

    edition: str
    status: str
    reason: str | None
    at: dt.datetime


@dataclass(frozen=True)
class ReaderFeedback:
    """One SES notification about one reader."""

    kind: str
    edition: str | None
    bounce_type: str | None
    bounce_subtype: str | None
    detail: str | None
    at: dt.datetime


def _day(conn, column) -> ColumnElement:
    """The UTC date of a stored time, as the database computes it."""
    if conn.dialect.name == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)  # SQLite keeps UTC times as text


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _starts_with(conn, expression, prefix: str) -> ColumnElement:
    """``expression`` starts with ``prefix``, in a form its index serves:
    LIKE 'prefix%' on PostgreSQL (text_pattern_ops indexes), a range on
    SQLite (whose LIKE would ignore the index)."""
    if conn.dialect.name == "postgresql":
        return expression.like(_escape_like(prefix) + "%", escape="\\")
    return and_(expression >= prefix, expression < prefix[:-1] + chr(ord(prefix[-1]) + 1))


def _loose_distinct(conn, column, descending: bool = False) -> list:
    """The distinct values of an indexed ``column``, found by hopping from
    one to the next through its index (a recursive query: one probe per
    value) instead of reading every row."""
    step = func.max if descending else func.min
    seed = select(step(column).label("value")).cte("hops", recursive=True)
    beyond = column < seed.c.value if descending else column > seed.c.value
    hops = seed.union_all(
        select(select(step(column)).where(beyond).scalar_subquery()).where(seed.c.value.is_not(None))
    )
    return [value for value in conn.scalars(select(hops.c.value)) if value is not None]


class DashboardQueries:
    """The dashboard's part of :class:`newsletter.store.Store`."""

    # ---------------------------------------------------------------- the list over time

    def status_changes(self, since: dt.date) -> list[tuple[dt.date, str | None, str, int]]:
        """Return (day, old status, new status, changes) for every kind of
        status change on each day (UTC) from ``since`` on; old status None
        is a new reader."""
        e = events_table
        start = dt.datetime.combine(since, dt.time(), dt.timezone.utc)
        with self.reader.connect() as conn:
            day = _day(conn, e.c.at).label("day")
            rows = conn.execute(
                select(day, e.c.old_status, e.c.new_status, func.count())
                .where(e.c.at >= start).group_by(day, e.c.old_status, e.c.new_status)
            ).all()
        return [(d if isinstance(d, dt.date) else dt.date.fromisoformat(d), old, new, count)
                for d, old, new, count in rows]

    # ---------------------------------------------------------------- editions

    def ledger_editions(self) -> list[str]:
        """The key of every edition with ledger rows, newest key first."""
        with self.reader.connect() as conn:
            return _loose_distinct(conn, deliveries_table.c.issue_date, descending=True)

    def latest_send(self) -> str | None:
        """The edition whose ledger was written last (the last send), or None."""
        d = deliveries_table
        with self.reader.connect() as conn:
            return conn.scalar(select(d.c.issue_date).order_by(d.c.updated_at.desc()).limit(1))

    def running_sends(self) -> set[str]:
        """The editions a run is sending now (a send lock with a fresh heartbeat)."""
        fresh = self.clock() - LOCK_STALE
        with self.reader.connect() as conn:
            return set(conn.scalars(select(send_locks_table.c.issue_date)
                                    .where(send_locks_table.c.heartbeat_at >= fresh)))

    def finished_at(self, editions: Iterable[str]) -> dict[str, dt.datetime | None]:
        """When a send of each stored one of ``editions`` last ended with no
        reader waiting (None: never), by edition key."""
        wanted = set()
        for key in editions:
            try:
                wanted.add(Edition.parse(key))
            except ValueError:
                continue
        i = issues_table
        with self.reader.connect() as conn:
            rows = conn.execute(select(i.c.date, i.c.kind, i.c.finished_at).where(
                i.c.date.in_(sorted({e.date.isoformat() for e in wanted})))).all() if wanted else []
        found = {Edition(dt.date.fromisoformat(r.date), EditionKind(r.kind)): r.finished_at for r in rows}
        return {e.key: as_utc(at) if at else None for e, at in found.items() if e in wanted}

    def edition_totals(self, editions: Iterable[str]) -> dict[str, EditionTotals]:
        """Return the ledger's totals of each of ``editions`` that has rows.

        Totals kept in ``edition_totals`` are read as they are; the others
        are counted, and kept when the edition's last write is older than
        :data:`TOTALS_KEPT_AFTER`, no run holds its lock and nothing was
        written for it while counting.
        """
        keys = list(dict.fromkeys(editions))
        if not keys:
            return {}
        t, d = edition_totals_table, deliveries_table
        with self.reader.connect() as conn:
            found = {
                row.edition: EditionTotals(row.edition, as_utc(row.first_at), as_utc(row.last_at),
                                           {"pending": row.pending, "sent": row.sent, "failed": row.failed,
                                            "unknown": row.unknown})
                for row in conn.execute(select(t).where(t.c.edition.in_(keys)))
            }
        missing = [key for key in keys if key not in found]
        if not missing:
            return found
        started = self.clock()
        counted: dict[str, EditionTotals] = {}
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(d.c.issue_date, d.c.status, func.count(), func.min(d.c.updated_at), func.max(d.c.updated_at))
                .where(d.c.issue_date.in_(missing)).group_by(d.c.issue_date, d.c.status)
            ).all()
        for key, status, count, first, last in rows:
            before = counted.get(key)
            counts = dict(before.counts) if before else dict.fromkeys(LEDGER_STATUSES, 0)
            counts[status] = count
            counted[key] = EditionTotals(key, min(as_utc(first), before.first_at) if before else as_utc(first),
                                         max(as_utc(last), before.last_at) if before else as_utc(last), counts)
        for key, totals in counted.items():
            if totals.last_at < started - TOTALS_KEPT_AFTER:
                self._keep_totals(totals, started)
        return {**found, **counted}

    def _keep_totals(self, totals: EditionTotals, counting_began: dt.datetime) -> None:
        """Keep ``totals`` unless a run holds the edition's lock or wrote
        for it since its rows were counted (a minute's margin for a write
        stamped just before it committed)."""
        d, t = deliveries_table, edition_totals_table
        with self.engine.begin() as conn:
            busy = conn.scalar(select(exists().where(send_locks_table.c.issue_date == totals.edition)))
            written = conn.scalar(select(exists().where(
                d.c.updated_at >= counting_began - dt.timedelta(minutes=1), d.c.issue_date == totals.edition)))
            if busy or written:
                return
            try:
                with conn.begin_nested():
                    conn.execute(insert(t).values(
                        edition=totals.edition, first_at=totals.first_at, last_at=totals.last_at,
                        computed_at=self.clock(), **{s: totals.counts.get(s, 0) for s in LEDGER_STATUSES}))
            except IntegrityError:
                pass  # another request kept them first

    # ---------------------------------------------------------------- subscribers

    def subscriber_sources(self) -> list[str]:
        """The distinct sources of subscribers (CLI, sign-up, imports…)."""
        with self.reader.connect() as conn:
            return _loose_distinct(conn, subscribers_table.c.source)

    def search_subscribers(self, text: str = "", *, status: str | None = None, frequency: str | None = None,
                           source: str | None = None, after: int = 0, limit: int = 50) -> list[Subscriber]:
        """Return up to ``limit`` subscribers with an id above ``after``, in
        id order (keyset paging): those whose address or name starts with
        ``text`` (in any case; none given: all), with the given ``status``,
        ``frequency`` and ``source``."""
        s = subscribers_table
        query = select(s).where(s.c.id > after)
        if status:
            query = query.where(s.c.status == status)
        if frequency:
            query = query.where(s.c.frequency == frequency)
        if source:
            query = query.where(s.c.source == source)
        prefix = text.strip().lower()
        with self.reader.connect() as conn:
            if prefix:
                # The address through its own index: lower(email_key) on
                # PostgreSQL, the unique email_key itself on SQLite.
                address = func.lower(s.c.email_key) if conn.dialect.name == "postgresql" else s.c.email_key
                query = query.where(or_(_starts_with(conn, address, prefix),
                                        _starts_with(conn, func.lower(s.c.name), prefix)))
            rows = conn.execute(query.order_by(s.c.id).limit(limit)).all()
        return [subscriber_from_row(row) for row in rows]

    def get_subscriber(self, subscriber_id: int) -> Subscriber | None:
        """The subscriber with ``subscriber_id``, or None."""
        with self.reader.connect() as conn:
            row = conn.execute(select(subscribers_table).where(subscribers_table.c.id == subscriber_id)).first()
        return subscriber_from_row(row) if row else None

    def reader_deliveries(self, subscriber_id: int) -> list[ReaderDelivery]:
        """Every edition the ledger has for the reader, newest key first: one
        primary-key probe per edition, not a scan of the ledger."""
        d = deliveries_table
        editions = self.ledger_editions()
        found: list[ReaderDelivery] = []
        with self.reader.connect() as conn:
            for start in range(0, len(editions), 500):
                rows = conn.execute(select(d.c.issue_date, d.c.status, d.c.reason, d.c.updated_at).where(
                    d.c.issue_date.in_(editions[start:start + 500]), d.c.subscriber_id == subscriber_id)).all()
                found += [ReaderDelivery(r.issue_date, r.status, r.reason, as_utc(r.updated_at)) for r in rows]
        return sorted(found, key=lambda row: row.edition, reverse=True)

    def reader_feedback(self, email: str) -> list[ReaderFeedback]:
        """SES's bounces and complaints (and deliveries) about ``email``, newest first."""
        f = feedback_table
        with self.reader.connect() as conn:
            rows = conn.execute(select(f).where(f.c.email_key == email.strip().lower())
                                .order_by(f.c.at.desc(), f.c.id.desc()).limit(500)).all()
        return [ReaderFeedback(r.kind, r.issue_date, r.bounce_type, r.bounce_subtype, r.detail, as_utc(r.at))
                for r in rows]


def forget_totals(conn, edition: str) -> None:
    """Delete the kept totals of ``edition`` (a run of it is starting)."""
    conn.execute(delete(edition_totals_table).where(edition_totals_table.c.edition == edition))

