"""The paper card and what makes the email readable everywhere: the teaser
chosen by NEWSLETTER_TEASER, the project page and comment count, cards as
table cells (Outlook), contrast, headings, the padded preheader, styled
footer links, a plain-text part within 78 columns, and the size budget
measured on the quoted-printable HTML part as it is sent."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import random
import re

import pytest
from test_render import parse, synthetic_batch, text_of

from conftest import EXAMPLE, FIXTURES
from newsletter.papers.batches import load_batch
from newsletter.core.config import Settings, load_settings
from newsletter.core.errors import ConfigError
from newsletter.core.models import UNSUBSCRIBE_URL_MARK, Batch, Paper
from newsletter.sending.personalize import PreparedMessage, Recipient
from newsletter.issue.render import (
    HTML_LIMIT_BYTES,
    MIN_CARDS,
    PACKAGE_TEMPLATES,
    TEXT_COLUMNS,
    encoded_bytes,
    render_issue,
    teaser,
)

DAY = dt.date(2025, 3, 11)
WHITE = "#ffffff"
DARK_BACKGROUND = "#111418"
SUMMARY = "A one-sentence summary written by the source, shown in place of the abstract."
ABSTRACT = "The abstract's own first sentence is here. Its second sentence follows it."


def rich_paper(**fields) -> Paper:
    values = dict(
        title="A Paper With Every Field",
        abstract=ABSTRACT,
        authors=("Ada Lovelace",),
        arxiv_id="2503.07605",
        url="https://arxiv.org/abs/2503.07605",
        upvotes=12,
        code_url="https://github.com/a/b",
        ai_summary=SUMMARY,
        keywords=("pruning",),
        project_url="https://a.github.io/b/",
        github_stars=1234,
        comment_count=3,
    )
    values.update(fields)
    return Paper(**values)


def render(*papers: Paper, **settings):
    return render_issue(Batch(date=DAY, papers=papers, source="direct"), Settings(**settings))


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("example"))
        return render_issue(load_batch(EXAMPLE, date=DAY), Settings())


@pytest.fixture(scope="module")
def big_day(tmp_path_factory):
    """A day too big for cards alone: cards, then the compact list."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("big"))
        issue = render_issue(synthetic_batch(300), Settings())
        assert issue.listed_count > 0
        return issue


# --------------------------------------------------------------------------
# colours


def luminance(hex_color: str) -> float:
    """Relative luminance (WCAG 2) of a ``#rrggbb`` colour."""
    channels = [int(hex_color.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_contrast_formula_matches_wcag():
    assert contrast("#000000", WHITE) == pytest.approx(21.0)
    assert contrast("#8a9099", WHITE) == pytest.approx(3.2, abs=0.05)  # the old grey: fails
    assert contrast("#6b7280", WHITE) == pytest.approx(4.8, abs=0.05)


def inline_color(element) -> str:
    match = re.search(r"(?:^|;)\s*color:\s*(#[0-9a-fA-F]{6})", element.get("style") or "")
    assert match, f"no inline colour on <{element.tag} class={element.get('class')!r}>"
    return match.group(1).lower()


def dark_rule_color(markup: str, css_class: str) -> str:
    """The colour the dark-mode media query gives to ``.css_class``."""
    block = re.search(r"@media\s*\(prefers-color-scheme:\s*dark\)\s*\{(.*?)\}\s*\}", markup, re.DOTALL)
    assert block, "no dark-mode rules"
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", block.group(1) + "}"):
        names = [s.strip() for s in selectors.split(",")]
        color = re.search(r"(?<![-\w])color:\s*(#[0-9a-fA-F]{6})", body)
        if f".{css_class}" in names and color:
            return color.group(1).lower()
    raise AssertionError(f"the dark-mode rules give .{css_class} no colour")


@pytest.mark.parametrize("css_class", ["n", "up", "au", "fine"])
def test_small_grey_text_passes_contrast_in_light_and_dark(css_class):
    """Rank numbers, counts, authors and the footer are small text: WCAG asks
    4.5:1, on white and on the dark-mode background."""
    issue = render(rich_paper(), rich_paper(title="Second", arxiv_id="2503.07606"))
    elements = parse(issue.html).find_class(css_class)
    assert elements
    for element in elements:
        assert contrast(inline_color(element), WHITE) >= 4.5, lxml_source(element)
    assert contrast(dark_rule_color(issue.html, css_class), DARK_BACKGROUND) >= 4.5


def test_links_pass_contrast_in_light_and_dark(example):
    doc = parse(example.html)
    for css_class in ("t", "ln", "fl"):
        for element in doc.find_class(css_class):
            assert contrast(inline_color(element), WHITE) >= 4.5
        assert contrast(dark_rule_color(example.html, css_class), DARK_BACKGROUND) >= 4.5


def lxml_source(element) -> str:
    import lxml.html

    return lxml.html.tostring(element, encoding="unicode")[:200]


# --------------------------------------------------------------------------
# the teaser


def card_teasers(markup: str) -> list[str]:
    return [text_of(p) for p in parse(markup).find_class("tz")]


def test_teaser_is_the_ai_summary_by_default():
    issue = render(rich_paper(), rich_paper(title="No summary", arxiv_id="2503.07606", ai_summary=None))
    assert Settings().teaser == "summary"
    # No summary: the TL;DR, here the first sentence alone (ABSTRACT states
    # no contribution), where the abstract setting shows two sentences.
    assert card_teasers(issue.html) == [SUMMARY, "The abstract's own first sentence is here."]
    assert card_teasers(issue.web_html) == [SUMMARY, "The abstract's own first sentence is here."]
    assert SUMMARY in " ".join(issue.text.split())


def test_teaser_without_a_summary_is_the_contribution_sentence():
    abstract = ("Neural architecture search (NAS) has become a key component of AutoML. "
                "Its metrics vary across tasks, e.g. vision vs. language. "
                "To address this, we propose RoBoT, which combines metrics by Bayesian optimization. "
                "Our experiments confirm it.")
    paper = rich_paper(abstract=abstract, ai_summary=None)
    # The contribution sentence, without its opening that points back ("To address this, ").
    contribution = "We propose RoBoT, which combines metrics by Bayesian optimization."
    issue = render(paper)
    assert card_teasers(issue.html) == [contribution]
    assert card_teasers(issue.web_html) == [contribution]
    assert contribution in " ".join(issue.text.split())
    # The operator's other choice keeps the abstract's first sentences.
    assert card_teasers(render(paper, teaser="abstract").html) == [teaser(abstract)]


def test_teaser_is_the_abstract_when_set_so():
    issue = render(rich_paper(), teaser="abstract")
    assert card_teasers(issue.html) == [teaser(ABSTRACT)]
    assert SUMMARY not in issue.html and SUMMARY not in " ".join(issue.text.split())


def test_a_long_ai_summary_is_cut_like_an_abstract():
    long_summary = "word " * 200
    issue = render(rich_paper(ai_summary=long_summary.strip()))
    shown = card_teasers(issue.html)[0]
    assert shown.endswith("…") and len(shown) <= 241


def test_teaser_setting_from_the_environment():
    assert load_settings({"NEWSLETTER_TEASER": "abstract"}).teaser == "abstract"
    assert load_settings({}).teaser == "summary"
    with pytest.raises(ConfigError, match="NEWSLETTER_TEASER must be one of summary, abstract"):
        load_settings({"NEWSLETTER_TEASER": "first-sentence"})


# --------------------------------------------------------------------------
# what a card shows


def test_card_shows_project_page_and_comment_count():
    issue = render(rich_paper(), rich_paper(title="One comment", arxiv_id="2503.07606", comment_count=1, upvotes=1))
    card = parse(issue.html).find_class("card")[0]
    links = {text_of(a): a.get("href") for a in card.iter("a")}
    assert links["PDF"] == "https://arxiv.org/pdf/2503.07605"
    code = next(label for label in links if label.startswith("Code"))
    assert links[code] == "https://github.com/a/b"
    assert links["Project page"] == "https://a.github.io/b/"
    # The comments go with the page that has them.
    assert links["Hugging Face · 3 comments"] == "https://huggingface.co/papers/2503.07605"
    assert text_of(card.find_class("up")[0]) == "▲ 12 upvotes"
    assert "Hugging Face · 1 comment<" in issue.html
    lines = issue.text.splitlines()
    assert "   Project page: https://a.github.io/b/" in lines
    assert f"   {code}: https://github.com/a/b" in lines
    assert "   ▲ 12 upvotes" in lines
    assert "   ▲ 1 upvote" in lines


def test_api_day_cards_link_the_hugging_face_page_and_its_comments(example):
    batch = load_batch(FIXTURES / "api" / "daily_papers.json", date=DAY)
    issue = render_issue(batch, Settings())
    cards = [card for card in parse(issue.html).find_class("card") if card.find_class("t")]
    assert len(cards) == len(batch.papers)
    lines = issue.text.splitlines()
    for card, paper in zip(cards, batch.papers):
        links = {text_of(a): a.get("href") for a in card.iter("a")}
        if paper.comment_count is None and paper.upvotes is None:  # not counted: not known to be there
            assert "Hugging Face" not in links
            continue
        page = "https://huggingface.co/papers/" + paper.arxiv_id
        label = "Hugging Face"
        if paper.comment_count:
            label += f" · {paper.comment_count} comment{'' if paper.comment_count == 1 else 's'}"
        assert links[label] == page and f"   {label}: {page}" in lines
    assert any(p.comment_count for p in batch.papers)
    # A day from a source without the daily papers' pages has no such link.
    assert "Hugging Face" not in example.html + example.text + example.web_html
    assert "huggingface.co/papers/" not in example.html + example.text + example.web_html


def test_card_without_counts_or_links_shows_none():
    paper = Paper(title="Bare", abstract="Only an abstract.")
    issue = render(paper)
    card = parse(issue.html).find_class("card")[0]
    assert not card.find_class("up") and not card.find_class("ln")
    assert "upvote" not in issue.text and "comment" not in issue.text


# --------------------------------------------------------------------------
# Outlook-safe structure


def styles(element) -> dict[str, str]:
    declarations = (part.split(":", 1) for part in (element.get("style") or "").split(";") if ":" in part)
    return {name.strip().lower(): value.strip() for name, value in declarations}


def nonzero_padding(element) -> list[str]:
    found = styles(element)
    return [f"{name}:{value}" for name, value in found.items() if name.startswith("padding") and set(value) - set("0px ")]


@pytest.mark.parametrize("version", ["email", "web"])
def test_each_card_is_a_presentation_table_cell_with_padding_and_border(example, big_day, version):
    for issue in (example, big_day):
        markup = issue.html if version == "email" else issue.web_html
        doc = parse(markup)
        titles = doc.find_class("t")
        assert len(titles) == (issue.card_count if version == "email" else issue.paper_count)
        for title in titles:
            cell = next(a for a in title.iterancestors() if a.tag == "td")
            assert "card" in cell.get("class").split(), lxml_source(cell)
            table = next(a for a in cell.iterancestors() if a.tag == "table")
            assert table.get("role") == "presentation"
            found = styles(cell)
            assert found.get("padding") == "16px 0"
            assert found.get("border-top", "").startswith("1px solid")
        # One card, one cell: no card shares a cell with another.
        cells = [next(a for a in t.iterancestors() if a.tag == "td") for t in titles]
        assert len(set(cells)) == len(cells)


def test_no_div_carries_padding_or_a_border(example, big_day):
    """Outlook for Windows ignores padding on a <div> and draws its borders
    unreliably: spacing and separators belong to table cells."""
    for issue in (example, big_day):
        for div in parse(issue.html).iter("div"):
            assert not nonzero_padding(div), lxml_source(div)
            assert not any(name.startswith("border") for name in styles(div)), lxml_source(div)
    template = (PACKAGE_TEMPLATES / "email.mjml").read_text(encoding="utf-8")
    assert not re.search(r"<div[^>]*style=\"[^\"]*(padding|border)", template)


def test_the_list_and_the_footer_are_ruled_cells_too(big_day):
    doc = parse(big_day.html)
    listed = doc.find(".//ul")
    cell = next(a for a in listed.iterancestors() if a.tag == "td")
    assert "card" in cell.get("class").split() and styles(cell).get("padding") == "18px 0"
    footer = doc.find_class("fine")[-1]
    assert footer.tag == "td" and styles(footer).get("border-top", "").startswith("1px solid")


# --------------------------------------------------------------------------
# headings and landmarks


def headings(markup: str, level: int) -> list:
    return list(parse(markup).iter(f"h{level}"))


def test_headings_masthead_sections_and_titles(example, big_day):
    for issue in (example, big_day):
        for markup in (issue.html, issue.web_html):
            (h1,) = headings(markup, 1)
            assert text_of(h1) == "Daily Papers"
            sections = [text_of(h) for h in headings(markup, 2)]
            titles = headings(markup, 3)
            # Every card title is an <h3> holding the rank and the link.
            assert [text_of(a) for h in titles for a in h.find_class("t")] == [
                text_of(a) for a in parse(markup).find_class("t")
            ]
            assert all(re.match(r"\d+\. ", text_of(h)) for h in titles)
            for heading in [h1, *headings(markup, 2), *titles]:
                assert "margin" in styles(heading), lxml_source(heading)
            assert sections[0] == ("Today's papers" if markup == issue.web_html else "Top of the day")
    assert [text_of(h) for h in headings(big_day.html, 2)] == ["Top of the day", "More papers today"]
    assert [text_of(h) for h in headings(example.html, 2)] == ["Top of the day", "More papers today"]


def test_web_version_has_one_main_landmark_around_the_content(example):
    doc = parse(example.web_html)
    mains = list(doc.iter("main"))
    assert len(mains) == 1
    assert len(mains[0].find_class("t")) == example.paper_count
    assert mains[0].find_class("mh") and mains[0].find_class("fine")
    assert not list(parse(example.html).iter("main"))  # mail clients get the plain body


# --------------------------------------------------------------------------
# preheader and footer


def test_preheader_is_padded_with_a_hidden_run(example):
    body = parse(example.html).find("body")
    hidden = next(div for div in body.iter("div") if "display:none" in (div.get("style") or "").replace(" ", ""))
    preview = hidden.text_content()
    assert preview.startswith(example.preheader)
    filler = preview[len(example.preheader) :]
    assert filler == "\u200c\xa0" * (len(filler) // 2)
    assert len(filler) // 2 >= 90  # enough to fill any inbox's preview line
    # After the hidden run, the body's first visible text is the masthead.
    assert text_of(body)[len(example.preheader) :].lstrip("\u200c ").startswith("Daily Papers")


def test_footer_links_are_styled_like_the_other_links(example):
    footer = parse(example.html).find_class("fine")[-1]
    links = {text_of(a): a for a in footer.iter("a")}
    assert set(links) == {"View in browser", "Unsubscribe"}  # no reader's controls in a copy for no reader
    body_link = inline_color(parse(example.html).find_class("ln")[0])
    for link in links.values():
        assert inline_color(link) == body_link
        assert "underline" in styles(link).get("text-decoration", "")
        # A tap target at least 24 px high, however small the fine print.
        assert styles(link).get("display") == "inline-block" and styles(link).get("line-height") == "24px"
    assert links["Unsubscribe"].get("href") == UNSUBSCRIBE_URL_MARK


# --------------------------------------------------------------------------
# the plain-text part

LONG_CODE_URL = "https://github.com/a-research-lab-with-a-long-name/" + "a-repository-name-" * 4 + "end"


def long_lines(text: str) -> list[str]:
    """Lines over TEXT_COLUMNS that are not a lone URL (with its indent)."""
    return [
        line for line in text.splitlines()
        if len(line) > TEXT_COLUMNS and not re.fullmatch(r"\s*https?://\S+", line)
    ]


def test_text_part_lines_fit_78_columns_but_urls(example, big_day):
    paper = rich_paper(
        title="A Title Long Enough To Need Wrapping " * 4,
        code_url=LONG_CODE_URL,
        authors=tuple(f"Author Number {i} With A Long Name" for i in range(3)),
    )
    long_site = render(
        paper, postal_address="A Publisher With A Long Name · 1234 A Rather Long Street Name · Some City 56789"
    )
    # Chinese has no spaces to wrap at: its runs are cut to fit.
    chinese_day = cjk_batch(5)
    chinese = render_issue(chinese_day, Settings(teaser="abstract"))
    longest_run = teaser(chinese_day.papers[0].abstract)
    assert " " not in longest_run and len(longest_run) > 2 * TEXT_COLUMNS
    assert longest_run[:70] in chinese.text
    for issue in (example, big_day, long_site, chinese):
        assert long_lines(issue.text) == []
        personal_text = issue.personalized("https://news.example.org/u/" + "t" * 90)[1]
        assert long_lines(personal_text) == []
    assert re.search(r"   Code[^\n]*:\n   " + re.escape(LONG_CODE_URL), long_site.text)  # too long to share its line
    assert "   PDF: https://arxiv.org/pdf/2503.07605" in long_site.text.splitlines()


def test_text_part_labels_upvotes_and_ends_with_a_signature_separator():
    issue = render(rich_paper(), rich_paper(title="Second", arxiv_id="2503.07606", upvotes=0, comment_count=None))
    lines = issue.text.splitlines()
    assert "   ▲ 12 upvotes" in lines
    assert "   ▲ 0 upvotes" in lines
    assert lines.count("-- ") == 1
    separator = lines.index("-- ")
    # The footer follows it: who, the unsubscribe link, the address.
    assert any(line.startswith("You receive Daily Papers") for line in lines[separator:])
    assert UNSUBSCRIBE_URL_MARK in lines[separator:]
    assert lines[-1] == Settings().postal_address
    assert "--" not in lines  # the old separator without its space


# --------------------------------------------------------------------------
# the size budget, on the HTML part as sent

_CJK = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 400))


def cjk_batch(count: int, seed: int = 5) -> Batch:
    """A day of ``count`` papers written in Chinese: every character is three
    UTF-8 bytes and nine quoted-printable ones."""
    rnd = random.Random(seed)

    def words(n: int) -> str:
        return "".join(rnd.choice(_CJK) for _ in range(n))

    papers = []
    for i in range(count):
        arxiv_id = f"2503.{20000 + i:05d}"
        papers.append(
            Paper(
                title=f"{i:04d} {words(30)}",
                abstract="。".join(words(60) for _ in range(8)) + "。",
                authors=tuple(words(3) for _ in range(rnd.randint(1, 6))),
                arxiv_id=arxiv_id,
                url=f"https://arxiv.org/abs/{arxiv_id}",
                upvotes=count - i,
                ai_summary=words(80) + "。",
                comment_count=i % 4,
            )
        )
    return Batch(date=DAY, papers=tuple(papers), source="cjk")


def html_part_on_the_wire(raw: bytes) -> bytes:
    """The HTML part's body of a message exactly as sent (quoted-printable)."""
    message = email.message_from_bytes(raw, policy=email.policy.SMTP)
    (part,) = [p for p in message.walk() if p.get_content_type() == "text/html"]
    assert part["Content-Transfer-Encoding"] == "quoted-printable"
    start = raw.index(b"\r\n\r\n", raw.index(b"Content-Type: text/html")) + 4
    return raw[start : raw.index(b"\r\n--" + message.get_boundary().encode(), start)]


def test_cjk_heavy_day_is_budgeted_on_its_encoded_size():
    batch = cjk_batch(300)
    issue = render_issue(batch, Settings())
    # Most of the day does not fit: the budget held it back ...
    assert MIN_CARDS <= issue.card_count < 300
    assert issue.card_count + issue.listed_count + issue.more_count == 300
    # ... by the size on the wire, which is what counts: nearly twice the
    # decoded size here (a budget on the decoded size would have let the
    # email grow to twice the limit on the wire), and under the limit.
    assert encoded_bytes(issue.html) <= HTML_LIMIT_BYTES
    assert encoded_bytes(issue.html) > 1.5 * issue.html_bytes
    # Measured on the message a reader gets, with a long personal link.
    url = "https://newsletter.example.org/u/" + "x" * 120
    prepared = PreparedMessage(issue, "Daily Papers <papers@example.org>")
    raw = prepared.render(Recipient(1, "reader@example.org", "读者", url))
    wire = html_part_on_the_wire(raw)
    assert url.encode() in wire.replace(b"=\r\n", b"")
    assert len(wire) <= HTML_LIMIT_BYTES
    # The budget is used, not wasted: the email comes near the limit.
    assert len(wire) > HTML_LIMIT_BYTES * 0.8


def test_english_day_is_budgeted_on_its_encoded_size_too(big_day):
    raw = PreparedMessage(big_day, "Daily Papers <papers@example.org>").render(
        Recipient(1, "reader@example.org", None, "https://newsletter.example.org/u/" + "x" * 120)
    )
    wire = html_part_on_the_wire(raw)
    assert big_day.html_bytes < len(wire) <= HTML_LIMIT_BYTES
