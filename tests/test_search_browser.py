"""The paper archive in a real headless Chromium, against a real
``newsletter serve`` (with the app's Content-Security-Policy in force), at
phone (375 px) and desktop (1,280 px) width: the search form from the past
issues page, results marked and linked to the issues they were in and to
their own pages (title keys and old-style arXiv keys), paging, and a search
that is too long; the Subscribe link of the public pages, visible at phone
width and leading to the sign-up form; never a horizontal scroll; and no
serious or critical axe-core violation on any of these pages, in light and
dark colour schemes.

One server on a SQLite database shared by the tests of this module: the
example day and the day after it (three of its papers again, and a paper
with an old-style arXiv id), both issues stored.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import unquote, urlsplit

import pytest
from test_email_checks import BLOCKING, axe_violations, node_tools

from conftest import DESKTOP, EXAMPLE, PHONE, SECRET, clean_env, free_port, newsletter_server, page_widths
from newsletter.papers.batches import load_batch
from newsletter.core.config import Settings
from newsletter.core.models import Batch, Paper
from newsletter.issue.render import render_issue
from newsletter.store import open_store

pytestmark = pytest.mark.browser

DAY1 = dt.date(2025, 3, 11)
DAY2 = dt.date(2025, 3, 12)
BRANES = Paper(title="Branes and Strings in Diffusion Geometry",
               abstract="We relate brane dynamics to heat kernels on curved spaces.",
               authors=("Edward Witten",), arxiv_id="hep-th/9901001", url="https://arxiv.org/abs/hep-th/9901001",
               upvotes=3)
SPARSE = "Sparse Concept Bottleneck Models: Gumbel Tricks in Contrastive Learning"  # on both days

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or fails in CI) with a clear reason
    expect = None


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A running web app on a database holding two days of papers and
    their issues; yields (base URL, store)."""
    folder = tmp_path_factory.mktemp("site")
    database_url = f"sqlite:///{folder / 'newsletter.db'}"
    store = open_store(database_url)
    example = load_batch(EXAMPLE, date=DAY1)
    second = Batch(DAY2, (BRANES, *example.papers[:3]), source="test")
    for batch in (example, second):
        store.store_batch(batch)
        store.save_issue(render_issue(batch, Settings()), publish=True)
    port = free_port()
    try:
        env = clean_env(NEWSLETTER_DATABASE_URL=database_url, NEWSLETTER_SECRET_KEY=SECRET,
                        NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}")
        with newsletter_server(["serve", "--port", str(port)], port, folder, env) as base:
            yield base, store
    finally:
        store.close()


def fits(page) -> bool:
    """No horizontal scroll at the page's width."""
    measured = page_widths(page)
    return measured["scroll"] <= measured["inner"]


def path_of(page) -> str:
    return unquote(urlsplit(page.url).path)


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["375px", "1280px"])
def test_searching_from_the_issues_page_to_an_issue_and_a_paper(site, new_page, viewport):
    base, store = site
    page = new_page(viewport)
    assert page.goto(f"{base}/issues/").status == 200
    page.get_by_role("link", name="Search the papers").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Paper archive")
    expect(page.locator("#results")).to_contain_text("Latest papers")
    expect(page.locator("ol.results > li")).to_have_count(20)
    assert fits(page)

    page.get_by_label("Search every paper by title, abstract or authors").fill('"concept bottleneck" gumbel')
    page.keyboard.press("Enter")
    total = store.search_papers('"concept bottleneck" gumbel').total
    expect(page.locator("#results")).to_have_text(f"{total} paper{'' if total == 1 else 's'} found")
    assert path_of(page) == "/papers" and "q=%22concept+bottleneck%22+gumbel" in page.url
    assert fits(page)
    result = page.locator("ol.results > li").filter(has=page.get_by_role("heading", name=SPARSE))
    expect(result).to_have_count(1)  # on two days, shown once
    expect(result.locator("mark").first).to_be_visible()
    days = result.locator(".days a[href^='/issues/']")
    expect(days).to_have_count(2)
    expect(days.first).to_have_text("Wed 12 Mar 2025")

    with page.expect_navigation():
        days.first.click()
    assert path_of(page) == "/issues/2025-03-12"
    expect(page.get_by_text(SPARSE).first).to_be_visible()
    page.go_back()

    page.get_by_role("link", name=f"Details of “{SPARSE}”").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(SPARSE)
    assert path_of(page).startswith("/papers/title:sparse-concept-bottleneck-models")
    expect(page.locator("ul.days li")).to_have_count(2)
    assert fits(page)
    page.get_by_role("link", name="Tue 11 Mar 2025").click()
    assert path_of(page) == "/issues/2025-03-11"
    assert page.csp == []


def test_an_old_style_arxiv_key_routes_to_its_page(site, new_page):
    base, _store = site
    page = new_page(PHONE)
    assert page.goto(f"{base}/papers?q=witten").status == 200
    expect(page.locator("#results")).to_have_text("1 paper found")
    page.get_by_role("link", name=f"Details of “{BRANES.title}”").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(BRANES.title)
    assert path_of(page) == "/papers/hep-th/9901001"
    expect(page.get_by_role("link", name="PDF")).to_have_attribute("href", "https://arxiv.org/pdf/hep-th/9901001")
    assert fits(page)
    page.get_by_role("link", name="Wed 12 Mar 2025").click()
    assert path_of(page) == "/issues/2025-03-12"
    assert page.csp == []


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["375px", "1280px"])
def test_paging_and_a_search_that_is_too_long(site, new_page, viewport):
    base, store = site
    pages = store.search_papers("learning").pages
    assert pages >= 2
    page = new_page(viewport)
    page.goto(f"{base}/papers")
    page.get_by_label("Search every paper by title, abstract or authors").fill("learning")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("nav.pages")).to_contain_text(f"Page 1 of {pages}")
    page.get_by_role("link", name="Next page →").click()
    expect(page.locator("nav.pages")).to_contain_text(f"Page 2 of {pages}")
    expect(page.locator("ol.results")).to_have_attribute("start", "21")
    assert fits(page)
    page.get_by_role("link", name="← Previous page").click()
    expect(page.locator("nav.pages")).to_contain_text(f"Page 1 of {pages}")

    response = page.goto(f"{base}/papers?q={'x' * 600}")
    assert response.status == 400
    expect(page.get_by_role("alert")).to_contain_text("Your search is too long")
    assert fits(page)
    assert page.csp == []


def test_the_subscribe_link_is_visible_at_phone_width(site, new_page):
    base, _store = site
    page = new_page(PHONE)
    for path in ("/issues/", "/issues/2025-03-12", "/papers", "/papers?q=hep-th/9901001v2", "/papers/hep-th/9901001"):
        assert page.goto(f"{base}{path}").status == 200, path
        subscribe = page.get_by_role("link", name="Subscribe", exact=True)
        expect(subscribe).to_be_visible()
        expect(subscribe).to_be_in_viewport()
        assert fits(page), path
    with page.expect_navigation():
        subscribe.click()
    assert path_of(page) == "/subscribe"
    expect(page.get_by_role("heading", level=1)).to_have_text("Subscribe")
    expect(page.get_by_role("link", name="Subscribe", exact=True)).to_have_count(0)  # the form's page: no link
    assert page.csp == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_archive_pages_have_no_serious_accessibility_violation(site, new_page, scheme):
    node_tools()
    base, _store = site
    page = new_page(color_scheme=scheme)
    for path in ("/papers", '/papers?q="concept bottleneck"', "/papers?q=learning&page=2", "/papers?q=zyzzyva",
                 "/papers/hep-th/9901001", "/papers?q=arXiv:hep-th/9901001", "/issues/",
                 f"/papers?q={'x' * 600}"):
        markup = page.request.get(f"{base}{path}").text()
        violations = axe_violations(page, markup)
        blocking = [v for v in violations if v["impact"] in BLOCKING]
        assert blocking == [], (path, blocking)
