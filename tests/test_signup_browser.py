"""Confirmed sign-up in a real headless Chromium against ``newsletter serve``
(waitress, SQLite, the outbox sender): fill in the form (daily or weekly),
read the confirmation email from the outbox folder, open its link, press
the button; and the pages at phone width, with the app's
Content-Security-Policy in force.
"""

from __future__ import annotations

import email
import email.policy
import re

import pytest

from conftest import (
    PHONE,
    SECRET,
    clean_env,
    free_port,
    newsletter_server,
    page_widths,
    wait_until,
)
from newsletter.core.models import Frequency, Schedule, SubscriberStatus
from newsletter.store import open_store
from newsletter.web import mask_email

ACTIVE = SubscriberStatus.ACTIVE

pytestmark = pytest.mark.browser


try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or fails in CI) with a clear reason
    expect = None


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A running web app; yields (base URL, store, outbox folder)."""
    folder = tmp_path_factory.mktemp("signup-site")
    database_url = f"sqlite:///{folder / 'newsletter.db'}"
    outbox = folder / "outbox"
    port = free_port()
    env = clean_env(
        NEWSLETTER_DATABASE_URL=database_url,
        NEWSLETTER_SECRET_KEY=SECRET,
        NEWSLETTER_OUTBOX_DIR=str(outbox),
        NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}",
    )
    store = open_store(database_url)
    try:
        with newsletter_server(["serve", "--port", str(port)], port, folder, env) as base:
            yield base, store, outbox
    finally:
        store.close()


def confirmation_link(outbox, address: str) -> str:
    """The link in the one confirmation email sent to ``address`` (the
    server's worker sends it shortly after the sign-up)."""

    def sent() -> list[str]:
        found = []
        for path in (outbox / "single").glob("*.eml"):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if message["To"].addresses[0].addr_spec == address:
                found.append(message.get_body(("plain",)).get_content())
        return found

    found = wait_until(sent, f"the confirmation email to {address}")
    assert len(found) == 1, found
    (link,) = re.findall(r"https?://\S+/confirm/\S+", found[0])
    return link


def no_horizontal_scroll(page) -> bool:
    measured = page_widths(page)
    assert measured["inner"] == PHONE["width"], measured
    return measured["scroll"] <= measured["inner"]


def test_sign_up_and_confirm_in_the_browser(site, new_page):
    base, store, outbox = site
    address = "grace.hopper@example.com"
    page = new_page()
    assert page.goto(f"{base}/subscribe").status == 200
    expect(page.locator("#heading")).to_have_text("Subscribe")
    # The honeypot is out of sight.
    box = page.locator("#website").bounding_box()
    assert box is None or box["x"] + box["width"] <= 0, box
    page.get_by_label("Email address").fill(address)
    page.get_by_label("Name (optional)").fill("Grace Hopper")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("status")).to_contain_text("Check your inbox")
    assert store.get(email=address) is None

    link = confirmation_link(outbox, address)
    assert link.startswith(f"{base}/confirm/")
    assert page.goto(link).status == 200
    expect(page.locator("#heading")).to_have_text("Confirm your subscription")
    expect(page.locator(".address")).to_have_text(mask_email(address))
    # Opening the link subscribes nobody: only the button does.
    assert store.get(email=address) is None

    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.locator("#heading")).to_have_text("You are subscribed")
    expect(page.get_by_role("status")).to_contain_text("You are subscribed")
    grace = store.get(email=address)
    assert (grace.status, grace.name, grace.source) == (ACTIVE, "Grace Hopper", "signup")
    assert [(e.new_status, e.source) for e in store.events(grace.id)] == [(ACTIVE, "signup")]
    assert page.csp == []


def test_sign_up_pages_fit_a_phone(site, new_page):
    base, store, outbox = site
    page = new_page(PHONE)
    page.goto(f"{base}/subscribe")
    expect(page.get_by_role("button", name="Subscribe")).to_be_visible()
    assert no_horizontal_scroll(page)
    address = "a.rather.long.address+papers@subdomain.example-university.edu"
    page.get_by_label("Email address").fill(address)
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("status")).to_contain_text("Check your inbox")
    assert no_horizontal_scroll(page)
    page.goto(confirmation_link(outbox, address))
    expect(page.get_by_role("button", name="Confirm my subscription")).to_be_visible()
    assert no_horizontal_scroll(page)
    response = page.goto(f"{base}/confirm/not-a-valid-link")
    assert response.status == 400
    expect(page.get_by_role("alert")).to_contain_text("not valid or has expired")
    assert no_horizontal_scroll(page)
    assert store.get(email=address) is None
    assert page.csp == []


def test_a_weekly_sign_up_in_the_browser(site, new_page):
    base, store, outbox = site
    address = "wendy.weekly@example.com"
    page = new_page()
    page.goto(f"{base}/subscribe")
    how_often = page.get_by_role("group", name="How often?")
    expect(how_often.get_by_role("radio", name="Daily: each morning, that day's papers")).to_be_checked()
    page.get_by_label("Email address").fill(address)
    how_often.get_by_role("radio", name="Weekly: the week's papers in one email, on Mondays").check()
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("status")).to_contain_text("Check your inbox")
    page.goto(confirmation_link(outbox, address))
    expect(page.locator("#frequency")).to_contain_text("weekly")
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.get_by_role("status")).to_have_text("You are subscribed. Your first weekly issue arrives on Monday.")
    reader = store.get(email=address)
    assert (reader.status, reader.schedule) == (ACTIVE, Schedule(Frequency.WEEKLY))
    assert page.csp == []
