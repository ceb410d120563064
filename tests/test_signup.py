"""Confirmed sign-up (double opt-in) through the web app: the form, the
confirmation email in the outbox, the confirm page and its button, a reply
that never reveals who is on the list, the abuse limits (per address a day,
per client an hour, the client taken from X-Forwarded-For only behind a
configured proxy), and every bad confirmation link refused.

Flask's test client on ``create_app`` with the outbox sender, on both
databases (the ``store`` fixture: SQLite, then PostgreSQL); who the client
is, with and without a proxy, also through real ``newsletter serve``.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

import lxml.html
import pytest
from click.testing import CliRunner
from itsdangerous import TimestampSigner, URLSafeSerializer, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode

from conftest import SECRET, clean_env, count_signups, free_port, newsletter_server, wait_until
from newsletter.cli import cli
from newsletter.core.errors import AccountError
from newsletter.core.models import SubscriberStatus
from newsletter.readers.signup import PER_ADDRESS_PER_DAY, PER_CLIENT_PER_HOUR
from newsletter.readers.tokens import CONFIRM_SALT, UNSUBSCRIBE_SALT, Signer
from newsletter.web import mask_email

ACTIVE = SubscriberStatus.ACTIVE
BOUNCED = SubscriberStatus.BOUNCED
COMPLAINED = SubscriberStatus.COMPLAINED
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED

BASE = "https://papers.example.org"
OTHER_SECRET = "ly12xlEa51C9FWaRReYCbCWzyprWlYLeTDXuVOCodx0"
OLD_SECRET = "4zXsAU5ho3LGIvk2kfS07YNedgdVSTzYe3VA5wnQUfc"
CONFIRM_LINK = re.compile(re.escape(BASE) + r"/confirm/([A-Za-z0-9_\-.]+)")
SENT_TEXT = "Check your inbox"
DAY = 24 * 3600


# --------------------------------------------------------------------------
# helpers


@pytest.fixture
def outbox(tmp_path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def make_client(store, web_client, outbox):
    """Return a function making a test client of the app on ``store`` (no
    cookies), with the outbox sender writing under ``outbox``."""

    def make(**overrides):
        return web_client(**{"outbox_dir": outbox, "base_url": BASE, **overrides})

    return make


@pytest.fixture
def client(make_client):
    return make_client()


def sign_up(client, address: str, name: str = "", website: str = "", remote: str = "198.51.100.1", **headers):
    """POST the form as a browser would, from client address ``remote``;
    then let the app's worker send what it has to (it runs in the
    background under ``newsletter serve``)."""
    response = client.post(
        "/subscribe",
        data={"email": address, "name": name, "website": website},
        environ_base={"REMOTE_ADDR": remote},
        headers=headers,
    )
    work(client)
    return response


def work(client) -> None:
    """Run the app's reader-action worker once, as its thread would."""
    client.application.extensions["newsletter"].actions.run_pending()


def messages(outbox: Path) -> list[email.message.EmailMessage]:
    """Every single (non-issue) message in the outbox, parsed (the
    ``.eml`` files only: a message being written is a temporary file
    until it is complete)."""
    folder = outbox / "single"
    if not folder.is_dir():
        return []
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(folder.glob("*.eml"))]


def sent_to(outbox: Path, address: str) -> list[email.message.EmailMessage]:
    return [m for m in messages(outbox) if m["To"].addresses[0].addr_spec.lower() == address.lower()]


def confirm_token_in(message) -> str:
    """The token of the confirmation link, checked to be the same in both parts."""
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    in_text = CONFIRM_LINK.findall(text)
    in_html = CONFIRM_LINK.findall(html)
    assert len(in_text) == 1, text
    assert in_html and set(in_html) == set(in_text), html
    return in_text[0]


def doc(response):
    return lxml.html.document_fromstring(response.get_data(as_text=True))


def heading(response) -> str:
    return doc(response).get_element_by_id("heading").text_content().strip()


def snapshot(store) -> dict[int, tuple[str, int]]:
    """Every subscriber's status and number of events."""
    return {s.id: (s.status, len(store.events(s.id))) for s in store.iter_subscribers()}


def with_status(store, address: str, status: str, source: str | None = None):
    """Add ``address`` and give it ``status``, as the reader (unsubscribed)
    or SES (bounced, complained) would, or as ``source``."""
    subscriber, _ = store.add(address, source="cli")
    if status != ACTIVE:
        source = source or ("web" if status == UNSUBSCRIBED else "ses")
        assert store.change_status(subscriber.id, status, source=source, reason=f"made {status}")
    return store.get(email=address)


def aged_token(address: str, seconds_old: int, secret: str = SECRET, name: str = "") -> str:
    """A confirmation token made ``seconds_old`` seconds ago."""

    class PastSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - seconds_old

    serializer = URLSafeTimedSerializer(secret, salt=CONFIRM_SALT, signer=PastSigner)
    return serializer.dumps({"e": address, "n": name})


def _flip(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1:]


# --------------------------------------------------------------------------
# the form and the main flow


def test_form_has_email_name_and_a_hidden_honeypot(client):
    response = client.get("/subscribe")
    assert response.status_code == 200
    assert heading(response) == "Subscribe"
    page = doc(response)
    (form,) = page.xpath("//form")
    assert form.get("method") == "post" and form.get("action") == "/subscribe"
    fields = {i.get("name"): i for i in form.xpath(".//input")}
    assert set(fields) == {"email", "name", "website", "frequency"}
    # How often: daily unless weekly is chosen.
    choices = {i.get("value"): i for i in form.xpath(".//input[@name='frequency']")}
    assert set(choices) == {"daily", "weekly"} and all(i.get("type") == "radio" for i in choices.values())
    assert choices["daily"].get("checked") is not None and choices["weekly"].get("checked") is None
    assert fields["email"].get("type") == "email" and fields["email"].get("required") is not None
    assert fields["name"].get("type") == "text"
    trap = fields["website"]
    # Out of sight, out of the tab order and out of the accessibility tree.
    assert trap.get("tabindex") == "-1"
    assert trap.getparent().get("aria-hidden") == "true"
    assert "trap" in trap.getparent().get("class")
    assert re.search(r"\.trap\s*{[^}]*left:\s*-10000px", response.get_data(as_text=True))
    assert response.headers["Content-Security-Policy"]


def test_sign_up_then_confirm_with_the_button(store, client, outbox):
    response = sign_up(client, "Ada.Lovelace@Example.COM", name="  Ada   Lovelace ")
    assert response.status_code == 200
    assert SENT_TEXT in response.get_data(as_text=True)
    assert heading(response) == "Almost there"
    (message,) = messages(outbox)
    assert message["To"].addresses[0].addr_spec == "Ada.Lovelace@example.com"
    assert message["Subject"] == "Confirm your subscription to Daily Papers"
    assert message["Auto-Submitted"] == "auto-generated"
    token = confirm_token_in(message)
    # Nobody is subscribed by a sign-up alone.
    assert store.get(email="ada.lovelace@example.com") is None
    assert snapshot(store) == {}

    # Opening the link (as a mail scanner would) shows a button and changes nothing.
    page = client.get(f"/confirm/{token}")
    assert page.status_code == 200
    assert heading(page) == "Confirm your subscription"
    (form,) = doc(page).xpath("//form")
    assert form.get("method") == "post" and form.get("action") == f"/confirm/{token}"
    assert form.xpath(".//button[@type='submit']")
    assert mask_email("Ada.Lovelace@example.com") in page.get_data(as_text=True)
    assert "Ada.Lovelace@example.com" not in page.get_data(as_text=True)
    assert store.get(email="ada.lovelace@example.com") is None

    done = client.post(f"/confirm/{token}")
    assert done.status_code == 200
    assert heading(done) == "You are subscribed"
    ada = store.get(email="ada.lovelace@example.com")
    assert (ada.email, ada.name, ada.status) == ("Ada.Lovelace@example.com", "Ada Lovelace", ACTIVE)
    assert ada.source == "signup"
    assert [(e.old_status, e.new_status, e.source) for e in store.events(ada.id)] == [(None, ACTIVE, "signup")]

    # Pressing the button again (or a second tab) is harmless.
    before = snapshot(store)
    again = client.post(f"/confirm/{token}")
    assert again.status_code == 200
    assert heading(again) == "You are subscribed"
    assert snapshot(store) == before
    assert len(messages(outbox)) == 1  # confirming sends nothing


def test_reply_never_reveals_membership(store, client, outbox):
    for address, status in [("active@example.com", ACTIVE), ("left@example.com", UNSUBSCRIBED),
                            ("bounced@example.com", BOUNCED), ("complained@example.com", COMPLAINED)]:
        with_status(store, address, status)
    for n in range(PER_ADDRESS_PER_DAY):
        assert sign_up(client, "busy@example.com", remote=f"192.0.2.{n}").status_code == 200
    before = snapshot(store)
    replies = {
        "new address": sign_up(client, "new@example.com", remote="203.0.113.1"),
        "active": sign_up(client, "ACTIVE@example.com", remote="203.0.113.2"),
        "unsubscribed": sign_up(client, "left@example.com", remote="203.0.113.3"),
        "bounced": sign_up(client, "bounced@example.com", remote="203.0.113.4"),
        "complained": sign_up(client, "complained@example.com", remote="203.0.113.5"),
        "honeypot filled": sign_up(client, "bot@example.com", website="https://spam.example", remote="203.0.113.6"),
        "over the daily limit": sign_up(client, "busy@example.com", remote="203.0.113.7"),
    }
    bodies = {case: (r.status_code, r.get_data()) for case, r in replies.items()}
    assert len(set(bodies.values())) == 1, {case: (status, len(body)) for case, (status, body) in bodies.items()}
    status, body = bodies["new address"]
    assert status == 200 and SENT_TEXT.encode() in body
    assert b"@example.com" not in body

    assert len(sent_to(outbox, "new@example.com")) == 1
    assert len(sent_to(outbox, "left@example.com")) == 1
    for nobody in ("active@example.com", "bounced@example.com", "complained@example.com", "bot@example.com"):
        assert sent_to(outbox, nobody) == [], nobody
    assert len(sent_to(outbox, "busy@example.com")) == PER_ADDRESS_PER_DAY
    assert len(messages(outbox)) == PER_ADDRESS_PER_DAY + 2
    # A sign-up changes no subscriber, whatever their state.
    assert snapshot(store) == before
    assert store.get(email="new@example.com") is None
    assert store.get(email="bot@example.com") is None


def test_a_failed_send_gets_the_same_reply_and_is_tried_again_later(store, make_client, client, outbox, monkeypatch):
    class FailingSender:
        calls = 0

        def send_single(self, to_address: str, data: bytes) -> str:
            FailingSender.calls += 1
            raise AccountError("the provider refused the sender")

    failing = make_client(mailer=FailingSender())
    expected = sign_up(client, "someone@example.com")
    response = sign_up(failing, "unlucky@example.com")
    assert (response.status_code, response.get_data()) == (expected.status_code, expected.get_data())
    assert FailingSender.calls == 1
    # The request is kept: it is not tried again at once...
    work(failing)
    assert FailingSender.calls == 1
    # ...but after a while, and once the provider works again the reader gets their email.
    real_now = store.clock
    monkeypatch.setattr(store, "clock", lambda: real_now() + dt.timedelta(minutes=5))
    work(failing)
    assert FailingSender.calls == 2
    assert sent_to(outbox, "unlucky@example.com") == []
    monkeypatch.setattr(store, "clock", lambda: real_now() + dt.timedelta(minutes=10))
    work(client)
    assert len(sent_to(outbox, "unlucky@example.com")) == 1
    work(client)
    assert len(sent_to(outbox, "unlucky@example.com")) == 1
    assert count_signups(store, email="unlucky@example.com", since=real_now() - dt.timedelta(days=1)) == 1


# --------------------------------------------------------------------------
# readers already known


def test_unsubscribed_reader_is_reactivated_only_by_confirming(store, client, outbox):
    carol = with_status(store, "carol@example.com", UNSUBSCRIBED)
    sign_up(client, "carol@example.com")
    assert store.get(email="carol@example.com").status == UNSUBSCRIBED
    token = confirm_token_in(sent_to(outbox, "carol@example.com")[0])
    client.get(f"/confirm/{token}")
    assert store.get(email="carol@example.com").status == UNSUBSCRIBED

    response = client.post(f"/confirm/{token}")
    assert response.status_code == 200
    assert heading(response) == "You are subscribed"
    assert store.get(email="carol@example.com").status == ACTIVE
    events = store.events(carol.id)
    assert [(e.old_status, e.new_status, e.source) for e in events][-1] == (UNSUBSCRIBED, ACTIVE, "signup")
    assert len(events) == 3
    assert client.post(f"/confirm/{token}").status_code == 200
    assert len(store.events(carol.id)) == 3


@pytest.mark.parametrize("status, source", [(BOUNCED, "ses"), (UNSUBSCRIBED, "cli")])
def test_bounced_or_removed_reader_gets_no_email_and_an_old_link_is_refused(store, client, outbox, status, source):
    # The link was sent while the address could still sign up; since then it
    # bounced, or the operator removed it. Used now, it must be refused.
    dave = with_status(store, "dave@example.com", ACTIVE)
    token = Signer(SECRET).confirm_token("dave@example.com", None)
    assert store.change_status(dave.id, status, source=source, reason="since the link was sent")
    sign_up(client, "dave@example.com")
    assert messages(outbox) == []
    before = snapshot(store)
    response = client.post(f"/confirm/{token}")
    assert response.status_code == 200
    assert heading(response) == "Not subscribed"
    assert store.get(email="dave@example.com").status == status
    assert snapshot(store) == before


def test_complained_reader_is_never_reactivated_by_a_link_only_by_the_operator(store, database_url, client, outbox):
    erin = with_status(store, "erin@example.com", COMPLAINED)
    sign_up(client, "erin@example.com")
    assert messages(outbox) == []
    # Even a validly signed link (one sent before the complaint) is refused.
    token = Signer(SECRET).confirm_token("erin@example.com", "Erin")
    assert client.get(f"/confirm/{token}").status_code == 200
    before = snapshot(store)
    response = client.post(f"/confirm/{token}")
    assert response.status_code == 200
    assert heading(response) == "Not subscribed"
    assert "cannot be subscribed from the web" in doc(response).xpath("//*[@role='status']")[0].text_content()
    assert "You are subscribed" not in response.get_data(as_text=True)
    assert store.get(email="erin@example.com").status == COMPLAINED
    assert snapshot(store) == before

    result = CliRunner().invoke(cli, ["subscribers", "reactivate", "Erin@Example.com"],
                                env={"NEWSLETTER_DATABASE_URL": database_url}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Reactivated erin@example.com (was complained)"
    assert store.get(email="erin@example.com").status == ACTIVE
    last = store.events(erin.id)[-1]
    assert (last.old_status, last.new_status, last.source) == (COMPLAINED, ACTIVE, "cli")
    again = CliRunner().invoke(cli, ["subscribers", "reactivate", "erin@example.com"],
                               env={"NEWSLETTER_DATABASE_URL": database_url}, catch_exceptions=False)
    assert again.stdout.strip() == "erin@example.com is already active"
    assert len(store.events(erin.id)) == 3


def test_already_active_reader_confirming_changes_nothing(store, client):
    frank = with_status(store, "frank@example.com", ACTIVE)
    token = Signer(SECRET).confirm_token("frank@example.com", "Someone Else")
    assert heading(client.post(f"/confirm/{token}")) == "You are subscribed"
    assert store.get(email="frank@example.com") == frank
    assert len(store.events(frank.id)) == 1


# --------------------------------------------------------------------------
# limits


def test_fourth_sign_up_of_an_address_in_a_day_sends_nothing(store, client, outbox):
    replies = [sign_up(client, address, remote=f"192.0.2.{n}") for n, address in
               enumerate(["limit@example.com", "LIMIT@example.com", "limit@EXAMPLE.com", "limit@example.com",
                          "limit@example.com"])]
    assert {(r.status_code, r.get_data()) for r in replies} == {(replies[0].status_code, replies[0].get_data())}
    assert len(sent_to(outbox, "limit@example.com")) == PER_ADDRESS_PER_DAY == 3
    # Another address is not affected.
    sign_up(client, "other@example.com", remote="192.0.2.1")
    assert len(sent_to(outbox, "other@example.com")) == 1


def test_eleventh_sign_up_from_a_client_in_an_hour_sends_nothing(store, client, outbox):
    for n in range(PER_CLIENT_PER_HOUR + 1):
        assert sign_up(client, f"reader{n}@example.com", remote="198.51.100.7").status_code == 200
    assert PER_CLIENT_PER_HOUR == 10
    assert len(messages(outbox)) == 10
    assert sent_to(outbox, "reader10@example.com") == []
    # Another client is not affected, not even for the refused address.
    sign_up(client, "reader10@example.com", remote="198.51.100.8")
    assert len(sent_to(outbox, "reader10@example.com")) == 1
    # Nor is an IPv6 client.
    sign_up(client, "v6@example.com", remote="2001:db8::1")
    assert len(sent_to(outbox, "v6@example.com")) == 1


def test_limits_count_only_their_window(store, client, outbox, monkeypatch):
    real_now = store.clock
    # Sign-ups recorded 25 hours ago count for neither limit.
    monkeypatch.setattr(store, "clock", lambda: real_now() - dt.timedelta(hours=27))
    for _ in range(PER_ADDRESS_PER_DAY):
        sign_up(client, "window@example.com", remote="198.51.100.9")
    monkeypatch.setattr(store, "clock", lambda: real_now() - dt.timedelta(hours=25))
    for n in range(PER_CLIENT_PER_HOUR):
        sign_up(client, f"w{n}@example.com", remote="198.51.100.9")
    monkeypatch.setattr(store, "clock", real_now)
    assert count_signups(store, email="window@example.com", since=real_now() - dt.timedelta(days=2)) == 3
    assert count_signups(store, client="198.51.100.9", since=real_now() - dt.timedelta(days=2)) == 13
    count = len(messages(outbox))
    sign_up(client, "window@example.com", remote="198.51.100.9")
    assert len(messages(outbox)) == count + 1


def test_a_long_client_address_is_limited_too(store, client, outbox):
    # Whatever identifies the client (stored cut to 64 characters) is
    # counted the same way it is stored.
    remote = "2001:db8:" + "abcd:" * 14 + "1"
    assert len(remote) > 64
    for n in range(PER_CLIENT_PER_HOUR + 2):
        sign_up(client, f"long{n}@example.com", remote=remote)
    assert len(messages(outbox)) == PER_CLIENT_PER_HOUR


def test_behind_a_proxy_x_forwarded_for_decides_the_client(store, make_client, outbox):
    client = make_client(proxy_count=1)
    proxy = "10.0.0.2"
    for n in range(PER_CLIENT_PER_HOUR + 1):
        sign_up(client, f"p{n}@example.com", remote=proxy, **{"X-Forwarded-For": "203.0.113.50"})
    assert len(messages(outbox)) == PER_CLIENT_PER_HOUR
    assert sent_to(outbox, "p10@example.com") == []
    # Another reader behind the same proxy is not affected; with two values,
    # the one the proxy appended (the last) counts, not what the client sent.
    sign_up(client, "q1@example.com", remote=proxy, **{"X-Forwarded-For": "203.0.113.51"})
    sign_up(client, "q2@example.com", remote=proxy, **{"X-Forwarded-For": "203.0.113.50, 203.0.113.52"})
    assert len(sent_to(outbox, "q1@example.com")) == len(sent_to(outbox, "q2@example.com")) == 1
    sign_up(client, "q3@example.com", remote=proxy, **{"X-Forwarded-For": "198.51.100.1, 203.0.113.50"})
    assert sent_to(outbox, "q3@example.com") == []


def test_without_a_proxy_x_forwarded_for_is_ignored(store, client, outbox):
    for n in range(PER_CLIENT_PER_HOUR + 1):
        sign_up(client, f"s{n}@example.com", remote="198.51.100.20", **{"X-Forwarded-For": f"203.0.113.{n}"})
    assert len(messages(outbox)) == PER_CLIENT_PER_HOUR
    assert sent_to(outbox, "s10@example.com") == []


def serve(tmp_path, database_url: str, outbox: Path, **settings: str):
    """``newsletter serve`` on the test database (outbox sender) with
    ``settings``, as a context manager yielding its base URL."""
    port = free_port()
    env = clean_env(NEWSLETTER_DATABASE_URL=database_url, NEWSLETTER_SECRET_KEY=SECRET,
                    NEWSLETTER_OUTBOX_DIR=str(outbox), NEWSLETTER_BASE_URL=f"http://127.0.0.1:{port}", **settings)
    return newsletter_server(["serve", "--port", str(port)], port, tmp_path, env)


def sign_up_over_http(base: str, address: str, forwarded_for: str) -> int:
    """POST the form to a real server with ``forwarded_for`` as
    X-Forwarded-For; return the status."""
    body = urllib.parse.urlencode({"email": address}).encode()
    request = urllib.request.Request(f"{base}/subscribe", data=body, headers={"X-Forwarded-For": forwarded_for})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status


def signups_from(store, client: str) -> int:
    return count_signups(store, client=client, since=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))


def test_behind_one_proxy_every_client_has_its_own_limit_under_serve(store, database_url, outbox, tmp_path):
    # waitress drops X-Forwarded-For unless told to trust the proxy: then
    # every reader was the proxy, and the eleventh sign-up of the hour,
    # whoever sent it, was refused.
    readers = PER_CLIENT_PER_HOUR + 2
    with serve(tmp_path, database_url, outbox, NEWSLETTER_PROXY_COUNT="1") as base:
        for n in range(readers):
            assert sign_up_over_http(base, f"p{n}@example.com", f"203.0.113.{n + 1}") == 200
        assert [signups_from(store, f"203.0.113.{n + 1}") for n in range(readers)] == [1] * readers
        wait_until(lambda: len(messages(outbox)) == readers, "a confirmation email to every reader")
        # What a client writes before the address our proxy appended is not
        # taken: its limit holds whatever it forges.
        for n in range(PER_CLIENT_PER_HOUR + 1):
            sign_up_over_http(base, f"f{n}@example.com", f"198.51.100.{n + 1}, 203.0.113.200")
        assert signups_from(store, "203.0.113.200") == PER_CLIENT_PER_HOUR
        assert sum(signups_from(store, f"198.51.100.{n + 1}") for n in range(PER_CLIENT_PER_HOUR + 1)) == 0
    assert count_signups(store, email=f"f{PER_CLIENT_PER_HOUR}@example.com",
                         since=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)) == 0


def test_behind_two_proxies_the_client_is_taken_once_under_serve(store, database_url, outbox, tmp_path):
    # waitress and the app's own ProxyFix both read the header: the client
    # is the entry the outer proxy appended, not one hop further either way.
    with serve(tmp_path, database_url, outbox, NEWSLETTER_PROXY_COUNT="2") as base:
        sign_up_over_http(base, "t1@example.com", "198.51.100.66, 203.0.113.7, 10.0.0.1")
    assert [signups_from(store, client) for client in ("198.51.100.66", "203.0.113.7", "10.0.0.1")] == [0, 1, 0]


def test_without_a_proxy_a_forged_x_forwarded_for_is_ignored_under_serve(store, database_url, outbox, tmp_path):
    with serve(tmp_path, database_url, outbox) as base:
        for n in range(PER_CLIENT_PER_HOUR + 1):
            assert sign_up_over_http(base, f"s{n}@example.com", f"203.0.113.{n + 1}") == 200
    assert signups_from(store, "127.0.0.1") == PER_CLIENT_PER_HOUR
    assert sum(signups_from(store, f"203.0.113.{n + 1}") for n in range(PER_CLIENT_PER_HOUR + 1)) == 0


# --------------------------------------------------------------------------
# bad confirmation links


def bad_confirm_tokens(store) -> dict[str, str]:
    """Tokens that must all be refused, by name (for grace@example.com, who unsubscribed)."""
    good = Signer(SECRET).confirm_token("grace@example.com", "Grace")
    payload, stamp, signature = good.split(".")
    forged = base64_encode(json.dumps({"e": "mallory@example.com", "n": ""}, separators=(",", ":"))).decode()
    grace = store.get(email="grace@example.com")
    return {
        "expired (8 days old)": aged_token("grace@example.com", 8 * DAY),
        "just expired": aged_token("grace@example.com", 7 * DAY + 60),
        "from the future": aged_token("grace@example.com", -3600),
        "payload swapped": f"{forged}.{stamp}.{signature}",
        "flipped in payload": f"{_flip(payload, len(payload) // 2)}.{stamp}.{signature}",
        "flipped in timestamp": f"{payload}.{_flip(stamp, 1)}.{signature}",
        "flipped in signature": f"{payload}.{stamp}.{_flip(signature, len(signature) // 2)}",
        "last character dropped": good[:-1],
        "cut in half": good[: len(good) // 2],
        "no timestamp": f"{payload}.{signature}",
        "character appended": good + "x",
        "unknown key": Signer(OTHER_SECRET).confirm_token("grace@example.com", None),
        "unsubscribe token": Signer(SECRET).unsubscribe_token(grace.ref),
        "unsubscribe salt": URLSafeTimedSerializer(SECRET, salt=UNSUBSCRIBE_SALT).dumps({"e": "grace@example.com"}),
        "default salt": URLSafeTimedSerializer(SECRET).dumps({"e": "grace@example.com", "n": ""}),
        "string payload": URLSafeTimedSerializer(SECRET, salt=CONFIRM_SALT).dumps("grace@example.com"),
        "no address": URLSafeTimedSerializer(SECRET, salt=CONFIRM_SALT).dumps({"n": "Grace"}),
        "markup": "'\"><img src=x onerror=alert(1)>",
        "the address": "grace@example.com",
    }


def test_bad_confirmation_links_are_refused_and_change_nothing(store, client, outbox):
    grace = with_status(store, "grace@example.com", UNSUBSCRIBED)
    before = snapshot(store)
    for name, token in bad_confirm_tokens(store).items():
        for method in (client.get, client.post):
            response = method(f"/confirm/{token}")
            assert response.status_code == 400, (name, method)
            assert heading(response) == "Invalid link", name
            assert "not valid or has expired" in doc(response).xpath("//*[@role='alert']")[0].text_content()
            assert b"grace" not in response.get_data().lower() and b"mallory" not in response.get_data()
    assert snapshot(store) == before
    assert store.get(email="grace@example.com").status == UNSUBSCRIBED
    assert store.get(email="mallory@example.com") is None
    assert messages(outbox) == []
    # ... and a confirmation token is no unsubscribe token either.
    hank = with_status(store, "hank@example.com", ACTIVE)
    for token in (Signer(SECRET).confirm_token("hank@example.com", None),
                  URLSafeSerializer(SECRET, salt=CONFIRM_SALT).dumps(hank.ref)):
        assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    assert store.get(email="hank@example.com").status == ACTIVE
    assert grace.status == UNSUBSCRIBED


def test_a_six_day_old_link_and_one_signed_with_a_previous_key_still_work(store, make_client):
    client = make_client(secret_key_fallbacks=(OLD_SECRET,))
    assert client.post(f"/confirm/{aged_token('ivy@example.com', 6 * DAY, name='Ivy')}").status_code == 200
    assert store.get(email="ivy@example.com").name == "Ivy"
    assert client.post(f"/confirm/{aged_token('jo@example.com', 60, secret=OLD_SECRET)}").status_code == 200
    assert store.get(email="jo@example.com").status == ACTIVE


# --------------------------------------------------------------------------
# invalid input


@pytest.mark.parametrize("address", ["", "   ", "not-an-address", "a@b", "two@@example.com", "x@example..com",
                                     "<script>alert(1)</script>@example.com"])
def test_invalid_email_shows_the_form_again_with_an_error(store, client, outbox, address):
    response = sign_up(client, address, name="Kim")
    assert response.status_code == 400
    assert heading(response) == "Subscribe"
    page = doc(response)
    assert page.xpath("//*[@role='alert']")[0].text_content() == "Please enter a valid email address."
    # What was typed is kept (escaped), to be corrected.
    assert page.get_element_by_id("email").get("value") == address
    assert page.get_element_by_id("name").get("value") == "Kim"
    assert "<script>" not in response.get_data(as_text=True)
    assert messages(outbox) == []
    assert snapshot(store) == {}


def test_non_ascii_local_part_gets_the_form_again_not_a_broken_email(store, client, outbox):
    # No sender can write a non-ASCII local part (no SMTPUTF8): it would get a
    # confirmation with a malformed To header and then never receive an issue.
    response = sign_up(client, "jöhn@example.com")
    assert response.status_code == 400
    assert doc(response).xpath("//*[@role='alert']")
    assert messages(outbox) == []


def test_internationalized_domain_is_mailed_in_its_ascii_form(store, client, outbox):
    response = sign_up(client, "john@exämple.com")
    assert response.status_code == 200
    [sent] = messages(outbox)
    assert sent["To"] == "john@xn--exmple-cua.com"
    assert sent.as_bytes().isascii()
