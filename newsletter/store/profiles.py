"""Readers' profiles (what they told us they read), their schedules (how
often they want the newsletter) and their votes."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, replace
from typing import Iterable

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection

from newsletter.core.models import Frequency, Muting, Profile, RestOfDay, Schedule
from newsletter.store.engine import as_utc, execute_expanded
from newsletter.store.papers import canonical_keys, keys_and_names
from newsletter.store.schema import papers_table, profiles_table, reader_models_table, subscribers_table, votes_table

# Votes kept in a profile as ranking signal, newest first (all are kept in
# the votes table, and a rated paper is never picked whatever its age).
SIGNAL_VOTES = 100


@dataclass(frozen=True)
class Vote:
    """One reader's 👍 (+1) or 👎 (-1) on a paper; ``title`` when the paper
    is stored."""

    paper_key: str
    vote: int
    edition: str
    at: object
    title: str | None


_LISTS = ("interests", "authors", "categories", "seeds", "liked", "disliked", "muted")

# The reads of every page of a send, built once: the ids (and keys) are bound
# per execution, where ``in_(list)`` makes and checks a parameter per value.
_PROFILES_OF = select(profiles_table.c.subscriber_id, profiles_table.c.lists, profiles_table.c.picks,
                      profiles_table.c.rest, profiles_table.c.muting).where(
    profiles_table.c.subscriber_id.in_(bindparam("ids", expanding=True)))
_VOTED_ON = select(votes_table.c.subscriber_id, votes_table.c.paper_key).where(
    votes_table.c.subscriber_id.in_(bindparam("ids", expanding=True)),
    votes_table.c.paper_key.in_(bindparam("keys", expanding=True)))

# The stored choices as members, by a dict lookup: a tenth of calling the
# enum, twice for every reader of a send.
_RESTS = {str(member): member for member in RestOfDay}
_MUTINGS = {str(member): member for member in Muting}


def _profile(subscriber_id: int, lists: dict, picks: int, rest: str, muting: str) -> Profile:
    """Return the profile stored as these columns of ``profiles`` (its
    ``lists`` decoded)."""
    get = lists.get
    # Spelled out: read for every reader of every send, this is the quickest.
    return Profile(subscriber_id, tuple(get("interests", ())), tuple(get("authors", ())),
                   tuple(get("categories", ())), tuple(get("seeds", ())), tuple(get("liked", ())),
                   tuple(get("disliked", ())), picks, _RESTS.get(rest) or RestOfDay(rest),
                   tuple(get("muted", ())), _MUTINGS.get(muting) or Muting(muting))


def profile_lists(profile: Profile) -> str:
    """The ``lists`` column of ``profile``: its non-empty lists as one JSON object."""
    return json.dumps({name: list(getattr(profile, name)) for name in _LISTS if getattr(profile, name)},
                      ensure_ascii=False, separators=(",", ":"))


class Profiles:
    """The profile and vote part of :class:`newsletter.store.Store`."""

    def profile(self, subscriber_id: int) -> Profile:
        """Return the reader's profile (an empty one with the default number
        of picks when they never set any)."""
        return self.profiles([subscriber_id])[subscriber_id]

    def profiles(self, subscriber_ids: Iterable[int]) -> dict[int, Profile]:
        """Return ``{subscriber id: Profile}`` for ``subscriber_ids``, in one
        read per 500 readers (readers without a profile get an empty one)."""
        ids = list(subscriber_ids)
        found: dict[int, Profile] = {}
        with self.reader.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                # Rows unpacked as tuples: their columns read by name would cost
                # a microsecond per reader.
                rows = execute_expanded(conn, _PROFILES_OF, ids=chunk).all()
                stored = {subscriber_id: _profile(subscriber_id, json.loads(lists), picks, rest, muting)
                          for subscriber_id, lists, picks, rest, muting in rows}
                for subscriber_id in chunk:
                    found[subscriber_id] = stored.get(subscriber_id) or Profile(subscriber_id)
        return found

    def any_profiles(self) -> bool:
        """Whether any reader wants picks and told us something to pick by
        (a profile row with picks; an empty one may count: it is cheap to
        be wrong that way)."""
        with self.reader.connect() as conn:
            return conn.scalar(select(profiles_table.c.subscriber_id).where(profiles_table.c.picks > 0).limit(1)) \
                is not None

    def save_profile(self, profile: Profile, quick: bool = False, schedule: Schedule | None = None) -> Profile:
        """Store what the reader told us (interests, authors, categories,
        seeds, number of picks, the rest of the day, muted phrases and where
        they hide papers), and their ``schedule`` when given, in one
        transaction; their votes stay as they are. Returns the stored
        profile. Raises :class:`StoreBusy` when ``quick`` and the database
        is held, and ValueError for a malformed schedule (see
        :meth:`set_schedule`)."""
        if schedule is not None:
            check_schedule(schedule)
        with self._writing(quick) as conn:
            current = self._current(conn, profile.subscriber_id)
            votes = current or Profile(profile.subscriber_id)
            merged = replace(profile, liked=votes.liked, disliked=votes.disliked)
            self._put(conn, merged, exists=current is not None)
            if current is not None and current.seeds != merged.seeds:  # seed papers count as 👍
                mark_model_due(conn, profile.subscriber_id, self.clock())
            if schedule is not None:
                put_schedule(conn, profile.subscriber_id, schedule)
        return merged

    def set_schedule(self, subscriber_id: int, schedule: Schedule, quick: bool = False) -> bool:
        """Store how often the reader wants the newsletter (read back as
        ``Subscriber.schedule``), in one short write. Returns whether the
        reader exists. Raises ValueError for a malformed schedule (a
        weekday outside 0..6, a frequency that is not one) and
        :class:`StoreBusy` when ``quick`` and the database is held."""
        check_schedule(schedule)
        with self._writing(quick) as conn:
            return put_schedule(conn, subscriber_id, schedule)

    def record_vote(self, subscriber_id: int, paper_key: str, vote: int, edition: str,
                    quick: bool = False) -> int | None:
        """Record the reader's ``vote`` (+1 or -1) on a paper, replacing an
        earlier one (idempotent); ``vote`` 0 removes their vote (undo).
        Returns the vote it replaced (None when there was none). Raises
        :class:`StoreBusy` when ``quick`` and the database is held."""
        if vote not in (-1, 0, 1):
            raise ValueError(f"a vote is +1, -1 or 0 (undo), not {vote!r}")
        v = votes_table
        with self._writing(quick) as conn:
            # A link of an email sent before the paper was found with an arXiv id.
            paper_key = canonical_keys(conn, [paper_key]).get(paper_key, paper_key)
            before = conn.scalar(select(v.c.vote).where(v.c.subscriber_id == subscriber_id,
                                                        v.c.paper_key == paper_key))
            if before == (vote or None):
                return before
            conn.execute(delete(v).where(v.c.subscriber_id == subscriber_id, v.c.paper_key == paper_key))
            if vote:
                conn.execute(insert(v).values(subscriber_id=subscriber_id, paper_key=paper_key, vote=vote,
                                              edition=edition, at=self.clock()))
            stored = self._current(conn, subscriber_id)
            current = stored or Profile(subscriber_id)
            liked = [k for k in current.liked if k != paper_key]
            disliked = [k for k in current.disliked if k != paper_key]
            (liked if vote > 0 else disliked if vote < 0 else []).insert(0, paper_key)
            updated = replace(current, liked=tuple(liked[:SIGNAL_VOTES]), disliked=tuple(disliked[:SIGNAL_VOTES]))
            self._put(conn, updated, exists=stored is not None)
            mark_model_due(conn, subscriber_id, self.clock())
        return before

    def votes(self, subscriber_id: int) -> list[Vote]:
        """Return the reader's votes, newest first, with the papers' titles."""
        v, p = votes_table, papers_table
        query = (select(v, p.c.title).select_from(v.outerjoin(p, p.c.key == v.c.paper_key))
                 .where(v.c.subscriber_id == subscriber_id).order_by(v.c.at.desc(), v.c.paper_key))
        with self.reader.connect() as conn:
            return [Vote(r.paper_key, r.vote, r.edition, as_utc(r.at), r.title) for r in conn.execute(query)]

    def rated(self, paper_keys: Iterable[str], subscriber_ids: Iterable[int]) -> dict[int, set[str]]:
        """Return ``{subscriber id: keys}``: which of ``paper_keys`` each of
        ``subscriber_ids`` voted on (those papers are never picked for them),
        a vote on a paper counting for every key of it (see
        ``papers.canonical_keys``)."""
        ids = list(subscriber_ids)
        found: dict[int, set[str]] = {}
        with self.reader.connect() as conn:
            keys, named = keys_and_names(conn, paper_keys)
            for start in range(0, len(ids), 500):
                rows = execute_expanded(conn, _VOTED_ON, ids=ids[start:start + 500], keys=keys).all()
                for subscriber_id, paper_key in rows:
                    found.setdefault(subscriber_id, set()).update(named[paper_key])
        return found

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _current(conn: Connection, subscriber_id: int) -> Profile | None:
        row = conn.execute(select(profiles_table).where(profiles_table.c.subscriber_id == subscriber_id)).first()
        return _profile(subscriber_id, json.loads(row.lists), row.picks, row.rest, row.muting) if row else None

    def _put(self, conn: Connection, profile: Profile, exists: bool) -> None:
        put_profile(conn, profile, exists, self.clock())


def put_profile(conn: Connection, profile: Profile, exists: bool, stamp) -> None:
    """Write ``profile`` inside the caller's transaction: an update when
    the reader's row ``exists``, else an insert."""
    values = dict(lists=profile_lists(profile), picks=profile.picks, rest=str(RestOfDay(profile.rest)),
                  muting=str(Muting(profile.muting)), updated_at=stamp)
    p = profiles_table
    if exists:
        conn.execute(update(p).where(p.c.subscriber_id == profile.subscriber_id).values(**values))
    else:
        conn.execute(insert(p).values(subscriber_id=profile.subscriber_id, **values))



def mark_model_due(conn: Connection, subscriber_id: int, stamp) -> None:
    """Inside the caller's transaction: the reader's votes (or seed papers)
    changed, so their model of votes is due to be fitted again (see
    ``newsletter.picks.reader_model``)."""
    m = reader_models_table
    if not conn.execute(update(m).where(m.c.subscriber_id == subscriber_id)
                        .values(due=True, changed_at=stamp)).rowcount:
        conn.execute(insert(m).values(subscriber_id=subscriber_id, due=True, changed_at=stamp))


def check_schedule(schedule: Schedule) -> None:
    """Raise ValueError unless ``schedule`` can be stored: a frequency, a
    weekday from 0 (Monday) to 6 or None, a date or None for the pause."""
    Frequency(schedule.frequency)
    weekday = schedule.weekday
    if weekday is not None and (type(weekday) is not int or not 0 <= weekday <= 6):
        raise ValueError(f"a weekday is 0 (Monday) to 6 (Sunday) or None, not {weekday!r}")
    if schedule.paused_until is not None and type(schedule.paused_until) is not dt.date:
        raise ValueError(f"a pause ends on a date, not {schedule.paused_until!r}")


def schedule_columns(schedule: Schedule) -> dict:
    """The ``subscribers`` columns of ``schedule``."""
    return dict(frequency=str(schedule.frequency), weekday=schedule.weekday,
                paused_until=schedule.paused_until.isoformat() if schedule.paused_until else None)


def put_schedule(conn: Connection, subscriber_id: int, schedule: Schedule) -> bool:
    """Write ``schedule`` inside the caller's transaction; return whether
    the reader exists."""
    s = subscribers_table
    return bool(conn.execute(update(s).where(s.c.id == subscriber_id).values(**schedule_columns(schedule))).rowcount)
