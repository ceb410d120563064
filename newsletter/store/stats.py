"""The queries behind delivery figures: per-issue ledger totals, feedback
counts, and when readers unsubscribed themselves."""

from __future__ import annotations

import datetime as dt
from typing import Iterable

from sqlalchemy import case, func, select

from newsletter.models import DeliveryStatus, FeedbackKind, SubscriberStatus
from newsletter.policy import READER_SOURCES
from newsletter.store.engine import as_utc
from newsletter.store.schema import deliveries_table, events_table, feedback_table


class StatsQueries:
    """The statistics part of :class:`newsletter.store.Store`."""

    def feedback_counts(self, issue_dates: Iterable[str]) -> dict[str, dict[str, int]]:
        """Return {issue date: {kind: recipients}} for feedback about the
        issues dated ``issue_dates`` (YYYY-MM-DD); bounces count only
        permanent ones, as SES's bounce rate does, and rendering failures
        only readers whose ledger row is still "failed" (not sent again
        since)."""
        dates = list(issue_dates)
        if not dates:
            return {}
        f, d = feedback_table, deliveries_table
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(f.c.issue_date, f.c.kind, func.count(func.distinct(f.c.email_key)))
                .where(f.c.issue_date.in_(dates))
                .where(f.c.kind != FeedbackKind.RENDERING_FAILURE)
                .where((f.c.kind != FeedbackKind.BOUNCE) | (f.c.bounce_type == "Permanent"))
                .group_by(f.c.issue_date, f.c.kind)
            ).all()
            # Few rows: the index finds an edition's rendering failures, and
            # each is checked against its reader's ledger row.
            rows += conn.execute(
                select(f.c.issue_date, f.c.kind, func.count(func.distinct(f.c.email_key)))
                .select_from(f.join(d, (d.c.issue_date == f.c.issue_date) & (d.c.subscriber_id == f.c.subscriber_id)))
                .where(f.c.issue_date.in_(dates), f.c.kind == FeedbackKind.RENDERING_FAILURE,
                       d.c.status == DeliveryStatus.FAILED)
                .group_by(f.c.issue_date, f.c.kind)
            ).all()
        result: dict[str, dict[str, int]] = {}
        for issue_date, kind, count in rows:
            result.setdefault(issue_date, {})[kind] = count
        return result

    def delivery_totals(self, since: dt.datetime) -> dict[str, tuple[dt.datetime, dict[str, int]]]:
        """Return {issue date: (when its send began, {ledger status: readers})}
        for every issue sent at ``since`` or later, whatever its date: an
        issue counts when a ledger row of it was written since then, and its
        figures cover all its readers. "When its send began" is the earliest
        ledger write of the issue, in UTC."""
        d = deliveries_table
        # Stored times are UTC; SQLite compares them as naive text.
        since = since.astimezone(dt.timezone.utc)
        recent = select(d.c.issue_date).where(d.c.updated_at >= since).distinct()
        with self.reader.connect() as conn:
            rows = conn.execute(
                select(d.c.issue_date, d.c.status, func.count(), func.min(d.c.updated_at))
                .where(d.c.issue_date.in_(recent))
                .group_by(d.c.issue_date, d.c.status)
            ).all()
        result: dict[str, tuple[dt.datetime, dict[str, int]]] = {}
        for issue_date, status, count, first in rows:
            began, totals = result.get(issue_date, (as_utc(first), {}))
            totals[status] = count
            result[issue_date] = (min(began, as_utc(first)), totals)
        return result

    def reader_unsubscribe_counts(self, starts: list[dt.datetime], until: dt.datetime | None = None) -> list[int]:
        """Return how many readers unsubscribed themselves (web or one-click)
        from each of ``starts`` (ascending) to the next one, the last up to
        ``until`` (None: now): counted by the database in one pass over
        that time's events, never read row by row."""
        if not starts:
            return []
        e = events_table
        bounds = [moment.astimezone(dt.timezone.utc) for moment in starts]  # stored times are UTC
        ends = bounds[1:] + [until.astimezone(dt.timezone.utc) if until else None]
        sums = [func.coalesce(func.sum(case(((e.c.at >= start) & (e.c.at < end) if end else (e.c.at >= start), 1),
                                            else_=0)), 0)
                for start, end in zip(bounds, ends)]
        with self.reader.connect() as conn:
            row = conn.execute(select(*sums).where(
                e.c.new_status == SubscriberStatus.UNSUBSCRIBED, e.c.source.in_(READER_SOURCES), e.c.at >= bounds[0],
            )).one()
        return [int(count) for count in row]
