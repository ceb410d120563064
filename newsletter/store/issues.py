"""Rendered editions kept for the web: each one's web version and text, with
no personal link in either, keyed by date and kind (see models.Edition).
Only a published edition (its send began, or the operator published it) is
on the public archive and feed; a rendered or dry-run one is only stored."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass

from sqlalchemy import func, insert, select, update

from newsletter.core.models import UNSUBSCRIBE_URL_MARK, Edition, EditionKind, Issue, paper_key
from newsletter.store.engine import as_utc
from newsletter.store.schema import issues_table

# A reader's unsubscribe link in an issue's text, or one of the schedule
# links made from it (".../weekly", ".../pause").
PERSONAL_LINK = re.compile(re.escape(UNSUBSCRIBE_URL_MARK) + r"(/[a-z]+)?")


@dataclass(frozen=True)
class StoredIssue:
    """An edition as the web app shows it."""

    date: dt.date
    kind: EditionKind
    subject: str
    preheader: str
    paper_count: int
    web_html: str
    text: str
    updated_at: dt.datetime
    finished_at: dt.datetime | None = None  # when a send of it last left no reader waiting
    published_at: dt.datetime | None = None  # when it went on the web; None: not on it

    @property
    def edition(self) -> Edition:
        """The edition this is."""
        return Edition(self.date, self.kind)

    @property
    def path(self) -> str:
        """Its address under the web app's ``/issues/``: ``2026-03-15`` or
        ``2026-03-15/weekly``."""
        return self.date.isoformat() + ("/weekly" if self.kind == EditionKind.WEEKLY else "")


class IssueArchive:
    """The stored-issue part of :class:`newsletter.store.Store`."""

    def save_issue(self, issue: Issue, publish: bool = False) -> None:
        """Insert or replace the stored copy of ``issue`` (by date and kind):
        its web version and its text, with no personal link in either, and
        a weekly edition's papers in its order. It is on the web when it
        already was, or with ``publish`` (see :meth:`publish_issue`)."""
        values = dict(
            subject=issue.subject,
            preheader=issue.preheader,
            paper_count=issue.paper_count,
            web_html=issue.web_html,
            text=PERSONAL_LINK.sub("(your personal link is in the email)", issue.text),
            paper_keys=json.dumps([paper_key(p) for p in issue.papers]) if issue.kind == EditionKind.WEEKLY else None,
        )
        where = (issues_table.c.date == issue.date.isoformat()) & (issues_table.c.kind == issue.kind.value)
        stamp = self.clock()
        published = {"published_at": func.coalesce(issues_table.c.published_at, stamp)} if publish else {}
        with self.engine.begin() as conn:
            changed = conn.execute(update(issues_table).where(where)
                                   .values(**values, **published, updated_at=stamp)).rowcount
            if not changed:
                conn.execute(insert(issues_table).values(date=issue.date.isoformat(), kind=issue.kind.value,
                                                         created_at=stamp, updated_at=stamp,
                                                         published_at=stamp if publish else None, **values))

    def publish_issue(self, edition: Edition) -> bool:
        """Put the stored ``edition`` on the public archive and feed (an
        edition already there keeps its first publication time). Returns
        False when it is not stored."""
        where = (issues_table.c.date == edition.date.isoformat()) & (issues_table.c.kind == edition.kind.value)
        with self.engine.begin() as conn:
            stamp = func.coalesce(issues_table.c.published_at, self.clock())
            return conn.execute(update(issues_table).where(where).values(published_at=stamp)).rowcount > 0

    def unpublish_issue(self, edition: Edition) -> bool:
        """Take the stored ``edition`` off the public archive and feed (its
        page answers 404; it stays stored). Returns False when it is not
        stored."""
        where = (issues_table.c.date == edition.date.isoformat()) & (issues_table.c.kind == edition.kind.value)
        with self.engine.begin() as conn:
            return conn.execute(update(issues_table).where(where).values(published_at=None)).rowcount > 0

    def finish_issue(self, edition: Edition) -> None:
        """Note that a send of ``edition`` ended with no active reader left
        waiting for it."""
        with self.engine.begin() as conn:
            conn.execute(update(issues_table).where(issues_table.c.date == edition.date.isoformat(),
                                                    issues_table.c.kind == edition.kind.value)
                         .values(finished_at=self.clock()))

    def get_issue(self, date: dt.date, kind: EditionKind = EditionKind.DAILY,
                  published_only: bool = False) -> StoredIssue | None:
        """Return the stored edition of ``date`` and ``kind`` (with
        ``published_only``, only if it is published), or None."""
        query = select(issues_table).where(issues_table.c.date == date.isoformat(), issues_table.c.kind == kind.value)
        if published_only:
            query = query.where(issues_table.c.published_at.is_not(None))
        with self.reader.connect() as conn:
            row = conn.execute(query).first()
        return self._issue(row) if row else None

    def list_issues(self, limit: int = 100, published_only: bool = False) -> list[StoredIssue]:
        """Return the latest ``limit`` stored editions (with
        ``published_only``, published ones), newest first (of one date, the
        weekly before the daily)."""
        query = select(issues_table).order_by(issues_table.c.date.desc(), issues_table.c.kind.desc()).limit(limit)
        if published_only:
            query = query.where(issues_table.c.published_at.is_not(None))
        with self.reader.connect() as conn:
            rows = conn.execute(query).all()
        return [self._issue(row) for row in rows]

    def weekly_paper_keys(self, date: dt.date) -> list[str]:
        """The keys of the papers of the stored weekly edition of ``date``,
        in its order (empty when it is not stored)."""
        with self.reader.connect() as conn:
            keys = conn.scalar(select(issues_table.c.paper_keys).where(
                issues_table.c.date == date.isoformat(), issues_table.c.kind == EditionKind.WEEKLY.value))
        return json.loads(keys) if keys else []

    @staticmethod
    def _issue(row) -> StoredIssue:
        return StoredIssue(
            date=dt.date.fromisoformat(row.date),
            kind=EditionKind(row.kind),
            subject=row.subject,
            preheader=row.preheader,
            paper_count=row.paper_count,
            web_html=row.web_html,
            text=row.text,
            updated_at=as_utc(row.updated_at),
            finished_at=as_utc(row.finished_at) if row.finished_at else None,
            published_at=as_utc(row.published_at) if row.published_at else None,
        )
