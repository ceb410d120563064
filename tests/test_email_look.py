"""How a reader's email looks, as the outbox wrote it: the example day sent
by the real command to the example list (subscribers/example.csv), and the
weekly edition of a week that stored the example day every day; then the HTML
part of three readers' messages (one with picks, one with no interests, who
gets the invitation, and the weekly reader) in headless Chromium at 375 and
600 px wide, light and dark:

* a full-page screenshot of each, saved under the folder named by
  NEWSLETTER_TEST_ARTIFACTS (default: test-artifacts/ at the top of the
  checkout), in email-look/, for people to look at;
* no serious or critical axe-core violation;
* no horizontal scroll: the page is no wider than the window.

Only what the outbox wrote is read, so these hold for any layout of the
email; nothing here depends on how tall it is or how many cards it has.
"""

from __future__ import annotations

import io
import json
import os
import re
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from test_email_checks import BLOCKING, axe_violations, node_tools
from test_thumbnails import PictureServer

from conftest import EXAMPLE, FIXTURES, PHONE, ROOT, SECRET, newsletter_run
from newsletter.core.models import thumbnail_path
from newsletter.store import open_store

# Read when the module loads: each test runs with no NEWSLETTER_* variable.
ARTIFACTS = Path(os.environ.get("NEWSLETTER_TEST_ARTIFACTS") or ROOT / "test-artifacts").resolve() / "email-look"
DATE = "2025-03-11"
WEEKLY_DATE = "2025-03-17"  # a Monday: the example list's weekly readers' day; the week is 11–17 Mar
READERS = {"picks": "ada@example.com", "invite": "edsger@example.com", "weekly": "barbara@example.com",
           "thumbnails": "ada@example.com"}
THUMBNAIL_DATE = "2025-03-10"  # a day of eight papers with figures, sent with NEWSLETTER_THUMBNAILS=on
WIDTHS = {375: PHONE, 600: {"width": 600, "height": 900}}
BASE_URL = "https://papers.example.org"


def run(folder: Path, env: dict[str, str], *args: str) -> str:
    """Run the real command; fail the test with its output unless it exits 0."""
    result = newsletter_run(*args, folder=folder, env=env)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


@pytest.fixture(scope="module")
def sent(tmp_path_factory) -> dict[str, dict]:
    """{kind: {"html", "message", "picks"}} for the three readers of
    :data:`READERS`, from the outbox of one send of the example day to the
    example list and one weekly send; "picks" is the reader's state and
    picks as ``newsletter picks --json`` shows the stored ones."""
    folder = tmp_path_factory.mktemp("email-look")
    env = {
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{folder / 'newsletter.db'}",
        "NEWSLETTER_OUTBOX_DIR": str(folder / "outbox"),
        "NEWSLETTER_SENDER": "outbox",
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_BASE_URL": BASE_URL,
        "PYTHONPATH": str(ROOT),
    }
    run(folder, env, "subscribers", "import", str(ROOT / "subscribers" / "example.csv"))
    run(folder, env, "send", str(EXAMPLE), "--date", DATE)
    page = EXAMPLE.read_text(encoding="utf-8")
    for day in range(12, 18):
        # The page names its day on a line of its own: the same papers,
        # stored as the next six days'.
        copy = folder / f"day-{day}.txt"
        copy.write_text(re.sub(r"(?m)^Mar 11$", f"Mar {day}", page), encoding="utf-8")
        run(folder, env, "render", str(copy), "--date", f"2025-03-{day}", "--out", str(folder / "out" / str(day)))
    run(folder, env, "send", "--weekly", "--date", WEEKLY_DATE)
    # A day whose papers have figures, copied from a picture server on
    # loopback when the day is stored (the email links the web app's copies).
    with PictureServer({f"/{n}.png": ("image/png", figure(n)) for n in range(8)}) as pictures:
        day = json.loads((FIXTURES / "picks-day.json").read_text(encoding="utf-8"))
        day["date"] = THUMBNAIL_DATE
        for n, entry in enumerate(day["papers"]):
            entry["thumbnail_url"] = pictures.url(f"/{n}.png")
        (folder / "figures.json").write_text(json.dumps(day), encoding="utf-8")
        run(folder, {**env, "NEWSLETTER_THUMBNAILS": "on"}, "send", str(folder / "figures.json"))
    shown = {entry["email"]: entry for entry in json.loads(run(folder, env, "picks", str(EXAMPLE), "--date", DATE,
                                                               "--all", "--json"))}
    found = {}
    for kind, address in READERS.items():
        edition = {"weekly": f"{WEEKLY_DATE}-weekly", "thumbnails": THUMBNAIL_DATE}.get(kind, DATE)
        [path] = (folder / "outbox" / edition).glob(f"*-{address}.eml")
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        found[kind] = {"html": message.get_body(preferencelist=("html",)).get_content(), "message": message,
                       "picks": shown.get(address)}
    store = open_store(env["NEWSLETTER_DATABASE_URL"])
    try:  # what the web app would serve at /papers/<key>/thumbnail.png
        found["thumbnails"]["figures"] = {thumbnail_path(key): store.thumbnail(key).png
                                          for key in store.stored_thumbnail_keys(f"2503.{n:05d}" for n in range(1, 9))}
    finally:
        store.close()
    return found


def figure(n: int) -> bytes:
    """A 1,200 × 630 picture of a chart: bars of ``n``'s own heights."""
    out = io.BytesIO()
    image = Image.new("RGB", (1200, 630), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    for bar in range(6):
        top = 100 + (37 * (n + 1) * (bar + 3)) % 400
        draw.rectangle((120 + bar * 160, top, 220 + bar * 160, 560), fill=(30 + 30 * bar, 90, 200 - 20 * bar))
    image.save(out, format="PNG")
    return out.getvalue()


def open_email(new_page, markup: str, width: int, scheme: str, figures: dict[str, bytes] | None = None):
    """A page at ``width`` px in ``scheme`` with ``markup`` loaded; it may
    not reach any host (the email loads nothing) but the operator's web
    app, whose ``figures`` ({path: PNG}) it is given."""
    page = new_page(viewport=WIDTHS[width], color_scheme=scheme)

    def route(route):
        url = route.request.url
        path = url.removeprefix(BASE_URL)
        if url.startswith(BASE_URL) and path in (figures or {}):
            route.fulfill(status=200, content_type="image/png", body=figures[path])
        elif url.startswith("http"):
            route.abort()
        else:
            route.continue_()

    page.route("**/*", route)
    page.set_content(markup, wait_until="load")
    return page


def overflow(page) -> dict:
    """The document's scroll width and the window's width."""
    return page.evaluate("({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})")


def test_the_three_readers_get_what_they_are_here_to_show(sent):
    # The picks as stored at the send: the reader with interests has some,
    # the reader without any has none (and gets the invitation instead).
    assert sent["picks"]["picks"]["state"] == "picks" and sent["picks"]["picks"]["picks"]
    assert sent["invite"]["picks"]["picks"] == [] and sent["invite"]["picks"]["state"] != "picks"
    assert sent["weekly"]["message"]["X-Newsletter-Issue"] == f"{WEEKLY_DATE}-weekly"
    assert sent["picks"]["message"]["X-Newsletter-Issue"] == DATE
    for kind in READERS:
        assert "/f/" in sent[kind]["html"], kind  # a reader's own copy: their vote links
    # Every figure of the day with one was copied, and each card shows the
    # web app's copy, never the source's address.
    figures = sent["thumbnails"]["figures"]
    assert len(figures) == 8
    shown = re.findall(r'<img src="([^"]+)" alt="Figure from ', sent["thumbnails"]["html"])
    assert shown and {src.removeprefix(BASE_URL) for src in shown} <= set(figures)
    assert "127.0.0.1" not in sent["thumbnails"]["html"]


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", sorted(WIDTHS))
@pytest.mark.parametrize("kind", list(READERS))
def test_the_email_shot_checked_by_axe_and_no_wider_than_the_window(sent, new_page, kind, width, scheme):
    node_tools()
    markup = sent[kind]["html"]
    page = open_email(new_page, markup, width, scheme, sent[kind].get("figures"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{kind}-{width}-{scheme}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0

    if kind == "thumbnails":  # every figure drawn, none broken
        assert page.evaluate("[...document.images].filter(i => i.alt.startsWith('Figure from'))"
                             ".every(i => i.complete && i.naturalWidth > 0)")
    widths = overflow(page)
    assert widths["inner"] == width
    assert widths["scroll"] <= width, f"{kind} scrolls sideways at {width} px: {widths}"

    blocking = [v for v in axe_violations(page, markup) if v["impact"] in BLOCKING]
    assert blocking == [], json.dumps(blocking, ensure_ascii=False, indent=1)


@pytest.mark.browser
def test_the_sideways_check_would_catch_a_wide_table(sent, new_page):
    """The check is not vacuous: a 700 px table in the email makes the page
    scroll sideways at 375 px."""
    wide = '<table role="presentation" width="700" style="width:700px"><tr><td>wide</td></tr></table>'
    markup = sent["picks"]["html"].replace("</body>", wide + "</body>", 1)
    assert markup != sent["picks"]["html"]
    widths = overflow(open_email(new_page, markup, 375, "light"))
    assert widths["scroll"] > 375, widths
