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

Next to the embeddings, the model has words, which mean the same on every
day (the ranking's TF-IDF is fitted per edition, so a model over its
columns would not): a second logistic regression, over the TF-IDF of the
reader's own papers (those same positives and negatives, the vectorizer
fitted on them, with the ranking's analyzer), of which the :data:`WORDS`
terms of largest weight are kept, as words with their weights
(:func:`fit_words`). At send time a paper scores Σ weight × its TF-IDF
weight of the word in the edition; words the edition lacks count for
nothing (see ``ranking.VoteModels``).

The model is stored (about 1.2 KB: 256 weights and a bias, float32; the
:data:`WORDS` weights, float16; the words, UTF-8, see :meth:`Fitted.to_bytes`)
with :data:`FEATURES`, the version of what it weighs: a change of features
makes every model due again, and models stored with other features are
never read (:func:`load_weights`). It is fitted (with what the reader's preferences page shows of it: the
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
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from newsletter.core.models import Paper, Profile, paper_key
from newsletter.picks.ranking import EMBED_BATCH, EMBED_DIMENSIONS, VoteModels, _embedder, paper_text, tfidf_vectorizer
from newsletter.store import Store

log = logging.getLogger("newsletter.picks.reader_model")

# The features a stored model weighs and how it is stored: change it whenever
# they change (the embedder, its dimensions, the text embedded, the words'
# analyzer, how many words), and every model is fitted again.
FEATURES = "wordllama-256+words-16/2"
DIMENSIONS = EMBED_DIMENSIONS
MIN_POSITIVES = 3
C = 0.1
# The words a model keeps (the terms of largest weight, of either sign): tuned
# on the tune half of bench/picks_eval.py's readers with a model, with
# ranking.MODEL_WORDS_WEIGHT; FEATURES says it (every model has that many places).
WORDS = 16
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


def _layout() -> np.dtype:
    """The fixed-size head of a stored model: the embedding weights and the
    bias (float32), then the :data:`WORDS` words' weights (float16)."""
    return np.dtype([("weights", "<f4", DIMENSIONS + 1), ("words", "<f2", WORDS)])


@dataclass(frozen=True)
class Fitted:
    """A fitted model: ``weights`` (float32, :data:`DIMENSIONS`) and ``bias``
    over the papers' embeddings, and up to :data:`WORDS` ``words`` (terms)
    with their ``word_weights`` (scaled so that the largest is ±1: the
    ranking standardizes the words' scores, so only their ratios count)."""

    weights: np.ndarray
    bias: float
    words: tuple[str, ...] = ()
    word_weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def to_bytes(self) -> bytes:
        """The model as stored: the head (see :func:`_layout`; places with no
        word weigh 0) then the words, UTF-8, joined by newlines ("" for a
        place with no word: always :data:`WORDS` of them). Raises ValueError
        with more than :data:`WORDS` words or a word with a newline."""
        if len(self.words) > WORDS or any("\n" in w for w in self.words):
            raise ValueError(f"a model stores up to {WORDS} words, without newlines")
        head = np.zeros((), dtype=_layout())
        head["weights"] = np.append(self.weights, self.bias)
        head["words"][:len(self.words)] = self.word_weights
        words = [*self.words, *[""] * (WORDS - len(self.words))]
        return head.tobytes() + "\n".join(words).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Fitted":
        """The model stored as ``data``; raises ValueError when it is not one
        (as stored with other features: see :func:`parse`)."""
        models = parse({0: data})
        if not models:
            raise ValueError("not a stored model of the current features")
        weights, words, word_weights = models[0]
        kept = [n for n, word in enumerate(words) if word]
        return cls(weights[:DIMENSIONS].copy(), float(weights[DIMENSIONS]), tuple(words[n] for n in kept),
                   word_weights[kept].copy())


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


def _regression(x, positives: int, negatives: int):
    """The logistic regression of the first ``positives`` rows of ``x``
    against the next ``negatives``, classes balanced, C = :data:`C`."""
    from sklearn.linear_model import LogisticRegression

    y = np.r_[np.ones(positives), np.zeros(negatives)]
    # liblinear: the quickest on a few dozen rows (a few ms where lbfgs takes tens).
    return LogisticRegression(C=C, class_weight="balanced", solver="liblinear").fit(x, y)


def fit(positives: np.ndarray, negatives: np.ndarray) -> Fitted:
    """Return the logistic regression of ``positives`` against
    ``negatives`` (rows of features), classes balanced, C = :data:`C`
    (a model without words). Raises ValueError when either is empty."""
    if not len(positives) or not len(negatives):
        raise ValueError("a model needs positive and negative papers")
    found = _regression(np.vstack([positives, negatives]), len(positives), len(negatives))
    return Fitted(found.coef_[0].astype(np.float32), float(found.intercept_[0]))


def fit_words(positives: list[Paper], negatives: list[Paper], count: int | None = None
              ) -> tuple[tuple[str, ...], np.ndarray]:
    """Return the words of a model of ``positives`` against ``negatives``:
    the ``count`` (default :data:`WORDS`) terms of largest weight, of either
    sign (none of weight 0), with their weights scaled so that the largest
    is ±1 (float32), largest first. The regression is over the TF-IDF of
    these papers alone (:func:`ranking.tfidf_vectorizer`, fitted on them),
    classes balanced, C = :data:`C`: the terms are those an edition's
    TF-IDF has too, and mean the same whatever the day. Raises ValueError
    when either list is empty."""
    if not positives or not negatives:
        raise ValueError("a model needs positive and negative papers")
    count = WORDS if count is None else count
    vectorizer = tfidf_vectorizer()
    try:
        x = vectorizer.fit_transform([paper_text(p) for p in (*positives, *negatives)])
    except ValueError:  # no term at all (empty or stop-word texts): no words
        return (), np.zeros(0, np.float32)
    coefficients = _regression(x, len(positives), len(negatives)).coef_[0]
    top = np.argsort(-np.abs(coefficients), kind="stable")[:count]
    top = top[coefficients[top] != 0]
    if not len(top):
        return (), np.zeros(0, np.float32)
    # Only the top terms are named: the whole vocabulary's names cost more.
    kept = set(top.tolist())
    names = {column: term for term, column in vectorizer.vocabulary_.items() if column in kept}
    weights = coefficients[top] / np.abs(coefficients[top[0]])
    return tuple(names[column] for column in top.tolist()), weights.astype(np.float32)


def fit_papers(positives: list[Paper], negatives: list[Paper], vectors: np.ndarray | None = None) -> Fitted:
    """Return the model of ``positives`` against ``negatives`` (papers):
    its embedding weights (:func:`fit` over ``vectors``, their embeddings in
    that order, embedded here when None) and its words (:func:`fit_words`).
    Raises ValueError when either list is empty."""
    if vectors is None:
        vectors = embed([*positives, *negatives])
    model = fit(vectors[:len(positives)], vectors[len(positives):])
    words, weights = fit_words(positives, negatives)
    return Fitted(model.weights, model.bias, words, weights)


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
    model = fit_papers(positives, negatives, vectors)
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


def load_weights(store: Store, profiles: Iterable[Profile]) -> VoteModels:
    """Return the stored models of those of ``profiles`` that have one of
    the current :data:`FEATURES` (see :func:`parse`), what
    ``EditionIndex.rank_many`` takes as ``models``; only readers with
    enough papers they like are looked up. Models stored with other
    features are not read: they are ignored until fitted again."""
    ids = [p.subscriber_id for p in profiles if len(p.liked) + len(p.seeds) >= MIN_POSITIVES]
    return parse(store.reader_models(ids, FEATURES) if ids else {})


def parse(stored: dict[int, bytes]) -> VoteModels:
    """Return ``{subscriber id: stored model}`` (as :meth:`Fitted.to_bytes`
    makes them) read in bulk as :class:`ranking.VoteModels`; a model not of
    that shape (stored with other features) is left out, never an error."""
    layout = _layout()
    size = layout.itemsize
    good = {subscriber_id: data for subscriber_id, data in stored.items()
            if len(data) >= size + WORDS - 1 and data.count(b"\n", size) == WORDS - 1}
    # One array of every head, one string of every word: a few calls for the
    # page rather than a few per reader (a send reads a million of them).
    heads = np.frombuffer(b"".join([data[:size] for data in good.values()]), dtype=layout)
    words = b"\n".join([data[size:] for data in good.values()]).decode(errors="replace").split("\n") if good else []
    return VoteModels(list(good), heads["weights"], words, heads["words"].astype(np.float32))


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
    as stored): up to :data:`TOP_WORDS` words, first the model's own words
    that weigh for a paper (:func:`_shown_words`), then the words of the
    papers they like that score highest through its embedding weights
    (each word embedded alone: the reader's own vocabulary, so a word never
    comes from nowhere); and the keys of the liked and disliked papers it
    scores highest and lowest."""
    words = _shown_words(model)
    vocabulary = sorted({w for p in liked for w in _WORD.findall(f"{p.title} {p.abstract}".casefold())}
                        - _STOP - set(words))
    if vocabulary and len(words) < TOP_WORDS:
        scores = np.asarray(_embedder().embed(vocabulary, norm=True, batch_size=64), dtype=np.float32) @ model.weights
        words += [vocabulary[i] for i in np.argsort(-scores, kind="stable")[:TOP_WORDS - len(words)] if scores[i] > 0]

    def ranked(found: list[Paper], vectors: np.ndarray, sign: float) -> list[str]:
        scores = vectors @ model.weights * sign
        return [paper_key(found[i]) for i in np.argsort(-scores, kind="stable")[:TOP_PAPERS]]

    return {"words": words, "liked": ranked(liked, liked_vectors, 1.0),
            "disliked": ranked(disliked, disliked_vectors, -1.0) if disliked else []}


def _shown_words(model: Fitted) -> list[str]:
    """The model's words that weigh for a paper (positive weight), weightiest
    first, as the preferences page shows them: those of words that say
    something of a topic (:data:`_WORD`, not :data:`_STOP`; a pair of words
    when either does), up to :data:`TOP_WORDS`."""
    def telling(term: str) -> bool:
        parts = term.split()
        return any(_WORD.fullmatch(w) and w not in _STOP for w in parts) and all(_WORD.fullmatch(w) for w in parts)

    order = np.argsort(-model.word_weights, kind="stable")
    return [model.words[i] for i in order if model.word_weights[i] > 0 and telling(model.words[i])][:TOP_WORDS]


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
