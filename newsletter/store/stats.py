"""The queries behind delivery figures: per-issue ledger totals, feedback
counts, and which edition readers unsubscribed themselves after."""

from __future__ import annotations

import datetime as dt
from typing import Iterable

from sqlalchemy import func, select

from newsletter.core.models import DeliveryStatus, FeedbackKind, SubscriberStatus
from newsletter.core.policy import READER_SOURCES
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

    def reader_unsubscribe_counts(self, editions: list[str], since: dt.datetime,
                                  until: dt.datetime | None = None) -> dict[str, int]:
        """Return {edition key: readers' own unsubscribes (web or one-click)
        it is blamed for} over ``editions``: each unsubscribe from ``since``
        to ``until`` (None: now) counts for the last of ``editions`` the
        ledger has as sent to that reader before it, and for none when that
        reader was sent none of them. Counted by the database in one pass
        over that time's events, never read row by row."""
        if not editions:
            return {}
        e, d = events_table, deliveries_table
        # For each event, the reader's last edition sent before it: a probe of
        # the ledger's (edition, reader) key for each edition asked about.
        blamed = (select(d.c.issue_date)
                  .where(d.c.subscriber_id == e.c.subscriber_id, d.c.issue_date.in_(editions),
                         d.c.status == DeliveryStatus.SENT, d.c.updated_at <= e.c.at)
                  .order_by(d.c.updated_at.desc(), d.c.issue_date.desc()).limit(1)
                  .scalar_subquery())
        window = [e.c.new_status == SubscriberStatus.UNSUBSCRIBED, e.c.source.in_(READER_SOURCES),
                  e.c.at >= since.astimezone(dt.timezone.utc)]  # stored times are UTC
        if until is not None:
            window.append(e.c.at < until.astimezone(dt.timezone.utc))
        events = select(blamed.label("edition")).where(*window).subquery()
        with self.reader.connect() as conn:
            rows = conn.execute(select(events.c.edition, func.count()).group_by(events.c.edition)).all()
        counts = dict.fromkeys(editions, 0)
        counts.update({edition: int(count) for edition, count in rows if edition is not None})
        return counts
