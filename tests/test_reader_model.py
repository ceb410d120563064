"""Each reader's model of their votes (``newsletter.picks.reader_model``):
fitted from 3 👍 and a 👎 on the example day, stored, fitted again only when
their votes (or seed papers) or the features change, and read by the picks;
"What shapes your picks" and "Forget my votes" with its undo on the
preferences page, through the real ``newsletter serve``."""

from __future__ import annotations

import datetime as dt
import urllib.parse
import urllib.request

import lxml.html
import pytest

from conftest import ROOT, SECRET, clean_env, free_port, newsletter_server, wait_until
from newsletter.core.models import Profile, paper_key
from newsletter.papers.batches import load_batch
from newsletter.picks import reader_model
from newsletter.picks.picking import EditionPicks
from newsletter.readers.tokens import Signer

DAY = dt.date(2025, 3, 11)
EDITION = DAY.isoformat()
# On the example day: three papers on erasing concepts from (or unlearning
# in) diffusion models liked, the neural architecture search paper disliked;
# the day's two other unlearning papers are what such a reader wants.
LIKED, DISLIKED, WANTED = (30, 31, 32), 3, {0, 34}


@pytest.fixture
def day(store):
    batch = load_batch(ROOT / "examples" / "daily-papers-mar-11.txt", date=DAY)
    store.store_batch(batch)
    reader, _ = store.add("alice@example.com", "Alice")
    keys = [paper_key(p) for p in batch.papers]
    return store, reader, batch, keys


def vote_as_example(store, reader, keys) -> None:
    for i in LIKED:
        store.record_vote(reader.id, keys[i], 1, EDITION)
    store.record_vote(reader.id, keys[DISLIKED], -1, EDITION)


def test_a_vote_only_readers_picks_follow_their_votes(day):
    store, reader, batch, keys = day
    vote_as_example(store, reader, keys)
    assert reader_model.fit_due(store) == 1
    stored = store.reader_model(reader.id)
    assert stored.features == reader_model.FEATURES and not stored.due
    assert 4 * (reader_model.DIMENSIONS + 1) < len(stored.weights) <= 2048  # embeddings and words: about 1.2 KB
    picks = EditionPicks(store, EDITION, DAY, batch.papers).for_readers([reader.id])[reader.id].picks
    top = [p.position for p in picks]
    assert WANTED <= set(top[:3]) and not set(top) & {*LIKED, DISLIKED}
    liked_titles = {batch.papers[i].title for i in LIKED}
    assert all(p.reason.kind == "liked" and p.reason.subject in liked_titles for p in picks)
    shaping = reader_model.shaping(store, reader.id)
    assert {"erasure", "unlearning"} <= set(shaping.words)
    assert set(shaping.liked) == liked_titles and shaping.disliked == (batch.papers[DISLIKED].title,)


def test_the_model_adds_to_the_ranking_only_for_readers_who_have_one(day):
    store, reader, batch, keys = day
    vote_as_example(store, reader, keys)
    reader_model.fit_due(store)
    index = EditionPicks(store, EDITION, DAY, batch.papers).index
    profile = store.profile(reader.id)
    models = reader_model.load_weights(store, [profile, Profile(999, interests=("diffusion models",))])
    assert list(models) == [reader.id]
    with_model = index.rank_many([profile], models=models)[reader.id]
    without = index.rank_many([profile])[reader.id]
    assert [p.score for p in with_model] != [p.score for p in without]


def test_a_model_is_fitted_again_when_votes_or_seeds_change_and_not_otherwise(day):
    store, reader, _batch, keys = day
    store.record_vote(reader.id, keys[LIKED[0]], 1, EDITION)
    store.record_vote(reader.id, keys[LIKED[1]], 1, EDITION)
    assert reader_model.fit_due(store) == 1 and store.reader_model(reader.id).weights is None  # two: too few
    store.record_vote(reader.id, keys[LIKED[2]], 1, EDITION)
    assert reader_model.fit_due(store) == 1
    fitted = store.reader_model(reader.id)
    assert fitted.weights is not None and reader_model.fit_due(store) == 0
    # Interests and the number of picks are not votes: nothing to fit.
    profile = store.profile(reader.id)
    store.save_profile(Profile(reader.id, interests=("diffusion models",), picks=3))
    assert store.models_due(reader_model.FEATURES) == [] and store.reader_model(reader.id) == fitted
    # A seed paper counts as a 👍; a vote, its undo.
    store.save_profile(Profile(reader.id, interests=("diffusion models",), seeds=(keys[0],), picks=3))
    assert reader_model.fit_due(store) == 1
    store.record_vote(reader.id, keys[DISLIKED], -1, EDITION)
    store.record_vote(reader.id, keys[DISLIKED], 0, EDITION)
    assert reader_model.fit_due(store) == 1 and reader_model.fit_due(store) == 0
    assert profile.liked == store.profile(reader.id).liked


def test_a_model_fitted_while_the_votes_change_stays_due(day):
    store, reader, _batch, keys = day
    vote_as_example(store, reader, keys)
    [(subscriber_id, changed_at)] = store.models_due(reader_model.FEATURES)
    store.record_vote(reader.id, keys[0], 1, EDITION)
    assert not store.save_reader_model(subscriber_id, changed_at, reader_model.FEATURES, b"x" * 1028)
    assert store.reader_model(reader.id).due


def test_a_change_of_features_fits_every_model_again_and_ignores_the_old_ones(day, monkeypatch):
    store, reader, _batch, keys = day
    vote_as_example(store, reader, keys)
    reader_model.fit_due(store)
    monkeypatch.setattr(reader_model, "FEATURES", "other-256/2")
    assert reader_model.load_weights(store, [store.profile(reader.id)]) == {}
    assert [i for i, _ in store.models_due(reader_model.FEATURES)] == [reader.id]
    assert reader_model.fit_due(store) == 1 and store.reader_model(reader.id).features == "other-256/2"
    assert list(reader_model.load_weights(store, [store.profile(reader.id)])) == [reader.id]


def test_forgetting_votes_drops_them_and_the_model_and_undo_brings_them_back(day):
    store, reader, _batch, keys = day
    vote_as_example(store, reader, keys)
    reader_model.fit_due(store)
    before = ([(v.paper_key, v.vote) for v in store.votes(reader.id)], store.profile(reader.id))
    assert store.forget_votes(reader.id) == 4
    assert store.votes(reader.id) == [] and store.profile(reader.id).liked == ()
    assert store.forgotten(reader.id).count == 4
    reader_model.fit_due(store)
    assert store.reader_model(reader.id).weights is None
    assert reader_model.load_weights(store, [store.profile(reader.id)]) == {}
    store.record_vote(reader.id, keys[DISLIKED], 1, EDITION)  # a vote since: it wins over the forgotten one
    assert store.restore_votes(reader.id) == 3 and store.forgotten(reader.id) is None
    votes = dict((v.paper_key, v.vote) for v in store.votes(reader.id))
    assert votes == {**dict(before[0]), keys[DISLIKED]: 1}
    assert set(store.profile(reader.id).liked) == {keys[i] for i in (*LIKED, DISLIKED)}
    assert reader_model.fit_due(store) == 1 and store.reader_model(reader.id).weights is not None
    assert store.restore_votes(reader.id) == 0


def test_forgotten_votes_last_thirty_days(day):
    store, reader, _batch, keys = day
    vote_as_example(store, reader, keys)
    store.forget_votes(reader.id)
    later = store.clock() + dt.timedelta(days=31)
    store.clock = lambda: later
    assert store.forgotten(reader.id) is None and store.restore_votes(reader.id) == 0
    assert store.purge_forgotten_votes() == 0  # restore_votes already dropped them


def http(base: str, path: str, form: dict | None = None) -> lxml.html.HtmlElement:
    body = urllib.parse.urlencode(form).encode() if form is not None else None
    with urllib.request.urlopen(f"{base}{path}", data=body, timeout=60) as answer:
        assert answer.status == 200
        return lxml.html.document_fromstring(answer.read().decode())


def test_what_shapes_the_picks_and_forget_with_undo_through_the_server(day, database_url, tmp_path):
    store, reader, batch, keys = day
    vote_as_example(store, reader, keys)
    port = free_port()
    env = clean_env(NEWSLETTER_DATABASE_URL=database_url, NEWSLETTER_SECRET_KEY=SECRET,
                    NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}")
    page = f"/p/{Signer(SECRET).preferences_token(reader.ref)}"
    with newsletter_server(["serve", "--port", str(port)], port, tmp_path, env) as base:
        # The server's worker fits the model; the page shows what weighs.
        wait_until(lambda: not store.reader_model(reader.id).due, "the model fitted", timeout=120)
        shown = http(base, page)
        words = shown.cssselect("p.words")[0].text_content()
        assert "erasure" in words and batch.papers[LIKED[0]].title in shown.text_content()
        forgotten = http(base, f"{page}/forget", {})
        assert forgotten.cssselect("[role=status]")[0].text_content() == \
            "Your votes are forgotten: they no longer shape your picks."
        wait_until(lambda: store.votes(reader.id) == [], "the votes forgotten")
        assert not forgotten.cssselect("p.words") and forgotten.xpath("//button[@id='unforget']")
        back = http(base, f"{page}/forget/undo", {})
        assert back.cssselect("[role=status]")[0].text_content() == "Your votes are back."
        wait_until(lambda: len(store.votes(reader.id)) == 4, "the votes back")
        wait_until(lambda: store.reader_model(reader.id).weights is not None and not store.reader_model(reader.id).due,
                   "the model fitted again", timeout=120)
        assert http(base, page).cssselect("p.words")
