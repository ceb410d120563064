"""The words of a reader's model of their votes (``newsletter.picks.reader_model``):
learned on one day's papers, they score the papers of any other day by that
edition's TF-IDF (stable across days); the stored model stays small; a model
stored in the old format (embeddings only) is ignored, never a crash, until
the worker fits it again."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from conftest import ROOT
from newsletter.core.models import Paper, paper_key
from newsletter.papers.batches import load_batch
from newsletter.picks import ranking, reader_model
from newsletter.picks.picking import EditionPicks

DAY = dt.date(2025, 3, 11)
EDITION = DAY.isoformat()
# On the example day: three papers on erasing concepts from (or unlearning
# in) diffusion models liked, the neural architecture search paper disliked.
LIKED, DISLIKED = (30, 31, 32), 3

# Another day, written here: one paper on the liked topic, the others not.
OTHER_DAY = [
    Paper("Graph neural networks for molecular property prediction",
          "We predict properties of molecules with message passing graph neural networks and a new pooling layer."),
    Paper("Selective concept erasure for text-to-image diffusion models",
          "Machine unlearning removes unsafe concepts from a diffusion model: our erasure keeps the other concepts "
          "intact while the erased concept can no longer be generated."),
    Paper("Reinforcement learning for robot grasping",
          "A robot learns to grasp objects from camera images with a policy trained in simulation."),
    Paper("Speech recognition for low-resource languages",
          "We transcribe speech in languages with little labelled audio by pretraining on unlabelled recordings."),
]


@pytest.fixture(scope="module")
def example_day():
    return load_batch(ROOT / "examples" / "daily-papers-mar-11.txt", date=DAY).papers


def fitted_on_example_day(papers) -> reader_model.Fitted:
    negatives = [papers[i] for i in range(40, 70)] + [papers[DISLIKED]]
    return reader_model.fit_papers([papers[i] for i in LIKED], negatives)


def test_the_words_learned_on_one_day_score_the_papers_of_another(example_day):
    model = fitted_on_example_day(example_day)
    assert len(model.words) == reader_model.WORDS and {"erasure", "unlearning"} <= set(model.words)
    models = reader_model.parse({7: model.to_bytes()})  # as a send reads it back from the store
    other = ranking.EditionIndex(OTHER_DAY)
    # The other day's vocabulary is another: the words are looked up by name.
    assert other._tfidf.vocabulary_ != ranking.EditionIndex(example_day)._tfidf.vocabulary_
    [scores] = other._word_scores(models, [0])
    assert int(np.argmax(scores)) == 1 and scores[1] > 0
    assert scores[0] == scores[2] == scores[3] == 0  # none of the words: nothing

    # In the ranking, the words alone (embedding weights zeroed) put that paper first.
    weights, words, word_weights = models[7]
    words_only = ranking.VoteModels([7], np.zeros((1, reader_model.DIMENSIONS + 1), np.float32), words,
                                    word_weights[None, :])
    relevance = np.zeros((1, len(OTHER_DAY)), np.float32)
    profile = type("Reader", (), {"subscriber_id": 7})()
    other._add_models([profile], relevance, np.ones_like(relevance, dtype=bool), words_only)
    assert int(np.argmax(relevance[0])) == 1


def test_words_an_edition_lacks_count_for_nothing(example_day):
    model = fitted_on_example_day(example_day)
    unknown = reader_model.Fitted(model.weights, model.bias, ("zzzz", "qqqq wwww"), np.array([1.0, -0.5], np.float32))
    models = reader_model.parse({1: unknown.to_bytes()})
    assert models[1][1][:2] == ("zzzz", "qqqq wwww") and models[1][1][2:] == ("",) * (reader_model.WORDS - 2)
    [scores] = ranking.EditionIndex(OTHER_DAY)._word_scores(models, [0])
    assert not scores.any()


def test_a_stored_model_is_small_and_reads_back(example_day):
    model = fitted_on_example_day(example_day)
    data = model.to_bytes()
    assert 1028 < len(data) <= 2048  # a send reads a million of them
    back = reader_model.Fitted.from_bytes(data)
    assert back.words == model.words and np.allclose(back.word_weights, model.word_weights, atol=1e-3)
    assert np.array_equal(back.weights, model.weights) and back.bias == pytest.approx(model.bias)
    with pytest.raises(ValueError):
        reader_model.Fitted(model.weights, model.bias, ("a\nb",), np.ones(1, np.float32)).to_bytes()


def test_a_model_in_the_old_format_is_ignored_until_fitted_again(store, example_day):
    batch = load_batch(ROOT / "examples" / "daily-papers-mar-11.txt", date=DAY)
    store.store_batch(batch)
    reader, _ = store.add("alice@example.com", "Alice")
    keys = [paper_key(p) for p in batch.papers]
    for i in LIKED:
        store.record_vote(reader.id, keys[i], 1, EDITION)
    store.record_vote(reader.id, keys[DISLIKED], -1, EDITION)
    # As the previous version stored it: 256 weights and a bias, float32, embeddings only.
    old = np.ones(reader_model.DIMENSIONS + 1, np.float32).tobytes()
    [(subscriber_id, changed_at)] = store.models_due(reader_model.FEATURES)
    assert store.save_reader_model(subscriber_id, changed_at, "wordllama-256/1", old, {"words": ["x"]})
    profile = store.profile(reader.id)
    assert reader_model.load_weights(store, [profile]) == {}
    assert reader_model.shaping(store, reader.id) is None
    # Even under the current features' name, bytes of another shape are left out.
    assert reader_model.parse({reader.id: old}) == {}
    with pytest.raises(ValueError):
        reader_model.Fitted.from_bytes(old)
    picks = EditionPicks(store, EDITION, DAY, batch.papers).for_readers([reader.id])[reader.id].picks
    assert picks  # ranked from the votes themselves, no model
    # The worker fits it again in the current format; then it is read.
    assert [i for i, _ in store.models_due(reader_model.FEATURES)] == [reader.id]
    assert reader_model.fit_due(store) == 1
    models = reader_model.load_weights(store, [store.profile(reader.id)])
    assert list(models) == [reader.id] and "erasure" in models[reader.id][1]
