"""Loading a day's papers from any supported source into a :class:`Batch`.

Four formats are recognised from the file's content, not its name:

1. the daily papers page as text (header lines, a date line such as
   ``Mar 11``, then title and abstract paragraphs separated by blank lines);
2. the JSON list returned by the daily papers API (``/api/daily_papers``);
3. an arXiv API Atom feed;
4. this project's canonical JSON (``{"date": ..., "papers": [...]}``), which
   is also what ``newsletter fetch`` writes.

Paper text is untrusted. Every field is checked and normalized here, and any
problem raises :class:`BatchError` naming the file and the line or entry, so
nothing downstream ever sees half-valid data. Stray control characters are
the one thing repaired rather than refused (one bad abstract must not stop a
day's issue): they are removed, with a warning per entry in
:attr:`Batch.warnings`.
"""

from __future__ import annotations

import calendar
import collections
import datetime as dt
import json
import os
import re
import unicodedata
import xml.sax
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit

import feedparser

from newsletter.core.errors import BatchError
from newsletter.core.files import atomic_write_text
from newsletter.core.models import ARXIV_ID, Batch, Paper, paper_key
from newsletter.core.text import is_http_url, strip_controls

CANONICAL_FORMAT = "newsletter-batch/1"

# Limits far above any real paper, low enough that a corrupt or hostile file
# cannot blow up the email or the memory of the process.
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_PAPERS = 10_000
MAX_TITLE_CHARS = 500
MAX_ABSTRACT_CHARS = 20_000
MAX_AUTHOR_CHARS = 200
MAX_AUTHORS = 2_000
MAX_URL_CHARS = 2_000
MAX_SUMMARY_CHARS = 5_000
MAX_TERMS = 100  # keywords or categories of one paper
MAX_TERM_CHARS = 100

_ARXIV_URL = re.compile(r"^https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/(.+?)(?:\.pdf)?$")
_URL_IN_TEXT = re.compile(r"https?://[^\s<>\"'`{}|\\^]+")
_CODE_HOSTS = ("github.com", "gitlab.com", "bitbucket.org", "codeberg.org")
_NOT_PROJECT_PAGES = ("arxiv.org", "doi.org", "dx.doi.org")
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_DATE_LINE = re.compile(
    r"^(?P<month>[A-Za-z]{3})[a-z]*\.?\s+(?P<day>\d{1,2})(?:,?\s+(?P<year>\d{4}))?$"
)
_HEADER_LINES_SEARCHED = 30


# --------------------------------------------------------------------------
# entry points


def load_batch(
    path: str | os.PathLike, date: dt.date | None = None, today: dt.date | None = None
) -> Batch:
    """Read and parse the batch file at ``path``.

    ``date`` overrides the issue date (and gives the year to a text page);
    ``today`` is only for tests. Returns a :class:`Batch`, possibly with no
    papers when the source is valid but empty (a day without papers). Raises
    :class:`BatchError` for a missing, unreadable or invalid file.
    """
    source = str(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise BatchError(source, f"file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}")
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError as exc:
        raise BatchError(source, "no such file") from exc
    except IsADirectoryError as exc:
        raise BatchError(source, "is a directory, not a batch file") from exc
    except OSError as exc:
        raise BatchError(source, f"cannot read: {exc.strerror or exc}") from exc
    return parse_batch(data, source, date=date, today=today)


def parse_batch(
    data: bytes, source: str, date: dt.date | None = None, today: dt.date | None = None
) -> Batch:
    """Parse the bytes of a batch in any supported format.

    Returns a :class:`Batch`; raises :class:`BatchError` (see :func:`load_batch`).
    """
    text = _decode(data, source)
    if not text.strip():
        raise BatchError(source, "file is empty")
    today = today or dt.date.today()
    first = text.lstrip()[0]
    if first in "[{":
        return _parse_json(text, source, date)
    if first == "<":
        return _parse_atom(text, source, date, today)
    try:
        json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return _parse_page_text(text, source, date, today)
    raise BatchError(source, "unrecognised JSON: expected a list or an object, not a single value")


def batch_to_canonical(batch: Batch) -> dict[str, Any]:
    """Return the canonical JSON document for ``batch`` (see module docstring)."""
    return {
        "format": CANONICAL_FORMAT,
        "date": batch.date.isoformat(),
        "papers": [
            {
                "title": p.title,
                "abstract": p.abstract,
                "authors": list(p.authors),
                "arxiv_id": p.arxiv_id,
                "url": p.url,
                "upvotes": p.upvotes,
                "code_url": p.code_url,
                "project_url": p.project_url,
                "ai_summary": p.ai_summary,
                "keywords": list(p.keywords),
                "categories": list(p.categories),
                "github_stars": p.github_stars,
                "comment_count": p.comment_count,
                "thumbnail_url": p.thumbnail_url,
            }
            for p in batch.papers
        ],
    }


def write_canonical(batch: Batch, path: str | os.PathLike) -> Path:
    """Write ``batch`` as canonical JSON to ``path`` atomically.

    Returns the path written. Raises ``OSError`` when it cannot be written.
    """
    payload = json.dumps(batch_to_canonical(batch), ensure_ascii=False, indent=2) + "\n"
    return atomic_write_text(path, payload)


# --------------------------------------------------------------------------
# decoding and field normalization


def _decode(data: bytes, source: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BatchError(
            source, f"invalid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8", f"line {line}"
        ) from exc


class _Checker:
    """Normalizes the fields of one paper, raising errors that name its place
    and adding a line to ``warnings`` when it had to remove control
    characters."""

    def __init__(self, source: str, where: str, warnings: list[str]):
        self.source = source
        self.where = where
        self.warnings = warnings
        self.removed: dict[str, int] = {}  # control characters removed, per field

    def fail(self, message: str) -> BatchError:
        return BatchError(self.source, message, self.where)

    def text(self, value: Any, field: str, limit: int, required: bool = True) -> str:
        """Return ``value`` as one line of NFC text with whitespace collapsed
        and control characters removed (counted in ``removed``)."""
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise self.fail(f"{field} must be text, not {type(value).__name__}")
        value, removed = strip_controls(value)
        if removed:
            self.removed[field] = self.removed.get(field, 0) + removed
        value = " ".join(unicodedata.normalize("NFC", value).split())
        if required and not value:
            raise self.fail(f"{field} is empty")
        if len(value) > limit:
            raise self.fail(f"{field} is {len(value):,} characters long; the limit is {limit:,}")
        return value

    def warn_if_repaired(self, title: str) -> None:
        """Add one warning line for this paper when control characters were
        removed from any of its fields."""
        if not self.removed:
            return
        total = sum(self.removed.values())
        fields = [_FIELD_NAMES.get(field, field) for field in self.removed]
        listed = fields[0] if len(fields) == 1 else ", ".join(fields[:-1]) + " and " + fields[-1]
        short = title if len(title) <= 60 else title[:59].rstrip() + "…"
        plural = "" if total == 1 else "s"
        self.warnings.append(
            f'{self.source}, {self.where} ("{short}"): removed {total} control character{plural} from {listed}'
        )

    def authors(self, names: Iterable[Any]) -> tuple[str, ...]:
        names = list(names)
        if len(names) > MAX_AUTHORS:
            raise self.fail(f"{len(names):,} authors; the limit is {MAX_AUTHORS:,}")
        result = []
        for name in names:
            cleaned = self.text(name, "author name", MAX_AUTHOR_CHARS, required=False)
            if cleaned:
                result.append(cleaned)
        return tuple(result)

    def arxiv_id(self, value: Any) -> str | None:
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            raise self.fail(f"arXiv id must be text, not {type(value).__name__}")
        match = ARXIV_ID.match(value.strip())
        if not match:
            raise self.fail(f"{value.strip()[:60]!r} is not an arXiv id")
        return match.group(1)

    def terms(self, values: Any, field: str) -> tuple[str, ...]:
        """Return a list of short terms (keywords, categories) as a tuple of
        cleaned text, empty and repeated ones dropped; raises
        :class:`BatchError` when ``values`` is not a list of text or is too long."""
        if values is None:
            return ()
        if not isinstance(values, (list, tuple)):
            raise self.fail(f"{field} must be a list, not {type(values).__name__}")
        if len(values) > MAX_TERMS:
            raise self.fail(f"{len(values):,} {field}; the limit is {MAX_TERMS:,}")
        result: list[str] = []
        for value in values:
            cleaned = self.text(value, field, MAX_TERM_CHARS, required=False)
            if cleaned and cleaned not in result:
                result.append(cleaned)
        return tuple(result)

    def count(self, value: Any, field: str) -> int | None:
        """Return a count (upvotes, stars, comments): None when absent, else a
        whole number ≥ 0; raises :class:`BatchError` for anything else."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(f"{field} must be a whole number ≥ 0, got {value!r}")
        return value

    def url(self, value: Any, field: str) -> str | None:
        """Return an http(s) URL, or None for an empty or non-http(s) one."""
        if value in (None, ""):
            return None
        value = self.text(value, field, MAX_URL_CHARS)
        return value if is_http_url(value) else None

    def paper(
        self,
        title: Any,
        abstract: Any,
        authors: Iterable[Any] = (),
        arxiv_id: Any = None,
        url: Any = None,
        upvotes: Any = None,
        code_url: Any = None,
        project_url: Any = None,
        ai_summary: Any = None,
        keywords: Any = None,
        categories: Any = None,
        github_stars: Any = None,
        comment_count: Any = None,
        thumbnail_url: Any = None,
    ) -> Paper:
        """Build a normalized :class:`Paper`; raises :class:`BatchError`.

        A code link or project page the source does not give is looked for in
        the abstract (see :func:`find_code_url` and :func:`find_project_url`).
        """
        title = self.text(title, "title", MAX_TITLE_CHARS)
        if abstract is None or (isinstance(abstract, str) and not abstract.strip()):
            raise self.fail(f"paper {title[:60]!r} has no abstract")
        abstract = self.text(abstract, "abstract", MAX_ABSTRACT_CHARS)
        paper_id = self.arxiv_id(arxiv_id)
        page = self.url(url, "url")
        if paper_id is None and page:
            match = _ARXIV_URL.match(page)
            if match:
                paper_id = self.arxiv_id(match.group(1))
        if paper_id:
            page = f"https://arxiv.org/abs/{paper_id}"
        code = self.url(code_url, "code_url") or find_code_url(abstract)
        project = self.url(project_url, "project_url") or find_project_url(abstract)
        paper = Paper(
            title=title,
            abstract=abstract,
            authors=self.authors(authors),
            arxiv_id=paper_id,
            url=page,
            upvotes=self.count(upvotes, "upvotes"),
            code_url=code,
            ai_summary=self.text(ai_summary, "ai_summary", MAX_SUMMARY_CHARS, required=False) or None,
            keywords=self.terms(keywords, "keywords"),
            categories=self.terms(categories, "categories"),
            project_url=project if project != code else None,
            github_stars=self.count(github_stars, "GitHub stars"),
            comment_count=self.count(comment_count, "comment count"),
            thumbnail_url=self.url(thumbnail_url, "thumbnail_url"),
        )
        self.warn_if_repaired(title)
        return paper


# How a warning names the field that lost control characters.
_FIELD_NAMES = {
    "title": "the title",
    "abstract": "the abstract",
    "author name": "the author names",
    "url": "the link",
    "code_url": "the code link",
    "project_url": "the project link",
    "thumbnail_url": "the thumbnail link",
    "ai_summary": "the AI summary",
    "keywords": "the keywords",
    "categories": "the categories",
}




def _links_in(abstract: str) -> list[tuple[str, str]]:
    """The http(s) links in ``abstract`` with their host (without ``www.``),
    in order, the punctuation of the sentence around them left out."""
    links = []
    for match in _URL_IN_TEXT.finditer(abstract):
        url = match.group().rstrip(".,;:!?)]}'\"")
        if is_http_url(url):
            links.append((url, (urlsplit(url).hostname or "").removeprefix("www.")))
    return links


def find_code_url(abstract: str) -> str | None:
    """Return the first link to a repository on a code host (GitHub, GitLab,
    Bitbucket, Codeberg) mentioned in ``abstract``, or None."""
    return next((url for url, host in _links_in(abstract) if host in _CODE_HOSTS), None)


def find_project_url(abstract: str) -> str | None:
    """Return the first project page mentioned in ``abstract``, or None: a
    link that is neither on a code host (see :func:`find_code_url`) nor a
    reference (arXiv, DOI)."""
    skipped = _CODE_HOSTS + _NOT_PROJECT_PAGES
    return next((url for url, host in _links_in(abstract) if host not in skipped), None)


def _finish(source: str, date: dt.date, papers: list[Paper], warnings: list[str]) -> Batch:
    """De-duplicate, order by upvotes when known, and build the Batch."""
    if len(papers) > MAX_PAPERS:
        raise BatchError(source, f"{len(papers):,} papers; the limit is {MAX_PAPERS:,}")
    by_key: dict[str, Paper] = {}  # first position wins, the copy with most upvotes stays
    for paper in papers:
        key = paper_key(paper)
        kept = by_key.get(key)
        if kept is None or (paper.upvotes or 0) > (kept.upvotes or 0):
            by_key[key] = paper
    unique = list(by_key.values())
    if any(p.upvotes is not None for p in unique):
        unique.sort(key=lambda p: -1 if p.upvotes is None else p.upvotes, reverse=True)
    return Batch(date=date, papers=tuple(unique), source=source, warnings=tuple(warnings))


# --------------------------------------------------------------------------
# format 1: the daily papers page as text


def _parse_page_text(text: str, source: str, date: dt.date | None, today: dt.date) -> Batch:
    lines = text.splitlines()
    date_index = None
    for index, line in enumerate(lines[:_HEADER_LINES_SEARCHED]):
        match = _DATE_LINE.match(line.strip())
        if match and match.group("month").lower() in _MONTHS:
            date_index = index
            break
    if date_index is None:
        raise BatchError(
            source,
            "not a recognised batch: expected a date line such as 'Mar 11' before the papers "
            "(or JSON, or an Atom feed)",
        )
    batch_date = _resolve_page_date(match, source, date_index + 1, date, today)

    # Paragraphs: runs of non-empty lines, with the line number they start on.
    paragraphs: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for number, line in enumerate(lines[date_index + 1 :], start=date_index + 2):
        if line.strip():
            if not current:
                start = number
            current.append(line)
        elif current:
            paragraphs.append((start, " ".join(current)))
            current = []
    if current:
        paragraphs.append((start, " ".join(current)))

    papers: list[Paper] = []
    warnings: list[str] = []
    index = 0
    while index < len(paragraphs):
        line_no, title = paragraphs[index]
        where = f"line {line_no}"
        if not _looks_like_title(title):
            raise BatchError(source, "expected a paper title here, found a paragraph of text", where)
        if index + 1 >= len(paragraphs) or _looks_like_title(paragraphs[index + 1][1]):
            raise BatchError(source, f"title {title.strip()[:60]!r} has no abstract after it", where)
        abstract = paragraphs[index + 1][1]
        papers.append(_Checker(source, where, warnings).paper(title, abstract))
        index += 2
    return _finish(source, batch_date, papers, warnings)


def _looks_like_title(paragraph: str) -> bool:
    """A title is short and is not made of sentences; an abstract is.

    Titles may hold one question or full stop ("When are Lemons Purple? The
    Concept ..."), so only a second sentence break marks prose.
    """
    text = " ".join(paragraph.split())
    if len(text) > 300 or text.endswith("."):
        return False
    return len(re.findall(r"[.!?]\s+[A-Z]", text)) <= 1


def _resolve_page_date(
    match: re.Match, source: str, line_no: int, date: dt.date | None, today: dt.date
) -> dt.date:
    month = _MONTHS[match.group("month").lower()]
    day = int(match.group("day"))
    where = f"line {line_no}"
    if match.group("year"):
        year = int(match.group("year"))
    elif date is not None:
        year = date.year
    else:
        # The page has no year: take the most recent such date not in the future.
        year = today.year
        while True:
            try:
                candidate = dt.date(year, month, day)
            except ValueError:
                candidate = None
            if candidate and candidate <= today:
                break
            year -= 1
            if year < today.year - 8:
                raise BatchError(source, f"{match.group(0)!r} is not a date", where)
    try:
        found = dt.date(year, month, day)
    except ValueError as exc:
        raise BatchError(source, f"{match.group(0)!r} is not a date in {year}", where) from exc
    if date is not None and date != found:
        raise BatchError(
            source, f"the file is for {found:%b %d} but --date is {date.isoformat()}", where
        )
    return found


# --------------------------------------------------------------------------
# formats 2 and 4: JSON


def _parse_json(text: str, source: str, date: dt.date | None) -> Batch:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BatchError(source, f"malformed JSON: {exc.msg}", f"line {exc.lineno}, column {exc.colno}") from exc
    except RecursionError as exc:
        raise BatchError(source, "malformed JSON: nested too deeply") from exc
    if isinstance(doc, list):
        return _parse_api_json(doc, source, date)
    if isinstance(doc, dict) and isinstance(doc.get("papers"), list):
        return _parse_canonical(doc, source, date)
    raise BatchError(
        source,
        "unrecognised JSON: expected a list of daily papers API entries "
        'or an object with "date" and "papers"',
    )


def _parse_api_json(entries: list, source: str, date: dt.date | None) -> Batch:
    papers = []
    warnings: list[str] = []
    published: collections.Counter[dt.date] = collections.Counter()
    for number, entry in enumerate(entries, start=1):
        where = f"entry {number}"
        check = _Checker(source, where, warnings)
        paper = entry.get("paper") if isinstance(entry, dict) else None
        if not isinstance(paper, dict):
            raise check.fail('expected an object with a "paper" object')
        authors = paper.get("authors") or []
        if not isinstance(authors, list):
            raise check.fail("paper.authors must be a list")
        names = [a.get("name") if isinstance(a, dict) else a for a in authors]
        papers.append(
            check.paper(
                title=paper.get("title") or entry.get("title"),
                abstract=paper.get("summary") or entry.get("summary"),
                authors=names,
                arxiv_id=paper.get("id"),
                upvotes=paper.get("upvotes"),
                code_url=paper.get("githubRepo"),
                project_url=paper.get("projectPage"),
                ai_summary=paper.get("ai_summary"),
                keywords=paper.get("ai_keywords"),
                github_stars=paper.get("githubStars"),
                # The API counts comments on the entry; accept it on the paper too.
                comment_count=entry["numComments"] if "numComments" in entry else paper.get("numComments"),
                # The API gives the paper's social card on the entry (as
                # "thumbnail", a PNG on its CDN); accept it on the paper too.
                thumbnail_url=entry.get("thumbnail") or paper.get("thumbnail"),
            )
        )
        day = _iso_date(entry.get("publishedAt") or paper.get("publishedAt"))
        if day:
            published[day] += 1
    if date is None:
        if not published:
            raise BatchError(source, "the entries carry no date; pass --date YYYY-MM-DD")
        date = published.most_common(1)[0][0]
    return _finish(source, date, papers, warnings)


def _parse_canonical(doc: dict, source: str, date: dt.date | None) -> Batch:
    declared = doc.get("date")
    found = _iso_date(declared) if isinstance(declared, str) else None
    if found is None and date is None:
        raise BatchError(source, f'"date" must be YYYY-MM-DD, got {declared!r}', '"date"')
    if found and date and found != date:
        raise BatchError(source, f"the file is for {found} but --date is {date}", '"date"')
    papers = []
    warnings: list[str] = []
    for number, item in enumerate(doc["papers"]):
        check = _Checker(source, f"papers[{number}]", warnings)
        if not isinstance(item, dict):
            raise check.fail("expected an object")
        authors = item.get("authors") or []
        if not isinstance(authors, list):
            raise check.fail("authors must be a list")
        papers.append(
            check.paper(
                title=item.get("title"),
                abstract=item.get("abstract"),
                authors=authors,
                arxiv_id=item.get("arxiv_id"),
                url=item.get("url"),
                upvotes=item.get("upvotes"),
                code_url=item.get("code_url"),
                project_url=item.get("project_url"),
                ai_summary=item.get("ai_summary"),
                keywords=item.get("keywords"),
                categories=item.get("categories"),
                github_stars=item.get("github_stars"),
                comment_count=item.get("comment_count"),
                thumbnail_url=item.get("thumbnail_url"),
            )
        )
    return _finish(source, date or found, papers, warnings)


def _iso_date(value: Any) -> dt.date | None:
    """The date part of an ISO 8601 date or timestamp, or None."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


# --------------------------------------------------------------------------
# format 3: arXiv Atom feed


def _parse_atom(text: str, source: str, date: dt.date | None, today: dt.date) -> Batch:
    feed = feedparser.parse(text)
    problem = feed.get("bozo_exception")
    if isinstance(problem, xml.sax.SAXParseException):
        raise BatchError(
            source, f"malformed feed: {problem.getMessage()}", f"line {problem.getLineNumber()}"
        )
    if not feed.get("version", "").startswith("atom") and not feed.entries:
        raise BatchError(source, "not a recognised batch: XML but not an Atom feed")
    papers = []
    warnings: list[str] = []
    latest: dt.date | None = None
    for number, entry in enumerate(feed.entries, start=1):
        check = _Checker(source, f"entry {number}", warnings)
        entry_id = entry.get("id", "")
        match = _ARXIV_URL.match(entry_id.strip())
        papers.append(
            check.paper(
                title=entry.get("title"),
                abstract=entry.get("summary"),
                authors=[a.get("name") for a in entry.get("authors", [])],
                arxiv_id=match.group(1) if match else None,
                url=entry.get("link") or (entry_id if is_http_url(entry_id) else None),
                code_url=None,
                categories=_categories(entry),
            )
        )
        day = _feed_date(entry.get("published_parsed") or _own(entry, "updated_parsed"))
        if day:
            latest = max(latest, day) if latest else day
    return _finish(source, date or latest or today, papers, warnings)


def _categories(entry: dict) -> list[Any]:
    """The category terms of an arXiv entry, its primary category first."""
    primary = entry.get("arxiv_primary_category")
    terms = [primary.get("term")] if isinstance(primary, dict) else []
    terms += [tag.get("term") for tag in entry.get("tags", []) if isinstance(tag, dict)]
    return [term for term in terms if term is not None]


def _feed_date(stamp: Any) -> dt.date | None:
    """The date of a feedparser time tuple, or None when absent or impossible
    (such as year 0, which feedparser passes through)."""
    if not stamp:
        return None
    try:
        return dt.date(stamp.tm_year, stamp.tm_mon, stamp.tm_mday)
    except ValueError:
        return None


def _own(entry: dict, key: str) -> Any:
    """``entry[key]`` without feedparser's deprecated fallback from
    ``updated*`` to ``published*`` (which warns), or None when absent."""
    return dict.get(entry, key)
