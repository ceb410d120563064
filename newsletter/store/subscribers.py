"""Subscribers and their history: reading, adding, and every status change
as a conditional UPDATE plus an event row in one transaction, so concurrent
writers (the web app and a cron send) cannot lose or duplicate a change, and
a person can always answer "why did this reader stop getting mail?".
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Iterable, Iterator

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Select

from newsletter.core.errors import InvalidEmail
from newsletter.core.models import (
    ConfirmOutcome,
    Frequency,
    Profile,
    Schedule,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
)
from newsletter.core.policy import reader_may_reactivate
from newsletter.store.engine import as_utc, execute_expanded
from newsletter.store.profiles import put_profile, put_schedule
from newsletter.store.schema import events_table, subscribers_table
from newsletter.core.text import clean_name


def normalize_email(address: str) -> str:
    """Return the normalized form of ``address`` (syntax only, no DNS), in
    ASCII: an internationalized domain in its IDNA form.

    Raises :class:`InvalidEmail` with the reason when it is not an address,
    or when its local part is not ASCII (that needs SMTPUTF8, which neither
    SES nor most servers accept for bulk mail).
    """
    try:
        valid = validate_email(address.strip(), check_deliverability=False, allow_smtputf8=False)
        return valid.ascii_email or valid.normalized
    except EmailNotValidError as exc:
        raise InvalidEmail(f"{address.strip()!r} is not a valid email address: {exc}") from exc


# Which of some readers are active (a send asks before each call: the
# statement is built once).
_ACTIVE_AMONG = select(subscribers_table.c.id).where(
    subscribers_table.c.id.in_(bindparam("ids", expanding=True)), subscribers_table.c.status == SubscriberStatus.ACTIVE)


def subscriber_from_row(row) -> Subscriber:
    """The :class:`Subscriber` of a ``subscribers`` row."""
    return Subscriber(
        id=row.id,
        ref=row.ref,
        email=row.email,
        name=row.name,
        status=SubscriberStatus(row.status),
        source=row.source,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        schedule=Schedule(Frequency(row.frequency), row.weekday,
                          dt.date.fromisoformat(row.paused_until) if row.paused_until else None),
    )


def paged_subscribers(engine: Engine, query: Select, page: int) -> Iterator[Subscriber]:
    """Yield the subscribers ``query`` selects, in id order (see :func:`paged_rows`)."""
    return map(subscriber_from_row, paged_rows(engine, query, page))


# Ids a read of paged_rows spans, at first and at most, in pages.
_SPAN_PAGES, _MOST_SPAN_PAGES = 4, 16


def paged_rows(engine: Engine, query: Select, page: int) -> Iterator:
    """Yield the rows ``query`` selects from ``subscribers`` (with its
    ``id``), in id order, reading at most ``page`` rows per short
    transaction (keyset paging on the id): a long iteration (a send) never
    holds a lock and sees what was committed since the last read, readers
    who joined meanwhile included.

    Each read is bounded to a span of ids too (a few pages' worth, wider
    while reads come back sparse): with only ``id > last`` and a LIMIT,
    PostgreSQL's planner may read every remaining row to sort out the
    first ``page``, for every page."""
    s = subscribers_table.c
    last_id, top, span = 0, None, page * _SPAN_PAGES
    while True:
        with engine.connect() as conn:
            if top is None or last_id >= top:
                top = conn.scalar(select(func.max(s.id)))
                if top is None or last_id >= top:
                    return
            rows = conn.execute(query.where(s.id > last_id, s.id <= last_id + span).order_by(s.id).limit(page)).all()
        yield from rows
        if len(rows) == page:
            last_id = rows[-1].id
        else:
            last_id += span
            if len(rows) < page // 2:
                span = min(span * 2, page * _MOST_SPAN_PAGES)


def _last_source(conn: Connection, subscriber_id: int) -> str | None:
    """The source of the subscriber's latest status change."""
    e = events_table
    return conn.scalar(select(e.c.source).where(e.c.subscriber_id == subscriber_id).order_by(e.c.id.desc()).limit(1))


def _change_status(
    conn: Connection, subscriber_id: int, new_status: SubscriberStatus, source: str, reason: str,
    only_from: tuple[SubscriberStatus, ...] | None, stamp: dt.datetime,
) -> bool:
    """The body of :meth:`Subscribers.change_status`, inside the caller's
    transaction, stamped ``stamp``."""
    old = conn.scalar(select(subscribers_table.c.status).where(subscribers_table.c.id == subscriber_id))
    if old is None or old == new_status or (only_from is not None and old not in only_from):
        return False
    changed = conn.execute(
        update(subscribers_table)
        .where(subscribers_table.c.id == subscriber_id, subscribers_table.c.status == old)
        .values(status=new_status, updated_at=stamp)
    ).rowcount
    if not changed:
        return False
    conn.execute(
        insert(events_table).values(
            subscriber_id=subscriber_id, at=stamp, old_status=old, new_status=new_status,
            source=source, reason=reason[:1000],
        )
    )
    return True


class Subscribers:
    """The subscriber part of :class:`newsletter.store.Store`."""

    def get(self, *, email: str | None = None, ref: str | None = None) -> Subscriber | None:
        """Return the subscriber with ``email`` (any case) or ``ref``, or None."""
        query = select(subscribers_table)
        if email is not None:
            query = query.where(subscribers_table.c.email_key == email.strip().lower())
        elif ref is not None:
            query = query.where(subscribers_table.c.ref == ref)
        else:
            raise TypeError("give email or ref")
        with self.reader.connect() as conn:
            row = conn.execute(query).first()
        return subscriber_from_row(row) if row else None

    def iter_subscribers(self, status: str | None = None, page: int = 500) -> Iterator[Subscriber]:
        """Yield subscribers in id order, optionally only those with ``status``.

        Reads one page per short transaction, so a long iteration (a send)
        never holds a lock, and sees changes committed since the last page.
        """
        query = select(subscribers_table)
        if status:
            query = query.where(subscribers_table.c.status == status)
        return paged_subscribers(self.reader, query, page)

    def active_ids(self, ids: Iterable[int]) -> set[int]:
        """Return those of ``ids`` that are active right now (checked just
        before sending, so a reader who left a moment ago gets nothing, even
        one whose unsubscribe is recorded but not yet applied)."""
        ids = list(ids)
        if not ids:
            return set()
        with self.reader.connect() as conn:
            active = set(execute_expanded(conn, _ACTIVE_AMONG, ids=ids).scalars())
        # An unsubscribe recorded while the database was held counts already.
        return active - self._pending_unsubscribes(list(active)) if active else active

    def counts(self) -> dict[str, int]:
        """Return the number of subscribers per status (every status listed)."""
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(subscribers_table.c.status, func.count()).group_by(subscribers_table.c.status)
            ).all()
        result = dict.fromkeys(tuple(SubscriberStatus), 0)
        result.update({status: count for status, count in rows})
        return result

    def events(self, subscriber_id: int) -> list[SubscriberEvent]:
        """Return the status history of one subscriber, oldest first."""
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(events_table)
                .where(events_table.c.subscriber_id == subscriber_id)
                .order_by(events_table.c.id)
            ).all()
        return [
            SubscriberEvent(
                at=as_utc(r.at), old_status=r.old_status, new_status=r.new_status, source=r.source, reason=r.reason
            )
            for r in rows
        ]

    def _insert_subscriber(self, conn: Connection, email: str, name: str | None, source: str) -> int:
        stamp = self.clock()
        subscriber_id = conn.execute(
            insert(subscribers_table).values(
                ref=secrets.token_urlsafe(16),
                email=email,
                email_key=email.lower(),
                name=clean_name(name),
                status=SubscriberStatus.ACTIVE,
                source=source,
                created_at=stamp,
                updated_at=stamp,
            )
        ).inserted_primary_key[0]
        conn.execute(
            insert(events_table).values(
                subscriber_id=subscriber_id, at=stamp, old_status=None, new_status=SubscriberStatus.ACTIVE,
                source=source, reason="subscribed",
            )
        )
        return subscriber_id

    def add(self, email: str, name: str | None = None, source: str = "cli") -> tuple[Subscriber, bool]:
        """Add an active subscriber. Returns (subscriber, created).

        An address already present (in any case) is returned unchanged with
        ``created`` False: it is never reactivated here. Raises
        :class:`InvalidEmail` for a malformed address.
        """
        address = normalize_email(email)
        try:
            with self.engine.begin() as conn:
                self._insert_subscriber(conn, address, name, source)
            created = True
        except IntegrityError:
            created = False
        found = self.get(email=address)
        assert found is not None
        return found, created

    def change_status(
        self,
        subscriber_id: int,
        new_status: str,
        *,
        source: str,
        reason: str,
        only_from: tuple[str, ...] | None = None,
    ) -> bool:
        """Set a subscriber's status and record the event, atomically.

        Only changes a subscriber whose current status is in ``only_from``
        (any other status when None). Returns True when the status changed,
        False when it was already ``new_status`` or not allowed to change.
        """
        if new_status not in tuple(SubscriberStatus):
            raise ValueError(f"unknown status {new_status!r}")
        with self.engine.begin() as conn:
            return _change_status(conn, subscriber_id, new_status, source, reason, only_from, self.clock())

    def unsubscribe(self, ref: str, *, source: str, reason: str, quick: bool = False) -> tuple[Subscriber | None, bool]:
        """Unsubscribe the active reader with ``ref``. Idempotent.

        Returns (subscriber or None when unknown, whether anything changed).
        A bounced or complained reader stays as they are. Raises
        :class:`StoreBusy` when ``quick`` and the database is held.
        """
        found = self.get(ref=ref)
        if not found:
            return None, False
        with self._writing(quick) as conn:
            changed = _change_status(conn, found.id, SubscriberStatus.UNSUBSCRIBED, source, reason,
                                     (SubscriberStatus.ACTIVE,), self.clock())
        return self.get(ref=ref), changed

    def resubscribe(self, ref: str, *, source: str = "web", quick: bool = False) -> tuple[Subscriber | None, bool]:
        """Reactivate the reader with ``ref`` if they unsubscribed themself
        (:func:`reader_may_reactivate`), deciding inside the transaction.

        An address unsubscribed by the operator, bounced or complained is
        left alone. Returns (subscriber or None, whether anything changed).
        Raises :class:`StoreBusy` when ``quick`` and the database is held.
        """
        found = self.get(ref=ref)
        if not found:
            return None, False
        with self._writing(quick) as conn:
            status = conn.scalar(select(subscribers_table.c.status).where(subscribers_table.c.id == found.id))
            changed = reader_may_reactivate(status, _last_source(conn, found.id)) and _change_status(
                conn, found.id, SubscriberStatus.ACTIVE, source, "resubscribed by the reader",
                (SubscriberStatus.UNSUBSCRIBED,), self.clock(),
            )
        return self.get(ref=ref), changed

    def signup_state(self, email: str) -> tuple[Subscriber | None, bool]:
        """Return (the subscriber with ``email`` or None, whether a sign-up
        may make the address active now: see :func:`reader_may_reactivate`)."""
        found = self.get(email=email)
        if found is None:
            return None, True
        with self.reader.connect() as conn:
            return found, reader_may_reactivate(found.status, _last_source(conn, found.id))

    def confirm_signup(self, email: str, name: str | None, interests: tuple[str, ...] = (),
                       quick: bool = False, frequency: Frequency = Frequency.DAILY) -> ConfirmOutcome:
        """Make ``email`` active after its confirmation link was used, with
        the rules of a new sign-up checked at this moment, inside the
        transaction: a new address is added (with ``interests`` as its
        profile's, when there are some, and getting the newsletter at
        ``frequency``, on the list's day when weekly), one that unsubscribed
        itself is reactivated (its profile and schedule left as they are);
        one the operator removed, or that bounced or complained since, is
        refused.

        Returns what it came to (a :class:`ConfirmOutcome`). Raises :class:`StoreBusy` when ``quick`` and the database
        is held.
        """
        address = normalize_email(email)
        key = address.lower()
        with self._writing(quick) as conn:
            row = conn.execute(
                select(subscribers_table.c.id, subscribers_table.c.status).where(subscribers_table.c.email_key == key)
            ).first()
            if row is None:
                subscriber_id = self._insert_subscriber(conn, address, name, "signup")
                if interests:
                    put_profile(conn, Profile(subscriber_id, interests=tuple(interests)), False, self.clock())
                if frequency != Frequency.DAILY:  # a new row is daily already
                    put_schedule(conn, subscriber_id, Schedule(Frequency(frequency)))
                return ConfirmOutcome.SUBSCRIBED
            if row.status == SubscriberStatus.ACTIVE:
                return ConfirmOutcome.ALREADY
            if not reader_may_reactivate(row.status, _last_source(conn, row.id)):
                return ConfirmOutcome.REFUSED
            _change_status(conn, row.id, SubscriberStatus.ACTIVE, "signup", "confirmed a new sign-up",
                           (SubscriberStatus.UNSUBSCRIBED,), self.clock())
            return ConfirmOutcome.RESUBSCRIBED
