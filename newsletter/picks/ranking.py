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
from collections.abc import Mapping
from itertools import chain, pairwise, repeat
from typing import Callable, Iterable, Iterator, Sequence

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
# The weight of the model's words relative to its embedding weights, each
# part's score standardized alike (see EditionIndex._add_models): tuned with
# reader_model.WORDS on the tune half of bench/picks_eval.py's readers.
MODEL_WORDS_WEIGHT = 1.0
# A paper's second-best signal (another interest, seed or liked paper it
# matches) adds this share of its similarity: a paper on "machine unlearning
# in diffusion models" ranks above one on either alone.
MULTI_WEIGHT = 0.5
# Each pick taken from one signal (its best) lowers the other papers whose
# best signal it is by this much: picks spread over the reader's interests,
# and still all come from one when no other has a paper over the threshold.
SPREAD_PENALTY = 0.1
# The spread looks among each reader's best papers, this many per pick wanted.
CANDIDATES_PER_PICK = 4
# A phrase matches a paper only as far as the paper has its words: the share
# of the phrase's TF-IDF weight (squared, so the shares add up to 1) found in
# the paper. Under MIN_COVERAGE the phrase's similarity counts
# WEAK_MATCH_WEIGHT times: "nearest neighbour search" shares "search" with
# "neural architecture search", and the embeddings alone see a little more.
MIN_COVERAGE = 0.3
WEAK_MATCH_WEIGHT = 0.5
# A second interest is named in a reason when its own similarity reaches this.
ALSO_THRESHOLD = 0.1
# The words a reason shows, at most; a paper's weightiest words looked at for
# words close to the phrase (not in it), and how close (cosine of embeddings).
REASON_WORDS = 4
CLOSE_CANDIDATES = 12
CLOSE_WORD = 0.4
# The dimensions of WordLlama's embeddings as the ranking loads it.
EMBED_DIMENSIONS = 256
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


_blas = None


def _one_blas_thread():
    """Return a context in which numpy's matrix products run on one thread.

    OpenBLAS splits a product as small as a chunk's (readers × 256 by 256 ×
    papers, a tenth of a millisecond) over every core; on a machine whose
    other cores are busy, the call then waits for a thread to be scheduled,
    ten times longer. On one thread it takes the same time every chunk, and
    gives the same numbers (threads share out the entries, each summed alike)."""
    global _blas
    if _blas is None:  # threadpoolctl: scikit-learn's, loaded with it
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController().select(user_api="blas")
    return _blas.limit(limits=1)


def tfidf_vectorizer():
    """Return a new (unfitted) TF-IDF vectorizer as the ranking uses it:
    word 1–2-grams, sublinear term frequency, English stop words. Readers'
    models learn their words with one too (``newsletter.picks.reader_model``),
    so that the terms they keep are terms of an edition's vocabulary."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, stop_words="english")


class VoteModels(Mapping):
    """Readers' models of their votes as the ranking applies them, in bulk
    (the readers of one page of a send; see ``newsletter.picks.reader_model``).

    ``weights`` has a row per reader of ``ids`` (float32): the weights of the
    :data:`EMBED_DIMENSIONS` dimensions of the papers' embeddings, then the
    bias. Each reader also has ``width`` words (terms as
    :func:`tfidf_vectorizer` makes them): ``words`` holds every reader's,
    reader after reader ("" for an unused place), ``word_weights`` their
    weights (readers × width, float32). A word weighs a paper by its TF-IDF
    weight in the edition, so a model fitted on other days' papers applies
    to any edition; words an edition lacks count for nothing.

    As a mapping: subscriber id → (weights, words, word weights).
    """

    def __init__(self, ids: Sequence[int], weights: np.ndarray, words: Sequence[str] = (),
                 word_weights: np.ndarray | None = None):
        self.rows = {subscriber_id: row for row, subscriber_id in enumerate(ids)}
        self.weights = weights
        self.words = list(words)
        self.word_weights = np.zeros((len(ids), 0), np.float32) if word_weights is None else word_weights
        if len(self.words) != self.word_weights.size or self.word_weights.shape[0] != len(ids):
            raise ValueError("each reader needs as many words as word weights")

    @classmethod
    def of(cls, models: "Mapping[int, np.ndarray] | VoteModels") -> "VoteModels":
        """Return ``models`` as VoteModels: ``{subscriber id: weights}``
        (embedding weights then bias) makes models without words."""
        if isinstance(models, VoteModels):
            return models
        ids = list(models)
        weights = np.stack([models[i] for i in ids]) if ids else np.zeros((0, EMBED_DIMENSIONS + 1))
        return cls(ids, weights.astype(np.float32, copy=False))

    @property
    def width(self) -> int:
        """How many words each reader's model has."""
        return self.word_weights.shape[1]

    def __getitem__(self, subscriber_id: int) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
        row = self.rows[subscriber_id]
        return (self.weights[row], tuple(self.words[row * self.width:(row + 1) * self.width]),
                self.word_weights[row])

    def __contains__(self, subscriber_id: object) -> bool:
        # Mapping's would build the reader's words (__getitem__): asked per reader of a send.
        return subscriber_id in self.rows

    def __iter__(self) -> Iterator[int]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


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
        self.keys = [paper_key(p) for p in self.papers]
        self._position = {key: i for i, key in enumerate(self.keys)}
        docs = [paper_text(p) for p in self.papers]
        self._tfidf = tfidf_vectorizer()
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
        # For the reasons' words: each row's TF-IDF terms and embedding, the
        # vocabulary, and each picked paper's weightiest words, embedded.
        self._row_terms: list[dict[int, float]] = [{}]
        self._row_vectors: list[np.ndarray | None] = [None]
        self._present = (self._words > 0).astype(np.float64)
        self._names: np.ndarray | None = None
        self._close: dict[int, tuple[list[str], np.ndarray]] = {}
        self._evidence: dict[tuple[int, int], tuple[tuple[str, ...], float]] = {}
        # By (row × rows + also row) × papers + position; cleared when rows are added.
        self._reasons: dict[int, Reason] = {}
        self._paper_terms: dict[int, dict[int, float]] = {}
        self._phrase_mask: np.ndarray | None = None
        # The papers' embeddings as the models of votes weigh them (see _add_models).
        self._papers_by_dimension: np.ndarray | None = None
        # The papers' TF-IDF by term (terms × papers, an extra all-zero term
        # last, for words the edition lacks), as the models' words weigh them.
        self._papers_by_term = None

    # ---------------------------------------------------------------- similarities

    def _similarity(self, texts: list[str]) -> tuple[np.ndarray, object, np.ndarray]:
        """Return (similarities, one row per text; the texts' TF-IDF rows,
        sparse; their embeddings)."""
        terms = self._tfidf.transform(texts)
        embedded = _embedder().embed(texts, norm=True, batch_size=EMBED_BATCH)
        words = (self._words @ terms.T).toarray()
        vectors = self._vectors @ embedded.T
        return (words + EMBEDDING_WEIGHT * vectors).T, terms, embedded

    def _add_row(self, scores: np.ndarray, reason: Reason, terms: dict[int, float], vector: np.ndarray,
                 key: str | None = None) -> int:
        self._rows.append(scores)
        self._row_reasons.append(reason)
        self._row_terms.append(terms)
        self._row_vectors.append(vector)
        self._row_positions.append(self._position.get(key, -1) if key else -1)
        self._reasons.clear()  # their codes count the rows
        return len(self._rows) - 1

    def _coverage(self, terms) -> np.ndarray:
        """Phrases × papers: the share of each phrase's TF-IDF weight
        (squared: the shares of a phrase add up to 1) that is in each paper."""
        return (terms.multiply(terms) @ self._present.T).toarray()

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
            scores, terms, vectors = self._similarity(ordered)
            # A paper without enough of the phrase's words is a weak match
            # (see MIN_COVERAGE): it needs a stronger similarity to be picked.
            scores = np.where(self._coverage(terms) < MIN_COVERAGE, scores * WEAK_MATCH_WEIGHT, scores)
            for n, (phrase, row_terms) in enumerate(zip(ordered, _by_row(terms))):
                self._phrase_rows[phrase] = self._add_row(scores[n], Reason("interest", phrase), row_terms, vectors[n])
        if keys:
            inside = {k: self.papers[self._position[k]] for k in keys if k in self._position}
            outside = self.lookup(sorted(keys - set(inside))) if keys - set(inside) else {}
            found = {**outside, **inside}
            ordered = sorted(found)
            if ordered:
                scores, terms, vectors = self._similarity([paper_text(found[k]) for k in ordered])
                for n, (key, row_terms) in enumerate(zip(ordered, _by_row(terms))):
                    title = found[key].title
                    # One row per way of knowing the paper, for the reason it gives.
                    row = scores[n], row_terms, vectors[n]
                    self._paper_rows[key] = (self._add_row(row[0], Reason("seed", title), *row[1:], key=key),
                                             self._add_row(row[0], Reason("liked", title), *row[1:], key=key))
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
                  models: "VoteModels | Mapping[int, np.ndarray] | None" = None) -> dict[int, list[Pick]]:
        """Return ``{subscriber id: picks}`` for ``profiles``, each reader's
        up to ``limit`` (default: their own count) best first, none of the
        positions in their ``exclude`` (papers picked for them recently) nor
        any paper they rated or gave as a seed, none less relevant than
        ``threshold``.

        Readers are scored together, as arrays: each reader's signals (their
        phrases and papers) index rows of one matrix of similarities; a
        paper's relevance is its best similarity plus :data:`MULTI_WEIGHT`
        times its second best; ``models`` (:class:`VoteModels`, or
        ``{subscriber id: weights}`` for models without words; see
        ``newsletter.picks.reader_model``) adds each reader's model of their
        votes (:meth:`_add_models`); the picks are taken greedily among the
        reader's best papers, each one taken lowering the others of its
        best signal by :data:`SPREAD_PENALTY` (see :func:`_spread`); the
        reason names the best signal, a second interest matched too, and
        the words that show the match (see :meth:`_reason`).
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
            self._add_models(wanted, relevance, eligible, VoteModels.of(models))
        self._exclude_signal_papers(eligible, signals, disliked)
        followed = self._boost_followed(wanted, relevance, eligible)
        self._exclude_own_papers(wanted, eligible, exclude or {})
        self._exclude_muted(wanted, eligible)
        eligible &= relevance >= threshold
        wants = np.array([_wanted_count(p, limit) for p in wanted])
        candidates, scores, sims = self._candidates(block, relevance, eligible, wants)
        # The row of each candidate's best signal (an argmax along the last,
        # contiguous axis: quick), 0 for none.
        best = np.take_along_axis(signals, sims.argmax(axis=2), axis=1)
        chosen, counts = _spread(scores, candidates, best, followed, wants)
        best = np.take_along_axis(best, chosen, axis=1)
        also = self._second_signals(signals, np.take_along_axis(sims, chosen[:, :, None], axis=1), best)
        found.update(self._picks(wanted, relevance, np.take_along_axis(candidates, chosen, axis=1), counts,
                                 best, also, followed))
        return found

    def _signal_rows(self, wanted: list[Profile]) -> tuple[np.ndarray, np.ndarray | None]:
        """Each reader's signals as rows of the matrix, padded with row 0
        (see :func:`_padded`): their phrases, seed papers and papers they
        liked; and the rows of the papers they disliked (None: no reader
        disliked a known one). Papers not known are dropped."""
        # A paper both seed and liked is one signal (its second row would
        # count as a second interest matched).
        liked = [[k for k in p.liked if k not in p.seeds] if p.seeds else p.liked for p in wanted]
        positive = _padded([([p.interests for p in wanted], self._phrase_rows.get),
                            ([p.seeds for p in wanted], self._seed_rows.get), (liked, self._liked_rows.get)])
        negative = _padded([([p.disliked for p in wanted], self._seed_rows.get)])
        return positive, negative if negative.any() else None

    def _relevance(self, block: np.ndarray, disliked: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Return (relevance, eligible), readers × papers: the best of each
        reader's similarities in ``block`` plus :data:`MULTI_WEIGHT` times
        the second best (when positive), less :data:`DISLIKE_WEIGHT` times
        the best similarity to the papers they ``disliked``; eligible where
        the reader has a signal at all."""
        # The best and second best together, one signal at a time: three times
        # quicker than a second pass over the block, and no copy of it.
        best = np.full((block.shape[0], block.shape[2]), -np.inf, dtype=np.float32)
        second = best.copy()
        for k in range(block.shape[1]):
            column = block[:, k]
            np.maximum(second, np.minimum(column, best), out=second)
            np.maximum(best, column, out=best)
        eligible = best > -np.inf  # -inf where the reader has no signal (row 0 only)
        relevance = np.where(eligible, best + np.float32(MULTI_WEIGHT) * np.maximum(second, np.float32(0.0)),
                             np.float32(0.0))
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

    def _candidates(self, block: np.ndarray, relevance: np.ndarray, eligible: np.ndarray,
                    wants: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (candidates, scores, sims): each reader's best papers,
        best first, :data:`CANDIDATES_PER_PICK` per pick the most any reader
        ``wants``; their scores (the upvotes prior added, -inf where not
        eligible); and their
        similarities to each of the reader's signals (readers × candidates
        × signals: looked for only among these, an argmax over every paper
        costs eight maxes)."""
        score = np.where(eligible, relevance + self._prior, -np.inf)
        count = min(score.shape[1], int(wants.max()) * CANDIDATES_PER_PICK)
        order = np.argsort(-score, axis=1, kind="stable")[:, :count]
        sims = block[np.arange(len(block))[:, None], :, order]
        return order, np.take_along_axis(score, order, axis=1), sims

    def _second_signals(self, signals: np.ndarray, sims: np.ndarray, best: np.ndarray) -> np.ndarray:
        """Return, readers × picks, the row of each pick's second-best
        signal (``sims``: its similarities to the reader's ``signals``) when
        it and the best one (``best``) are interest phrases and it is
        similar enough (:data:`ALSO_THRESHOLD`) to be named in the reason
        too; 0 for none. Looked for among the picks only."""
        if sims.shape[2] == 1:
            return np.zeros_like(best)
        # The second largest along the last axis: the largest of the others.
        top = np.argpartition(-sims, 1, axis=2)[:, :, :2]
        values = np.take_along_axis(sims, top, axis=2)
        second = np.where(values[:, :, 1] > values[:, :, 0], top[:, :, 0], top[:, :, 1])
        also = np.take_along_axis(signals, second, axis=1)
        strong = np.take_along_axis(sims, second[:, :, None], axis=2)[:, :, 0] >= ALSO_THRESHOLD
        phrase = self._is_phrase()
        return np.where(phrase[best] & phrase[also] & strong & (also != best), also, 0)

    def _is_phrase(self) -> np.ndarray:
        """Whether each row stands for an interest phrase (kept until rows are added)."""
        if self._phrase_mask is None or len(self._phrase_mask) != len(self._rows):
            self._phrase_mask = np.array([r is not None and r.kind == "interest" for r in self._row_reasons])
        return self._phrase_mask

    def _picks(self, wanted: list[Profile], relevance: np.ndarray, taken: np.ndarray, counts: np.ndarray,
               best: np.ndarray, also: np.ndarray, followed: dict[int, dict[int, Reason]]) -> dict[int, list[Pick]]:
        """Return ``{subscriber id: picks}``: each reader's first ``counts``
        papers (positions) ``taken``, with their relevance and their reason:
        the followed author or category that made them eligible, else the
        one of their ``best`` signal and ``also`` (see :meth:`_reason`)."""
        # Plain lists from here: indexing numpy arrays one element at a time is
        # slow. Flat ones, each reader's a slice: a list per reader would be
        # as many more objects for the garbage collector to go over.
        width = taken.shape[1]
        positions = taken.ravel().tolist()
        scores = np.take_along_axis(relevance, taken, axis=1).ravel().tolist()
        # A reason is made once per (signal, second interest, paper), for every
        # reader who shares it: each pick's is looked up by one number, per
        # distinct number of the chunk.
        codes = (best * len(self._rows) + also) * len(self.papers) + taken
        codes[np.arange(width) >= counts[:, None]] = -1  # not picked: no reason made
        distinct, inverse = np.unique(codes, return_inverse=True)
        made, reason = self._reasons, self._reason
        found = np.array([made.get(code) or reason(code) if code >= 0 else None for code in distinct.tolist()] + [None],
                         dtype=object)[:-1]  # (the None keeps numpy from unpacking the reasons)
        reasons = found[inverse.reshape(-1)].tolist()  # in the order of codes.ravel()
        keys = self.keys
        picks: dict[int, list[Pick]] = {}
        for r, (profile, count) in enumerate(zip(wanted, counts.tolist())):
            mine = slice(r * width, r * width + count)
            by_follow = followed.get(r)
            picks[profile.subscriber_id] = [
                Pick(i, keys[i], score, why) for i, score, why in zip(positions[mine], scores[mine], reasons[mine])
            ] if by_follow is None else [
                Pick(i, keys[i], score, by_follow.get(i) or why)
                for i, score, why in zip(positions[mine], scores[mine], reasons[mine])]
        return picks

    # ---------------------------------------------------------------- models of votes

    def _add_models(self, wanted: list[Profile], relevance: np.ndarray, eligible: np.ndarray,
                    models: VoteModels) -> None:
        """Add to the relevance of each reader of ``wanted`` with a model in
        ``models`` :data:`MODEL_WEIGHT` times its score, for every reader at
        once. The score adds two parts, each centred on the edition
        (positive: more like what they liked than the edition's average
        paper) and scaled to unit deviation: the decision score of the
        embedding weights (one product of readers × 256 by 256 × papers)
        and :data:`MODEL_WORDS_WEIGHT` times that of the words
        (:meth:`_word_scores`). The reason of such a pick stays the most
        similar of the reader's signals: the paper they liked most like it."""
        rows = [r for r, profile in enumerate(wanted) if profile.subscriber_id in models]
        if not rows:
            return
        at = [models.rows[wanted[r].subscriber_id] for r in rows]  # their rows in models
        weights = models.weights[at].astype(np.float32, copy=False)
        if self._papers_by_dimension is None:  # the papers' side of the product, made once
            self._papers_by_dimension = self._vectors.T.astype(np.float32)
        with _one_blas_thread():
            scores = _standardized(weights[:, :-1] @ self._papers_by_dimension)  # the bias cancels out
        if MODEL_WORDS_WEIGHT and models.width:
            scores += np.float32(MODEL_WORDS_WEIGHT) * _standardized(self._word_scores(models, at))
        relevance[rows] += np.float32(MODEL_WEIGHT) * scores * eligible[rows]

    def _word_scores(self, models: VoteModels, at: list[int]) -> np.ndarray:
        """Return readers × papers (float32, the readers of ``models`` at rows
        ``at``): Σ weight × the paper's TF-IDF weight of the word, over each
        reader's words; words not in the edition's vocabulary count for
        nothing (a column of zeros)."""
        from scipy.sparse import csr_matrix, vstack

        vocabulary = self._tfidf.vocabulary_
        if self._papers_by_term is None:  # made once per edition
            self._papers_by_term = vstack([self._words.T.astype(np.float32),
                                           csr_matrix((1, len(self.papers)), dtype=np.float32)]).tocsr()
        absent, width = len(vocabulary), models.width
        # One dict look-up per word, mapped in C: the one step per word.
        columns = np.fromiter(map(vocabulary.get, models.words, repeat(absent)), dtype=np.int32,
                              count=len(models.words))
        readers = len(models.rows)
        by_word = csr_matrix((models.word_weights.ravel(), columns, np.arange(0, readers * width + 1, width)),
                             shape=(readers, absent + 1))
        if len(at) != readers:
            by_word = by_word[at]
        return (by_word @ self._papers_by_term).toarray()

    # ---------------------------------------------------------------- reasons

    def _reason(self, code: int) -> Reason | None:
        """The reason of picking the paper at ``position`` for the signal of
        ``row`` (and the second interest of row ``also``, 0 for none; the
        three in one ``code``, see :meth:`_picks`): its
        subject, and the words of the paper that show the match (see
        :meth:`_words_of`). A phrase the paper has too few words of
        (:data:`MIN_COVERAGE`) is "near", not "interest": the paper is
        close to it, it does not match it; a second interest is named only
        when the paper matches it too. The same for every reader: made once.
        None for row 0 (no signal)."""
        rest, position = divmod(code, len(self.papers))
        row, also = divmod(rest, len(self._rows))
        found = self._reasons.get(code)
        if found is None and row:  # row 0: no signal (a followed author's paper)
            base = self._row_reasons[row]
            words, coverage = self._words_of(row, position)
            # Never "matches" a phrase whose words the paper lacks: only close to it.
            kind = "near" if base.kind == "interest" and coverage < MIN_COVERAGE else base.kind
            other = ""
            if also and kind == "interest":
                more, also_coverage = self._words_of(also, position)
                if also_coverage >= MIN_COVERAGE:
                    other = self._row_reasons[also].subject
                    words = tuple(_distinct([*words[:REASON_WORDS // 2], *more, *words]))[:REASON_WORDS]
            found = self._reasons[code] = Reason(kind, base.subject, other, words)
        return found

    def _words_of(self, row: int, position: int) -> tuple[tuple[str, ...], float]:
        """Return (words, coverage): the words of the paper at ``position``
        that show its match with ``row``: the terms (words and pairs of
        words) it shares with the row's phrase or paper, weightiest first
        (the phrase itself left out: the reason names it),
        then its weightiest terms whose embedding is close to the row's
        (:data:`CLOSE_WORD`) and that are not forms of words already shown
        (:func:`_stems`), up to :data:`REASON_WORDS`, a word left out
        where a pair holding it is shown; and the share of the row's TF-IDF
        weight (squared) the paper has (see :meth:`_coverage`)."""
        key = (row, position)
        if key not in self._evidence:
            if self._names is None:
                self._names = self._tfidf.get_feature_names_out()
            # Plain dicts: a scipy operation costs more than these few terms.
            terms, paper = self._row_terms[row], self._terms_of(position)
            both = sorted(((weight * paper[j], j) for j, weight in terms.items() if j in paper), key=lambda x: -x[0])
            shared = [str(self._names[j]) for _weight, j in both]
            # The phrase itself is named already: its words show what else matched.
            subject = " ".join(self._row_reasons[row].subject.casefold().split())
            words = [t for t in _without_parts(shared) if t != subject]
            close_terms, close_vectors = self._close_words(position)
            nearness = close_vectors @ self._row_vectors[row] if len(close_terms) else np.zeros(0)
            seen = _stems([subject, *words])
            close = [t for t, near in zip(close_terms, nearness.tolist())
                     if near >= CLOSE_WORD and not _stems([t]) <= seen]
            words = _distinct(_without_parts(words + [t for t in close if t not in words]))
            coverage = sum(weight * weight for j, weight in terms.items() if j in paper)
            self._evidence[key] = tuple(words[:REASON_WORDS]), coverage
        return self._evidence[key]

    def _terms_of(self, position: int) -> dict[int, float]:
        """The TF-IDF terms of the paper at ``position``: {column: weight}."""
        if position not in self._paper_terms:
            row = self._words[position].tocoo()
            self._paper_terms[position] = dict(zip(row.col.tolist(), row.data.tolist()))
        return self._paper_terms[position]

    def _close_words(self, position: int) -> tuple[list[str], np.ndarray]:
        """The :data:`CLOSE_CANDIDATES` weightiest TF-IDF terms of the paper
        at ``position``, and their embeddings (computed once per paper, for
        picked papers only)."""
        if position not in self._close:
            paper = self._words[position].tocoo()
            top = paper.col[np.argsort(-paper.data, kind="stable")][:CLOSE_CANDIDATES]
            terms = [str(self._names[j]) for j in top]
            vectors = _embedder().embed(terms, norm=True) if terms else np.zeros((0, 1))
            self._close[position] = terms, vectors
        return self._close[position]

    def _author_name(self, position: int, author: str) -> str:
        """The followed ``author`` as the paper at ``position`` spells the name."""
        wanted = normalize_name(author)
        return next(name for name in self.papers[position].authors if normalize_name(name) == wanted)


def _by_row(terms) -> list[dict[int, float]]:
    """Each row of ``terms`` (TF-IDF rows, sparse) as ``{column: weight}``,
    read from the matrix's arrays: a sparse row sliced out per text costs a
    tenth of a millisecond, for hundreds of texts on a send's first chunk."""
    matrix = terms.tocsr()
    columns, weights, bounds = matrix.indices.tolist(), matrix.data.tolist(), matrix.indptr.tolist()
    return [dict(zip(columns[start:end], weights[start:end])) for start, end in pairwise(bounds)]


def _standardized(scores: np.ndarray) -> np.ndarray:
    """Return ``scores`` (readers × papers) centred on each reader's mean
    and divided by their deviation (a reader whose scores are all equal
    gets zeros), in place when they are float32."""
    scores = scores.astype(np.float32, copy=False)
    scores -= scores.mean(axis=1, keepdims=True)
    scores /= np.maximum(scores.std(axis=1, keepdims=True), np.float32(1e-6))
    return scores


def _wanted_count(profile: Profile, limit: int | None) -> int:
    """How many picks the reader gets: ``limit``, or their own count."""
    return profile.picks if limit is None else limit


def _spread(scores: np.ndarray, candidates: np.ndarray, best: np.ndarray,
            followed: dict[int, dict[int, Reason]], wants: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (chosen, counts): for each reader, the indexes in their
    ``candidates`` (-1 past the eligible ones) of their picks in order, and
    how many they get (at most as many as they ``wants``).

    Greedy, all readers at once: each turn takes the candidate of highest
    score (``scores``, -inf where not eligible), then lowers by
    :data:`SPREAD_PENALTY` the score of every candidate whose best signal
    (``best``, its row; a followed author or category counts as one signal
    of its own) is the one just served. An interest served once gives way
    to another's paper nearly as good; a reader with one interest matched
    gets all their picks from it."""
    group = best.copy()
    for r, reasons in followed.items():
        ids = {reason: -1 - n for n, reason in enumerate(dict.fromkeys(reasons.values()))}
        for j, position in enumerate(candidates[r].tolist()):
            if position in reasons:
                group[r, j] = ids[reasons[position]]
    scores = scores.copy()
    readers = np.arange(len(scores))
    turns = int(wants.max())
    chosen = np.zeros((len(scores), turns), dtype=np.int64)
    found = np.zeros((len(scores), turns), dtype=bool)
    for turn in range(turns):
        j = scores.argmax(axis=1)
        found[:, turn] = scores[readers, j] > -np.inf
        chosen[:, turn] = j
        served = group[readers, j]
        scores[readers, j] = -np.inf
        scores -= SPREAD_PENALTY * (group == served[:, None])
    # Once a reader has no candidate left, every later turn finds none.
    return chosen, np.minimum(found.sum(axis=1), wants)


def _without_parts(terms: list[str]) -> list[str]:
    """``terms`` without the single words that a pair of words among them
    holds ("concept" goes when "concept erasure" is there), in order."""
    pairs = {word for term in terms if " " in term for word in term.split()}
    return [term for term in terms if " " in term or term not in pairs]


def _distinct(terms: list[str]) -> list[str]:
    """``terms`` without those whose words are, as a reader reads them
    (:func:`_stems`), the words of an earlier one: "erased concept" goes
    after "concept erased"; in order."""
    seen: set[frozenset[str]] = set()
    kept = []
    for term in terms:
        stems = frozenset(_stems([term]))
        if stems not in seen:
            seen.add(stems)
            kept.append(term)
    return kept


def _stems(terms: list[str]) -> set[str]:
    """The first five letters of each word of ``terms``: "erased" and
    "erasure" are one word to a reader, and a reason shows it once."""
    return {word[:5] for term in terms for word in term.split()}


def _padded(kinds: list[tuple[list[Sequence[str]], Callable[[str, int], int]]]) -> np.ndarray:
    """Return readers × signals: each reader's rows of similarities, those
    of their names (phrases, paper keys) of each of ``kinds`` in turn, in
    order; a kind is (one sequence of names per reader, the ``get`` of its
    dict of rows); names without a row are dropped, and the rest is padded
    with 0 (the row of no signal).

    The names of a kind are looked up for every reader in one pass of
    ``map``, with no Python loop per reader; numpy then puts each reader's
    rows in their row of the result."""
    readers = len(kinds[0][0])
    found, owners = [], []
    for names, row_of in kinds:
        lengths = np.fromiter(map(len, names), dtype=np.int64, count=readers)
        found.append(np.fromiter(map(row_of, chain.from_iterable(names), repeat(0)), dtype=np.int64,
                                 count=int(lengths.sum())))
        owners.append(np.repeat(np.arange(readers), lengths))
    rows, owner = np.concatenate(found), np.concatenate(owners)
    known = rows > 0  # row numbers of names are positive: 0 is a name without one
    rows, owner = rows[known], owner[known]
    # Each reader's rows together, their kinds in turn and in order within each.
    order = np.argsort(owner, kind="stable")
    rows, owner = rows[order], owner[order]
    counts = np.bincount(owner, minlength=readers)
    padded = np.zeros((readers, max(1, int(counts.max()))), dtype=np.int64)
    padded[owner, np.arange(len(rows)) - (np.cumsum(counts) - counts)[owner]] = rows
    return padded
