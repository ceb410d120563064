"""Personal picks for one edition: which papers go at the top of each
reader's email, and why; computed for readers in chunks, from their profiles
(see newsletter.picks.ranking) and their models of votes
(newsletter.picks.reader_model), never a paper they rated or were picked in
the last 30 days (see newsletter.store.picks), nor one that says a phrase
they muted (see newsletter.picks.muting), which their top cards leave out
too when they chose so."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Sequence

from newsletter.core.models import Muting, Paper, Pick, PicksState, Profile, RestOfDay, paper_key
from newsletter.picks import reader_model
from newsletter.picks.muting import MutedPapers
from newsletter.picks.ranking import EditionIndex
from newsletter.store import Store


@dataclass(frozen=True)
class ReaderPicks:
    """What one reader's email says of picks: its ``state``, the ``picks``
    themselves when it is ``PicksState.PICKS``, how many papers matching
    them were ``held`` back when it is ``PicksState.HELD``, how it
    shows the ``rest`` of the day (the papers neither picked nor on top),
    and the edition positions of the papers ``muted`` on its top cards (a
    phrase the reader muted, for a reader who hides them there too)."""

    state: PicksState
    picks: tuple[Pick, ...] = ()
    held: int = 0
    rest: RestOfDay = RestOfDay.TITLES
    muted: frozenset[int] = frozenset()


def reader_picks(picks: Sequence[Pick], profile: Profile | None = None, held: int = 0,
                 muted: frozenset[int] = frozenset()) -> ReaderPicks:
    """Return what a reader's email says of picks, given the papers picked
    for them in the edition (stored or ranked now), their ``profile`` and
    how many papers matching them were ``held`` back, picked for them in
    the repeat window (both only looked at when nothing was picked): their
    picks when there are any, else nothing when they want no picks
    (``OFF``), an invitation when they told us nothing to pick by
    (``INVITE``), that what matched was picked for them recently
    (``HELD``), else that nothing matched (``NONE``); with the rest of the
    day as ``profile`` has it (every title without one), and the papers
    ``muted`` on its top cards."""
    rest = profile.rest if profile is not None else RestOfDay.TITLES
    if picks:
        return ReaderPicks(PicksState.PICKS, tuple(picks), rest=rest, muted=muted)
    if profile.picks <= 0:
        return ReaderPicks(PicksState.OFF, rest=rest, muted=muted)
    if profile.is_empty:
        return ReaderPicks(PicksState.INVITE, rest=rest, muted=muted)
    if held:
        return ReaderPicks(PicksState.HELD, held=held, rest=rest, muted=muted)
    return ReaderPicks(PicksState.NONE, rest=rest, muted=muted)


def muted_on_top(papers: Sequence[Paper], profile: Profile) -> frozenset[int]:
    """Return the positions of the ``papers`` that ``profile``'s muted
    phrases hide from its top cards: none unless it chose :data:`Muting.TOP`."""
    if not profile.muted or profile.muting != Muting.TOP:
        return frozenset()
    return MutedPapers(papers).of(profile)


@dataclass
class EditionPicks:
    """Picks for the readers of one edition (``edition`` as the ledger names
    it, of ``day``, whose papers are ``papers`` in the edition's order; only
    the first ``pickable`` of them are picked, all when None: see
    ``Issue.pickable``)."""

    store: Store
    edition: str
    day: dt.date
    papers: Sequence[Paper]
    pickable: int | None = None

    def __post_init__(self) -> None:
        # The papers that can be picked: what the picks and votes of each
        # reader are compared with.
        self._keys = [paper_key(p) for p in self.papers[: self.pickable]]
        self._position = {key: i for i, key in enumerate(self._keys)}
        # Built for the first reader who has something to pick by: a list
        # where nobody does never loads the ranking's libraries and model.
        self._index: EditionIndex | None = None
        # The papers readers' muted phrases hide from their top cards, made
        # for the first reader who chose so (a phrase looked for once).
        self._muted: MutedPapers | None = None
        # Picks stored for this edition belong to a run that stopped: reuse
        # them. A first run has none, and skips looking for each reader's.
        self._rerun = self.store.has_picks(self.edition)

    @property
    def index(self) -> EditionIndex:
        """The edition's papers, indexed for ranking (built on first use)."""
        if self._index is None:
            self._index = EditionIndex(self.papers[: self.pickable], lookup=self.store.papers)
        return self._index

    def prepare(self) -> None:
        """Build the ranking's index now when some reader may need it (a
        profile with picks exists), rather than on the first reader: a run
        sending several editions does this work before its first message,
        not between its editions."""
        if self._index is None and self.store.any_profiles():
            _ = self.index

    def for_readers(self, subscriber_ids: Iterable[int]) -> dict[int, ReaderPicks]:
        """Return each reader's picks: those stored for this edition (a
        rerun sends the same picks), else ranked now. A reader left with
        no pick because every paper matching them was picked for them in
        the repeat window is told how many (``PicksState.HELD``). Each
        carries the reader's choice of the rest of the day as stored now
        (every title for a reader without a profile), and for a reader who
        hides muted papers from the top of the day too, those papers."""
        ids = list(subscriber_ids)
        stored = self.store.picks_of(self.edition, ids) if self._rerun else {}
        # Every reader's profile, those with stored picks too (for the rest
        # of the day): the same one read per chunk a first run makes.
        profiles = self.store.profiles(ids)
        wanted = [p for i, p in profiles.items() if i not in stored and p.picks > 0 and not p.is_empty]
        # Looked up per chunk, so that a million readers never sit in memory.
        ids_wanted = [p.subscriber_id for p in wanted]
        rated = self._positions(self.store.rated(self._keys, ids_wanted))
        recent = self._positions(self.store.recently_picked(self.day, self._keys, ids_wanted))
        never = {i: rated.get(i, set()) | recent.get(i, set()) for i in {*rated, *recent}}
        # Stored models of votes only: fitting is the web app's worker's (see reader_model).
        models = reader_model.load_weights(self.store, wanted)
        ranked = self.index.rank_many(wanted, never, models=models) if wanted else {}
        held = self._held(wanted, ranked, rated, recent, models)
        muted = self._muted_on_top(profiles.values())
        return {i: reader_picks(stored[i], profile, muted=muted.get(i, frozenset())) if i in stored
                else reader_picks(ranked.get(i, ()), profile, held.get(i, 0), muted.get(i, frozenset()))
                for i, profile in profiles.items()}

    def _muted_on_top(self, profiles: Iterable[Profile]) -> dict[int, frozenset[int]]:
        """Return ``{subscriber id: positions}``: the papers that the muted
        phrases of the readers who chose :data:`Muting.TOP` hide from
        their top cards (readers with none left out)."""
        hiding = [p for p in profiles if p.muted and p.muting == Muting.TOP]
        if not hiding:
            return {}
        if self._muted is None:
            self._muted = MutedPapers(self.papers)
        return self._muted.of_many(hiding)

    def _positions(self, keys_by_reader: dict[int, set[str]]) -> dict[int, set[int]]:
        """``keys_by_reader`` with each paper key as its edition position."""
        return {i: {self._position[k] for k in keys} for i, keys in keys_by_reader.items()}

    def _held(self, wanted: list[Profile], ranked: dict[int, list[Pick]], rated: dict[int, set[int]],
              recent: dict[int, set[int]], models: dict) -> dict[int, int]:
        """Return ``{subscriber id: count}`` for the ``wanted`` readers left
        with no pick in ``ranked`` who had papers picked for them recently
        (``recent``): how many of those papers they would have got as picks
        without the repeat window (ranked again, every match counted)."""
        empty = [p for p in wanted if not ranked.get(p.subscriber_id) and p.subscriber_id in recent]
        if not empty:
            return {}
        limit = max(len(recent[p.subscriber_id]) for p in empty)
        again = self.index.rank_many(empty, rated, limit=limit, models=models)
        counts = {i: sum(pick.position in recent[i] for pick in picks) for i, picks in again.items()}
        return {i: count for i, count in counts.items() if count}
