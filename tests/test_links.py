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
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from conftest import EXAMPLE, SECRET, clean_env, free_port, newsletter_server, wait_until
from newsletter.cli import cli
from newsletter.core.config import Settings
from newsletter.core.models import SubscriberRow, SubscriberStatus, paper_key, paper_path
from newsletter.papers.batches import load_batch
from newsletter.store import open_store
from newsletter.readers.tokens import Signer
from newsletter.web import create_preview_app

UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED

DATE = "2025-03-11"
BASE = "https://papers.example.org"
URL = re.compile(r"""https?://[^\s"'<>]+""")


@pytest.fixture
def env(env) -> dict[str, str]:
    """The shared command settings, with a public base URL."""
    return {**env, "NEWSLETTER_BASE_URL": BASE}


@pytest.fixture
def site(web_client):
    """A test client of the web app on the command's database."""
    return web_client()


def invoke(env, *args: str):
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def send_test_message(env, address: str) -> email.message.EmailMessage:
    """Send the example day to ``address`` with --to; return the message
    written to the outbox. The edition is then published (a test message
    publishes nothing), so that its view-in-browser link resolves."""
    invoke(env, "send", str(EXAMPLE), "--date", DATE, "--to", address)
    invoke(env, "publish", DATE)
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
    db.import_subscribers([SubscriberRow(1, "editor@example.org", "Editor"),
                           SubscriberRow(2, "other@example.org", None)])
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
    db.import_subscribers([SubscriberRow(1, "reader@example.org", None)])

    message = send_test_message(env, "guest@example.org")

    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None
    text, html = bodies(message)
    assert footer_link(html) == f"{BASE}/subscribe"
    assert f"{BASE}/subscribe" in text
    assert "/unsubscribe" not in text + html and "/u/" not in text + html
    assert_all_resolve(site, own_links(text, html))
    assert site.get("/subscribe").status_code == 200


def test_a_test_message_to_a_subscriber_leaves_their_copy_of_the_issue_alone(env, db):
    db.import_subscribers([SubscriberRow(1, "editor@example.org", None)])
    invoke(env, "send", str(EXAMPLE), "--date", DATE)
    folder = Path(env["NEWSLETTER_OUTBOX_DIR"]) / DATE
    [sent] = folder.iterdir()
    before = sent.read_bytes()
    invoke(env, "send", str(EXAMPLE), "--date", DATE, "--to", "editor@example.org")
    assert sent.read_bytes() == before  # the test message went to a file of its own
    assert len(list(folder.iterdir())) == 2


def test_papers_without_an_arxiv_id_link_their_archive_page(env, db, site):
    # The example day has no arXiv ids: each title links the paper's page in
    # the archive (its full abstract), never a guessed search, in both parts.
    message = send_test_message(env, "guest@example.org")
    text, html = bodies(message)
    batch = load_batch(EXAMPLE, date=dt.date.fromisoformat(DATE))
    pages = {BASE + paper_path(paper_key(p)) for p in batch.papers}
    titles = [htmllib.unescape(href) for href in re.findall(r'<a class="t" href="([^"]+)"', html)]
    linked = {link for link in own_links(html) if "/papers/" in link}
    assert titles and set(titles) <= linked <= pages  # the cards' titles, then the listed ones
    assert {link for link in own_links(text) if "/papers/" in link} == linked
    for document in (text, html):
        assert "arxiv.org/search" not in document and "searchtype" not in document
    assert_all_resolve(site, linked)  # the day is stored: each page answers


# --------------------------------------------------------------------------
# render and preview


def test_every_link_render_writes_resolves(env, site, tmp_path):
    out = tmp_path / "out"
    invoke(env, "render", str(EXAMPLE), "--date", DATE, "--out", str(out))  # also stores the issue
    invoke(env, "publish", DATE)  # for /issues/ (render publishes nothing)
    documents = [(out / name).read_text(encoding="utf-8") for name in ("issue.html", "issue.txt", "web.html")]
    links = own_links(*documents)
    assert f"{BASE}/subscribe" in links and f"{BASE}/issues/{DATE}" in links
    assert "/unsubscribe" not in "".join(documents)
    assert_all_resolve(site, links)


def test_every_link_of_the_preview_resolves(env, db, site):
    invoke(env, "render", str(EXAMPLE), "--date", DATE, "--out", "out")  # stores the issue
    invoke(env, "publish", DATE)  # for /issues/ (render publishes nothing)
    settings = Settings(secret_key=SECRET, database_url=env["NEWSLETTER_DATABASE_URL"], base_url=BASE)
    preview = create_preview_app(EXAMPLE, settings, date=dt.date(2025, 3, 11)).test_client()
    pages = [preview.get(path) for path in ("/", "/email.html", "/web.html")]
    assert all(page.status_code == 200 for page in pages)
    documents = [page.get_data(as_text=True) for page in pages]
    links = own_links(*documents)
    assert f"{BASE}/subscribe" in links
    assert "/unsubscribe" not in "".join(documents)
    assert_all_resolve(site, links)


# --------------------------------------------------------------------------
# a reader who never said what they read, on the running site


def post(url: str, data: bytes) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")


def test_every_link_works_for_a_reader_who_never_set_an_interest(tmp_path):
    """A real send to readers with no profile, then each kind of link of
    one reader's email followed on a running `newsletter serve`: the
    invitation and footer's preferences page (saved), a 👍 (recorded), and
    the one-click unsubscribe (done)."""
    database_url = f"sqlite:///{tmp_path / 'newsletter.db'}"
    store = open_store(database_url)
    store.import_subscribers([SubscriberRow(1, "ada@example.org", "Ada"), SubscriberRow(2, "bob@example.org", None)])
    ada = store.get(email="ada@example.org")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = clean_env(NEWSLETTER_DATABASE_URL=database_url, NEWSLETTER_SECRET_KEY=SECRET, NEWSLETTER_BASE_URL=base,
                    NEWSLETTER_SENDER="outbox", NEWSLETTER_OUTBOX_DIR=str(tmp_path / "outbox"))
    try:
        sent = subprocess.run([sys.executable, "-m", "newsletter", "send", str(EXAMPLE), "--date", DATE],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        [message] = [m for m in (email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                                 for p in (tmp_path / "outbox" / DATE).iterdir()) if "ada@" in m["To"]]
        text, html = bodies(message)
        assert "TELL US WHAT YOU LIKE" in text and "Tell us what you like" in htmllib.unescape(html)
        links = {url.rstrip(".,;)").replace(base, "") for document in (text, htmllib.unescape(html))
                 for url in URL.findall(document) if url.startswith(base + "/")}
        preferences = {link for link in links if link.startswith("/p/")}
        ups = sorted(link for link in links if link.startswith("/f/") and link.endswith("/up"))
        unsubscribe = message["List-Unsubscribe"].strip("<>")
        # Votes on cards only: the top 8 and the few papers the invitation offers.
        assert len(preferences) == 1 and 8 <= len(ups) <= 8 + 5
        signer = Signer(SECRET)
        assert preferences == {urlsplit(signer.preferences_url(base, ada.ref)).path}
        assert unsubscribe == signer.unsubscribe_url(base, ada.ref)

        with newsletter_server(["serve", "--port", str(port)], port, tmp_path, env):
            [page] = preferences
            status, body = get(base + page)
            assert status == 200 and "a•••a@e•••.org" in body
            status, body = post(base + page, b"interests=concept+erasure&authors=&categories=&seeds=&picks=5")
            assert status == 200 and "Saved." in body
            wait_until(lambda: store.profile(ada.id).interests == ("concept erasure",), "the saved interests")

            status, body = get(base + ups[0])
            assert status == 200 and store.votes(ada.id) == []  # a GET changes nothing
            status, body = post(base + ups[0], b"")
            assert status == 200
            wait_until(lambda: [v.vote for v in store.votes(ada.id)] == [1], "the recorded vote")

            status, _body = post(unsubscribe, b"List-Unsubscribe=One-Click")
            assert status == 200
            wait_until(lambda: store.get(email="ada@example.org").status == UNSUBSCRIBED, "the unsubscribe")
        assert store.get(email="bob@example.org").status == "active"
        assert store.profile(store.get(email="bob@example.org").id).is_empty
    finally:
        store.close()
