"""The papers of an edition built from the store: a day's stored batch, or a
week's (the seven days ending on the edition's date), deduplicated and
ranked by the week's community signal."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import NamedTuple

from newsletter.core.models import Batch, Edition, EditionKind
from newsletter.store import Ledger, Store


class _Week(NamedTuple):
    """One paper's week: its best upvotes (None: never counted), the days
    it was on the list, its best rank and its first day (what orders the
    weekly edition)."""

    upvotes: int | None
    days: int
    best_rank: int
    first_day: dt.date


def edition_batch(store: Store, edition: Edition) -> Batch:
    """Return ``edition``'s papers as the store has them, in the edition's
    order, with the days that have no stored batch (``missing_days``).

    A daily edition is its day's stored batch, each paper with that day's
    upvotes. A weekly edition has each paper of its seven days once, with
    the most upvotes it had that week, ordered by those upvotes, then by the
    days it was on the list, then by its best rank and its first day; once
    its send has begun, the papers and order it was stored with. The batch
    has no papers when nothing of those days is stored.
    """
    seen = store.appearances(edition.first_date, edition.date)
    week: dict[str, _Week] = {}
    for day, rank, key, votes in seen:
        before = week.get(key)
        if before is None:
            week[key] = _Week(votes, 1, rank, day)
        else:
            best = votes if before.upvotes is None else before.upvotes if votes is None else max(before.upvotes, votes)
            week[key] = _Week(best, before.days + 1, min(before.best_rank, rank), before.first_day)
    if edition.kind == EditionKind.DAILY:
        order = [key for _day, _rank, key, _votes in seen]
    elif Ledger(store, edition).started():
        # Its send has begun: the papers it went out with, in their order
        # (positions are what picks and 👍/👎 links name), whatever was
        # stored for its days since.
        order = store.weekly_paper_keys(edition.date)
    else:
        order = sorted(week, key=lambda k: (-(week[k].upvotes or 0), -week[k].days, week[k].best_rank,
                                            week[k].first_day))
    stored = store.papers(order)
    papers = tuple(dataclasses.replace(stored[key], upvotes=week[key].upvotes if key in week else None)
                   for key in order if key in stored)
    days = {day for day, *_ in seen}
    where = f"the papers stored for {edition.describe()}"
    return Batch(date=edition.date, papers=papers, source=where, kind=edition.kind,
                 missing_days=tuple(day for day in edition.days if day not in days))
