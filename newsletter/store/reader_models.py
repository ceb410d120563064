"""Readers' models of their votes (weights kept with the version of the
features they weigh, and whether they are due to be fitted again), and the
votes a reader asked us to forget, kept :data:`FORGOTTEN_DAYS` for an undo."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import bindparam, delete, insert, or_, select, update
from sqlalchemy.engine import Connection

from newsletter.core.models import Profile
from newsletter.store.engine import as_utc, execute_expanded
from newsletter.store.profiles import SIGNAL_VOTES, Profiles, mark_model_due, put_profile
from newsletter.store.schema import appearances_table, forgotten_votes_table, reader_models_table, votes_table

# How long forgotten votes can be brought back ("Forget my votes", undo).
FORGOTTEN_DAYS = 30
# The days around a reader's votes whose other papers are read as
# "shown, not rated" (see :meth:`ReaderModels.shown_unrated`).
SHOWN_DAYS = 10

# The read of every page of a send, built once: the ids are bound per
# execution, where ``in_(list)`` makes and checks a parameter per value.
_MODELS_OF = select(reader_models_table.c.subscriber_id, reader_models_table.c.weights).where(
    reader_models_table.c.subscriber_id.in_(bindparam("ids", expanding=True)),
    reader_models_table.c.features == bindparam("features"), reader_models_table.c.weights.is_not(None))


@dataclass(frozen=True)
class StoredModel:
    """A reader's stored model: the ``features`` version its ``weights``
    weigh (None: not fitted, too few votes), whether it is ``due`` to be
    fitted again, and when it was."""

    due: bool
    features: str | None
    weights: bytes | None
    fitted_at: dt.datetime | None
    shaping: dict | None  # what the preferences page shows (see newsletter.picks.reader_model)


@dataclass(frozen=True)
class Forgotten:
    """A reader's forgotten votes: how many, and when they were forgotten."""

    count: int
    at: dt.datetime


class ReaderModels:
    """The reader-model part of :class:`newsletter.store.Store`."""

    def reader_models(self, subscriber_ids: Iterable[int], features: str) -> dict[int, bytes]:
        """Return ``{subscriber id: weights}`` of those of ``subscriber_ids``
        with a model fitted on ``features`` (one of other features is no
        use: ignored until fitted again); one read per 500 readers."""
        ids = list(subscriber_ids)
        found: dict[int, bytes] = {}
        with self.reader.connect() as conn:
            for start in range(0, len(ids), 500):
                found.update(execute_expanded(conn, _MODELS_OF, ids=ids[start:start + 500], features=features).all())
        return found

    def reader_model(self, subscriber_id: int) -> StoredModel | None:
        """Return the reader's stored model (None: they never voted)."""
        m = reader_models_table
        with self.reader.connect() as conn:
            row = conn.execute(select(m).where(m.c.subscriber_id == subscriber_id)).first()
        return None if row is None else StoredModel(bool(row.due), row.features, row.weights,
                                                   as_utc(row.fitted_at) if row.fitted_at else None,
                                                   json.loads(row.shaping) if row.shaping else None)

    def models_due(self, features: str, limit: int = 50) -> list[tuple[int, dt.datetime]]:
        """Return up to ``limit`` readers whose model is due (their votes
        changed) or fitted on other ``features``, oldest change first, each
        with the time of their last change (to give back to
        :meth:`save_reader_model`)."""
        m = reader_models_table
        query = (select(m.c.subscriber_id, m.c.changed_at)
                 .where(or_(m.c.due.is_(True), (m.c.features.is_not(None)) & (m.c.features != features)))
                 .order_by(m.c.changed_at, m.c.subscriber_id).limit(limit))
        with self.reader.connect() as conn:
            return [(row.subscriber_id, row.changed_at) for row in conn.execute(query)]

    def save_reader_model(self, subscriber_id: int, changed_at: dt.datetime, features: str | None,
                          weights: bytes | None, shaping: dict | None = None) -> bool:
        """Store the reader's model (``weights`` None: too few votes for
        one) and what it shows of them (``shaping``, JSON-able), fitted on
        ``features`` from their votes as they were at
        ``changed_at``; returns False, storing nothing, when their votes
        changed since (it stays due)."""
        m = reader_models_table
        with self._writing() as conn:
            return bool(conn.execute(update(m).where(m.c.subscriber_id == subscriber_id, m.c.changed_at == changed_at)
                                     .values(due=False, features=features if weights is not None else None,
                                             weights=weights, fitted_at=self.clock(),
                                             shaping=json.dumps(shaping, ensure_ascii=False) if shaping else None)
                                     ).rowcount)

    def shown_unrated(self, subscriber_id: int, limit_days: int = SHOWN_DAYS) -> list[str]:
        """Return the keys of the papers shown to the reader that they did
        not rate: those of the (last ``limit_days``) days on which the papers
        they rated appeared, in no particular order."""
        v, a = votes_table, appearances_table
        with self.reader.connect() as conn:
            rated = set(conn.scalars(select(v.c.paper_key).where(v.c.subscriber_id == subscriber_id)))
            if not rated:
                return []
            days = sorted(set(conn.scalars(select(a.c.date).where(a.c.paper_key.in_(list(rated))))))[-limit_days:]
            shown = conn.scalars(select(a.c.paper_key).where(a.c.date.in_(days))) if days else []
            return sorted(set(shown) - rated)

    # ---------------------------------------------------------------- forgetting

    def forget_votes(self, subscriber_id: int, quick: bool = False) -> int:
        """Forget the reader's votes: they no longer count (not in their
        profile, not shown) but are kept :data:`FORGOTTEN_DAYS` for
        :meth:`restore_votes` (only the last forgetting: those forgotten
        before are dropped); their model is due. Returns how many were
        forgotten. Raises :class:`StoreBusy` when ``quick`` and the
        database is held."""
        v, f = votes_table, forgotten_votes_table
        stamp = self.clock()
        with self._writing(quick) as conn:
            rows = conn.execute(select(v).where(v.c.subscriber_id == subscriber_id)).all()
            if not rows:
                return 0
            self._purge_forgotten(conn, stamp)
            conn.execute(delete(f).where(f.c.subscriber_id == subscriber_id))
            conn.execute(insert(f), [dict(subscriber_id=subscriber_id, paper_key=r.paper_key, vote=r.vote,
                                          edition=r.edition, at=r.at, forgotten_at=stamp) for r in rows])
            conn.execute(delete(v).where(v.c.subscriber_id == subscriber_id))
            self._votes_to_profile(conn, subscriber_id, stamp)
        return len(rows)

    def restore_votes(self, subscriber_id: int, quick: bool = False) -> int:
        """Bring back the reader's forgotten votes (of the last
        :data:`FORGOTTEN_DAYS`), except on papers they voted on since;
        their model is due. Returns how many came back. Raises
        :class:`StoreBusy` when ``quick`` and the database is held."""
        v, f = votes_table, forgotten_votes_table
        stamp = self.clock()
        with self._writing(quick) as conn:
            self._purge_forgotten(conn, stamp)
            rows = conn.execute(select(f).where(f.c.subscriber_id == subscriber_id)).all()
            if not rows:
                return 0
            voted = set(conn.scalars(select(v.c.paper_key).where(v.c.subscriber_id == subscriber_id)))
            back = [dict(subscriber_id=subscriber_id, paper_key=r.paper_key, vote=r.vote, edition=r.edition, at=r.at)
                    for r in rows if r.paper_key not in voted]
            if back:
                conn.execute(insert(v), back)
            conn.execute(delete(f).where(f.c.subscriber_id == subscriber_id))
            self._votes_to_profile(conn, subscriber_id, stamp)
        return len(back)

    def forgotten(self, subscriber_id: int) -> Forgotten | None:
        """Return the reader's forgotten votes that can still be brought
        back (None: none)."""
        f = forgotten_votes_table
        since = self.clock() - dt.timedelta(days=FORGOTTEN_DAYS)
        with self.reader.connect() as conn:
            rows = conn.execute(select(f.c.forgotten_at).where(f.c.subscriber_id == subscriber_id,
                                                               f.c.forgotten_at > since)).all()
        return Forgotten(len(rows), as_utc(rows[0].forgotten_at)) if rows else None

    def purge_forgotten_votes(self) -> int:
        """Drop the votes forgotten more than :data:`FORGOTTEN_DAYS` ago;
        return how many."""
        with self._writing() as conn:
            return self._purge_forgotten(conn, self.clock())

    @staticmethod
    def _purge_forgotten(conn: Connection, stamp: dt.datetime) -> int:
        f = forgotten_votes_table
        return conn.execute(delete(f).where(f.c.forgotten_at <= stamp - dt.timedelta(days=FORGOTTEN_DAYS))).rowcount

    def _votes_to_profile(self, conn: Connection, subscriber_id: int, stamp: dt.datetime) -> None:
        """Make the profile's liked and disliked lists the reader's votes
        (newest first, as :meth:`Profiles.record_vote` keeps them) and mark
        their model due, inside the caller's transaction."""
        v = votes_table
        rows = conn.execute(select(v.c.paper_key, v.c.vote).where(v.c.subscriber_id == subscriber_id)
                            .order_by(v.c.at.desc(), v.c.paper_key)).all()
        stored = Profiles._current(conn, subscriber_id)
        current = stored or Profile(subscriber_id)
        liked = tuple(r.paper_key for r in rows if r.vote > 0)[:SIGNAL_VOTES]
        disliked = tuple(r.paper_key for r in rows if r.vote < 0)[:SIGNAL_VOTES]
        put_profile(conn, Profile(subscriber_id, current.interests, current.authors, current.categories,
                                  current.seeds, liked, disliked, current.picks, current.rest),
                    exists=stored is not None, stamp=stamp)
        mark_model_due(conn, subscriber_id, stamp)
