"""Evaluation: how good are the personal picks on the example day?

Run from anywhere: ``python bench/picks_eval.py`` (``make bench``). The
evaluation set is written below, by hand, from the 85 papers of
examples/daily-papers-mar-11.txt: twenty readers, fourteen described by
interest phrases and six by one paper they like (a seed), each with the
papers a person with that interest would want from that day. For each
ranking it prints precision@5 (the share of a reader's five best papers
that are in their wanted set; averaged over readers), next to:

* the ceiling: some readers want fewer than five of the day's papers;
* a random order (mean of 200 shuffles);
* the community's order (the day's upvotes; the page lists papers that way);
* TF-IDF alone and WordLlama embeddings alone, the two views the ranking
  mixes (``newsletter.picks.ranking``);

and, for the ranking itself, how many papers pass its relevance threshold
(so no reader gets filler) and how many of those are wanted.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "daily-papers-mar-11.txt"

try:
    import newsletter  # noqa: F401
except ImportError:  # run with a Python that does not have the package installed
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from newsletter.picks import ranking  # noqa: E402
from newsletter.papers.batches import load_batch  # noqa: E402
from newsletter.core.models import paper_key  # noqa: E402

# (interest phrases, or the position of a liked paper) → the positions of
# the papers of the day such a reader would want.
READERS: list[tuple[list[str] | int, set[int]]] = [
    (["machine unlearning"], {0, 30, 31, 32, 34}),
    (["concept erasure"], {30, 31, 32, 34}),
    (["open-vocabulary detection"], {69, 77, 80}),
    (["concept bottleneck models"], {1, 10, 76, 79}),
    (["contrastive learning"], {9, 29, 36, 54, 64}),
    (["neural architecture search"], {3, 21, 38, 43}),
    (["continual learning"], {5, 11, 41, 58}),
    (["Kolmogorov-Arnold networks"], {7, 75}),
    (["medical AI", "clinical decision support"], {13, 25, 35, 42, 56, 57, 67}),
    (["multi-concept personalization", "text-to-image customization"], {4, 22, 45, 65, 82}),
    (["interpretability"], {1, 10, 14, 20, 44, 51, 62, 76, 79}),
    (["neurosymbolic AI"], {26, 78, 84}),
    (["vision-language models"], {4, 23, 33, 37, 49, 50, 52, 56, 57, 61, 72, 81}),
    (["self-supervised learning"], {9, 29, 36, 42, 43, 54, 64}),
    (31, {0, 30, 32, 34}),  # likes Score Forgetting Distillation (machine unlearning)
    (77, {69, 80}),  # likes MarvelOVD (open-vocabulary detection)
    (36, {9, 29, 54, 64}),  # likes Decoupled Contrastive Learning
    (3, {21, 38, 43}),  # likes a training-free NAS paper
    (10, {1, 14, 44, 76, 79}),  # likes Discover-then-Name (concept bottlenecks)
    (75, {7}),  # likes Kolmogorov-Arnold Transformer
]


def precision_at_5(order: list[int], wanted: set[int]) -> float:
    return sum(1 for i in order[:5] if i in wanted) / 5


def main() -> None:
    batch = load_batch(EXAMPLE, date=dt.date(2025, 3, 11))
    papers = batch.papers
    index = ranking.EditionIndex(papers)
    keys = [paper_key(p) for p in papers]

    def profile(reader) -> ranking.Profile:
        spec, _wanted = reader
        if isinstance(spec, int):
            return ranking.Profile(0, seeds=(keys[spec],))
        return ranking.Profile(0, interests=tuple(spec))

    def ordering(scores: np.ndarray, exclude: set[int]) -> list[int]:
        return [i for i in np.argsort(-scores, kind="stable") if i not in exclude]

    def seeds_of(reader) -> set[int]:
        return {reader[0]} if isinstance(reader[0], int) else set()

    def view(similarity) -> float:
        results = []
        for reader in READERS:
            spec, wanted = reader
            texts = [papers[spec].title + " " + papers[spec].abstract] if isinstance(spec, int) else spec
            scores = np.max(similarity(texts), axis=0)
            results.append(precision_at_5(ordering(scores, seeds_of(reader)), wanted))
        return statistics.mean(results)

    ceiling = statistics.mean(min(5, len(w)) / 5 for _s, w in READERS)
    rng = np.random.default_rng(11)
    shuffled = statistics.mean(
        statistics.mean(precision_at_5(ordering(rng.random(len(papers)), seeds_of(r)), r[1]) for r in READERS)
        for _ in range(200)
    )
    upvotes = np.array([p.upvotes or 0 for p in papers], dtype=float) - np.arange(len(papers)) * 1e-6
    community = statistics.mean(precision_at_5(ordering(upvotes, seeds_of(r)), r[1]) for r in READERS)
    words = view(lambda texts: (index._words @ index._tfidf.transform(texts).T).toarray().T)
    embedded = view(lambda texts: (index._vectors @ ranking._embedder().embed(texts, norm=True).T).T)

    ranked, sent, passed, passed_wanted = [], [], 0, 0
    for reader in READERS:
        picks = index.rank(profile(reader))
        order = [p.position for p in picks]
        passed += len(order)
        passed_wanted += sum(1 for i in order if i in reader[1])
        sent.append(precision_at_5(order, reader[1]))
        # The same order, with the papers under the threshold as well.
        everything = index.rank(profile(reader), threshold=float("-inf"))
        ranked.append(precision_at_5([p.position for p in everything], reader[1]))
    print(f"Personal picks on {EXAMPLE.name}: {len(papers)} papers, {len(READERS)} readers")
    print(f"{'ranking':<44}{'precision@5':>12}")
    for name, value in [
        ("ceiling (readers who want fewer than 5)", ceiling),
        ("random order (mean of 200)", shuffled),
        ("community order (upvotes)", community),
        ("TF-IDF alone", words),
        ("WordLlama embeddings alone", embedded),
        (f"newsletter.picks.ranking (TF-IDF + {ranking.EMBEDDING_WEIGHT} × embeddings)", statistics.mean(ranked)),
        ("  the picks as sent (threshold applied)", statistics.mean(sent)),
    ]:
        print(f"{name:<44}{value:>12.3f}")
    print(f"Above the relevance threshold ({ranking.THRESHOLD}): {passed} papers for {len(READERS)} readers, "
          f"{passed_wanted} of them wanted ({passed_wanted / max(1, passed):.0%}); 5 at most per reader.")


if __name__ == "__main__":
    main()
