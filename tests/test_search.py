"""The paper archive: full-text search in the store (SQLite's FTS5 and
PostgreSQL's tsvector, through the ``store`` fixture: both databases), its
migration, and the ``/papers`` pages through Flask's test client.

- every word must match, in the title, the abstract or the authors;
  "quoted words" match as a phrase; a paper on two days is one result with
  both days;
- results come by relevance, then by recency (the latest day a paper was
  in an edition);
- the index follows the papers: new ones, richer copies, a day stored again;
- no query is FTS syntax: operators, column filters, quotes, NUL bytes,
  unicode and 10,000 characters never raise (but the one refusal, too
  long) and never answer 500 (hypothesis);
- migration 0005 indexes the papers stored before it, and a database made
  from the metadata gets the same search structures as a migrated one;
- keys with a slash (old-style arXiv ids) or a colon (``title:…``) route to
  their page;
- an arXiv id, in any of the forms readers paste, finds its paper first;
- the public pages link to the sign-up page (a reader's own pages do not),
  the web edition links each paper to its archive page, and a paper's page
  links to its Hugging Face page with its GitHub stars and comments.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import urlsplit

import lxml.html
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from conftest import EXAMPLE, _reset_postgres
from newsletter.core.config import Settings
from newsletter.core.errors import InvalidQuery
from newsletter.core.models import Batch, Paper, paper_key, paper_path
from newsletter.issue.render import card_teaser, render_issue
from newsletter.papers.batches import load_batch
from newsletter.store import migrate, open_store
from newsletter.store.schema import appearances_table, metadata, papers_table
from newsletter.store.search import MAX_QUERY_CHARS, MAX_TERMS, fts5_match, parse_query, snippet_pieces
from newsletter.readers.tokens import Signer

DAY1 = dt.date(2025, 3, 10)
DAY2 = dt.date(2025, 3, 11)
DAY3 = dt.date(2025, 3, 12)

BRANES = Paper(title="Branes and Strings in Diffusion Geometry",
               abstract="We relate brane dynamics to heat kernels on curved spaces.",
               authors=("Edward Witten",), arxiv_id="hep-th/9901001", url="https://arxiv.org/abs/hep-th/9901001",
               upvotes=3)
KNOTS = Paper(title="Knot Invariants from Quantum Groups",
              abstract="Colored Jones polynomials of knots via quantum groups at roots of unity.",
              authors=("Vaughan Jones", "Edward Witten"), arxiv_id="math.GT/0309136", upvotes=1)
ATTENTION = Paper(title="Sparse Attention at Scale",
                  abstract="We study how attention heads share a concept bottleneck while diffusion of gradients "
                           "slows training.",
                  authors=("Ada Lovelace", "Alan Turing"), arxiv_id="2503.00001",
                  url="https://arxiv.org/abs/2503.00001", code_url="https://github.com/example/sparse",
                  project_url="https://sparse.example.org", upvotes=42)
STRASSE = Paper(title="Straße Networks: Routing with Ñoño Flows",
                abstract="Routing networks learn bottleneck concept maps from street graphs.",
                authors=("Bób Ñoño",), upvotes=7)  # no arXiv id: a title key
# A title key beyond ASCII.
CJK = Paper(title="深度学习的扩散模型", abstract="扩散模型 survey of generative models.", upvotes=0)
SEED = Paper(title="A Seed Paper Named by a Reader", abstract="Holography of zebrafish spectra.",
             authors=("Someone Private",), arxiv_id="2311.12092")


@pytest.fixture
def archive(store):
    """Three days: BRANES on the first; ATTENTION on the first and the
    second (rank 0 then 1); the second also holds STRASSE, the third KNOTS
    and CJK; SEED stored without any day. The issues of the first two days are
    published, the third's not stored."""
    store.store_batch(Batch(DAY1, (ATTENTION, BRANES)))
    store.store_batch(Batch(DAY2, (STRASSE, ATTENTION)))
    store.store_batch(Batch(DAY3, (KNOTS, CJK)))
    store.store_papers([SEED])
    for day, papers in ((DAY1, (ATTENTION, BRANES)), (DAY2, (STRASSE, ATTENTION))):
        store.save_issue(render_issue(Batch(day, papers, source="test"), Settings()), publish=True)
    return store


def keys(found) -> list[str]:
    return [hit.key for hit in found.hits]


# --------------------------------------------------------------------------
# reading a query


def test_a_query_is_words_and_quoted_phrases():
    assert parse_query('concept "diffusion  models" Bottleneck') == (("concept", "diffusion models", "Bottleneck"),
                                                                      False)
    assert parse_query("“sparse attention” heads") == (("sparse attention", "heads"), False)
    # An unclosed quote is ignored; words with no letter or digit and repeats are dropped.
    assert parse_query('"open quote * - :: concept CONCEPT') == (("open", "quote", "concept"), False)
    assert parse_query("a\x00b \x07c") == (("ab", "c"), False)
    assert parse_query("   ") == ((), False)


def test_a_query_keeps_its_first_terms_and_refuses_being_too_long():
    words = [f"w{n}" for n in range(MAX_TERMS + 5)]
    assert parse_query(" ".join(words)) == (tuple(words[:MAX_TERMS]), True)
    parse_query("x" * MAX_QUERY_CHARS)
    with pytest.raises(InvalidQuery) as info:
        parse_query("x" * (MAX_QUERY_CHARS + 1))
    assert info.value.exit_code == 2 and "at most 500" in str(info.value)


def test_each_term_is_one_quoted_fts5_string():
    assert fts5_match(("concept", 'say "hi"', "NEAR(")) == '"concept" "say ""hi""" "NEAR("'


def test_snippet_pieces_mark_the_matched_words():
    assert snippet_pieces("…a \x02concept\x03 and \x02bottleneck\x03.") == (
        ("…a ", False), ("concept", True), (" and ", False), ("bottleneck", True), (".", False))
    assert snippet_pieces("no match") == (("no match", False),)


# --------------------------------------------------------------------------
# searching the store (SQLite and PostgreSQL)


def test_every_word_must_match_in_title_abstract_or_authors(archive):
    assert keys(archive.search_papers("diffusion")) == ["hep-th/9901001", "2503.00001"]  # title, then abstract
    assert set(keys(archive.search_papers("Witten"))) == {"math.GT/0309136", "hep-th/9901001"}  # authors
    assert keys(archive.search_papers("witten knots")) == ["math.GT/0309136"]  # "knots" is in the title
    assert keys(archive.search_papers("witten zebrafish")) == []
    # Stemming: another form of the word matches.
    assert keys(archive.search_papers("knot")) == ["math.GT/0309136"]
    assert keys(archive.search_papers("routes")) == [paper_key(STRASSE)]


def test_quoted_words_match_as_a_phrase(archive):
    assert set(keys(archive.search_papers("bottleneck concept"))) == {"2503.00001", paper_key(STRASSE)}
    assert keys(archive.search_papers('"concept bottleneck"')) == ["2503.00001"]
    assert keys(archive.search_papers('"bottleneck concept"')) == [paper_key(STRASSE)]


def test_a_paper_on_two_days_is_one_result_with_both_days(archive):
    found = archive.search_papers("attention")
    assert found.total == 1 and len(found.hits) == 1
    hit = found.hits[0]
    assert hit.paper.title == ATTENTION.title and hit.paper.authors == ATTENTION.authors
    assert [(a.date, a.rank, a.upvotes, a.issue) for a in hit.appearances] == [
        (DAY2, 1, 42, True), (DAY1, 0, 42, True)]  # newest first; both days' issues are stored
    assert hit.snippet and any(matched and text.lower() == "attention" for text, matched in hit.snippet)
    knots = archive.search_papers("jones").hits[0]
    assert [(a.date, a.issue) for a in knots.appearances] == [(DAY3, False)]  # no stored issue that day


def test_results_come_by_relevance_then_by_recency(store):
    # "tensor" in the title weighs more than in the abstract; two papers
    # with the same text are equally relevant: the later one comes first.
    title = Paper(title="Tensor Sketches", abstract="Randomized sketches for large tensor products.",
                  arxiv_id="2501.00001")
    same = dict(title="Graph Methods Revisited", abstract="We revisit tensor decompositions for graphs.")
    store.store_batch(Batch(dt.date(2025, 1, 1), (title,)))
    store.store_batch(Batch(dt.date(2025, 1, 2), (Paper(**same, arxiv_id="2501.00002"),)))
    store.store_batch(Batch(dt.date(2025, 1, 3), (Paper(**same, arxiv_id="2501.00003"),)))
    store.store_batch(Batch(dt.date(2025, 1, 4), (Paper(title="Unrelated", abstract="Nothing here."),)))
    assert keys(store.search_papers("tensor")) == ["2501.00001", "2501.00003", "2501.00002"]
    # Recency is a paper's latest day: the older copy appearing again comes first.
    store.store_batch(Batch(dt.date(2025, 1, 5), (Paper(**same, arxiv_id="2501.00002"),)))
    assert keys(store.search_papers("tensor")) == ["2501.00001", "2501.00002", "2501.00003"]


def test_pages_of_results(store):
    papers = tuple(Paper(title=f"Lattice study number {n}", abstract="Lattice gauge theory on a torus.",
                         arxiv_id=f"2502.{n:05d}") for n in range(25))
    store.store_batch(Batch(DAY1, papers))
    first, second, third = (store.search_papers("lattice torus", page=n, per_page=10) for n in (1, 2, 3))
    assert (first.total, first.pages, first.has_more) == (25, 3, True)
    assert (len(first.hits), len(second.hits), len(third.hits)) == (10, 10, 5)
    assert not third.has_more
    assert len(set(keys(first)) | set(keys(second)) | set(keys(third))) == 25
    past = store.search_papers("lattice", page=9, per_page=10)
    assert (past.hits, past.total, past.has_more) == ((), 25, False)
    assert store.search_papers("lattice", page=10**30).hits == ()  # far past any page: no overflow
    with pytest.raises(ValueError):
        store.search_papers("lattice", page=0)


def test_no_query_lists_the_latest_papers_first(archive):
    found = archive.search_papers("")
    assert found.terms == () and found.total == 5  # not the seed paper
    assert keys(found) == ["math.GT/0309136", paper_key(CJK), paper_key(STRASSE), "2503.00001", "hep-th/9901001"]
    assert keys(archive.search_papers("  ", page=2, per_page=3)) == ["2503.00001", "hep-th/9901001"]


def test_papers_no_edition_carried_are_not_in_the_archive(archive):
    # A seed paper a reader named on their preferences page is stored for
    # their picks, but it is no edition's: it is not shown to anyone.
    assert archive.search_papers("zebrafish").hits == ()
    assert archive.search_papers("zebrafish").total == 0
    assert archive.paper("2311.12092") is None
    assert archive.papers(["2311.12092"])  # (it is stored)


def test_one_paper_with_its_days(archive):
    paper, days = archive.paper("2503.00001")
    assert paper.code_url == ATTENTION.code_url and paper.project_url == ATTENTION.project_url
    assert [(a.date, a.rank) for a in days] == [(DAY2, 1), (DAY1, 0)]
    assert archive.paper("hep-th/9901001")[0].title == BRANES.title
    assert archive.paper(paper_key(STRASSE))[0].title == STRASSE.title
    assert archive.paper("nope") is None


def fts5_consistent(store) -> None:
    """On SQLite, FTS5's own check that the index matches the papers."""
    if store.engine.dialect.name == "sqlite":
        with store.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO papers_search(papers_search) VALUES ('integrity-check')")


def test_the_index_follows_the_papers(store):
    first = Paper(title="Photonic Crystals", abstract="Bandgaps in periodic media.", arxiv_id="2504.00001")
    store.store_batch(Batch(DAY1, (first,)))
    store.store_batch(Batch(DAY1, (first,)))  # the same day again: nothing new
    assert store.search_papers("bandgaps").total == 1
    # A richer copy (a longer abstract, a new title) replaces the indexed text.
    richer = Paper(title="Photonic Metamaterials", abstract="Negative refraction in engineered metamaterial "
                   "lattices, measured at optical frequencies.", authors=("Grace Hopper",), arxiv_id="2504.00001")
    store.store_batch(Batch(DAY2, (richer,)))
    assert keys(store.search_papers("refraction hopper")) == ["2504.00001"]
    assert keys(store.search_papers("metamaterials")) == ["2504.00001"]
    assert store.search_papers("bandgaps").hits == ()
    assert store.search_papers("crystals").hits == ()
    fts5_consistent(store)


HOSTILE = [
    '"', '""', '"""', "'", "AND", "AND OR", "OR NOT", "NOT", "NEAR(", "NEAR(a b, 2)", "NEAR", "*", "a*", "^",
    "^diffusion", "title:", "col:", "title:diffusion", "{title abstract}: diffusion", "- diffusion", "-", "+", "(",
    ")", "()", '"(" ")"', "\\", ";", "'; DROP TABLE papers; --", "\x00", "diffusion\x00", "\x00\x00\x00", "😀",
    "\u202e", "\ufeff", "\u0301", "%", "_", "%_%", "a & b | !c", "diffusion:*", "<->", "<script>alert(1)</script>",
    "字" * 200, "ℵ₀ ∞ ∑", " ".join(["x"] * 250), "diffusion\" OR \"x", "x" * MAX_QUERY_CHARS, "\t\n\r",
]


@pytest.mark.parametrize("query", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_queries_are_words_never_syntax(archive, query):
    found = archive.search_papers(query)
    assert found.total >= 0
    assert archive.paper("2503.00001") is not None  # the papers are still there


def test_operators_and_column_filters_are_searched_as_words(archive):
    # As FTS5 syntax these would be a column filter, an OR, a NOT, a prefix:
    # here each is words that must all be in the paper.
    assert archive.search_papers("abstract:diffusion").hits == ()  # no paper has "abstract diffusion"
    assert archive.search_papers("diffusion OR zebrafish").hits == ()
    assert archive.search_papers("attention NOT zebrafish").hits == ()
    assert archive.search_papers("brane*").total == archive.search_papers("brane").total == 1
    assert archive.search_papers("bran*").hits == ()  # no prefix search


def test_nul_bytes_and_unicode(archive):
    assert keys(archive.search_papers("Ñoño\x00")) == [paper_key(STRASSE)]
    assert keys(archive.search_papers("Bób")) == [paper_key(STRASSE)]
    assert keys(archive.search_papers("Straße")) == [paper_key(STRASSE)]
    with pytest.raises(InvalidQuery):
        archive.search_papers("x" * 10_000)


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(query=st.text(max_size=80) | st.text(alphabet='"*():^-+ ANDORNEAR\x00ab', max_size=40))
def test_generated_queries_never_raise(archive, query):
    found = archive.search_papers(query, per_page=5)
    assert len(found.hits) <= 5 and found.total >= len(found.hits)


# --------------------------------------------------------------------------
# the schema: migration 0005, and a database made from the metadata


def test_migration_0005_indexes_the_papers_stored_before_it(empty_database_url):
    database_url = empty_database_url
    from alembic import command

    if database_url.startswith("sqlite"):
        Path(make_url(database_url).database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            command.upgrade(migrate.alembic_config(conn), "0004")
            stamp = dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)
            conn.execute(insert(papers_table), [
                dict(key=key, arxiv_id=key, title=title, abstract=abstract, authors='["Emmy Noether"]',
                     keywords="[]", categories="[]", updated_at=stamp)
                for key, title, abstract in (("2401.00001", "Symmetries and Conservation", "Invariant actions."),
                                             ("2401.00002", "Rings of Invariants", "Ideals and symmetries."))])
            conn.execute(insert(appearances_table), [dict(date="2024-01-02", rank=0, paper_key="2401.00001"),
                                                     dict(date="2024-01-03", rank=0, paper_key="2401.00002")])
    finally:
        engine.dispose()
    store = open_store(database_url)
    try:
        assert str(store.migration) == f"Upgraded the database from 0004 to {migrate.head()}."
        assert keys(store.search_papers("symmetries")) == ["2401.00001", "2401.00002"]  # title first
        assert keys(store.search_papers("noether invariants")) == ["2401.00002", "2401.00001"]
        # and the ones stored afterwards are indexed as they come
        store.store_batch(Batch(DAY1, (Paper(title="Noether Normalization", abstract="Polynomial rings."),)))
        assert store.search_papers("noether").total == 3
        fts5_consistent(store)
    finally:
        store.close()


def search_structures(database_url: str) -> list:
    """The search structures of a database, as the database describes them."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                return conn.execute(text("SELECT type, name, sql FROM sqlite_master WHERE name LIKE 'papers_search%'"
                                         " ORDER BY name")).all()
            return conn.execute(text(
                "SELECT column_name, generation_expression FROM information_schema.columns "
                "WHERE table_name = 'papers' AND column_name = 'search' "
                "UNION ALL SELECT indexname, indexdef FROM pg_indexes WHERE indexname = 'ix_papers_search'")).all()
    finally:
        engine.dispose()


def test_a_database_made_from_the_metadata_has_the_migrations_search(database_url, tmp_path):
    open_store(database_url).close()
    migrated = search_structures(database_url)
    assert len(migrated) == (8 if database_url.startswith("sqlite") else 2)  # table, 4 shadow tables, 3 triggers
    if database_url.startswith("sqlite"):
        database_url = f"sqlite:///{tmp_path / 'from-metadata.db'}"
    else:
        _reset_postgres(empty=True)
    engine = create_engine(database_url)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()
    assert search_structures(database_url) == migrated


# --------------------------------------------------------------------------
# the pages


@pytest.fixture
def client(archive, web_client):
    return web_client()


def html_of(response):
    return lxml.html.document_fromstring(response.get_data(as_text=True))


def test_the_results_page(client):
    response = client.get("/papers", query_string={"q": "witten"})
    assert response.status_code == 200
    doc = html_of(response)
    assert doc.xpath("string(//h2[@id='results'])").strip() == "2 papers found"
    assert doc.xpath("//input[@id='q']/@value") == ["witten"]
    assert doc.xpath("//label[@for='q']") and doc.xpath("//form[@role='search']/@action") == ["/papers"]
    results = {r.xpath("string(.//h3)"): r for r in doc.xpath("//ol[@class='results']/li")}
    assert set(results) == {KNOTS.title, BRANES.title}
    knots, branes = results[KNOTS.title], results[BRANES.title]
    # The title links to the paper itself; without a link, to its page here.
    assert branes.xpath(".//h3/a/@href") == [BRANES.url]
    assert knots.xpath(".//h3/a/@href") == ["/papers/math.GT/0309136"]
    assert branes.xpath("string(.//p[@class='authors'])") == "Edward Witten"
    assert [a.get("href") for a in branes.xpath(".//p[@class='days']/a")] == ["/issues/2025-03-10",
                                                                             "/papers/hep-th/9901001"]
    # KNOTS' day has no stored issue: named, not linked.
    assert "Wed 12 Mar 2025 (#1, 1 upvote)" in " ".join(knots.xpath("string(.//p[@class='days'])").split())
    assert knots.xpath(".//p[@class='days']/a/@href") == ["/papers/math.GT/0309136"]


def test_matched_words_are_marked_and_everything_is_escaped(client, archive):
    archive.store_batch(Batch(DAY3, (KNOTS, Paper(title="<b>Bold</b> claims & <script>x()</script>",
                                                  abstract="An <i>escaped</i> abstract about claims."))))
    body = client.get("/papers", query_string={"q": "claims"}).get_data(as_text=True)
    assert "<script>x()" not in body and "&lt;script&gt;x()" in body
    assert "<i>escaped</i>" not in body
    doc = lxml.html.document_fromstring(body)
    assert [m.text for m in doc.xpath("//p[@class='snippet']/mark")] == ["claims"]


def test_a_paper_on_two_days_is_shown_once_with_both_days(client):
    doc = html_of(client.get("/papers", query_string={"q": "sparse attention"}))
    results = doc.xpath("//ol[@class='results']/li")
    assert len(results) == 1
    assert results[0].xpath(".//p[@class='days']/a/@href") == ["/issues/2025-03-11", "/issues/2025-03-10",
                                                                "/papers/2503.00001"]
    assert "#2, 42 upvotes" in results[0].xpath("string(.//p[@class='days'])")


def test_no_query_shows_the_form_and_the_latest_papers(client):
    for path in ("/papers", "/papers?q=", "/papers?q=+++", "/papers?page=abc", "/papers?page=-3"):
        response = client.get(path)
        assert response.status_code == 200, path
        doc = html_of(response)
        assert doc.xpath("//input[@id='q']"), path
        assert doc.xpath("string(//h2[@id='results'])").startswith("Latest papers")
        assert len(doc.xpath("//ol[@class='results']/li")) == 5
    assert client.get("/papers/?q=x").headers["Location"].endswith("/papers?q=x")
    doc = html_of(client.get("/papers?q=***"))
    assert "has no words to search for" in doc.xpath("string(//p[@role='status'])")


def test_pages_link_to_each_other(client, archive):
    archive.store_batch(Batch(DAY3, tuple(Paper(title=f"Gauge study {n}", abstract="Gauge fields.",
                                                arxiv_id=f"2502.{n:05d}") for n in range(45))))
    doc = html_of(client.get("/papers", query_string={"q": "gauge"}))
    assert doc.xpath("//nav[@aria-label='Result pages']//a[@rel='next']/@href") == ["/papers?q=gauge&page=2"]
    assert not doc.xpath("//a[@rel='prev']")
    doc = html_of(client.get("/papers?q=gauge&page=3"))
    assert len(doc.xpath("//ol[@class='results']/li")) == 5
    assert doc.xpath("//ol[@class='results']/@start") == ["41"]
    assert doc.xpath("//a[@rel='prev']/@href") == ["/papers?q=gauge&page=2"] and not doc.xpath("//a[@rel='next']")
    assert "Page 3 of 3" in doc.xpath("string(//nav)")
    doc = html_of(client.get("/papers?q=gauge&page=99"))
    assert "no papers on this page" in doc.text_content()
    assert doc.xpath("//a[@rel='prev']/@href") == ["/papers?q=gauge&page=3"]


def test_a_too_long_query_is_refused_with_the_form(client):
    response = client.get("/papers", query_string={"q": "x" * 10_000})
    assert response.status_code == 400
    doc = html_of(response)
    alert = doc.xpath("string(//p[@role='alert'])")
    assert "too long" in alert and "10,000" in alert and "500" in alert
    assert len(doc.xpath("//input[@id='q']/@value")[0]) <= MAX_QUERY_CHARS
    assert doc.xpath("//input[@id='q']/@aria-invalid") == ["true"]


@pytest.mark.parametrize("query", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_queries_never_fail_the_page(client, query):
    assert client.get("/papers", query_string={"q": query}).status_code == 200


def test_raw_hostile_query_strings_never_fail_the_page(client):
    for raw in ("q=%00", "q=%FF%FE", "q=%ED%A0%80", "q=%22&page=%00", "q=a&q=b", "page=99999999999999999999999",
                "q=" + "%22" * 600, "q=NEAR%28&page=2"):
        assert client.get(f"/papers?{raw}").status_code in (200, 400), raw


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(query=st.text(max_size=600), page=st.text(max_size=6))
def test_generated_queries_never_fail_the_page(client, query, page):
    response = client.get("/papers", query_string={"q": query, "page": page})
    assert response.status_code == (400 if len(query.strip()) > MAX_QUERY_CHARS else 200)


@pytest.mark.parametrize("key, title", [
    ("hep-th/9901001", BRANES.title),  # an old-style arXiv id: a slash in the key
    ("math.GT/0309136", KNOTS.title),
    ("2503.00001", ATTENTION.title),
    (paper_key(STRASSE), STRASSE.title),  # a title key: a colon
    (paper_key(CJK), CJK.title),  # a title key beyond ASCII
])
def test_each_key_routes_to_its_paper(client, key, title):
    path = paper_path(key)
    assert urlsplit(path).path == path and "?" not in path and "#" not in path
    response = client.get(path)
    assert response.status_code == 200
    doc = html_of(response)
    assert doc.xpath("string(//h1)") == title
    # The results page links to the same address.
    found = html_of(client.get("/papers", query_string={"q": title.split()[0]}))
    assert path in found.xpath("//p[@class='days']/a/@href")


def test_the_paper_page(client):
    doc = html_of(client.get("/papers/2503.00001"))
    assert doc.xpath("string(//h1)") == ATTENTION.title
    assert doc.xpath("string(//p[@class='authors'])") == "Ada Lovelace, Alan Turing"
    assert doc.xpath("string(//p[@class='abstract'])") == ATTENTION.abstract
    # It came with upvotes: from the daily papers, so its page there is linked.
    assert [(a.text, a.get("href")) for a in doc.xpath("//ul[@class='links']//a")] == [
        ("Paper", ATTENTION.url), ("PDF", "https://arxiv.org/pdf/2503.00001"),
        ("Hugging Face", "https://huggingface.co/papers/2503.00001"), ("Code", ATTENTION.code_url),
        ("Project page", ATTENTION.project_url)]
    assert not doc.xpath("//span[@class='stars']") and not doc.xpath("//p[@id='comments']")  # not known
    days = doc.xpath("//ul[@class='days']/li")
    assert [d.xpath("a/@href") for d in days] == [["/issues/2025-03-11"], ["/issues/2025-03-10"]]
    assert days[0].text_content() == "Tue 11 Mar 2025: #2 of the day, 42 upvotes"
    knots = html_of(client.get("/papers/math.GT/0309136"))
    assert knots.xpath("//ul[@class='days']/li/a") == []  # its day has no stored issue: not linked
    assert "Wed 12 Mar 2025: #1 of the day, 1 upvote" in knots.xpath("string(//ul[@class='days'])")


def test_the_archive_shows_a_papers_tldr_and_its_page_the_whole_abstract(client, archive):
    nas = next(p for p in load_batch(EXAMPLE, date=DAY2).papers if p.title.startswith("Robustifying"))
    archive.store_batch(Batch(DAY3, (nas,)))
    tldr = card_teaser(nas)
    assert tldr.startswith("We propose the robustifying")
    latest = html_of(client.get("/papers"))
    result = next(r for r in latest.xpath("//ol[@class='results']/li") if r.xpath("string(.//h3)") == nas.title)
    assert result.xpath("string(.//p[@class='snippet'])") == tldr
    page = html_of(client.get(paper_path(paper_key(nas))))
    assert page.xpath("string(//p[@class='tldr'])") == "TL;DR " + tldr
    assert page.xpath("string(//p[@class='abstract'])") == nas.abstract
    # An abstract that is its own TL;DR is not shown twice.
    assert html_of(client.get("/papers/2503.00001")).xpath("//p[@class='tldr']") == []


@pytest.mark.parametrize("path", ["/papers/nope", "/papers/2311.12092", "/papers/hep-th", "/papers/hep-th/",
                                  "/papers/title:", "/papers/%00", "/papers/%ED%A0%80"])
def test_unknown_papers_and_seed_papers_are_not_found(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "Not found" in response.get_data(as_text=True)


def test_the_issues_page_links_to_the_search(client):
    assert html_of(client.get("/issues/")).xpath("//a[text()='Search the papers']/@href") == ["/papers"]


def test_a_search_matching_more_than_it_ranks_ranks_the_papers_stored_last(store, web_client, monkeypatch):
    from newsletter.store import search

    monkeypatch.setattr(search, "MAX_RANKED", 3)
    # Five papers about graphs, stored a day apart; the oldest has the word
    # in its title (the best match of all), the others in their abstracts.
    days = [DAY1 + dt.timedelta(days=n) for n in range(5)]
    for n, day in enumerate(days):
        title = "Graph Graph Graph" if n == 0 else f"Paper {n}"
        store.store_batch(Batch(day, (Paper(title, f"A study {n} of one graph.", arxiv_id=f"2503.1000{n}"),)))
    found = store.search_papers("graph")
    assert (found.total, found.more) == (3, True) and found.pages == 1
    # The three stored last are ranked; the title match, stored first, is
    # beyond them. Equal matches: the most recently carried first.
    assert keys(found) == ["2503.10004", "2503.10003", "2503.10002"]
    assert "More than 3 papers found" in " ".join(
        web_client().get("/papers?q=graph").get_data(as_text=True).split())
    # A narrower search ranks all its matches.
    narrow = store.search_papers('graph "Graph Graph"')
    assert (narrow.total, narrow.more, keys(narrow)) == (1, False, ["2503.10000"])


# --------------------------------------------------------------------------
# an arXiv id


CITING = Paper(title="Following Up on Sparse Heads", abstract="We extend 2503.00001 to longer contexts.",
               authors=("Grace Hopper",), arxiv_id="2504.00002", upvotes=2)
ID_FORMS = ["2503.00001", "2503.00001v2", "arXiv:2503.00001", "ARXIV:2503.00001v1",
            "https://arxiv.org/abs/2503.00001v1", "https://arxiv.org/pdf/2503.00001", "arxiv.org/abs/2503.00001",
            " https://arxiv.org/pdf/2503.00001v3.pdf "]


@pytest.mark.parametrize("query", ID_FORMS)
def test_an_arxiv_id_finds_its_paper_first(archive, query):
    archive.store_batch(Batch(DAY3, (KNOTS, CJK, CITING)))
    found = archive.search_papers(query)
    assert keys(found)[0] == "2503.00001"
    assert found.total == len(found.hits)
    # Then what its words find: a paper whose abstract names the id.
    assert set(keys(found)[1:]) <= {"2504.00002"}
    assert keys(archive.search_papers("2503.00001")) == ["2503.00001", "2504.00002"]


def test_an_old_style_arxiv_id_finds_its_paper(archive):
    for query in ("hep-th/9901001", "hep-th/9901001v2", "https://arxiv.org/abs/hep-th/9901001"):
        assert keys(archive.search_papers(query))[:1] == ["hep-th/9901001"], query


def test_an_id_no_edition_carried_and_other_queries_search_as_before(archive):
    assert keys(archive.search_papers("2311.12092")) == []  # SEED: stored, in no edition
    assert keys(archive.search_papers("2599.99999")) == []
    assert set(keys(archive.search_papers("witten"))) == {"hep-th/9901001", "math.GT/0309136"}
    # An id among other words is no id: every word must match, as always.
    assert keys(archive.search_papers("2503.00001 attention")) == []


def test_the_exact_paper_is_counted_once_across_pages(archive):
    archive.store_batch(Batch(DAY3, (KNOTS, CJK, CITING)))
    first, second, third = (archive.search_papers("2503.00001", page, 1) for page in (1, 2, 3))
    assert [keys(first), keys(second), keys(third)] == [["2503.00001"], ["2504.00002"], []]
    assert first.total == second.total == third.total == 2 and first.has_more and not second.has_more


def test_the_results_page_for_an_arxiv_link(client):
    doc = html_of(client.get("/papers", query_string={"q": "https://arxiv.org/abs/2503.00001v1"}))
    assert doc.xpath("string(//h2[@id='results'])").strip() == "1 paper found"
    assert doc.xpath("//ol[@class='results']/li[1]//h3/a/@href") == [ATTENTION.url]
    assert "an arXiv id or link finds that paper" in doc.xpath("string(//p[@id='q-hint'])")


# --------------------------------------------------------------------------
# the links of the public pages


def subscribe_links(response) -> list[str]:
    return html_of(response).xpath("//a[normalize-space()='Subscribe']/@href")


def test_every_public_page_links_to_the_sign_up_page(client):
    for path in ("/issues/", "/issues/2025-03-10", "/issues/2025-03-11", "/papers", "/papers?q=witten",
                 "/papers?q=zyzzyva", "/papers?q=2503.00001", "/papers/2503.00001", "/papers/hep-th/9901001",
                 paper_path(paper_key(CJK))):
        response = client.get(path)
        assert response.status_code == 200, path
        links = subscribe_links(response)
        assert links and all(urlsplit(href).path == "/subscribe" for href in links), (path, links)
    assert client.get("/subscribe").status_code == 200


def test_a_readers_own_pages_have_no_sign_up_link(store, client):
    reader, _ = store.add("reader@example.org", "Reader")
    signer = Signer(client.application.extensions["newsletter"].settings.secret_key)
    for path in (f"/u/{signer.unsubscribe_token(reader.ref)}", f"/p/{signer.preferences_token(reader.ref)}",
                 "/u/forged", "/p/forged", "/f/forged/up", "/subscribe"):
        response = client.get(path)
        assert response.status_code in (200, 400), path
        assert subscribe_links(response) == [], path


def test_the_web_edition_links_each_paper_to_its_archive_page(client):
    doc = html_of(client.get("/issues/2025-03-11"))
    # A paper without an arXiv id links it from its title, the others from
    # an "In the archive" link beside their own page's.
    titles = doc.xpath("//a[@class='t']/@href")
    archive_links = doc.xpath("//a[normalize-space()='In the archive']/@href")
    assert [urlsplit(href).path for href in archive_links] == ["/papers/2503.00001"]
    assert urlsplit(titles[0]).path == paper_path(paper_key(STRASSE)) and len(titles) == 2
    archive_links.append(titles[0])
    for href in archive_links:
        assert client.get(urlsplit(href).path).status_code == 200, href


def test_the_paper_page_shows_its_stars_and_comments(store, web_client):
    known = Paper(title="Counted Everywhere", abstract="Stars and comments.", arxiv_id="2505.00003",
                  code_url="https://github.com/example/counted", github_stars=1234, comment_count=1)
    atom = Paper(title="Straight From arXiv", abstract="No upvotes anywhere.", arxiv_id="2505.00004",
                 url="https://arxiv.org/abs/2505.00004", code_url="https://gitlab.com/example/atom", comment_count=None)
    untitled = Paper(title="No Id But Comments", abstract="Counted.", comment_count=3)
    store.store_batch(Batch(DAY1, (known, atom, untitled)))
    client = web_client()
    doc = html_of(client.get("/papers/2505.00003"))
    assert [(a.text, a.get("href")) for a in doc.xpath("//ul[@class='links']//a")] == [
        ("PDF", "https://arxiv.org/pdf/2505.00003"), ("Hugging Face", "https://huggingface.co/papers/2505.00003"),
        ("Code", known.code_url)]
    code = doc.xpath("//ul[@class='links']/li[a='Code']")[0]
    assert " ".join(code.text_content().split()) == "Code ★ 1,234 stars"
    assert code.xpath(".//span[@aria-hidden='true']/text()") == ["★ "]
    assert doc.xpath("string(//p[@id='comments'])") == "1 comment on Hugging Face"
    # No upvotes, no comments: not from the daily papers, no page there.
    doc = html_of(client.get("/papers/2505.00004"))
    assert [a.text for a in doc.xpath("//ul[@class='links']//a")] == ["Paper", "PDF", "Code"]
    assert not doc.xpath("//span[@class='stars']") and not doc.xpath("//p[@id='comments']")
    # No arXiv id: no page there, its comments all the same.
    doc = html_of(client.get(paper_path(paper_key(untitled))))
    assert not doc.xpath("//ul[@class='links']")
    assert doc.xpath("string(//p[@id='comments'])") == "3 comments on Hugging Face"
