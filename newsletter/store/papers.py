"""Every paper the newsletter has carried, or that a reader named as a seed
paper (fetched from arXiv): one row per paper with its richest text, and
the days it appeared, with its rank and upvotes.

One paper, whatever the source: a paper stored without an arXiv id (key
``title:`` and its normalized title, see models.title_key) and the same
paper stored with one (key: the id) are one row, the arXiv id's. When the
arXiv copy comes second, the two are merged in the transaction that stores
it (:func:`merge_paper`): the title row's text enriches the arXiv row, its
appearances, votes, picks, weekly editions, thumbnail and the readers'
liked and disliked lists move to the arXiv id, and its key is kept as an
alias (``paper_aliases``), which old links and tokens still name. When it
comes first, the copy without an id is stored under the arXiv id at once.
Titles are matched only when one arXiv paper has that normalized title:
two arXiv papers sharing a title leave a copy without an id on its own."""

from __future__ import annotations

import datetime as dt
import json
from typing import Iterable, NamedTuple

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection

from newsletter.core.models import Batch, Edition, EditionKind, Paper, Thumbnail, paper_key, title_key
from newsletter.store.engine import execute_expanded
from newsletter.store.schema import (appearances_table, issues_table, paper_aliases_table, paper_thumbnails_table,
                                     papers_table, picked_papers_table, picks_table, profiles_table, votes_table)

TITLE_PREFIX = "title:"  # the start of the key of a paper without an arXiv id (models.title_key)

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
    return {**row, **{name: json.dumps(row[name], ensure_ascii=False) for name in ("authors", "keywords", "categories")},
            "title_key": title_key(row["title"])}


def _as_stored(paper: Paper) -> dict:
    """``paper`` as :func:`_richest` reads a stored row."""
    row = {name: getattr(paper, name) for name in _TEXT}
    return {**row, **{name: json.dumps(list(getattr(paper, name)), ensure_ascii=False)
                      for name in ("authors", "keywords", "categories")}}


# Read for every page of a send's picks, built once: the keys are bound per
# execution, where ``in_(list)`` makes and checks a parameter per key.
_ALIASES_OF = select(paper_aliases_table.c.alias, paper_aliases_table.c.paper_key).where(
    paper_aliases_table.c.alias.in_(bindparam("titles", expanding=True)))


def canonical_keys(conn: Connection, keys: Iterable[str]) -> dict[str, str]:
    """``{alias: key}`` for those of ``keys`` that are aliases of a stored
    paper (``title:`` keys of papers later stored with an arXiv id), read
    inside the caller's transaction; keys that are not aliases are left
    out."""
    titles = list(dict.fromkeys(k for k in keys if k.startswith(TITLE_PREFIX)))
    found: dict[str, str] = {}
    for start in range(0, len(titles), 500):
        found.update(execute_expanded(conn, _ALIASES_OF, titles=titles[start:start + 500]).all())
    return found


def keys_and_names(conn: Connection, keys: Iterable[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The stored keys of the papers ``keys`` name (an alias: its paper's),
    and for each of those the keys of ``keys`` that name it: what a query
    by paper key reads with, and maps its rows back with."""
    keys = list(dict.fromkeys(keys))
    same = canonical_keys(conn, keys)
    named: dict[str, list[str]] = {}
    for key in keys:
        named.setdefault(same.get(key, key), []).append(key)
    return list(named), named


def _arxiv_by_title(conn: Connection, titles: list[str]) -> dict[str, str]:
    """``{title key: arXiv id}`` for those of the ``title:`` keys ``titles``
    that exactly one stored paper with an arXiv id has as its title's key
    (two such papers: not the same paper, or not knowably)."""
    p = papers_table
    seen: dict[str, list[str]] = {}
    for start in range(0, len(titles), 500):
        for r in conn.execute(select(p.c.key, p.c.title_key).where(
                p.c.title_key.in_(titles[start:start + 500]), p.c.arxiv_id.is_not(None))):
            seen.setdefault(r.title_key, []).append(r.key)
    return {title: keys[0] for title, keys in seen.items() if len(keys) == 1 and keys[0] != title}


def merge_paper(conn: Connection, alias: str, key: str, stamp: dt.datetime) -> None:
    """Make the stored paper ``alias`` (a ``title:`` key) one with the
    stored paper ``key`` (its arXiv id), inside the caller's transaction:
    ``key``'s row gets what only ``alias``'s row had (see
    :func:`_richest`), and everything naming ``alias`` names ``key``:
    appearances, picks and picked papers, weekly editions, the thumbnail (unless ``key`` has
    one), votes (a reader who voted on both keeps the newer vote) and
    readers' liked and disliked lists. ``alias``'s row goes, its key kept
    in ``paper_aliases``."""
    p, a, t, v, pk, i, al = (papers_table, appearances_table, paper_thumbnails_table, votes_table, picks_table,
                             issues_table, paper_aliases_table)
    old = conn.execute(select(p).where(p.c.key == alias)).first()
    new = conn.execute(select(p).where(p.c.key == key)).first()
    if old is None or new is None:
        return
    row = _richest(old._asdict(), paper_from_row(new))
    if any(new._asdict()[name] != value for name, value in row.items()):
        conn.execute(update(p).where(p.c.key == key).values(updated_at=stamp, **row))
    conn.execute(update(a).where(a.c.paper_key == alias).values(paper_key=key))
    conn.execute(update(pk).where(pk.c.paper_key == alias).values(paper_key=key))
    # An edition that picked both keys keeps one row, under ``key``.
    pp = picked_papers_table
    conn.execute(delete(pp).where(pp.c.paper_key == alias,
                                  pp.c.edition.in_(select(pp.c.edition).where(pp.c.paper_key == key))))
    conn.execute(update(pp).where(pp.c.paper_key == alias).values(paper_key=key))
    if conn.scalar(select(t.c.paper_key).where(t.c.paper_key == key)) is None:
        conn.execute(update(t).where(t.c.paper_key == alias).values(paper_key=key))
    else:
        conn.execute(delete(t).where(t.c.paper_key == alias))
    # Votes: a reader keeps one vote on the paper, the newer of the two.
    voted = {r.subscriber_id: r for r in conn.execute(select(v).where(v.c.paper_key == alias)).all()}
    both = conn.execute(select(v).where(v.c.paper_key == key, v.c.subscriber_id.in_(list(voted)))).all() \
        if voted else []
    final: dict[int, int] = {}
    for r in both:
        older = voted[r.subscriber_id]
        if older.at > r.at:
            conn.execute(delete(v).where(v.c.subscriber_id == r.subscriber_id, v.c.paper_key == key))
        else:
            conn.execute(delete(v).where(v.c.subscriber_id == r.subscriber_id, v.c.paper_key == alias))
            final[r.subscriber_id] = r.vote
    conn.execute(update(v).where(v.c.paper_key == alias).values(paper_key=key))
    for subscriber_id, r in voted.items():
        _rename_in_profile(conn, subscriber_id, alias, key, final.get(subscriber_id, r.vote))
    # Weekly editions name their papers in a JSON list (LIKE only narrows
    # the rows down: "_" in a key matches any character).
    for r in conn.execute(select(i.c.date, i.c.kind, i.c.paper_keys).where(
            i.c.paper_keys.like(f'%"{alias}"%'))).all():
        keys = [key if k == alias else k for k in json.loads(r.paper_keys)]
        conn.execute(update(i).where(i.c.date == r.date, i.c.kind == r.kind).values(paper_keys=json.dumps(keys)))
    conn.execute(update(al).where(al.c.paper_key == alias).values(paper_key=key))
    conn.execute(insert(al).values(alias=alias, paper_key=key, linked_at=stamp))
    conn.execute(delete(p).where(p.c.key == alias))


def _rename_in_profile(conn: Connection, subscriber_id: int, alias: str, key: str, vote: int) -> None:
    """Name ``key`` for ``alias`` in the reader's liked and disliked lists,
    once, in the list of their ``vote``."""
    pr = profiles_table
    stored = conn.scalar(select(pr.c.lists).where(pr.c.subscriber_id == subscriber_id))
    if stored is None:
        return
    lists = json.loads(stored)
    for name, sign in (("liked", 1), ("disliked", -1)):
        renamed = list(dict.fromkeys(key if k == alias else k for k in lists.get(name, ())))
        if sign != vote and key in renamed:
            renamed.remove(key)
        if renamed:
            lists[name] = renamed
        else:
            lists.pop(name, None)
    conn.execute(update(pr).where(pr.c.subscriber_id == subscriber_id).values(
        lists=json.dumps(lists, ensure_ascii=False, separators=(",", ":"))))


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
        with self.engine.begin() as conn:
            same = self._same_papers(conn, [paper_key(paper) for paper in batch.papers])
            keyed: dict[str, tuple[int, Paper]] = {}  # a batch holds each paper once (see batches)
            for rank, paper in enumerate(batch.papers):
                key = paper_key(paper)
                keyed.setdefault(same.get(key, key), (rank, paper))
            changed = self._keep(conn, {key: paper for key, (_rank, paper) in keyed.items()})
            # Both copies of a paper in this batch: the one without an id merged just now.
            moved = canonical_keys(conn, keyed)
            wanted = [(rank, moved.get(key, key), paper.upvotes) for key, (rank, paper) in keyed.items()]
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
        papers = list(papers)
        if not papers:
            return 0
        with self.engine.begin() as conn:
            same = self._same_papers(conn, [paper_key(paper) for paper in papers])
            keyed: dict[str, Paper] = {}
            for paper in papers:
                key = paper_key(paper)
                keyed.setdefault(same.get(key, key), paper)
            return self._keep(conn, keyed)

    def _same_papers(self, conn: Connection, keys: list[str]) -> dict[str, str]:
        """``{title key: arXiv id}`` for those of the ``title:`` keys ``keys``
        that are already one paper with an arXiv id: an alias, or a title
        that one stored arXiv paper has (the alias is then recorded), inside
        the caller's transaction."""
        same = canonical_keys(conn, keys)
        found = _arxiv_by_title(conn, [k for k in dict.fromkeys(keys) if k.startswith(TITLE_PREFIX)
                                       and k not in same])
        if found:
            stamp = self.clock()
            stored = set(conn.scalars(select(papers_table.c.key).where(papers_table.c.key.in_(list(found)))))
            for alias, key in found.items():
                if alias in stored:  # stored before the arXiv copy, and not merged then (a title shared since)
                    merge_paper(conn, alias, key, stamp)
                else:
                    conn.execute(insert(paper_aliases_table).values(alias=alias, paper_key=key, linked_at=stamp))
        return {**same, **found}

    def _keep(self, conn: Connection, keyed: dict[str, Paper]) -> int:
        """Insert or enrich the ``{key: Paper}`` rows inside the caller's
        transaction, then merge into the papers with an arXiv id the stored
        papers without one that have their title (see :func:`merge_paper`);
        return how many were new or richer."""
        p = papers_table
        stamp = self.clock()
        rows = {row.key: row for row in conn.execute(select(p).where(p.c.key.in_(list(keyed))))}
        stored = {key: row._asdict() for key, row in rows.items()}
        new, richer = [], 0
        for key, paper in keyed.items():
            before = stored.get(key)
            if before is not None and not paper.arxiv_id and before["arxiv_id"]:
                # A copy without an id of a paper stored with one: the stored row leads.
                row = _richest(_as_stored(paper), paper_from_row(rows[key]))
            else:
                row = _richest(before or {}, paper)
            if before is None:
                new.append(dict(key=key, updated_at=stamp, **row))
            elif any(before[name] != value for name, value in row.items()):
                conn.execute(update(p).where(p.c.key == key).values(updated_at=stamp, **row))
                richer += 1
        if new:  # one statement for a day's new papers (executemany), not one each
            conn.execute(insert(p), new)
        titles = {title_key(paper.title): key for key, paper in keyed.items() if paper.arxiv_id}
        if titles:
            waiting = set(conn.scalars(select(p.c.key).where(p.c.key.in_(list(titles)))))
            for alias, key in _arxiv_by_title(conn, sorted(waiting)).items():
                merge_paper(conn, alias, key, stamp)
        return len(new) + richer

    def canonical_keys(self, keys: Iterable[str]) -> dict[str, str]:
        """``{alias: key}`` for those of ``keys`` that name a paper by an
        old ``title:`` key (see :func:`canonical_keys`)."""
        with self.reader.connect() as conn:
            return canonical_keys(conn, keys)

    def paper_aliases(self, key: str) -> list[str]:
        """The old ``title:`` keys of the paper ``key`` (empty for most)."""
        al = paper_aliases_table
        with self.reader.connect() as conn:
            return list(conn.scalars(select(al.c.alias).where(al.c.paper_key == key).order_by(al.c.alias)))

    def papers(self, keys: Iterable[str]) -> dict[str, Paper]:
        """Return ``{key: Paper}`` for those of ``keys`` that are stored, an
        alias (see :meth:`canonical_keys`) with its paper."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Paper] = {}
        with self.reader.connect() as conn:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                for row in conn.execute(select(papers_table).where(papers_table.c.key.in_(chunk))):
                    found[row.key] = paper_from_row(row)
            # Old keys (weekly editions sent, profiles) name the merged paper.
            same = canonical_keys(conn, (key for key in keys if key not in found))
            merged = list(set(same.values()))
            rows = {row.key: row for start in range(0, len(merged), 500) for row in conn.execute(
                select(papers_table).where(papers_table.c.key.in_(merged[start:start + 500])))}
            found.update((alias, paper_from_row(rows[key])) for alias, key in same.items() if key in rows)
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
