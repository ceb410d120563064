"""The public web app: unsubscribe pages (RFC 8058 one-click included), their
security, past issues, the feed and the health check.

Most tests drive ``create_app`` through Flask's test client on both databases
(the ``store`` fixture: SQLite, then PostgreSQL). The rest run the real
``newsletter serve`` command (waitress) as a subprocess and talk HTTP to it,
as a mail provider's one-click POST does, including while a send is running.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import random
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote, urljoin

import lxml.html
import pytest
from itsdangerous import URLSafeSerializer

from click.testing import CliRunner

from conftest import EXAMPLE, SECRET, clean_env, free_port, newsletter_server
from newsletter.cli import cli
from newsletter.core.config import Settings
from newsletter.core.errors import ConfigError, StoreError
from newsletter.core.models import UNSUBSCRIBE_URL_MARK, Batch, DeliveryStatus, Paper, SubscriberStatus
from newsletter.issue.render import render_issue
from newsletter.sending.dispatch import Dispatcher, SendOptions
from newsletter.sending.senders.base import Delivery, Quota
from newsletter.store import Ledger, open_store
from newsletter.readers.tokens import UNSUBSCRIBE_SALT, Signer
from newsletter.web import SECURITY_HEADERS, create_app, mask_email

ACTIVE = SubscriberStatus.ACTIVE
BOUNCED = SubscriberStatus.BOUNCED
COMPLAINED = SubscriberStatus.COMPLAINED
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED

ONE_CLICK = b"List-Unsubscribe=One-Click"  # exactly what RFC 8058 receivers POST
FORM = "application/x-www-form-urlencoded"
OTHER_SECRET = "ly12xlEa51C9FWaRReYCbCWzyprWlYLeTDXuVOCodx0"
ATOM = "{http://www.w3.org/2005/Atom}"
DAY1 = dt.date(2025, 3, 10)
DAY2 = dt.date(2025, 3, 11)


# --------------------------------------------------------------------------
# helpers


def settings_for(database_url: str, **overrides) -> Settings:
    return Settings(**{"secret_key": SECRET, "database_url": database_url, **overrides})


def path_of(ref: str, secret: str = SECRET) -> str:
    return f"/u/{Signer(secret).unsubscribe_token(ref)}"


def snapshot(store) -> dict[int, tuple[str, int]]:
    """Every subscriber's status and number of events."""
    return {s.id: (s.status, len(store.events(s.id))) for s in store.iter_subscribers()}


def html_of(response):
    return lxml.html.document_fromstring(response.get_data(as_text=True))


def heading(response) -> str:
    return html_of(response).get_element_by_id("heading").text_content().strip()


def one_click(client, path: str):
    return client.post(path, data=ONE_CLICK, content_type=FORM)


def issue_of(day: dt.date, titles: list[str], settings: Settings | None = None):
    papers = tuple(
        Paper(
            title=title,
            abstract=f"We study {title.lower()} and report results.",
            authors=("Ada Lovelace", "Alan Turing"),
            arxiv_id=f"2503.{index:05d}",
            url=f"https://arxiv.org/abs/2503.{index:05d}",
            upvotes=10 - index,
        )
        for index, title in enumerate(titles, start=1)
    )
    return render_issue(Batch(day, papers, source="test"), settings or Settings())


@pytest.fixture
def readers(store):
    """Two active readers, Alice and Bob."""
    alice, _ = store.add("alice.liddell@example.com", "Alice")
    bob, _ = store.add("bob@example.org", "Bob")
    return alice, bob


@pytest.fixture
def client(store, web_client):
    """A test client of the app on ``store``; it keeps no cookies."""
    return web_client()


# --------------------------------------------------------------------------
# the unsubscribe page and its POSTs


def test_get_shows_the_confirmation_and_changes_nothing(store, client, readers):
    alice, _bob = readers
    before = snapshot(store)
    response = client.get(path_of(alice.ref))
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert "Daily Papers" in body
    assert mask_email(alice.email) in body
    assert alice.email not in body and "alice.liddell" not in body and alice.ref not in body
    page = html_of(response)
    forms = page.xpath("//form")
    # Less email first (a weekly edition, a pause), then the unsubscribe button.
    assert [f.get("method").lower() for f in forms] == ["post"] * 3
    assert [f.get("action") for f in forms] == [f"{path_of(alice.ref)}/weekly", f"{path_of(alice.ref)}/pause",
                                                 path_of(alice.ref)]
    assert [b.text_content().strip() for b in page.xpath("//form//button[@type='submit']")] == [
        "Get it weekly instead", "Pause for two weeks", "Unsubscribe"]
    assert snapshot(store) == before
    assert store.get(ref=alice.ref).status == ACTIVE


def test_one_click_post_unsubscribes_once_and_is_idempotent(store, client, readers):
    alice, bob = readers
    response = one_click(client, path_of(alice.ref))
    assert response.status_code == 200
    assert heading(response) == "You are unsubscribed"
    assert store.get(ref=alice.ref).status == UNSUBSCRIBED
    events = store.events(alice.id)
    assert len(events) == 2
    assert (events[-1].old_status, events[-1].new_status, events[-1].source) == (ACTIVE, UNSUBSCRIBED, "one-click")

    again = one_click(client, path_of(alice.ref))
    assert again.status_code == 200
    assert heading(again) == "You are unsubscribed"
    assert store.get(ref=alice.ref).status == UNSUBSCRIBED
    assert len(store.events(alice.id)) == 2
    assert store.get(ref=bob.ref).status == ACTIVE


def test_one_click_as_multipart_form_data_counts_as_one_click(store, client, readers):
    alice, _bob = readers
    response = client.post(path_of(alice.ref), data={"List-Unsubscribe": "One-Click"},
                            content_type="multipart/form-data")
    assert response.status_code == 200
    assert store.get(ref=alice.ref).status == UNSUBSCRIBED
    assert store.events(alice.id)[-1].source == "one-click"


def test_button_post_unsubscribes_with_source_web(store, client, readers):
    alice, _bob = readers
    response = client.post(path_of(alice.ref))  # the page's form: an empty body
    assert response.status_code == 200
    assert heading(response) == "You are unsubscribed"
    assert mask_email(alice.email) in response.get_data(as_text=True)
    assert store.get(ref=alice.ref).status == UNSUBSCRIBED
    last = store.events(alice.id)[-1]
    assert (last.new_status, last.source) == (UNSUBSCRIBED, "web")
    # The confirmation offers to undo it, on this reader's own link.
    forms = html_of(response).xpath("//form")
    assert [f.get("action") for f in forms] == [path_of(alice.ref) + "/resubscribe"]
    # A GET afterwards shows the same state and changes nothing.
    before = snapshot(store)
    assert heading(client.get(path_of(alice.ref))) == "You are unsubscribed"
    assert snapshot(store) == before


@pytest.mark.parametrize("how", ["web", "one-click"])
def test_resubscribe_after_the_readers_own_unsubscribe(store, client, readers, how):
    alice, _bob = readers
    if how == "web":
        client.post(path_of(alice.ref))
    else:
        one_click(client, path_of(alice.ref))
    assert store.get(ref=alice.ref).status == UNSUBSCRIBED
    response = client.post(path_of(alice.ref) + "/resubscribe")
    assert response.status_code == 200
    assert heading(response) == "You are subscribed again"
    assert store.get(ref=alice.ref).status == ACTIVE
    events = store.events(alice.id)
    assert len(events) == 3
    assert (events[-1].old_status, events[-1].new_status, events[-1].source) == (UNSUBSCRIBED, ACTIVE, "web")
    # Resubscribing an active reader again records nothing.
    again = client.post(path_of(alice.ref) + "/resubscribe")
    assert again.status_code == 200
    assert len(store.events(alice.id)) == 3


@pytest.mark.parametrize(
    "status, source",
    [(UNSUBSCRIBED, "cli"), (UNSUBSCRIBED, "import"), (BOUNCED, "bounce"), (COMPLAINED, "complaint")],
)
def test_resubscribe_never_undoes_the_operator_a_bounce_or_a_complaint(store, client, readers, status, source):
    alice, bob = readers
    assert store.change_status(alice.id, status, source=source, reason="set by the test")
    before = snapshot(store)
    response = client.post(path_of(alice.ref) + "/resubscribe")
    assert response.status_code == 200
    assert heading(response) == "Not resubscribed"
    assert store.get(ref=alice.ref).status == status
    assert snapshot(store) == before


@pytest.mark.parametrize("status", [BOUNCED, COMPLAINED])
def test_unsubscribe_leaves_a_bounced_or_complained_reader_alone(store, client, readers, status):
    alice, _bob = readers
    store.change_status(alice.id, status, source="test", reason="set by the test")
    before = snapshot(store)
    for response in (client.get(path_of(alice.ref)), one_click(client, path_of(alice.ref)),
                     client.post(path_of(alice.ref))):
        assert response.status_code == 200
        assert heading(response) == "No more emails"
        assert not html_of(response).xpath("//form")
    assert snapshot(store) == before


# --------------------------------------------------------------------------
# security of the links


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


def bad_tokens(ref: str) -> dict[str, str]:
    """Tokens that must all be refused, by name."""
    good = Signer(SECRET).unsubscribe_token(ref)
    payload, signature = good.split(".")
    return {
        # Middle characters carry six full bits each (the last one may not).
        "flipped in signature": f"{payload}.{_flip(signature, len(signature) // 2)}",
        "flipped in payload": f"{_flip(payload, len(payload) // 2)}.{signature}",
        "last character dropped": good[:-1],
        "cut in half": good[: len(good) // 2],
        "signature only": signature,
        "payload only": payload,
        "payload and dot": payload + ".",
        "character appended": good + "x",
        "dot": ".",
        "dash": "-",
        "space": " ",
        "null": "null",
        "random": secrets.token_urlsafe(40),
        "random with a dot": f"{secrets.token_urlsafe(12)}.{secrets.token_urlsafe(20)}",
        "markup": "'\"><img src=x onerror=alert(1)>",
        "not utf-8": "\udcff\udcfe",  # sent as %FF%FE
        "very long": "a" * 5000 + "." + "b" * 27,
        "bare reference": ref,
        "the address": "alice.liddell@example.com",
        "another salt": URLSafeSerializer(SECRET, salt="other").dumps(ref),
        "default salt": URLSafeSerializer(SECRET).dumps(ref),
        "unknown key": URLSafeSerializer(OTHER_SECRET, salt=UNSUBSCRIBE_SALT).dumps(ref),
        "unknown reference": Signer(SECRET).unsubscribe_token(secrets.token_urlsafe(16)),
        "empty reference": URLSafeSerializer(SECRET, salt=UNSUBSCRIBE_SALT).dumps(""),
        "list payload": URLSafeSerializer(SECRET, salt=UNSUBSCRIBE_SALT).dumps([ref]),
        "number payload": URLSafeSerializer(SECRET, salt=UNSUBSCRIBE_SALT).dumps(1),
        "null payload": URLSafeSerializer(SECRET, salt=UNSUBSCRIBE_SALT).dumps(None),
    }


def quoted(token: str) -> str:
    if token == "\udcff\udcfe":
        return "%FF%FE"
    return quote(token, safe="")


def test_bad_tokens_all_get_the_same_400_and_change_nothing(store, client, readers):
    alice, bob = readers
    store.change_status(bob.id, UNSUBSCRIBED, source="web", reason="set by the test")
    before = snapshot(store)
    bodies = {}
    for name, token in bad_tokens(alice.ref).items():
        path = f"/u/{quoted(token)}"
        for method, response in (
            ("GET", client.get(path)),
            ("one-click", client.post(path, data=ONE_CLICK, content_type=FORM)),
            ("button", client.post(path)),
            ("resubscribe", client.post(path + "/resubscribe")),
        ):
            assert response.status_code == 400, (name, method, response.status_code)
            bodies[(name, method)] = response.get_data(as_text=True)
    assert len(set(bodies.values())) == 1, "a bad token's page must not depend on the token"
    body = next(iter(bodies.values()))
    assert "This link is not valid" in body
    assert "<form" not in body
    for secret_part in (alice.ref, bob.ref, "alice", "bob", "example", "•"):
        assert secret_part not in body
    assert snapshot(store) == before


def test_tokens_made_with_a_previous_key_still_work(store, web_client, readers):
    alice, bob = readers
    rotated = web_client(secret_key=OTHER_SECRET, secret_key_fallbacks=(SECRET,))
    old_link = path_of(alice.ref, SECRET)
    new_link = path_of(bob.ref, OTHER_SECRET)
    assert old_link != path_of(alice.ref, OTHER_SECRET)
    assert heading(rotated.get(old_link)) == "Unsubscribe"
    assert one_click(rotated, old_link).status_code == 200
    assert store.get(ref=alice.ref).status == UNSUBSCRIBED
    assert store.events(alice.id)[-1].source == "one-click"
    assert one_click(rotated, new_link).status_code == 200
    assert store.get(ref=bob.ref).status == UNSUBSCRIBED
    # Once the old key is dropped from the fallbacks, its links stop working.
    dropped = web_client(secret_key=OTHER_SECRET)
    assert dropped.get(old_link).status_code == 400
    assert dropped.get(new_link).status_code == 200


def test_a_readers_post_never_touches_another_reader(store, client, readers):
    alice, bob = readers
    bob_events = store.events(bob.id)
    one_click(client, path_of(alice.ref))
    client.post(path_of(alice.ref))
    client.post(path_of(alice.ref) + "/resubscribe")
    one_click(client, path_of(alice.ref))
    assert store.get(ref=alice.ref).status == UNSUBSCRIBED
    assert store.get(ref=bob.ref).status == ACTIVE
    assert store.events(bob.id) == bob_events


@pytest.mark.parametrize("status", [ACTIVE, UNSUBSCRIBED])
def test_get_head_and_options_change_nothing(store, client, readers, status):
    alice, _bob = readers
    if status == UNSUBSCRIBED:
        client.post(path_of(alice.ref))
    before = snapshot(store)
    link = path_of(alice.ref)
    assert client.get(link).status_code == 200
    head = client.head(link)
    assert head.status_code == 200 and head.get_data() == b""
    assert client.options(link).status_code == 200
    assert client.options(link + "/resubscribe").status_code == 200
    for method in ("GET", "HEAD", "PUT", "DELETE", "PATCH"):
        response = client.open(link + "/resubscribe", method=method)
        assert response.status_code == 405, method
    for method in ("PUT", "DELETE", "PATCH"):
        assert client.open(link, method=method, data=ONE_CLICK, content_type=FORM).status_code == 405
    assert snapshot(store) == before


def test_an_oversized_body_is_refused_and_changes_nothing(store, client, readers):
    alice, _bob = readers
    before = snapshot(store)
    response = client.post(path_of(alice.ref), data=b"List-Unsubscribe=One-Click&x=" + b"y" * 600_000,
                           content_type=FORM)
    assert response.status_code == 413
    assert snapshot(store) == before


# --------------------------------------------------------------------------
# headers on every response


def test_every_response_carries_the_security_headers(store, client, readers):
    alice, _bob = readers
    store.save_issue(issue_of(DAY1, ["Sparse Attention at Scale"]), publish=True)
    requests = [
        ("GET", "/", 302),
        ("GET", "/issues/", 200),
        ("GET", "/issues", 308),
        ("GET", "/issues/feed.xml", 200),
        ("GET", f"/issues/{DAY1.isoformat()}", 200),
        ("GET", "/issues/2024-01-01", 404),
        ("GET", "/no/such/page", 404),
        ("GET", "/healthz", 200),
        ("GET", path_of(alice.ref), 200),
        ("HEAD", path_of(alice.ref), 200),
        ("GET", "/u/not-a-token", 400),
        ("POST", "/u/not-a-token", 400),
        ("GET", path_of(alice.ref) + "/resubscribe", 405),
        ("POST", path_of(alice.ref), 200),
        ("POST", path_of(alice.ref) + "/resubscribe", 200),
    ]
    for method, path, status in requests:
        response = client.open(path, method=method)
        assert response.status_code == status, (method, path)
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (method, path, name)
    big = client.post(path_of(alice.ref), data=b"x" * 600_000, content_type=FORM)
    assert big.status_code == 413
    assert all(big.headers.get(name) == value for name, value in SECURITY_HEADERS.items())
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert "form-action 'self'" in policy and "frame-ancestors" in policy
    assert SECURITY_HEADERS["X-Content-Type-Options"] == "nosniff"
    assert SECURITY_HEADERS["Referrer-Policy"] == "no-referrer"


def test_a_failing_request_is_logged_by_its_route_never_its_token(store, client, readers, monkeypatch, caplog):
    alice, _bob = readers
    token = Signer(SECRET).unsubscribe_token(alice.ref)

    def broken(**_where):
        raise RuntimeError("the disk went away")

    monkeypatch.setattr(store, "get", broken)
    with caplog.at_level("ERROR"):
        response = client.post(f"/u/{token}", data=ONE_CLICK, content_type=FORM)
    assert response.status_code == 500
    logged = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    assert "Exception on /u/<token> [POST]" in logged
    assert token not in logged and alice.ref not in logged
    assert "the disk went away" in caplog.text  # the cause is still there


def raw_http(port: int, request: bytes) -> tuple[int, dict[str, str]]:
    """Send ``request`` as raw bytes; return the status and headers of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
    return int(head[0].split()[1]), headers


def test_the_servers_own_error_answers_carry_the_security_headers(tmp_path):
    # waitress answers these itself, without calling the app.
    port = free_port()
    database_url = f"sqlite:///{tmp_path / 'newsletter.db'}"
    open_store(database_url).close()  # serve never creates one
    with newsletter_server(["serve", "--port", str(port)], port, tmp_path, server_env(database_url)):
        oversized = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n"
        malformed = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n"
        for request, expected in ((oversized, 431), (malformed, 400)):
            status, headers = raw_http(port, request)
            assert status == expected
            for name, value in SECURITY_HEADERS.items():
                assert headers.get(name) == value, (expected, name, headers)


def test_behind_a_proxy_a_malformed_x_forwarded_for_gets_the_security_headers_too(tmp_path):
    # Trusting the proxy's header, waitress answers a malformed one itself.
    port = free_port()
    database_url = f"sqlite:///{tmp_path / 'newsletter.db'}"
    open_store(database_url).close()  # serve never creates one
    env = {**server_env(database_url), "NEWSLETTER_PROXY_COUNT": "1"}
    with newsletter_server(["serve", "--port", str(port)], port, tmp_path, env):
        status, headers = raw_http(port, b'GET /healthz HTTP/1.1\r\nHost: x\r\n'
                                         b'X-Forwarded-For: "unclosed, 203.0.113.1\r\n\r\n')
        assert status == 400
        for name, value in SECURITY_HEADERS.items():
            assert headers.get(name) == value, (name, headers)


def test_the_routers_redirects_go_to_the_base_url_never_to_the_requests_host(tmp_path):
    # The router redirects an address to its canonical form (doubled
    # slashes merged, a trailing slash added) by itself.
    port = free_port()
    database_url = f"sqlite:///{tmp_path / 'newsletter.db'}"
    open_store(database_url).close()  # serve never creates one
    env = {**server_env(database_url), "NEWSLETTER_BASE_URL": "https://papers.example.org"}
    with newsletter_server(["serve", "--port", str(port)], port, tmp_path, env):
        for path, canonical in (("/issues//feed.xml", "/issues/feed.xml"), ("/issues//", "/issues/"),
                                ("/issues", "/issues/"), ("/issues?page=2", "/issues/?page=2")):
            for host in ("evil.example", f"127.0.0.1:{port}"):
                status, headers = raw_http(port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                assert status in (301, 302, 303, 307, 308), (path, host)
                assert headers["Location"] == "https://papers.example.org" + canonical, (path, host)


# --------------------------------------------------------------------------
# past issues, the feed, the health check


@pytest.fixture
def two_issues(store):
    """Two published issues, the newer saved first."""
    newer = issue_of(DAY2, ["Diffusion Agents for Planning", "Long-Context Retrieval Benchmarks"])
    older = issue_of(DAY1, ["Sparse Attention at Scale", "Quantized Mixture of Experts"])
    store.save_issue(newer, publish=True)
    store.save_issue(older, publish=True)
    return older, newer


def test_issues_index_lists_stored_issues_newest_first(client, two_issues):
    older, newer = two_issues
    response = client.get("/issues/")
    assert response.status_code == 200
    links = html_of(response).xpath("//ol//a")
    assert [a.text_content() for a in links] == [newer.subject, older.subject]
    assert [urljoin("http://host/issues/", a.get("href")) for a in links] == [
        f"http://host/issues/{DAY2.isoformat()}",
        f"http://host/issues/{DAY1.isoformat()}",
    ]
    body = response.get_data(as_text=True)
    assert newer.preheader in body and older.preheader in body


def test_issues_index_without_issues(client):
    response = client.get("/issues/")
    assert response.status_code == 200
    assert "No issues yet." in response.get_data(as_text=True)


def test_issue_page_serves_the_stored_web_version_without_personal_links(store, client, two_issues):
    older, newer = two_issues
    for issue in (older, newer):
        response = client.get(f"/issues/{issue.date.isoformat()}")
        assert response.status_code == 200
        assert response.mimetype == "text/html"
        body = response.get_data(as_text=True)
        assert body == issue.web_html
        assert "/u/" not in body
        assert UNSUBSCRIBE_URL_MARK not in body
        assert "unsubscribe" not in body.lower()
        assert issue.html.count(UNSUBSCRIBE_URL_MARK) >= 1  # the email itself does carry it
    titles = [t.text_content().strip() for t in html_of(client.get(f"/issues/{DAY1.isoformat()}")).iter("a")]
    assert "Sparse Attention at Scale" in " ".join(titles)
    # Saving the day again replaces its page.
    store.save_issue(issue_of(DAY1, ["A Replacement Paper Title"]))
    body = client.get(f"/issues/{DAY1.isoformat()}").get_data(as_text=True)
    assert "A Replacement Paper Title" in body and "Sparse Attention at Scale" not in body


def newsletter(database_url: str, *args: str, code: int = 0):
    """Run the `newsletter` command on ``database_url`` (the outbox sender)."""
    env = {"NEWSLETTER_DATABASE_URL": database_url, "NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_OUTBOX_DIR": "outbox"}
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result


def on_the_web(client, path: str) -> tuple[int, bool, bool]:
    """``path``'s status, and whether the archive and the feed link to it."""
    archive = [urljoin("http://host/issues/", a.get("href")) for a in html_of(client.get("/issues/")).xpath("//ol//a")]
    return (client.get(path).status_code, f"http://host{path}" in archive,
            path in client.get("/issues/feed.xml").get_data(as_text=True))


def test_a_dry_run_and_render_publish_nothing_publish_and_unpublish_do(store, database_url, web_client):
    store.add("alice@example.org")
    client = web_client()
    path = "/issues/2027-03-11"
    # A mistyped year is refused, naming the date.
    refused = newsletter(database_url, "send", str(EXAMPLE), "--date", "2027-03-11", "--dry-run", code=2)
    assert "2027-03-11 is more than a day in the future" in refused.output and "--allow-future" in refused.output
    refused = newsletter(database_url, "render", str(EXAMPLE), "--date", "2027-03-11", "--out", "o", code=2)
    assert "2027-03-11 is more than a day in the future" in refused.output
    assert store.get_issue(dt.date(2027, 3, 11)) is None

    dry = newsletter(database_url, "send", str(EXAMPLE), "--date", "2027-03-11", "--dry-run", "--allow-future")
    assert "Nothing was sent." in dry.output
    assert on_the_web(client, path) == (404, False, False)
    newsletter(database_url, "render", str(EXAMPLE), "--date", "2027-03-11", "--out", "o", "--allow-future")
    assert on_the_web(client, path) == (404, False, False)

    published = newsletter(database_url, "publish", "2027-03-11")
    assert f"Published the daily edition of 2027-03-11 at http://127.0.0.1:8000{path}" in published.output
    assert on_the_web(client, path) == (200, True, True)
    newsletter(database_url, "unpublish", "2027-03-11")
    assert on_the_web(client, path) == (404, False, False)
    assert store.get_issue(dt.date(2027, 3, 11)) is not None  # still stored: publish puts it back

    missing = newsletter(database_url, "publish", "2027-03-12", code=2)
    assert missing.output == "Error: the daily edition of 2027-03-12 is not stored: render it first (newsletter render …)\n"
    assert newsletter(database_url, "unpublish", "2027-03-12", "--weekly", code=2).output.startswith(
        "Error: the weekly edition of 2027-03-12 is not stored")


def test_a_send_publishes_its_edition_and_a_test_message_does_not(store, database_url, web_client):
    store.add("alice@example.org")
    client = web_client()
    newsletter(database_url, "send", str(EXAMPLE), "--date", "2025-03-11", "--to", "editor@example.org")
    assert on_the_web(client, "/issues/2025-03-11") == (404, False, False)
    newsletter(database_url, "send", str(EXAMPLE), "--date", "2025-03-11")
    assert on_the_web(client, "/issues/2025-03-11") == (200, True, True)


@pytest.mark.parametrize(
    "day",
    [
        "2025-03-12",  # no issue that day
        "1999-01-01",
        "2025-3-10",
        "2025-03-1",
        "2025-13-01",
        "2025-02-30",
        "10-03-2025",
        "20250310",
        "2025-03-10x",
        "2025-03-10.html",
        "2025-W11-1",  # an ISO week date for 2025-03-10: not the page's address
        "2025-069-1",
        "２０２５-03-10",
        "not-a-date",
        "%00",
    ],
)
def test_unknown_or_malformed_issue_dates_are_404(client, two_issues, day):
    response = client.get(f"/issues/{quote(day, safe='%')}")
    assert response.status_code == 404
    assert "Not found" in response.get_data(as_text=True)
    assert "Sparse Attention" not in response.get_data(as_text=True)


def test_feed_is_atom_with_an_entry_per_issue(store, web_client):
    older = issue_of(DAY1, ["Q&A <Agents> \"Quoted\" & Friends", "Sparse Attention at Scale"])
    newer = issue_of(DAY2, ["Diffusion Agents for Planning"])
    store.save_issue(older, publish=True)
    store.save_issue(newer, publish=True)
    client = web_client(base_url="https://papers.example.org/")
    response = client.get("/issues/feed.xml")
    assert response.status_code == 200
    assert response.mimetype == "application/atom+xml"
    root = ET.fromstring(response.get_data())
    assert root.tag == f"{ATOM}feed"
    assert root.findtext(f"{ATOM}title") == "Daily Papers"
    assert root.find(f"{ATOM}link[@rel='self']").get("href") == "https://papers.example.org/issues/feed.xml"
    dt.datetime.strptime(root.findtext(f"{ATOM}updated"), "%Y-%m-%dT%H:%M:%SZ")
    entries = root.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}title") for e in entries] == [newer.subject, older.subject]
    assert [e.find(f"{ATOM}link").get("href") for e in entries] == [
        f"https://papers.example.org/issues/{DAY2.isoformat()}",
        f"https://papers.example.org/issues/{DAY1.isoformat()}",
    ]
    assert len({e.findtext(f"{ATOM}id") for e in entries}) == 2
    assert entries[1].findtext(f"{ATOM}summary") == older.preheader
    assert "Q&A <Agents>" in older.preheader
    for entry in entries:
        dt.datetime.strptime(entry.findtext(f"{ATOM}updated"), "%Y-%m-%dT%H:%M:%SZ")
        # Each entry's link is a page the app serves.
        path = entry.find(f"{ATOM}link").get("href").removeprefix("https://papers.example.org")
        assert client.get(path).status_code == 200


def test_feed_without_issues_is_still_valid_atom(client):
    root = ET.fromstring(client.get("/issues/feed.xml").get_data())
    assert root.tag == f"{ATOM}feed"
    assert root.findall(f"{ATOM}entry") == []
    assert root.findtext(f"{ATOM}updated")


def test_healthz_and_the_root_redirect(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert json.loads(response.get_data()) == {"status": "ok"}
    home = client.get("/")
    assert home.status_code in (301, 302, 303, 307, 308)
    assert urljoin("http://host/", home.headers["Location"]) == "http://host/issues/"


def test_healthz_reports_an_unreachable_database(store, web_client, monkeypatch):
    client = web_client()

    def unreachable():
        raise StoreError("database unreachable (OperationalError)")

    monkeypatch.setattr(store, "ping", unreachable)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.mimetype == "application/json"
    assert json.loads(response.get_data())["status"] != "ok"
    assert all(response.headers.get(name) == value for name, value in SECURITY_HEADERS.items())


# --------------------------------------------------------------------------
# configuration and helpers


@pytest.mark.parametrize(
    "secret, fallbacks",
    [
        ("", ()),
        ("short-secret", ()),
        ("a" * 64, ()),  # long but not random
        ("abcabcabcabcabcabcabcabcabcabcabcabc", ()),
        (SECRET, ("too-weak",)),
    ],
)
def test_create_app_refuses_a_missing_or_weak_secret(tmp_path, secret, fallbacks):
    database = tmp_path / "db" / "newsletter.db"
    settings = Settings(secret_key=secret, secret_key_fallbacks=fallbacks, database_url=f"sqlite:///{database}")
    with pytest.raises(ConfigError) as caught:
        create_app(settings)
    assert "NEWSLETTER_SECRET_KEY" in str(caught.value)
    if secret:
        assert secret not in str(caught.value)
    assert not database.exists()  # refused before touching the database


@pytest.mark.parametrize(
    "address",
    [
        "alice.liddell@example.com",
        "bob@example.org",
        "abc@example.com",
        "ab@example.com",
        "a@example.com",
        "x@y.io",
        "jo@ab.co",
        "first.last+tag@mail.example.co.uk",
        "Zoë@exämple.de",
        "root@localhost",
    ],
)
def test_mask_email_hides_the_local_part_and_the_domain_name(address):
    masked = mask_email(address)
    local, _, domain = address.rpartition("@")
    name = domain.rsplit(".", 1)[0]  # the domain without its top-level part
    shown_local, _, shown_domain = masked.rpartition("@")
    assert "•" in shown_local and "•" in shown_domain
    assert address not in masked
    assert local not in shown_local.replace("•", ""), masked
    assert name not in shown_domain.replace("•", ""), masked
    if len(local) > 1:
        assert shown_local[0] == local[0]  # still recognisable by its owner
    if "." in domain:
        assert shown_domain.endswith("." + domain.rsplit(".", 1)[1])


# --------------------------------------------------------------------------
# the real server


def server_env(database_url: str, secret: str | None = SECRET) -> dict[str, str]:
    env = clean_env(NEWSLETTER_DATABASE_URL=database_url)
    if secret is not None:
        env["NEWSLETTER_SECRET_KEY"] = secret
    return env


@contextlib.contextmanager
def serving(folder: Path, database_url: str):
    """Run ``newsletter serve`` on ``database_url`` from ``folder`` (no .env
    there) and yield its base URL once the port answers; stop it afterwards."""
    port = free_port()
    with newsletter_server(["serve", "--port", str(port)], port, folder, server_env(database_url)) as url:
        yield url


def post_one_click(url: str) -> tuple[int, str, dict]:
    """POST what Gmail sends for a one-click unsubscribe: no cookie, no token."""
    request = urllib.request.Request(url, data=ONE_CLICK, method="POST", headers={"Content-Type": FORM})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read().decode("utf-8"), dict(response.headers)


def test_real_http_one_click_unsubscribes(tmp_path, database_url):
    store = open_store(database_url)
    alice, _ = store.add("alice.liddell@example.com")
    bob, _ = store.add("bob@example.org")
    store.close()
    with serving(tmp_path, database_url) as base:
        link = Signer(SECRET).unsubscribe_url(base, alice.ref)
        with urllib.request.urlopen(link, timeout=30) as page:  # a scanner following the link
            assert page.status == 200
        status, body, headers = post_one_click(link)
        assert status == 200
        assert "You are unsubscribed" in body
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert status == post_one_click(link)[0] == 200  # again: idempotent
        with pytest.raises(urllib.error.HTTPError) as caught:
            post_one_click(f"{base}/u/{bad_tokens(bob.ref)['flipped in signature']}")
        assert caught.value.code == 400
    store = open_store(database_url)
    try:
        assert store.get(ref=alice.ref).status == UNSUBSCRIBED
        events = store.events(alice.id)
        assert [(e.new_status, e.source) for e in events] == [(ACTIVE, "cli"), (UNSUBSCRIBED, "one-click")]
        assert store.get(ref=bob.ref).status == ACTIVE
        assert len(store.events(bob.id)) == 1
    finally:
        store.close()


@pytest.mark.parametrize("secret", [None, "", "weak"])
def test_serve_without_a_usable_secret_exits_2_with_one_line(tmp_path, secret):
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env=server_env(f"sqlite:///{tmp_path / 'newsletter.db'}", secret),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: NEWSLETTER_SECRET_KEY")
    assert "Traceback" not in result.stderr + result.stdout
    assert "Serving" not in result.stdout


class CheckedStore:
    """The store, with ``before_check(ids)`` run just before each
    ``active_ids``: the send loop's last look at a chunk before its call."""

    def __init__(self, store, before_check):
        self._store = store
        self._before_check = before_check

    def __getattr__(self, name):
        return getattr(self._store, name)

    def active_ids(self, ids):
        ids = list(ids)
        self._before_check(ids)
        return self._store.active_ids(ids)


class MailingSender:
    """A sender that only notes whom it mailed, ten readers a call."""

    name = "test"
    batch_size = 10

    def __init__(self):
        self.mailed: list[int] = []

    def quota(self):
        return Quota(max_send_rate=None, max_24_hour_send=None, sent_last_24_hours=0)

    def open(self, issue, message):
        pass

    def send(self, recipients):
        self.mailed.extend(r.subscriber_id for r in recipients)
        return [Delivery(r, DeliveryStatus.SENT, message_id=f"m-{r.subscriber_id}") for r in recipients]

    def close(self, complete):
        pass


def test_unsubscribes_during_a_send_are_honoured(tmp_path):
    """The send loop (the real Dispatcher, reading the list ten readers at
    a time) re-checks each chunk with ``active_ids`` just before mailing
    it, while one-click POSTs reach the real server on the same SQLite file
    (WAL, busy timeout)."""
    database_url = f"sqlite:///{tmp_path / 'newsletter.db'}"
    store = open_store(database_url)
    readers = [store.add(f"reader{i:02d}@example.com")[0] for i in range(40)]
    rng = random.Random(8058)
    leavers = rng.sample(readers, 15)
    # How each leaver leaves: between their chunk's read and its check ("same"),
    # before their chunk is even read ("early", far down the list), at an
    # uncoordinated moment while the send runs ("free"), or after it ("late").
    far = [r for r in leavers if readers.index(r) >= 30][:3]
    rest = [r for r in leavers if r not in far]
    plan = {r.id: "early" for r in far}
    plan.update({r.id: "same" for r in rest[:5]})
    plan.update({r.id: "free" for r in rest[5:9]})
    plan.update({r.id: "late" for r in rest[9:]})
    assert sorted(plan.values()).count("early") == 3 and len(plan) == 15

    done_at: dict[int, float] = {}  # reader id -> when their POST got its 200
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    checks: list[tuple[float, list[int]]] = []  # (when checked, chunk ids)
    sender = MailingSender()

    with serving(tmp_path, database_url) as base:
        signer = Signer(SECRET)

        def leave(reader_id: int) -> None:
            ref = next(r.ref for r in readers if r.id == reader_id)
            try:
                status = post_one_click(signer.unsubscribe_url(base, ref))[0]
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError as exc:  # recorded, so the send loop's thread never dies
                status = repr(exc)
            with lock:
                done_at[reader_id] = time.monotonic()
                statuses[reader_id] = status

        def leave_all(ids: list[int]) -> None:
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(leave, ids))  # all answered before this returns

        free_running = threading.Thread(target=leave_all, args=([i for i, how in plan.items() if how == "free"],))

        def before_check(chunk: list[int]) -> None:
            # The chunk has been read. Its "same" leavers leave now; at the
            # first check, so do the "early" ones, far down the list: their
            # part of it is read only once this first call is done.
            now_ids = [i for i in chunk if plan.get(i) == "same"]
            if not checks:
                now_ids += [i for i, how in plan.items() if how == "early"]
            leave_all(now_ids)
            if free_running.ident is None:
                free_running.start()  # from now on, at moments of its own
            checks.append((time.monotonic(), chunk))

        settings = settings_for(database_url)
        dispatcher = Dispatcher(CheckedStore(store, before_check), sender, signer, base, settings.from_address,
                                SendOptions(concurrency=1, page_size=10))
        try:
            report = dispatcher.run(issue_of(DAY2, ["A paper"]))
        finally:
            if free_running.ident:
                free_running.join(timeout=60)
        leave_all([i for i, how in plan.items() if how == "late"])

    mailed = sender.mailed
    assert report.sent == len(mailed) and report.stopped_by is None and not report.interrupted, report
    # Readers who left before their page was read count as skipped, not as
    # left for a next run: the send is complete.
    assert report.complete and report.left == 0 and report.sent + report.skipped == report.to_send, report
    assert {row.subscriber_id for row in Ledger(store, DAY2).rows()} == set(mailed)
    assert statuses == {i: 200 for i in plan}
    assert len(mailed) == len(set(mailed)), "someone was mailed twice"
    stayed = [r.id for r in readers if r.id not in plan]
    assert len(stayed) == 25
    for reader_id in stayed:
        assert mailed.count(reader_id) == 1
    chunk_of = {i: (when, chunk) for when, chunk in checks for i in chunk}
    for reader_id, how in plan.items():
        if reader_id in chunk_of and done_at[reader_id] < chunk_of[reader_id][0]:
            assert reader_id not in mailed, (reader_id, how)
        if reader_id not in chunk_of:
            assert reader_id not in mailed
    # Every kind of timing actually happened.
    same = [i for i, how in plan.items() if how == "same"]
    assert same and all(i in chunk_of and i not in mailed for i in same)  # read, then skipped
    assert all(i not in chunk_of and i not in mailed for i, how in plan.items() if how == "early")
    assert all(mailed.count(i) == 1 for i, how in plan.items() if how == "late")
    assert len(checks) >= 3

    try:
        for reader in readers:
            current = store.get(ref=reader.ref)
            events = store.events(reader.id)
            if reader.id in plan:
                assert current.status == UNSUBSCRIBED
                assert [(e.new_status, e.source) for e in events] == [(ACTIVE, "cli"), (UNSUBSCRIBED, "one-click")]
            else:
                assert current.status == ACTIVE and len(events) == 1
    finally:
        store.close()
