"""The preferences page and the feedback links in a real headless Chromium,
against a real ``newsletter serve`` (with the app's Content-Security-Policy
in force): setting interests, choosing how the email shows the rest of the
day, choosing how often (daily, weekly on a day,
paused until a date), resubscribing, voting from an email's link, undoing, at desktop and
phone width (375 px, no horizontal scroll). Seed papers are fetched by the
server's worker from an arXiv stand-in on 127.0.0.1.

One server on a SQLite database shared by the tests of this module; each
test uses readers of its own.
"""

from __future__ import annotations

import datetime as dt

import pytest

from arxiv_standin import ArxivStandIn
from conftest import FIXTURES, PHONE, SECRET, clean_env, free_port, newsletter_server, page_widths, wait_until
from test_email_checks import BLOCKING, axe_violations, node_tools
from newsletter.papers.batches import load_batch
from newsletter.core.models import Frequency, Profile, RestOfDay, Schedule, SubscriberStatus
from newsletter.store import open_store
from newsletter.readers.tokens import Signer
from newsletter.web import mask_email

pytestmark = pytest.mark.browser

DAY = dt.date(2025, 3, 11)
EDITION = DAY.isoformat()
SEED = ("Concept Sliders: LoRA Adaptors for Precise Control in Diffusion Models",
        "We present concept sliders that enable precise control over attributes in image generations.",
        ["Rohit Gandikota", "David Bau"], "cs.CV")

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or fails in CI) with a clear reason
    expect = None


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A running web app (and an arXiv stand-in) on a database holding the
    day's papers; yields (base URL, store, a function adding a reader)."""
    folder = tmp_path_factory.mktemp("site")
    database_url = f"sqlite:///{folder / 'newsletter.db'}"
    store = open_store(database_url)
    store.store_batch(load_batch(FIXTURES / "picks-day.json"))
    port = free_port()
    try:
        with ArxivStandIn(papers={"2311.12092": SEED}) as arxiv:
            env = clean_env(NEWSLETTER_DATABASE_URL=database_url, NEWSLETTER_SECRET_KEY=SECRET,
                            NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}", NEWSLETTER_ARXIV_API_URL=arxiv.url)
            with newsletter_server(["serve", "--port", str(port)], port, folder, env) as base:
                yield base, store, lambda address: store.add(address)[0]
    finally:
        store.close()


def preferences_url(base: str, reader) -> str:
    return Signer(SECRET).preferences_url(base, reader.ref)


def feedback_url(base: str, store, reader, position: int, direction: str) -> str:
    key = store.edition_papers(DAY)[position]
    return f"{base}/f/{Signer(SECRET).feedback_token(reader.ref, EDITION, position, key)}/{direction}"


def fits(page) -> bool:
    """No horizontal scroll at the page's width."""
    measured = page_widths(page)
    return measured["scroll"] <= measured["inner"]


def test_setting_interests_on_the_preferences_page(site, new_page):
    base, store, add = site
    reader = add("ines.interests@example.com")
    page = new_page()
    assert page.goto(preferences_url(base, reader)).status == 200
    expect(page.locator("#heading")).to_have_text("Your preferences")
    expect(page.locator(".address")).to_have_text(mask_email(reader.email))
    expect(page.locator("#picks")).to_have_value("5")
    page.get_by_label("Interests").fill("concept erasure\nprotein structure prediction")
    page.get_by_label("Authors you follow").fill("Grace Hopper")
    page.get_by_label("arXiv categories").fill("cs.cv q-bio.BM")
    page.get_by_label("Papers you like").fill("https://arxiv.org/abs/2311.12092v2")
    page.get_by_label("Number of picks").fill("3")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Saved.")
    assert store.profile(reader.id) == Profile(
        reader.id, ("concept erasure", "protein structure prediction"), ("Grace Hopper",), ("cs.CV", "q-bio.BM"),
        ("2311.12092",), picks=3)
    expect(page.get_by_label("arXiv categories")).to_have_value("cs.CV, q-bio.BM")
    expect(page.get_by_label("Interests")).to_have_value("concept erasure\nprotein structure prediction")
    # The seed paper was not stored: the server's worker fetches it from arXiv.
    wait_until(lambda: store.papers(["2311.12092"]), "the seed paper fetched")
    page.reload()
    expect(page.locator("ul.seeds")).to_contain_text(f"2311.12092: {SEED[0]}")
    # A wrong category: shown beside its field, nothing saved, the rest as typed.
    page.get_by_label("Interests").fill("video generation")
    page.get_by_label("arXiv categories").fill("cs.CV, vision")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#categories-error")).to_contain_text("“vision” is not an arXiv category")
    expect(page.get_by_label("Interests")).to_have_value("video generation")
    assert store.profile(reader.id).interests == ("concept erasure", "protein structure prediction")
    assert page.csp == []


def test_voting_from_a_link_then_undoing_on_a_phone(site, new_page):
    base, store, add = site
    reader = add("vera.votes@example.com")
    page = new_page(PHONE)
    assert page.goto(feedback_url(base, store, reader, 3, "up")).status == 200
    expect(page.locator(".paper .title")).to_have_text("Robust Concept Unlearning in Diffusion Models")
    expect(page.locator(".paper .authors")).to_have_text("Alan Turing, Grace Hopper")
    assert fits(page)
    assert store.votes(reader.id) == []  # opening the link changed nothing
    page.get_by_role("button", name="👍 More like this").click()
    expect(page.get_by_role("status")).to_have_text("👍 noted. Papers like this will come first in your picks.")
    assert fits(page)
    assert [(v.paper_key, v.vote) for v in store.votes(reader.id)] == [("2503.00004", 1)]
    page.get_by_role("button", name="Undo").click()
    expect(page.get_by_role("status")).to_contain_text("Your vote on this paper is removed")
    assert store.votes(reader.id) == []
    assert fits(page)
    page.get_by_role("button", name="👎 Fewer like this").click()
    expect(page.get_by_role("status")).to_contain_text("this one will not be picked")
    assert [(v.paper_key, v.vote) for v in store.votes(reader.id)] == [("2503.00004", -1)]
    # From there to the preferences page, and undo it in the list of rated papers.
    page.get_by_role("link", name="Your interests and the papers you rated").click()
    expect(page.locator("#heading")).to_have_text("Your preferences")
    assert fits(page)
    rated = page.locator("ul.votes li")
    expect(rated).to_have_count(1)
    expect(rated).to_contain_text("Robust Concept Unlearning in Diffusion Models")
    page.get_by_role("button", name="Undo your dislike of Robust Concept Unlearning in Diffusion Models").click()
    expect(page.get_by_role("status")).to_have_text("Your vote is removed.")
    expect(page.locator("ul.votes li")).to_have_count(0)
    assert store.votes(reader.id) == []
    assert fits(page)
    assert page.csp == []


def test_the_preferences_page_fits_a_phone_with_long_text_and_errors(site, new_page):
    base, store, add = site
    reader = add("a.reader.with.a.rather.long.address+papers@subdomain.example-university.edu")
    store.save_profile(Profile(reader.id, ("x" * 100, "a much longer interest " * 4), ("Y" * 100,),
                               ("cond-mat.mes-hall",), ("2503.00002",)))
    for position in range(8):
        store.record_vote(reader.id, store.edition_papers(DAY)[position], 1 if position % 2 else -1, EDITION)
    page = new_page(PHONE)
    assert page.goto(preferences_url(base, reader)).status == 200
    expect(page.locator("ul.votes li")).to_have_count(8)
    assert page_widths(page)["inner"] == PHONE["width"]
    assert fits(page)
    page.get_by_label("Papers you like").fill("not-a-paper-" + "z" * 80)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#seeds-error")).to_be_visible()
    assert fits(page)
    # The unsubscribe page's link leads here too.
    page.goto(Signer(SECRET).unsubscribe_url(base, reader.ref))
    page.get_by_role("link", name="Choose what Daily Papers picks for you").click()
    expect(page.locator("#heading")).to_have_text("Your preferences")
    assert store.get(ref=reader.ref).status == "active"
    assert fits(page)
    assert page.csp == []


def test_choosing_how_often_on_the_preferences_page(site, new_page):
    base, store, add = site
    reader = add("olga.often@example.com")
    page = new_page()
    assert page.goto(preferences_url(base, reader)).status == 200
    how_often = page.get_by_role("group", name="How often")
    expect(how_often).to_be_visible()
    expect(how_often.get_by_role("radio", name="Daily", exact=True)).to_be_checked()
    expect(page.get_by_label("Day of the weekly email")).to_have_value("mon")  # the list's day
    expect(page.locator("#frequency-hint")).to_have_text("Now: daily.")
    # Weekly on Friday.
    how_often.get_by_role("radio", name="Weekly on", exact=True).check()
    page.get_by_label("Day of the weekly email").select_option(label="Friday")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Saved.")
    expect(page.locator("#frequency-hint")).to_have_text("Now: weekly on Friday.")
    assert store.get(ref=reader.ref).schedule == Schedule(Frequency.WEEKLY, 4)
    # A pause without its day: the error beside the choice, nothing saved.
    page.get_by_role("radio", name="Paused until").check()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#frequency-error")).to_have_text("A pause needs the day it ends (YYYY-MM-DD).")
    expect(page.get_by_role("radio", name="Paused until")).to_be_checked()
    expect(page.get_by_label("Day the emails start again")).to_have_attribute("aria-invalid", "true")
    assert store.get(ref=reader.ref).schedule == Schedule(Frequency.WEEKLY, 4)
    # With the day: paused, then weekly on Friday again.
    until = store.clock().date() + dt.timedelta(days=14)
    page.get_by_label("Day the emails start again").fill(until.isoformat())
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#frequency-hint")).to_have_text(f"Now: paused until {until}, then weekly on Friday.")
    expect(page.get_by_role("radio", name="Paused until")).to_be_checked()
    expect(page.get_by_label("Day the emails start again")).to_have_value(until.isoformat())
    assert store.get(ref=reader.ref).schedule == Schedule(Frequency.WEEKLY, 4, until)
    # The page, as the reader sees it, passes axe-core (fieldset, legend, labels, names).
    node_tools()
    violations = axe_violations(new_page(), page.content())
    assert [v for v in violations if v["impact"] in BLOCKING] == [], violations
    # Daily ends the pause.
    page.get_by_role("radio", name="Daily", exact=True).check()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#frequency-hint")).to_have_text("Now: daily.")
    assert store.get(ref=reader.ref).schedule == Schedule()
    assert page.csp == []


def test_choosing_the_rest_of_the_day_on_a_phone(site, new_page):
    base, store, add = site
    reader = add("rita.rest@example.com")
    page = new_page(PHONE)
    assert page.goto(preferences_url(base, reader)).status == 200
    rest = page.get_by_role("group", name="The rest of the day")
    expect(rest).to_be_visible()
    expect(rest.get_by_role("radio", name="Every title (a compact list of links)")).to_be_checked()
    rest.get_by_label("Just the top (one line linking the web edition)").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Saved.")
    assert store.profile(reader.id).rest == RestOfDay.COUNT
    page.reload()
    expect(page.get_by_role("group", name="The rest of the day")
           .get_by_role("radio", name="Just the top (one line linking the web edition)")).to_be_checked()
    assert fits(page)
    node_tools()
    violations = axe_violations(new_page(), page.content())
    assert [v for v in violations if v["impact"] in BLOCKING] == [], violations
    assert page.csp == []


def test_how_often_fits_a_phone(site, new_page):
    base, store, add = site
    reader = add("phoebe.phone@example.com")
    store.set_schedule(reader.id, Schedule(Frequency.WEEKLY, 2, store.clock().date() + dt.timedelta(days=30)))
    page = new_page(PHONE)
    assert page.goto(preferences_url(base, reader)).status == 200
    expect(page.get_by_role("radio", name="Paused until")).to_be_checked()
    expect(page.get_by_label("Day of the weekly email")).to_have_value("wed")
    for element in ("#weekday", "#paused_until"):  # within the phone's width, beside or under their choice
        box = page.locator(element).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (element, box)
    assert fits(page)
    page.get_by_role("radio", name="Weekly on", exact=True).check()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#frequency-hint")).to_have_text("Now: weekly on Wednesday.")
    assert fits(page)
    assert page.csp == []


def test_an_unsubscribed_reader_is_told_and_resubscribes_on_a_phone(site, new_page):
    base, store, add = site
    reader = add("una.unsubscribed@example.com")
    store.change_status(reader.id, SubscriberStatus.UNSUBSCRIBED, source="web", reason="unsubscribed on the web page")
    page = new_page(PHONE)
    assert page.goto(preferences_url(base, reader)).status == 200
    expect(page.locator("#no-email")).to_contain_text(f"You are unsubscribed: {mask_email(reader.email)} gets no "
                                                      "email from Daily Papers.")
    expect(page.locator("#frequency-hint")).to_have_text(
        "Now: no email (you are unsubscribed); once you resubscribe, daily.")
    assert fits(page)
    node_tools()
    violations = axe_violations(new_page(), page.content())
    assert [v for v in violations if v["impact"] in BLOCKING] == [], violations
    page.get_by_role("button", name="Resubscribe").click()
    expect(page.get_by_role("status")).to_contain_text("Welcome back")
    wait_until(lambda: store.get(ref=reader.ref).status == SubscriberStatus.ACTIVE, "the resubscribe")
    assert page.csp == []
