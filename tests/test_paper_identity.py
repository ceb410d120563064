"""One paper, whatever the source, on SQLite and PostgreSQL: a paper stored
from a day's page text (no arXiv id: key ``title:…``) and the same paper
later from the API (with its arXiv id) are one paper in the archive, for
votes, for the 30-day rule and in the weekly edition; and the other way
round (the API first). Old ``title:`` addresses redirect to the paper's
page, and 👍/👎 links of emails sent before still work."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select, update

from conftest import EXAMPLE, FIXTURES, SECRET
from newsletter.core.models import Batch, DeliveryStatus, Paper, Edition, EditionKind, Pick, Profile, Reason, paper_key, title_key
from newsletter.issue.editions import edition_batch
from newsletter.papers.batches import load_batch, parse_batch
from newsletter.picks.picking import EditionPicks
from newsletter.readers.tokens import Signer
from newsletter.store import Ledger
from newsletter.store.schema import deliveries_table, picked_papers_table

TEXT_DAY = dt.date(2025, 3, 11)  # the example: page text, no ids
API_DAY = dt.date(2025, 3, 12)
THIRD_DAY = dt.date(2025, 3, 13)
TITLE = "Sparse Concept Bottleneck Models: Gumbel Tricks in Contrastive Learning"
ARXIV_ID = "2503.05555"
OLD_KEY = title_key(TITLE)


def api_day(day: dt.date, title: str = TITLE.upper() + " ") -> object:
    """A day of the daily papers API (the fixture's first entry) whose one
    paper is the example's, with an arXiv id, its title spelled otherwise."""
    entry = json.loads((FIXTURES / "api" / "daily_papers.json").read_text())[0]
    entry["paper"].update(id=ARXIV_ID, title=title)
    entry["title"] = title
    return parse_batch(json.dumps([entry]).encode(), "api", date=day)


def text_day(day: dt.date = TEXT_DAY):
    return load_batch(EXAMPLE, date=day)


def sent(store, day: dt.date, picks: dict[int, list[Pick]]) -> None:
    """Record the edition of ``day`` as sent to these readers, with their picks."""
    Ledger(store, day).mark_pending(picks, picks=picks)
    with store.engine.begin() as conn:
        conn.execute(update(deliveries_table).where(deliveries_table.c.issue_date == day.isoformat())
                     .values(status=DeliveryStatus.SENT))


def the_paper_is_one(store) -> None:
    """What one paper means in the store."""
    assert store.paper(OLD_KEY) is None
    paper, appearances = store.paper(ARXIV_ID)
    assert paper.arxiv_id == ARXIV_ID and {a.date for a in appearances} == {TEXT_DAY, API_DAY}
    found = store.search_papers("gumbel tricks contrastive")
    assert [hit.key for hit in found.hits] == [ARXIV_ID] and found.total == 1
    assert store.canonical_keys([OLD_KEY, ARXIV_ID]) == {OLD_KEY: ARXIV_ID}
    assert store.papers([OLD_KEY])[OLD_KEY].arxiv_id == ARXIV_ID  # old references still read
    weekly = edition_batch(store, Edition(THIRD_DAY, EditionKind.WEEKLY))
    assert [paper_key(p) for p in weekly.papers].count(ARXIV_ID) == 1
    assert not any(paper_key(p) == OLD_KEY for p in weekly.papers)
    assert len(weekly.papers) == len({p.title.casefold().strip() for p in weekly.papers})


def test_the_page_text_then_the_api_is_one_paper_for_votes_picks_and_weeklies(store):
    reader, _ = store.add("ada@example.com")
    voter, _ = store.add("bob@example.com")
    store.save_profile(Profile(reader.id, interests=("concept bottleneck models",)))
    store.save_profile(Profile(voter.id, interests=("concept bottleneck models",)))
    first = text_day()
    store.store_batch(first)
    picked = EditionPicks(store, TEXT_DAY.isoformat(), TEXT_DAY, first.papers).for_readers([reader.id])
    assert OLD_KEY in [p.key for p in picked[reader.id].picks]
    sent(store, TEXT_DAY, {reader.id: list(picked[reader.id].picks)})
    store.record_vote(voter.id, OLD_KEY, 1, TEXT_DAY.isoformat())

    second = api_day(API_DAY)
    store.store_batch(second)
    the_paper_is_one(store)
    # The vote and the pick made under the old key now name the arXiv id.
    assert [(v.paper_key, v.vote) for v in store.votes(voter.id)] == [(ARXIV_ID, 1)]
    assert store.profile(voter.id).liked == (ARXIV_ID,)
    assert store.rated([ARXIV_ID, OLD_KEY], [voter.id]) == {voter.id: {ARXIV_ID, OLD_KEY}}
    assert store.recently_picked(API_DAY, [ARXIV_ID], [reader.id]) == {reader.id: {ARXIV_ID}}
    # Neither gets it again: picked within 30 days, or rated.
    today = EditionPicks(store, API_DAY.isoformat(), API_DAY, second.papers).for_readers([reader.id, voter.id])
    assert all(ARXIV_ID not in [p.key for p in today[i].picks] for i in (reader.id, voter.id))
    # A vote through an email sent before lands on the paper.
    store.record_vote(voter.id, OLD_KEY, -1, TEXT_DAY.isoformat())
    assert [(v.paper_key, v.vote) for v in store.votes(voter.id)] == [(ARXIV_ID, -1)]
    assert (store.profile(voter.id).liked, store.profile(voter.id).disliked) == ((), (ARXIV_ID,))


def test_the_api_then_the_page_text_is_one_paper(store):
    store.store_batch(api_day(API_DAY))
    # The page text of an earlier day, stored after.
    later = text_day()
    store.store_batch(later)
    the_paper_is_one(store)
    assert store.edition_papers(TEXT_DAY)[1] == ARXIV_ID  # its second paper, stored under the id
    assert store.paper_aliases(ARXIV_ID) == [OLD_KEY]
    # Picks made from the page text's batch (old keys) are stored and counted under the id.
    reader, _ = store.add("ada@example.com")
    sent(store, TEXT_DAY, {reader.id: [Pick(1, OLD_KEY, 0.5, Reason("interest", "concept bottleneck models"))]})
    assert store.picks_of(TEXT_DAY.isoformat(), [reader.id])[reader.id][0].key == ARXIV_ID
    assert store.recently_picked(THIRD_DAY, [OLD_KEY, ARXIV_ID], [reader.id]) == {reader.id: {OLD_KEY, ARXIV_ID}}


def test_both_copies_in_one_batch_and_the_same_day_stored_again(store):
    both = text_day()
    store.store_batch(both)
    store.store_batch(api_day(API_DAY))
    assert store.store_batch(both) == 0  # the page text again: nothing new, and still one paper
    the_paper_is_one(store)


def test_a_title_two_arxiv_papers_share_is_not_guessed_between(store):
    twins = tuple(Paper("A Survey of Surveys", f"Survey number {n}.", arxiv_id=f"2503.0999{n}") for n in (1, 2))
    store.store_batch(Batch(API_DAY, twins))
    store.store_batch(Batch(THIRD_DAY, (Paper("A survey of surveys!", "Which one?"),)))
    assert store.canonical_keys(["title:a-survey-of-surveys"]) == {}
    assert store.paper("title:a-survey-of-surveys") is not None


@pytest.mark.parametrize("suffix", ["", "/thumbnail.png"])
def test_old_title_addresses_redirect_to_the_papers_page(db, web_client, suffix):
    db.store_batch(text_day())
    db.store_batch(api_day(API_DAY))
    client = web_client()
    response = client.get(f"/papers/{OLD_KEY}{suffix}")
    assert response.status_code == 308
    assert response.headers["Location"].endswith(f"/papers/{ARXIV_ID}{suffix}")
    assert client.get("/papers/title:no-such-paper").status_code == 404


def test_a_vote_link_of_an_email_sent_before_counts_for_the_paper(db, web_client):
    db.store_batch(text_day())
    reader, _ = db.add("ada@example.com")
    token = Signer(SECRET).feedback_token(reader.ref, TEXT_DAY.isoformat(), 1, OLD_KEY)  # the second paper
    db.store_batch(api_day(API_DAY))
    client = web_client()
    assert client.get(f"/f/{token}/up").status_code == 200
    assert client.post(f"/f/{token}/up").status_code == 200
    client.application.extensions["newsletter"].actions.run_pending()
    assert [(v.paper_key, v.vote) for v in db.votes(reader.id)] == [(ARXIV_ID, 1)]


def test_picks_written_before_a_retry_or_by_an_earlier_run_are_kept_not_written_twice(store):
    """A send writes each reader's picks with their "pending" row. On a
    first try of a new edition it does not look for stored ones; a retry
    of the same readers (their rows forgotten after a throttled call) and
    a later run (the edition has picks) look, and keep what is stored."""
    store.store_batch(text_day())
    readers = [store.add(f"r{n}@example.com")[0] for n in range(3)]
    mine = {r.id: [Pick(n, f"k{n}", 0.5, Reason("interest", "concept erasure")) for n in range(2)] for r in readers}
    other = {r.id: [Pick(7, "k7", 0.9, Reason("author", "Ada"))] for r in readers}
    day = TEXT_DAY.isoformat()
    ledger = Ledger(store, TEXT_DAY)
    ledger.mark_pending(mine, picks=mine, resending_unknown=False, first_try=True)
    ledger.record([], forget=list(mine))  # throttled: nothing sent, rows forgotten
    ledger.mark_pending(mine, picks=other, resending_unknown=False, first_try=False)
    assert store.picks_of(day, mine) == mine
    ledger.record([], forget=list(mine))
    rerun = Ledger(store, TEXT_DAY)  # a later run of the same edition
    rerun.mark_pending(mine, picks=other, resending_unknown=False, first_try=True)
    assert store.picks_of(day, mine) == mine


def test_an_edition_that_picked_the_paper_under_both_keys_still_holds_it_back_for_both_readers(store):
    one, _ = store.add("ada@example.com")
    other, _ = store.add("bob@example.com")
    store.store_batch(text_day())
    why = Reason("interest", "concept bottleneck models")
    # The same edition picked the paper under its page-text key for one reader
    # and under its arXiv id for the other (stored before they were known as one).
    sent(store, TEXT_DAY, {one.id: [Pick(1, OLD_KEY, 0.5, why)], other.id: [Pick(1, ARXIV_ID, 0.5, why)]})
    store.store_batch(api_day(API_DAY))
    the_paper_is_one(store)
    with store.engine.connect() as conn:
        assert conn.execute(select(picked_papers_table.c.paper_key, picked_papers_table.c.edition)).all() == [
            (ARXIV_ID, TEXT_DAY.isoformat())]
    assert store.recently_picked(THIRD_DAY, [ARXIV_ID], [one.id, other.id]) == {one.id: {ARXIV_ID},
                                                                                  other.id: {ARXIV_ID}}
