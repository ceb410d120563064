"""The papers picked for each reader in each edition (see newsletter.picks.ranking)."""

from __future__ import annotations

import datetime as dt
from typing import Iterable

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from newsletter.core.models import DeliveryStatus, Pick, Reason
from newsletter.store.engine import dialect_insert, execute_expanded, insert_many
from newsletter.store.papers import canonical_keys, keys_and_names
from newsletter.store.schema import deliveries_table, picked_papers_table, picks_table

# A paper picked for a reader is not picked for them again within this window.
REPEAT_WINDOW = dt.timedelta(days=30)
# Ledger statuses of an edition that reached (or may have reached) the reader.
_WENT_OUT = (DeliveryStatus.SENT, DeliveryStatus.UNKNOWN, DeliveryStatus.PENDING)
# A send stores its readers' picks with every call (see engine.insert_many).
_PICK_COLUMNS = ("edition", "subscriber_id", "position", "paper_key", "paper_rank", "score", "why_kind", "why_subject")
# Which of some papers the editions of a window picked for anyone, and in
# which editions: asked once per page of readers, before their picks.
_PICKED_IN_WINDOW = select(picked_papers_table.c.paper_key, picked_papers_table.c.edition).where(
    picked_papers_table.c.paper_key.in_(bindparam("keys", expanding=True)),
    picked_papers_table.c.edition >= bindparam("since"), picked_papers_table.c.edition < bindparam("day"),
)
# The readers' picks of those papers in those editions that went out to
# them (or may have): a lookup per reader and edition by the primary key,
# not a read of each reader's month of picks. Built once (see recently_picked).
_PICKED_FOR = (
    select(picks_table.c.subscriber_id, picks_table.c.paper_key)
    .select_from(picks_table.join(deliveries_table, (deliveries_table.c.issue_date == picks_table.c.edition)
                                  & (deliveries_table.c.subscriber_id == picks_table.c.subscriber_id)))
    .where(picks_table.c.edition.in_(bindparam("editions", expanding=True)),
           picks_table.c.subscriber_id.in_(bindparam("ids", expanding=True)),
           picks_table.c.paper_key.in_(bindparam("keys", expanding=True)), deliveries_table.c.status.in_(_WENT_OUT))
)
# Which of some readers have picks of an edition stored.
_STORED_FOR = select(picks_table.c.subscriber_id).where(
    picks_table.c.edition == bindparam("edition"), picks_table.c.subscriber_id.in_(bindparam("ids", expanding=True))
).distinct()


def write_picks(conn: Connection, edition: str, picks: dict[int, list[Pick]],
                stored_keys: dict[str, str] | None = None, stored_before: bool = True,
                recorded: frozenset[str] | set[str] = frozenset()) -> set[str]:
    """Store each reader's ``picks`` of ``edition`` inside the caller's
    transaction, unless that reader's picks of this edition are stored
    already (a rerun sends the same picks; ``stored_before`` False: the
    caller knows none of theirs is, and they are not looked for), and the
    edition's picked papers (``picked_papers``) but those in ``recorded``,
    which the caller knows are stored (written by a transaction of theirs
    that committed).

    A paper picked by a key the store knows as an alias (see
    ``papers.canonical_keys``) is stored by its paper's key;
    ``stored_keys``, a dict kept by the caller across calls, remembers
    each key's. Returns the stored keys of the papers picked here, for
    the caller's ``recorded`` once the transaction commits."""
    if not picks:
        return set()
    known = set(execute_expanded(conn, _STORED_FOR, edition=edition, ids=list(picks)).scalars()) if stored_before else set()
    same = {} if stored_keys is None else stored_keys
    new = {pick.key for chosen in picks.values() for pick in chosen if pick.key not in same}
    if new:
        same.update({key: key for key in new})
        same.update(canonical_keys(conn, new))
    rows = [
        (edition, subscriber_id, n, same[pick.key], pick.position, float(pick.score), pick.reason.kind,
         pick.reason.stored())
        for subscriber_id, chosen in picks.items() if subscriber_id not in known
        for n, pick in enumerate(chosen)
    ]
    if rows:
        insert_many(conn, picks_table, _PICK_COLUMNS, rows)
    picked = {same[pick.key] for chosen in picks.values() for pick in chosen}
    if picked - recorded:
        # Another run may have stored some (a rerun, its own send): kept as they are.
        conn.execute(dialect_insert(conn, picked_papers_table).on_conflict_do_nothing(),
                     [{"edition": edition, "paper_key": key} for key in sorted(picked - recorded)])
    return picked


class PickRecords:
    """The picks part of :class:`newsletter.store.Store`."""

    def has_picks(self, edition: str) -> bool:
        """Whether any reader's picks of ``edition`` are stored (a rerun)."""
        with self.reader.connect() as conn:
            return conn.scalar(select(picks_table.c.edition).where(picks_table.c.edition == edition).limit(1)) is not None

    def picks_of(self, edition: str, subscriber_ids: Iterable[int]) -> dict[int, list[Pick]]:
        """Return the stored picks of ``edition`` of each of
        ``subscriber_ids`` that has some, in pick order."""
        p = picks_table
        ids = list(subscriber_ids)
        found: dict[int, list[Pick]] = {}
        with self.reader.connect() as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(select(p).where(p.c.edition == edition, p.c.subscriber_id.in_(ids[start:start + 500]))
                                    .order_by(p.c.subscriber_id, p.c.position))
                for r in rows:
                    found.setdefault(r.subscriber_id, []).append(
                        Pick(r.paper_rank, r.paper_key, r.score, Reason.from_stored(r.why_kind, r.why_subject)))
        return found

    def recently_picked(self, day: dt.date, paper_keys: Iterable[str],
                        subscriber_ids: Iterable[int]) -> dict[int, set[str]]:
        """Return ``{subscriber id: keys}``: which of ``paper_keys`` were
        picked for which of ``subscriber_ids`` in the :data:`REPEAT_WINDOW`
        before ``day``, in an edition that went out to them (or may have),
        under any key of the paper (see ``papers.canonical_keys``)."""
        since = (day - REPEAT_WINDOW).isoformat()
        ids = list(subscriber_ids)
        found: dict[int, set[str]] = {}
        with self.reader.connect() as conn:
            keys, named = keys_and_names(conn, paper_keys)
            picked = execute_expanded(conn, _PICKED_IN_WINDOW, keys=keys, since=since,
                                      day=day.isoformat()).all() if keys else []
            # Most days none of the day's papers was picked for anyone in the
            # window (a day's papers are new): then no reader's picks are read.
            if not picked:
                return found
            keys = sorted({key for key, _edition in picked})
            editions = sorted({edition for _key, edition in picked})
            for start in range(0, len(ids), 500):
                rows = execute_expanded(conn, _PICKED_FOR, editions=editions, ids=ids[start:start + 500], keys=keys)
                for subscriber_id, paper_key in rows:
                    found.setdefault(subscriber_id, set()).update(named.get(paper_key, ()))
        return found
