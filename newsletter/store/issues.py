"""Rendered issues kept for the web: each one's web version and text, with
no personal link in either."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import insert, select, update

from newsletter.models import UNSUBSCRIBE_URL_MARK, Issue
from newsletter.store.engine import as_utc
from newsletter.store.schema import issues_table


@dataclass(frozen=True)
class StoredIssue:
    """An issue as the web app shows it."""

    date: dt.date
    subject: str
    preheader: str
    paper_count: int
    web_html: str
    text: str
    updated_at: dt.datetime


class IssueArchive:
    """The stored-issue part of :class:`newsletter.store.Store`."""

    def save_issue(self, issue: Issue) -> None:
        """Insert or replace the stored copy of ``issue`` (by date): its web
        version and its text, with no personal link in either."""
        values = dict(
            subject=issue.subject,
            preheader=issue.preheader,
            paper_count=issue.paper_count,
            web_html=issue.web_html,
            text=issue.text.replace(UNSUBSCRIBE_URL_MARK, "(your personal link is in the email)"),
        )
        day = issue.date.isoformat()
        stamp = self.clock()
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(issues_table).where(issues_table.c.date == day).values(**values, updated_at=stamp)
            ).rowcount
            if not changed:
                conn.execute(insert(issues_table).values(date=day, created_at=stamp, updated_at=stamp, **values))

    def get_issue(self, date: dt.date) -> StoredIssue | None:
        """Return the stored issue of ``date``, or None."""
        with self.reader.connect() as conn:
            row = conn.execute(select(issues_table).where(issues_table.c.date == date.isoformat())).first()
        return self._issue(row) if row else None

    def list_issues(self, limit: int = 100) -> list[StoredIssue]:
        """Return the latest ``limit`` stored issues, newest first."""
        with self.reader.connect() as conn:
            rows = conn.execute(select(issues_table).order_by(issues_table.c.date.desc()).limit(limit)).all()
        return [self._issue(row) for row in rows]

    @staticmethod
    def _issue(row) -> StoredIssue:
        return StoredIssue(
            date=dt.date.fromisoformat(row.date),
            subject=row.subject,
            preheader=row.preheader,
            paper_count=row.paper_count,
            web_html=row.web_html,
            text=row.text,
            updated_at=as_utc(row.updated_at),
        )
