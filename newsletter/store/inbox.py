"""The reader-action inbox: actions from the web recorded before anything
else is done with them, claimed by whoever applies them, and counted for
the sign-up limits (see ``newsletter.actions``)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import func, insert, select, update

from newsletter.models import Frequency, SubscriberStatus
from newsletter.store.engine import as_utc
from newsletter.store.schema import actions_table

# How long one caller may take to apply a reader action before another may.
CLAIM_SECONDS = 30.0
# PostgreSQL advisory lock taken while a sign-up is counted and recorded.
SIGNUP_LOCK_KEY = 0x6E6C5349474E  # "nlSIGN"


@dataclass(frozen=True)
class ReaderAction:
    """One recorded reader action (see ``actions_table``)."""

    id: int
    kind: str
    subscriber_id: int | None
    email_key: str | None
    client: str | None
    payload: dict
    received_at: dt.datetime
    attempts: int


def _action(row) -> ReaderAction:
    """The :class:`ReaderAction` of a ``reader_actions`` row."""
    return ReaderAction(id=row.id, kind=row.kind, subscriber_id=row.subscriber_id, email_key=row.email_key,
                        client=row.client, payload=json.loads(row.payload), received_at=as_utc(row.received_at),
                        attempts=row.attempts)


class Inbox:
    """The reader-action part of :class:`newsletter.store.Store`."""

    def record_action(self, kind: str, *, subscriber_id: int | None = None, email: str | None = None,
                      payload: dict | None = None, claim: bool = False) -> int:
        """Record a reader action to apply (see ``actions_table``) and return
        its id. With ``claim``, the caller is the one to apply it, for the
        next :data:`CLAIM_SECONDS` (then anyone may)."""
        stamp = self.clock()
        with self.inbox.begin() as conn:
            return conn.execute(insert(actions_table).values(
                kind=kind, subscriber_id=subscriber_id, email_key=email.lower() if email else None,
                payload=json.dumps(payload or {}), received_at=stamp, attempts=0,
                claimed_until=stamp + dt.timedelta(seconds=CLAIM_SECONDS) if claim else None,
            )).inserted_primary_key[0]

    def record_signup(self, email: str, name: str | None, client: str, *, per_address_per_day: int,
                      per_client_per_hour: int, interests: tuple[str, ...] = (),
                      frequency: Frequency = Frequency.DAILY) -> bool:
        """Record a sign-up request for ``email`` from ``client`` (with the
        ``interests`` and ``frequency`` the form gave, for the confirmation
        link to carry) unless it would exceed a limit: at most ``per_address_per_day``
        requests per address in 24 hours and ``per_client_per_hour`` per
        client in an hour. Counting and recording are one atomic step (one
        writer at a time), so parallel requests cannot exceed a limit.
        Returns whether it was recorded. ``client`` is kept to its first 64
        characters."""
        key = email.strip().lower()
        client = client[:64]
        a = actions_table
        stamp = self.clock()
        with self.inbox.begin() as conn:
            if conn.dialect.name == "postgresql":
                # SQLite's BEGIN IMMEDIATE already lets one writer in at a time.
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SIGNUP_LOCK_KEY})")
            signups = select(func.count()).select_from(a).where(a.c.kind == "signup")
            if conn.scalar(signups.where(a.c.email_key == key,
                                         a.c.received_at >= stamp - dt.timedelta(days=1))) >= per_address_per_day:
                return False
            if conn.scalar(signups.where(a.c.client == client,
                                         a.c.received_at >= stamp - dt.timedelta(hours=1))) >= per_client_per_hour:
                return False
            payload = {"email": email.strip(), "name": name, **({"interests": list(interests)} if interests else {}),
                       **({"frequency": str(frequency)} if frequency != Frequency.DAILY else {})}
            conn.execute(insert(a).values(kind="signup", email_key=key, client=client, received_at=stamp, attempts=0,
                                          payload=json.dumps(payload)))
        return True

    def count_signups(self, *, email: str | None = None, client: str | None = None,
                      since: dt.datetime) -> int:
        """Return how many sign-up requests were recorded for ``email`` (or
        from ``client``) since ``since``. ``client`` is compared as
        :meth:`record_signup` stores it (its first 64 characters)."""
        a = actions_table
        query = select(func.count()).select_from(a).where(a.c.kind == "signup", a.c.received_at >= since)
        if email is not None:
            query = query.where(a.c.email_key == email.strip().lower())
        if client is not None:
            query = query.where(a.c.client == client[:64])
        with self.inbox.connect() as conn:
            return conn.scalar(query)

    def action_pending(self, kind: str, payload: dict) -> bool:
        """Whether an action of ``kind`` with exactly ``payload`` is still to
        apply (so the same paper is not queued for fetching twice)."""
        a = actions_table
        with self.inbox.connect() as conn:
            return conn.scalar(select(func.count()).select_from(a).where(
                a.c.kind == kind, a.c.payload == json.dumps(payload), a.c.done_at.is_(None))) > 0

    def pending_actions(self, subscriber_id: int, kinds: Iterable[str]) -> list[ReaderAction]:
        """Return the reader's actions of ``kinds`` not applied yet, oldest
        first (what a page shows on top of what is stored)."""
        a = actions_table
        query = (select(a).where(a.c.subscriber_id == subscriber_id, a.c.kind.in_(list(kinds)),
                                 a.c.done_at.is_(None)).order_by(a.c.id))
        with self.inbox.connect() as conn:
            return [_action(r) for r in conn.execute(query)]

    def due_actions(self, kinds: Iterable[str], limit: int = 100) -> list[ReaderAction]:
        """Return up to ``limit`` actions of ``kinds`` still to apply that no
        one is applying and that are not waiting for a retry, oldest first."""
        a = actions_table
        stamp = self.clock()
        query = (
            select(a).where(a.c.done_at.is_(None), a.c.kind.in_(list(kinds)),
                            a.c.claimed_until.is_(None) | (a.c.claimed_until < stamp),
                            a.c.not_before.is_(None) | (a.c.not_before <= stamp))
            .order_by(a.c.id).limit(limit)
        )
        with self.inbox.connect() as conn:
            return [_action(r) for r in conn.execute(query)]

    def claim_action(self, action_id: int) -> bool:
        """Make this caller the one applying the action, for the next
        :data:`CLAIM_SECONDS`; False when it is done or someone else has it."""
        a = actions_table
        stamp = self.clock()
        with self.inbox.begin() as conn:
            return bool(conn.execute(
                update(a).where(a.c.id == action_id, a.c.done_at.is_(None),
                                a.c.claimed_until.is_(None) | (a.c.claimed_until < stamp))
                .values(claimed_until=stamp + dt.timedelta(seconds=CLAIM_SECONDS))
            ).rowcount)

    def finish_action(self, action_id: int, outcome: str) -> None:
        """Mark the action applied, with what came of it."""
        with self.inbox.begin() as conn:
            conn.execute(update(actions_table).where(actions_table.c.id == action_id)
                         .values(done_at=self.clock(), claimed_until=None, outcome=outcome[:300]))

    def release_action(self, action_id: int, retry_in: float = 0.0, outcome: str | None = None) -> None:
        """Give a claimed action back, to be applied again in ``retry_in``
        seconds (counted as a failed attempt when ``retry_in`` > 0)."""
        a = actions_table
        values = dict(claimed_until=None, not_before=self.clock() + dt.timedelta(seconds=retry_in) if retry_in else None)
        if retry_in:
            values.update(attempts=a.c.attempts + 1, outcome=(outcome or "")[:300] or None)
        with self.inbox.begin() as conn:
            conn.execute(update(a).where(a.c.id == action_id).values(**values))

    def has_earlier_pending(self, action_id: int, *, subscriber_id: int | None = None,
                            email: str | None = None) -> bool:
        """Whether an action older than ``action_id`` about the same reader
        (or address) is still to apply: actions about one reader are applied
        in the order they arrived."""
        a = actions_table
        target = a.c.subscriber_id == subscriber_id if subscriber_id is not None else a.c.email_key == email.lower()
        with self.inbox.connect() as conn:
            return conn.scalar(select(func.count()).select_from(a).where(
                target, a.c.id < action_id, a.c.done_at.is_(None), a.c.kind != "signup")) > 0

    def pending_status(self, subscriber_id: int) -> str | None:
        """The status the reader's latest unapplied unsubscribe (or
        resubscribe) will give them, or None when there is none."""
        a = actions_table
        with self.inbox.connect() as conn:
            kind = conn.scalar(select(a.c.kind).where(
                a.c.subscriber_id == subscriber_id, a.c.done_at.is_(None),
                a.c.kind.in_(("unsubscribe", "resubscribe"))).order_by(a.c.id.desc()).limit(1))
        return {"unsubscribe": SubscriberStatus.UNSUBSCRIBED, "resubscribe": SubscriberStatus.ACTIVE}.get(kind)

    def _pending_unsubscribes(self, ids: list[int]) -> set[int]:
        """Those of ``ids`` with an unsubscribe recorded but not yet applied."""
        a = actions_table
        with self.inbox.connect() as conn:
            return set(conn.scalars(select(a.c.subscriber_id).where(
                a.c.subscriber_id.in_(ids), a.c.kind == "unsubscribe", a.c.done_at.is_(None))))

    def purge_actions(self, older_than: dt.timedelta = dt.timedelta(days=2)) -> int:
        """Delete applied actions older than ``older_than`` (at least a day:
        sign-ups count towards the daily limit). Returns how many."""
        a = actions_table
        before = self.clock() - max(older_than, dt.timedelta(days=1))
        with self.inbox.begin() as conn:
            return conn.execute(a.delete().where(a.c.done_at.is_not(None), a.c.received_at < before)).rowcount
