"""The paper archive: full-text search over every paper the newsletter
carried (title, abstract, authors), and one paper with the days it
appeared.

Each database searches with its own machinery (see ``schema.SEARCH_DDL``):
SQLite's FTS5, ranked by bm25, and PostgreSQL's tsvector, ranked by
ts_rank, both with English stemming ("models" finds "model"). A query is
never handed to either as syntax: it is read here into terms (words and
"quoted phrases", see :func:`parse_query`), and each term is given to the
database as a quoted phrase (FTS5) or through ``phraseto_tsquery``
(PostgreSQL), all of them required. So no query, however hostile, is an
FTS syntax error or changes what is searched.

A query that names an arXiv id (``2503.01234``, ``2503.01234v2``,
``arXiv:2503.01234``, an arxiv.org abstract or PDF link) finds that paper
first, then whatever the words find as with any other query.

The archive holds the papers that appeared in at least one day's edition:
a paper stored only because a reader named it as a seed paper (fetched
from arXiv) is in no edition, and is neither found nor shown.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.engine import Connection

from newsletter.core.errors import InvalidQuery
from newsletter.core.models import EditionKind, Paper, arxiv_id_of
from newsletter.store.papers import paper_from_row
from newsletter.store.schema import appearances_table, issues_table, papers_table
from newsletter.core.text import strip_controls

MAX_QUERY_CHARS = 500  # longer queries are refused (InvalidQuery)
MAX_TERMS = 20  # words and phrases searched for; the rest are left out (SearchPage.cut)
MAX_PER_PAGE = 100
MAX_PAGE = 10_000  # pages after it are never read (they would be past any real archive)
# A search ranks at most this many matching papers, the most recently
# stored: ranking every match of a word nearly every paper has (scoring
# each) takes the database most of a second at 100,000 papers, and nobody
# pages through thousands of results. Fewer matches are all ranked.
MAX_RANKED = 1_000

# Where a snippet's matched words start and end: STX and ETX, control
# characters that stored text never holds (batches remove them, see
# newsletter.core.text.strip_controls), so they cannot be confused with the text.
MARK_START, MARK_END = "\x02", "\x03"
SNIPPET_WORDS = 30
# Typographic quotes mark phrases too (phones type them).
_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "«": '"', "»": '"'})
_TSQUERY = "phraseto_tsquery('english'::regconfig, :t{})"


@dataclass(frozen=True)
class Appearance:
    """A day a paper was in the edition: its ``rank`` there (0 first), its
    ``upvotes`` that day, and whether that day's issue is published
    (``issue``: its page, ``/issues/<date>``, exists)."""

    date: dt.date
    rank: int
    upvotes: int | None
    issue: bool


@dataclass(frozen=True)
class SearchHit:
    """One paper found: its ``key`` (see models.paper_key), the paper, the
    days it appeared (newest first), and a ``snippet`` of its abstract as
    ``(text, matched)`` pieces, the matched words marked."""

    key: str
    paper: Paper
    appearances: tuple[Appearance, ...]
    snippet: tuple[tuple[str, bool], ...]


@dataclass(frozen=True)
class SearchPage:
    """One page of an archive search: the ``terms`` searched for (empty:
    every paper, newest first), whether terms were left out (``cut``,
    beyond :data:`MAX_TERMS`), the ``total`` number of papers found (at
    most :data:`MAX_RANKED` with terms: ``more`` says when more matched),
    and this ``page``'s hits."""

    terms: tuple[str, ...]
    cut: bool
    page: int
    per_page: int
    total: int
    hits: tuple[SearchHit, ...]
    more: bool = False  # more than MAX_RANKED papers matched; the most recent were ranked

    @property
    def pages(self) -> int:
        """How many pages the results fill (at least 1)."""
        return max(1, -(-self.total // self.per_page))

    @property
    def has_more(self) -> bool:
        """Whether a later page holds more hits."""
        return self.page * self.per_page < self.total


def parse_query(query: str) -> tuple[tuple[str, ...], bool]:
    """Return the terms of ``query`` and whether some were left out.

    A term is a phrase in double quotes (typographic quotes too) or any
    other word, separated by spaces; a quote with no closing one is
    ignored. Control characters are removed; terms with no letter or digit
    (``*``, ``-``, ``:``) and repeats (in any case) are dropped; only the
    first :data:`MAX_TERMS` are kept. Operators are words like any other:
    ``AND``, ``OR`` and ``NEAR`` are searched for as words. Raises
    :class:`InvalidQuery` when ``query`` is longer than
    :data:`MAX_QUERY_CHARS` characters.
    """
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidQuery(f"the search is {len(query):,} characters long; at most {MAX_QUERY_CHARS} are searched")
    cleaned, _ = strip_controls(query.translate(_QUOTES))
    pieces = cleaned.split('"')
    terms: list[str] = []
    seen: set[str] = set()
    for index, piece in enumerate(pieces):
        quoted = index % 2 == 1 and index < len(pieces) - 1  # between two quotes
        for term in [" ".join(piece.split())] if quoted else piece.split():
            if any(char.isalnum() for char in term) and term.casefold() not in seen:
                seen.add(term.casefold())
                terms.append(term)
    return tuple(terms[:MAX_TERMS]), len(terms) > MAX_TERMS


def fts5_match(terms: tuple[str, ...]) -> str:
    """The FTS5 MATCH expression requiring every term: each a quoted
    string (an FTS5 phrase; a quote inside is doubled), so nothing in a
    term is read as FTS5 syntax."""
    return " ".join('"' + term.replace('"', '""') + '"' for term in terms)


def snippet_pieces(marked: str) -> tuple[tuple[str, bool], ...]:
    """Split a snippet whose matched words are between :data:`MARK_START`
    and :data:`MARK_END` into ``(text, matched)`` pieces."""
    pieces = []
    for index, part in enumerate(marked.split(MARK_START)):
        matched, _, rest = part.rpartition(MARK_END) if index else ("", "", part)
        if matched:
            pieces.append((matched.replace(MARK_END, ""), True))
        if rest:
            pieces.append((rest, False))
    return tuple(pieces)


class PaperSearch:
    """The archive part of :class:`newsletter.store.Store`."""

    def search_papers(self, query: str, page: int = 1, per_page: int = 20) -> SearchPage:
        """Return page ``page`` (1 first) of the archived papers matching
        every term of ``query`` (see :func:`parse_query`), ``per_page`` a
        page: the most relevant first (a term in the title or authors
        weighs more than in the abstract), then the most recently in an
        edition, then by key. A query with no term gives every archived
        paper, the latest edition's first (in its order).

        Raises :class:`InvalidQuery` for a query over
        :data:`MAX_QUERY_CHARS` characters, ValueError for a page below 1 or
        ``per_page`` outside 1..:data:`MAX_PER_PAGE`.
        """
        if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"page {page} of {per_page} results: page must be ≥ 1, per_page 1..{MAX_PER_PAGE}")
        terms, cut = parse_query(query)
        offset = (min(page, MAX_PAGE + 1) - 1) * per_page  # never a number the database cannot hold
        more = False
        with self.reader.connect() as conn:
            # The paper an arXiv id names comes first, the words' matches after it.
            exact = self._archived(conn, arxiv_id_of(query)) if terms else None
            shift = 1 if exact else 0
            if page > MAX_PAGE:
                found, total = [], 0
            elif terms:
                found, total, more = self._matching(conn, terms, per_page, max(0, offset - shift), exact)
                if exact and not offset:
                    found = found[:per_page - 1]
            else:
                found, total = self._latest(conn, per_page, offset)
            if not found and offset:  # past the last page: no row to count with, so counted apart
                if terms:
                    _first, total, more = self._matching(conn, terms, 1, 0, exact)
                else:
                    total = self._count(conn)
            snippets = self._snippets(conn, terms, found) if terms else {}
            keys = ([exact] if exact and not offset else []) + [key for key, _rowid in found]
            hits = self._hits(conn, keys, snippets)
            total += shift
        return SearchPage(terms, cut, page, per_page, total, hits, more)

    def paper(self, key: str) -> tuple[Paper, tuple[Appearance, ...]] | None:
        """Return the archived paper of ``key`` and the days it appeared
        (newest first), or None when no edition carried it."""
        if "\x00" in key:  # no key holds one (and PostgreSQL's text cannot)
            return None
        with self.reader.connect() as conn:
            hits = self._hits(conn, [key], {})
        return (hits[0].paper, hits[0].appearances) if hits else None

    # -- the queries

    @staticmethod
    def _archived(conn: Connection, key: str | None) -> str | None:
        """``key`` when it is an archived paper's (one an edition carried), else None."""
        if key is None:
            return None
        a = appearances_table
        return conn.scalar(select(a.c.paper_key).where(a.c.paper_key == key).limit(1))

    @staticmethod
    def _matching(conn: Connection, terms: tuple[str, ...], limit: int, offset: int,
                  leave_out: str | None = None) -> tuple[list[tuple[str, int | None]], int, bool]:
        """``(key, FTS5 rowid or None)`` of the page's matching papers, in
        order, but the paper ``leave_out``; how many match (at most
        :data:`MAX_RANKED`); and whether more did. The :data:`MAX_RANKED`
        matches stored last (SQLite: by rowid; PostgreSQL: by the time the
        row was written) are the candidates, each read once; they are
        ranked by relevance, then by the last day they were carried."""
        last_seen = "(SELECT max(a.date) FROM appearances a WHERE a.paper_key = p.key)"
        if conn.dialect.name == "sqlite":
            # bm25 is lower for better matches; the title counts ten times
            # the abstract, the authors five times. FTS5 reads its matches
            # in rowid order and stops at the limit: bm25 is computed for
            # the candidates only.
            candidates = ("SELECT rowid AS rid, bm25(papers_search, 10.0, 1.0, 5.0) AS score FROM papers_search"
                          " WHERE papers_search MATCH :match ORDER BY rowid DESC LIMIT :cap")
            sql = (
                "SELECT key, rid, count(*) OVER () AS total FROM ("
                f" SELECT p.key AS key, c.rid AS rid, c.score AS score, {last_seen} AS last"
                f" FROM ({candidates}) c JOIN papers p ON p.rowid = c.rid"
                ") WHERE last IS NOT NULL AND key != :leave_out ORDER BY score, last DESC, key"
                " LIMIT :limit OFFSET :offset"
            )
            params = {"match": fts5_match(terms)}
        else:
            candidates = (f"SELECT p.key AS key, p.search AS search FROM papers p WHERE p.search @@ {_tsquery(terms)}"
                          " ORDER BY p.updated_at DESC LIMIT :cap")
            sql = (
                "SELECT key, NULL AS rid, count(*) OVER () AS total FROM ("
                f" SELECT c.key AS key, ts_rank(c.search, {_tsquery(terms)}) AS score, {last_seen} AS last"
                f" FROM ({candidates}) c JOIN papers p ON p.key = c.key"
                ') hits WHERE last IS NOT NULL AND key != :leave_out ORDER BY score DESC, last DESC, key COLLATE "C" '
                "LIMIT :limit OFFSET :offset"
            )
            params = {f"t{n}": term for n, term in enumerate(terms)}
        params["leave_out"] = leave_out or ""  # no paper's key is empty
        if conn.dialect.name == "sqlite":
            rows = conn.execute(text(sql), {**params, "cap": MAX_RANKED, "limit": limit, "offset": offset}).all()
            more = False
            if rows and rows[0].total == MAX_RANKED:  # all candidates archived papers: is there one more match?
                beyond = candidates.replace("LIMIT :cap", "LIMIT 1 OFFSET :cap")
                more = conn.execute(text(beyond), {**params, "cap": MAX_RANKED}).first() is not None
        else:
            # PostgreSQL's planner guesses how many papers a query matches,
            # and a wrong guess costs a full read of the table: reading the
            # matches stored last through the updated_at index pays off only
            # when they are many. So count them first, up to the cap, through
            # the GIN index alone (a bitmap scan that stops at the cap), and
            # choose: few matches all read through the GIN index, many read
            # newest first through updated_at's.
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            conn.exec_driver_sql("SET LOCAL enable_indexscan = off")
            try:
                capped = f"SELECT count(*) FROM (SELECT 1 FROM papers p WHERE p.search @@ {_tsquery(terms)} LIMIT :cap) m"
                more = conn.scalar(text(capped), {**params, "cap": MAX_RANKED + 1}) > MAX_RANKED
                if more:
                    conn.exec_driver_sql("SET LOCAL enable_indexscan = on")
                rows = conn.execute(text(sql), {**params, "cap": MAX_RANKED, "limit": limit, "offset": offset}).all()
            finally:
                conn.exec_driver_sql("SET LOCAL enable_seqscan = on")
                conn.exec_driver_sql("SET LOCAL enable_indexscan = on")
        return [(row.key, row.rid) for row in rows], rows[0].total if rows else 0, more

    @staticmethod
    def _latest(conn: Connection, limit: int, offset: int) -> tuple[list[tuple[str, None]], int]:
        """``(key, None)`` of the page's papers when nothing is searched
        for: each at its latest day, the latest day first, in that day's
        order; and how many papers are archived."""
        a, b = appearances_table.alias("a"), appearances_table.alias("b")
        later = select(b.c.rank).where(b.c.paper_key == a.c.paper_key, b.c.date > a.c.date).exists()
        keys = conn.scalars(select(a.c.paper_key).where(~later).order_by(a.c.date.desc(), a.c.rank)
                            .limit(limit).offset(offset)).all()
        total = PaperSearch._count(conn) if keys else 0
        return [(key, None) for key in keys], total

    @staticmethod
    def _count(conn: Connection) -> int:
        """How many papers are archived."""
        return conn.scalar(select(func.count(appearances_table.c.paper_key.distinct())))

    @staticmethod
    def _snippets(conn: Connection, terms: tuple[str, ...],
                  found: list[tuple[str, int | None]]) -> dict[str, tuple[tuple[str, bool], ...]]:
        """``{key: snippet pieces}`` of the found papers' abstracts, around
        the matched words (made for the page's papers only)."""
        if not found:
            return {}
        if conn.dialect.name == "sqlite":
            rowids = {rowid: key for key, rowid in found}
            sql = (f"SELECT rowid, snippet(papers_search, 1, char(2), char(3), '…', {SNIPPET_WORDS}) AS marked"
                   " FROM papers_search WHERE papers_search MATCH :match"
                   f" AND rowid IN ({', '.join(str(int(rowid)) for rowid in rowids)})")
            rows = conn.execute(text(sql), {"match": fts5_match(terms)}).all()
            return {rowids[row.rowid]: snippet_pieces(row.marked) for row in rows}
        options = (f"StartSel=' || chr(2) || ', StopSel=' || chr(3) || ', MaxWords={SNIPPET_WORDS}, "
                   f"MinWords={SNIPPET_WORDS // 2}, MaxFragments=1")
        sql = (f"SELECT p.key, p.abstract, ts_headline('english'::regconfig, p.abstract, {_tsquery(terms)}, "
               f"'{options}') AS marked FROM papers p WHERE p.key IN :keys")
        params = {f"t{n}": term for n, term in enumerate(terms)}
        statement = text(sql).bindparams(bindparam("keys", expanding=True))
        snippets = {}
        for row in conn.execute(statement, {**params, "keys": [key for key, _rowid in found]}):
            # One fragment, with no ellipsis of its own: say where the abstract goes on.
            plain = row.marked.replace(MARK_START, "").replace(MARK_END, "")
            start = "" if row.abstract.startswith(plain) else "…"
            end = "" if row.abstract.endswith(plain) else "…"
            snippets[row.key] = snippet_pieces(start + row.marked + end)
        return snippets

    @staticmethod
    def _hits(conn: Connection, keys: list[str],
              snippets: dict[str, tuple[tuple[str, bool], ...]]) -> tuple[SearchHit, ...]:
        """The hits of ``keys``, in that order, with their appearances;
        keys of papers no edition carried are left out."""
        if not keys:
            return ()
        p, a, i = papers_table, appearances_table, issues_table
        papers = {row.key: paper_from_row(row) for row in conn.execute(select(p).where(p.c.key.in_(keys)))}
        days: dict[str, list] = {key: [] for key in keys}
        for row in conn.execute(select(a.c.paper_key, a.c.date, a.c.rank, a.c.upvotes)
                                .where(a.c.paper_key.in_(keys)).order_by(a.c.date.desc())):
            days[row.paper_key].append(row)
        dates = sorted({row.date for rows in days.values() for row in rows})
        issues = set(conn.scalars(select(i.c.date).where(i.c.kind == EditionKind.DAILY.value, i.c.date.in_(dates),
                                                         i.c.published_at.is_not(None)))) if dates else set()
        return tuple(
            SearchHit(key, papers[key],
                      tuple(Appearance(dt.date.fromisoformat(row.date), row.rank, row.upvotes, row.date in issues)
                            for row in days[key]),
                      snippets.get(key, ()))
            for key in keys if key in papers and days[key]
        )


def _tsquery(terms: tuple[str, ...]) -> str:
    """PostgreSQL's query requiring every term (bound as :t0, :t1, …), each
    read as a phrase by ``phraseto_tsquery``: no term is query syntax."""
    return "(" + " && ".join(_TSQUERY.format(n) for n in range(len(terms))) + ")"
