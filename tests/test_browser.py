"""The preview server and the email it shows, in a real headless Chromium.

Each server is the real ``newsletter preview`` command run as a subprocess
(waitress on 127.0.0.1) on a copy of the example batch; the tests drive it with
Playwright. One server is shared by the read-only tests; the tests that edit
the batch or the templates start their own.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import (
    EXAMPLE,
    PHONE,
    clean_env,
    free_port,
    newsletter_server,
    page_widths,
)
from newsletter.papers.batches import load_batch
from newsletter.core.config import Settings
from newsletter.issue.render import PACKAGE_TEMPLATES, render_issue

pytestmark = pytest.mark.browser

DATE = dt.date(2025, 3, 11)
SUBJECT = "Daily Papers · Tue 11 Mar 2025 · 85 papers"

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or fails in CI) with a clear reason
    expect = None


# --------------------------------------------------------------------------
# the server


@dataclass
class Server:
    """A running ``newsletter preview``: its URL and the files it watches."""

    url: str
    batch: Path
    templates: Path


def _start_server(folder: Path):
    """Copy the example into ``folder``, start the preview on it and yield a
    :class:`Server` once the port answers; stop the process afterwards."""
    batch = folder / "batch.txt"
    shutil.copyfile(EXAMPLE, batch)
    templates = folder / "templates-override"
    templates.mkdir()
    port = free_port()
    args = ["preview", str(batch), "--date", DATE.isoformat(), "--port", str(port)]
    with newsletter_server(args, port, folder, clean_env(NEWSLETTER_TEMPLATES_DIR=str(templates))) as url:
        yield Server(url, batch, templates)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One preview server shared by the tests that only read."""
    yield from _start_server(tmp_path_factory.mktemp("preview"))


@pytest.fixture
def own_server(tmp_path):
    """A preview server of the test's own, for the tests that edit files."""
    yield from _start_server(tmp_path)


@pytest.fixture(scope="module")
def example():
    """The example day as loaded and rendered in this process with the
    package templates (what the server shows before any edit)."""
    batch = load_batch(EXAMPLE, date=DATE)
    return batch, render_issue(batch, Settings(templates_dir=PACKAGE_TEMPLATES))


# --------------------------------------------------------------------------
# helpers


def no_horizontal_scroll(target) -> bool:
    """True when the document in ``target`` is no wider than its viewport."""
    measured = page_widths(target)
    return measured["scroll"] <= measured["inner"]


def luminance(css_color: str) -> float:
    """Relative luminance (WCAG) of an ``rgb(...)``/``rgba(...)`` color."""
    parts = css_color[css_color.index("(") + 1 : css_color.index(")")].replace("/", ",").replace(" ", ",")
    r, g, b = [float(x) for x in parts.split(",") if x][:3]

    def channel(value: float) -> float:
        value /= 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def rewrite(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` and move its mtime forward, so the change is
    seen even on a file system with coarse timestamps."""
    path.write_text(text, encoding="utf-8")
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))


# --------------------------------------------------------------------------
# the preview page


def test_preview_page_shows_subject_sizes_text_and_two_frames(server, example, new_page):
    batch, issue = example
    page = new_page()
    response = page.goto(server.url + "/")
    assert response.status == 200
    expect(page.locator("#subject")).to_have_text(SUBJECT)
    expect(page.locator("#preheader")).to_have_text(issue.preheader)
    assert batch.papers[0].title in issue.preheader
    expect(page.locator("#size")).to_contain_text(f"{issue.html_bytes:,} bytes")
    expect(page.locator("#text")).to_be_visible()
    expect(page.locator("#text")).to_contain_text(batch.papers[0].title)
    expect(page.locator("#text")).to_contain_text("http://127.0.0.1:8000/subscribe")
    expect(page.locator("iframe")).to_have_count(2)
    for frame_id in ("#desktop", "#phone"):
        expect(page.locator(frame_id)).to_be_visible()
        expect(page.frame_locator(frame_id).get_by_text(batch.papers[0].title, exact=True)).to_be_visible()


def test_phone_frame_is_375_px_wide_without_horizontal_scroll(server, new_page):
    page = new_page()
    page.goto(server.url + "/")
    frame = page.frame_locator("#phone")
    expect(frame.locator(".mh")).to_be_visible()
    measured = page_widths(frame)
    assert measured["inner"] == 375, measured  # the frame's border is not taken from the email
    assert no_horizontal_scroll(frame), measured


# --------------------------------------------------------------------------
# the email itself


@pytest.mark.parametrize("width", [375, 600])
def test_email_shows_every_title(server, example, new_page, width):
    batch, _issue = example
    page = new_page(viewport={"width": width, "height": 800})
    response = page.goto(server.url + "/email.html")
    assert response.status == 200
    assert len(batch.papers) == 85
    for paper in batch.papers:
        expect(page.get_by_text(paper.title, exact=True)).to_be_visible()
    if width == 375:
        assert no_horizontal_scroll(page), page_widths(page)


def test_email_in_dark_mode_has_dark_background_and_visible_titles(server, example, new_page):
    batch, issue = example
    page = new_page(viewport=PHONE, color_scheme="dark")
    page.goto(server.url + "/email.html")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert luminance(background) < 0.05, background
    for paper in batch.papers[:5]:
        expect(page.get_by_text(paper.title, exact=True)).to_be_visible()
    colors = page.locator(".t, .rest a").evaluate_all("titles => titles.map(t => getComputedStyle(t).color)")
    assert len(colors) == len(batch.papers)  # the top cards' titles and the list's
    for color in set(colors):
        assert contrast(color, background) >= 4.5, (color, background)


def test_web_version_has_no_horizontal_scroll_on_a_phone(server, example, new_page):
    batch, _issue = example
    page = new_page(viewport=PHONE)
    response = page.goto(server.url + "/web.html")
    assert response.status == 200
    expect(page.get_by_text(batch.papers[-1].title, exact=True)).to_be_visible()
    assert no_horizontal_scroll(page), page_widths(page)


def test_responses_carry_security_headers(server):
    for path in ("/", "/email.html", "/web.html"):
        with urllib.request.urlopen(server.url + path, timeout=10) as response:
            headers = response.headers
            assert response.status == 200
        policy = headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy
        assert "frame-ancestors 'self'" in policy
        assert "script-src" not in policy
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"


# --------------------------------------------------------------------------
# editing while the server runs


def test_edits_to_the_batch_and_templates_show_on_reload(own_server, example, new_page):
    batch, _issue = example
    original = own_server.batch.read_text(encoding="utf-8")
    first = batch.papers[0].title
    new_title = "Reloaded Preview Shows This Freshly Edited Title"
    assert original.count(first) == 1

    page = new_page()
    page.goto(own_server.url + "/")
    expect(page.locator("#preheader")).to_contain_text(first)

    rewrite(own_server.batch, original.replace(first, new_title))
    page.reload()
    expect(page.locator("#preheader")).to_contain_text(new_title)
    expect(page.frame_locator("#desktop").get_by_text(new_title, exact=True)).to_be_visible()
    expect(page.get_by_text(first)).to_have_count(0)

    # A template copied into the templates folder after the server started.
    template = (PACKAGE_TEMPLATES / "email.mjml").read_text(encoding="utf-8")
    masthead = ">{{ name }}</h1>"
    assert masthead in template
    rewrite(
        own_server.templates / "email.mjml",
        template.replace(masthead, ">{{ name }} · Edited Masthead</h1>"),
    )
    page.goto(own_server.url + "/email.html")
    expect(page.locator(".mh")).to_have_text("Daily Papers · Edited Masthead")
    expect(page.get_by_text(new_title, exact=True)).to_be_visible()


def test_invalid_batch_shows_the_error_then_recovers(own_server, new_page):
    original = own_server.batch.read_text(encoding="utf-8")
    page = new_page()
    assert page.goto(own_server.url + "/").status == 200

    rewrite(own_server.batch, original.replace("Mar 11", "Not a date line"))
    response = page.reload()
    assert response.status == 500
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(str(own_server.batch))
    expect(alert).to_contain_text("not a recognised batch")
    expect(page.locator("iframe")).to_have_count(0)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(own_server.url + "/email.html", timeout=10)
    assert caught.value.code == 500
    assert str(own_server.batch) in caught.value.read().decode("utf-8")

    rewrite(own_server.batch, original)
    response = page.reload()
    assert response.status == 200
    expect(page.locator("#subject")).to_have_text(SUBJECT)
    expect(page.locator("iframe")).to_have_count(2)
