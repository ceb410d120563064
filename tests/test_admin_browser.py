"""The dashboard in a real headless Chromium against a real ``newsletter
serve`` (its Content-Security-Policy in force): logging in, the overview's
charts, finding a reader, suppressing and reactivating them (the history
says who and why), importing a CSV, the live view of a running send, and
logging out; at 1,280 and 375 px, light and dark, with no horizontal
scroll, no CSP violation and no request to another host. Screenshots of the
overview and a reader's page are saved under ``test-artifacts/admin/``.

One server on a SQLite database shared by the tests of this module.
"""

from __future__ import annotations

import datetime as dt

import pytest

from admin_data import NAME, PASSWORD, history, operator, send
from conftest import DESKTOP, PHONE, ROOT, SECRET, clean_env, free_port, newsletter_server, page_widths
from newsletter.core.models import DeliveryStatus, Edition
from newsletter.store import Ledger, open_store
from newsletter.store.ledger import LedgerRow

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts" / "admin"

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or fails in CI) with a clear reason
    expect = None


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A running web app on a database with an operator and a few days of
    history; yields (base URL, store, what history() wrote)."""
    folder = tmp_path_factory.mktemp("admin-site")
    database_url = f"sqlite:///{folder / 'newsletter.db'}"
    store = open_store(database_url)
    operator(store)
    made = history(store)
    port = free_port()
    try:
        env = clean_env(NEWSLETTER_DATABASE_URL=database_url, NEWSLETTER_SECRET_KEY=SECRET,
                        NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}", NEWSLETTER_OUTBOX_DIR=str(folder / "outbox"))
        with newsletter_server(["serve", "--port", str(port)], port, folder, env) as base:
            yield base, store, made
    finally:
        store.close()


@pytest.fixture
def dashboard(site, new_page):
    """Open a page (``viewport``, ``color_scheme``) logged in as the
    operator; the page records requests to other hosts in ``page.foreign``."""
    base = site[0]

    def open_logged_in(viewport=DESKTOP, color_scheme="light"):
        page = new_page(viewport, color_scheme=color_scheme)
        page.foreign = []
        page.on("request", lambda r: page.foreign.append(r.url) if not r.url.startswith(base) else None)
        page.goto(f"{base}/admin/")
        expect(page).to_have_url(f"{base}/admin/login?next=/admin/")
        page.get_by_label("Name").fill(NAME)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{base}/admin/")
        return page

    return open_logged_in


def fits(page) -> bool:
    """No horizontal scroll at the page's width."""
    measured = page_widths(page)
    return measured["scroll"] <= measured["inner"]


def clean(page) -> bool:
    return page.csp == [] and page.foreign == []


def test_an_operators_round_from_login_to_logout(site, dashboard):
    base, store, made = site
    page = dashboard()
    expect(page.locator("#heading")).to_have_text("Overview")
    expect(page.locator("#count-active")).to_have_text("3")
    expect(page.locator("figure.chart svg")).to_have_count(7)  # five days charts, two rates
    expect(page.locator("#chart-signups rect.bar")).to_have_count(30)
    expect(page.locator("#deliverability ~ div[role=alert] p").first).to_contain_text("Bounce rate 33.33%")
    page.get_by_role("link", name="90 days").click()
    expect(page.locator("#chart-signups rect.bar")).to_have_count(90)
    # Find Erin, open her page, suppress her with a reason.
    page.get_by_role("link", name="Subscribers").click()
    page.get_by_label("Address or name starts with").fill("eri")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#readers tbody tr")).to_have_count(1)
    page.get_by_role("link", name="erin@example.com").click()
    expect(page.locator("#heading")).to_have_text("erin@example.com")
    expect(page.locator("#deliveries tbody tr")).to_have_count(1)
    expect(page.locator("#deliveries tbody tr")).to_contain_text("failed")
    page.get_by_label("Reason").fill("asked to stop by phone")
    page.get_by_role("button", name="Suppress").click()
    expect(page.get_by_role("status")).to_contain_text("Suppressed")
    expect(page.locator("#reader-status")).to_have_text("unsubscribed")
    first = page.locator("#events tbody tr").first
    expect(first).to_contain_text("active → unsubscribed")
    expect(first).to_contain_text("admin:alice")
    expect(first).to_contain_text("asked to stop by phone")
    page.get_by_label("Reason").fill("wants it again")
    page.get_by_role("button", name="Reactivate").click()
    expect(page.locator("#reader-status")).to_have_text("active")
    expect(page.locator("#events tbody tr").first).to_contain_text("wants it again")
    erin = store.get(email="erin@example.com")
    assert [(e.new_status, e.source, e.reason) for e in store.events(erin.id)][-2:] == [
        ("unsubscribed", "admin:alice", "asked to stop by phone"), ("active", "admin:alice", "wants it again")]
    assert fits(page)
    assert clean(page)
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("status")).to_have_text("You are logged out.")
    page.goto(f"{base}/admin/subscribers")
    expect(page).to_have_url(f"{base}/admin/login?next=/admin/subscribers")


def test_importing_a_csv_through_the_browser(site, dashboard, tmp_path):
    base, store, _made = site
    upload = tmp_path / "new-readers.csv"
    upload.write_text("email,name\nines@example.com,Inès\nada@example.com,Ada\nnot an address,\n", encoding="utf-8")
    page = dashboard(PHONE)
    page.get_by_role("link", name="Import and export").click()
    page.get_by_label("CSV file").set_input_files(str(upload))
    page.get_by_role("button", name="Check the file").click()
    expect(page.locator(".report [role=status]")).to_contain_text("Would add 1, already present 1, invalid 1")
    expect(page.locator(".report")).to_contain_text("line 4:")
    assert store.get(email="ines@example.com") is None
    assert fits(page)
    page.get_by_role("button", name="Import 1 new readers").click()
    expect(page.locator(".report [role=status]")).to_contain_text("Added 1, already present 1, invalid 1")
    added = store.get(email="ines@example.com")
    assert added.name == "Inès" and store.events(added.id)[0].source == "admin:alice"
    assert fits(page)
    assert clean(page)


def test_the_live_view_follows_a_running_send_without_reloading(site, dashboard):
    base, store, _made = site
    ids = [store.add(f"live{n}@example.com")[0].id for n in range(3)]
    edition = Edition(dt.date(2025, 3, 11))
    send(store, edition, {ids[0]: DeliveryStatus.SENT, ids[1]: DeliveryStatus.PENDING,
                          ids[2]: DeliveryStatus.PENDING}, dt.datetime.now(dt.timezone.utc), release=False)
    try:
        page = dashboard()
        page.goto(f"{base}/admin/sends")
        live = page.locator("[data-live]")
        expect(live.locator("[data-field=sent]")).to_have_text("1")
        Ledger(store, edition).record([LedgerRow(ids[1], DeliveryStatus.SENT, "m-1"),
                                       LedgerRow(ids[2], DeliveryStatus.FAILED, None, "refused")])
        expect(live.locator("[data-field=sent]")).to_have_text("2", timeout=20_000)
        expect(live.locator("[data-field=failed]")).to_have_text("1")
        expect(live.locator("[data-field=pending]")).to_have_text("0")
        assert clean(page)
    finally:
        Ledger(store, edition).release("test-run")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "375"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_overview_and_a_readers_page_fit_and_are_saved_as_screenshots(site, dashboard, viewport, scheme):
    base, _store, made = site
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = dashboard(viewport, scheme)
    assert page_widths(page)["inner"] == viewport["width"]
    assert fits(page)
    page.screenshot(path=str(ARTIFACTS / f"overview-{viewport['width']}-{scheme}.png"), full_page=True)
    page.goto(f"{base}/admin/subscribers/{made.readers['bob@example.org']}")
    expect(page.locator("#heading")).to_have_text("bob@example.org")
    assert fits(page)
    page.screenshot(path=str(ARTIFACTS / f"reader-{viewport['width']}-{scheme}.png"), full_page=True)
    for path in ("/admin/sends", "/admin/subscribers", "/admin/import", "/admin/settings"):
        page.goto(f"{base}{path}")
        assert fits(page), path
    assert clean(page)
