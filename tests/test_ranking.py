"""Personal picks: the ranking (newsletter.picks.ranking) and the picks of an
edition (newsletter.picks.picking) on real stores: relevant picks for clear
interests on the example day, votes that move papers, rated papers and
recent picks never picked again, one paper whatever its arXiv version."""

from __future__ import annotations

import datetime as dt
import importlib.util
import logging
import statistics
import sys

import pytest
from sqlalchemy import event, update

from conftest import EXAMPLE, ROOT
from newsletter.picks import picking
from newsletter.papers.batches import load_batch
from newsletter.core.models import Batch, DeliveryStatus, Paper, Pick, PicksState, Profile, Reason, RestOfDay, paper_key
from newsletter.picks.picking import EditionPicks
from newsletter.picks.ranking import THRESHOLD, EditionIndex
from newsletter.store import Ledger
from newsletter.store.schema import deliveries_table

DAY = dt.date(2025, 3, 11)


def eval_set():
    """The hand-made evaluation set of bench/picks_eval.py."""
    spec = importlib.util.spec_from_file_location("picks_eval", ROOT / "bench" / "picks_eval.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("picks_eval", module)
    spec.loader.exec_module(module)
    return module.READERS


@pytest.fixture(scope="module")
def example():
    batch = load_batch(EXAMPLE, date=DAY)
    return batch, EditionIndex(batch.papers)


def positions(picks) -> list[int]:
    return [p.position for p in picks]


def test_readers_with_clear_interests_get_relevant_picks(example):
    batch, index = example
    keys = [paper_key(p) for p in batch.papers]
    precision = []
    for spec, wanted in eval_set():
        if isinstance(spec, int):
            profile = Profile(1, seeds=(keys[spec],))
        else:
            profile = Profile(1, interests=tuple(spec))
        picks = index.rank(profile)
        assert len(picks) <= 5
        assert all(p.score >= THRESHOLD for p in picks)
        precision.append(sum(1 for p in picks if p.position in wanted) / 5)
    # A random order gets 0.056 on this set (bench/picks_eval.py).
    assert statistics.mean(precision) >= 0.5, precision


def test_a_reason_says_why(example):
    batch, index = example
    picks = index.rank(Profile(1, interests=("concept erasure", "quantum chemistry")))
    assert picks and all(p.reason.kind == "interest" and p.reason.subject == "concept erasure" for p in picks)
    assert picks[0].reason.text().startswith("matches *concept erasure*")
    seed = paper_key(batch.papers[31])  # Score Forgetting Distillation
    liked = index.rank(Profile(1, seeds=(seed,)))
    assert (liked[0].reason.kind, liked[0].reason.subject) == ("seed", batch.papers[31].title)
    assert liked[0].reason.words  # the words the two papers share
    assert 31 not in positions(liked)  # a seed paper is already known


def test_a_paper_matching_two_interests_ranks_above_one_matching_either(example):
    batch, index = example
    picks = index.rank(Profile(1, interests=("machine unlearning", "diffusion models")))
    # 31 and 32 unlearn concepts in diffusion models; the others are on one of the two.
    assert set(positions(picks)[:2]) == {31, 32}
    assert picks[0].score > max(p.score for p in picks[2:])
    both = next(p for p in picks if p.position == 32)
    assert {both.reason.subject, both.reason.also} == {"machine unlearning", "diffusion models"}
    assert both.reason.text().startswith(f"matches *{both.reason.subject}* and *{both.reason.also}*")
    # Alone, each interest ranks it lower than with the other one.
    alone = {p.position: p.score for p in index.rank(Profile(1, interests=("diffusion models",)))}
    assert both.score > alone.get(32, 0.0)


def test_picks_spread_over_every_interest(example, monkeypatch):
    batch, index = example
    interests = ("machine unlearning", "contrastive learning", "interpretability")
    picks = index.rank(Profile(1, interests=interests))
    assert len(picks) == 5
    assert {p.reason.subject for p in picks} == set(interests)  # a pick from each
    # Ranked by relevance alone, one of the three gets none.
    monkeypatch.setattr("newsletter.picks.ranking.SPREAD_PENALTY", 0.0)
    assert len({p.reason.subject for p in index.rank(Profile(1, interests=interests))}) < 3
    monkeypatch.undo()
    # One interest with matches and one without: every pick from the one.
    one = index.rank(Profile(1, interests=("neural architecture search", "marine biology of coral reefs")))
    assert len(one) == 4 and {p.reason.subject for p in one} == {"neural architecture search"}


def test_a_reason_never_claims_a_match_its_words_do_not_show(example):
    batch, index = example
    hnsw = next(i for i, p in enumerate(batch.papers) if "Hierarchical Navigable Small Worlds" in p.title)
    picks = index.rank(Profile(1, interests=("neural architecture search",)))
    assert hnsw not in positions(picks)  # shares only "search" with the phrase
    everything = index.rank(Profile(1, interests=("neural architecture search",)), limit=85,
                            threshold=float("-inf"))
    reason = next(p.reason for p in everything if p.position == hnsw)
    assert reason.kind == "near" and reason.text().startswith("close to *neural architecture search*")
    for pick in everything:
        if pick.reason.kind == "interest":
            # A claimed match shows words of the phrase (or the paper has the phrase itself).
            text = (batch.papers[pick.position].title + " " + batch.papers[pick.position].abstract).lower()
            assert "neural architecture search" in text or any(
                w in "neural architecture search" for w in pick.reason.words), pick


def test_a_reasons_words_name_each_thing_once(example):
    """No two of a reason's words are the same words in another order or
    form ("concept erased" and "erased concept"), for every paper and the
    example list's phrases."""
    picks_day = load_batch(ROOT / "tests" / "fixtures" / "picks-day.json")
    checked = 0
    for index in (example[1], EditionIndex(picks_day.papers)):
        for interests in (("machine unlearning", "concept erasure"), ("contrastive learning", "continual learning"),
                          ("neural architecture search",)):
            for pick in index.rank(Profile(1, interests=interests), limit=85, threshold=float("-inf")):
                words = [frozenset(word[:5] for word in term.split()) for term in pick.reason.words]
                assert len(words) == len(set(words)), pick.reason
                checked += 1
    assert checked > 85


def test_reasons_are_made_once_per_paper_and_signal(example):
    _batch, index = example
    profiles = [Profile(i, interests=("concept erasure",)) for i in range(1, 4)]
    found = index.rank_many(profiles)
    assert found[1] and all(a.reason is b.reason for a, b in zip(found[1], found[3]))


def test_a_stored_reason_keeps_its_words_and_old_rows_still_read():
    reason = Reason("interest", "machine unlearning", "diffusion models", ("unlearning", "concept erasure"))
    assert Reason.from_stored("interest", reason.stored()) == reason
    assert Reason.from_stored("liked", "A Paper: Its Title") == Reason("liked", "A Paper: Its Title")
    assert Reason("seed", "A\nB").stored() == "A B"  # a subject never breaks the lines
    assert reason.text() == "matches *machine unlearning* and *diffusion models*: unlearning, concept erasure"
    assert Reason("liked", "Paper X").text() == "like *Paper X*, which you liked"
    assert Reason("near", "x", words=("y",)).text() == "close to *x*: y"


def test_no_filler_for_an_interest_nothing_matches(example):
    _batch, index = example
    assert index.rank(Profile(1, interests=("marine biology of coral reefs",))) == []
    assert index.rank(Profile(1)) == []  # nothing told: nothing to pick by
    assert index.rank(Profile(1, interests=("concept erasure",), picks=0)) == []


def test_votes_move_papers(example):
    batch, index = example
    keys = [paper_key(p) for p in batch.papers]
    base = Profile(1, interests=("diffusion models",), picks=10)
    before = positions(index.rank(base, threshold=float("-inf"), limit=85))
    # 👍 a paper on concept erasure: the other erasure papers come up.
    liked = Profile(1, interests=base.interests, liked=(keys[34],), picks=10)
    after_up = positions(index.rank(liked, threshold=float("-inf"), limit=85))
    assert after_up.index(30) < before.index(30)
    # 👎 it instead: they go down.
    disliked = Profile(1, interests=base.interests, disliked=(keys[34],), picks=10)
    after_down = positions(index.rank(disliked, threshold=float("-inf"), limit=85))
    assert after_down.index(30) > before.index(30)
    # A reader with only votes and no typed interest still gets picks.
    only_votes = index.rank(Profile(1, liked=(keys[31],)))
    assert only_votes and {0, 32} & set(positions(only_votes))
    assert all(p.reason.kind == "liked" for p in only_votes)


def test_a_followed_author_and_a_category(example):
    papers = (
        Paper("Quiet results on graphs", "We study graphs.", authors=("Ada Lovelace", "B. C."), arxiv_id="2503.00001",
              categories=("cs.DM",)),
        Paper("Loud results on vision", "We study images.", authors=("D. E.",), arxiv_id="2503.00002",
              categories=("cs.CV",)),
        Paper("Other", "Nothing.", arxiv_id="2503.00003", categories=("math.CO",)),
    )
    index = EditionIndex(papers)
    picks = index.rank(Profile(1, authors=("ada lovelace",)))  # any case, any accents
    assert [(p.position, p.reason.text()) for p in picks] == [(0, "by Ada Lovelace, whom you follow")]
    by_category = index.rank(Profile(1, categories=("cs.CV",)), threshold=0.0)
    assert positions(by_category) == [1] and by_category[0].reason.kind == "category"


# --------------------------------------------------------------------------
# an edition's picks, with the store


def day_batch(day: dt.date, ids: list[str], version: str = "") -> Batch:
    titles = {
        "2503.00001": ("Concept erasure for diffusion models", "We erase concepts from diffusion models."),
        "2503.00002": ("Machine unlearning at scale", "Unlearning data from trained models, machine unlearning."),
        "2503.00003": ("Open-vocabulary object detection", "Detecting objects of any class."),
        "2503.00004": ("Faster tokenizers", "Tokenizers made fast."),
    }
    return Batch(day, tuple(Paper(titles[i][0], titles[i][1], arxiv_id=i, url=f"https://arxiv.org/abs/{i}{version}")
                            for i in ids), source="test")


def sent(store, day: dt.date, picks: dict[int, list[Pick]]) -> None:
    """Record the edition of ``day`` as sent to these readers, with their
    picks, as the send loop does (pending with the picks, then sent)."""
    Ledger(store, day).mark_pending(picks, picks=picks)
    with store.engine.begin() as conn:
        conn.execute(update(deliveries_table).where(deliveries_table.c.issue_date == day.isoformat())
                     .values(status=DeliveryStatus.SENT))


def test_a_paper_picked_yesterday_or_rated_is_not_picked_today(store):
    reader, _ = store.add("ada@example.com")
    other, _ = store.add("bob@example.com")
    interests = ("concept erasure", "machine unlearning")
    for subscriber in (reader, other):
        store.save_profile(Profile(subscriber.id, interests=interests))
    monday, tuesday = dt.date(2025, 3, 10), dt.date(2025, 3, 11)
    first = day_batch(monday, ["2503.00001", "2503.00004"])
    store.store_batch(first)
    picks_monday = EditionPicks(store, monday.isoformat(), monday, first.papers).for_readers([reader.id])
    assert [p.key for p in picks_monday[reader.id].picks] == ["2503.00001"]
    sent(store, monday, {reader.id: list(picks_monday[reader.id].picks)})

    # Tuesday the same paper trends again (as v2), with another one.
    second = day_batch(tuesday, ["2503.00001", "2503.00002", "2503.00003"], version="v2")
    store.store_batch(second)
    store.record_vote(other.id, "2503.00002", 1, monday.isoformat())
    today = EditionPicks(store, tuesday.isoformat(), tuesday, second.papers).for_readers([reader.id, other.id])
    assert [p.key for p in today[reader.id].picks] == ["2503.00002"]  # not the one picked yesterday
    assert [p.key for p in today[other.id].picks] == ["2503.00001"]  # never a paper they rated
    # The same edition asked again (a rerun) gives the stored picks, even if
    # the reader's interests changed meanwhile.
    Ledger(store, tuesday).mark_pending([reader.id], picks={reader.id: list(today[reader.id].picks)})
    store.save_profile(Profile(reader.id, interests=("open-vocabulary detection",)))
    again = EditionPicks(store, tuesday.isoformat(), tuesday, second.papers).for_readers([reader.id])
    assert again[reader.id].picks == today[reader.id].picks


def test_the_30_day_rule_ends(store):
    reader, _ = store.add("ada@example.com")
    store.save_profile(Profile(reader.id, interests=("concept erasure",)))
    long_ago = dt.date(2025, 2, 1)
    batch = day_batch(long_ago, ["2503.00001"])
    store.store_batch(batch)
    chosen = EditionPicks(store, long_ago.isoformat(), long_ago, batch.papers).for_readers([reader.id])
    sent(store, long_ago, {reader.id: list(chosen[reader.id].picks)})
    later = dt.date(2025, 3, 11)
    again = day_batch(later, ["2503.00001"])
    store.store_batch(again)
    picks = EditionPicks(store, later.isoformat(), later, again.papers).for_readers([reader.id])
    assert [p.key for p in picks[reader.id].picks] == ["2503.00001"]  # 38 days later: may be picked again


def test_a_day_of_new_papers_reads_no_readers_picks_and_a_repeated_paper_is_still_held_back(store):
    reader, _ = store.add("ada@example.com")
    store.save_profile(Profile(reader.id, interests=("concept erasure", "machine unlearning")))
    monday, tuesday, wednesday = dt.date(2025, 3, 10), dt.date(2025, 3, 11), dt.date(2025, 3, 12)
    first = day_batch(monday, ["2503.00001", "2503.00004"])
    store.store_batch(first)
    sent(store, monday, {reader.id: list(EditionPicks(store, monday.isoformat(), monday, first.papers)
                                         .for_readers([reader.id])[reader.id].picks)})
    statements = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    def picks_on(day, batch):
        store.store_batch(batch)
        statements.clear()
        event.listen(store.reader, "before_cursor_execute", seen)
        try:
            return EditionPicks(store, day.isoformat(), day, batch.papers).for_readers([reader.id])[reader.id]
        finally:
            event.remove(store.reader, "before_cursor_execute", seen)

    # Tuesday's papers are all new: the month's picks of no reader are read.
    tuesday_picks = picks_on(tuesday, day_batch(tuesday, ["2503.00002", "2503.00003"]))
    assert [p.key for p in tuesday_picks.picks] == ["2503.00002"]
    assert not any("JOIN deliveries" in s for s in statements), statements
    # Wednesday Monday's pick trends again: the reader's picks are read, and it is held back.
    wednesday_picks = picks_on(wednesday, day_batch(wednesday, ["2503.00001"], version="v2"))
    assert (wednesday_picks.state, wednesday_picks.held) == (PicksState.HELD, 1)
    assert any("JOIN deliveries" in s for s in statements), statements


def test_a_paper_picked_from_a_day_whose_batch_was_corrected_after_is_not_picked_again(store):
    reader, _ = store.add("ada@example.com")
    store.save_profile(Profile(reader.id, interests=("concept erasure",)))
    monday, tuesday = dt.date(2025, 3, 10), dt.date(2025, 3, 11)
    first = day_batch(monday, ["2503.00001", "2503.00004"])
    store.store_batch(first)
    chosen = EditionPicks(store, monday.isoformat(), monday, first.papers).for_readers([reader.id])
    sent(store, monday, {reader.id: list(chosen[reader.id].picks)})
    # Monday's feed corrected after its send: the paper picked is no longer among its appearances.
    store.store_batch(day_batch(monday, ["2503.00004"]))
    again = day_batch(tuesday, ["2503.00001", "2503.00003"])
    store.store_batch(again)
    today = EditionPicks(store, tuesday.isoformat(), tuesday, again.papers).for_readers([reader.id])
    assert (today[reader.id].state, today[reader.id].held) == (PicksState.HELD, 1)


def test_states_of_readers(store):
    keen, _ = store.add("keen@example.com")
    unmatched, _ = store.add("unmatched@example.com")
    off, _ = store.add("off@example.com")
    new, _ = store.add("new@example.com")
    store.save_profile(Profile(keen.id, interests=("concept erasure",)))
    store.save_profile(Profile(unmatched.id, interests=("marine biology",)))
    store.save_profile(Profile(off.id, interests=("concept erasure",), picks=0))
    batch = day_batch(DAY, ["2503.00001", "2503.00004"])
    store.store_batch(batch)
    found = EditionPicks(store, DAY.isoformat(), DAY, batch.papers).for_readers([keen.id, unmatched.id, off.id, new.id])
    assert {i: r.state for i, r in found.items()} == {keen.id: "picks", unmatched.id: "none", off.id: "off",
                                                       new.id: "invite"}


def test_each_reader_gets_their_rest_of_the_day_on_a_first_run_and_a_rerun(store):
    keen, _ = store.add("keen@example.com")
    off, _ = store.add("off@example.com")
    plain, _ = store.add("plain@example.com")  # no profile
    told, _ = store.add("told@example.com")
    store.save_profile(Profile(keen.id, interests=("concept erasure",), rest=RestOfDay.COUNT))
    store.save_profile(Profile(off.id, interests=("concept erasure",), picks=0, rest=RestOfDay.COUNT))
    store.save_profile(Profile(told.id, interests=("concept erasure",)))
    batch = day_batch(DAY, ["2503.00001", "2503.00004"])
    store.store_batch(batch)
    ids = [keen.id, off.id, plain.id, told.id]
    statements = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(store.reader, "before_cursor_execute", seen)
    try:
        found = EditionPicks(store, DAY.isoformat(), DAY, batch.papers).for_readers(ids)
    finally:
        event.remove(store.reader, "before_cursor_execute", seen)
    assert {i: (r.state, r.rest) for i, r in found.items()} == {
        keen.id: (PicksState.PICKS, RestOfDay.COUNT), off.id: (PicksState.OFF, RestOfDay.COUNT),
        plain.id: (PicksState.INVITE, RestOfDay.TITLES), told.id: (PicksState.PICKS, RestOfDay.TITLES)}
    # The choice comes with the profiles: one read for these readers, not one each.
    assert sum("FROM profiles" in s for s in statements) == 1, statements
    # A rerun: the picks stored for keen and told are sent again, each with
    # the choice as it stands now.
    Ledger(store, DAY).mark_pending([keen.id, told.id], picks={i: list(found[i].picks) for i in (keen.id, told.id)})
    store.save_profile(Profile(told.id, interests=("concept erasure",), rest=RestOfDay.COUNT))
    again = EditionPicks(store, DAY.isoformat(), DAY, batch.papers).for_readers(ids)
    assert {i: (r.picks, r.rest) for i, r in again.items()} == {
        keen.id: (found[keen.id].picks, RestOfDay.COUNT), off.id: ((), RestOfDay.COUNT),
        plain.id: ((), RestOfDay.TITLES), told.id: (found[told.id].picks, RestOfDay.COUNT)}
    # A reader asked for who is not on the list at all: every title.
    assert EditionPicks(store, DAY.isoformat(), DAY, batch.papers).for_readers([99_999])[99_999].rest == \
        RestOfDay.TITLES


def test_a_list_where_nobody_said_anything_never_builds_the_ranking(store, monkeypatch):
    new, _ = store.add("new@example.com")
    off, _ = store.add("off@example.com")
    store.save_profile(Profile(off.id, interests=("concept erasure",), picks=0))
    batch = day_batch(DAY, ["2503.00001", "2503.00004"])

    def no_index(*args, **kwargs):
        raise AssertionError("the ranking was built for readers who need none")

    monkeypatch.setattr(picking, "EditionIndex", no_index)
    found = EditionPicks(store, DAY.isoformat(), DAY, batch.papers).for_readers([new.id, off.id])
    assert {i: r.state for i, r in found.items()} == {new.id: "invite", off.id: "off"}


def test_versions_of_one_paper_are_one_paper(store):
    monday = dt.date(2025, 3, 10)
    store.store_batch(day_batch(monday, ["2503.00001"], version="v1"))
    store.store_batch(day_batch(DAY, ["2503.00001", "2503.00002"], version="v2"))
    assert paper_key(Paper("x", "y", arxiv_id="2503.00001")) == "2503.00001"
    assert store.edition_papers(monday) == ["2503.00001"]
    assert store.edition_papers(DAY) == ["2503.00001", "2503.00002"]
    assert set(store.papers(["2503.00001", "2503.00002"])) == {"2503.00001", "2503.00002"}
    # Storing a day again changes nothing.
    assert store.store_batch(day_batch(DAY, ["2503.00001", "2503.00002"], version="v2")) == 0


def test_loading_the_model_leaves_the_logging_set_up_alone():
    # WordLlama configures the root logger when first imported; with it,
    # every library's INFO lines (boto3's credentials) would reach stderr. A
    # fresh process, so that the import really happens.
    import subprocess

    code = ("import logging; from newsletter.picks.ranking import _embedder; _embedder(); "
            "root = logging.getLogger(); print(len(root.handlers), root.level)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", str(logging.WARNING)]
