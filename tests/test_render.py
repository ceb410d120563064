"""Rendering a batch into an issue: the email's structure, its size bound,
untrusted paper text, the plain-text part, offline rendering and template
overrides. Assertions are about structure, never about exact bytes."""

from __future__ import annotations

import datetime as dt
import html
import json
import random
import re
import shutil
import socket

import lxml.html
import pytest

from conftest import EXAMPLE
from newsletter.papers.batches import load_batch, parse_batch
from newsletter.core.config import Settings
from newsletter.core.errors import BatchError, RenderError
from newsletter.core.models import UNSUBSCRIBE_URL_MARK, Batch, Paper, paper_key, paper_path
from newsletter.issue.render import (
    MIN_CARDS,
    PACKAGE_TEMPLATES,
    TEXT_TEMPLATE,
    card_teaser,
    paper_url,
    render_issue,
    short_authors,
    teaser,
    wrap_text,
)

DAY = dt.date(2025, 3, 11)
LIMIT = 100_000
HTML_TAG = re.compile(r"<[a-z/]", re.IGNORECASE)
ENTITIES = ("&amp;", "&#", "&quot;", "&lt;", "&gt;", "&nbsp;")


# --------------------------------------------------------------------------
# helpers


def parse(markup: str):
    """Parse an HTML document with lxml (what premailer uses)."""
    return lxml.html.document_fromstring(markup)


def hrefs(markup: str) -> list[str]:
    return [a.get("href") for a in parse(markup).iter("a")]


def is_http(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def text_of(element) -> str:
    return " ".join(element.text_content().split())


def flat(text: str) -> str:
    """``text`` with every run of whitespace made one space: a wrapped title
    reads as one line again."""
    return " ".join(text.split())


def render_example() -> tuple[Batch, object]:
    batch = load_batch(EXAMPLE, date=DAY)
    return batch, render_issue(batch, Settings())


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The example day rendered once, from an empty folder like the tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("example"))
        return render_example()


_WORDS = (
    "sparse attention diffusion transformer scaling retrieval agents benchmark "
    "multimodal reasoning efficient robust alignment language vision video graph "
    "tokenizer distillation preference optimization reward latent mixture experts "
    "contrastive self-supervised world model embodied planning long-context "
    "quantization pruning speculative decoding"
).split()
_NAMES = ("Zhang", "Müller", "García", "Nakamura", "O'Neil", "Kowalski", "Ivanova", "Dubois")


def synthetic_batch(count: int, seed: int = 7) -> Batch:
    """A realistic day of ``count`` papers, normalized as papers.py would."""
    rnd = random.Random(seed)
    papers = []
    for i in range(count):
        words = [rnd.choice(_WORDS).capitalize() for _ in range(20)]
        head = " ".join(words[:4])
        title = f"{head} & {rnd.choice(_WORDS)}: " + " ".join(words[4:])
        title = f"P{i:04d} " + title[:85].rsplit(" ", 1)[0]
        sentences = []
        while sum(len(s) + 1 for s in sentences) < 1500:
            body = " ".join(rnd.choice(_WORDS) for _ in range(rnd.randint(12, 25)))
            sentences.append(body.capitalize() + ".")
        abstract = " ".join(sentences)[:1500].rsplit(" ", 1)[0] + "."
        authors = tuple(
            f"{rnd.choice('ABCDEFGHJKLM')}. {rnd.choice(_NAMES)}" for _ in range(rnd.randint(1, 14))
        )
        arxiv_id = f"2503.{i + 10000:05d}"
        papers.append(
            Paper(
                title=title,
                abstract=abstract,
                authors=authors,
                arxiv_id=arxiv_id,
                url=f"https://arxiv.org/abs/{arxiv_id}",
                upvotes=count * 3 - i,
                code_url=f"https://github.com/lab-{i}/project-{i}" if i % 2 == 0 else None,
            )
        )
    return Batch(date=DAY, papers=tuple(papers), source="synthetic")


def canonical(papers: list[dict], date: str = "2025-03-11") -> bytes:
    return json.dumps({"format": "newsletter-batch/1", "date": date, "papers": papers}).encode()


def long_url(length: int = 120) -> str:
    base = "https://newsletter.example.org/unsubscribe?list=daily&token="
    return base + "x" * (length - len(base))


# --------------------------------------------------------------------------
# the example day


def test_example_subject_and_counts(example):
    batch, issue = example
    assert len(batch.papers) == 85
    assert issue.subject == "Daily Papers · Tue 11 Mar 2025 · 85 papers"
    assert issue.paper_count == 85
    # The day's top 8 as cards, every other paper as a title.
    assert (issue.card_count, issue.listed_count, issue.more_count) == (8, 77, 0)


def test_example_every_title_in_both_parts(example):
    batch, issue = example
    for paper in batch.papers:
        # Text nodes escape &, < and >; quotes need no escaping there, and the
        # inliner writes them raw, so compare with quote=False.
        assert html.escape(paper.title, quote=False) in issue.html, paper.title
        assert paper.title in flat(issue.text), paper.title
    card_titles = [text_of(a) for a in parse(issue.html).find_class("t")]
    assert card_titles == [p.title for p in batch.papers[:8]]
    listed = [text_of(li.find("a")) for li in parse(issue.html).iter("li")]
    assert listed == [p.title for p in batch.papers[8:]]


def test_example_links_are_http_or_the_unsubscribe_mark(example):
    _, issue = example
    links = hrefs(issue.html)
    assert links, "the email has no links"
    for href in links:
        assert href == UNSUBSCRIBE_URL_MARK or is_http(href), href
    assert links.count(UNSUBSCRIBE_URL_MARK) == 1
    assert UNSUBSCRIBE_URL_MARK in issue.text


def test_example_personalized_replaces_the_mark(example):
    _, issue = example
    url = "https://example.org/u/abc"
    personal_html, personal_text = issue.personalized(url)
    for part in (personal_html, personal_text):
        assert UNSUBSCRIBE_URL_MARK not in part
        assert url in part
    assert url in hrefs(personal_html)
    # The shared issue is left untouched for the next reader.
    assert UNSUBSCRIBE_URL_MARK in issue.html


def test_example_document_head(example):
    _, issue = example
    assert issue.html.lstrip()[:15].lower() == "<!doctype html>"
    doc = parse(issue.html)
    metas = {(m.get("name") or "").lower(): m.get("content") or "" for m in doc.iter("meta")}
    assert "width=device-width" in metas.get("viewport", "")
    assert "dark" in metas.get("color-scheme", "")
    styles = " ".join(s.text_content() for s in doc.iter("style"))
    assert re.search(r"@media[^{]*prefers-color-scheme:\s*dark", styles)
    assert doc.find(".//title") is not None and text_of(doc.find(".//title")) == issue.subject


def test_example_no_web_fonts_and_layout_tables(example):
    _, issue = example
    doc = parse(issue.html)
    for link in doc.iter("link"):
        assert "font" not in (link.get("href") or "").lower(), link.get("href")
    assert "fonts.googleapis" not in issue.html
    assert "@import" not in issue.html
    tables = list(doc.iter("table"))
    assert tables
    assert all(t.get("role") == "presentation" for t in tables)
    # The tables only Outlook sees, inside conditional comments, too.
    for tag in re.findall(r"<table\b[^>]*>", issue.html, re.IGNORECASE):
        assert 'role="presentation"' in tag, tag
    for img in doc.iter("img"):
        assert img.get("alt") is not None, lxml.html.tostring(img)


def test_example_preheader_is_hidden_and_first(example):
    _, issue = example
    assert issue.preheader and "\n" not in issue.preheader
    body = parse(issue.html).find("body")
    hidden = [
        div for div in body.iter("div")
        if "display:none" in (div.get("style") or "").replace(" ", "")
    ]
    assert hidden, "no hidden preview text"
    preview = hidden[0].text_content()
    assert preview.startswith(issue.preheader)
    # After it, only the hidden filler (see test_preheader_is_padded).
    assert not preview[len(issue.preheader) :].replace("\u200c", "").replace("\xa0", "")
    # It is the first text in the body, so inboxes show it as the preview.
    assert text_of(body).startswith(issue.preheader)


def test_example_masthead_and_footer(example):
    _, issue = example
    doc = parse(issue.html)
    masthead = doc.find_class("mh")[0].getparent()
    masthead_text = text_of(masthead)
    assert "Daily Papers" in masthead_text
    assert "11 March 2025" in masthead_text and "Tuesday" in masthead_text
    # Plain words, no layout jargon ("top 15 in full"): the email, its text part alike.
    assert "Tuesday 11 March 2025 · 85 papers today" in masthead_text and "in full" not in masthead_text
    assert issue.text.splitlines()[1] == "Tuesday 11 March 2025 · 85 papers today"

    footer = doc.find_class("fine")[-1]
    footer_text = text_of(footer)
    assert Settings().postal_address in footer_text
    links = {a.get("href"): text_of(a) for a in footer.iter("a")}
    assert issue.web_url.endswith("/issues/2025-03-11")
    assert issue.web_url.startswith(Settings().web_base)
    assert "browser" in links.get(issue.web_url, "").lower()
    assert "unsubscribe" in links.get(UNSUBSCRIBE_URL_MARK, "").lower()


def test_example_size(example):
    _, issue = example
    assert issue.html_bytes == len(issue.html.encode("utf-8"))
    assert issue.html_bytes < LIMIT
    personal_html, _ = issue.personalized(long_url())
    assert len(personal_html.encode("utf-8")) < LIMIT


def test_example_web_version(example, tmp_path, monkeypatch):
    batch, issue = example
    assert issue.web_html.lstrip()[:15].lower() == "<!doctype html>"
    web_titles = [text_of(a) for a in parse(issue.web_html).find_class("t")]
    assert web_titles == [p.title for p in batch.papers]
    # The web version is public: no one's unsubscribe link in it.
    assert UNSUBSCRIBE_URL_MARK not in issue.web_html
    # Each paper links to its archive page (the example's papers have no
    # page of their own: from their titles, in the email too), and the page
    # to the sign-up page, which the email lacks (its reader is subscribed).
    doc = parse(issue.web_html)
    archive_pages = [Settings().web_base + paper_path(paper_key(p)) for p in batch.papers]
    assert [a.get("href") for a in doc.find_class("t")] == archive_pages
    assert not [a for a in doc.iter("a") if text_of(a) == "In the archive"]  # the title's link already
    assert [a.get("href") for a in parse(issue.html).find_class("t")] == archive_pages[:issue.card_count]
    assert [a.get("href") for a in doc.iter("a") if text_of(a) == "Subscribe"] == [Settings().signup_url]
    assert "In the archive" not in issue.html and Settings().signup_url not in issue.html
    # The same batch renders the same page.
    monkeypatch.chdir(tmp_path)  # as the example: no templates folder
    assert render_issue(batch, Settings()).web_html == issue.web_html


# --------------------------------------------------------------------------
# size bound


@pytest.fixture(scope="module")
def big_day(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("big"))
        batch = synthetic_batch(500)
        return batch, render_issue(batch, Settings())


def test_synthetic_papers_are_realistic():
    batch = synthetic_batch(50)
    titles = [len(p.title) for p in batch.papers]
    abstracts = [len(p.abstract) for p in batch.papers]
    assert 80 <= sum(titles) / len(titles) <= 95
    assert 1400 <= sum(abstracts) / len(abstracts) <= 1500
    assert len({p.title for p in batch.papers}) == 50


def test_500_papers_fit_under_the_limit(big_day):
    _, issue = big_day
    assert issue.paper_count == 500
    assert issue.html_bytes < LIMIT
    url = long_url(120)
    assert len(url) == 120
    personal_html, personal_text = issue.personalized(url)
    assert len(personal_html.encode("utf-8")) < LIMIT
    assert html.escape(url) in personal_html and url in personal_text


def shown_and_counted(issue) -> tuple[list[str], list[str], int]:
    """What the email itself shows: the titles of its cards, the titles of
    its compact list, and the "…and N more" figure it prints (0 if none)."""
    doc = parse(issue.html)
    card_titles = [text_of(a) for a in doc.find_class("t")]
    listed_titles = [text_of(a) for li in doc.iter("li") for a in li.iter("a")]
    more = re.findall(r"…and (\d+) more", issue.html)
    assert len(more) <= 1, more
    return card_titles, listed_titles, int(more[0]) if more else 0


def test_500_papers_every_paper_accounted_for(big_day):
    batch, issue = big_day
    card_titles, listed_titles, more = shown_and_counted(issue)
    assert MIN_CARDS <= len(card_titles) < 500
    # Every paper of the batch is in the email once, as a card or a listed
    # title, or counted in the "…and N more" line: none lost, none twice.
    shown = card_titles + listed_titles
    assert len(set(shown)) == len(shown)
    assert set(shown) <= {p.title for p in batch.papers}
    assert len(shown) + more == len(batch.papers) == 500
    # The issue's own counts say the same as its HTML.
    assert (issue.card_count, issue.listed_count, issue.more_count) == (len(card_titles), len(listed_titles), more)

    cards, listed = len(card_titles), len(listed_titles)
    # The top papers, in order, are cards; the next ones the compact list.
    assert card_titles == [p.title for p in batch.papers[:cards]]
    assert listed_titles == [p.title for p in batch.papers[cards : cards + listed]]
    for paper in batch.papers[: cards + listed]:
        assert html.escape(paper.title, quote=False) in issue.html
    # The rest are only counted, with a link to the web version.
    for paper in batch.papers[cards + listed :]:
        assert paper.url not in issue.html
    if more:
        assert hrefs(issue.html).count(issue.web_url) >= 2  # "read all" and "view in browser"


def test_500_papers_web_version_has_every_title(big_day):
    batch, issue = big_day
    web_titles = [text_of(a) for a in parse(issue.web_html).find_class("t")]
    assert web_titles == [p.title for p in batch.papers]


def test_500_papers_text_part_lists_every_paper(big_day):
    batch, issue = big_day
    text = flat(issue.text)
    for paper in batch.papers:
        assert paper.title in text
        assert f"   {paper.url}" in issue.text.splitlines()


def test_2000_papers_stay_under_the_limit():
    batch = synthetic_batch(2000, seed=11)
    issue = render_issue(batch, Settings())
    assert issue.paper_count == 2000
    assert issue.html_bytes < LIMIT
    assert len(issue.personalized(long_url(120))[0].encode("utf-8")) < LIMIT
    assert issue.card_count >= MIN_CARDS
    card_titles, listed_titles, more = shown_and_counted(issue)
    assert more > 0
    assert len(set(card_titles + listed_titles)) + more == len(batch.papers)
    assert issue.web_url in hrefs(issue.html)
    assert UNSUBSCRIBE_URL_MARK in hrefs(issue.html)  # the footer survived the cut
    assert str(issue.paper_count) in issue.html


def test_a_day_that_fits_shows_every_paper_as_a_card_or_a_title(example):
    _, issue = example
    assert issue.more_count == 0 and issue.listed_count == 77
    assert "…and" not in issue.html
    assert len(list(parse(issue.html).iter("li"))) == 77
    # No vote links on titles: no reader's copy, and a title has none in any.
    assert "/f/" not in issue.html


# --------------------------------------------------------------------------
# untrusted text

EVIL_TITLE = 'Attack <script>alert(1)</script> with "quotes" & ampersands'
EVIL_ABSTRACT = (
    "We write {{ config }} and {% raw %} in prose, with $\\alpha + \\beta$ "
    "and a stray </mj-text> tag inside."
)


@pytest.fixture
def evil_issue():
    data = canonical([
        {
            "title": EVIL_TITLE,
            "abstract": EVIL_ABSTRACT,
            "authors": ["Eve <b>Bold</b>", "Mallory & Co"],
            "arxiv_id": "2503.00001",
            "upvotes": 50,
            "code_url": "javascript:alert(1)",
        },
        {
            "title": "Broken\r\nacross\rlines\nthree times",
            "abstract": "A normal abstract. It has two sentences.",
            "upvotes": 99,
            "code_url": " JavaScript:alert(2)",
        },
        {"title": "A plain third paper", "abstract": "Nothing to see.", "upvotes": 1},
    ])
    batch = parse_batch(data, "evil.json")
    return batch, render_issue(batch, Settings())


def test_markup_in_paper_text_is_escaped(evil_issue):
    _, issue = evil_issue
    for markup in (issue.html, issue.web_html):
        lowered = markup.lower()
        assert "<script" not in lowered
        assert "</mj-text>" not in lowered
        assert "<b>bold</b>" not in lowered
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
        assert "&lt;/mj-text&gt;" in markup
        assert "&amp; ampersands" in markup
        # Parsed back, the title and abstract read exactly as written.
        doc = parse(markup)
        assert EVIL_TITLE in [text_of(a) for a in doc.find_class("t")]
        assert teaser(EVIL_ABSTRACT) in [text_of(d) for d in doc.find_class("tz")]
        assert not list(doc.iter("script"))
    assert html.escape(EVIL_TITLE, quote=False) in issue.html


def test_template_syntax_in_paper_text_is_literal(evil_issue):
    batch, issue = evil_issue
    shown_html = text_of(parse(issue.html))
    for literal in ("{{ config }}", "{% raw %}", "$\\alpha + \\beta$"):
        assert literal in issue.text
        assert literal in shown_html
    # Handlebars (SES templates) would read "{{" in the markup as its own syntax.
    assert "{{" not in issue.html
    assert EVIL_TITLE in issue.text
    shown = [text_of(d) for d in parse(issue.html).find_class("tz")]
    assert teaser(EVIL_ABSTRACT) in shown
    # Nothing of the environment or settings leaked in place of {{ config }}.
    assert "Settings(" not in issue.html and "<Config" not in issue.html


def test_javascript_code_url_is_never_a_link(evil_issue):
    batch, issue = evil_issue
    for paper in batch.papers:
        assert paper.code_url is None or is_http(paper.code_url)
    for part in (issue.html, issue.web_html, issue.text):
        assert "javascript:" not in part.lower()
    for href in hrefs(issue.html) + hrefs(issue.web_html):
        assert href == UNSUBSCRIBE_URL_MARK or is_http(href), href


def test_line_breaks_in_a_title_never_reach_headers(evil_issue):
    batch, issue = evil_issue
    assert batch.papers[0].title.startswith("Broken")  # the top paper
    for header in (issue.subject, issue.preheader):
        assert "\r" not in header and "\n" not in header
    assert issue.preheader.startswith("Broken across lines three times")


def test_line_breaks_never_reach_headers_even_unnormalized():
    paper = Paper(title="Injected\r\nBcc: victim@example.org\r\n", abstract="Text.")
    batch = Batch(date=DAY, papers=(paper, paper), source="direct")
    issue = render_issue(batch, Settings(name="Daily\r\nPapers"))
    for header in (issue.subject, issue.preheader):
        assert "\r" not in header and "\n" not in header
    assert "Bcc: victim@example.org" in issue.preheader


def test_paper_without_url_gets_no_broken_link():
    papers = (
        Paper(title="No link at all", abstract="An abstract."),
        Paper(title="Has a link", abstract="Another.", url="https://arxiv.org/abs/2503.00002"),
    )
    issue = render_issue(Batch(date=DAY, papers=papers, source="direct"), Settings())
    for markup in (issue.html, issue.web_html):
        assert "No link at all" in markup
        for href in hrefs(markup):
            assert href == UNSUBSCRIBE_URL_MARK or is_http(href), href
    assert "None" not in issue.text


# --------------------------------------------------------------------------
# the text part


def test_text_part_is_plain_text(example):
    batch, issue = example
    text = issue.text
    # Paper text may hold angle brackets of its own ("in <this picture>"):
    # take it out, and no markup may remain.
    flat = " ".join(text.split())
    for paper in batch.papers:
        flat = flat.replace(card_teaser(paper), "").replace(paper.title, "")
    assert not HTML_TAG.search(flat), HTML_TAG.search(flat)
    for entity in ENTITIES:
        assert entity not in text, entity
    assert "{{" not in text and "{%" not in text
    assert "None" not in text
    lines = text.splitlines()
    assert lines[0].strip() == "DAILY PAPERS"
    # No trailing white space, but for the signature separator "-- ".
    assert [line for line in lines if line != line.rstrip()] == ["-- "]


def test_a_card_shows_the_contribution_sentence_not_the_motivation(example):
    batch, issue = example
    nas = batch.papers[3]
    assert nas.title == "Robustifying and Boosting Training-Free Neural Architecture Search" and not nas.ai_summary
    assert nas.abstract.startswith("Neural architecture search (NAS) has become a key component of AutoML")
    shown = [text_of(p) for p in parse(issue.html).find_class("tz")][3]
    assert shown.startswith("We propose the robustifying and boosting training-free NAS")
    assert shown.endswith("…") and len(shown) <= 241
    assert shown == [text_of(p) for p in parse(issue.web_html).find_class("tz")][3]
    assert shown in " ".join(issue.text.split())
    assert "key component of AutoML" not in issue.html


def test_text_part_has_every_card_url_and_numbered_titles(example):
    batch, issue = example
    lines = issue.text.splitlines()
    for number, paper in enumerate(batch.papers[: issue.card_count], start=1):
        assert wrap_text(paper.title, indent="   ", first=f"{number}. ") in issue.text
        assert f"   {paper_url(paper, Settings().web_base)}" in lines  # the archive page: no page of its own
        if paper.code_url:
            assert paper.code_url in issue.text
        flat = " ".join(issue.text.split())
        assert card_teaser(paper) in flat  # the TL;DR, not the first sentence
    assert issue.web_url in lines
    assert lines[lines.index(UNSUBSCRIBE_URL_MARK) - 1] == "Unsubscribe:"
    assert Settings().postal_address in lines


def test_text_part_of_a_single_paper_reads_right():
    paper = Paper(title="Only one", abstract="Short.", url="https://arxiv.org/abs/2503.00003")
    issue = render_issue(Batch(date=DAY, papers=(paper,), source="direct"), Settings())
    assert issue.subject.endswith("· 1 paper")
    assert "1 papers" not in issue.text and "1 papers" not in issue.html
    assert "1 paper" in issue.text


# --------------------------------------------------------------------------
# offline


def test_render_never_touches_the_network(monkeypatch):
    calls = []

    def blocked(name):
        def refuse(*args, **kwargs):
            calls.append(name)
            raise OSError("network disabled in test")

        return refuse

    monkeypatch.setattr(socket.socket, "connect", blocked("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", blocked("connect_ex"))
    monkeypatch.setattr(socket, "create_connection", blocked("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", blocked("getaddrinfo"))

    batch, issue = render_example()
    assert issue.paper_count == 85 and issue.html_bytes < LIMIT
    assert calls == []


# --------------------------------------------------------------------------
# template overrides


def test_text_template_override(tmp_path):
    folder = tmp_path / "my-templates"
    folder.mkdir()
    original = (PACKAGE_TEMPLATES / TEXT_TEMPLATE).read_text(encoding="utf-8")
    assert "{{ name|upper }}" in original
    (folder / TEXT_TEMPLATE).write_text(
        original.replace("{{ name|upper }}", "CUSTOM TEXT PART\n{{ name|upper }}", 1), encoding="utf-8"
    )
    batch = load_batch(EXAMPLE, date=DAY)

    issue = render_issue(batch, Settings(templates_dir=folder))
    assert issue.text.startswith("CUSTOM TEXT PART\n")
    assert batch.papers[0].title in issue.text
    # email.mjml is not overridden: the HTML is the package's.
    assert "CUSTOM TEXT PART" not in issue.html
    assert [text_of(a) for a in parse(issue.html).find_class("t")] == [p.title for p in batch.papers[:8]]


def test_templates_dir_from_the_environment(tmp_path, monkeypatch):
    from newsletter.core.config import load_settings

    folder = tmp_path / "env-templates"
    folder.mkdir()
    (folder / TEXT_TEMPLATE).write_text("From env: {{ paper_count }} {{ unsubscribe_url }}\n", encoding="utf-8")
    monkeypatch.setenv("NEWSLETTER_TEMPLATES_DIR", str(folder))
    settings = load_settings()
    assert settings.templates_dir == folder
    issue = render_issue(load_batch(EXAMPLE, date=DAY), settings)
    assert issue.text == f"From env: 85 {UNSUBSCRIBE_URL_MARK}\n"


def test_template_syntax_error_names_template_and_line(tmp_path):
    folder = tmp_path / "broken-syntax"
    folder.mkdir()
    (folder / TEXT_TEMPLATE).write_text(
        "{{ name }}\n{{ date_long }}\n{% for p in cards %}\n{{ p.title }}\n", encoding="utf-8"
    )
    with pytest.raises(RenderError) as caught:
        render_issue(load_batch(EXAMPLE, date=DAY), Settings(templates_dir=folder))
    message = str(caught.value)
    assert TEXT_TEMPLATE in message
    assert re.search(r"line \d+", message)
    assert "\n" not in message


def test_template_syntax_error_points_at_the_line(tmp_path):
    folder = tmp_path / "broken-line"
    folder.mkdir()
    (folder / TEXT_TEMPLATE).write_text("one\ntwo\nthree {{ name ) }}\nfour\n", encoding="utf-8")
    with pytest.raises(RenderError, match=r"email\.txt.*line 3"):
        render_issue(load_batch(EXAMPLE, date=DAY), Settings(templates_dir=folder))


def test_template_with_undefined_variable(tmp_path):
    folder = tmp_path / "undefined"
    folder.mkdir()
    (folder / TEXT_TEMPLATE).write_text("{{ name }} {{ no_such_variable }}\n", encoding="utf-8")
    with pytest.raises(RenderError, match="no_such_variable") as caught:
        render_issue(load_batch(EXAMPLE, date=DAY), Settings(templates_dir=folder))
    assert TEXT_TEMPLATE in str(caught.value)


def test_email_template_override_is_used(tmp_path):
    folder = tmp_path / "mjml"
    folder.mkdir()
    shutil.copy(PACKAGE_TEMPLATES / "email.mjml", folder / "email.mjml")
    source = (folder / "email.mjml").read_text(encoding="utf-8")
    (folder / "email.mjml").write_text(source.replace("More papers today", "Also today"), encoding="utf-8")
    issue = render_issue(synthetic_batch(300), Settings(templates_dir=folder))
    assert issue.listed_count > 0
    assert "Also today" in issue.html and "More papers today" not in issue.html
    assert "MORE PAPERS TODAY" in issue.text  # email.txt still from the package


# --------------------------------------------------------------------------
# helpers: teaser and authors


LOREM = (
    "Large language models have shown remarkable capabilities across many tasks, yet "
    "their internal mechanisms remain poorly understood by researchers and practitioners "
    "alike, which motivates a careful study of how representations evolve during training "
    "and how they can be steered at inference time without any additional fine-tuning."
)


@pytest.mark.parametrize("limit", [20, 50, 80, 120, 240])
def test_teaser_cuts_at_a_word_boundary(limit):
    result = teaser(LOREM, limit)
    assert result.endswith("…")
    assert len(result) <= limit + 1
    body = result[:-1]
    assert LOREM.startswith(body)
    # The cut falls between words: what follows in the abstract is a space or
    # punctuation, never the rest of a word.
    assert LOREM[len(body)] in " ,;:.-"
    assert not body.endswith((" ", ","))


def test_teaser_keeps_short_text_whole():
    assert teaser("A short abstract.") == "A short abstract."
    exactly = "x" * 10 + " " + "y" * 9
    assert teaser(exactly, limit=20) == exactly


def test_teaser_prefers_whole_sentences():
    abstract = "First sentence here. Second one follows. " + LOREM
    result = teaser(abstract, limit=240)
    assert result == "First sentence here. Second one follows."
    assert not result.endswith("…")


def test_teaser_of_one_long_word_is_bounded():
    result = teaser("a" * 1000, limit=100)
    assert result.endswith("…") and len(result) <= 101


def test_teaser_never_exceeds_limit_plus_one():
    rnd = random.Random(3)
    for _ in range(300):
        words = [rnd.choice(_WORDS + ["(LLMs).", "e.g.", "—", "x" * rnd.randint(1, 60)]) for _ in range(rnd.randint(1, 80))]
        abstract = " ".join(words)
        limit = rnd.randint(10, 300)
        result = teaser(abstract, limit)
        assert len(result) <= limit + 1, (abstract, limit, result)
        assert result.strip(), (abstract, limit)
        if len(abstract) <= limit and "." not in abstract:
            assert result == abstract


@pytest.mark.parametrize(
    "count, expected",
    [
        (1, "Ada Lovelace"),
        (2, "Ada Lovelace and Alan Turing"),
        (3, "Ada Lovelace, Alan Turing and Grace Hopper"),
        (12, "Ada Lovelace, Alan Turing, Grace Hopper + 9"),
    ],
)
def test_short_authors(count, expected):
    names = ["Ada Lovelace", "Alan Turing", "Grace Hopper"] + [f"Author {i}" for i in range(4, 13)]
    assert short_authors(tuple(names[:count])) == expected


def test_short_authors_empty():
    assert short_authors(()) == ""


# --------------------------------------------------------------------------
# empty batch


def test_empty_batch_raises_batch_error():
    with pytest.raises(BatchError, match="no papers"):
        render_issue(Batch(date=DAY, papers=(), source="empty.json"), Settings())


def test_empty_batch_from_a_file_names_it():
    batch = parse_batch(canonical([]), "empty-day.json")
    assert batch.papers == ()
    with pytest.raises(BatchError) as caught:
        render_issue(batch, Settings())
    assert "empty-day.json" in str(caught.value)


def test_a_link_that_is_not_http_never_becomes_one(tmp_path):
    # Batches keep only http(s) links; a paper made any other way (stored
    # papers, a weekly edition) is checked again where its links are written.
    from conftest import SECRET
    from newsletter.issue.render import render_for_readers
    from newsletter.readers.tokens import Signer

    papers = (Paper("A title", "An abstract.", url="javascript:alert(1)", code_url="data:text/html,<b>x</b>",
                    project_url="JavaScript:alert(2)"),
              Paper("Another", "An abstract.", url="https://example.org/a?b=1&c=\"d\""))
    issue = render_for_readers(Batch(dt.date(2025, 3, 11), papers, source="test"), Settings(secret_key=SECRET),
                               Signer(SECRET))
    for page in (issue.html, issue.web_html):
        hrefs = [a.get("href") for a in lxml.html.document_fromstring(page).iter("a")]
        assert all(h.startswith(("http://", "https://", "__NEWSLETTER_")) for h in hrefs), hrefs
        assert 'https://example.org/a?b=1&c="d"' in hrefs  # kept whole, its quote inside the attribute
    # A paper with no http(s) page of its own links its archive page.
    assert issue.paper_urls[0] == issue.web_url.replace(
        "/issues/2025-03-11", paper_path(paper_key(papers[0])))
