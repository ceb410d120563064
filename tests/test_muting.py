"""Negative keywords: a reader's muted phrases.

What a phrase matches (words of the title or abstract, case, accents and
simple plurals ignored, whole words only); the ranking never picks a paper
that says one; the profile keeps the phrases and the choice of where they
hide papers (both databases), through votes and the reader-action inbox;
the picks of an edition carry the papers muted on a reader's top cards for
the readers who chose so; and a reader's copy leaves those cards out, the
next papers taking their places, the same in the outbox's message and in
what SES renders from the bulk template.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import json
import re

import pybars
import pytest

from conftest import EXAMPLE, SECRET
from newsletter.core.config import Settings
from newsletter.core.models import Batch, Muting, Paper, PicksState, Profile
from newsletter.issue.render import render_for_readers
from newsletter.papers.batches import load_batch
from newsletter.picks.muting import MutedPapers, says
from newsletter.picks.picking import EditionPicks, muted_on_top
from newsletter.picks.ranking import EditionIndex
from newsletter.readers.tokens import Signer
from newsletter.sending.personalize import PreparedMessage, Recipient
from newsletter.sending.senders.ses import LITERALS, template_content, template_data
from newsletter.store import Ledger
from newsletter.store.inbox import PreferencesPayload

DAY = dt.date(2025, 3, 11)


@pytest.fixture(scope="module")
def example():
    return load_batch(EXAMPLE, date=DAY)


# --------------------------------------------------------------------------
# what a phrase matches


@pytest.mark.parametrize("phrase, title, abstract, muted", [
    ("diffusion models", "Better Diffusion Model Training", "", True),  # a plural or not
    ("diffusion model", "Diffusion-models are everywhere", "", True),  # a hyphen between words
    ("LLMs", "An LLM for code", "", True),
    ("policy", "Learning policies fast", "", True),
    ("biases", "On bias", "", True),
    ("Éclair", "", "We bake an ECLAIR.", True),  # accents and case; the abstract counts
    ("GAN", "A study of the organ", "", False),  # whole words only
    ("art", "Artificial intelligence", "", False),
    ("language models", "Language and models", "", False),  # the words in order, together
    ("!!!", "Anything at all", "", False),  # no word: mutes nothing
])
def test_a_muted_phrase_matches_the_words_of_a_title_or_abstract(phrase, title, abstract, muted):
    assert says(phrase, Paper(title, abstract)) is muted


def test_keywords_are_not_where_a_phrase_is_looked_for():
    assert not says("robotics", Paper("A title", "An abstract", keywords=("robotics",)))


# --------------------------------------------------------------------------
# the ranking


def test_a_paper_that_says_a_muted_phrase_is_never_picked(example):
    index = EditionIndex(example.papers)
    muted = MutedPapers(example.papers).saying("diffusion models")
    reader = Profile(1, interests=("concept erasure",), picks=10)
    before = [p.position for p in index.rank(reader)]
    assert set(before) & muted  # without the phrase, some picks say it
    after = index.rank(dataclasses.replace(reader, muted=("Diffusion Model",)))
    assert after and not {p.position for p in after} & muted
    # The others keep their order.
    kept = [i for i in before if i not in muted]
    assert [p.position for p in after][:len(kept)] == kept
    # Whatever else makes a paper eligible: a followed author, a category.
    papers = [dataclasses.replace(p, authors=("Ada Lovelace",), categories=("cs.CV",)) for p in day_batch().papers]
    follower = Profile(1, authors=("Ada Lovelace",), categories=("cs.CV",), muted=("diffusion models",))
    assert [p.position for p in EditionIndex(papers).rank(follower, limit=10)] == [1, 2, 3]
    # Where the muted phrases hide papers makes no difference to picks.
    top = dataclasses.replace(reader, muted=("diffusion models",), muting=Muting.TOP)
    assert [p.position for p in index.rank(top)] == [p.position for p in after]


# --------------------------------------------------------------------------
# the profile


def test_the_profile_keeps_muted_phrases_and_where_they_hide_papers(store):
    reader, _ = store.add("ada@example.com")
    other, _ = store.add("bob@example.com")
    saved = store.save_profile(Profile(reader.id, ("graphs",), muted=("large language models", "Ünïcode"),
                                       muting=Muting.TOP))
    store.save_profile(Profile(other.id, ("graphs",)))
    assert store.profile(reader.id) == saved == Profile(reader.id, ("graphs",),
                                                        muted=("large language models", "Ünïcode"),
                                                        muting=Muting.TOP)
    assert (store.profile(other.id).muted, store.profile(other.id).muting) == ((), Muting.PICKS)
    # A vote keeps them; the profiles of many readers are read with them.
    store.record_vote(reader.id, "2503.00001", 1, "2025-03-11")
    assert store.profiles([reader.id, other.id])[reader.id] == dataclasses.replace(saved, liked=("2503.00001",))
    # A save without them empties them, and the choice goes back to picks only.
    store.save_profile(Profile(reader.id, ("graphs",)))
    assert (store.profile(reader.id).muted, store.profile(reader.id).muting) == ((), Muting.PICKS)


def test_a_saved_form_waiting_in_the_inbox_keeps_them():
    profile = Profile(7, ("graphs",), muted=("robots",), muting=Muting.TOP)
    payload = PreferencesPayload.of(7, profile)
    again = PreferencesPayload._from_fields(json.loads(json.dumps(payload._fields())))
    assert again == payload and again.applied_to(Profile(7, liked=("x",))) == dataclasses.replace(profile, liked=("x",))
    # A form saved before muting existed: nothing muted.
    old = {k: v for k, v in payload._fields().items() if k not in ("muted", "muting")}
    assert PreferencesPayload._from_fields(old).applied_to(Profile(7)).muted == ()


# --------------------------------------------------------------------------
# an edition's picks


def day_batch() -> Batch:
    papers = [("Concept erasure for diffusion models", "We erase concepts from diffusion models."),
              ("Machine unlearning at scale", "Unlearning data from trained models."),
              ("Open-vocabulary object detection", "Detecting objects of any class with language models."),
              ("Faster tokenizers", "Tokenizers made fast.")]
    return Batch(DAY, tuple(Paper(title, abstract, arxiv_id=f"2503.0000{n}", url=f"https://arxiv.org/abs/2503.0000{n}")
                            for n, (title, abstract) in enumerate(papers, start=1)), source="test")


def test_each_reader_gets_the_papers_muted_on_their_top_cards_when_they_chose_so(store):
    top, picks_only, off, plain = (store.add(f"{who}@example.com")[0] for who in ("top", "picks", "off", "plain"))
    store.save_profile(Profile(top.id, ("concept erasure", "machine unlearning"), muted=("diffusion model",),
                               muting=Muting.TOP))
    store.save_profile(Profile(picks_only.id, ("concept erasure", "machine unlearning"), muted=("diffusion model",)))
    # Picks off, nothing to pick by: their top cards still leave muted papers out.
    store.save_profile(Profile(off.id, picks=0, muted=("language models", "tokenizer"), muting=Muting.TOP))
    batch = day_batch()
    store.store_batch(batch)
    ids = [top.id, picks_only.id, off.id, plain.id]
    found = EditionPicks(store, DAY.isoformat(), DAY, batch.papers).for_readers(ids)
    assert {i: (r.state, r.muted) for i, r in found.items()} == {
        top.id: (PicksState.PICKS, frozenset({0})), picks_only.id: (PicksState.PICKS, frozenset()),
        off.id: (PicksState.OFF, frozenset({2, 3})), plain.id: (PicksState.INVITE, frozenset())}
    for i in (top.id, picks_only.id):
        assert [p.key for p in found[i].picks] == ["2503.00002"]  # never the paper on diffusion models
    # A rerun sends the stored picks, with the muted papers as the profile has them now.
    Ledger(store, DAY).mark_pending([top.id], picks={top.id: list(found[top.id].picks)})
    store.save_profile(Profile(top.id, ("concept erasure",), muted=("object detection",), muting=Muting.TOP))
    again = EditionPicks(store, DAY.isoformat(), DAY, batch.papers).for_readers([top.id])[top.id]
    assert (again.picks, again.muted) == (found[top.id].picks, frozenset({2}))
    assert muted_on_top(batch.papers, store.profile(top.id)) == frozenset({2})
    assert muted_on_top(batch.papers, store.profile(picks_only.id)) == frozenset()


# --------------------------------------------------------------------------
# the reader's copy


@pytest.fixture(scope="module")
def issue(example):
    return render_for_readers(example, Settings(secret_key=SECRET), Signer(SECRET))


def recipient(issue, muted: frozenset[int]) -> Recipient:
    signer, ref, base = Signer(SECRET), "reader-ref-00000000001", "http://127.0.0.1:8000"
    return Recipient(1, "reader1@example.org", None, signer.unsubscribe_url(base, ref),
                     signer.preferences_url(base, ref), signer.feedback_reader_part(ref, issue.edition),
                     PicksState.NONE, muted=muted)


def top_of_the_day(text: str) -> list[str]:
    """The numbered titles under "TOP OF THE DAY" in a text part."""
    section = text.split("TOP OF THE DAY", 1)[1].split("MORE PAPERS TODAY", 1)[0]
    return re.findall(r"^\d+\. (.+)$", section, re.MULTILINE)


def outbox_text(issue, reader: Recipient) -> str:
    message = email.message_from_bytes(PreparedMessage(issue, "N <n@example.com>").render(reader),
                                       policy=email.policy.default)
    return message.get_body(("plain",)).get_content().replace("\r\n", "\n")


def ses_text(issue, reader: Recipient) -> str:
    data = {**LITERALS, **json.loads(json.dumps(template_data(reader, issue)))}
    return str(pybars.Compiler().compile(template_content(issue)["Text"])(data))


def test_a_muted_paper_leaves_the_top_cards_and_the_next_paper_takes_its_place(example, issue):
    muted = MutedPapers(example.papers).of(Profile(1, muted=("concept bottlenecks",)))
    assert 1 in muted and muted <= set(range(len(example.papers)))
    titles = [" ".join(p.title.split()) for p in example.papers]
    plain = top_of_the_day(outbox_text(issue, recipient(issue, frozenset())))
    assert len(plain) == issue.top_count and plain[1].startswith(titles[1][:40])
    for shown in (outbox_text(issue, recipient(issue, muted)), ses_text(issue, recipient(issue, muted))):
        cards = top_of_the_day(shown)
        # As many cards: the muted paper's gone, the next paper not muted shows.
        assert len(cards) == issue.top_count
        assert not any(card.startswith(titles[i][:40]) for card in cards for i in muted)
        next_paper = next(i for i in range(issue.top_count, len(titles)) if i not in muted)
        assert cards[-1].startswith(titles[next_paper][:30])
        # Its title is still in the list of the rest of the day (the web edition has them all).
        assert titles[1][:40] in " ".join(shown.split("MORE PAPERS TODAY", 1)[1].split())
    reader = recipient(issue, muted)
    assert ses_text(issue, reader).rstrip("\n") == outbox_text(issue, reader).rstrip("\n")


def test_one_send_keeps_apart_the_top_cards_of_readers_who_muted_and_who_did_not(example, issue):
    # A send keeps each kind of reader's span flags (template_data's
    # ``kept``): a reader who muted a top card is a kind of their own.
    muted = MutedPapers(example.papers).of(Profile(1, muted=("concept bottlenecks",)))
    spans: dict = {}
    plain, hiding = recipient(issue, frozenset()), recipient(issue, muted)
    for reader in (plain, hiding, plain):
        shared = template_data(reader, issue, spans)
        alone = template_data(reader, issue)
        assert {k: v for k, v in shared.items() if k.startswith("k")} == {
            k: v for k, v in alone.items() if k.startswith("k")}
    assert template_data(plain, issue, spans)["k"][1] and not template_data(hiding, issue, spans)["k"][1]
