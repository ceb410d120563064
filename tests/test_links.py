"""Every link the product writes to its own site leads to a page of the web
app (``create_app``): the test message of ``newsletter send --to``, the
files ``newsletter render`` writes and the preview app's pages.

A test message to a subscriber carries that subscriber's own signed
unsubscribe link (which works); to anyone else it carries no
List-Unsubscribe header and points its footer at the sign-up page.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import html as htmllib
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from conftest import EXAMPLE, SECRET
from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.models import SubscriberStatus
from newsletter.store import open_store
from newsletter.tokens import Signer
from newsletter.web import create_app, create_preview_app

UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED

DATE = "2025-03-11"
BASE = "https://papers.example.org"
URL = re.compile(r"""https?://[^\s"'<>]+""")


@pytest.fixture
def env(env) -> dict[str, str]:
    """The shared command settings, with a public base URL."""
    return {**env, "NEWSLETTER_BASE_URL": BASE}


@pytest.fixture
def db(env):
    store = open_store(env["NEWSLETTER_DATABASE_URL"])
    yield store
    store.close()


@pytest.fixture
def site(env, db):
    """A test client of the web app on the command's database."""
    settings = Settings(secret_key=SECRET, database_url=env["NEWSLETTER_DATABASE_URL"], base_url=BASE)
    return create_app(settings, db).test_client(use_cookies=False)


def invoke(env, *args: str):
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def send_test_message(env, address: str) -> email.message.EmailMessage:
    """Send the example day to ``address`` with --to; return the message written to the outbox."""
    invoke(env, "send", str(EXAMPLE), "--date", DATE, "--to", address)
    [path] = (Path(env["NEWSLETTER_OUTBOX_DIR"]) / DATE).iterdir()
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    path.unlink()
    return message


def bodies(message) -> tuple[str, str]:
    return (message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content())


def own_links(*documents: str) -> set[str]:
    """Every address under BASE found in ``documents`` (HTML-unescaped)."""
    found = set()
    for document in documents:
        for url in URL.findall(htmllib.unescape(document)):
            url = url.rstrip(".,;)")
            if url == BASE or url.startswith(BASE + "/"):
                found.add(url)
    return found


def assert_all_resolve(site, links: set[str]) -> None:
    """Each link is a page of the web app (a GET answers 200, not 404)."""
    assert links
    for link in sorted(links):
        path = urlsplit(link).path or "/"
        status = site.get(path).status_code
        assert status == 200, (link, status)


def footer_link(html: str) -> str:
    [href] = re.findall(r'<a\b[^>]*\bhref="([^"]+)"[^>]*>Unsubscribe</a>', html)
    return htmllib.unescape(href)


# --------------------------------------------------------------------------
# send --to


def test_a_test_message_to_a_subscriber_carries_their_working_link(env, db, site):
    db.import_subscribers([(1, "editor@example.org", "Editor"), (2, "other@example.org", None)])
    editor = db.get(email="editor@example.org")
    own = Signer(SECRET).unsubscribe_url(BASE, editor.ref)

    message = send_test_message(env, "Editor@Example.org")

    assert message["List-Unsubscribe"] == f"<{own}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = bodies(message)
    assert footer_link(html) == own and own in text
    assert "/unsubscribe" not in text + html
    assert_all_resolve(site, own_links(text, html, message["List-Unsubscribe"]))
    # The link works: the one-click POST a mail client would make unsubscribes them.
    answer = site.post(urlsplit(own).path, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    assert db.get(email="editor@example.org").status == UNSUBSCRIBED
    assert db.get(email="other@example.org").status == "active"


def test_a_test_message_to_someone_not_on_the_list_offers_the_sign_up_page(env, db, site):
    db.import_subscribers([(1, "reader@example.org", None)])

    message = send_test_message(env, "guest@example.org")

    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None
    text, html = bodies(message)
    assert footer_link(html) == f"{BASE}/subscribe"
    assert f"{BASE}/subscribe" in text
    assert "/unsubscribe" not in text + html and "/u/" not in text + html
    assert_all_resolve(site, own_links(text, html))
    assert site.get("/subscribe").status_code == 200


def test_a_test_message_to_a_subscriber_leaves_their_copy_of_the_issue_alone(env, db):
    db.import_subscribers([(1, "editor@example.org", None)])
    invoke(env, "send", str(EXAMPLE), "--date", DATE)
    folder = Path(env["NEWSLETTER_OUTBOX_DIR"]) / DATE
    [sent] = folder.iterdir()
    before = sent.read_bytes()
    invoke(env, "send", str(EXAMPLE), "--date", DATE, "--to", "editor@example.org")
    assert sent.read_bytes() == before  # the test message went to a file of its own
    assert len(list(folder.iterdir())) == 2


# --------------------------------------------------------------------------
# render and preview


def test_every_link_render_writes_resolves(env, site, tmp_path):
    out = tmp_path / "out"
    invoke(env, "render", str(EXAMPLE), "--date", DATE, "--out", str(out))  # also stores the issue
    documents = [(out / name).read_text(encoding="utf-8") for name in ("issue.html", "issue.txt", "web.html")]
    links = own_links(*documents)
    assert f"{BASE}/subscribe" in links and f"{BASE}/issues/{DATE}" in links
    assert "/unsubscribe" not in "".join(documents)
    assert_all_resolve(site, links)


def test_every_link_of_the_preview_resolves(env, db, site):
    invoke(env, "render", str(EXAMPLE), "--date", DATE, "--out", "out")  # stores the issue for /issues/
    settings = Settings(secret_key=SECRET, database_url=env["NEWSLETTER_DATABASE_URL"], base_url=BASE)
    preview = create_preview_app(EXAMPLE, settings, date=dt.date(2025, 3, 11)).test_client()
    pages = [preview.get(path) for path in ("/", "/email.html", "/web.html")]
    assert all(page.status_code == 200 for page in pages)
    documents = [page.get_data(as_text=True) for page in pages]
    links = own_links(*documents)
    assert f"{BASE}/subscribe" in links
    assert "/unsubscribe" not in "".join(documents)
    assert_all_resolve(site, links)
