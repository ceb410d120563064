"""Per-issue delivery figures, against the limits SES enforces.

SES reviews an account whose bounce rate reaches 5% (and may pause it at
10%), or whose complaint rate reaches 0.1% (pause at 0.5%). The figures here
warn before that: from 80% of each review threshold.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from fractions import Fraction

from newsletter.core.models import Edition, EditionKind, FeedbackKind
from newsletter.store import Store

BOUNCE_REVIEW = 0.05
COMPLAINT_REVIEW = 0.001
WARN_SHARE = 0.8


def _reaches(count: int, sent: int, limit: float, share: float = 1.0) -> bool:
    """Return whether ``count / sent`` is at least ``share`` of ``limit``,
    compared exactly: in floats 0.05 * 0.8 is 0.04000000000000001, so 4
    bounces in 100 would not count as reaching 80% of 5%."""
    return sent > 0 and Fraction(count, sent) >= Fraction(str(limit)) * Fraction(str(share))


@dataclass(frozen=True)
class IssueStats:
    """Delivery figures of one issue."""

    issue_date: str
    sent: int
    delivered: int
    bounced: int
    complained: int
    unsubscribed: int  # readers who unsubscribed after this issue and before the next
    # Readers whose message SES accepted, then dropped with a Rendering
    # Failure (their ledger rows are "failed"): they got nothing.
    rendering_failed: int = 0

    @property
    def bounce_rate(self) -> float:
        return self.bounced / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complained / self.sent if self.sent else 0.0

    @property
    def bounce_level(self) -> str:
        """"ok", "near" (from 80% of SES's review threshold) or "over" it."""
        return _level(self.bounced, self.sent, BOUNCE_REVIEW)

    @property
    def complaint_level(self) -> str:
        """"ok", "near" (from 80% of SES's review threshold) or "over" it."""
        return _level(self.complained, self.sent, COMPLAINT_REVIEW)

    def rendering_failure_warning(self) -> str | None:
        """Return what to do about readers SES dropped with a Rendering
        Failure, or None when there were none."""
        if not self.rendering_failed:
            return None
        edition = Edition.parse(self.issue_date)
        weekly = " --weekly" if edition.kind == EditionKind.WEEKLY else ""
        return (f"{self.rendering_failed:,} messages dropped by SES with a Rendering Failure (the readers got "
                f"nothing): fix the cause, then run newsletter send --date {edition.date}{weekly} "
                "--resend-rendering-failures")

    def warnings(self) -> list[str]:
        """Return warnings about rates near or over the SES review
        thresholds, and about readers SES dropped with a Rendering Failure."""
        found = [warning] if (warning := self.rendering_failure_warning()) else []
        if self.bounce_level != "ok":
            level = self.bounce_level.upper() if self.bounce_level == "over" else self.bounce_level
            found.append(f"bounce rate {self.bounce_rate:.2%} is {level} the {BOUNCE_REVIEW:.0%} SES review limit")
        if self.complaint_level != "ok":
            level = self.complaint_level.upper() if self.complaint_level == "over" else self.complaint_level
            found.append(
                f"complaint rate {self.complaint_rate:.3%} is {level} the {COMPLAINT_REVIEW:.1%} SES review limit"
            )
        return found


def _level(count: int, sent: int, limit: float) -> str:
    if _reaches(count, sent, limit):
        return "over"
    return "near" if _reaches(count, sent, limit, WARN_SHARE) else "ok"


def _figures(store: Store, sends: dict[str, tuple[dt.datetime, dict[str, int]]],
             until: dt.datetime | None = None) -> list[IssueStats]:
    """The figures of the editions in ``sends`` ({edition: (when its send
    began, {ledger status: readers})}), most recently sent first. A
    reader's own unsubscribe counts for the last of these editions the
    ledger has as sent to that reader before it (a daily reader's is never
    blamed on a weekly edition they did not get), and not at all from
    ``until`` on (when the next edition, left out of ``sends``, began)."""
    dates = sorted(sends, key=lambda day: (sends[day][0], day))  # in the order they were sent
    feedback = store.feedback_counts(dates)
    unsubscribed = store.reader_unsubscribe_counts(dates, sends[dates[0]][0], until) if dates else {}
    return [
        IssueStats(
            issue_date=day,
            sent=sends[day][1].get("sent", 0),
            delivered=feedback.get(day, {}).get("delivery", 0),
            bounced=feedback.get(day, {}).get("bounce", 0),
            complained=feedback.get(day, {}).get("complaint", 0),
            unsubscribed=unsubscribed[day],
            rendering_failed=feedback.get(day, {}).get(FeedbackKind.RENDERING_FAILURE, 0),
        )
        for day in reversed(dates)
    ]


def issue_stats(store: Store, days: int, now: dt.datetime | None = None) -> list[IssueStats]:
    """Return the figures of every issue sent in the ``days`` days before
    ``now`` (default: the current time), most recently sent first.

    The window is about when the send happened, not the issue's date: an
    issue dated months ago and sent today is in it. Each issue's figures
    cover all its readers, and a reader's own unsubscribe counts for the
    last of these issues sent to that reader before it.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    return _figures(store, store.delivery_totals(now - dt.timedelta(days=days)))


def edition_stats(store: Store, editions: list[str], until: dt.datetime | None = None) -> list[IssueStats]:
    """Return the figures of those of ``editions`` (keys) that were sent,
    most recently sent first, from the ledger's totals the dashboard keeps
    (see ``Store.edition_totals``). A reader's own unsubscribe counts for
    the last of these editions sent to that reader before it, when it came
    before ``until`` (give when the next edition's send began, for a page of
    older editions)."""
    totals = store.edition_totals(editions)
    return _figures(store, {key: (found.first_at, found.counts) for key, found in totals.items()}, until)
