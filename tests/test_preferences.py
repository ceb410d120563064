"""The reader's preferences page (``/p/<token>``), its link on the
unsubscribe page, the interests of the sign-up form carried through the
confirmation, and seed papers fetched from the arXiv API in the background
(a stand-in on 127.0.0.1).

Flask's test client on ``create_app``, on both databases (the ``store``
fixture: SQLite, then PostgreSQL); what an unsubscribed reader is told,
through the real ``newsletter serve``.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
import urllib.parse
import urllib.request

import lxml.html
import pytest
from itsdangerous import URLSafeSerializer

from arxiv_standin import ArxivStandIn
from conftest import FIXTURES, SECRET, clean_env, free_port, newsletter_server, wait_until
from newsletter.readers.actions import ARXIV_SPACING_SECONDS, MAX_PENDING_LOOKUPS, RETRY_BASE_SECONDS, ReaderActions
from newsletter.papers.batches import load_batch
from newsletter.core.errors import TokenError
from newsletter.picks.interests import MAX_INTERESTS, MAX_PHRASE_CHARS, MAX_SEEDS
from newsletter.core.models import Muting, Profile, RestOfDay, SubscriberStatus
from newsletter.readers.tokens import PREFERENCES_SALT, Signer
from newsletter.web import mask_email

DAY = dt.date(2025, 3, 11)
EDITION = DAY.isoformat()
BATCH = FIXTURES / "picks-day.json"
OTHER_SECRET = "ly12xlEa51C9FWaRReYCbCWzyprWlYLeTDXuVOCodx0"
FORM = {"interests": "concept erasure\nprotein folding", "authors": "Grace Hopper", "categories": "cs.cv, q-bio.BM",
        "seeds": "https://arxiv.org/abs/2503.00004v2", "picks": "3"}


# --------------------------------------------------------------------------
# helpers


@pytest.fixture
def site(store, web_client):
    """The example day's papers stored, two readers (Alice and Bob), and a
    function making a test client (no cookies) of the app."""
    store.store_batch(load_batch(BATCH))
    alice, _ = store.add("alice.liddell@example.com", "Alice")
    bob, _ = store.add("bob@example.org", "Bob")

    def client(**overrides):
        return web_client(**{"base_url": "https://papers.example.org", **overrides})

    return store, alice, bob, client


def path_of(reader) -> str:
    return f"/p/{Signer(SECRET).preferences_token(reader.ref)}"


def html_of(response):
    return lxml.html.document_fromstring(response.get_data(as_text=True))


def field(response, name: str) -> str:
    """The value of a form field as a browser shows it (HTML parsers drop a
    line break right after <textarea>; lxml's keeps it)."""
    element = html_of(response).get_element_by_id(name)
    return element.value.removeprefix("\n") if element.tag == "textarea" else element.value


def state_of(store, *readers) -> list:
    """Everything a reader's page could change: profiles, votes, actions."""
    return [(store.profile(r.id), [(v.paper_key, v.vote) for v in store.votes(r.id)],
             len(store.pending_actions(r.id, ("preferences", "vote")))) for r in readers]


def vote(store, reader, key: str, value: int) -> None:
    store.record_vote(reader.id, key, value, EDITION)


# --------------------------------------------------------------------------
# the page


def test_the_page_shows_the_address_masked_and_the_profile_and_changes_nothing(site):
    store, alice, bob, client = site
    store.save_profile(Profile(alice.id, ("concept erasure", "video"), ("Grace Hopper",), ("cs.CV", "cs.LG"),
                               ("2503.00002",), picks=7))
    vote(store, alice, "2503.00001", 1)
    vote(store, alice, "2503.00006", -1)
    before = state_of(store, alice, bob)
    response = client().get(path_of(alice))
    assert response.status_code == 200
    page = html_of(response)
    assert page.get_element_by_id("heading").text_content() == "Your preferences"
    assert mask_email(alice.email) in page.text_content() and alice.email not in response.get_data(as_text=True)
    assert field(response, "interests") == "concept erasure\nvideo"
    assert field(response, "authors") == "Grace Hopper"
    assert field(response, "categories") == "cs.CV, cs.LG"
    assert field(response, "seeds") == "2503.00002"
    assert field(response, "picks") == "7"
    assert "2503.00002: Protein Structure Prediction with Language Models" in page.text_content()
    rated = [li.text_content().split() for li in page.cssselect("ul.votes li")]
    assert [(words[0], " ".join(words[1:-1])) for words in rated] == [
        ("👎", "Speculative Decoding for Large Language Models"),
        ("👍", "Erasing Concepts from Text-to-Image Diffusion Models")]
    assert [i.value for i in page.cssselect("ul.votes input[name=paper]")] == ["2503.00006", "2503.00001"]
    # A GET (a mail scanner, a prefetch) changes nothing.
    for _ in range(3):
        client().get(path_of(alice))
    assert state_of(store, alice, bob) == before


def test_saving_replaces_the_profile_keeps_the_votes_and_says_saved(site):
    store, alice, bob, client = site
    vote(store, alice, "2503.00001", 1)
    response = client().post(path_of(alice), data=FORM)
    assert response.status_code == 200
    assert html_of(response).cssselect("[role=status]")[0].text_content().startswith("Saved.")
    assert store.profile(alice.id) == Profile(
        alice.id, ("concept erasure", "protein folding"), ("Grace Hopper",), ("cs.CV", "q-bio.BM"), ("2503.00004",),
        liked=("2503.00001",), picks=3)
    # The page shows what was saved, as it was read.
    assert field(response, "categories") == "cs.CV, q-bio.BM"
    assert field(response, "seeds") == "2503.00004"
    assert store.profile(bob.id) == Profile(bob.id)
    # Saving the same again changes nothing.
    client().post(path_of(alice), data=FORM)
    assert store.profile(alice.id).interests == ("concept erasure", "protein folding")


def test_zero_picks_turns_picks_off(site):
    store, alice, _bob, client = site
    response = client().post(path_of(alice), data={**FORM, "picks": "0"})
    assert store.profile(alice.id).picks == 0
    assert "Picks are off" in html_of(response).cssselect("[role=status]")[0].text_content()


def test_a_wrong_field_saves_nothing_and_keeps_the_form_as_typed(site):
    store, alice, bob, client = site
    before = state_of(store, alice, bob)
    typed = {"interests": "concept erasure\n\n  spaced   out ", "authors": "Grace Hopper",
             "categories": "cs.CV, computer vision", "seeds": "2503.00004\nnot-a-paper", "picks": "12"}
    response = client().post(path_of(alice), data=typed)
    assert response.status_code == 400
    page = html_of(response)
    assert "Nothing was saved" in page.cssselect("[role=alert]")[0].text_content()
    assert page.get_element_by_id("categories-error").text_content() == (
        "“computer”, “vision” are not arXiv categories (such as cs.CV, stat.ML or q-bio.NC).")
    assert "“not-a-paper” is not an arXiv paper" in page.get_element_by_id("seeds-error").text_content()
    assert "from 0 to 10" in page.get_element_by_id("picks-error").text_content()
    assert page.get_element_by_id("categories").get("aria-invalid") == "true"
    assert "interests-error" not in response.get_data(as_text=True)
    # Every field as it was typed, the right ones included.
    for name, value in typed.items():
        assert field(response, name) == value.replace("\r\n", "\n"), name
    assert state_of(store, alice, bob) == before


def checked_rest(response) -> list[str]:
    """The values of the "rest of the day" radio buttons checked on the page."""
    return [radio.get("value") for radio in html_of(response).cssselect("input[name=rest]")
            if radio.get("checked") is not None]


def test_the_rest_of_the_day_is_shown_saved_with_the_form_and_refused_when_not_a_choice(site):
    store, alice, bob, client = site
    page = client().get(path_of(alice))
    assert checked_rest(page) == ["titles"]  # the default
    group = html_of(page).cssselect("fieldset:has(input[name=rest])")[0]
    assert group.cssselect("legend")[0].text_content() == "The rest of the day"
    labels = {label.get("for"): label.text_content() for label in group.cssselect("label")}
    assert labels == {"rest-titles": "Every title (a compact list of links)",
                      "rest-count": "Just the top (one line linking the web edition)"}
    assert "rest-hint" in group.get("aria-describedby")
    # Chosen, saved with the rest of the form, and shown as saved.
    response = client().post(path_of(alice), data={**FORM, "rest": "count"})
    assert response.status_code == 200
    assert store.profile(alice.id).rest == RestOfDay.COUNT and store.profile(alice.id).picks == 3
    assert checked_rest(response) == ["count"] and checked_rest(client().get(path_of(alice))) == ["count"]
    assert store.profile(bob.id).rest == RestOfDay.TITLES
    # Not a choice: the error beside it, nothing saved, the form as typed.
    before = state_of(store, alice, bob)
    response = client().post(path_of(alice), data={**FORM, "interests": "robots", "rest": "everything"})
    assert response.status_code == 400
    page = html_of(response)
    assert page.get_element_by_id("rest-error").text_content() == (
        "Choose every title or just the top for the rest of the day.")
    assert "rest-error" in page.cssselect("fieldset:has(input[name=rest])")[0].get("aria-describedby")
    assert field(response, "interests") == "robots" and checked_rest(response) == []
    assert state_of(store, alice, bob) == before
    # A form without the choice (a page from before it) leaves it as it is.
    client().post(path_of(alice), data={**FORM, "interests": "robots"})
    assert store.profile(alice.id).interests == ("robots",) and store.profile(alice.id).rest == RestOfDay.COUNT
    client().post(path_of(alice), data={**FORM, "rest": "titles"})
    assert store.profile(alice.id).rest == RestOfDay.TITLES


def test_muted_phrases_and_where_they_hide_papers_are_shown_saved_and_refused_when_not_a_choice(site):
    store, alice, bob, client = site
    page = client().get(path_of(alice))
    document = html_of(page)
    assert document.cssselect("label[for=muted]")[0].text_content() == "Never show me papers about"
    assert "is never picked for you" in document.get_element_by_id("muted-hint").text_content()
    assert field(page, "muted") == ""
    group = document.cssselect("fieldset:has(input[name=muting])")[0]
    assert group.cssselect("legend")[0].text_content() == "Hide those papers"
    assert [r.get("value") for r in group.cssselect("input[checked]")] == ["picks"]  # the default
    assert {label.get("for"): label.text_content() for label in group.cssselect("label")} == {
        "muting-picks": "From my picks only",
        "muting-top": "From my picks and from the top of the day (or of the week)"}
    # Saved with the rest of the form, cut as interests are, shown as saved.
    typed = "large language models\nLLMs; llms\n" + "\n".join(f"m{n}" for n in range(30))
    response = client().post(path_of(alice), data={**FORM, "muted": typed, "muting": "top"})
    assert response.status_code == 200
    profile = store.profile(alice.id)
    assert profile.muted[:3] == ("large language models", "LLMs", "m0") and len(profile.muted) == 20
    assert profile.muting == Muting.TOP and profile.interests == ("concept erasure", "protein folding")
    assert "Only the first 20 muted phrases are kept." in response.get_data(as_text=True)
    again = client().get(path_of(alice))
    assert field(again, "muted").splitlines()[:2] == ["large language models", "LLMs"]
    assert [r.get("value") for r in html_of(again).cssselect("input[name=muting][checked]")] == ["top"]
    assert store.profile(bob.id).muted == ()
    # Not a choice: the error beside it, nothing saved, the form as typed.
    before = state_of(store, alice, bob)
    response = client().post(path_of(alice), data={**FORM, "muted": "robots", "muting": "everywhere"})
    assert response.status_code == 400
    assert html_of(response).get_element_by_id("muting-error").text_content().startswith("Choose to hide muted")
    assert field(response, "muted") == "robots" and state_of(store, alice, bob) == before
    # A form without the choice leaves it; an empty field unmutes every phrase.
    client().post(path_of(alice), data={**FORM, "muted": ""})
    assert (store.profile(alice.id).muted, store.profile(alice.id).muting) == ((), Muting.TOP)


def test_hostile_input_is_cut_stored_safely_and_shown_escaped(site):
    store, alice, _bob, client = site
    interests = "\n".join(
        ["<script>alert(1)</script>", "{{ 7*7 }} {% if 1 %}x{% endif %}", "\x1b[31mred\x07\u202eevil",
         "y" * 10_000] + [f"topic {n}" for n in range(300)])
    response = client().post(path_of(alice), data={
        "interests": interests, "authors": "\n".join(f"<b>Author {n}</b>" for n in range(400)),
        "categories": "cs.CV " * 500, "seeds": "2503.00001\n" * 300, "picks": "4"})
    assert response.status_code == 200
    profile = store.profile(alice.id)
    assert profile.interests[:4] == ("<script>alert(1)</script>", "{{ 7*7 }} {% if 1 %}x{% endif %}",
                                     "[31mredevil", "y" * MAX_PHRASE_CHARS)
    assert len(profile.interests) == MAX_INTERESTS
    assert len(profile.authors) == 50 and profile.authors[0] == "<b>Author 0</b>"
    assert profile.categories == ("cs.CV",) and profile.seeds == ("2503.00001",)
    body = response.get_data(as_text=True)
    assert "<script>alert(1)" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<b>Author" not in body
    assert "{{ 7*7 }}" in body and ">49<" not in body
    assert "\x1b" not in body and "\u202e" not in body
    notes = [p.text_content() for p in html_of(response).cssselect(".note")]
    assert f"Only the first {MAX_INTERESTS} interests are kept." in notes
    assert f"Interests longer than {MAX_PHRASE_CHARS} characters are cut short." in notes
    # Shown again later, still as text.
    again = client().get(path_of(alice))
    assert field(again, "interests").splitlines()[:2] == ["<script>alert(1)</script>",
                                                          "{{ 7*7 }} {% if 1 %}x{% endif %}"]
    assert "<script>alert(1)" not in again.get_data(as_text=True)


def test_an_oversized_form_is_refused_whole(site):
    store, alice, _bob, client = site
    response = client().post(path_of(alice), data={**FORM, "interests": "x" * 600_000})
    assert response.status_code == 413
    assert store.profile(alice.id) == Profile(alice.id)


# --------------------------------------------------------------------------
# votes on the page


def test_undo_removes_one_vote_and_only_the_readers_own(site):
    store, alice, bob, client = site
    vote(store, alice, "2503.00001", 1)
    vote(store, alice, "2503.00006", -1)
    vote(store, bob, "2503.00003", 1)
    response = client().post(f"{path_of(alice)}/undo", data={"paper": "2503.00006"})
    assert response.status_code == 200
    assert html_of(response).cssselect("[role=status]")[0].text_content() == "Your vote is removed."
    assert [(v.paper_key, v.vote) for v in store.votes(alice.id)] == [("2503.00001", 1)]
    assert store.profile(alice.id).disliked == ()
    # Bob's paper through Alice's page, and a paper she did not rate: nothing.
    for key in ("2503.00003", "2503.00002", "", "x" * 5000):
        response = client().post(f"{path_of(alice)}/undo", data={"paper": key})
        assert response.status_code == 200 and not html_of(response).cssselect("[role=status]")
    assert [(v.paper_key, v.vote) for v in store.votes(bob.id)] == [("2503.00003", 1)]
    assert [(v.paper_key, v.vote) for v in store.votes(alice.id)] == [("2503.00001", 1)]


# --------------------------------------------------------------------------
# tokens


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1:]


def test_every_changed_or_cut_preferences_token_is_refused_and_changes_nothing(site):
    store, alice, bob, client = site
    token = Signer(SECRET).preferences_token(alice.ref)
    before = state_of(store, alice, bob)
    app = client()
    bad = [_flip(token, i) for i in range(len(token))]
    bad += [token[:-1], token[: len(token) // 2], token.split(".")[0], token + "x", token.replace(".", ""),
            URLSafeSerializer(OTHER_SECRET, salt=PREFERENCES_SALT).dumps(alice.ref),
            URLSafeSerializer(SECRET, salt=PREFERENCES_SALT).dumps(""),
            URLSafeSerializer(SECRET, salt=PREFERENCES_SALT).dumps([alice.ref]),
            Signer(SECRET).preferences_token("no-such-reference"), alice.ref, "'\"><img src=x>"]
    invalid_page = app.get("/u/not-a-token").get_data()
    for wrong in bad:
        for response in (app.get(f"/p/{wrong}"), app.post(f"/p/{wrong}", data=FORM),
                         app.post(f"/p/{wrong}/undo", data={"paper": "2503.00001"})):
            assert response.status_code == 400, wrong
            # The very page a bad unsubscribe link gets: it tells nothing.
            assert response.get_data() == invalid_page
    assert state_of(store, alice, bob) == before


def test_tokens_of_one_purpose_are_worthless_for_another(site):
    store, alice, bob, client = site
    keys = store.edition_papers(DAY)
    signer = Signer(SECRET)
    tokens = {
        "u": signer.unsubscribe_token(alice.ref),
        "p": signer.preferences_token(alice.ref),
        "f": signer.feedback_token(alice.ref, EDITION, 0, keys[0]),
        "confirm": signer.confirm_token(alice.email, None),
    }
    routes = {
        "u": [("get", "/u/{}"), ("post", "/u/{}"), ("post", "/u/{}/resubscribe")],
        "p": [("get", "/p/{}"), ("post", "/p/{}"), ("post", "/p/{}/undo")],
        "f": [("get", "/f/{}/up"), ("post", "/f/{}/up"), ("post", "/f/{}/down"), ("post", "/f/{}/undo")],
        "confirm": [("get", "/confirm/{}"), ("post", "/confirm/{}")],
    }
    app = client()
    before = state_of(store, alice, bob), [(r.status, len(store.events(r.id))) for r in (alice, bob)]
    for purpose, token in tokens.items():
        for route_purpose, calls in routes.items():
            if route_purpose == purpose:
                continue
            for method, route in calls:
                response = getattr(app, method)(route.format(token), data=FORM)
                assert response.status_code == 400, (purpose, route)
    after = state_of(store, alice, bob), [(r.status, len(store.events(r.id))) for r in (alice, bob)]
    assert after == before
    assert store.get(ref=alice.ref).status == "active"


def test_one_readers_token_changes_only_that_readers_profile(site):
    store, alice, bob, client = site
    store.save_profile(Profile(bob.id, ("video generation",), picks=2))
    client().post(path_of(alice), data=FORM)
    assert store.profile(bob.id) == Profile(bob.id, ("video generation",), picks=2)
    assert store.profile(alice.id).interests == ("concept erasure", "protein folding")
    # The form carries no reader: a field naming another one is ignored.
    client().post(path_of(alice), data={**FORM, "subscriber_id": str(bob.id), "ref": bob.ref, "interests": "x"})
    assert store.profile(bob.id).interests == ("video generation",)


def test_an_old_key_in_the_fallbacks_still_opens_the_page(site):
    store, alice, _bob, client = site
    old_token = Signer(OTHER_SECRET).preferences_token(alice.ref)
    assert client().get(f"/p/{old_token}").status_code == 400
    app = client(secret_key_fallbacks=(OTHER_SECRET,))
    assert app.get(f"/p/{old_token}").status_code == 200


def test_the_unsubscribe_page_links_to_the_readers_preferences(site):
    store, alice, _bob, client = site
    app = client()
    page = html_of(app.get(f"/u/{Signer(SECRET).unsubscribe_token(alice.ref)}"))
    link = page.get_element_by_id("preferences").get("href")
    assert link == path_of(alice)
    assert app.get(link).status_code == 200
    # Opening it changed nothing: she is still subscribed.
    assert store.get(ref=alice.ref).status == "active"


def http(base: str, path: str, form: dict | None = None) -> lxml.html.HtmlElement:
    """GET (or POST ``form`` to) ``path`` of the server at ``base``; its page."""
    body = urllib.parse.urlencode(form).encode() if form is not None else None
    with urllib.request.urlopen(f"{base}{path}", data=body, timeout=60) as answer:
        assert answer.status == 200
        return lxml.html.document_fromstring(answer.read().decode())


def test_an_unsubscribed_reader_is_told_they_get_no_email_and_can_resubscribe(site, database_url, tmp_path):
    store, alice, bob, _client = site
    port = free_port()
    env = clean_env(NEWSLETTER_DATABASE_URL=database_url, NEWSLETTER_SECRET_KEY=SECRET,
                    NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}")
    store.change_status(bob.id, SubscriberStatus.UNSUBSCRIBED, source="admin:alice", reason="asked by phone")
    with newsletter_server(["serve", "--port", str(port)], port, tmp_path, env) as base:
        unsubscribe = f"/u/{Signer(SECRET).unsubscribe_token(alice.ref)}"
        assert "no-email" not in lxml.html.tostring(http(base, path_of(alice))).decode()
        http(base, unsubscribe, {})
        wait_until(lambda: store.get(ref=alice.ref).status == SubscriberStatus.UNSUBSCRIBED, "the unsubscribe")
        for page in (http(base, path_of(alice)), http(base, path_of(alice), FORM)):
            said = " ".join(page.get_element_by_id("no-email").text_content().split())
            assert said == f"You are unsubscribed: {mask_email(alice.email)} gets no email from Daily Papers. What " \
                           "you choose here counts once you resubscribe."
            hint = page.get_element_by_id("frequency-hint").text_content()
            assert hint == "Now: no email (you are unsubscribed); once you resubscribe, daily."
            [button] = page.xpath("//form[button[@id='resubscribe']]/@action")
            assert button == f"{unsubscribe}/resubscribe"
        assert page.cssselect(".saved")[0].text_content() == "Saved. You still get no email: you are unsubscribed."
        welcome = http(base, button, {})
        assert "Welcome back" in welcome.text_content()
        wait_until(lambda: store.get(ref=alice.ref).status == SubscriberStatus.ACTIVE, "the resubscribe")
        again = http(base, path_of(alice))
        assert not again.xpath("//*[@id='no-email']") and "Now: daily." in again.text_content()
        # Removed by the operator: no email either, and no button (their links cannot undo it).
        removed = http(base, path_of(bob))
        assert " ".join(removed.get_element_by_id("no-email").text_content().split()) == \
            f"You are unsubscribed: {mask_email(bob.email)} gets no email from Daily Papers."
        assert not removed.xpath("//*[@id='resubscribe']")


# --------------------------------------------------------------------------
# seed papers fetched from arXiv


NEW_PAPER = ("Concept Sliders: LoRA Adaptors for Precise Control in Diffusion Models",
             "We present concept sliders that enable precise control over attributes in image generations.",
             ["Rohit Gandikota", "David Bau"], "cs.CV")


def pending_fetches(store) -> list[str]:
    return sorted(a.payload.arxiv_id for a in store.due_actions(("fetch_paper",)))


def test_seed_papers_not_stored_are_fetched_in_the_background(site):
    store, alice, _bob, client = site
    with ArxivStandIn(papers={"2311.12092": NEW_PAPER}) as arxiv:
        app = client(arxiv_api_url=arxiv.url)
        response = app.post(path_of(alice), data={**FORM, "seeds": "2503.00004\nhttps://arxiv.org/abs/2311.12092v2"})
        assert response.status_code == 200
        # The page never waits for arXiv: nothing was asked yet.
        assert arxiv.requests == []
        assert store.profile(alice.id).seeds == ("2503.00004", "2311.12092")
        assert pending_fetches(store) == ["2311.12092"]
        assert "2311.12092: not in our archive yet" in html_of(response).text_content()
        # Saved again before the worker ran: queued once.
        app.post(path_of(alice), data={**FORM, "seeds": "2311.12092"})
        assert pending_fetches(store) == ["2311.12092"]
        app.application.extensions["newsletter"].actions.run_pending()
        assert arxiv.requests == [["2311.12092"]]
    paper = store.papers(["2311.12092"])["2311.12092"]
    assert (paper.title, paper.authors, paper.categories, paper.url) == (
        NEW_PAPER[0], ("Rohit Gandikota", "David Bau"), ("cs.CV",), "https://arxiv.org/abs/2311.12092")
    assert pending_fetches(store) == []
    # Kept without an appearance: no day's edition changed.
    assert store.edition_papers(DAY) == [f"2503.0000{n}" for n in range(1, 9)]
    assert store.edition_papers(dt.date(2024, 3, 2)) == []
    page = app.get(path_of(alice))
    assert f"2311.12092: {NEW_PAPER[0]}" in html_of(page).text_content()


def test_a_failed_fetch_is_tried_again_later_and_then_stored(site, monkeypatch):
    store, alice, _bob, _client = site
    with ArxivStandIn(papers={"2311.12092": NEW_PAPER}, failures=1) as arxiv:
        actions = ReaderActions(store, arxiv_api_url=arxiv.url)
        actions.save_preferences(alice, Profile(alice.id, seeds=("2311.12092",)))
        assert actions.fetch_pending_papers() == 0
        assert arxiv.requests == [["2311.12092"]]
        # Waiting for its retry: not asked again meanwhile.
        assert store.due_actions(("fetch_paper",)) == []
        actions._next_fetch = 0.0  # the spacing between requests is not what this test is about
        assert actions.fetch_pending_papers() == 0 and len(arxiv.requests) == 1
        real_now = store.clock
        monkeypatch.setattr(store, "clock", lambda: real_now() + dt.timedelta(seconds=RETRY_BASE_SECONDS + 1))
        assert actions.fetch_pending_papers() == 1
        assert len(arxiv.requests) == 2
    assert store.papers(["2311.12092"])["2311.12092"].title == NEW_PAPER[0]


def test_a_fetch_that_keeps_failing_is_given_up_after_seven_days(site, monkeypatch):
    store, alice, _bob, _client = site
    with ArxivStandIn(garbage=True) as arxiv:
        actions = ReaderActions(store, arxiv_api_url=arxiv.url)
        actions.queue_papers(("2311.12092",))
        real_now = store.clock
        monkeypatch.setattr(store, "clock", lambda: real_now() + dt.timedelta(days=8))
        assert actions.fetch_pending_papers() == 0
        assert len(arxiv.requests) == 1
    assert store.due_actions(("fetch_paper",)) == [] and store.pending_actions(alice.id, ("fetch_paper",)) == []
    assert store.papers(["2311.12092"]) == {}


def test_papers_arxiv_does_not_know_are_dropped_and_requests_are_spaced(site):
    store, _alice, _bob, _client = site
    with ArxivStandIn(papers={"2311.12092": NEW_PAPER}, errors={"2311.99999"}) as arxiv:
        actions = ReaderActions(store, arxiv_api_url=arxiv.url)
        actions.queue_papers(("2311.12092", "2311.99999", "2312.00001", "2503.00001"))  # the last one is stored
        assert pending_fetches(store) == ["2311.12092", "2311.99999", "2312.00001"]
        assert actions.fetch_pending_papers() == 1
        assert arxiv.requests == [["2311.12092", "2311.99999", "2312.00001"]]
        assert pending_fetches(store) == []
        assert set(store.papers(["2311.12092", "2311.99999", "2312.00001"])) == {"2311.12092"}
        # A second request within ARXIV_SPACING_SECONDS waits for the next round.
        actions.queue_papers(("2312.00002",))
        assert ARXIV_SPACING_SECONDS >= 3
        assert actions.fetch_pending_papers() == 0 and len(arxiv.requests) == 1
        assert pending_fetches(store) == ["2312.00002"]


def test_without_an_arxiv_address_seed_papers_wait(site):
    store, alice, _bob, _client = site
    actions = ReaderActions(store)
    actions.save_preferences(alice, Profile(alice.id, seeds=("2311.12092",)))
    assert actions.fetch_pending_papers() == 0
    assert pending_fetches(store) == ["2311.12092"]


def test_one_readers_seed_paper_is_looked_up_before_anothers_twentieth(site):
    store, alice, bob, _client = site
    many = [f"2312.{n:05d}" for n in range(1, 21)]
    with ArxivStandIn(papers={key: NEW_PAPER for key in [*many, "2401.00001"]}) as arxiv:
        actions = ReaderActions(store, arxiv_api_url=arxiv.url)
        actions.save_preferences(alice, Profile(alice.id, seeds=tuple(many)))
        actions.save_preferences(bob, Profile(bob.id, seeds=("2401.00001",)))
        assert actions.fetch_pending_papers() == 20
        assert "2401.00001" in arxiv.requests[0] and many[-1] not in arxiv.requests[0]
        assert set(store.papers(["2401.00001", many[-1]])) == {"2401.00001"}
        actions._next_fetch = 0.0  # the spacing between requests is not what this test is about
        assert actions.fetch_pending_papers() == 1
        assert arxiv.requests[1] == [many[-1]]
    assert pending_fetches(store) == []


def test_a_reader_has_at_most_one_forms_worth_of_seed_papers_waiting(site):
    store, alice, bob, _client = site
    actions = ReaderActions(store)
    for save in range(50):
        actions.save_preferences(alice, Profile(alice.id, seeds=tuple(f"24{save:02d}.{n:05d}" for n in range(20))))
    # Those of the last form only: the papers no longer asked for are dropped.
    assert pending_fetches(store) == [f"2449.{n:05d}" for n in range(20)]
    assert len(store.pending_actions(alice.id, ("fetch_paper",))) == MAX_PENDING_LOOKUPS == MAX_SEEDS
    # Another reader's papers wait beside them; the same paper asked by both, once for each.
    actions.save_preferences(bob, Profile(bob.id, seeds=("2449.00000", "2501.00001")))
    assert len(store.pending_actions(bob.id, ("fetch_paper",))) == 2


def test_a_seed_paper_redirected_to_another_host_is_not_fetched_from_it(site):
    store, alice, _bob, _client = site
    with ArxivStandIn(papers={"2311.12092": NEW_PAPER}) as elsewhere, \
            ArxivStandIn(redirect_to=elsewhere.url) as arxiv:
        actions = ReaderActions(store, arxiv_api_url=arxiv.url)
        actions.save_preferences(alice, Profile(alice.id, seeds=("2311.12092",)))
        assert actions.fetch_pending_papers() == 0
        assert len(arxiv.requests) == 1 and elsewhere.requests == []
    [waiting] = store.pending_actions(alice.id, ("fetch_paper",))
    assert waiting.attempts == 1  # tried again later, from arXiv's own address
    assert store.papers(["2311.12092"]) == {}


# --------------------------------------------------------------------------
# interests given when signing up


CONFIRM_LINK = re.compile(r"https://papers\.example\.org/confirm/([A-Za-z0-9_\-.]+)")


def confirmation_token(outbox) -> str:
    [path] = sorted((outbox / "single").glob("*.eml"))
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    return CONFIRM_LINK.search(message.get_body(("plain",)).get_content()).group(1)


def test_interests_given_at_sign_up_become_the_new_readers_profile(site, tmp_path):
    store, _alice, _bob, client = site
    app = client()
    typed = "diffusion models; protein folding\n<i>markup</i>\n" + "\n".join(f"topic {n}" for n in range(40))
    response = app.post("/subscribe", data={"email": "new.reader@example.com", "name": "New", "interests": typed})
    assert response.status_code == 200
    app.application.extensions["newsletter"].actions.run_pending()
    token = confirmation_token(tmp_path / "outbox")
    assert len(token) < 1200  # cut to the limits: a link, not a document
    page = app.get(f"/confirm/{token}")
    shown = html_of(page).get_element_by_id("interests").text_content()
    assert shown.startswith("diffusion models; protein folding; <i>markup</i>; topic 0")
    assert "<i>markup" not in page.get_data(as_text=True)
    assert store.get(email="new.reader@example.com") is None  # a GET changes nothing
    assert app.post(f"/confirm/{token}").status_code == 200
    reader = store.get(email="new.reader@example.com")
    profile = store.profile(reader.id)
    assert profile.interests[:3] == ("diffusion models", "protein folding", "<i>markup</i>")
    assert len(profile.interests) == MAX_INTERESTS and profile.picks == 5


def test_a_returning_reader_keeps_the_profile_they_had(site):
    store, alice, _bob, client = site
    store.save_profile(Profile(alice.id, ("video generation",)))
    store.change_status(alice.id, "unsubscribed", source="web", reason="left")
    token = Signer(SECRET).confirm_token(alice.email, None, ("something else",))
    app = client()
    assert app.post(f"/confirm/{token}").status_code == 200
    assert store.get(ref=alice.ref).status == "active"
    assert store.profile(alice.id).interests == ("video generation",)


def test_a_sign_up_without_interests_makes_no_profile_and_a_short_link(site, tmp_path):
    store, _alice, _bob, client = site
    app = client()
    app.post("/subscribe", data={"email": "plain@example.com"})
    app.application.extensions["newsletter"].actions.run_pending()
    token = confirmation_token(tmp_path / "outbox")
    assert Signer(SECRET).confirmed(token, 3600) == ("plain@example.com", None, (), "daily")
    app.post(f"/confirm/{token}")
    assert store.profile(store.get(email="plain@example.com").id) == Profile(store.get(email="plain@example.com").id)


def test_a_confirmation_link_with_interests_changed_is_refused():
    signer = Signer(SECRET)
    token = signer.confirm_token("x@example.com", None, ("a", "b"))
    for i in range(len(token)):
        with pytest.raises(TokenError):
            signer.confirmed(_flip(token, i), 3600)
    assert signer.confirmed(token, 3600) == ("x@example.com", None, ("a", "b"), "daily")
