"""Real editions sent through aws-ses-v2-local, an SES v2 emulator written
by others (tests/ses_emulator.py): it renders our stored template with
handlebars.js as SES documents it (no HTML escaping) and, in strict mode,
fails an entry whose data lacks a plain ``{{x}}`` the template uses.

Each test sends one day with ``newsletter send --sender ses`` (bulk mode,
then raw mode) to readers of every shape of "Picked for you" (picks for
each kind of reason, no match, what matched held back as picked two days
before, the invitation, picks turned off, a paper muted on the top
cards), and the
same day to the same readers with the outbox sender: every reader's
subject, text and HTML from the emulator must be the outbox's. The days are
a small ordinary one and a hostile one (markup, template syntax, quotes,
non-ASCII and a link with a ``"`` in paper text, markup in an interest).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import email
import email.policy
import email.utils
import html
import re
import sqlite3
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_picks_email import assert_controls_signed_for
from test_send_ses import DATE, DAY, FROM, aws  # noqa: F401 (aws: dummy credentials, no AWS configuration)

from conftest import FIXTURES, SECRET, outbox_file
from newsletter.papers.batches import load_batch
from newsletter.cli import cli
from newsletter.core.config import Settings
from newsletter.core.errors import TemplateRejected
from newsletter.core.models import (REASON_KINDS, DeliveryStatus, Muting, Pick, Profile, Reason, SubscriberRow,
                                    paper_key, paper_path)
from newsletter.issue.render import render_for_readers
from newsletter.readers.tokens import Signer
from newsletter.sending.personalize import PreparedMessage
from newsletter.sending.senders import ses as ses_sender
from newsletter.store import Ledger, open_store
from newsletter.store.ledger import LedgerRow
from newsletter.store.picks import write_picks

BATCHES = {"example": FIXTURES / "picks-day.json", "hostile": FIXTURES / "hostile-day.json"}
TOP_CARDS = {"example": "8", "hostile": "2"}
SUBJECTS = {"example": "", "hostile": "{pick} · {{{{sic}}}} · {date}"}
# An interest as anyone may type it on the public preferences page: the
# hostile day's readers include one who did.
MARKUP_INTEREST = "<em><img src=x onerror=alert(3)> unlearning</em>"


def add_readers(database_url: str, batch_path: Path, markup: bool) -> dict[str, int]:
    """Add one reader of each shape of picks to a new database (and, with
    ``markup``, one whose interest is :data:`MARKUP_INTEREST`); return
    address -> subscriber id. Plain addresses, no names: the emulator
    fails a bulk entry to ``Name <addr>`` (its own check; SES takes it)."""
    batch = load_batch(batch_path)
    keys = [paper_key(p) for p in batch.papers]
    # The first author of the paper the readers of phrases also get, as
    # this day spells the name (the hostile day's has markup and quotes).
    followed = batch.papers[keys.index("2503.00004")].authors[0]
    profiles = {
        "phrase": dict(interests=("concept erasure", "reinforcement learning from human feedback")),
        "author": dict(authors=(followed,)),
        "seed": dict(seeds=("2503.00001",)),
        "category": dict(categories=("cs.CL",)),
        "near": dict(interests=("nearest neighbour search",)),
        "nomatch": dict(interests=("marine biology of coral reefs",)),
        "held": dict(interests=("concept erasure",)),
        "invite": None,
        "off": dict(interests=("concept erasure",), picks=0),
        "liked": None,
        # Muted on their top cards too: their copy leaves one card out.
        "muted": dict(interests=("graph neural networks",), muted=("video generation",), muting=Muting.TOP),
    }
    if markup:
        profiles["markup"] = dict(interests=(MARKUP_INTEREST,))
    store = open_store(database_url)
    try:
        store.import_subscribers(SubscriberRow(n, f"{who}@example.org", None) for n, who in enumerate(profiles))
        ids = {f"{who}@example.org": store.get(email=f"{who}@example.org").id for who in profiles}
        for who, fields in profiles.items():
            if fields is not None:
                store.save_profile(Profile(ids[f"{who}@example.org"], **fields))
        store.record_vote(ids["liked@example.org"], "2503.00006", 1, "2025-03-10")
        # The ranking never gives a category as the reason on its own (the
        # category's boost is below the threshold), but a pick stored by a
        # run that stopped is sent as stored: that is how a category reason
        # reaches the email here.
        with store.engine.begin() as conn:
            write_picks(conn, DATE, {ids["category@example.org"]: [
                Pick(keys.index("2503.00006"), "2503.00006", 0.2, Reason("category", "cs.CL"))]})
            # The same for "near" (a phrase the paper has too few words of),
            # with the words it shows, and an interest matched with a second one.
            write_picks(conn, DATE, {ids["near@example.org"]: [
                Pick(keys.index("2503.00002"), "2503.00002", 0.2,
                     Reason("near", "nearest neighbour search", words=("search", "graph <b>index</b>"))),
                Pick(keys.index("2503.00003"), "2503.00003", 0.2,
                     Reason("interest", "nearest neighbour search", "retrieval & \"ranking\"", ("k-NN", "HNSW")))]})
        # Every paper of the day was picked for this reader two days before
        # (and sent): what matches them today is held back.
        held, earlier = ids["held@example.org"], Ledger(store, DAY - dt.timedelta(days=2))
        earlier.mark_pending([held], {held: [Pick(i, key, 0.5, Reason("interest", "concept erasure"))
                                             for i, key in enumerate(keys)]})
        earlier.record([LedgerRow(held, DeliveryStatus.SENT, "earlier-message", None)])
    finally:
        store.close()
    return ids


def copy_database(source: Path, target: Path) -> None:
    """Copy a SQLite database whole (SQLite's own backup)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def send(database_url: str, batch: Path, *args: str, **env: str):
    """Run ``newsletter send BATCH --date DATE ARGS``; fail on a non-zero exit."""
    result = CliRunner().invoke(
        cli, ["send", str(batch), "--date", DATE, *args], catch_exceptions=False,
        env={"NEWSLETTER_DATABASE_URL": database_url, "NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_FROM": FROM,
             **env},
    )
    assert result.exit_code == 0, result.output
    return result


def outbox_message(outbox: Path, subscriber_id: int) -> email.message.EmailMessage:
    return email.message_from_bytes(outbox_file(outbox / DATE, subscriber_id).read_bytes(), policy=email.policy.default)


def lines(text: str) -> str:
    """``text`` with CRLF line ends as LF and no trailing line ends."""
    return text.replace("\r\n", "\n").rstrip("\n")


def shown(html: str) -> str:
    """``html`` as compared: the bulk template writes every ``{{`` of the
    issue as ``{&#123;`` (shown the same) so the engine never reads it."""
    return lines(html).replace("&#123;", "{")


def difference(got, want) -> str:
    """Where ``got`` first differs from ``want``, with a little of each."""
    if not (isinstance(got, str) and isinstance(want, str)):
        return f"is {got!r}, not {want!r}"
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return f"differs at {at}: {got[max(0, at - 30):at + 90]!r}, not {want[max(0, at - 30):at + 90]!r}"


class _Markup(HTMLParser):
    """The elements a document has: (tag, attribute names)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, list[str]]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, [name for name, _value in attrs]))


def live_markup(html: str) -> list[str]:
    """The script elements and event-handler attributes in ``html``: the
    email has none, so any is paper or reader text that became markup."""
    parser = _Markup()
    parser.feed(html)
    parser.close()
    found = [f"<{tag}>" for tag, _ in parser.elements if tag == "script"]
    found += [f"<{tag} {name}>" for tag, names in parser.elements for name in names if name.startswith("on")]
    return found


@pytest.mark.parametrize("mode", ["bulk", "raw"])
@pytest.mark.parametrize("day", list(BATCHES))
def test_each_reader_gets_from_the_emulator_what_the_outbox_writes(ses_emulator, tmp_path, day, mode):
    batch = BATCHES[day]
    ses_db, outbox_db = tmp_path / "ses" / "newsletter.db", tmp_path / "outbox-db" / "newsletter.db"
    ids = add_readers(f"sqlite:///{ses_db}", batch, markup=day == "hostile")
    # The same readers, with the same references (so the same links and
    # tokens), for the outbox run.
    copy_database(ses_db, outbox_db)

    # The hostile day's copies have two top cards (papers past the top
    # candidates are in the list, where a reader's picks leave it) and a
    # subject naming each reader's first pick, braces and all.
    top = {"NEWSLETTER_TOP_CARDS": TOP_CARDS[day], "NEWSLETTER_SUBJECT": SUBJECTS[day]}
    sent = send(f"sqlite:///{ses_db}", batch, "--sender", "ses", "--ses-mode", mode,
                NEWSLETTER_SES_ENDPOINT_URL=ses_emulator.url, AWS_REGION="us-east-1", **top)
    assert f"sent {len(ids)}, failed 0, unknown 0" in sent.stdout
    outbox = tmp_path / "outbox"
    send(f"sqlite:///{outbox_db}", batch, "--sender", "outbox", NEWSLETTER_OUTBOX_DIR=str(outbox), **top)

    stored = ses_emulator.store()
    assert stored["templates"] == {}  # bulk: deleted once every reader was sent it; raw: none made
    messages = stored["emails"]
    # Strict rendering fails an entry whose data lacks a plain {{x}}: then
    # a reader would be missing here.
    assert len(messages) == len(ids)
    assert collections.Counter(a for m in messages for a in m["destination"]["to"]) == collections.Counter(list(ids))
    store = open_store(f"sqlite:///{ses_db}")
    try:
        ledger = {row[0]: row[2] for row in Ledger(store, DAY).rows("sent")}
        picks = store.picks_of(DATE, ids.values())
        refs = {address: store.get(email=address).ref for address in ids}
    finally:
        store.close()
    assert ledger == {ids[m["destination"]["to"][0]]: m["messageId"] for m in messages}
    # The readers are of every shape: picks of each kind of reason, and none.
    assert {pick.reason.kind for chosen in picks.values() for pick in chosen} == set(REASON_KINDS)
    assert {address for address, i in ids.items() if i not in picks} == {
        "nomatch@example.org", "held@example.org", "invite@example.org", "off@example.org"}
    if day == "hostile":
        # The link with a quote is picked, and the interest with markup is the reason.
        assert any(pick.key.startswith("title:") for chosen in picks.values() for pick in chosen)
        assert {pick.reason.subject for pick in picks[ids["markup@example.org"]]} == {MARKUP_INTEREST}
    outboxed = {i: outbox_message(outbox, i) for i in ids.values()}
    texts = {address: outboxed[i].get_body(("plain",)).get_content() for address, i in ids.items()}
    assert "PICKED FOR YOU" in texts["phrase@example.org"]
    assert "No paper today matched" in texts["nomatch@example.org"]
    assert re.search(r"Nothing new for you today: \d+ papers you would like", texts["held@example.org"])
    assert "No paper today matched" not in texts["held@example.org"]
    # The preview line is the reader's own (their first pick), compared below with the HTML.
    assert "Picked for you: " in outboxed[ids["phrase@example.org"]].get_body(("html",)).get_content()
    assert "Picked for you: " not in outboxed[ids["held@example.org"]].get_body(("html",)).get_content()
    assert "TELL US WHAT YOU LIKE" in texts["invite@example.org"]
    assert not any(words in texts["off@example.org"] for words in ("PICKED FOR YOU", "Tell us", "No paper today"))
    # The paper on video generation has no top card in the muted reader's
    # copy (it is among the titles after them), and does in the others'.
    video = next(p.title for p in load_batch(batch).papers if "Video Generation" in p.title)
    top = {address: text.split("TOP OF THE DAY", 1)[1].split("MORE PAPERS TODAY", 1)[0] for address, text in texts.items()}
    assert video[:30] not in top["muted@example.org"] and video[:30] in top["phrase@example.org"]
    assert video[:30] in texts["muted@example.org"]
    # A reader's picks are not among the titles after the top cards (the
    # list numbers each paper by its place in the day).
    for address, i in ids.items():
        rest = texts[address].partition("MORE PAPERS TODAY")[2]
        listed = {int(n) - 1 for n in re.findall(r"^(\d+)\. ", rest, flags=re.MULTILINE)}
        assert not listed & {pick.position for pick in picks.get(i, ())}, address
    if day == "hostile":  # one pick is past the top candidates (2 cards + 5 picks)
        assert max(pick.position for pick in picks[ids["phrase@example.org"]]) >= 7
        titles = [p.title for p in load_batch(batch).papers]
        first = titles[picks[ids["phrase@example.org"]][0].position]
        assert str(outboxed[ids["phrase@example.org"]]["Subject"]).startswith(f"{first[:40]}")
        assert str(outboxed[ids["invite@example.org"]]["Subject"]).startswith(titles[0][:40])
        assert " · {{sic}} · " in str(outboxed[ids["invite@example.org"]]["Subject"])

    if day == "hostile":
        # A pick of a paper with no arXiv id and no page of its own links
        # its page in the archive (its key percent-encoded), in both parts.
        [bare] = [p for p in load_batch(batch).papers if p.arxiv_id is None and p.url is None]
        page = "http://127.0.0.1:8000" + paper_path(paper_key(bare))
        picked_by = [i for i, chosen in picks.items() if any(pick.key == paper_key(bare) for pick in chosen)]
        assert picked_by
        for message in messages:
            if ids[message["destination"]["to"][0]] in picked_by:
                assert f"   {page}\n" in lines(message["body"]["text"])
                assert f'<a class="t" href="{html.escape(page)}"' in message["body"]["html"]

    wrong = []
    for message in messages:
        (to,) = message["destination"]["to"]
        expected = outboxed[ids[to]]
        got = {"From": email.utils.parseaddr(message["from"]), "subject": message["subject"],
               "text": lines(message["body"]["text"]), "HTML": shown(message["body"]["html"])}
        want = {"From": email.utils.parseaddr(expected["From"]), "subject": str(expected["Subject"]),
                "text": lines(texts[to]), "HTML": shown(expected.get_body(("html",)).get_content())}
        if mode == "bulk":
            headers = {h["name"]: h["value"] for h in message["headers"]}
            for name in ("List-Unsubscribe", "List-Unsubscribe-Post", "X-Newsletter-Issue"):
                got[name], want[name] = headers.get(name), expected[name]
        wrong += [f"{to}: {part} {difference(got[part], want[part])}" for part in want if got[part] != want[part]]
        wrong += [f"{to}: the HTML has {found}" for found in live_markup(message["body"]["html"])]
        # The footer's controls, signed for this reader (the outbox's are the same).
        assert_controls_signed_for(message["body"]["html"], message["body"]["text"], refs[to])
    assert not wrong, "\n".join(wrong)


def test_an_edition_checked_ahead_renders_a_copy_of_its_template_and_deletes_it(ses_emulator, monkeypatch):
    """The check made while an earlier edition sends (``check_ahead``),
    against an SES implementation not ours: the copy of the template is
    stored, rendered for every shape of reader data and deleted; ``open``
    then stores the edition's own template, and a copy SES cannot render
    is refused when the edition opens, its own template never stored."""
    settings = Settings(secret_key=SECRET, sender="ses", ses_endpoint_url=ses_emulator.url, from_address=FROM,
                        aws_region="us-east-1")
    issue = render_for_readers(load_batch(BATCHES["example"], date=DAY), settings, Signer(SECRET))
    checked = ses_sender.SesSender(settings)
    checked.check_ahead(issue, threading.Event())
    assert ses_emulator.store()["templates"] == {}
    checked.open(issue, PreparedMessage(issue, FROM))
    assert set(ses_emulator.store()["templates"]) == {f"newsletter-{DATE}"}
    ses_emulator.clear()

    complete = ses_sender.template_data

    def without_unsubscribe(recipient, issue):  # a bug that leaves a plain {{x}} out
        data = complete(recipient, issue)
        del data["unsubscribe_url"]
        return data

    monkeypatch.setattr(ses_sender, "template_data", without_unsubscribe)
    refused = ses_sender.SesSender(settings)
    refused.check_ahead(issue, threading.Event())
    assert ses_emulator.store()["templates"] == {}
    with pytest.raises(TemplateRejected, match=f"newsletter-{DATE} "):
        refused.open(issue, PreparedMessage(issue, FROM))
    assert ses_emulator.store()["templates"] == {}
