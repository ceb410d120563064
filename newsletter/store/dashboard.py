"""The queries behind the dashboard (/admin/): the list's changes per day,
the editions in the ledger and their totals, the subscribers' search, and
one reader's editions and feedback.

Each is made to stay fast with a million readers and a year of daily
editions: the changes of each day that is over are counted once and kept
(``event_days``), only today's read from ``subscriber_events``; the
editions in the ledger are found by hopping along its primary key (one probe
per edition, never a scan of the rows); the totals of an edition whose send
is over are counted once and kept (``edition_totals``); the search pages by
id through an index for each filter.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Iterable

from sqlalchemy import Date, and_, cast, delete, exists, func, insert, or_, select, union, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement

from newsletter.core.models import LEDGER_STATUSES, Edition, EditionKind, Subscriber, SubscriberStatus
from newsletter.store.engine import as_utc
from newsletter.store.schema import (
    deliveries_table,
    edition_totals_table,
    event_days_table,
    events_table,
    feedback_table,
    issues_table,
    meta_table,
    send_locks_table,
    subscribers_table,
)
from newsletter.store.subscribers import subscriber_from_row

# An edition's totals are kept once its last ledger write is this old and
# no run holds its lock (the lock's holder deletes them when a run starts).
TOTALS_KEPT_AFTER = dt.timedelta(minutes=10)
# A day's status changes are kept once the day has been over this long (an
# import stamps its readers when it begins, and may commit a little later).
DAYS_SETTLE = dt.timedelta(hours=1)
# A search text that this many addresses or names start with is "broad":
# its page is found by walking the list in id order, not through the indexes.
BROAD_SEARCH = 2000
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


def _past_prefix(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix``, in
    code point order (SQLite's, UTF-8 compared byte by byte): its last
    character raised by one, skipping the surrogates (which no text
    holds); trailing U+10FFFF, the last code point, carry into the one
    before. None when ``prefix`` is all U+10FFFF: nothing is above."""
    kept = prefix.rstrip("\U0010ffff")
    if not kept:
        return None
    following = ord(kept[-1]) + 1
    return kept[:-1] + chr(0xE000 if 0xD800 <= following <= 0xDFFF else following)


def _starts_with(conn, expression, prefix: str) -> ColumnElement:
    """``expression`` starts with ``prefix``, in a form its index serves:
    LIKE 'prefix%' on PostgreSQL (text_pattern_ops indexes), a range on
    SQLite (whose LIKE would ignore the index)."""
    if conn.dialect.name == "postgresql":
        return expression.like(_escape_like(prefix) + "%", escape="\\")
    above = _past_prefix(prefix)
    return expression >= prefix if above is None else and_(expression >= prefix, expression < above)


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
        is a new reader.

        The days that are over (by :data:`DAYS_SETTLE`) are counted once and
        kept in ``event_days``; only the others are counted each time.
        """
        settled = (self.clock() - DAYS_SETTLE).date() - dt.timedelta(days=1)  # the last day that is over
        with self.reader.connect() as conn:
            kept = {key: conn.scalar(select(meta_table.c.value).where(meta_table.c.key == key))
                    for key in ("event_days_from", "event_days_through")}
        if kept["event_days_from"] and kept["event_days_through"]:
            first, last = (dt.date.fromisoformat(kept[key]) for key in ("event_days_from", "event_days_through"))
            # The kept days are one run of days: extend it at either end.
            missing = [(since, first - dt.timedelta(days=1)), (last + dt.timedelta(days=1), settled)]
        else:
            first = last = None
            missing = [(since, settled)]
        missing = [(start, end) for start, end in missing if start <= end]
        counted = [row for start, end in missing for row in self._count_days(start, end)]
        if missing and self._keep_days(counted, kept, min(since, first or since), max(settled, last or settled)):
            rows = self._kept_days(since, settled)
        else:
            # Nothing to keep, or another request kept days meanwhile: what
            # was kept before (kept days never change), and our own counts.
            rows = (self._kept_days(max(since, first), min(settled, last)) if first else []) + counted
        return rows + self._count_days(max(since, settled + dt.timedelta(days=1)), None)

    def status_totals(self) -> dict[str, int]:
        """Return the number of readers per status (every status listed),
        summed from the history: each status change since the first, the
        days that are over counted once and kept (see status_changes). The
        same as ``Subscribers.counts`` (every status change has its event
        row; a test holds the two together), without counting a million
        rows on each view.
        """
        totals = dict.fromkeys(tuple(SubscriberStatus), 0)
        with self.reader.connect() as conn:
            first = conn.scalar(select(func.min(events_table.c.at)))
        if first is None:
            return totals
        for _day, old, new, changes in self.status_changes(as_utc(first).date()):
            totals[new] = totals.get(new, 0) + changes
            if old:
                totals[old] = totals.get(old, 0) - changes
        return totals

    def _kept_days(self, start: dt.date, end: dt.date) -> list[tuple[dt.date, str | None, str, int]]:
        """The kept counts of the days from ``start`` to ``end``."""
        if start > end:
            return []
        e = event_days_table
        with self.reader.connect() as conn:
            stored = conn.execute(select(e).where(e.c.day >= start.isoformat(), e.c.day <= end.isoformat())).all()
        return [(dt.date.fromisoformat(r.day), r.old_status or None, r.new_status, r.changes) for r in stored]

    def _count_days(self, start: dt.date, end: dt.date | None) -> list[tuple[dt.date, str | None, str, int]]:
        """Count the status changes of each day from ``start`` to ``end``
        (None: on to now), by kind."""
        e = events_table
        begin = dt.datetime.combine(start, dt.time(), dt.timezone.utc)
        with self.reader.connect() as conn:
            day = _day(conn, e.c.at).label("day")
            query = select(day, e.c.old_status, e.c.new_status, func.count()).where(e.c.at >= begin)
            if end is not None:
                query = query.where(e.c.at < dt.datetime.combine(end + dt.timedelta(days=1), dt.time(),
                                                                 dt.timezone.utc))
            rows = conn.execute(query.group_by(day, e.c.old_status, e.c.new_status)).all()
        return [(d if isinstance(d, dt.date) else dt.date.fromisoformat(d), old, new, count)
                for d, old, new, count in rows]

    def _keep_days(self, counted: list, kept: dict[str, str | None], first: dt.date, last: dt.date) -> bool:
        """Store the ``counted`` days and that the days from ``first`` to
        ``last`` are kept, unless another request changed what is kept since
        it was read as ``kept`` (then its rows stand). Returns whether they
        were stored."""
        e, m = event_days_table, meta_table
        with self.engine.begin() as conn:
            now_kept = {key: conn.scalar(select(m.c.value).where(m.c.key == key)) for key in kept}
            if now_kept != kept:
                return False
            if counted:
                conn.execute(insert(e), [dict(day=d.isoformat(), old_status=old or "", new_status=new, changes=n)
                                         for d, old, new, n in counted])
            for key, value in (("event_days_from", first), ("event_days_through", last)):
                if kept[key] is None:
                    conn.execute(insert(m).values(key=key, value=value.isoformat()))
                else:
                    conn.execute(update(m).where(m.c.key == key).values(value=value.isoformat()))
        return True

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
        ``frequency`` and ``source``. Each filter has an index with the id
        after it, so a page is one index range."""
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
                starts = (_starts_with(conn, address, prefix), _starts_with(conn, func.lower(s.c.name), prefix))
                if sum(conn.scalar(select(func.count()).select_from(select(s.c.id).where(condition)
                                                                    .limit(BROAD_SEARCH).subquery()))
                       for condition in starts) >= BROAD_SEARCH:
                    # Many match: walking the list in id order fills a page soon.
                    query = query.where(or_(*starts))
                else:
                    # Few match: find them through the indexes, then page
                    # (left to itself, a planner may walk the whole list in id
                    # order looking for them).
                    found = union(*(select(s.c.id).where(s.c.id > after, condition) for condition in starts)
                                  ).subquery("found")
                    query = query.join_from(s, found, found.c.id == s.c.id)
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

