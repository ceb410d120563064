"""Personal picks in the email: every sender carries exactly the same picks.

The SES bulk mode stores one Handlebars template per issue and sends each
reader's picks as template data; the outbox, raw and SMTP senders splice the
same picks into the message in Python. Rendered with a real Handlebars
implementation (pybars3, a port of Handlebars.js), the template gives each
reader exactly the outbox's message, for hostile paper text and reasons too.
And the email with the most picks any reader can get stays under Gmail's clip.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json

import pybars
import pytest

from conftest import EXAMPLE, SECRET
from newsletter.batches import load_batch
from newsletter.cli.common import render_for_readers
from newsletter.config import Settings
from newsletter.models import MAX_PICKS, PICK_SUBJECT_CHARS, REASON_KINDS, Batch, Paper, Pick, Reason
from newsletter.personalize import PreparedMessage, Recipient
from newsletter.render import HTML_LIMIT_BYTES
from newsletter.sending.senders.ses import LITERALS, template_content, template_data
from newsletter.text import quoted_printable
from newsletter.tokens import Signer

DAY = dt.date(2025, 3, 11)
FROM = "Daily Papers <newsletter@example.com>"
HOSTILE_TITLES = [
    "{{#each picks}}{{t}}{{/each}} and {{{f}}} in a title",
    "<script>alert('x')</script> & \"quotes\" `ticks` = equals",
    "Braces { and } and \\{{ escaped }} and {{!comment}}",
    "漢字とかなで書かれた長いタイトル" * 4,
    "A title " + "very " * 60 + "long",
    "Plain title",
]
HOSTILE_SUBJECTS = ["<b>bold</b> & {{x}}", "{{{p}}} phrase", "Ada \"Byron\" Lovelace", "x" * 300,
                    "cs.CV {{/if}}"]


@pytest.fixture(scope="module")
def issue():
    papers = tuple(
        Paper(title, f"Abstract {n} with {{{{ braces }}}} & <tags>.", authors=("A. B.",),
              arxiv_id=f"2503.{n:05d}", url=f"https://arxiv.org/abs/2503.{n:05d}?q=<x>&y=\"z\"")
        for n, title in enumerate(HOSTILE_TITLES, start=1)
    )
    return render_for_readers(Batch(DAY, papers, source="test"), Settings(secret_key=SECRET), Signer(SECRET))


def reader(issue, number: int, state: str, picks=()) -> Recipient:
    signer = Signer(SECRET)
    ref = f"reader-ref-{number:011d}"
    base = "http://127.0.0.1:8000"
    return Recipient(number, f"reader{number}@example.org", None, signer.unsubscribe_url(base, ref),
                     signer.preferences_url(base, ref), signer.feedback_reader_part(ref, issue.edition), state,
                     tuple(picks))


def readers(issue) -> list[Recipient]:
    picks_of_every_kind = [Pick(i, f"2503.{i + 1:05d}", 0.5, Reason(kind, HOSTILE_SUBJECTS[i]))
                           for i, kind in enumerate(REASON_KINDS)]
    return [
        reader(issue, 1, "picks", picks_of_every_kind),
        reader(issue, 2, "picks", [Pick(5, "2503.00006", 0.3, Reason("interest", "plain"))]),
        reader(issue, 3, "none"),
        reader(issue, 4, "invite"),
        reader(issue, 5, "off"),
    ]


def outbox_parts(issue, recipient) -> tuple[str, str, str]:
    """(subject, text, HTML) of the message every sender but SES bulk sends."""
    message = email.message_from_bytes(PreparedMessage(issue, FROM).render(recipient), policy=email.policy.default)
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    return str(message["Subject"]), text.replace("\r\n", "\n"), html.replace("\r\n", "\n")


def ses_parts(issue, recipient) -> tuple[str, str, str]:
    """(subject, text, HTML) as SES renders the stored template with the
    entry's data over the default data (which is LITERALS)."""
    content = template_content(issue)
    data = {**LITERALS, **json.loads(json.dumps(template_data(recipient, issue)))}  # through JSON, as sent
    compiler = pybars.Compiler()
    return tuple(str(compiler.compile(content[part])(data)) for part in ("Subject", "Text", "Html"))


def test_ses_renders_each_reader_exactly_as_the_outbox(issue):
    for recipient in readers(issue):
        subject, text, html = outbox_parts(issue, recipient)
        ses_subject, ses_text, ses_html = ses_parts(issue, recipient)
        assert ses_subject == subject
        assert ses_text.rstrip("\n") == text.rstrip("\n"), recipient.picks_state
        assert ses_html.rstrip("\n") == html.rstrip("\n"), recipient.picks_state


def test_what_each_reader_sees_of_their_picks(issue):
    every_kind, one, none, invite, off = readers(issue)
    _, text, html = outbox_parts(issue, every_kind)
    assert "Picked for you" in html and "PICKED FOR YOU" in text
    for kind in REASON_KINDS:
        assert {"interest": "matches *", "author": ", whom you follow", "seed": ", which you like)",
                "liked": ", which you liked)", "category": "(in "}[kind] in text
    # Hostile text is text: escaped in HTML, never template syntax.
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "{{#each picks}}{{t}}{{/each}}" in text  # as the title said, not run
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    long_subject = "x" * (PICK_SUBJECT_CHARS - 1) + "…"  # cut to the limit
    assert long_subject in html and "x" * PICK_SUBJECT_CHARS not in html + text
    # Each pick votes with the reader's own token part.
    assert text.count(f"{every_kind.feedback}/up") >= len(REASON_KINDS)
    assert every_kind.preferences_url in text
    for line in text.splitlines():
        assert len(line) <= 78 or "://" in line, line
    assert "No paper today matched" in outbox_parts(issue, none)[1]
    assert "Tell us what you read" in outbox_parts(issue, invite)[1]
    off_text = outbox_parts(issue, off)[1]
    assert "PICKED FOR YOU" not in off_text and "Tell us" not in off_text and "No paper today" not in off_text
    assert "PICKED FOR YOU" in outbox_parts(issue, one)[1]


@pytest.mark.parametrize("papers", [85, 500])
def test_the_most_picks_any_reader_can_get_stay_under_the_clip(papers):
    if papers == 85:
        batch = load_batch(EXAMPLE, date=DAY)
    else:
        batch = Batch(DAY, tuple(
            Paper(f"Paper {n}: " + "a long title about models " * 6, "An abstract. " * 20, authors=("A. B.",) * 5,
                  arxiv_id=f"2503.{n:05d}", url=f"https://arxiv.org/abs/2503.{n:05d}", upvotes=500 - n)
            for n in range(500)), source="synthetic")
    issue = render_for_readers(batch, Settings(secret_key=SECRET), Signer(SECRET))
    longest = sorted(range(len(batch.papers)), key=lambda i: -len(batch.papers[i].title))[:MAX_PICKS]
    picks = [Pick(i, "key", 0.9, Reason("liked", "t" * 500)) for i in longest]
    most = reader(issue, 99, "picks", picks)
    message = PreparedMessage(issue, FROM).render(most)
    html_part = message.split(b"Content-Type: text/html", 1)[1].split(b"\r\n\r\n", 1)[1]
    assert len(html_part) <= HTML_LIMIT_BYTES, len(html_part)
    decoded = email.message_from_bytes(message, policy=email.policy.default).get_body(("html",)).get_content()
    assert decoded.count("More like this") >= MAX_PICKS  # the picks are there
    assert len(quoted_printable(decoded)) <= HTML_LIMIT_BYTES
