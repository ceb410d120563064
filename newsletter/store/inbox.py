"""The reader-action inbox: actions from the web recorded before anything
else is done with them, claimed by whoever applies them, and counted for
the limits on sign-ups and on readers' changes (see ``newsletter.readers.actions``);
and the seed papers waiting to be looked up on arXiv, taken in turn by
reader."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable

from sqlalchemy import bindparam, func, insert, select, update

from newsletter.core.errors import RateLimited
from newsletter.core.models import (
    Frequency,
    Muting,
    Profile,
    ReaderActionKind,
    RestOfDay,
    Schedule,
    SubscriberStatus,
)
from newsletter.store.engine import as_utc, execute_expanded
from newsletter.store.schema import actions_table

# How long one caller may take to apply a reader action before another may.
CLAIM_SECONDS = 30.0
# PostgreSQL advisory lock taken while an action is counted against its
# limits and recorded (SQLite's BEGIN IMMEDIATE already lets one writer in).
LIMITS_LOCK_KEY = 0x6E6C5349474E  # "nlSIGN"
# When a reader's changes wait for the database (held by a long operation)
# as many as they may, the seconds they are asked to wait before another.
BUSY_RETRY_SECONDS = 60
# The actions applied by the worker in the background: never in the way of
# a reader's own actions, which are applied in the order they came.
BACKGROUND_KINDS = (ReaderActionKind.SIGNUP, ReaderActionKind.FETCH_PAPER)


# Which of some readers have an unsubscribe recorded, not yet applied (a
# send asks before each call: the statement is built once).
_UNSUBSCRIBING = select(actions_table.c.subscriber_id).where(
    actions_table.c.subscriber_id.in_(bindparam("ids", expanding=True)),
    actions_table.c.kind == ReaderActionKind.UNSUBSCRIBE, actions_table.c.done_at.is_(None))


@dataclass(frozen=True)
class ActionLimits:
    """How many changes of ``kinds`` one reader (``per_reader``) and one
    client (``per_client``) may make within ``window``, and how many of a
    reader's may wait to be applied at once (``max_pending``)."""

    kinds: tuple[ReaderActionKind, ...]
    per_reader: int
    per_client: int
    window: dt.timedelta
    max_pending: int


class ActionPayload:
    """What a reader action carries, stored as a JSON object in the inbox;
    each kind of action has its own (see :data:`PAYLOADS`). A payload reads
    back every row that was ever written of its kind."""

    kind: ClassVar[ReaderActionKind]

    def to_json(self) -> str:
        """The payload as the inbox stores it."""
        return json.dumps(self._fields())

    @classmethod
    def from_json(cls, text: str):
        """The payload stored as ``text``. Raises ValueError (or KeyError,
        TypeError) when it is not one of this kind."""
        return cls._from_fields(json.loads(text))

    def _fields(self) -> dict[str, Any]:
        """The JSON object's fields (tuples are written as lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def _from_fields(cls, fields: dict[str, Any]):
        """The payload of a JSON object's ``fields``."""
        return cls(**fields)


@dataclass(frozen=True)
class UnsubscribePayload(ActionPayload):
    """A reader's unsubscribe: from the web page or by one click (``source``)."""

    kind = ReaderActionKind.UNSUBSCRIBE
    source: str
    reason: str
    ref: str


@dataclass(frozen=True)
class ResubscribePayload(ActionPayload):
    """A reader who unsubscribed, back on the list."""

    kind = ReaderActionKind.RESUBSCRIBE
    ref: str


@dataclass(frozen=True)
class SignupPayload(ActionPayload):
    """A sign-up form, whose confirmation email is to be sent: the address,
    and the name, interests and frequency the confirmation link carries."""

    kind = ReaderActionKind.SIGNUP
    email: str
    name: str | None = None
    interests: tuple[str, ...] = ()
    frequency: Frequency = Frequency.DAILY

    def _fields(self) -> dict[str, Any]:
        # Left out when there are none and when daily, as in the rows
        # written before the form had them.
        return {"email": self.email, "name": self.name,
                **({"interests": list(self.interests)} if self.interests else {}),
                **({"frequency": str(self.frequency)} if self.frequency != Frequency.DAILY else {})}

    @classmethod
    def _from_fields(cls, fields: dict[str, Any]):
        return cls(fields["email"], fields.get("name"), tuple(fields.get("interests") or ()),
                   Frequency(fields.get("frequency", Frequency.DAILY)))


@dataclass(frozen=True)
class ConfirmPayload(SignupPayload):
    """A sign-up's confirmation link used: what the link carries."""

    kind = ReaderActionKind.CONFIRM


@dataclass(frozen=True)
class PreferencesPayload(ActionPayload):
    """A reader's saved preferences form: their interests, authors,
    categories, seed papers, number of picks, how their email shows the
    ``rest`` of the day, their ``muted`` phrases and where they hide papers
    (``muting``), and their ``schedule`` (None: left as it is, as the forms
    saved before the schedule was part of them do)."""

    kind = ReaderActionKind.PREFERENCES
    subscriber_id: int
    interests: tuple[str, ...]
    authors: tuple[str, ...]
    categories: tuple[str, ...]
    seeds: tuple[str, ...]
    picks: int
    schedule: Schedule | None = None
    rest: RestOfDay = RestOfDay.TITLES
    muted: tuple[str, ...] = ()
    muting: Muting = Muting.PICKS

    @classmethod
    def of(cls, subscriber_id: int, profile: Profile, schedule: Schedule | None = None) -> "PreferencesPayload":
        """The reader's preferences as ``profile`` has them (its votes
        aside), with ``schedule``."""
        return cls(subscriber_id, profile.interests, profile.authors, profile.categories, profile.seeds,
                   profile.picks, schedule, profile.rest, profile.muted, profile.muting)

    def applied_to(self, profile: Profile) -> Profile:
        """``profile`` with these preferences in place of its own (its votes kept)."""
        return Profile(profile.subscriber_id, self.interests, self.authors, self.categories, self.seeds,
                       profile.liked, profile.disliked, self.picks, self.rest, self.muted, self.muting)

    def _fields(self) -> dict[str, Any]:
        fields = {"subscriber_id": self.subscriber_id, "interests": list(self.interests),
                  "authors": list(self.authors), "categories": list(self.categories), "seeds": list(self.seeds),
                  "picks": self.picks, "rest": str(self.rest), "muted": list(self.muted),
                  "muting": str(self.muting)}
        if self.schedule is not None:
            paused_until = self.schedule.paused_until
            fields["schedule"] = {"frequency": str(self.schedule.frequency), "weekday": self.schedule.weekday,
                                  "paused_until": paused_until.isoformat() if paused_until else None}
        return fields

    @classmethod
    def _from_fields(cls, fields: dict[str, Any]):
        saved, schedule = fields.get("schedule"), None
        if saved is not None:
            paused_until = saved.get("paused_until")
            schedule = Schedule(Frequency(saved["frequency"]), saved.get("weekday"),
                                dt.date.fromisoformat(paused_until) if paused_until else None)
        # A row written before a choice existed: every title, as all emails
        # had then; nothing muted.
        return cls(fields["subscriber_id"], tuple(fields["interests"]), tuple(fields["authors"]),
                   tuple(fields["categories"]), tuple(fields["seeds"]), fields["picks"], schedule,
                   RestOfDay(fields.get("rest", RestOfDay.TITLES)), tuple(fields.get("muted", ())),
                   Muting(fields.get("muting", Muting.PICKS)))


@dataclass(frozen=True)
class VotePayload(ActionPayload):
    """A reader's ``vote`` on a paper of ``edition``: +1 (👍), -1 (👎) or 0 (undo)."""

    kind = ReaderActionKind.VOTE
    subscriber_id: int
    paper_key: str
    vote: int
    edition: str


@dataclass(frozen=True)
class ForgetVotesPayload(ActionPayload):
    """A reader's "Forget my votes" (``undo``: bring them back)."""

    kind = ReaderActionKind.FORGET_VOTES
    subscriber_id: int
    undo: bool = False


@dataclass(frozen=True)
class FetchPaperPayload(ActionPayload):
    """A seed paper to look up on arXiv."""

    kind = ReaderActionKind.FETCH_PAPER
    arxiv_id: str


# Each kind of action's payload.
PAYLOADS: dict[ReaderActionKind, type[ActionPayload]] = {
    payload.kind: payload for payload in (UnsubscribePayload, ResubscribePayload, SignupPayload, ConfirmPayload,
                                          PreferencesPayload, VotePayload, ForgetVotesPayload, FetchPaperPayload)
}


@dataclass(frozen=True)
class ReaderAction:
    """One recorded reader action (see ``actions_table``)."""

    id: int
    kind: ReaderActionKind
    subscriber_id: int | None
    email_key: str | None
    client: str | None
    payload: ActionPayload
    received_at: dt.datetime
    attempts: int


def _action(row) -> ReaderAction:
    """The :class:`ReaderAction` of a ``reader_actions`` row."""
    kind = ReaderActionKind(row.kind)
    return ReaderAction(id=row.id, kind=kind, subscriber_id=row.subscriber_id, email_key=row.email_key,
                        client=row.client, payload=PAYLOADS[kind].from_json(row.payload),
                        received_at=as_utc(row.received_at), attempts=row.attempts)


def _lock_limits(conn) -> None:
    """Let one caller at a time count actions and record one."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LIMITS_LOCK_KEY})")


def _wait_for(conn, matching, limit: int, window: dt.timedelta, stamp: dt.datetime) -> int | None:
    """Seconds until one more action ``matching`` may be recorded, with at
    most ``limit`` of them received within ``window`` before ``stamp``;
    None when one may be now."""
    a = actions_table
    oldest_counted = conn.scalar(select(a.c.received_at).where(matching, a.c.received_at >= stamp - window)
                                 .order_by(a.c.received_at.desc()).offset(limit - 1).limit(1))
    if oldest_counted is None:
        return None
    return max(1, int((as_utc(oldest_counted) + window - stamp).total_seconds()) + 1)


def _pending(conn, subscriber_id: int | None, kinds: Iterable[ReaderActionKind]) -> list[ReaderAction]:
    """The actions of ``kinds`` about the reader (None: about no reader)
    still to apply, oldest first."""
    a = actions_table
    reader = a.c.subscriber_id.is_(None) if subscriber_id is None else a.c.subscriber_id == subscriber_id
    query = select(a).where(reader, a.c.kind.in_(list(kinds)), a.c.done_at.is_(None)).order_by(a.c.id)
    return [_action(r) for r in conn.execute(query)]


class Inbox:
    """The reader-action part of :class:`newsletter.store.Store`."""

    def record_action(self, payload: ActionPayload, *, subscriber_id: int | None = None, email: str | None = None,
                      claim: bool = False) -> int:
        """Record a reader action to apply, of the kind of its ``payload``
        (see ``actions_table``), and return its id. With ``claim``, the
        caller is the one to apply it, for the next :data:`CLAIM_SECONDS`
        (then anyone may)."""
        stamp = self.clock()
        with self.inbox.begin() as conn:
            return conn.execute(insert(actions_table).values(
                kind=payload.kind, subscriber_id=subscriber_id, email_key=email.lower() if email else None,
                payload=payload.to_json(), received_at=stamp, attempts=0,
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
            _lock_limits(conn)
            signups = a.c.kind == ReaderActionKind.SIGNUP
            if (_wait_for(conn, signups & (a.c.email_key == key), per_address_per_day, dt.timedelta(days=1), stamp)
                    or _wait_for(conn, signups & (a.c.client == client), per_client_per_hour, dt.timedelta(hours=1),
                                 stamp)):
                return False
            payload = SignupPayload(email.strip(), name, tuple(interests), frequency)
            conn.execute(insert(a).values(kind=payload.kind, email_key=key, client=client, received_at=stamp,
                                          attempts=0, payload=payload.to_json()))
        return True

    def record_reader_action(self, payload: ActionPayload, *, subscriber_id: int, client: str | None,
                             limits: ActionLimits, unchanged: Callable[[list[ReaderAction]], bool]) -> int | None:
        """Record a reader's action, of the kind of its ``payload`` (one of
        ``limits.kinds``), from ``client`` and return its id, claimed by the
        caller as :meth:`record_action` with ``claim`` does; unless

        - nothing would change: ``unchanged``, given the reader's actions
          of that kind still to apply (oldest first; it reads the store for
          the rest), says so. Then nothing is recorded and None returned;
        - a limit of ``limits`` is reached: raises :class:`RateLimited`
          with the seconds to wait, and nothing is recorded.

        Checking and recording are one atomic step (one caller at a time),
        so parallel requests can neither exceed a limit nor record the same
        change twice. ``client`` (None: not counted) is kept to its first
        64 characters."""
        a = actions_table
        client = client[:64] if client is not None else None
        stamp = self.clock()
        counted = a.c.kind.in_(list(limits.kinds))
        with self.inbox.begin() as conn:
            _lock_limits(conn)
            if unchanged(_pending(conn, subscriber_id, (payload.kind,))):
                return None
            if len(_pending(conn, subscriber_id, limits.kinds)) >= limits.max_pending:
                raise RateLimited(BUSY_RETRY_SECONDS)
            wait = _wait_for(conn, counted & (a.c.subscriber_id == subscriber_id), limits.per_reader, limits.window,
                             stamp)
            if wait is None and client is not None:
                wait = _wait_for(conn, counted & (a.c.client == client), limits.per_client, limits.window, stamp)
            if wait is not None:
                raise RateLimited(wait)
            return conn.execute(insert(a).values(
                kind=payload.kind, subscriber_id=subscriber_id, client=client, payload=payload.to_json(),
                received_at=stamp, attempts=0, claimed_until=stamp + dt.timedelta(seconds=CLAIM_SECONDS),
            )).inserted_primary_key[0]

    def queue_lookups(self, arxiv_ids: Iterable[str], *, subscriber_id: int | None = None,
                      max_pending: int | None = None) -> list[str]:
        """Queue the papers ``arxiv_ids`` to be looked up on arXiv for the
        reader (None: for no reader), each once: one already waiting for
        them is not queued again; return those queued. For a reader, the
        ids are all they ask for now: their waiting lookups of other papers
        are dropped, and at most ``max_pending`` of theirs wait at once
        (those being looked up right now aside)."""
        a = actions_table
        wanted = list(dict.fromkeys(arxiv_ids))
        stamp = self.clock()
        with self.inbox.begin() as conn:
            _lock_limits(conn)
            waiting = _pending(conn, subscriber_id, (ReaderActionKind.FETCH_PAPER,))
            busy = set(conn.scalars(select(a.c.id).where(a.c.id.in_([action.id for action in waiting]),
                                                          a.c.claimed_until >= stamp)))
            if subscriber_id is not None:
                dropped = [action.id for action in waiting
                           if action.payload.arxiv_id not in wanted and action.id not in busy]
                if dropped:
                    conn.execute(update(a).where(a.c.id.in_(dropped)).values(done_at=stamp,
                                                                              outcome="no longer asked for"))
                waiting = [action for action in waiting if action.id not in dropped]
            asked = {action.payload.arxiv_id for action in waiting}
            queued = [arxiv_id for arxiv_id in wanted if arxiv_id not in asked]
            if max_pending is not None:
                queued = queued[:max(0, max_pending - sum(action.id not in busy for action in waiting))]
            for payload in map(FetchPaperPayload, queued):
                conn.execute(insert(a).values(kind=payload.kind, subscriber_id=subscriber_id, received_at=stamp,
                                              attempts=0, payload=payload.to_json()))
        return queued

    def due_lookups(self, limit: int) -> list[ReaderAction]:
        """Return up to ``limit`` waiting lookups of papers on arXiv that no
        one is doing and that are not waiting for a retry, in turn by
        reader: each reader's oldest, then each one's second, and so on (a
        reader who asked for many papers never holds up one who asked for
        one)."""
        a = actions_table
        stamp = self.clock()
        turn = func.row_number().over(partition_by=a.c.subscriber_id, order_by=a.c.id).label("turn")
        due = (select(a, turn).where(a.c.done_at.is_(None), a.c.kind == ReaderActionKind.FETCH_PAPER,
                                     a.c.claimed_until.is_(None) | (a.c.claimed_until < stamp),
                                     a.c.not_before.is_(None) | (a.c.not_before <= stamp))
               .subquery())
        query = select(due).order_by(due.c.turn, due.c.id).limit(limit)
        with self.inbox.connect() as conn:
            return [_action(r) for r in conn.execute(query)]

    def pending_actions(self, subscriber_id: int, kinds: Iterable[ReaderActionKind]) -> list[ReaderAction]:
        """Return the reader's actions of ``kinds`` not applied yet, oldest
        first (what a page shows on top of what is stored)."""
        a = actions_table
        query = (select(a).where(a.c.subscriber_id == subscriber_id, a.c.kind.in_(list(kinds)),
                                 a.c.done_at.is_(None)).order_by(a.c.id))
        with self.inbox.connect() as conn:
            return [_action(r) for r in conn.execute(query)]

    def due_actions(self, kinds: Iterable[ReaderActionKind], limit: int = 100) -> list[ReaderAction]:
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
                target, a.c.id < action_id, a.c.done_at.is_(None), a.c.kind.not_in(BACKGROUND_KINDS))) > 0

    def pending_status(self, subscriber_id: int) -> str | None:
        """The status the reader's latest unapplied unsubscribe (or
        resubscribe) will give them, or None when there is none."""
        a = actions_table
        with self.inbox.connect() as conn:
            kind = conn.scalar(select(a.c.kind).where(
                a.c.subscriber_id == subscriber_id, a.c.done_at.is_(None),
                a.c.kind.in_((ReaderActionKind.UNSUBSCRIBE, ReaderActionKind.RESUBSCRIBE)))
                .order_by(a.c.id.desc()).limit(1))
        return {ReaderActionKind.UNSUBSCRIBE: SubscriberStatus.UNSUBSCRIBED,
                ReaderActionKind.RESUBSCRIBE: SubscriberStatus.ACTIVE}.get(kind)

    def _pending_unsubscribes(self, ids: list[int]) -> set[int]:
        """Those of ``ids`` with an unsubscribe recorded but not yet applied."""
        with self.inbox.connect() as conn:
            return set(execute_expanded(conn, _UNSUBSCRIBING, ids=ids).scalars())

    def purge_actions(self, older_than: dt.timedelta = dt.timedelta(days=2),
                      others_older_than: dt.timedelta = dt.timedelta(hours=1)) -> int:
        """Delete applied sign-ups older than ``older_than`` (at least a
        day: they count towards the daily limit) and other applied actions
        older than ``others_older_than``. Returns how many."""
        a = actions_table
        stamp = self.clock()
        signups = stamp - max(older_than, dt.timedelta(days=1))
        with self.inbox.begin() as conn:
            return conn.execute(a.delete().where(
                a.c.done_at.is_not(None),
                ((a.c.kind == ReaderActionKind.SIGNUP) & (a.c.received_at < signups))
                | ((a.c.kind != ReaderActionKind.SIGNUP) & (a.c.received_at < stamp - others_older_than)))).rowcount
