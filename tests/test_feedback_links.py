"""The 👍/👎 links of emails (``/f/<token>/up``, ``/down``, ``/undo``): a
GET that changes nothing, the vote recorded by the button, idempotent,
replaced, undone; and every wrong token (a changed character anywhere,
another paper's position, another reader, another purpose) refused with the
same 400 page, changing nothing.

Flask's test client on ``create_app``, on both databases (the ``store``
fixture: SQLite, then PostgreSQL).
"""

from __future__ import annotations

import datetime as dt

import lxml.html
import pytest
from itsdangerous import Signer as ItsdangerousSigner

from conftest import FIXTURES, SECRET
from newsletter.papers.batches import load_batch
from newsletter.core.models import Batch
from newsletter.readers.tokens import FEEDBACK_SALT, Signer

DAY = dt.date(2025, 3, 11)
EDITION = DAY.isoformat()
BATCH = FIXTURES / "picks-day.json"
OTHER_SECRET = "ly12xlEa51C9FWaRReYCbCWzyprWlYLeTDXuVOCodx0"
UP_TEXT = "Papers like this will come first in your picks."
DOWN_TEXT = "Papers like this will come lower in your picks; this one will not be picked."


@pytest.fixture
def site(store, web_client):
    """The day's papers stored, two readers, and the app's test client."""
    store.store_batch(load_batch(BATCH))
    alice, _ = store.add("alice.liddell@example.com", "Alice")
    bob, _ = store.add("bob@example.org", "Bob")
    return store, alice, bob, web_client()


def token_for(store, reader, position: int, edition: str = EDITION, secret: str = SECRET) -> str:
    key = store.edition_papers(dt.date.fromisoformat(edition))[position]
    return Signer(secret).feedback_token(reader.ref, edition, position, key)


def html_of(response):
    return lxml.html.document_fromstring(response.get_data(as_text=True))


def votes(store, reader) -> list[tuple[str, int, str]]:
    return [(v.paper_key, v.vote, v.edition) for v in store.votes(reader.id)]


def everything(store, *readers) -> list:
    """All a feedback link could change."""
    return [(votes(store, r), store.profile(r.id), len(store.pending_actions(r.id, ("vote", "preferences"))),
             store.get(ref=r.ref).status) for r in readers]


def test_the_link_shows_the_paper_and_one_button_and_changes_nothing(site):
    store, alice, bob, client = site
    token = token_for(store, alice, 3)
    before = everything(store, alice, bob)
    for direction, button in (("up", "👍 More like this"), ("down", "👎 Fewer like this")):
        for _ in range(3):  # a mail scanner, a link preview, the reader
            response = client.get(f"/f/{token}/{direction}")
            assert response.status_code == 200
        page = html_of(response)
        paper = page.cssselect(".paper")[0]
        assert paper.cssselect(".title a")[0].text_content() == "Robust Concept Unlearning in Diffusion Models"
        assert paper.cssselect(".title a")[0].get("href") == "https://arxiv.org/abs/2503.00004"
        assert paper.cssselect(".authors")[0].text_content() == "Alan Turing, Grace Hopper"
        assert [b.text_content() for b in page.cssselect("button")] == [button]
        assert page.cssselect("form")[0].get("action") == f"/f/{token}/{direction}"
        assert page.cssselect("form")[0].get("method") == "post"
    assert everything(store, alice, bob) == before


def test_a_vote_is_recorded_once_replaced_and_undone(site):
    store, alice, bob, client = site
    token = token_for(store, alice, 3)
    response = client.post(f"/f/{token}/up")
    assert response.status_code == 200
    page = html_of(response)
    assert page.cssselect("[role=status]")[0].text_content() == f"👍 noted. {UP_TEXT}"
    assert page.get_element_by_id("undo").text_content() == "Undo"
    assert page.get_element_by_id("preferences").get("href") == f"/p/{Signer(SECRET).preferences_token(alice.ref)}"
    assert votes(store, alice) == [("2503.00004", 1, EDITION)]
    assert store.profile(alice.id).liked == ("2503.00004",)
    first = store.votes(alice.id)
    # Again (a double click, a retried request): nothing changes.
    assert client.post(f"/f/{token}/up").status_code == 200
    assert store.votes(alice.id) == first
    # The GET now says it was given already.
    assert "You already gave this paper a 👍" in client.get(f"/f/{token}/up").get_data(as_text=True)
    assert "this replaces it" in client.get(f"/f/{token}/down").get_data(as_text=True)
    # The other way replaces it.
    response = client.post(f"/f/{token}/down")
    assert html_of(response).cssselect("[role=status]")[0].text_content() == f"👎 noted. {DOWN_TEXT}"
    assert votes(store, alice) == [("2503.00004", -1, EDITION)]
    profile = store.profile(alice.id)
    assert (profile.liked, profile.disliked) == ((), ("2503.00004",))
    # Undo.
    response = client.post(f"/f/{token}/undo")
    assert response.status_code == 200
    assert "Your vote on this paper is removed" in html_of(response).cssselect("[role=status]")[0].text_content()
    assert votes(store, alice) == []
    assert (store.profile(alice.id).liked, store.profile(alice.id).disliked) == ((), ())
    assert client.post(f"/f/{token}/undo").status_code == 200  # nothing to undo: fine
    assert votes(store, bob) == []


def test_votes_on_two_papers_and_two_editions_are_kept_apart(site):
    store, alice, _bob, client = site
    batch = load_batch(BATCH)
    store.store_batch(Batch(DAY + dt.timedelta(days=1), tuple(reversed(batch.papers)), source="next day"))
    client.post(f"/f/{token_for(store, alice, 0)}/up")
    client.post(f"/f/{token_for(store, alice, 1)}/down")
    # The next day's first paper is the last of the first day.
    client.post(f"/f/{token_for(store, alice, 0, '2025-03-12')}/up")
    assert sorted(votes(store, alice)) == [("2503.00001", 1, EDITION), ("2503.00002", -1, EDITION),
                                           ("2503.00008", 1, "2025-03-12")]


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1:]


def _refused(client, token: str, invalid_page: bytes) -> None:
    for method, route in (("get", "up"), ("get", "down"), ("post", "up"), ("post", "down"), ("post", "undo")):
        response = getattr(client, method)(f"/f/{token}/{route}")
        assert response.status_code == 400, (token, method, route)
        assert response.get_data() == invalid_page


def test_a_token_with_any_character_changed_or_cut_is_refused_and_changes_nothing(site):
    store, alice, bob, client = site
    client.post(f"/f/{token_for(store, alice, 5)}/up")  # something to lose
    token = token_for(store, alice, 2)
    invalid_page = client.get("/u/not-a-token").get_data()
    before = everything(store, alice, bob)
    position, code = token.split(".")[0].split("-")
    assert (position, len(code)) == ("2", 6)
    for i in range(len(token)):  # the position, the code, the reader part, the separators
        _refused(client, _flip(token, i), invalid_page)
    for cut in (1, 5, len(token) // 2, len(token) - 3):
        _refused(client, token[:-cut], invalid_page)
        _refused(client, token[cut:], invalid_page)
    assert everything(store, alice, bob) == before


def test_a_token_naming_another_paper_or_edition_is_refused(site):
    store, alice, bob, client = site
    invalid_page = client.get("/u/not-a-token").get_data()
    before = everything(store, alice, bob)
    signer = Signer(SECRET)
    token = token_for(store, alice, 2)
    position, rest = token.split("-", 1)
    code, reader = rest.split(".", 1)
    keys = store.edition_papers(DAY)
    bad = [
        f"3-{code}.{reader}",  # another paper's position with this paper's code
        f"{len(keys)}-{code}.{reader}",  # past the edition's end
        f"02-{code}.{reader}", f"+2-{code}.{reader}", f"\u0662-{code}.{reader}",  # other spellings of 2
        f"2-{signer.paper_code(EDITION, 2, keys[3])}.{reader}",  # the code of another paper at 2
        f"2-{signer.paper_code('2025-03-10', 2, keys[2])}.{reader}",  # the code of another edition
        f"2-{Signer(OTHER_SECRET).paper_code(EDITION, 2, keys[2])}.{reader}",  # made with another key
        f"2-{code}.{signer.feedback_reader_part(alice.ref, '2025-03-10')}",  # another edition, not stored
        f"2-{code}.{signer.feedback_reader_part('no-such-reader', EDITION)}",
        f"2-{code}.{ItsdangerousSigner(SECRET, salt=FEEDBACK_SALT).sign(f'{alice.ref}~2025-3-11').decode()}",
        f"2-{code}.{ItsdangerousSigner(SECRET, salt=FEEDBACK_SALT).sign(alice.ref).decode()}",
        f"2-{code}{code}.{reader}", f"2-{code[:5]}.{reader}", f"2{code}.{reader}", f"2-{code}",
        reader, "2-abcdef.x~2025-03-11.y", "-", ".", "'\"><img src=x>",
    ]
    for wrong in bad:
        _refused(client, wrong, invalid_page)
    assert everything(store, alice, bob) == before


def test_one_readers_token_touches_only_that_readers_vote(site):
    store, alice, bob, client = site
    client.post(f"/f/{token_for(store, bob, 4)}/down")
    client.post(f"/f/{token_for(store, alice, 4)}/up")
    assert votes(store, alice) == [("2503.00005", 1, EDITION)]
    assert votes(store, bob) == [("2503.00005", -1, EDITION)]
    client.post(f"/f/{token_for(store, alice, 4)}/undo")
    assert votes(store, alice) == []
    assert votes(store, bob) == [("2503.00005", -1, EDITION)]
    # Bob's reader part with Alice's paper code: the same paper, Bob's vote.
    alice_code = token_for(store, alice, 4).split(".", 1)[0]
    bob_reader = token_for(store, bob, 4).split(".", 1)[1]
    client.post(f"/f/{alice_code}.{bob_reader}/undo")
    assert votes(store, bob) == [] and votes(store, alice) == []


def test_feedback_tokens_open_no_other_page_and_other_tokens_no_vote(site):
    store, alice, bob, client = site
    token = token_for(store, alice, 0)
    signer = Signer(SECRET)
    for route in (f"/u/{token}", f"/p/{token}", f"/confirm/{token}"):
        assert client.get(route).status_code == 400
        assert client.post(route).status_code == 400
    for other in (signer.unsubscribe_token(alice.ref), signer.preferences_token(alice.ref),
                  signer.confirm_token(alice.email, None)):
        for route in ("up", "down", "undo"):
            assert client.post(f"/f/{other}/{route}").status_code == 400
    assert votes(store, alice) == [] and store.get(ref=alice.ref).status == "active"


def test_an_unsubscribed_reader_may_still_rate_and_a_get_of_undo_is_not_allowed(site):
    store, alice, _bob, client = site
    store.change_status(alice.id, "unsubscribed", source="web", reason="left")
    token = token_for(store, alice, 1)
    assert client.post(f"/f/{token}/up").status_code == 200
    assert votes(store, alice) == [("2503.00002", 1, EDITION)]
    assert store.get(ref=alice.ref).status == "unsubscribed"
    assert client.get(f"/f/{token}/undo").status_code == 405
    assert client.get(f"/f/{token}/sideways").status_code == 404
    assert votes(store, alice) == [("2503.00002", 1, EDITION)]
