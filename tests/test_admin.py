"""The operators' dashboard (/admin/) and the `newsletter admin` commands.

Access: off (404) until an operator exists; every /admin rule the app
registers redirects to the login page without a session; the session is a
random token kept (hashed) in the database, so logging out, a new password,
removing the operator and inactivity really end it; login rotates it; every
POST needs the form's CSRF token; logins are limited by a client's own
failures (per name and in all) in the database (parallel attempts and other
processes included, on a real server), and others' failures slow a name
down without ever shutting out its right password; an unknown name and a
wrong password get the same answer after the same work. Pages: the overview's figures and charts,
the sends and the live view's JSON, the search with keyset paging, a
reader's page and the operator's actions (recorded with who and why),
import with a preview, exports, settings with secrets masked.

Most tests use Flask's test client on SQLite and PostgreSQL (the ``store``
fixture); the limits, odd input (huge ids, searches ending in U+10FFFF,
control characters in next=), the settings page's masking, the cookie of
an HTTPS:// address and sending again are also tested against real
``newsletter serve`` processes.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import datetime as dt
import http.cookiejar
import io
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from email import policy
from email.parser import BytesParser
from pathlib import Path

import lxml.html
import pytest
from sqlalchemy import text

from admin_data import NAME, PASSWORD, clock, csrf_of, history, log_in, operator, send
from conftest import FIXTURES, SECRET, clean_env, free_port, newsletter_server, wait_until
from newsletter.operators import admins as admins_module
from newsletter.operators.admins import (MAX_DELAY, PER_CLIENT, PER_NAME_AND_CLIENT, change_password, login_delay,
                               remove_admin, token_digest)
from newsletter.papers.batches import load_batch
from newsletter.cli import admin as admin_cli
from newsletter.core.config import Settings
from newsletter.core.models import DeliveryStatus, Edition, Frequency, Profile, SubscriberRow, SubscriberStatus
from newsletter.operators.passwords import check_password, hash_password
from newsletter.store import Ledger, dashboard, open_store
from newsletter.store.backup import processes_holding
from newsletter.store.ledger import LedgerRow
from newsletter.web.admin.access import MAX_IMPORT_BYTES
from newsletter.web.admin.readers import MAX_IMPORT_ROWS

ACTIVE, UNSUBSCRIBED = SubscriberStatus.ACTIVE, SubscriberStatus.UNSUBSCRIBED
BOUNCED, COMPLAINED = SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED
LOGIN_PATH = "/admin/login"
OLD_SECRET = "ly12xlEa51C9FWaRReYCbCWzyprWlYLeTDXuVOCodx0"


# --------------------------------------------------------------------------
# helpers


@pytest.fixture
def app(web_client):
    return web_client(cookies=True).application


@pytest.fixture
def client(app):
    """A browser-like client (keeps cookies), not logged in."""
    return app.test_client()


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The waits login attempts make before their password is checked,
    recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(admins_module, "sleep", recorded.append)
    return recorded


@pytest.fixture
def signed_in(store, client):
    """The client of a logged-in operator."""
    operator(store)
    assert log_in(client).status_code == 303
    return client


def html_of(response):
    return lxml.html.document_fromstring(response.get_data(as_text=True))


def token_of(client, path: str = "/admin/") -> str:
    return csrf_of(client.get(path).get_data(as_text=True))


def redirects_to_login(response) -> bool:
    return response.status_code in (302, 303) and response.headers["Location"].startswith(LOGIN_PATH)


def admin_rules(app) -> list:
    """Every rule the app registers under /admin, with arguments filled in."""
    rules = [rule for rule in app.url_map.iter_rules() if rule.rule == "/admin" or rule.rule.startswith("/admin/")]
    assert len(rules) >= 14, [r.rule for r in rules]
    return rules


def example_path(rule) -> str:
    values = {"subscriber_id": 1, "key": "2025-03-11", "filename": "live.js"}
    path = rule.rule
    for argument in rule.arguments:
        path = re.sub(rf"<(?:[a-z]+:)?{argument}>", str(values[argument]), path)
    assert "<" not in path, path
    return path


def table_rows(response, selector: str) -> list[list[str]]:
    return table_rows_of(response.get_data(as_text=True), selector)


def table_rows_of(html: str, selector: str) -> list[list[str]]:
    return [[cell.text_content().strip() for cell in row.xpath("./th|./td")]
            for row in lxml.html.document_fromstring(html).cssselect(selector)]


def session_cookie(client) -> str | None:
    cookie = client.get_cookie("newsletter_admin", path="/admin")
    return cookie.value if cookie else None


def status_and_events(store, subscriber_id: int):
    found = store.get_subscriber(subscriber_id)
    return found.status, len(store.events(subscriber_id))


# --------------------------------------------------------------------------
# access


def test_the_dashboard_is_off_until_there_is_an_operator(store, app, client):
    for rule in admin_rules(app):
        for method in sorted(rule.methods & {"GET", "POST"}):
            response = client.open(example_path(rule), method=method)
            assert response.status_code == 404, (rule.rule, method)
    operator(store)
    assert client.get(LOGIN_PATH).status_code == 200
    remove_admin(store, NAME)
    assert client.get(LOGIN_PATH).status_code == 404


def test_every_admin_route_redirects_to_the_login_page_without_a_session(store, app, client):
    reader = store.add("ada@example.com")[0]
    operator(store)
    forged = app.test_client()
    forged.set_cookie("newsletter_admin", "eyJ0b2tlbiI6ImZvcmdlZCJ9.forged.signature", path="/admin")
    checked = 0
    for rule in admin_rules(app):
        if rule.endpoint in ("admin.login_form", "admin.login"):
            continue
        for method in sorted(rule.methods & {"GET", "POST"}):
            for anonymous in (client, forged):
                response = anonymous.open(example_path(rule), method=method, data={"reason": "x"})
                assert redirects_to_login(response), (rule.rule, method, response.status_code)
                checked += 1
    assert checked >= 28
    # Unknown addresses under /admin too (nothing tells what exists).
    assert redirects_to_login(client.get("/admin/no-such-page"))
    assert redirects_to_login(client.get("/admin/static/../access.py"))
    assert status_and_events(store, reader.id) == (ACTIVE, 1)


def test_admin_pages_are_not_cached_not_framed_and_load_nothing_from_elsewhere(store, app, signed_in):
    history(store)
    checked = 0
    for rule in admin_rules(app):
        if "GET" not in rule.methods or rule.endpoint == "admin.static":
            continue
        response = signed_in.get(example_path(rule))
        assert response.status_code in (200, 303, 404), rule.rule  # the login page sends an operator on
        assert response.headers["Cache-Control"] == "no-store"
        policy_header = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy_header and "default-src 'none'" in policy_header
        assert "script-src 'self'" in policy_header
        assert response.headers["X-Frame-Options"] == "DENY"
        if response.mimetype == "text/html":
            page = html_of(response)
            for element, attribute in (("*", "src"), ("*", "href"), ("form", "action"), ("link", "href")):
                for value in page.xpath(f"//{element}/@{attribute}"):
                    assert urllib.parse.urlsplit(value).netloc == "", (rule.rule, value)
            assert not page.xpath("//link[@rel='stylesheet']|//img|//iframe|//object|//embed")
            assert not page.xpath("//script[not(@src)]")  # no inline script: the CSP forbids it anyway
            checked += 1
    assert checked >= 7
    script = signed_in.get("/admin/static/live.js")
    assert script.status_code == 200 and "fetch(" in script.get_data(as_text=True)
    assert script.headers["Cache-Control"] == "no-store"


def test_the_session_cookie_is_httponly_samesite_limited_to_admin_and_secure_over_https(store, web_client):
    operator(store)
    for base, secure in (("http://127.0.0.1:8000", False), ("https://papers.example.org", True)):
        client = web_client(cookies=True, base_url=base)
        # Over HTTPS, Flask-WTF also wants a Referer from this site (the
        # dashboard's pages send one: Referrer-Policy same-origin).
        response = log_in(client, base_url=base, headers={"Referer": f"{base}/admin/login"})
        assert response.status_code == 303
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith("newsletter_admin=")
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/admin" in cookie
        assert ("Secure" in cookie) is secure
        assert "Expires" not in cookie  # ends with the browser; the server ends it after inactivity


def test_public_pages_set_no_cookie_and_keep_their_own_headers(store, app, client):
    operator(store)
    for path in ("/issues/", "/subscribe", "/healthz"):
        response = client.get(path)
        assert "Set-Cookie" not in response.headers
        assert "frame-ancestors 'self'" in response.headers["Content-Security-Policy"]
    assert client.post("/subscribe", data={"email": "x@example.com"}).status_code == 200  # no CSRF token needed


def test_logging_in_starts_a_new_session_and_an_old_cookie_gains_nothing(store, app, client):
    """No session fixation: the cookie a visitor had before logging in (say,
    one an attacker planted) is not the session; the login's new cookie is."""
    operator(store)
    client.get(LOGIN_PATH)
    before = session_cookie(client)
    assert before
    assert log_in(client).status_code == 303
    after = session_cookie(client)
    assert after != before
    planted = app.test_client()
    planted.set_cookie("newsletter_admin", before, path="/admin")
    assert redirects_to_login(planted.get("/admin/"))
    assert client.get("/admin/").status_code == 200
    # Logging in again over a live session (the form is still posted)
    # ends the previous one.
    old_session = app.test_client()
    old_session.set_cookie("newsletter_admin", after, path="/admin")
    assert old_session.get("/admin/").status_code == 200
    again = client.post(LOGIN_PATH, data={"name": NAME, "password": PASSWORD, "csrf_token": token_of(client)})
    assert again.status_code == 303 and session_cookie(client) != after
    assert redirects_to_login(old_session.get("/admin/"))
    assert client.get("/admin/").status_code == 200


def test_logging_out_ends_the_session_on_the_server(store, app, signed_in):
    stolen = session_cookie(signed_in)
    copy = app.test_client()
    copy.set_cookie("newsletter_admin", stolen, path="/admin")
    assert copy.get("/admin/").status_code == 200
    response = signed_in.post("/admin/logout", data={"csrf_token": token_of(signed_in)})
    assert response.status_code == 303 and response.headers["Location"] == "/admin/login?out=1"
    assert redirects_to_login(signed_in.get("/admin/"))
    # The cookie from before the logout, replayed, no longer works.
    assert redirects_to_login(copy.get("/admin/"))
    assert redirects_to_login(copy.get("/admin/static/live.js"))


def test_a_new_password_and_removal_end_every_session(store, app, signed_in):
    other = app.test_client()
    assert log_in(other).status_code == 303
    change_password(store, NAME, "another Strong-pass 42")
    assert redirects_to_login(signed_in.get("/admin/"))
    assert redirects_to_login(other.get("/admin/"))
    assert log_in(signed_in).status_code == 401  # the old password is gone
    assert log_in(signed_in, password="another Strong-pass 42").status_code == 303
    remove_admin(store, NAME)
    assert signed_in.get("/admin/").status_code == 404  # no operator left: the dashboard is off


def test_a_session_ends_after_the_hours_without_use(store, web_client):
    operator(store)
    client = web_client(cookies=True, admin_session_hours=2)
    assert log_in(client).status_code == 303
    now = dt.datetime.now(dt.timezone.utc)
    with clock(store, now + dt.timedelta(hours=1, minutes=50)):
        assert client.get("/admin/").status_code == 200  # in use: its idle time starts again
    with clock(store, now + dt.timedelta(hours=3, minutes=40)):
        assert client.get("/admin/").status_code == 200
    with clock(store, now + dt.timedelta(hours=5, minutes=50)):
        assert redirects_to_login(client.get("/admin/"))
    assert redirects_to_login(client.get("/admin/"))  # and it is gone for good


def test_a_post_without_or_with_a_wrong_csrf_token_changes_nothing(store, app, signed_in):
    reader = store.add("ada@example.com")[0]
    action = f"/admin/subscribers/{reader.id}/suppress"
    other = app.test_client()
    log_in(other)
    wrong_tokens = [None, "", "forged-token", token_of(other)]  # the last: another session's
    for wrong in wrong_tokens:
        data = {"reason": "asked by phone"} | ({} if wrong is None else {"csrf_token": wrong})
        response = signed_in.post(action, data=data)
        assert response.status_code == 400, wrong
        assert "Nothing was changed" in response.get_data(as_text=True)
        assert status_and_events(store, reader.id) == (ACTIVE, 1)
    # Logging out and importing are POSTs like the others.
    assert signed_in.post("/admin/logout").status_code == 400
    assert signed_in.get("/admin/").status_code == 200
    csv_file = (io.BytesIO(b"email\nnew@example.com\n"), "list.csv")
    assert signed_in.post("/admin/import", data={"file": csv_file}).status_code == 400
    payload = base64.b64encode(b"email\nnew@example.com\n").decode()
    assert signed_in.post("/admin/import/confirm", data={"name": "x.csv", "payload": payload}).status_code == 400
    assert store.get(email="new@example.com") is None
    # The right token does it.
    response = signed_in.post(action, data={"reason": "asked by phone", "csrf_token": token_of(signed_in)})
    assert response.status_code == 303
    assert status_and_events(store, reader.id) == (UNSUBSCRIBED, 2)


def test_an_unknown_name_and_a_wrong_password_get_the_same_answer_after_the_same_work(store, app, monkeypatch):
    operator(store)
    checked = []
    real_verify = admins_module.verify_password

    def recording_verify(password_hash, password):
        checked.append(password_hash.split("$")[:4])  # the algorithm and its parameters, not the salt
        return real_verify(password_hash, password)

    monkeypatch.setattr(admins_module, "verify_password", recording_verify)
    answers = []
    for name in (NAME, "mallory"):
        client = app.test_client()
        response = log_in(client, name=name, password="not the password 1")
        body = response.get_data(as_text=True)
        answers.append((response.status_code, CSRF_VALUE.sub("TOKEN", body), "Set-Cookie" in response.headers,
                        sorted(response.headers.keys())))
    assert answers[0] == answers[1]
    assert answers[0][0] == 401 and "The name or the password is wrong." in answers[0][1]
    # Both were checked against an Argon2id hash with the same parameters.
    assert len(checked) == 2 and checked[0] == checked[1] and checked[0][1] == "argon2id"


CSRF_VALUE = re.compile(r'(name="csrf_token" value=")[^"]+')


def test_logins_are_limited_by_the_clients_own_failures(store, app, waits):
    operator(store)
    operator(store, "bob")

    def attempt(name: str, password: str, client_address: str):
        return log_in(app.test_client(), name=name, password=password,
                      environ_base={"REMOTE_ADDR": client_address}).status_code

    for n in range(PER_NAME_AND_CLIENT):
        assert attempt(NAME, f"wrong password {n}", f"10.0.0.{n}") == 401
    # Others' failures never stop the right password from a client that
    # did not fail (they only slow the name down).
    assert attempt(NAME, PASSWORD, "10.0.1.1") == 303
    for n in range(PER_NAME_AND_CLIENT):
        assert attempt("nobody", "x" * 12, "10.0.2.1") == 401
    # A client that failed for a name is stopped for it, whether it exists or not.
    assert attempt("nobody", "x" * 12, "10.0.2.1") == 429
    for n in range(PER_NAME_AND_CLIENT):
        assert attempt("bob", "wrong password!", "10.0.2.2") == 401
    assert attempt("bob", PASSWORD, "10.0.2.2") == 429
    # Another name still works, until its client reaches the client limit.
    assert attempt("bob", PASSWORD, "10.0.3.1") == 303
    assert attempt("bob", PASSWORD, "10.0.2.1") == 303
    for n in range(PER_CLIENT):
        attempt(f"guess{n // PER_NAME_AND_CLIENT}", "wrong password!", "10.0.4.4")
    assert attempt("bob", PASSWORD, "10.0.4.4") == 429
    assert attempt("bob", PASSWORD, "10.0.5.5") == 303
    # A quarter of an hour later, the clients may try again.
    with clock(store, dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=16)):
        assert attempt("nobody", "x" * 12, "10.0.2.1") == 401
        assert attempt("bob", PASSWORD, "10.0.2.2") == 303
        assert attempt("bob", PASSWORD, "10.0.4.4") == 303


def test_the_delay_grows_with_a_names_recent_failures_and_is_capped():
    assert [login_delay(n) for n in range(8)] == [0, 0.25, 0.5, 1, 2, 4, 4, 4]
    assert login_delay(10 ** 6) == MAX_DELAY == 4


def test_others_failures_slow_a_name_down_but_never_shut_it(store, app, waits):
    operator(store)

    def attempt(password: str, client_address: str):
        return log_in(app.test_client(), password=password, environ_base={"REMOTE_ADDR": client_address}).status_code

    for n in range(8):
        assert attempt(f"wrong password {n}", f"10.0.0.{n}") == 401
    assert attempt(PASSWORD, "10.0.1.1") == 303
    # Each attempt waited by the failures for the name before it, the right
    # password too; the operator's success does not end the wait for others.
    assert waits == [0.25, 0.5, 1, 2, 4, 4, 4, 4]
    assert attempt("wrong password 9", "10.0.2.1") == 401
    assert waits[-1] == 4
    # A quarter of an hour later the failures are past: no wait.
    with clock(store, dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=16)):
        assert attempt(PASSWORD, "10.0.3.1") == 303
    assert len(waits) == 9


def test_behind_a_proxy_the_forwarded_address_is_the_client(store, web_client):
    operator(store)
    app = web_client(cookies=True, proxy_count=1).application
    for n in range(PER_CLIENT):
        client = app.test_client()
        log_in(client, name=f"guess{n}", password="wrong password!", headers={"X-Forwarded-For": "203.0.113.9"})
    blocked = log_in(app.test_client(), headers={"X-Forwarded-For": "203.0.113.9"})
    assert blocked.status_code == 429
    assert log_in(app.test_client(), headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 303


def test_after_logging_in_the_operator_lands_where_they_were_going(store, client):
    operator(store)
    response = client.get("/admin/subscribers?status=active")
    assert response.headers["Location"] == "/admin/login?next=/admin/subscribers%3Fstatus%3Dactive"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'name="next" value="/admin/subscribers?status=active"' in page
    token = csrf_of(page)
    landed = client.post(LOGIN_PATH, data={"name": NAME, "password": PASSWORD, "csrf_token": token,
                                           "next": "/admin/subscribers?status=active"})
    assert landed.headers["Location"] == "/admin/subscribers?status=active"
    client.post("/admin/logout", data={"csrf_token": token_of(client)})
    for elsewhere in ("https://evil.example/", "//evil.example/admin/", "/issues/", "/admin\\..\\x"):
        token = csrf_of(client.get(LOGIN_PATH).get_data(as_text=True))
        landed = client.post(LOGIN_PATH, data={"name": NAME, "password": PASSWORD, "csrf_token": token,
                                               "next": elsewhere})
        assert landed.headers["Location"] == "/admin/", elsewhere
        client.post("/admin/logout", data={"csrf_token": token_of(client)})


def test_sessions_and_passwords_are_stored_hashed(store, signed_in):
    cookie_token = signed_in.get_cookie("newsletter_admin", path="/admin")
    with store.reader.connect() as conn:
        sessions = conn.exec_driver_sql("SELECT token_hash FROM admin_sessions").all()
        hashes = conn.exec_driver_sql("SELECT password_hash FROM admins").all()
    assert len(sessions) == 1 and len(sessions[0][0]) == 64
    assert sessions[0][0] not in cookie_token.value
    assert hashes[0][0].startswith("$argon2id$") and PASSWORD not in hashes[0][0]
    assert PASSWORD not in repr(store.get_admin(NAME))
    assert token_digest("x") != token_digest("y")


# --------------------------------------------------------------------------
# the overview


def chart_numbers(response, chart: str) -> list[str]:
    return [row[1] for row in table_rows(response, f"#chart-{chart} tbody tr")]


def test_the_overview_shows_the_list_its_days_the_last_send_and_deliverability(store, signed_in):
    made = history(store)
    response = signed_in.get("/admin/")
    assert response.status_code == 200
    page = html_of(response)
    assert page.get_element_by_id("count-active").text_content() == "3"  # ada, erin, frank
    assert page.get_element_by_id("count-complained").text_content() == "1"
    # One bar and one table row per day, oldest first; today last.
    assert len(page.cssselect("#chart-signups svg rect.bar")) == 30
    assert chart_numbers(response, "signups")[-3:] == ["3", "2", "1"]
    assert chart_numbers(response, "unsubscribes")[-3:] == ["0", "1", "0"]
    assert chart_numbers(response, "suppressions")[-3:] == ["0", "0", "2"]
    assert chart_numbers(response, "net")[-3:] == ["+3", "+1", "-1"]
    assert chart_numbers(response, "active")[-4:] == ["0", "3", "4", "3"]
    today = made.today
    assert table_rows(response, "#chart-signups tbody tr")[-1][0] == f"{today:%a} {today.day} {today:%b} {today.year}"
    for chart in ("active", "net", "signups", "unsubscribes", "suppressions", "bounces", "complaints"):
        svg = page.cssselect(f"#chart-{chart} svg")[0]
        assert svg.get("role") == "img" and svg.get("aria-labelledby") == f"{chart}-title {chart}-desc"
    # The last send: the weekly edition of yesterday, to one reader.
    last = page.get_element_by_id("last-send").getnext().text_content()
    assert f"{made.weekly.date.day} {made.weekly.date:%b %Y} (weekly)" in last
    assert "Sent1" in re.sub(r"\s+", "", last) and "stopped with readers waiting" in last
    # Deliverability: yesterday's daily edition bounced and complained over SES's limits.
    alerts = [p.text_content() for p in page.cssselect("#deliverability ~ div[role=alert] p")]
    day = f"{made.daily.date.day} {made.daily.date:%b}"
    assert alerts == [f"Bounce rate 33.33% on {day}: over SES's 5% limit",
                      f"Complaint rate 33.33% on {day}: over SES's 0.1% limit"]
    assert table_rows(response, "#chart-complaints tbody tr") == [[day, "33.333% (over the limit)"],
                                                                 [f"{day} (w)", "0.000%"]]
    assert page.cssselect("#chart-bounces rect.band-near") and page.cssselect("#chart-bounces rect.band-over")
    for days in (90, 365):
        longer = signed_in.get(f"/admin/?days={days}")
        assert len(chart_numbers(longer, "signups")) == days
        assert chart_numbers(longer, "signups")[-3:] == ["3", "2", "1"]
    assert len(chart_numbers(signed_in.get("/admin/?days=7"), "signups")) == 30  # only the offered periods


def test_the_overview_alerts_to_readers_ses_dropped_with_a_rendering_failure(store, signed_in):
    from newsletter.core.models import Feedback, FeedbackKind

    edition = Edition(store.clock().date() - dt.timedelta(days=1))
    ids = [store.add(f"r{i}@example.com")[0].id for i in range(3)]
    send(store, edition, dict.fromkeys(ids, DeliveryStatus.SENT), store.clock() - dt.timedelta(hours=20))
    store.apply_feedback("sns-1", [Feedback(FeedbackKind.RENDERING_FAILURE, "r1@example.com", edition.key,
                                            detail="Rendering Failure: Attribute 'x' is not present")])
    page = html_of(signed_in.get("/admin/"))
    alerts = [p.text_content() for p in page.cssselect("#deliverability ~ div[role=alert] p")]
    day = f"{edition.date.day} {edition.date:%b}"
    assert alerts == [f"Rendering Failure on {day}: 1 messages dropped by SES with a Rendering Failure (the readers "
                      f"got nothing): fix the cause, then run newsletter send --date {edition.date} "
                      "--resend-rendering-failures"]


def test_the_overview_of_an_empty_list(store, signed_in):
    response = signed_in.get("/admin/")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "Nothing has been sent yet." in text and "No edition has been sent yet." in text
    assert set(chart_numbers(response, "signups")) == {"0"}


def test_the_last_send_says_when_it_is_still_running_and_its_rate(store, signed_in):
    ids = [store.add(f"r{n}@example.com")[0].id for n in range(6)]
    edition = Edition(dt.date(2025, 3, 11))
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=30)
    send(store, edition, {i: DeliveryStatus.SENT for i in ids[:3]}, start, release=False)
    with clock(store, start + dt.timedelta(seconds=20)):
        Ledger(store, edition).mark_pending(ids[3:])
        Ledger(store, edition).record([LedgerRow(ids[3], DeliveryStatus.SENT, "m")])
    response = signed_in.get("/admin/")
    last = re.sub(r"\s+", "", html_of(response).get_element_by_id("last-send").getnext().text_content())
    assert "Statestillrunning" in last
    assert "Sent4" in last and "Beingsent2" in last
    assert "Achievedrate0.2persecond" in last  # 4 readers handled in 20 s


def test_past_days_are_counted_once_and_kept_today_is_counted_live(store):
    made = history(store)
    today = made.today
    changes = {(day, old, new): n for day, old, new, n in store.status_changes(today - dt.timedelta(days=5))}
    assert changes[(today - dt.timedelta(days=2), None, ACTIVE)] == 3
    assert changes[(today, ACTIVE, COMPLAINED)] == 1
    with store.reader.connect() as conn:
        kept = conn.exec_driver_sql("SELECT day, old_status, new_status, changes FROM event_days").all()
    # The days over for an hour are kept (two days ago; yesterday too from
    # one o'clock); today is not.
    settled = (dt.datetime.now(dt.timezone.utc) - dashboard.DAYS_SETTLE).date() - dt.timedelta(days=1)
    two_days_ago, yesterday = (today - dt.timedelta(days=2)).isoformat(), (today - dt.timedelta(days=1)).isoformat()
    expected = [(two_days_ago, "", "active", 3)]
    if settled.isoformat() >= yesterday:
        expected += [(yesterday, "", "active", 2), (yesterday, "active", "unsubscribed", 1)]
    assert sorted(kept) == expected
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE event_days SET changes = 99")
    store.add("new.today@example.com")
    changes = {(day, old, new): n for day, old, new, n in store.status_changes(today - dt.timedelta(days=5))}
    assert changes[(today - dt.timedelta(days=2), None, ACTIVE)] == 99  # read from what was kept
    assert changes[(today, None, ACTIVE)] == 2  # frank, and the reader just added
    # A longer period extends the kept days backwards, once.
    assert len(store.status_changes(today - dt.timedelta(days=40))) == len(changes)
    with store.reader.connect() as conn:
        kept_days = dict(conn.exec_driver_sql(
            "SELECT key, value FROM newsletter_meta WHERE key IN ('event_days_from', 'event_days_through')").all())
    assert kept_days == {"event_days_from": (today - dt.timedelta(days=40)).isoformat(),
                         "event_days_through": settled.isoformat()}


# --------------------------------------------------------------------------
# sends


def test_the_sends_page_lists_every_edition_with_its_figures_and_web_version(store, signed_in):
    made = history(store)
    response = signed_in.get("/admin/sends")
    rows = table_rows(response, "table tbody tr")
    assert [row[0] for row in rows] == [
        f"{made.weekly.date:%a} {made.weekly.date.day} {made.weekly.date:%b %Y} (weekly)",
        f"{made.daily.date:%a} {made.daily.date.day} {made.daily.date:%b %Y}",
    ]
    # sent, delivered, bounced, complained, unsubscribed after, rates
    assert rows[1][2:] == ["3", "–", "1", "1", "0", "33.33% (over the limit)", "33.333% (over the limit)"]
    assert rows[0][2:] == ["1", "–", "0", "0", "0", "0.00%", "0.000%"]
    links = html_of(response).xpath("//table//th/a/@href")
    assert links == [f"/issues/{made.weekly.date}/weekly", f"/issues/{made.daily.date}"]
    assert not html_of(response).cssselect("[data-live]")  # nothing is running


def test_a_running_send_has_a_live_view_and_its_json(store, signed_in):
    ids = [store.add(f"r{n}@example.com")[0].id for n in range(4)]
    edition = Edition(dt.date(2025, 3, 11))
    send(store, edition, {ids[0]: DeliveryStatus.SENT, ids[1]: DeliveryStatus.PENDING},
         dt.datetime.now(dt.timezone.utc), release=False)
    response = signed_in.get("/admin/sends")
    live = html_of(response).cssselect("[data-live]")
    assert [section.get("data-live") for section in live] == ["/admin/sends/2025-03-11/live.json"]
    assert live[0].cssselect("[data-field=sent]")[0].text_content() == "1"
    assert html_of(response).xpath("//script/@src") == ["/admin/static/live.js"]
    figures = signed_in.get("/admin/sends/2025-03-11/live.json").get_json()
    assert figures | {"last": None} == {"edition": "2025-03-11", "state": "running", "sent": 1, "failed": 0,
                                       "unknown": 0, "pending": 1, "rate": None, "last": None}
    Ledger(store, edition).record([LedgerRow(ids[1], DeliveryStatus.FAILED, None, "refused")])
    assert signed_in.get("/admin/sends/2025-03-11/live.json").get_json()["failed"] == 1
    Ledger(store, edition).release("test-run")
    assert signed_in.get("/admin/sends/2025-03-11/live.json").get_json()["state"] == "stopped"
    assert signed_in.get("/admin/sends/2025-03-12/live.json").status_code == 404


def test_edition_totals_are_kept_once_a_send_is_over_and_forgotten_when_a_run_starts(store):
    ids = [store.add(f"r{n}@example.com")[0].id for n in range(3)]
    edition = Edition(dt.date(2025, 3, 11))
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)
    send(store, edition, {ids[0]: DeliveryStatus.SENT, ids[1]: DeliveryStatus.FAILED}, long_ago)

    def kept() -> list:
        with store.reader.connect() as conn:
            return conn.exec_driver_sql("SELECT edition, sent, failed FROM edition_totals").all()

    assert store.edition_totals([edition.key])[edition.key].counts["sent"] == 1
    assert kept() == [(edition.key, 1, 1)]
    # Kept totals are what is read from now on...
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE edition_totals SET sent = 7")
    assert store.edition_totals([edition.key])[edition.key].counts["sent"] == 7
    # ...until a run of the edition takes its lock: then they are counted again.
    send(store, edition, {ids[2]: DeliveryStatus.SENT}, dt.datetime.now(dt.timezone.utc))
    assert kept() == []
    assert store.edition_totals([edition.key])[edition.key].counts["sent"] == 2
    assert kept() == []  # its last write is recent: not kept yet


def test_the_sends_page_pages_through_many_editions(store, signed_in):
    reader = store.add("r@example.com")[0].id
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=40)
    for n in range(35):
        send(store, Edition(dt.date(2025, 1, 1) + dt.timedelta(days=n)), {reader: DeliveryStatus.SENT},
             start + dt.timedelta(days=n))
    first = signed_in.get("/admin/sends")
    assert len(table_rows(first, "table tbody tr")) == 30
    older = html_of(first).xpath("//a[text()='Older editions']/@href")
    assert older == ["/admin/sends?before=2025-01-06"]
    second = signed_in.get(older[0])
    assert [row[0] for row in table_rows(second, "table tbody tr")][0] == "Sun 5 Jan 2025"
    assert len(table_rows(second, "table tbody tr")) == 5
    assert not html_of(second).xpath("//a[text()='Older editions']")


# --------------------------------------------------------------------------
# subscribers


def search(client, **query) -> tuple[list[str], str | None]:
    response = client.get("/admin/subscribers?" + urllib.parse.urlencode(query))
    assert response.status_code == 200
    page = html_of(response)
    following = page.xpath("//a[@rel='next']/@href")
    return [a.text_content() for a in page.cssselect("#readers tbody th a")], following[0] if following else None


@pytest.mark.parametrize("broad", [2000, 1], ids=["through-the-indexes", "in-id-order"])
def test_the_search_finds_addresses_and_names_by_their_start_in_any_case(store, signed_in, broad, monkeypatch):
    """Whether few readers match (found through the indexes) or many (the
    list walked in id order), the same readers are found."""
    monkeypatch.setattr(dashboard, "BROAD_SEARCH", broad)
    store.add("ada.lovelace@example.com", "Ada Lovelace")
    store.add("Adam@example.org", "Adam Smith")
    store.add("grace@example.com", "Grace Hopper")
    store.add("x_y%z@example.com", "Percent")
    assert search(signed_in, q="ada")[0] == ["ada.lovelace@example.com", "Adam@example.org"]
    assert search(signed_in, q="ADA.")[0] == ["ada.lovelace@example.com"]
    assert search(signed_in, q="grace h")[0] == ["grace@example.com"]
    assert search(signed_in, q="hopper")[0] == []  # the start, not the middle
    assert search(signed_in, q="x_y%")[0] == ["x_y%z@example.com"]  # LIKE's wildcards are plain characters
    assert search(signed_in, q="x%")[0] == []
    assert search(signed_in, q="zzz")[0] == []


def test_filters_and_keyset_paging_cover_each_reader_once(store, signed_in):
    ids = []
    for n in range(120):
        reader = store.add(f"reader{n:03d}@example.com", f"Reader {n}", source="import:a.csv" if n % 3 else "cli")[0]
        ids.append(reader.id)
        if n % 4 == 0:
            store.change_status(reader.id, UNSUBSCRIBED, source="web", reason="left")
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE subscribers SET frequency = 'weekly' WHERE id IN ({ids[5]}, {ids[7]})")
    seen = []
    following = "/admin/subscribers?status=active"
    while following:
        found, following = search(signed_in, **dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(following).query)))
        seen += found
    expected = [f"reader{n:03d}@example.com" for n in range(120) if n % 4]
    assert seen == expected and len(seen) == 90  # two pages of 50 and 40, none twice
    assert search(signed_in, frequency="weekly")[0] == ["reader005@example.com", "reader007@example.com"]
    assert search(signed_in, source="cli", status="unsubscribed", q="reader01")[0] == ["reader012@example.com"]
    # A filter value that is not one is ignored rather than trusted.
    assert len(search(signed_in, status="drop table", source="nope")[0]) == 50


def test_a_readers_page_shows_their_history_editions_feedback_and_profile(store, signed_in):
    made = history(store)
    bob = made.readers["bob@example.org"]
    store.save_profile(Profile(bob, interests=("concept erasure",), picks=3))
    response = signed_in.get(f"/admin/subscribers/{bob}")
    assert response.status_code == 200
    page = html_of(response)
    assert page.get_element_by_id("heading").text_content() == "bob@example.org"
    assert page.get_element_by_id("reader-status").text_content() == "complained"
    events = table_rows(response, "#events tbody tr")
    assert [row[1:] for row in events] == [["active → complained", "ses", f"complaint: abuse (issue {made.daily.key})"],
                                          ["active", "cli", "subscribed"]]
    deliveries = table_rows(response, "#deliveries tbody tr")
    assert [row[:2] for row in deliveries] == [[f"{made.daily.date:%a} {made.daily.date.day} {made.daily.date:%b %Y}",
                                                "sent"]]
    text = page.text_content()
    assert "concept erasure" in text and "complaint" in text
    # A complained address: reactivating it needs a confirmation box.
    assert page.cssselect("form[action$='/reactivate'] input[type=checkbox][name=confirm]")
    assert signed_in.get("/admin/subscribers/999999").status_code == 404


def test_suppressing_and_reactivating_record_who_did_it_and_why(store, signed_in):
    reader = store.add("ada@example.com")[0]
    action = f"/admin/subscribers/{reader.id}"
    empty = signed_in.post(f"{action}/suppress", data={"reason": "  ", "csrf_token": token_of(signed_in)})
    assert empty.status_code == 303
    assert "Say why" in signed_in.get(action).get_data(as_text=True)
    assert status_and_events(store, reader.id) == (ACTIVE, 1)
    signed_in.post(f"{action}/suppress", data={"reason": "asked by email\x1b[31m, twice",
                                              "csrf_token": token_of(signed_in)})
    assert store.get_subscriber(reader.id).status == UNSUBSCRIBED
    event = store.events(reader.id)[-1]
    assert (event.old_status, event.new_status, event.source, event.reason) == (
        "active", "unsubscribed", "admin:alice", "asked by email[31m, twice")
    # The reader cannot undo the operator's decision from their own links.
    assert store.resubscribe(reader.ref)[1] is False
    signed_in.post(f"{action}/reactivate", data={"reason": "changed their mind", "csrf_token": token_of(signed_in)})
    event = store.events(reader.id)[-1]
    assert (event.new_status, event.source, event.reason) == ("active", "admin:alice", "changed their mind")


def test_a_complained_address_is_reactivated_only_with_the_confirmation(store, signed_in):
    reader = store.add("bob@example.org")[0]
    store.change_status(reader.id, COMPLAINED, source="ses", reason="complaint: abuse")
    action = f"/admin/subscribers/{reader.id}/reactivate"
    signed_in.post(action, data={"reason": "asked again", "csrf_token": token_of(signed_in)})
    assert "confirm that its owner asked" in signed_in.get(f"/admin/subscribers/{reader.id}").get_data(as_text=True)
    assert status_and_events(store, reader.id) == (COMPLAINED, 2)
    signed_in.post(action, data={"reason": "asked again in writing", "confirm": "yes",
                                 "csrf_token": token_of(signed_in)})
    assert store.get_subscriber(reader.id).status == ACTIVE
    assert store.events(reader.id)[-1].source == "admin:alice"
    # Already active: nothing more happens.
    signed_in.post(action, data={"reason": "again", "confirm": "yes", "csrf_token": token_of(signed_in)})
    assert status_and_events(store, reader.id) == (ACTIVE, 3)


def test_sending_an_edition_again_goes_to_the_reader_outside_the_ledger(store, signed_in, tmp_path):
    batch = load_batch(FIXTURES / "picks-day.json")
    store.store_batch(batch)
    reader = store.add("ada@example.com", "Ada")[0]
    edition = Edition(batch.date)
    send(store, edition, {reader.id: DeliveryStatus.SENT}, dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    page = html_of(signed_in.get(f"/admin/subscribers/{reader.id}"))
    assert page.xpath("//select[@name='edition']/option/@value") == [edition.key]
    response = signed_in.post(f"/admin/subscribers/{reader.id}/resend",
                              data={"edition": edition.key, "csrf_token": token_of(signed_in)})
    assert response.status_code == 303
    assert "again" in signed_in.get(f"/admin/subscribers/{reader.id}").get_data(as_text=True)
    written = list((tmp_path / "outbox" / batch.date.isoformat()).glob("*.eml"))
    assert len(written) == 1
    message = BytesParser(policy=policy.default).parsebytes(written[0].read_bytes())
    assert message["To"].addresses[0].addr_spec == "ada@example.com"
    assert message["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/u/")
    assert batch.papers[0].title in message.get_body(("plain",)).get_content()
    assert Ledger(store, edition).counts()["sent"] == 1  # the ledger is as it was
    # An inactive reader gets nothing; nor does an edition whose papers are not stored.
    store.change_status(reader.id, UNSUBSCRIBED, source="web", reason="left")
    signed_in.post(f"/admin/subscribers/{reader.id}/resend",
                   data={"edition": edition.key, "csrf_token": token_of(signed_in)})
    assert "Nothing was sent" in signed_in.get(f"/admin/subscribers/{reader.id}").get_data(as_text=True)
    assert len(list((tmp_path / "outbox" / batch.date.isoformat()).glob("*.eml"))) == 1


# --------------------------------------------------------------------------
# import and export


def test_an_import_is_previewed_then_imported_on_confirmation(store, signed_in):
    store.add("present@example.com")
    gone = store.add("gone@example.com")[0]
    store.change_status(gone.id, BOUNCED, source="ses", reason="bounce")
    data = (b"email,name\nnew.one@example.com,New One\npresent@example.com,\nnot-an-address,\n"
            b"gone@example.com,\nnew.two@example.com,Two\n")
    response = signed_in.post("/admin/import", data={"csrf_token": token_of(signed_in, "/admin/import"),
                                                     "file": (io.BytesIO(data), "list.csv")},
                              content_type="multipart/form-data")
    assert response.status_code == 200
    page = html_of(response)
    summary = page.cssselect("#report + p")[0].text_content()
    assert "Would add 2, already present 1, invalid 1, refused 1" in " ".join(summary.split())
    report = page.cssselect(".report")[0].text_content()
    assert "line 4:" in report and "line 5: bounced; not reactivated" in report
    assert store.get(email="new.one@example.com") is None  # nothing written yet
    confirm = page.cssselect("form[action='/admin/import/confirm']")[0]
    fields = {field.get("name"): field.get("value") for field in confirm.cssselect("input[type=hidden]")}
    done = signed_in.post("/admin/import/confirm", data=fields, content_type="multipart/form-data")
    assert "Added 2, already present 1, invalid 1, refused 1" in " ".join(html_of(done).text_content().split())
    added = store.get(email="new.one@example.com")
    assert added.status == ACTIVE and added.name == "New One" and added.source == "admin:alice"
    assert [(e.source, e.reason) for e in store.events(added.id)] == [("admin:alice", "imported from list.csv")]
    assert store.get(email="gone@example.com").status == BOUNCED


def test_a_malformed_upload_is_reported_and_imports_nothing(store, signed_in):
    before = store.counts()
    for data, expected in ((b"name\nAda\n", "no 'email' column"), (b"\xff\xfe", "invalid UTF-8"),
                           (b'email\n"unclosed\n', "line 2")):
        response = signed_in.post("/admin/import", data={"csrf_token": token_of(signed_in, "/admin/import"),
                                                         "file": (io.BytesIO(data), "bad.csv")},
                                  content_type="multipart/form-data")
        assert response.status_code == 400
        assert expected in html_of(response).cssselect("[role=alert]")[0].text_content()
    response = signed_in.post("/admin/import/confirm", data={"csrf_token": token_of(signed_in), "name": "x.csv",
                                                             "payload": "not base64!"},
                              content_type="multipart/form-data")
    assert response.status_code == 400
    assert store.counts() == before


def test_exports_by_status_are_the_cli_export(store, signed_in):
    store.add("ada@example.com", "=HYPERLINK(1)")
    gone = store.add("bob@example.org", "Bob")[0]
    store.change_status(gone.id, UNSUBSCRIBED, source="web", reason="left")
    response = signed_in.get("/admin/export?status=active")
    assert response.mimetype == "text/csv"
    assert 'filename="subscribers-active-' in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["email", "name", "status", "source", "created_at", "updated_at", "frequency", "paused_until"]
    assert [row[:3] for row in rows[1:]] == [["ada@example.com", "'=HYPERLINK(1)", "active"]]
    everyone = list(csv.reader(io.StringIO(signed_in.get("/admin/export").get_data(as_text=True))))
    assert [row[0] for row in everyone[1:]] == ["ada@example.com", "bob@example.org"]


# --------------------------------------------------------------------------
# settings and templates


def test_the_settings_page_shows_the_configuration_with_secrets_masked(store, web_client):
    operator(store)
    app = web_client(cookies=True, smtp_password="smtp-Secret-123", secret_key_fallbacks=(OLD_SECRET,),
                     sender="smtp").application
    client = app.test_client()
    log_in(client)
    response = client.get("/admin/settings")
    text = response.get_data(as_text=True)
    for secret in (SECRET, "smtp-Secret-123", OLD_SECRET):
        assert secret not in text
    values = {row[0]: row[1] for row in table_rows(response, "#settings tbody tr")}
    assert values["NEWSLETTER_SECRET_KEY"] == "•••••• (set)"
    assert values["NEWSLETTER_SMTP_PASSWORD"] == "•••••• (set)"
    assert values["NEWSLETTER_SENDER"] == "smtp"
    assert values["NEWSLETTER_ADMIN_SESSION_HOURS"] == "12"
    assert html_of(response).get_element_by_id("checks") is not None
    assert "Run the checks" in text and "check-results" not in text  # they ask SES and DNS: only when asked


def test_the_settings_page_runs_the_doctors_checks_when_asked(store, web_client, monkeypatch):
    import dns.resolver

    from newsletter.operators import doctor

    class NoDns:  # no lookup leaves this machine
        def resolve(self, name, rdtype):
            raise dns.resolver.NoNameservers()

    monkeypatch.setattr(doctor, "system_resolver", NoDns)
    operator(store)
    app = web_client(cookies=True, sender="smtp").application
    client = app.test_client()
    log_in(client)
    response = client.get("/admin/settings?checks=1")
    checks = {row[0]: row[1] for row in table_rows(response, "#check-results tbody tr")}
    assert list(checks) == list(doctor.CHECK_NAMES)
    assert checks["Secret key"] == "ok"
    assert checks["Base URL"] == "fail"  # the default http://127.0.0.1:8000 reaches no reader
    assert checks["SES account"] == "skip"  # the smtp sender
    assert checks["DMARC"] == "skip"
    assert SECRET not in response.get_data(as_text=True)


def test_a_database_password_is_masked_on_the_settings_page(store, database_url):
    from newsletter.core.config import masked_url

    assert masked_url("postgresql+psycopg://news:Pa55word@db.internal:5432/newsletter") == (
        "postgresql+psycopg://news:••••••@db.internal:5432/newsletter")
    assert masked_url("sqlite:///subscribers/newsletter.db") == "sqlite:///subscribers/newsletter.db"
    # In the query string too, any secret-looking parameter, in any case;
    # a password holding "?" or "/" as SQLAlchemy reads it; malformed URLs.
    assert masked_url("postgresql://u@db/news?sslmode=require&PassWord=s3cret&sslpassword=k3y&application_name=x"
                      "&token=&api_key=abc") == ("postgresql://u@db/news?sslmode=require&PassWord=••••••"
                                                 "&sslpassword=••••••&application_name=x&token=&api_key=••••••")
    assert masked_url("postgresql://u:p?a/ss@db/news?x=1") == "postgresql://u:••••••@db/news?x=1"
    assert masked_url("postgresql://u@db:notaport/news?password=s3cret") == (
        "postgresql://u@db:notaport/news?password=••••••")
    assert masked_url("https://huggingface.co") == "https://huggingface.co"


def test_dashboard_templates_can_be_overridden(store, web_client, tmp_path):
    operator(store)
    folder = tmp_path / "templates" / "admin"
    folder.mkdir(parents=True)
    (folder / "login.html").write_text('{% extends "admin/base.html" %}{% block content %}Our own login '
                                       '<input type="hidden" name="csrf_token" value="{{ csrf_token }}">'
                                       '{% endblock %}', encoding="utf-8")
    client = web_client(cookies=True, templates_dir=tmp_path / "templates")
    assert "Our own login" in client.get(LOGIN_PATH).get_data(as_text=True)


# --------------------------------------------------------------------------
# the limits against real servers


class HttpBrowser:
    """A browser of a real server at ``base``: keeps its cookies, follows no
    redirect. Each request returns (status, headers, body)."""

    def __init__(self, base: str, forwarded_for: str | None = None):
        self.base = base
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)
        if forwarded_for is not None:  # as a proxy in front of the server would add
            self.opener.addheaders.append(("X-Forwarded-For", forwarded_for))

    def request(self, path: str, form: dict | None = None) -> tuple[int, dict, str]:
        body = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(f"{self.base}{path}", data=body, timeout=60) as answer:
                return answer.status, dict(answer.headers), answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode()

    def post(self, path: str, form: dict, token_from: str = "/admin/") -> tuple[int, dict, str]:
        """POST ``form`` with the CSRF token of the page ``token_from``."""
        return self.request(path, {**form, "csrf_token": csrf_of(self.request(token_from)[2])})

    def log_in(self, name: str = NAME, password: str = PASSWORD, next: str | None = None) -> tuple[int, dict, str]:
        form = {"name": name, "password": password, **({"next": next} if next is not None else {})}
        return self.post(LOGIN_PATH, form, token_from=LOGIN_PATH)


def login_over_http(base: str, name: str, password: str, forwarded_for: str | None = None) -> int:
    """Log in through ``base``'s form as a browser does (its own cookies),
    behind a proxy that sent ``forwarded_for`` as X-Forwarded-For if given;
    return the answer's status (303 on success: redirects are not followed)."""
    return HttpBrowser(base, forwarded_for).log_in(name, password)[0]


@contextlib.contextmanager
def dashboard_server(database_url: str, folder: Path, **settings: str):
    """One `newsletter serve` on ``database_url`` with ``settings``
    (NEWSLETTER_* variables); yields its base URL and its log file."""
    port = free_port()
    env = clean_env(**{"NEWSLETTER_DATABASE_URL": database_url, "NEWSLETTER_SECRET_KEY": SECRET,
                       "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}",
                       "NEWSLETTER_OUTBOX_DIR": str(folder / "outbox"), **settings})
    with newsletter_server(["serve", "--port", str(port)], port, folder, env) as base:
        yield base, folder / f"server-{port}.log"


@contextlib.contextmanager
def two_servers(database_url: str, folder: Path):
    """Two `newsletter serve` processes on one database; yields their base URLs."""
    with contextlib.ExitStack() as stack:
        bases = []
        for _ in range(2):
            port = free_port()
            env = clean_env(NEWSLETTER_DATABASE_URL=database_url, NEWSLETTER_SECRET_KEY=SECRET,
                            NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}")
            bases.append(stack.enter_context(newsletter_server(["serve", "--port", str(port)], port, folder, env)))
        yield bases


def test_the_limits_hold_for_parallel_attempts_on_two_server_processes(store, database_url, tmp_path):
    operator(store)
    with two_servers(database_url, tmp_path) as servers:
        attempts = 12
        barrier = threading.Barrier(attempts)
        statuses: list[int] = []
        lock = threading.Lock()

        def attempt(number: int) -> None:
            base = servers[number % 2]
            barrier.wait(timeout=60)  # every attempt leaves at once
            status = login_over_http(base, NAME, f"wrong password {number}")
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=attempt, args=(n,)) for n in range(attempts)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(statuses) == attempts, "every attempt answered", timeout=120)
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [401] * PER_NAME_AND_CLIENT + [429] * (attempts - PER_NAME_AND_CLIENT)
        # The right password from that client now meets the limit too, on either server.
        assert login_over_http(servers[0], NAME, PASSWORD) == 429
        assert login_over_http(servers[1], NAME, PASSWORD) == 429
    with store.reader.connect() as conn:
        outcomes = dict(conn.exec_driver_sql("SELECT outcome, count(*) FROM admin_logins GROUP BY outcome").all())
    assert outcomes == {"failed": PER_NAME_AND_CLIENT}


def test_behind_a_proxy_nobody_can_lock_the_operator_out_under_serve(store, database_url, tmp_path):
    # waitress dropped X-Forwarded-For, so every visitor was one client;
    # and five failures for a name from anywhere shut it for 15 minutes.
    operator(store)
    port = free_port()
    env = clean_env(NEWSLETTER_DATABASE_URL=database_url, NEWSLETTER_SECRET_KEY=SECRET,
                    NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}", NEWSLETTER_PROXY_COUNT="1")
    with newsletter_server(["serve", "--port", str(port)], port, tmp_path, env) as base:
        with ThreadPoolExecutor(max_workers=PER_CLIENT) as pool:
            guesses = list(pool.map(lambda n: login_over_http(base, f"made-up{n}", "wrong password!",
                                                              f"203.0.113.{n + 1}"), range(PER_CLIENT)))
            assert guesses == [401] * PER_CLIENT
            assert login_over_http(base, NAME, PASSWORD, "198.51.100.1") == 303
            failures = list(pool.map(lambda n: login_over_http(base, NAME, f"wrong password {n}",
                                                               f"192.0.2.{n + 1}"), range(PER_NAME_AND_CLIENT)))
            assert failures == [401] * PER_NAME_AND_CLIENT
        assert login_over_http(base, NAME, PASSWORD, "198.51.100.2") == 303
    with store.reader.connect() as conn:
        clients = conn.execute(text("SELECT client FROM admin_logins WHERE name_key = :name"), {"name": NAME}
                               ).scalars().all()
    assert sorted(clients) == sorted(["198.51.100.1", "198.51.100.2",
                                      *(f"192.0.2.{n + 1}" for n in range(PER_NAME_AND_CLIENT))])


# --------------------------------------------------------------------------
# odd input, secrets, cookies and sending again, against a real server


def server_log_is_clean(log: Path) -> None:
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "Exception on" not in text, text


def test_odd_ids_searches_and_next_addresses_get_a_page_never_a_500(store, database_url, tmp_path):
    operator(store)
    reader = store.add("ada@example.com", "Ada")[0]
    with dashboard_server(database_url, tmp_path) as (base, log):
        # A control character in next= cannot go into a Location header
        # (a bare CR), or is dropped by browsers (a tab): the overview instead.
        for wanted in ("/admin/\rx", "/admin/subscribers\r\nSet-Cookie: x=1", "/admin/\t/evil.example"):
            status, headers, _ = HttpBrowser(base).log_in(next=wanted)
            assert (status, headers["Location"]) == (303, "/admin/"), wanted
        browser = HttpBrowser(base)
        assert browser.log_in(next="/admin/subscribers?q=ad")[1]["Location"] == "/admin/subscribers?q=ad"
        # Ids no reader can have: above PostgreSQL's integer, SQLite's 64 bits, any size.
        for number in (2**31, 2**63, 2**64, 10**40):
            assert browser.request(f"/admin/subscribers/{number}")[0] == 404, number
            for action in ("suppress", "reactivate", "resend"):
                answer = browser.post(f"/admin/subscribers/{number}/{action}", {"reason": "why", "edition": "x"})
                assert answer[0] == 404, (number, action)
        assert store.get_subscriber(reader.id).status == ACTIVE
        assert browser.request(f"/admin/subscribers/{reader.id}")[0] == 200
        # An after= that is no reader's id pages from the first.
        for after in (2**31, 2**64, 10**40, -1, "x"):
            status, _, body = browser.request(f"/admin/subscribers?after={after}")
            assert status == 200 and "ada@example.com" in body, after
        # Searches ending in the last code point, before the surrogates, with a NUL.
        for query, found in (("\U0010ffff", False), ("a\U0010ffff", False), ("ad\U0010ffff\U0010ffff", False),
                             ("a\ud7ff", False), ("ada\x00", True), ("ad", True)):
            status, _, body = browser.request("/admin/subscribers?" + urllib.parse.urlencode({"q": query}))
            assert status == 200 and ("ada@example.com" in body) is found, query
            assert browser.request("/papers?" + urllib.parse.urlencode({"q": query}))[0] == 200, query
        assert browser.request("/admin/sends/%00/live.json")[0] == 404
        assert HttpBrowser(base).log_in("ali\x00ce", "x")[0] == 401
    server_log_is_clean(log)


QUERY_SECRET = "hunter2-in-the-query"


def query_password_url(database_url: str) -> str:
    """``database_url`` with passwords in its query string: SQLite ignores
    them; PostgreSQL's own is moved there, beside a client key's
    (``sslpassword``, unused without a key)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return f"{database_url}?password={QUERY_SECRET}&sslpassword={QUERY_SECRET}"
    return url._replace(password=None).update_query_dict({"password": url.password, "sslpassword": QUERY_SECRET}
                                                    ).render_as_string(hide_password=False)


def test_a_password_in_the_database_urls_query_is_masked_on_the_settings_page(store, database_url, tmp_path):
    operator(store)
    served = query_password_url(database_url)
    with dashboard_server(served, tmp_path) as (base, log):
        browser = HttpBrowser(base)
        assert browser.log_in()[0] == 303
        status, _, text = browser.request("/admin/settings")
    assert status == 200 and QUERY_SECRET not in text
    shown = {row[0]: row[1] for row in table_rows_of(text, "#settings tbody tr")}["NEWSLETTER_DATABASE_URL"]
    assert shown == re.sub(r"(password)=[^&]*", r"\1=••••••", served)
    assert "password=••••••" in shown and "sslpassword=••••••" in shown
    server_log_is_clean(log)


def test_an_https_base_url_in_capitals_still_makes_the_session_cookie_secure(store, database_url, tmp_path):
    operator(store)
    with dashboard_server(database_url, tmp_path, NEWSLETTER_BASE_URL="HTTPS://Papers.Example.org") as (base, _log):
        status, headers, _ = HttpBrowser(base).request(LOGIN_PATH)
    assert status == 200
    cookie = headers["Set-Cookie"]
    assert cookie.startswith("newsletter_admin=") and "Secure" in cookie


def test_send_again_refuses_editions_the_form_does_not_offer_and_keeps_every_copy(store, database_url, tmp_path):
    batch = load_batch(FIXTURES / "picks-day.json")
    store.store_batch(batch)
    reader = store.add("ada@example.com", "Ada")[0]
    other = store.add("bob@example.org", "Bob")[0]
    operator(store)
    edition, elsewhere = Edition(batch.date), Edition(batch.date - dt.timedelta(days=1))
    sent_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    send(store, edition, {reader.id: DeliveryStatus.SENT}, sent_at)
    send(store, elsewhere, {other.id: DeliveryStatus.SENT}, sent_at)  # an edition Ada never got
    folder = tmp_path / "outbox" / edition.key
    with dashboard_server(database_url, tmp_path) as (base, log):
        browser = HttpBrowser(base)
        assert browser.log_in()[0] == 303
        page = lxml.html.document_fromstring(browser.request(f"/admin/subscribers/{reader.id}")[2])
        assert page.xpath("//select[@name='edition']/option/@value") == [edition.key]
        for key in (elsewhere.key, f"{edition.key}-weekly", "", "2025-13-45", edition.key + "\x00"):
            status, _, text = browser.post(f"/admin/subscribers/{reader.id}/resend", {"edition": key})
            assert status == 400, key
            assert "Nothing was sent: only an edition this reader was sent" in text
        assert not (tmp_path / "outbox").exists()
        # Each copy sent again is a file of its own.
        for _ in range(2):
            assert browser.post(f"/admin/subscribers/{reader.id}/resend", {"edition": edition.key})[0] == 303
    copies = sorted(folder.glob("*.eml"))
    assert len(copies) == 2
    assert [BytesParser(policy=policy.default).parsebytes(path.read_bytes())["To"].addresses[0].addr_spec
            for path in copies] == ["ada@example.com"] * 2
    assert Ledger(store, edition).counts()["sent"] == 1
    server_log_is_clean(log)


def dashboard_opener(base: str):
    """An opener logged in to ``base``'s dashboard as a browser is (its own cookies)."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(f"{base}{LOGIN_PATH}", timeout=30) as page:
        token = csrf_of(page.read().decode())
    body = urllib.parse.urlencode({"name": NAME, "password": PASSWORD, "csrf_token": token}).encode()
    with opener.open(f"{base}{LOGIN_PATH}", data=body, timeout=60) as answer:
        assert answer.url == f"{base}/admin/"
    return opener


def post_multipart(opener, url: str, fields: dict[str, str], upload: tuple[str, bytes] | None = None):
    """POST ``fields`` and the file ``upload`` (name, content) as a browser's
    form does; return the answer's status and its page."""
    boundary = "form-boundary-7MA4YWxkTrZu0gW"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    if upload is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{upload[0]}"\r\n'
                     "Content-Type: text/csv\r\n\r\n".encode() + upload[1] + b"\r\n")
    request = urllib.request.Request(url, data=b"".join(parts) + f"--{boundary}--\r\n".encode(),
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with opener.open(request, timeout=120) as answer:
            return answer.status, lxml.html.document_fromstring(answer.read().decode())
    except urllib.error.HTTPError as error:
        return error.code, lxml.html.document_fromstring(error.read().decode())


def memory(pid: int, kind: str) -> int:
    """Process ``pid``'s memory (bytes) of ``kind``: VmRSS, what it holds
    now; VmHWM, the most it has held since the start or :func:`reset_peak`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{kind}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {kind} for process {pid}")


def reset_peak(pid: int) -> None:
    """Make process ``pid``'s peak memory (VmHWM) what it holds now (Linux 4.0 on)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def readers_csv(count: int) -> bytes:
    return b"email,name\n" + b"".join(b"reader%d@example.org,Reader %d\n" % (i, i) for i in range(count))


def test_dashboard_imports_keep_to_their_limits_and_bounded_memory_on_a_real_server(tmp_path):
    database = tmp_path / "db" / "newsletter.db"
    store = open_store(f"sqlite:///{database}")
    operator(store)
    port = free_port()
    env = clean_env(NEWSLETTER_DATABASE_URL=f"sqlite:///{database}", NEWSLETTER_SECRET_KEY=SECRET,
                    NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}")
    with newsletter_server(["serve", "--port", str(port)], port, tmp_path, env) as base:
        [server] = [pid for pid, command in processes_holding(database) if f"serve --port {port}" in command]
        opener = dashboard_opener(base)
        with opener.open(f"{base}/admin/import", timeout=30) as page:
            token = csrf_of(page.read().decode())
        reset_peak(server)  # its start-up (the ranking's model) peaked higher than an import may
        before = memory(server, "VmRSS")

        # A file of as many rows as may be imported is checked whole.
        status, page = post_multipart(opener, f"{base}/admin/import", {"csrf_token": token},
                                      ("at-limit.csv", readers_csv(MAX_IMPORT_ROWS)))
        assert status == 200
        assert f"Would add {MAX_IMPORT_ROWS}, already present 0" in " ".join(page.cssselect("#report + p")[0]
                                                                             .text_content().split())
        # One of twice as many rows (well under the size limit) is refused,
        # by the preview and by a confirmation carrying it all the same.
        too_many = readers_csv(2 * MAX_IMPORT_ROWS)
        assert len(too_many) < MAX_IMPORT_BYTES / 2
        refused = (f"more than {MAX_IMPORT_ROWS:,} rows; import it with `newsletter subscribers import`.")
        status, page = post_multipart(opener, f"{base}/admin/import", {"csrf_token": token}, ("many.csv", too_many))
        assert (status, page.cssselect("[role=alert]")[0].text_content()) == (413, f"many.csv: {refused}")
        status, page = post_multipart(opener, f"{base}/admin/import/confirm", {
            "csrf_token": token, "name": "many.csv", "payload": base64.b64encode(too_many).decode()})
        assert (status, page.cssselect("[role=alert]")[0].text_content()) == (413, f"many.csv: {refused}")
        # What the server needed for all of that: a bound, not the file's size times a few hundred.
        grown = memory(server, "VmHWM") - before
        assert grown < 150 * 1024 * 1024, f"the server grew by {grown / 1024 / 1024:.0f} MB"

        # Larger than the size limit: refused by both too.
        too_large = b"email\n" + b"a@example.org\n" * (MAX_IMPORT_BYTES // 14 + 1)
        said = f"large.csv: larger than {MAX_IMPORT_BYTES:,} bytes; import it with `newsletter subscribers import`."
        status, page = post_multipart(opener, f"{base}/admin/import", {"csrf_token": token}, ("large.csv", too_large))
        assert (status, page.cssselect("[role=alert]")[0].text_content()) == (413, said)
        status, page = post_multipart(opener, f"{base}/admin/import/confirm", {
            "csrf_token": token, "name": "large.csv", "payload": base64.b64encode(too_large).decode()})
        assert (status, page.cssselect("[role=alert]")[0].text_content()) == (413, said)
        # Past what the server reads of a request at all: the page says so too.
        status, page = post_multipart(opener, f"{base}/admin/import", {"csrf_token": token},
                                      ("huge.csv", too_large * 3))
        assert (status, page.cssselect("[role=alert]")[0].text_content()) == (
            413, f"The file is larger than {MAX_IMPORT_BYTES:,} bytes; import it with `newsletter subscribers import`.")
    assert store.counts()[ACTIVE] == 0  # nothing was imported
    store.close()


# --------------------------------------------------------------------------
# the command line


def test_admin_add_list_password_remove_with_the_password_on_stdin(cli_run, env):
    added = cli_run("admin", "add", "Alice", input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert added.stdout == "Added the operator alice: the dashboard is at http://127.0.0.1:8000/admin/\n"
    database = env["NEWSLETTER_DATABASE_URL"].removeprefix("sqlite:///")
    assert added.stderr == f"Created a new database at {database}\n"  # the first operator, on a new install
    assert cli_run("admin", "add", "bob", "--password-stdin", input="another Strong-pass 42\n").exit_code == 0
    listed = cli_run("admin", "list")
    assert [line.split("\t")[0] for line in listed.output.splitlines()] == ["alice", "bob"]
    assert "never logged in" in listed.output
    changed = cli_run("admin", "password", "alice", input="a brand-New pass 77\n")
    assert changed.exit_code == 0 and "sessions are ended" in changed.output
    store = open_store(env["NEWSLETTER_DATABASE_URL"])
    try:
        assert admins_module.verify_password(store.get_admin("alice").password_hash, "a brand-New pass 77")
    finally:
        store.close()
    removed = cli_run("admin", "remove", "BOB")
    assert removed.exit_code == 0 and removed.output == "Removed the operator bob; their sessions are ended.\n"
    assert [line.split("\t")[0] for line in cli_run("admin", "list").output.splitlines()] == ["alice"]
    for output in (added.output, changed.output, listed.output):
        assert PASSWORD not in output and "a brand-New pass 77" not in output


def test_admin_add_asks_twice_on_a_terminal_and_refuses_a_mismatch(cli_run, monkeypatch):
    monkeypatch.setattr(admin_cli, "interactive", lambda: True)
    mismatch = cli_run("admin", "add", "alice", input=f"{PASSWORD}\n{PASSWORD}x\n")
    assert mismatch.exit_code == 2
    assert mismatch.output.splitlines()[-1] == "Error: the two passwords differ; nothing was changed"
    assert cli_run("admin", "list").output == ""
    typed = cli_run("admin", "add", "alice", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert typed.exit_code == 0, typed.output
    assert "Password: \nRepeat the password: \n" in typed.output  # asked, never echoed
    assert PASSWORD not in typed.output


@pytest.mark.parametrize("password, why", [
    ("short Pw1!", "too short: use at least 12 characters"),
    ("password1234", "one of the most common passwords"),
    ("Password2024!", "one of the most common passwords"),
    ("qwertyqwerty", "one of the most common passwords"),
    ("1q2w3e4r5t6y", "one of the most common passwords"),
    ("alice-is-the-boss", "contains the name"),
    ("abababababab", "fewer than 5 different characters"),
    ("mnbvcxzlkjhg", "easy to guess"),
    ("jennifer1984", "easy to guess"),
    ("x" * 1025, "too long"),
])
def test_weak_and_common_passwords_are_refused(cli_run, password, why):
    result = cli_run("admin", "add", "alice", input=password + "\n")
    assert result.exit_code == 2
    assert result.output.startswith("Error: the password ") and why in result.output
    assert password not in result.output
    assert cli_run("admin", "list").output == ""
    with pytest.raises(Exception, match=re.escape(why)):
        check_password(password, "alice")


def test_admin_commands_refuse_bad_names_and_unknown_operators(cli_run):
    assert cli_run("admin", "add", "alice", input=PASSWORD + "\n").exit_code == 0
    for args, message in (
        (["admin", "add", "alice"], "there is already an operator called 'alice'"),
        (["admin", "add", "no spaces"], "is not a name for an operator"),
        (["admin", "add", "x" * 25], "is not a name for an operator"),
        (["admin", "remove", "bob"], "there is no operator called 'bob'"),
        (["admin", "password", "bob"], "there is no operator called 'bob'"),
    ):
        result = cli_run(*args, input=PASSWORD + "\n")
        assert result.exit_code == 2 and result.output.startswith("Error: ") and message in result.output, args
    empty = cli_run("admin", "password", "alice", input="")
    assert empty.exit_code == 2 and "no password on standard input" in empty.output


def test_a_hash_made_with_other_parameters_is_renewed_at_login(store, client):
    from argon2 import PasswordHasher

    weaker = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    store.add_admin(NAME, weaker)
    assert log_in(client).status_code == 303
    renewed = store.get_admin(NAME).password_hash
    assert renewed != weaker and renewed.split("$")[3] == hash_password("x").split("$")[3]
    assert client.get("/admin/").status_code == 200  # the session it started survives the new hash


def test_frequency_is_a_filter(store, signed_in):
    reader = store.add("weekly@example.com")[0]
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE subscribers SET frequency = 'weekly' WHERE id = {reader.id}")
    store.add("daily@example.com")
    assert search(signed_in, frequency=Frequency.WEEKLY.value)[0] == ["weekly@example.com"]


def test_a_weekly_edition_is_sent_again_with_the_papers_it_went_out_with(store, signed_in, tmp_path):
    from newsletter.issue.editions import edition_batch
    from newsletter.core.models import Batch, EditionKind, Paper
    from newsletter.issue.render import render_issue

    day = dt.date(2026, 3, 15)
    for back in range(2):
        store.store_batch(Batch(day - dt.timedelta(days=back), (Paper(f"Week paper {back}", "About it.",
                                                                      arxiv_id=f"2603.0000{back}", upvotes=back),)))
    edition = Edition(day, EditionKind.WEEKLY)
    issue = render_issue(edition_batch(store, edition), Settings())
    store.save_issue(issue)
    reader = store.add("ada@example.com", "Ada")[0]
    send(store, edition, {reader.id: DeliveryStatus.SENT}, dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
    # A corrected day since: the edition keeps the papers it went out with.
    store.store_batch(Batch(day, (Paper("A late correction", "Changed.", arxiv_id="2603.00009", upvotes=99),)))
    page = html_of(signed_in.get(f"/admin/subscribers/{reader.id}"))
    assert page.xpath("//select[@name='edition']/option/@value") == [edition.key]
    signed_in.post(f"/admin/subscribers/{reader.id}/resend", data={"edition": edition.key,
                                                                   "csrf_token": token_of(signed_in)})
    [written] = (tmp_path / "outbox" / edition.key).glob("*.eml")
    message = BytesParser(policy=policy.default).parsebytes(written.read_bytes())
    assert message["Subject"] == "Daily Papers · Weekly · 9–15 Mar 2026 · 2 papers"
    text = message.get_body(("plain",)).get_content()
    assert "Week paper 1" in text and "Week paper 0" in text and "A late correction" not in text


def test_the_overviews_totals_from_the_history_equal_the_list(store):
    """The overview sums each status change since the first (past days
    counted once and kept) instead of counting the list: they must agree
    whatever happened on which day, day after day as days are kept."""
    def agree():
        assert store.status_totals() == store.counts()

    now = dt.datetime.now(dt.timezone.utc)
    assert store.status_totals() == store.counts() == dict.fromkeys(tuple(SubscriberStatus), 0)
    with clock(store, now - dt.timedelta(days=3)):
        ids = [store.add(f"r{n}@example.com")[0].id for n in range(6)]
        store.import_subscribers([SubscriberRow(n + 2, f"i{n}@example.com", None) for n in range(4)])
        agree()
    with clock(store, now - dt.timedelta(days=2)):
        agree()  # the first day is kept by now
        store.change_status(ids[0], UNSUBSCRIBED, source="web", reason="left")
        store.change_status(ids[1], SubscriberStatus.BOUNCED, source="ses", reason="bounce")
        store.change_status(ids[2], SubscriberStatus.COMPLAINED, source="ses", reason="complaint")
        agree()
    with clock(store, now - dt.timedelta(days=1)):
        store.change_status(ids[0], ACTIVE, source="web", reason="came back")
        store.unsubscribe(store.get_subscriber(ids[3]).ref, source="one-click", reason="one-click")
        agree()
    store.add("today@example.com")
    store.change_status(ids[4], UNSUBSCRIBED, source="cli", reason="removed")
    agree()
    assert store.status_totals()[ACTIVE] == 7
