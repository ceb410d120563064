"""The public web app in a real headless Chromium: the unsubscribe page, its
buttons (with the app's Content-Security-Policy in force), and a past issue,
at phone width.

One ``newsletter serve`` subprocess (waitress) on a SQLite database shared by
the tests of this module; each test uses readers of its own.
"""

from __future__ import annotations

import datetime as dt

import pytest
from test_web import serving

from conftest import EXAMPLE, PHONE, SECRET, page_widths
from test_email_checks import BLOCKING, axe_violations, node_tools
from newsletter.papers.batches import load_batch
from newsletter.core.config import Settings
from newsletter.core.models import Frequency, Schedule, SubscriberStatus
from newsletter.issue.render import PACKAGE_TEMPLATES, render_issue
from newsletter.store import open_store
from newsletter.readers.tokens import Signer
from newsletter.web import mask_email

ACTIVE = SubscriberStatus.ACTIVE
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED

pytestmark = pytest.mark.browser

DATE = dt.date(2025, 3, 11)

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or fails in CI) with a clear reason
    expect = None


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A running web app on a database with a few readers and the example
    issue; yields (base URL, store, readers by name, the issue's batch)."""
    folder = tmp_path_factory.mktemp("site")
    database_url = f"sqlite:///{folder / 'newsletter.db'}"
    store = open_store(database_url)
    readers = {
        name: store.add(address, name)[0]
        for name, address in [
            ("alice", "alice.liddell@example.com"),
            ("carol", "carol.with.a.rather.long.address+newsletter@subdomain.example-university.edu"),
            ("dave", "d@example.org"),
            ("erin", "erin@example.net"),
        ]
    }
    batch = load_batch(EXAMPLE, date=DATE)
    store.save_issue(render_issue(batch, Settings(templates_dir=PACKAGE_TEMPLATES)), publish=True)
    try:
        with serving(folder, database_url) as base:
            yield base, store, readers, batch
    finally:
        store.close()


def no_horizontal_scroll(page) -> bool:
    measured = page_widths(page)
    assert measured["inner"] == PHONE["width"], measured
    return measured["scroll"] <= measured["inner"]


def link(base: str, reader) -> str:
    return Signer(SECRET).unsubscribe_url(base, reader.ref)


def test_unsubscribe_then_resubscribe_with_the_buttons(site, new_page):
    base, store, readers, _batch = site
    alice = readers["alice"]
    others = {r.id: (r.status, len(store.events(r.id))) for r in store.iter_subscribers() if r.id != alice.id}
    page = new_page()
    response = page.goto(link(base, alice))
    assert response.status == 200
    expect(page.locator("#heading")).to_have_text("Unsubscribe")
    expect(page.locator(".address")).to_have_text(mask_email(alice.email))
    expect(page.get_by_role("button", name="Unsubscribe")).to_be_visible()
    assert alice.email not in page.content()
    # Opening the page (as a mail scanner would) changes nothing.
    assert store.get(ref=alice.ref).status == ACTIVE
    assert len(store.events(alice.id)) == 1

    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.locator("#heading")).to_have_text("You are unsubscribed")
    expect(page.get_by_role("status")).to_contain_text(mask_email(alice.email))
    assert store.get(ref=alice.ref).status == UNSUBSCRIBED
    events = store.events(alice.id)
    assert [(e.new_status, e.source) for e in events] == [(ACTIVE, "cli"), (UNSUBSCRIBED, "web")]

    page.get_by_role("button", name="Resubscribe").click()
    expect(page.locator("#heading")).to_have_text("You are subscribed again")
    expect(page.get_by_role("status")).to_contain_text("Welcome back")
    assert store.get(ref=alice.ref).status == ACTIVE
    events = store.events(alice.id)
    assert [(e.new_status, e.source) for e in events][-1] == (ACTIVE, "web")
    assert len(events) == 3
    assert page.csp == []
    # Nobody else was touched.
    assert {r.id: (r.status, len(store.events(r.id))) for r in store.iter_subscribers() if r.id != alice.id} == others


def test_unsubscribe_pages_fit_a_phone(site, new_page):
    base, store, readers, _batch = site
    page = new_page(PHONE)
    for name in ("carol", "dave"):
        reader = readers[name]
        page.goto(link(base, reader))
        expect(page.get_by_role("button", name="Unsubscribe")).to_be_visible()
        expect(page.locator(".address")).to_have_text(mask_email(reader.email))
        assert no_horizontal_scroll(page)
        page.get_by_role("button", name="Unsubscribe").click()
        expect(page.get_by_role("button", name="Resubscribe")).to_be_visible()
        assert no_horizontal_scroll(page)
        assert store.get(ref=reader.ref).status == UNSUBSCRIBED
    response = page.goto(f"{base}/u/not-a-valid-link")
    assert response.status == 400
    expect(page.get_by_role("alert")).to_contain_text("This link is not valid")
    assert no_horizontal_scroll(page)
    assert page.csp == []


def test_the_unsubscribe_page_offers_less_email_first_on_a_phone(site, new_page):
    base, store, readers, _batch = site
    erin = readers["erin"]
    page = new_page(PHONE)
    assert page.goto(link(base, erin)).status == 200
    buttons = page.get_by_role("button")
    expect(buttons).to_have_text(["Get it weekly instead", "Pause for two weeks", "Unsubscribe"])
    assert no_horizontal_scroll(page)
    for index in range(3):  # every tap target at least 24 by 24 px
        box = buttons.nth(index).bounding_box()
        assert box["width"] >= 24 and box["height"] >= 24, box
    node_tools()
    violations = axe_violations(new_page(PHONE), page.content())
    assert [v for v in violations if v["impact"] in BLOCKING] == [], violations
    assert store.get(ref=erin.ref).schedule == Schedule()  # opening it changed nothing

    page.get_by_role("button", name="Get it weekly instead").click()
    expect(page.locator("#heading")).to_have_text("Your schedule")
    expect(page.get_by_role("status")).to_contain_text("now gets Daily Papers weekly on")
    assert store.get(ref=erin.ref).schedule == Schedule(Frequency.WEEKLY)
    assert store.get(ref=erin.ref).status == ACTIVE
    assert no_horizontal_scroll(page)
    page.get_by_role("button", name="Get it daily").click()
    expect(page.get_by_role("status")).to_contain_text("now gets Daily Papers daily")
    assert store.get(ref=erin.ref).schedule == Schedule()
    expect(page.get_by_role("link", name="Your preferences")).to_be_visible()
    assert page.csp == []


def test_past_issue_shows_every_title_on_a_phone(site, new_page):
    base, _store, _readers, batch = site
    page = new_page(PHONE)
    response = page.goto(f"{base}/issues/")
    assert response.status == 200
    assert no_horizontal_scroll(page)
    page.get_by_role("link", name="Daily Papers · Tue 11 Mar 2025").click()
    page.wait_for_url(f"{base}/issues/{DATE.isoformat()}")
    assert len(batch.papers) == 85
    for paper in batch.papers:
        expect(page.get_by_text(paper.title, exact=True)).to_be_visible()
    assert no_horizontal_scroll(page)
    assert "/u/" not in page.content()
    assert page.csp == []
