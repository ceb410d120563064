"""Loading batches (newsletter/papers/batches.py): the four formats, normalization
and every kind of bad input."""

from __future__ import annotations

import json
import unicodedata
from datetime import date

import pytest

from conftest import EXAMPLE, FIXTURES
from newsletter.papers import batches as papers
from newsletter.papers.batches import find_code_url, find_project_url, load_batch, parse_batch, write_canonical
from newsletter.core.errors import BatchError
from newsletter.core.models import Batch

API_JSON = FIXTURES / "api" / "daily_papers.json"
ATOM = FIXTURES / "atom" / "arxiv.xml"
LATE_2026 = date(2026, 11, 27)

FIRST_TITLE = "Intrinsic Evaluation of Unlearning Using Parametric Knowledge Traces"
LAST_TITLE = "V-LoL: A Diagnostic Dataset for Visual Logical Learning"
LEMONS = "When are Lemons Purple? The Concept Association Bias of CLIP"


@pytest.fixture(scope="module")
def example() -> Batch:
    return load_batch(EXAMPLE, today=LATE_2026)


def raises_batch_error(data: bytes | str, source: str = "day.txt", **kwargs) -> BatchError:
    """Parse ``data`` expecting a BatchError; return it after the common checks."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    kwargs.setdefault("today", LATE_2026)
    with pytest.raises(BatchError) as info:
        parse_batch(data, source, **kwargs)
    error = info.value
    assert error.exit_code == 2
    assert str(error).startswith(source)
    return error


def page(*paragraphs: str, date_line: str = "Mar 11") -> str:
    """A daily papers page as text: header, date line, then paragraphs."""
    return "\n\n".join(["Daily Papers", date_line, *paragraphs]) + "\n"


def api_entry(**paper) -> dict:
    paper.setdefault("id", "2503.07605")
    paper.setdefault("title", "A Title")
    paper.setdefault("summary", "An abstract.")
    return {"paper": paper, "publishedAt": "2025-03-11T02:00:00.000Z"}


def api_json(*entries: dict) -> bytes:
    return json.dumps(list(entries)).encode("utf-8")


def canonical(*items: dict, day: str = "2025-03-11") -> bytes:
    return json.dumps({"date": day, "papers": list(items)}).encode("utf-8")


# --------------------------------------------------------------------------
# the example day as text


def test_example_has_85_papers_first_and_last_in_page_order(example):
    assert len(example.papers) == 85
    assert example.papers[0].title == FIRST_TITLE
    assert example.papers[-1].title == LAST_TITLE
    assert len({p.title for p in example.papers}) == 85


def test_example_first_abstract_is_the_right_one(example):
    abstract = example.papers[0].abstract
    assert abstract.startswith('The task of "unlearning" certain concepts in large language models')
    assert abstract.endswith(
        "To support this, we release our code and benchmark at "
        "https://github.com/yihuaihong/ConceptVectors."
    )
    assert "Sparse Concept Bottleneck" not in abstract


def test_example_every_abstract_is_the_paragraph_after_its_title(example):
    # Cross-check against the raw file: each title's next non-blank line is its abstract.
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for paper in example.papers:
        index = lines.index(paper.title)
        following = next(line for line in lines[index + 1 :] if line.strip())
        assert paper.abstract == following.strip(), paper.title
        assert paper.abstract not in {p.title for p in example.papers}


def test_example_title_with_question_mark_is_one_title_with_its_abstract(example):
    lemons = [p for p in example.papers if p.title == LEMONS]
    assert len(lemons) == 1
    assert lemons[0].abstract.startswith("Large-scale vision-language models such as CLIP")
    assert lemons[0].abstract.endswith("the strength of CAB in a model predicts how well it performs on VQA.")
    index = [p.title for p in example.papers].index(LEMONS)
    assert example.papers[index + 1].title == "RealEra: Semantic-level Concept Erasure via Neighbor-Concept Mining"


def test_example_code_links_come_from_abstracts(example):
    by_title = {p.title: p for p in example.papers}
    assert example.papers[0].code_url == "https://github.com/yihuaihong/ConceptVectors"
    sparse = by_title["Sparse Concept Bottleneck Models: Gumbel Tricks in Contrastive Learning"]
    assert sparse.code_url == "https://github.com/Andron00e/SparseCBM"
    napa = by_title[
        "NAPA-VQ: Neighborhood Aware Prototype Augmentation with Vector Quantization for Continual Learning"
    ]
    assert napa.code_url == "https://github.com/TamashaM/NAPA-VQ.git"
    assert by_title[LEMONS].code_url is None
    assert by_title[LAST_TITLE].code_url is None


def test_example_papers_without_arxiv_id_have_no_page_of_their_own(example):
    # No guessed link (such as an arXiv title search): the email links
    # such a paper's archive page instead (see render.paper_url).
    first = example.papers[0]
    assert first.arxiv_id is None and first.pdf_url is None and first.upvotes is None
    assert all(p.url is None for p in example.papers)


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2026, 11, 27), date(2026, 3, 11)),
        (date(2026, 3, 11), date(2026, 3, 11)),
        (date(2026, 3, 10), date(2025, 3, 11)),
        (date(2026, 1, 1), date(2025, 3, 11)),
    ],
)
def test_example_year_is_the_latest_such_day_not_in_the_future(today, expected):
    assert load_batch(EXAMPLE, today=today).date == expected


def test_example_date_option_gives_the_year():
    batch = load_batch(EXAMPLE, date=date(2025, 3, 11), today=LATE_2026)
    assert batch.date == date(2025, 3, 11)
    assert len(batch.papers) == 85


def test_example_date_option_disagreeing_with_the_page_names_the_date_line():
    with pytest.raises(BatchError) as info:
        load_batch(EXAMPLE, date=date(2025, 3, 12), today=LATE_2026)
    # "Mar 11" is on line 9 of the example (after four header lines and blanks).
    assert info.value.where == "line 9"
    assert str(info.value).startswith(f"{EXAMPLE}, line 9:")
    assert "2025-03-12" in str(info.value)


def test_page_feb_29_goes_back_to_the_last_leap_year():
    data = page("A Title", "An abstract.", date_line="Feb 29").encode()
    batch = parse_batch(data, "d.txt", today=date(2025, 6, 1))
    assert batch.date == date(2024, 2, 29)


def test_page_date_line_with_a_year_is_taken_as_is():
    batch = parse_batch(page("A Title", "An abstract.", date_line="Mar 11, 2024").encode(), "d.txt",
                        today=LATE_2026)
    assert batch.date == date(2024, 3, 11)


def test_page_with_crlf_line_endings_and_bom_loads():
    data = b"\xef\xbb\xbf" + page("A Title", "An abstract.").replace("\n", "\r\n").encode()
    batch = parse_batch(data, "d.txt", today=LATE_2026)
    assert [(p.title, p.abstract) for p in batch.papers] == [("A Title", "An abstract.")]


def test_page_with_date_line_but_no_papers_is_an_empty_batch():
    batch = parse_batch(b"Daily Papers\n\nMar 11\n\n\n", "d.txt", today=LATE_2026)
    assert batch.papers == ()
    assert batch.date == date(2026, 3, 11)


# --------------------------------------------------------------------------
# the daily papers API JSON


@pytest.fixture(scope="module")
def api() -> Batch:
    return load_batch(API_JSON)


def test_api_dedupes_versions_and_orders_by_upvotes(api):
    assert [p.arxiv_id for p in api.papers] == ["2503.07703", "2503.07605", "2503.07920", "2503.08120"]
    assert [p.upvotes for p in api.papers] == [112, 48, 7, None]


def test_api_ids_urls_and_code_links(api):
    by_id = {p.arxiv_id: p for p in api.papers}
    for paper in api.papers:
        assert "v" not in paper.arxiv_id
        assert paper.url == f"https://arxiv.org/abs/{paper.arxiv_id}"
        assert paper.pdf_url == f"https://arxiv.org/pdf/{paper.arxiv_id}"
    assert by_id["2503.07605"].code_url == "https://github.com/IAAR-Shanghai/SEAP"
    assert by_id["2503.07920"].code_url == "https://github.com/example-lab/token-uncertainty"
    # no githubRepo: the link in the abstract, without the sentence's full stop
    assert by_id["2503.07703"].code_url == "https://github.com/example-lab/sb-text"
    assert by_id["2503.08120"].code_url is None


def test_api_entry_without_optional_fields(api):
    bare = api.papers[-1]
    assert bare.title == "A Paper Listed Without Any Optional Field"
    assert bare.abstract == "Only the identifier, the title and this abstract are present in this entry."
    assert bare.authors == () and bare.upvotes is None and bare.code_url is None


def test_api_whitespace_is_collapsed_and_unicode_kept(api):
    by_id = {p.arxiv_id: p for p in api.papers}
    seap = by_id["2503.07605"]
    assert seap.title == (
        "SEAP: Training-free Sparse Expert Activation Pruning Unlocks the Brainpower of Large Language Models"
    )
    assert "\n" not in seap.abstract and "  " not in seap.abstract
    assert seap.abstract.startswith("Large Language Models have achieved remarkable success across various")
    assert seap.authors == ("Xun Liang", "Hanyu Wang", "王小明")
    bridges = by_id["2503.07703"]
    assert bridges.title == "Schrödinger Bridges Beat Diffusion Models on 中文、日本語 and 한국어 Text Rendering"
    assert "漢字 and かな" in bridges.abstract
    assert bridges.authors == ("Erwin Schrödinger-Müller", "Zoë Łukasiewicz")


def test_api_date_is_the_day_of_the_entries_and_date_option_wins(api):
    # entry-level publishedAt (the listing day), not the arXiv date inside "paper"
    assert api.date == date(2025, 3, 11)
    assert load_batch(API_JSON, date=date(2025, 3, 12)).date == date(2025, 3, 12)


def test_api_text_is_normalized_to_nfc():
    decomposed = "Schro\u0308dinger Bridges"
    batch = parse_batch(api_json(api_entry(title=decomposed)), "api.json")
    assert batch.papers[0].title == "Schrödinger Bridges"
    assert unicodedata.is_normalized("NFC", batch.papers[0].title)


def test_api_without_any_date_needs_the_date_option():
    data = json.dumps([{"paper": {"id": "2503.07605", "title": "T", "summary": "An abstract."}}]).encode()
    error = raises_batch_error(data, "api.json")
    assert "--date" in str(error)
    assert parse_batch(data, "api.json", date=date(2025, 3, 11)).date == date(2025, 3, 11)


def test_api_empty_list_with_a_date_is_an_empty_batch():
    assert parse_batch(b"[]", "api.json", date=date(2025, 3, 11)).papers == ()


# --------------------------------------------------------------------------
# arXiv Atom feed


@pytest.fixture(scope="module")
def atom() -> Batch:
    return load_batch(ATOM)


def test_atom_titles_ids_and_authors(atom):
    assert [p.title for p in atom.papers] == [
        FIRST_TITLE,
        "When are Lemons Purple? The Concept Association Bias of Vision-Language Models",
        "Schrödinger Operators on Noncommutative Tori",
    ]
    assert [p.arxiv_id for p in atom.papers] == ["2406.11614", "2212.12043", "hep-th/9901001"]
    assert atom.papers[0].authors == ("Yihuai Hong", "Lei Yu", "Mor Geva")
    assert atom.papers[2].authors == ("Erwin Müller-Łukasiewicz",)
    assert atom.papers[2].url == "https://arxiv.org/abs/hep-th/9901001"
    assert atom.papers[2].pdf_url == "https://arxiv.org/pdf/hep-th/9901001"


def test_atom_abstracts_are_collapsed_text(atom):
    first = atom.papers[0]
    assert first.abstract.startswith('The task of "unlearning" certain concepts')
    assert "\n" not in first.abstract
    assert first.code_url == "https://github.com/yihuaihong/ConceptVectors"
    # XML escapes are decoded to plain text, template syntax and TeX kept verbatim
    assert atom.papers[1].abstract.endswith("We keep {{ x }} and $\\alpha$ and a bound of <4% verbatim.")


def test_atom_date_is_the_latest_published_unless_given():
    assert load_batch(ATOM).date == date(2024, 6, 18)
    assert load_batch(ATOM, date=date(2024, 6, 20)).date == date(2024, 6, 20)


def test_atom_feed_without_dates_uses_today():
    feed = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>http://arxiv.org/abs/2406.11614v2</id>'
        "<title>T</title><summary>An abstract.</summary></entry></feed>"
    )
    batch = parse_batch(feed.encode(), "feed.xml", today=date(2024, 7, 1))
    assert batch.date == date(2024, 7, 1)
    assert batch.papers[0].arxiv_id == "2406.11614"


def test_atom_entry_with_only_an_updated_date():
    feed = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>http://arxiv.org/abs/2406.11614v2</id>'
        "<updated>2024-06-21T08:00:00Z</updated><title>T</title><summary>An abstract.</summary></entry></feed>"
    )
    assert parse_batch(feed.encode(), "feed.xml", today=date(2024, 7, 1)).date == date(2024, 6, 21)


@pytest.mark.parametrize("stamp", ["0000-01-01T00:00:00Z", "not a date"])
def test_atom_unusable_published_date_is_ignored(stamp):
    feed = (
        '<feed xmlns="http://www.w3.org/2005/Atom">'
        "<entry><id>http://arxiv.org/abs/2406.11614v1</id><published>2024-06-17T15:00:47Z</published>"
        "<title>First</title><summary>An abstract.</summary></entry>"
        f"<entry><id>http://arxiv.org/abs/2212.12043v3</id><published>{stamp}</published>"
        "<title>Second</title><summary>Another abstract.</summary></entry></feed>"
    )
    batch = parse_batch(feed.encode(), "feed.xml", today=date(2024, 7, 1))
    assert batch.date == date(2024, 6, 17)
    assert [p.title for p in batch.papers] == ["First", "Second"]


# --------------------------------------------------------------------------
# canonical JSON


@pytest.mark.parametrize("source", [EXAMPLE, API_JSON, ATOM], ids=["page", "api", "atom"])
def test_canonical_round_trip(source, isolated):
    batch = load_batch(source, today=LATE_2026)
    target = isolated / "batches" / "day.json"
    written = write_canonical(batch, target)
    assert written == target
    doc = json.loads(target.read_text(encoding="utf-8"))
    assert doc["date"] == batch.date.isoformat()
    assert len(doc["papers"]) == len(batch.papers)
    reloaded = load_batch(target)
    assert reloaded.date == batch.date
    assert reloaded.papers == batch.papers
    assert [p.name for p in target.parent.iterdir()] == ["day.json"]  # no temporary file left


def test_canonical_keeps_unicode_unescaped(isolated):
    target = write_canonical(load_batch(API_JSON), isolated / "day.json")
    assert "Schrödinger" in target.read_text(encoding="utf-8")


def test_canonical_date_option_must_agree():
    data = canonical({"title": "T", "abstract": "An abstract."})
    assert parse_batch(data, "c.json", date=date(2025, 3, 11)).date == date(2025, 3, 11)
    error = raises_batch_error(data, "c.json", date=date(2025, 3, 12))
    assert error.where == '"date"'


def test_canonical_bad_date():
    error = raises_batch_error(canonical({"title": "T", "abstract": "A."}, day="11/03/2025"), "c.json")
    assert "11/03/2025" in str(error)


def test_canonical_arxiv_url_gives_the_id():
    data = canonical({"title": "T", "abstract": "A.", "url": "https://arxiv.org/pdf/2406.11614v3.pdf"})
    paper = parse_batch(data, "c.json").papers[0]
    assert paper.arxiv_id == "2406.11614"
    assert paper.url == "https://arxiv.org/abs/2406.11614"


# --------------------------------------------------------------------------
# the richer fields: AI summary, keywords, categories, project page, counts


def test_api_rich_fields(api):
    by_id = {p.arxiv_id: p for p in api.papers}
    seap = by_id["2503.07605"]
    # Whitespace collapsed as in every text field; empty and repeated keywords dropped.
    assert seap.ai_summary == "SEAP prunes the experts a task does not need, cutting inference cost without any training."
    assert seap.keywords == ("sparse activation", "pruning")
    # githubRepo is the code and projectPage the project page: two links, not one.
    assert seap.code_url == "https://github.com/IAAR-Shanghai/SEAP"
    assert seap.project_url == "https://iaar-shanghai.github.io/SEAP/"
    assert seap.github_stars == 1234
    assert seap.comment_count == 2  # numComments of the entry (the copy kept, not the v2's 0)
    bare = by_id["2503.08120"]
    assert (bare.ai_summary, bare.keywords, bare.categories) == (None, (), ())
    assert (bare.project_url, bare.github_stars, bare.comment_count) == (None, None, None)
    assert by_id["2503.07703"].comment_count == 5
    assert all(p.categories == () for p in api.papers)  # the API gives none


def test_api_project_page_alone_is_not_the_code_link():
    entry = api_entry(projectPage="https://example.org/demo", summary="An abstract without links.")
    paper = parse_batch(api_json(entry), "api.json").papers[0]
    assert paper.project_url == "https://example.org/demo"
    assert paper.code_url is None
    # The same page given as both is shown once, as the code.
    entry = api_entry(githubRepo="https://github.com/a/b", projectPage="https://github.com/a/b")
    paper = parse_batch(api_json(entry), "api.json").papers[0]
    assert (paper.code_url, paper.project_url) == ("https://github.com/a/b", None)


def test_api_comment_count_on_the_paper_is_taken_too():
    entry = api_entry(numComments=4)  # on "paper" only
    assert parse_batch(api_json(entry), "api.json").papers[0].comment_count == 4


def test_atom_categories_primary_first(atom):
    assert atom.papers[0].categories == ("cs.CL", "cs.LG", "I.2.7")
    assert atom.papers[1].categories == ("cs.CV",)
    assert atom.papers[2].categories == ("hep-th",)
    assert all(p.ai_summary is None and p.keywords == () and p.comment_count is None for p in atom.papers)


def test_page_text_finds_a_project_page_in_the_abstract(example):
    by_title = {p.title: p for p in example.papers}
    negtome = by_title["Negative Token Merging: Image-based Adversarial Feature Guidance"]
    assert negtome.project_url == "https://negtome.github.io"
    assert negtome.code_url is None  # a project page is not labelled as code
    assert example.papers[0].project_url is None  # its one link is on GitHub: the code


def test_canonical_keeps_the_rich_fields(isolated):
    batch = load_batch(API_JSON)
    doc = json.loads(write_canonical(batch, isolated / "day.json").read_text(encoding="utf-8"))
    assert doc["format"] == "newsletter-batch/1"
    seap = next(item for item in doc["papers"] if item["arxiv_id"] == "2503.07605")
    assert seap["ai_summary"].startswith("SEAP prunes")
    assert seap["keywords"] == ["sparse activation", "pruning"]
    assert seap["project_url"] == "https://iaar-shanghai.github.io/SEAP/"
    assert (seap["github_stars"], seap["comment_count"], seap["categories"]) == (1234, 2, [])
    atom = load_batch(ATOM)
    reloaded = load_batch(write_canonical(atom, isolated / "atom.json"))
    assert reloaded.papers[0].categories == ("cs.CL", "cs.LG", "I.2.7")


def test_canonical_without_the_new_keys_still_loads():
    """A batch written before the richer fields existed loads, with their defaults."""
    data = canonical({
        "title": "T", "abstract": "An abstract.", "authors": ["A"], "arxiv_id": "2503.07605",
        "url": None, "upvotes": 3, "code_url": "https://github.com/a/b",
    })
    paper = parse_batch(data, "old.json").papers[0]
    assert (paper.ai_summary, paper.keywords, paper.categories) == (None, (), ())
    assert (paper.project_url, paper.github_stars, paper.comment_count) == (None, None, None)
    assert paper.code_url == "https://github.com/a/b" and paper.upvotes == 3


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ai_summary": 12}, "ai_summary must be text"),
        ({"ai_summary": "x" * 5_001}, "ai_summary is 5,001 characters long"),
        ({"keywords": "one, two"}, "keywords must be a list"),
        ({"keywords": ["ok", 3]}, "keywords must be text"),
        ({"keywords": ["k"] * 101}, "101 keywords; the limit is 100"),
        ({"categories": [{"term": "cs.CL"}]}, "categories must be text"),
        ({"categories": ["c" * 101]}, "categories is 101 characters long"),
        ({"github_stars": -1}, "GitHub stars must be a whole number"),
        ({"github_stars": "12"}, "GitHub stars must be a whole number"),
        ({"comment_count": 2.5}, "comment count must be a whole number"),
        ({"comment_count": True}, "comment count must be a whole number"),
        ({"project_url": ["https://example.org"]}, "project_url must be text"),
    ],
)
def test_canonical_rich_fields_are_checked(fields, message):
    error = raises_batch_error(canonical({"title": "T", "abstract": "A.", **fields}), "c.json")
    assert error.where == "papers[0]"
    assert message in str(error)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ai_keywords": {"a": 1}}, "keywords must be a list"),
        ({"githubStars": 1.5}, "GitHub stars must be a whole number"),
        ({"ai_summary": ["a"]}, "ai_summary must be text"),
    ],
)
def test_api_rich_fields_are_checked(fields, message):
    error = raises_batch_error(api_json(api_entry(**fields)), "api.json")
    assert error.where == "entry 1" and message in str(error)


@pytest.mark.parametrize("link", ["javascript:alert(1)", "data:text/html,x", "ftp://x.org/a", "http://"])
def test_only_http_project_pages_are_kept(link):
    assert parse_batch(api_json(api_entry(projectPage=link)), "api.json").papers[0].project_url is None
    data = canonical({"title": "T", "abstract": "A.", "project_url": link})
    assert parse_batch(data, "c.json").papers[0].project_url is None


def test_control_characters_in_the_rich_fields_are_removed_with_a_warning():
    entry = api_entry(title="T", ai_summary="A\x1b[2Jsummary.", ai_keywords=["k\u202eey"], projectPage="https://e.org/\x07p")
    batch = parse_batch(api_json(entry), "api.json")
    paper = batch.papers[0]
    assert (paper.ai_summary, paper.keywords, paper.project_url) == ("A[2Jsummary.", ("key",), "https://e.org/p")
    assert batch.warnings == (
        'api.json, entry 1 ("T"): removed 3 control characters from the project link, the AI summary and the keywords',
    )


# --------------------------------------------------------------------------
# links and untrusted text


@pytest.mark.parametrize(
    "link", ["javascript:alert(document.cookie)", "JavaScript:alert(1)", "data:text/html,<b>x</b>", "ftp://x.org/a", "http://"]
)
def test_only_http_links_are_kept(link):
    batch = parse_batch(api_json(api_entry(githubRepo=link)), "api.json")
    assert batch.papers[0].code_url is None
    data = canonical({"title": "T", "abstract": "An abstract.", "url": link, "code_url": link})
    paper = parse_batch(data, "c.json").papers[0]
    assert paper.code_url is None
    assert paper.url is None


def test_bad_code_link_falls_back_to_the_abstract():
    entry = api_entry(githubRepo="javascript:alert(1)", summary="Code at https://gitlab.com/a/b, soon.")
    assert parse_batch(api_json(entry), "api.json").papers[0].code_url == "https://gitlab.com/a/b"


def test_find_code_url_prefers_code_hosts_and_skips_references():
    abstract = (
        "See https://arxiv.org/abs/2401.00001 and https://doi.org/10.1/x. Project page: "
        "https://example.org/project). Code: (https://github.com/a/b)."
    )
    assert find_code_url(abstract) == "https://github.com/a/b"
    assert find_project_url(abstract) == "https://example.org/project"
    # A page that is not on a code host is a project page, never the code.
    assert find_code_url("Demo at https://example.org/demo!") is None
    assert find_project_url("Demo at https://example.org/demo!") == "https://example.org/demo"
    assert find_project_url("Code: https://github.com/a/b.") is None
    for links in ("Prior work: https://arxiv.org/abs/2401.00001.", "Run javascript:alert(1) now."):
        assert find_code_url(links) is None and find_project_url(links) is None


def test_template_syntax_and_tex_are_kept_verbatim():
    abstract = "We bound {{ x }} by $\\alpha$ and {% raw %} <script>alert(1)</script>."
    batch = parse_batch(page("A Title", abstract).encode(), "d.txt", today=LATE_2026)
    assert batch.papers[0].abstract == abstract
    batch = parse_batch(api_json(api_entry(summary=abstract)), "api.json")
    assert batch.papers[0].abstract == abstract


# --------------------------------------------------------------------------
# bad input: every case is a BatchError naming the file and the place


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n  \n", b"\xef\xbb\xbf"], ids=["empty", "whitespace", "bom"])
def test_empty_file(data):
    assert "empty" in str(raises_batch_error(data))


def test_text_without_a_date_line():
    error = raises_batch_error("Some Title\n\nSome abstract text. Another sentence.\n")
    assert "date line" in str(error)


def test_malformed_json_names_line_and_column():
    error = raises_batch_error('[\n  {"paper": {"id": "2503.07605"},}\n]\n', "api.json")
    assert error.where == "line 2, column 34"
    assert str(error).startswith("api.json, line 2, column 34: malformed JSON")


@pytest.mark.parametrize(
    "data",
    ["42", '"a string"', "null", "{}", '{"date": "2025-03-11"}', '{"date": "2025-03-11", "papers": {}}'],
)
def test_json_of_the_wrong_shape(data):
    error = raises_batch_error(data, "x.json", date=date(2025, 3, 11))
    assert "unrecognised JSON" in str(error)


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ("[1]", "entry 1"),
        ('[{"paper": "2503.07605"}]', "entry 1"),
        ('[{"paper": {"id": "2503.07605", "title": "T", "summary": "A.", "authors": "X Y"}}]', "entry 1"),
        ('{"date": "2025-03-11", "papers": [{"title": "T", "abstract": "A."}, 5]}', "papers[1]"),
        ('{"date": "2025-03-11", "papers": [{"title": "T", "abstract": "A.", "authors": "X"}]}', "papers[0]"),
        ('{"date": "2025-03-11", "papers": [{"title": ["T"], "abstract": "A."}]}', "papers[0]"),
    ],
)
def test_json_entries_of_the_wrong_shape_name_the_entry(data, where):
    assert raises_batch_error(data, "x.json", date=date(2025, 3, 11)).where == where


def test_deeply_nested_json():
    assert "nested" in str(raises_batch_error("[" * 100_000, "x.json"))


def test_malformed_atom_names_the_line():
    feed = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom">\n'
        "  <entry>\n"
        "    <title>Unclosed</titel>\n"
        "  </entry>\n"
        "</feed>\n"
    )
    error = raises_batch_error(feed, "feed.xml")
    assert error.where == "line 4"
    assert "malformed feed" in str(error)


def test_xml_that_is_not_a_feed():
    assert "not an Atom feed" in str(raises_batch_error("<html><body>Hi</body></html>", "page.html"))


def test_invalid_utf8_names_the_line_of_the_bad_byte():
    data = page("A Title", "An abstract.", "Caf\xe9 Title", "Another abstract.").encode("latin-1")
    error = raises_batch_error(data)
    assert error.where == "line 9"
    assert "UTF-8" in str(error) and "0xe9" in str(error)


def test_invalid_utf8_in_json_names_the_line():
    data = b'[\n {"paper": {"id": "2503.07605",\n  "title": "Caf\xc3\x28"}}\n]'
    assert raises_batch_error(data, "api.json").where == "line 3"


def test_page_title_without_abstract_names_that_title():
    text = page("First Title", "First abstract.", "Orphan Title", "Third Title", "Third abstract.")
    error = raises_batch_error(text)
    assert error.where == "line 9"
    assert "Orphan Title" in str(error)


def test_page_title_at_the_end_without_abstract():
    error = raises_batch_error(page("First Title", "First abstract.", "Last Title"))
    assert error.where == "line 9"
    assert "Last Title" in str(error)


def test_page_prose_where_a_title_should_be():
    text = page("First Title", "First abstract.", "Stray prose. More prose here. And more.")
    assert raises_batch_error(text).where == "line 9"


def test_api_title_without_abstract_names_the_entry():
    data = api_json(api_entry(), {"paper": {"id": "2503.07703", "title": "No Abstract Here"}})
    error = raises_batch_error(data, "api.json")
    assert error.where == "entry 2"
    assert "No Abstract Here" in str(error)


CONTROLS = ["\x00", "\x07", "\x1b", "\x7f", "\x9b", "\u202e", "\u2066", "\ud800"]


@pytest.mark.parametrize("char", CONTROLS)
def test_control_characters_in_a_title_are_removed_with_a_warning(char):
    if char != "\ud800":  # a lone surrogate can only come from a JSON escape: in a file it is invalid UTF-8
        batch = parse_batch(page(f"Bad{char}Title", "An abstract.", "Good Title", "Another abstract.").encode(),
                            "day.txt", today=LATE_2026)
        assert [p.title for p in batch.papers] == ["BadTitle", "Good Title"]
        assert batch.warnings == ('day.txt, line 5 ("BadTitle"): removed 1 control character from the title',)
    batch = parse_batch(api_json(api_entry(), api_entry(id="2503.07703", title=f"Bad{char}Title")), "a.json")
    assert [p.title for p in batch.papers] == ["A Title", "BadTitle"]
    assert batch.warnings == ('a.json, entry 2 ("BadTitle"): removed 1 control character from the title',)


def test_one_warning_per_entry_counting_every_field():
    bad = api_entry(id="2503.07703", title="Bad\x1b[2JTitle", summary="An\x00 abstract\x07 with\u202e junk.",
                    authors=[{"name": "Eve\x00"}, {"name": "Mallory"}])
    batch = parse_batch(api_json(api_entry(), bad, api_entry(id="2503.07704", title="Clean")), "batch.json")
    assert len(batch.papers) == 3
    paper = batch.papers[1]
    assert (paper.title, paper.abstract, paper.authors) == ("Bad[2JTitle", "An abstract with junk.", ("Eve", "Mallory"))
    assert batch.warnings == (
        'batch.json, entry 2 ("Bad[2JTitle"): removed 5 control characters from the title, the abstract '
        "and the author names",
    )


def test_control_characters_in_canonical_and_atom_batches_are_removed():
    batch = parse_batch(canonical({"title": "T", "abstract": "A\x00b\x1b."}), "c.json")
    assert batch.papers[0].abstract == "Ab."
    assert batch.warnings == ('c.json, papers[0] ("T"): removed 2 control characters from the abstract',)
    atom = ATOM.read_text(encoding="utf-8").replace("</summary>", "\u202e</summary>", 1)
    batch = parse_batch(atom.encode("utf-8"), "feed.xml")
    assert len(batch.warnings) == 1
    assert batch.warnings[0].startswith("feed.xml, entry 1 (") and batch.warnings[0].endswith("from the abstract")
    assert all("\u202e" not in p.abstract for p in batch.papers)


def test_separating_controls_leave_a_space_and_whitespace_is_not_warned_about():
    batch = parse_batch(api_json(api_entry(summary="One\x0ctwo\x1fthree\x85four\r\nfive\tsix.")), "a.json")
    assert batch.papers[0].abstract == "One two three four five six."
    assert batch.warnings == ('a.json, entry 1 ("A Title"): removed 3 control characters from the abstract',)
    clean = parse_batch(api_json(api_entry(summary="Tabs\tand\r\nnew\nlines.")), "a.json")
    assert clean.warnings == ()


def test_a_long_title_is_shortened_in_the_warning():
    title = "A very long title " * 10
    batch = parse_batch(api_json(api_entry(title=title.strip(), summary="x\x00")), "a.json")
    (warning,) = batch.warnings
    assert '("A very long title A very long title A very long title A ver…")' in warning


def test_a_field_left_empty_by_the_removal_is_still_refused():
    error = raises_batch_error(api_json(api_entry(title="\x00\x1b")), "a.json")
    assert error.where == "entry 1" and "title is empty" in str(error)
    error = raises_batch_error(api_json(api_entry(summary="\x07")), "a.json")
    assert error.where == "entry 1" and "abstract" in str(error)


def test_title_length_limit():
    at_limit = "T" * papers.MAX_TITLE_CHARS
    assert parse_batch(api_json(api_entry(title=at_limit)), "a.json").papers[0].title == at_limit
    error = raises_batch_error(api_json(api_entry(title=at_limit + "T")), "a.json")
    assert error.where == "entry 1" and "501" in str(error)
    # in a page, a paragraph that long cannot be a title at all
    assert raises_batch_error(page("T" * 501, "An abstract.")).where == "line 5"


def test_abstract_length_limit():
    at_limit = "a" * papers.MAX_ABSTRACT_CHARS
    assert len(parse_batch(api_json(api_entry(summary=at_limit)), "a.json").papers[0].abstract) == 20_000
    error = raises_batch_error(api_json(api_entry(summary=at_limit + "a")), "a.json")
    assert error.where == "entry 1" and "20,001" in str(error)
    words = ("word " * 4_001).strip() + "."
    assert raises_batch_error(page("A Title", words)).where == "line 5"


@pytest.mark.parametrize("upvotes", ["12", 3.5, True, -1, [1]])
def test_upvotes_must_be_a_whole_number(upvotes):
    error = raises_batch_error(api_json(api_entry(upvotes=upvotes)), "api.json")
    assert error.where == "entry 1" and "upvotes" in str(error)


@pytest.mark.parametrize("arxiv_id", ["2503.076", "250307605", "abc", "2503.07605v", "2503.07605 x", 2503.07605])
def test_malformed_arxiv_id(arxiv_id):
    error = raises_batch_error(api_json(api_entry(id=arxiv_id)), "api.json")
    assert error.where == "entry 1" and "arXiv id" in str(error)


def test_missing_file(isolated):
    with pytest.raises(BatchError) as info:
        load_batch(isolated / "nope.json")
    assert info.value.exit_code == 2
    assert str(info.value) == f"{isolated / 'nope.json'}: no such file"


def test_directory(isolated):
    with pytest.raises(BatchError) as info:
        load_batch(isolated)
    assert info.value.exit_code == 2
    assert str(info.value).startswith(f"{isolated}:") and "directory" in str(info.value)


def test_file_over_the_size_limit(isolated, monkeypatch):
    target = isolated / "big.json"
    target.write_text("[]" + " " * 100)
    monkeypatch.setattr(papers, "MAX_FILE_BYTES", 64)
    with pytest.raises(BatchError) as info:
        load_batch(target, date=date(2025, 3, 11))
    assert "limit" in str(info.value)

