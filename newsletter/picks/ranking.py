"""Personal picks: which of an edition's papers each reader should see first.

A reader's profile (typed interests, followed authors, arXiv categories,
seed papers they like, and their 👍/👎 votes) is scored against the
edition's papers on two views of each paper's text (title, abstract, the
source's keywords):

- TF-IDF over word 1–2-grams (sublinear term frequency, English stop
  words), fitted on the edition: a phrase such as "concept erasure" matches
  the papers that use those words, rare words counting most;
- WordLlama's static 256-dimensional embeddings (the weights ship in its
  wheel and load with no network): they also see "erasure" near
  "unlearning", which the words alone miss.

The two similarities are added, the embeddings weighted :data:`EMBEDDING_WEIGHT`:
on the evaluation set (``bench/picks_eval.py``) the mix beat either alone.

The relevance of a paper for a reader is the best similarity to any of
their interests, seed papers and papers they liked, plus
:data:`AUTHOR_BOOST` when a followed author wrote it and
:data:`CATEGORY_BOOST` when it is in one of their categories, minus
:data:`DISLIKE_WEIGHT` times its similarity to the papers they disliked. A
paper is a pick only when its relevance reaches :data:`THRESHOLD` (no
filler); picks are ordered by relevance, the community's upvotes adding a
small prior (a tie-breaker, never a substitute). Papers the reader rated,
those picked for them recently (see the caller), and those that say a
phrase they muted (``newsletter.picks.muting``) are never picked.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from itertools import chain
from typing import Callable, Iterable, Sequence

import numpy as np

from newsletter.core.models import Paper, Pick, Profile, Reason, paper_key
from newsletter.picks.muting import MutedPapers

EMBEDDING_WEIGHT = 0.3
THRESHOLD = 0.15
AUTHOR_BOOST = 1.0
CATEGORY_BOOST = 0.08
DISLIKE_WEIGHT = 0.5
PRIOR_WEIGHT = 0.02
# A reader's model of their votes, its score standardized over the edition
# (see EditionIndex._add_models): tuned on bench/picks_eval.py's readers.
MODEL_WEIGHT = 0.1
# Texts embedded at a time: WordLlama pads each batch to its longest text, and
# 64 abstracts at once take 40 MB; 4 take 2 MB, no slower.
EMBED_BATCH = 4


def normalize_name(name: str) -> str:
    """An author's name for comparison: accents, case and spacing ignored."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w\s-]", " ", plain.casefold()).split())


_model = None
_model_lock = threading.Lock()


def _embedder():
    """The WordLlama model, loaded once per process from the weights in its
    wheel, never from the network."""
    global _model
    with _model_lock:
        if _model is None:
            from pathlib import Path

            # WordLlama calls logging.basicConfig(level=INFO) on import: every
            # library's INFO lines (boto3's "Found credentials", …) would go
            # to the operator's stderr. The logging set-up is put back.
            root = logging.getLogger()
            handlers, level = list(root.handlers), root.level
            try:
                import wordllama
            finally:
                root.handlers[:], root.level = handlers, level

            _model = wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
        return _model


def paper_text(paper: Paper) -> str:
    """The text a paper is matched on: title, abstract and keywords."""
    keywords = getattr(paper, "keywords", ()) or ()
    return " ".join((paper.title, paper.abstract, " ".join(keywords)))


@dataclass
class EditionIndex:
    """The papers of one edition, ready to be scored against many readers.

    ``lookup(keys)`` returns ``{key: Paper}`` for papers that are not in the
    edition (seed and voted papers of earlier days), from the store; a key
    it cannot resolve is ignored. Similarities to phrases and papers are
    computed once per edition and reused for every reader who shares them.
    """

    papers: Sequence[Paper]
    lookup: Callable[[Iterable[str]], dict[str, Paper]] = lambda keys: {}
    keys: list[str] = field(init=False)

    def __post_init__(self) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.keys = [paper_key(p) for p in self.papers]
        self._position = {key: i for i, key in enumerate(self.keys)}
        docs = [paper_text(p) for p in self.papers]
        self._tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, stop_words="english")
        self._words = self._tfidf.fit_transform(docs)
        self._vectors = _embedder().embed(docs, norm=True, batch_size=EMBED_BATCH)
        upvotes = np.array([p.upvotes or 0 for p in self.papers], dtype=float)
        self._prior = np.log1p(upvotes) / max(1.0, float(np.log1p(upvotes).max())) * PRIOR_WEIGHT
        self._by_author: dict[str, list[int]] = {}
        self._by_category: dict[str, list[int]] = {}
        for i, paper in enumerate(self.papers):
            for author in paper.authors:
                self._by_author.setdefault(normalize_name(author), []).append(i)
            for category in getattr(paper, "categories", ()) or ():
                self._by_category.setdefault(category.casefold(), []).append(i)
        # Similarity rows of phrases and papers (seeds, votes), computed once
        # per edition and shared by every reader; row 0 means "no signal".
        self._rows: list[np.ndarray] = [np.full(len(self.papers), -np.inf)]
        self._row_reasons: list[Reason | None] = [None]
        # The edition position of the paper a row stands for, -1 for none
        # (phrases, earlier papers): a reader's own papers are never picked.
        self._row_positions: list[int] = [-1]
        self._phrase_rows: dict[str, int] = {}
        self._paper_rows: dict[str, tuple[int, int] | None] = {}  # key -> its (seed, liked) rows
        self._seed_rows: dict[str, int] = {}  # the same, for the papers known, one dict per use
        self._liked_rows: dict[str, int] = {}
        self._stacked: np.ndarray | None = None

    # ---------------------------------------------------------------- similarities

    def _similarity(self, texts: list[str]) -> np.ndarray:
        words = (self._words @ self._tfidf.transform(texts).T).toarray()
        vectors = self._vectors @ _embedder().embed(texts, norm=True, batch_size=EMBED_BATCH).T
        return (words + EMBEDDING_WEIGHT * vectors).T  # one row per text

    def _add_row(self, scores: np.ndarray, reason: Reason, key: str | None = None) -> int:
        self._rows.append(scores)
        self._row_reasons.append(reason)
        self._row_positions.append(self._position.get(key, -1) if key else -1)
        return len(self._rows) - 1

    def prepare(self, profiles: Iterable[Profile]) -> None:
        """Compute, in bulk, the similarities ``profiles`` need that are not
        known yet (their phrases and the papers they point at): much faster
        than one at a time. :meth:`rank_many` calls it."""
        phrases, keys = set(), set()
        for profile in profiles:
            phrases.update(profile.interests)
            keys.update(profile.seeds, profile.liked, profile.disliked)
        phrases.difference_update(self._phrase_rows)
        keys.difference_update(self._paper_rows)
        if phrases:
            ordered = sorted(phrases)
            for phrase, row in zip(ordered, self._similarity(ordered)):
                self._phrase_rows[phrase] = self._add_row(row, Reason("interest", phrase))
        if keys:
            inside = {k: self.papers[self._position[k]] for k in keys if k in self._position}
            outside = self.lookup(sorted(keys - set(inside))) if keys - set(inside) else {}
            found = {**outside, **inside}
            ordered = sorted(found)
            if ordered:
                for key, row in zip(ordered, self._similarity([paper_text(found[k]) for k in ordered])):
                    title = found[key].title
                    # One row per way of knowing the paper, for the reason it gives.
                    self._paper_rows[key] = (self._add_row(row, Reason("seed", title), key),
                                             self._add_row(row, Reason("liked", title), key))
                    self._seed_rows[key], self._liked_rows[key] = self._paper_rows[key]
            for key in keys - set(found):
                self._paper_rows[key] = None  # unknown: ignored

    def _matrix(self) -> np.ndarray:
        """Every known similarity row, stacked (single precision: half the
        memory and time of the per-reader arrays); row 0 is -inf (no signal)."""
        if self._stacked is None or len(self._stacked) != len(self._rows):
            self._stacked = np.vstack(self._rows).astype(np.float32)
        return self._stacked

    # ---------------------------------------------------------------- ranking

    def rank(self, profile: Profile, exclude: Iterable[int] = (), limit: int | None = None,
             threshold: float = THRESHOLD) -> list[Pick]:
        """Return up to ``limit`` (default: the reader's own count) picks for
        ``profile``, best first; see :meth:`rank_many`."""
        return self.rank_many([profile], {profile.subscriber_id: exclude}, limit, threshold)[profile.subscriber_id]

    def rank_many(self, profiles: Iterable[Profile], exclude: dict[int, Iterable[int]] | None = None,
                  limit: int | None = None, threshold: float = THRESHOLD,
                  models: dict[int, np.ndarray] | None = None) -> dict[int, list[Pick]]:
        """Return ``{subscriber id: picks}`` for ``profiles``, each reader's
        up to ``limit`` (default: their own count) best first, none of the
        positions in their ``exclude`` (papers picked for them recently) nor
        any paper they rated or gave as a seed, none less relevant than
        ``threshold``.

        Readers are scored together, as arrays: each reader's signals (their
        phrases and papers) index rows of one matrix of similarities, the
        best one per paper is the relevance and its row the reason.
        ``models`` (``{subscriber id: weights}``, see
        ``newsletter.picks.reader_model``) adds each reader's model of their
        votes to their relevance (:meth:`_add_models`).
        """
        profiles = list(profiles)
        found: dict[int, list[Pick]] = {p.subscriber_id: [] for p in profiles}
        wanted = [p for p in profiles if _wanted_count(p, limit) > 0 and not p.is_empty]
        if not wanted or not self.papers:
            return found
        self.prepare(wanted)
        signals, disliked = self._signal_rows(wanted)
        block = self._matrix()[signals]  # readers × signals × papers
        relevance, eligible = self._relevance(block, disliked)
        if models:  # the readers' models of their votes: one more signal
            self._add_models(wanted, relevance, eligible, models)
        self._exclude_signal_papers(eligible, signals, disliked)
        followed = self._boost_followed(wanted, relevance, eligible)
        self._exclude_own_papers(wanted, eligible, exclude or {})
        self._exclude_muted(wanted, eligible)
        eligible &= relevance >= threshold
        order, counts = self._best(relevance, eligible, np.array([_wanted_count(p, limit) for p in wanted]))
        found.update(self._picks(wanted, block, signals, relevance, order, counts, followed))
        return found

    def _signal_rows(self, wanted: list[Profile]) -> tuple[np.ndarray, np.ndarray | None]:
        """Each reader's signals as rows of the matrix, padded with row 0
        (see :func:`_padded`): their phrases, seed papers and papers they
        liked; and the rows of the papers they disliked (None: no reader
        disliked any). Papers not known are dropped (row numbers are
        positive, so filter(None) drops exactly those)."""
        phrase_row, seed_row, liked_row = self._phrase_rows.__getitem__, self._seed_rows.get, self._liked_rows.get
        positive = [[*map(phrase_row, p.interests), *filter(None, map(seed_row, p.seeds)),
                     *filter(None, map(liked_row, p.liked))] for p in wanted]
        negative = [[*filter(None, map(seed_row, p.disliked))] for p in wanted]
        return _padded(positive), _padded(negative) if any(negative) else None

    def _relevance(self, block: np.ndarray, disliked: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Return (relevance, eligible), readers × papers: the best of each
        reader's similarities in ``block``, less :data:`DISLIKE_WEIGHT` times
        the best similarity to the papers they ``disliked``; eligible where
        the reader has a signal at all."""
        best = block.max(axis=1)  # -inf where the reader has no signal (row 0 only)
        eligible = best > -np.inf
        relevance = np.where(eligible, best, np.float32(0.0))
        if disliked is not None:
            relevance -= DISLIKE_WEIGHT * np.maximum(self._matrix()[disliked].max(axis=1), 0.0)
        return relevance, eligible

    def _exclude_signal_papers(self, eligible: np.ndarray, signals: np.ndarray, disliked: np.ndarray | None) -> None:
        """Make not eligible, for each reader, the papers of this edition
        that their rows in ``signals`` and ``disliked`` stand for: never a
        paper the reader gave as a seed, liked or disliked."""
        row_positions = np.array(self._row_positions)
        for rows in (signals,) if disliked is None else (signals, disliked):
            positions = row_positions[rows]
            r, j = np.nonzero(positions >= 0)
            eligible[r, positions[r, j]] = False

    def _boost_followed(self, wanted: list[Profile], relevance: np.ndarray,
                        eligible: np.ndarray) -> dict[int, dict[int, Reason]]:
        """Add :data:`AUTHOR_BOOST` to the relevance of the papers by an
        author a reader follows and :data:`CATEGORY_BOOST` to those in a
        category they follow, making them eligible; return, by reader (their
        index in ``wanted``), the papers whose reason is that author or
        category, by position."""
        followed: dict[int, dict[int, Reason]] = {}
        for r, profile in enumerate(wanted):
            reasons: dict[int, Reason] = {}
            for author in profile.authors:
                for i in self._by_author.get(normalize_name(author), ()):
                    relevance[r, i] += AUTHOR_BOOST
                    eligible[r, i] = True
                    # The author is the better reason: no similarity reaches the boost.
                    reasons[i] = Reason("author", self._author_name(i, author))
            for category in profile.categories:
                for i in self._by_category.get(category.casefold(), ()):
                    relevance[r, i] += CATEGORY_BOOST
                    if not eligible[r, i]:
                        eligible[r, i] = True
                        reasons[i] = Reason("category", category)
            if reasons:
                followed[r] = reasons
        return followed

    def _exclude_own_papers(self, wanted: list[Profile], eligible: np.ndarray,
                            exclude: dict[int, Iterable[int]]) -> None:
        """Make not eligible, for each reader, the positions of their
        ``exclude`` and, when a followed author or category may have made
        them eligible again, the papers they gave as seeds or rated."""
        for r, profile in enumerate(wanted):
            own = (*profile.seeds, *profile.liked, *profile.disliked) if profile.authors or profile.categories else ()
            never = [*exclude.get(profile.subscriber_id, ()), *(self._position[k] for k in own if k in self._position)]
            if never:
                eligible[r, never] = False

    def _exclude_muted(self, wanted: list[Profile], eligible: np.ndarray) -> None:
        """Make not eligible, for each reader, the papers whose title or
        abstract says one of their muted phrases (see
        ``newsletter.picks.muting``): never picked, whatever else matches."""
        if not any(profile.muted for profile in wanted):
            return
        if getattr(self, "_muted", None) is None:
            self._muted = MutedPapers(self.papers)
        for r, profile in enumerate(wanted):
            if profile.muted:
                eligible[r, list(self._muted.of(profile))] = False

    def _best(self, relevance: np.ndarray, eligible: np.ndarray, wants: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (order, counts): each reader's papers, best first (the
        upvotes prior added), as many as the most any reader ``wants``; and
        how many of them are the reader's picks: their best papers up to the
        first one not eligible, at most as many as they want."""
        score = np.where(eligible, relevance + self._prior, -np.inf)
        order = np.argsort(-score, axis=1, kind="stable")[:, :int(wants.max())]
        chosen = np.take_along_axis(eligible, order, axis=1)
        counts = np.minimum(np.where(chosen.all(axis=1), chosen.shape[1], chosen.argmin(axis=1)), wants)
        return order, counts

    def _picks(self, wanted: list[Profile], block: np.ndarray, signals: np.ndarray, relevance: np.ndarray,
               order: np.ndarray, counts: np.ndarray, followed: dict[int, dict[int, Reason]]) -> dict[int, list[Pick]]:
        """Return ``{subscriber id: picks}``: each reader's first ``counts``
        papers of ``order``, with their relevance and their reason: the
        followed author or category that made them eligible, else the row
        of their best signal."""
        # Plain lists from here: indexing numpy arrays one element at a time is slow.
        scores = np.take_along_axis(relevance, order, axis=1).tolist()
        # The reason of a pick: the row of its best signal, looked for only
        # among the picks (an argmax over every paper costs eight maxes).
        which = block[np.arange(len(wanted))[:, None], :, order].argmax(axis=2)
        reasons = np.take_along_axis(signals, which, axis=1).tolist()  # row 0: none
        keys, row_reasons = self.keys, self._row_reasons
        picks: dict[int, list[Pick]] = {}
        for r, (profile, positions, count) in enumerate(zip(wanted, order.tolist(), counts.tolist())):
            by_follow = followed.get(r, {})
            picks[profile.subscriber_id] = [Pick(i, keys[i], score, by_follow.get(i) or row_reasons[why])
                                            for i, score, why in zip(positions[:count], scores[r], reasons[r])]
        return picks

    # ---------------------------------------------------------------- models of votes

    def _add_models(self, wanted: list[Profile], relevance: np.ndarray, eligible: np.ndarray,
                    models: dict[int, np.ndarray]) -> None:
        """Add to the relevance of each reader of ``wanted`` with a model in
        ``models`` (weights then bias, over the papers' normalized
        embeddings) :data:`MODEL_WEIGHT` times its decision score centred
        on the edition (positive: more like what they liked than the
        edition's average paper), for every reader at once: one product of
        readers × 256 by 256 × papers. The reason of such a pick stays the
        most similar of the reader's signals: the paper they liked most like it."""
        rows = [r for r, profile in enumerate(wanted) if profile.subscriber_id in models]
        if not rows:
            return
        weights = np.stack([models[wanted[r].subscriber_id] for r in rows]).astype(np.float32)
        scores = weights[:, :-1] @ self._vectors.T.astype(np.float32)  # readers × papers; the bias cancels out
        scores -= scores.mean(axis=1, keepdims=True)
        scores /= np.maximum(scores.std(axis=1, keepdims=True), np.float32(1e-6))
        relevance[rows] += np.float32(MODEL_WEIGHT) * scores * eligible[rows]

    def _author_name(self, position: int, author: str) -> str:
        """The followed ``author`` as the paper at ``position`` spells the name."""
        wanted = normalize_name(author)
        return next(name for name in self.papers[position].authors if normalize_name(name) == wanted)


def _wanted_count(profile: Profile, limit: int | None) -> int:
    """How many picks the reader gets: ``limit``, or their own count."""
    return profile.picks if limit is None else limit


def _padded(lists: list[list[int]]) -> np.ndarray:
    """The lists as one array of rows, padded with 0 (the row of no signal)."""
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    padded = np.zeros((len(lists), max(1, int(lengths.max()))), dtype=np.int64)
    padded[np.arange(padded.shape[1]) < lengths[:, None]] = np.fromiter(chain.from_iterable(lists), dtype=np.int64)
    return padded
