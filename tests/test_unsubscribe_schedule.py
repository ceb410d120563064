"""The schedule links of the email's footer and of the unsubscribe page,
through the web app on each database: ``/u/<token>/weekly`` and
``/u/<token>/pause`` (and their undos, ``daily`` and ``resume``) show a page
that changes nothing on GET and save the reader's schedule on POST, through
the reader-action inbox, keeping the rest of their preferences."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from test_web import html_of, heading, path_of, snapshot

from conftest import SECRET
from newsletter.core.models import Frequency, Profile, Schedule, SubscriberStatus
from newsletter.readers.tokens import Signer
from newsletter.web import mask_email
from newsletter.web.unsubscribe import PAUSE_DAYS


@pytest.fixture
def alice(store):
    """An active daily reader with interests of her own."""
    reader, _ = store.add("alice.liddell@example.com", "Alice")
    store.save_profile(Profile(reader.id, interests=("concept erasure",), picks=3))
    return reader


@pytest.fixture
def client(web_client):
    return web_client()


def schedule(store, reader) -> Schedule:
    return store.get(ref=reader.ref).schedule


def forms(response) -> list[tuple[str, str]]:
    """The page's forms: (action, button)."""
    return [(form.get("action"), form.xpath(".//button")[0].text_content().strip())
            for form in html_of(response).xpath("//form")]


@pytest.mark.parametrize("change", ["weekly", "pause"])
def test_get_shows_what_would_change_and_changes_nothing(store, client, alice, change):
    before = (snapshot(store), schedule(store, alice))
    response = client.get(f"{path_of(alice.ref)}/{change}")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert mask_email(alice.email) in body and alice.email not in body
    assert heading(response) == {"weekly": "Get it weekly instead", "pause": "Pause for two weeks"}[change]
    assert "gets Daily Papers daily" in " ".join(body.split())
    assert forms(response) == [(f"{path_of(alice.ref)}/{change}",
                                {"weekly": "Get it weekly", "pause": "Pause for two weeks"}[change])]
    preferences = html_of(response).get_element_by_id("preferences").get("href")
    assert Signer(SECRET).preferences_ref(preferences.removeprefix("/p/")) == alice.ref
    assert (snapshot(store), schedule(store, alice)) == before


def test_post_weekly_saves_it_and_back_to_daily_undoes_it(store, client, alice):
    response = client.post(f"{path_of(alice.ref)}/weekly")
    assert response.status_code == 200
    assert heading(response) == "Your schedule"
    assert "now gets Daily Papers weekly on" in " ".join(response.get_data(as_text=True).split())
    assert schedule(store, alice) == Schedule(Frequency.WEEKLY)
    # A schedule link keeps the rest of the reader's preferences.
    assert store.profile(alice.id).interests == ("concept erasure",) and store.profile(alice.id).picks == 3
    assert store.get(ref=alice.ref).status == SubscriberStatus.ACTIVE
    assert forms(response) == [(f"{path_of(alice.ref)}/daily", "Get it daily")]
    undone = client.post(f"{path_of(alice.ref)}/daily")
    assert undone.status_code == 200
    assert "now gets Daily Papers daily" in " ".join(undone.get_data(as_text=True).split())
    assert schedule(store, alice) == Schedule()
    assert store.profile(alice.id).interests == ("concept erasure",)


def test_post_pause_pauses_two_weeks_and_resume_undoes_it(store, client, alice):
    today = store.clock().date()
    response = client.post(f"{path_of(alice.ref)}/pause")
    assert response.status_code == 200
    until = today + dt.timedelta(days=PAUSE_DAYS)
    assert schedule(store, alice) == Schedule(paused_until=until)
    assert f"paused until {until}, then daily" in response.get_data(as_text=True)
    assert forms(response) == [(f"{path_of(alice.ref)}/resume", "Resume now")]
    assert client.post(f"{path_of(alice.ref)}/resume").status_code == 200
    assert schedule(store, alice) == Schedule()


def test_a_weekly_readers_link_says_they_are_already_weekly(store, client, alice):
    store.set_schedule(alice.id, Schedule(Frequency.WEEKLY, 4))
    before = snapshot(store)
    for response in (client.get(f"{path_of(alice.ref)}/weekly"), client.post(f"{path_of(alice.ref)}/weekly")):
        assert response.status_code == 200
        assert "already gets Daily Papers weekly on Friday" in " ".join(response.get_data(as_text=True).split())
        assert forms(response) == []
    assert schedule(store, alice) == Schedule(Frequency.WEEKLY, 4)
    assert snapshot(store) == before
    # Their unsubscribe page offers the pause, not what they already have.
    page = client.get(path_of(alice.ref))
    assert [button for _action, button in forms(page)] == ["Pause for two weeks", "Unsubscribe"]


def test_a_pause_from_the_unsubscribe_pages_button_keeps_the_reader(store, client, alice):
    response = client.post(f"{path_of(alice.ref)}/pause")  # what its form posts
    assert response.status_code == 200
    assert store.get(ref=alice.ref).status == SubscriberStatus.ACTIVE
    assert schedule(store, alice).paused_until is not None


def test_an_unsubscribed_reader_gets_the_unsubscribe_page_and_no_change(store, client, alice):
    store.change_status(alice.id, SubscriberStatus.UNSUBSCRIBED, source="web", reason="set by the test")
    for change in ("weekly", "pause"):
        for response in (client.get(f"{path_of(alice.ref)}/{change}"),
                         client.post(f"{path_of(alice.ref)}/{change}")):
            assert response.status_code == 200
            assert heading(response) == "You are unsubscribed"
    assert schedule(store, alice) == Schedule()


def test_bad_links_change_nothing(store, client, alice):
    before = (snapshot(store), schedule(store, alice))
    forged = path_of(alice.ref, secret="ly12xlEa51C9FWaRReYCbCWzyprWlYLeTDXuVOCodx0")
    preferences_token = Signer(SECRET).preferences_token(alice.ref)  # a token for another purpose
    for path in (forged, f"/u/{preferences_token}", "/u/not-a-token"):
        for change in ("weekly", "pause", "daily", "resume"):
            assert client.get(f"{path}/{change}").status_code == 400
            assert client.post(f"{path}/{change}").status_code == 400
    for change in ("monthly", "WEEKLY", "weekly/now"):
        assert client.get(f"{path_of(alice.ref)}/{change}").status_code == 404
        assert client.post(f"{path_of(alice.ref)}/{change}").status_code in (404, 405)
    assert (snapshot(store), schedule(store, alice)) == before


def test_schedule_links_count_among_a_readers_limited_changes(store, client, alice, monkeypatch):
    from newsletter.readers import actions

    monkeypatch.setattr(actions, "READER_LIMITS", dataclasses.replace(actions.READER_LIMITS, per_reader=2))
    assert client.post(f"{path_of(alice.ref)}/weekly").status_code == 200
    assert client.post(f"{path_of(alice.ref)}/daily").status_code == 200
    refused = client.post(f"{path_of(alice.ref)}/weekly")
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    assert schedule(store, alice) == Schedule()
