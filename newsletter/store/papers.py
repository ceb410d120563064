"""Every paper the newsletter has carried, or that a reader named as a seed
paper (fetched from arXiv): one row per paper with its richest text, and
the days it appeared, with its rank and upvotes."""

from __future__ import annotations

import datetime as dt
import json
from typing import Iterable, NamedTuple

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from newsletter.core.models import Batch, Edition, EditionKind, Paper, Thumbnail, paper_key
from newsletter.store.schema import appearances_table, paper_thumbnails_table, papers_table

# The columns a paper's text fills, in Paper's names.
_TEXT = ("arxiv_id", "title", "abstract", "url", "code_url", "project_url", "ai_summary", "github_stars",
         "comment_count", "thumbnail_url")


def _richest(stored: dict, paper: Paper) -> dict:
    """The row for ``paper`` given what is ``stored`` of it: a field the new
    copy lacks keeps its stored value, a longer abstract or summary wins,
    lists are merged (stored first)."""
    row = {name: getattr(paper, name) for name in _TEXT}
    row["authors"] = list(paper.authors)
    row["keywords"] = list(paper.keywords)
    row["categories"] = list(paper.categories)
    for name in _TEXT:
        if row[name] in (None, "") and stored.get(name) not in (None, ""):
            row[name] = stored[name]
    for name in ("abstract", "ai_summary"):
        if len(stored.get(name) or "") > len(row[name] or ""):
            row[name] = stored[name]
    for name in ("authors", "keywords", "categories"):
        known = json.loads(stored[name]) if stored.get(name) else []
        if name == "authors" and len(known) > len(row[name]):
            row[name] = known
        elif name != "authors":
            row[name] = known + [item for item in row[name] if item not in known]
    return {**row, **{name: json.dumps(row[name], ensure_ascii=False) for name in ("authors", "keywords", "categories")}}


def paper_from_row(row) -> Paper:
    """The :class:`Paper` of a ``papers`` row."""
    return Paper(
        title=row.title, abstract=row.abstract, authors=tuple(json.loads(row.authors)), arxiv_id=row.arxiv_id,
        url=row.url, code_url=row.code_url, project_url=row.project_url, ai_summary=row.ai_summary,
        keywords=tuple(json.loads(row.keywords)), categories=tuple(json.loads(row.categories)),
        github_stars=row.github_stars, comment_count=row.comment_count, thumbnail_url=row.thumbnail_url,
    )


class Appearance(NamedTuple):
    """One paper on one day's list: its rank there (0 first) and upvotes."""

    date: dt.date
    rank: int
    key: str
    upvotes: int | None


class PaperArchive:
    """The paper part of :class:`newsletter.store.Store`."""

    def store_batch(self, batch: Batch) -> int:
        """Keep ``batch``'s papers and make them that day's appearances, in
        one transaction; return how many papers were new or richer.

        Idempotent: storing the same day again changes nothing; a corrected
        batch for a day replaces that day's appearances. A paper's rank is
        its position in the batch, which is its position in that day's
        edition.
        """
        a = appearances_table
        day = batch.date.isoformat()
        keyed: dict[str, tuple[int, Paper]] = {}  # a batch holds each paper once (see batches)
        for rank, paper in enumerate(batch.papers):
            keyed.setdefault(paper_key(paper), (rank, paper))
        with self.engine.begin() as conn:
            changed = self._keep(conn, {key: paper for key, (_rank, paper) in keyed.items()})
            wanted = [(rank, key, paper.upvotes) for key, (rank, paper) in keyed.items()]
            present = [(r.rank, r.paper_key, r.upvotes) for r in conn.execute(
                select(a.c.rank, a.c.paper_key, a.c.upvotes).where(a.c.date == day).order_by(a.c.rank))]
            if present != wanted:
                conn.execute(delete(a).where(a.c.date == day))
                if wanted:
                    conn.execute(insert(a), [dict(date=day, rank=r, paper_key=k, upvotes=u) for r, k, u in wanted])
        return changed

    def store_papers(self, papers: Iterable[Paper]) -> int:
        """Keep ``papers`` (such as seed papers fetched from arXiv) without
        making them any day's appearances; return how many were new or
        richer. Idempotent."""
        keyed: dict[str, Paper] = {}
        for paper in papers:
            keyed.setdefault(paper_key(paper), paper)
        if not keyed:
            return 0
        with self.engine.begin() as conn:
            return self._keep(conn, keyed)

    def _keep(self, conn: Connection, keyed: dict[str, Paper]) -> int:
        """Insert or enrich the ``{key: Paper}`` rows inside the caller's
        transaction; return how many were new or richer."""
        p = papers_table
        stamp = self.clock()
        stored = {row.key: row._asdict() for row in conn.execute(select(p).where(p.c.key.in_(list(keyed))))}
        new, richer = [], 0
        for key, paper in keyed.items():
            before = stored.get(key)
            row = _richest(before or {}, paper)
            if before is None:
                new.append(dict(key=key, updated_at=stamp, **row))
            elif any(before[name] != value for name, value in row.items()):
                conn.execute(update(p).where(p.c.key == key).values(updated_at=stamp, **row))
                richer += 1
        if new:  # one statement for a day's new papers (executemany), not one each
            conn.execute(insert(p), new)
        return len(new) + richer

    def papers(self, keys: Iterable[str]) -> dict[str, Paper]:
        """Return ``{key: Paper}`` for those of ``keys`` that are stored."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Paper] = {}
        with self.reader.connect() as conn:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                for row in conn.execute(select(papers_table).where(papers_table.c.key.in_(chunk))):
                    found[row.key] = paper_from_row(row)
        return found

    def edition_papers(self, edition: Edition | dt.date) -> list[str]:
        """The keys of ``edition``'s papers (a date: its daily edition), in
        its order: a daily edition's are its day's stored batch, a weekly
        one's those it was stored with (empty when nothing is stored)."""
        edition = edition if isinstance(edition, Edition) else Edition(edition)
        if edition.kind == EditionKind.WEEKLY:
            return self.weekly_paper_keys(edition.date)
        a = appearances_table
        with self.reader.connect() as conn:
            return list(conn.scalars(select(a.c.paper_key).where(a.c.date == edition.date.isoformat())
                                     .order_by(a.c.rank)))

    def appearances(self, first: dt.date, last: dt.date) -> list[Appearance]:
        """Every paper's appearances on the days from ``first`` to ``last``
        (both included), by date, then rank."""
        a = appearances_table
        with self.reader.connect() as conn:
            rows = conn.execute(select(a.c.date, a.c.rank, a.c.paper_key, a.c.upvotes)
                                .where(a.c.date >= first.isoformat(), a.c.date <= last.isoformat())
                                .order_by(a.c.date, a.c.rank))
            return [Appearance(dt.date.fromisoformat(r.date), r.rank, r.paper_key, r.upvotes) for r in rows]

    def store_thumbnail(self, key: str, thumbnail: Thumbnail) -> None:
        """Keep ``thumbnail`` as the copy of the stored paper ``key``'s
        thumbnail, replacing any earlier one. The paper must be stored: the
        copy refers to its row."""
        t = paper_thumbnails_table
        row = dict(png=thumbnail.png, width=thumbnail.width, height=thumbnail.height, stored_at=self.clock())
        with self.engine.begin() as conn:
            if conn.execute(update(t).where(t.c.paper_key == key).values(**row)).rowcount == 0:
                conn.execute(insert(t).values(paper_key=key, **row))

    def thumbnail(self, key: str) -> Thumbnail | None:
        """The stored copy of paper ``key``'s thumbnail, or None."""
        t = paper_thumbnails_table
        with self.reader.connect() as conn:
            row = conn.execute(select(t.c.png, t.c.width, t.c.height).where(t.c.paper_key == key)).first()
        return Thumbnail(bytes(row.png), row.width, row.height) if row else None

    def thumbnail_size(self, key: str) -> tuple[int, int] | None:
        """The width and height of paper ``key``'s stored thumbnail, or None
        when it has none (the picture itself is not read)."""
        t = paper_thumbnails_table
        with self.reader.connect() as conn:
            row = conn.execute(select(t.c.width, t.c.height).where(t.c.paper_key == key)).first()
        return (row.width, row.height) if row else None

    def stored_thumbnail_keys(self, keys: Iterable[str]) -> set[str]:
        """Those of the papers ``keys`` whose thumbnail has a stored copy."""
        keys = list(dict.fromkeys(keys))
        t = paper_thumbnails_table
        found: set[str] = set()
        with self.reader.connect() as conn:
            for start in range(0, len(keys), 500):
                found.update(conn.scalars(select(t.c.paper_key).where(t.c.paper_key.in_(keys[start:start + 500]))))
        return found
