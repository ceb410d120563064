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
and those picked for them recently (see the caller), are never picked.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from newsletter.interests import MAX_PHRASE_CHARS  # interests are phrases, not essays
from newsletter.models import Paper, Pick, Profile, Reason, paper_key

EMBEDDING_WEIGHT = 0.3
THRESHOLD = 0.15
AUTHOR_BOOST = 1.0
CATEGORY_BOOST = 0.08
DISLIKE_WEIGHT = 0.5
PRIOR_WEIGHT = 0.02


def normalize_name(name: str) -> str:
    """An author's name for comparison: accents, case and spacing ignored."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w\s-]", " ", plain.casefold()).split())


def normalize_phrase(phrase: str) -> str:
    """An interest as compared: one line, spaces collapsed, at most
    :data:`MAX_PHRASE_CHARS` characters, case kept for showing it."""
    return " ".join(phrase.split())[:MAX_PHRASE_CHARS]


_model = None
_model_lock = threading.Lock()


def _embedder():
    """The WordLlama model, loaded once per process from the weights in its
    wheel, never from the network."""
    global _model
    with _model_lock:
        if _model is None:
            from pathlib import Path

            import wordllama

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
        self._vectors = _embedder().embed(docs, norm=True)
        upvotes = np.array([p.upvotes or 0 for p in self.papers], dtype=float)
        self._prior = np.log1p(upvotes) / max(1.0, float(np.log1p(upvotes).max())) * PRIOR_WEIGHT
        self._by_author: dict[str, list[int]] = {}
        self._by_category: dict[str, list[int]] = {}
        for i, paper in enumerate(self.papers):
            for author in paper.authors:
                self._by_author.setdefault(normalize_name(author), []).append(i)
            for category in getattr(paper, "categories", ()) or ():
                self._by_category.setdefault(category.casefold(), []).append(i)
        self._phrases: dict[str, np.ndarray] = {}
        self._others: dict[str, tuple[np.ndarray, str] | None] = {}

    # ---------------------------------------------------------------- similarities

    def _similarity(self, texts: list[str]) -> np.ndarray:
        words = (self._words @ self._tfidf.transform(texts).T).toarray()
        vectors = self._vectors @ _embedder().embed(texts, norm=True).T
        return (words + EMBEDDING_WEIGHT * vectors).T  # one row per text

    def phrase_scores(self, phrase: str) -> np.ndarray:
        """The similarity of each paper of the edition to ``phrase``."""
        found = self._phrases.get(phrase)
        if found is None:
            found = self._phrases[phrase] = self._similarity([phrase])[0]
        return found

    def prepare(self, profiles: Iterable[Profile]) -> None:
        """Compute, in bulk, the similarities ``profiles`` need that are not
        known yet (their phrases and the papers they point at): much faster
        than one at a time. Optional: :meth:`rank` computes what is missing."""
        phrases, keys = set(), set()
        for profile in profiles:
            phrases.update(p for p in profile.interests if p not in self._phrases)
            keys.update(k for k in (*profile.seeds, *profile.liked, *profile.disliked) if k not in self._others)
        if phrases:
            ordered = sorted(phrases)
            for phrase, row in zip(ordered, self._similarity(ordered)):
                self._phrases[phrase] = row
        self._resolve(keys)

    def _resolve(self, keys: set[str]) -> None:
        inside = {k: self.papers[self._position[k]] for k in keys if k in self._position}
        outside = self.lookup(sorted(keys - set(inside))) if keys - set(inside) else {}
        found = {**outside, **inside}
        ordered = sorted(found)
        if ordered:
            rows = self._similarity([paper_text(found[k]) for k in ordered])
            for key, row in zip(ordered, rows):
                self._others[key] = (row, found[key].title)
        for key in keys - set(found):
            self._others[key] = None  # unknown: ignored

    def paper_scores(self, key: str) -> tuple[np.ndarray, str] | None:
        """(similarity of each paper to the paper ``key``, its title), or
        None when the paper is unknown."""
        if key not in self._others:
            self._resolve({key})
        return self._others[key]

    # ---------------------------------------------------------------- ranking

    def rank(self, profile: Profile, exclude: Iterable[int] = (), limit: int | None = None,
             threshold: float = THRESHOLD) -> list[Pick]:
        """Return up to ``limit`` (default: the reader's own count) picks for
        ``profile``, best first, none of the positions in ``exclude`` (papers
        picked for them recently) nor any paper they rated or gave as a seed,
        and none less relevant than ``threshold``."""
        limit = profile.picks if limit is None else limit
        if limit <= 0 or profile.is_empty or not self.papers:
            return []
        n = len(self.papers)
        best = np.full(n, -np.inf)
        reason_of = np.full(n, -1)
        reasons: list[Reason] = []

        def consider(scores: np.ndarray, reason: Reason) -> None:
            better = scores > best
            if better.any():
                best[better] = scores[better]
                reason_of[better] = len(reasons)
                reasons.append(reason)

        for phrase in profile.interests:
            consider(self.phrase_scores(phrase), Reason("interest", phrase))
        for kind, keys in (("seed", profile.seeds), ("liked", profile.liked)):
            for key in keys:
                found = self.paper_scores(key)
                if found is not None:
                    consider(found[0], Reason(kind, found[1]))
        best[np.isneginf(best)] = 0.0
        relevance = best.copy()
        for author in profile.authors:
            for i in self._by_author.get(normalize_name(author), ()):
                relevance[i] += AUTHOR_BOOST
                if best[i] < AUTHOR_BOOST:  # the author is the better reason
                    reason_of[i] = len(reasons)
                    best[i] = AUTHOR_BOOST
                    reasons.append(Reason("author", self.papers[i].authors[self._author_index(i, author)]))
        for category in profile.categories:
            for i in self._by_category.get(category.casefold(), ()):
                relevance[i] += CATEGORY_BOOST
                if reason_of[i] < 0:
                    reason_of[i] = len(reasons)
                    reasons.append(Reason("category", category))
        for key in profile.disliked:
            found = self.paper_scores(key)
            if found is not None:
                relevance -= DISLIKE_WEIGHT * np.maximum(found[0], 0.0)
        never = set(exclude)
        for key in (*profile.seeds, *profile.liked, *profile.disliked):
            if key in self._position:
                never.add(self._position[key])
        eligible = (relevance >= threshold) & (reason_of >= 0)
        if never:
            eligible[list(never)] = False
        candidates = np.flatnonzero(eligible)
        if not len(candidates):
            return []
        order = candidates[np.argsort(-(relevance[candidates] + self._prior[candidates]), kind="stable")]
        return [Pick(int(i), self.keys[i], float(relevance[i]), reasons[reason_of[i]]) for i in order[:limit]]

    def _author_index(self, position: int, author: str) -> int:
        wanted = normalize_name(author)
        names = self.papers[position].authors
        return next(i for i, name in enumerate(names) if normalize_name(name) == wanted)
