"""A model per reader, learned from their votes.

Once a reader has :data:`MIN_POSITIVES` papers they like (their 👍 and
their seed papers, which count as 👍), a logistic regression is fitted on
the papers' WordLlama embeddings (fixed, 256 dimensions, normalized: the
same for every edition, unlike the TF-IDF the ranking fits per edition):
positives are those papers, negatives their 👎 and a deterministic sample
of :data:`SHOWN_NEGATIVES` papers they were shown but did not rate (the
other papers of the days they voted on); the classes are balanced and the
regularization is :data:`C`, as Scholar Inbox does ("we train a logistic
regression per user with C = 0.1 on the user's ratings, with negatives
sampled from the papers the user did not rate", arXiv 2504.08385, §3).

The model is stored (about 1 KB: 256 weights and a bias, float32) with
:data:`FEATURES`, the version of what it weighs: a change of features makes
every model due again. It is fitted (with what the reader's preferences page shows of it: the
words and papers that weigh most, :func:`explain`) when the reader's votes change, by the
web app's worker (:func:`fit_due`), never in a vote's request and never in
a send, which only reads the stored weights (:func:`load_weights`). In the
ranking, its decision score is one more relevance signal (see
``EditionIndex.rank_many``'s ``models``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from newsletter.core.models import Paper, Profile, paper_key
from newsletter.picks.ranking import EMBED_BATCH, _embedder, paper_text
from newsletter.store import Store

log = logging.getLogger("newsletter.picks.reader_model")

# The features a stored model weighs: change it whenever they change (the
# embedder, its dimensions, the text embedded), and every model is fitted again.
FEATURES = "wordllama-256/1"
DIMENSIONS = 256
MIN_POSITIVES = 3
C = 0.1
SHOWN_NEGATIVES = 30
# Words shown on "What shapes your picks", and papers on each side.
TOP_WORDS = 12
TOP_PAPERS = 3
_WORD = re.compile(r"[a-z][a-z-]{3,}")
# Common words of abstracts that say nothing of a topic.
_STOP = frozenset("""this that with from have been which their these those such than then they them when where while
also into more most other over only some very what will would could should about after again against because
before being between both during each further here under until upon using used uses based show shows shown
propose proposed approach method methods results paper work novel existing state-of-the-art performance
achieve achieves demonstrate experiments experimental model models task tasks data across however first new
significant significantly large different various framework improve improves improved""".split())


@dataclass(frozen=True)
class Fitted:
    """A fitted model: ``weights`` (float32, :data:`DIMENSIONS`) and ``bias``."""

    weights: np.ndarray
    bias: float

    def to_bytes(self) -> bytes:
        """The model as stored: its weights then its bias, float32."""
        return np.append(self.weights, self.bias).astype(np.float32).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Fitted":
        """The model stored as ``data``; raises ValueError when it is not one."""
        values = np.frombuffer(data, dtype=np.float32)
        if values.shape != (DIMENSIONS + 1,):
            raise ValueError(f"a stored model has {DIMENSIONS + 1} float32 values, not {values.size}")
        return cls(values[:DIMENSIONS], float(values[DIMENSIONS]))


@dataclass(frozen=True)
class FitReport:
    """What fitting one reader's model came to: the model (None: too few
    papers they like), how many positives and negatives, the milliseconds
    it took (reading the papers, embedding them, fitting)."""

    model: Fitted | None
    positives: int
    negatives: int
    ms: float
    shaping: dict | None = None  # see :func:`explain`


def embed(papers: Iterable[Paper]) -> np.ndarray:
    """The papers' features: WordLlama embeddings of their text, normalized
    (one row per paper, float32)."""
    texts = [paper_text(p) for p in papers]
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    return np.asarray(_embedder().embed(texts, norm=True, batch_size=EMBED_BATCH), dtype=np.float32)


def fit(positives: np.ndarray, negatives: np.ndarray) -> Fitted:
    """Return the logistic regression of ``positives`` against
    ``negatives`` (rows of features), classes balanced, C = :data:`C`.
    Raises ValueError when either is empty."""
    from sklearn.linear_model import LogisticRegression

    if not len(positives) or not len(negatives):
        raise ValueError("a model needs positive and negative papers")
    x = np.vstack([positives, negatives])
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    # liblinear: the quickest on a few dozen rows (a few ms where lbfgs takes tens).
    found = LogisticRegression(C=C, class_weight="balanced", solver="liblinear").fit(x, y)
    return Fitted(found.coef_[0].astype(np.float32), float(found.intercept_[0]))


def sample(keys: Iterable[str], subscriber_id: int, count: int) -> list[str]:
    """``count`` of ``keys``, the same for the same reader and keys (ordered
    by a hash of the reader and the key: no state, no random seed)."""
    return sorted(keys, key=lambda k: hashlib.blake2b(f"{subscriber_id}:{k}".encode(), digest_size=8).digest())[:count]


def positive_keys(profile: Profile) -> list[str]:
    """The papers the reader likes: their 👍 and their seed papers."""
    return list(dict.fromkeys((*profile.liked, *profile.seeds)))


def fit_reader(store: Store, profile: Profile) -> FitReport:
    """Fit the model of ``profile``'s reader from the store: their papers
    (those not stored are left out) and the papers they were shown but did
    not rate. Returns the report; its model is None with fewer than
    :data:`MIN_POSITIVES` papers they like, or no negative."""
    started = time.perf_counter()
    liked = positive_keys(profile)
    if len(liked) < MIN_POSITIVES:
        return FitReport(None, len(liked), 0, (time.perf_counter() - started) * 1000)
    own = set(liked) | set(profile.disliked)
    shown = sample((k for k in store.shown_unrated(profile.subscriber_id) if k not in own), profile.subscriber_id,
                   SHOWN_NEGATIVES)
    papers = store.papers([*liked, *profile.disliked, *shown])
    positives = [papers[k] for k in liked if k in papers]
    negatives = [papers[k] for k in (*profile.disliked, *shown) if k in papers]
    if len(positives) < MIN_POSITIVES or not negatives:
        return FitReport(None, len(positives), len(negatives), (time.perf_counter() - started) * 1000)
    vectors = embed([*positives, *negatives])
    model = fit(vectors[:len(positives)], vectors[len(positives):])
    ms = (time.perf_counter() - started) * 1000
    disliked = [papers[k] for k in profile.disliked if k in papers]
    shown = explain(model, positives, disliked, vectors[:len(positives)],
                    vectors[len(positives):len(positives) + len(disliked)])
    return FitReport(model, len(positives), len(negatives), ms, shown)


def fit_due(store: Store, limit: int = 20) -> int:
    """Fit the models that are due (votes changed, or fitted on other
    features), up to ``limit``, and store them; return how many were
    stored (one whose votes changed meanwhile stays due)."""
    stored = 0
    for subscriber_id, changed_at in store.models_due(FEATURES, limit):
        report = fit_reader(store, store.profile(subscriber_id))
        if store.save_reader_model(subscriber_id, changed_at, FEATURES,
                                   report.model.to_bytes() if report.model else None, report.shaping):
            stored += 1
        log.info("reader %d: model %s from %d liked and %d other papers in %.0f ms", subscriber_id,
                 "fitted" if report.model else "not fitted", report.positives, report.negatives, report.ms)
    return stored


def load_weights(store: Store, profiles: Iterable[Profile]) -> dict[int, np.ndarray]:
    """Return ``{subscriber id: weights}`` (float32, :data:`DIMENSIONS` and
    the bias last) of those of ``profiles`` with a stored model of the
    current features, what ``EditionIndex.rank_many`` takes as ``models``;
    only readers with enough papers they like are looked up."""
    ids = [p.subscriber_id for p in profiles if len(p.liked) + len(p.seeds) >= MIN_POSITIVES]
    if not ids:
        return {}
    size = (DIMENSIONS + 1) * np.dtype(np.float32).itemsize
    stored = {subscriber_id: data for subscriber_id, data in store.reader_models(ids, FEATURES).items()
              if len(data) == size}
    # One array of them all, each reader's weights a row of it (a view):
    # quicker than an array made from each reader's bytes.
    weights = np.frombuffer(b"".join(stored.values()), dtype=np.float32).reshape(len(stored), DIMENSIONS + 1)
    return dict(zip(stored, weights))


# ---------------------------------------------------------------- explaining


@dataclass(frozen=True)
class Shaping:
    """What shapes a reader's picks, as their preferences page shows it:
    the words their model weighs most, and the titles of the papers they
    like and dislike that weigh most (made when the model is fitted, so the
    page embeds nothing)."""

    words: tuple[str, ...]
    liked: tuple[str, ...]
    disliked: tuple[str, ...]
    fitted_at: dt.datetime | None


def explain(model: Fitted, liked: list[Paper], disliked: list[Paper], liked_vectors: np.ndarray,
            disliked_vectors: np.ndarray) -> dict:
    """Return what shapes the picks of a reader with ``model`` (JSON-able,
    as stored): the words of the papers they like that score highest
    through it (each word embedded alone: the reader's own vocabulary, so
    a word never comes from nowhere), and the keys of the liked and
    disliked papers it scores highest and lowest."""
    vocabulary = sorted({w for p in liked for w in _WORD.findall(f"{p.title} {p.abstract}".casefold())} - _STOP)
    words: list[str] = []
    if vocabulary:
        scores = np.asarray(_embedder().embed(vocabulary, norm=True, batch_size=64), dtype=np.float32) @ model.weights
        words = [vocabulary[i] for i in np.argsort(-scores, kind="stable")[:TOP_WORDS] if scores[i] > 0]

    def ranked(found: list[Paper], vectors: np.ndarray, sign: float) -> list[str]:
        scores = vectors @ model.weights * sign
        return [paper_key(found[i]) for i in np.argsort(-scores, kind="stable")[:TOP_PAPERS]]

    return {"words": words, "liked": ranked(liked, liked_vectors, 1.0),
            "disliked": ranked(disliked, disliked_vectors, -1.0) if disliked else []}


def shaping(store: Store, subscriber_id: int) -> Shaping | None:
    """Return what shapes the reader's picks by their stored model (None:
    they have none of the current features), the papers by title."""
    stored = store.reader_model(subscriber_id)
    if stored is None or stored.features != FEATURES or stored.weights is None or not stored.shaping:
        return None
    found = stored.shaping
    titles = store.papers([*found.get("liked", ()), *found.get("disliked", ())])

    def named(keys) -> tuple[str, ...]:
        return tuple(titles[k].title for k in keys if k in titles)

    return Shaping(tuple(found.get("words", ())), named(found.get("liked", ())), named(found.get("disliked", ())),
                   stored.fitted_at)
