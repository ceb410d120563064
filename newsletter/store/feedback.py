"""Recording SES feedback (bounces, complaints, deliveries) and applying the
list's suppression rules (``newsletter.core.policy``) in the same transaction."""

from __future__ import annotations

import datetime as dt
from typing import Iterable

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from newsletter.core.models import DeliveryStatus, Feedback, FeedbackKind
from newsletter.core.policy import suppression
from newsletter.store.schema import deliveries_table, feedback_table, sns_seen_table, subscribers_table
from newsletter.store.dashboard import forget_totals
from newsletter.store.subscribers import _change_status


class FeedbackRecords:
    """The SES feedback part of :class:`newsletter.store.Store`."""

    def apply_feedback(self, sns_message_id: str, records: Iterable[Feedback]) -> dict[str, list[str]] | None:
        """Record the SES feedback of one SNS message and suppress addresses
        as the list's rules say (:func:`newsletter.core.policy.suppression`: a
        permanent bounce or a complaint at once, repeated transient bounces
        too), with an event naming the type, subtype, diagnostic and issue;
        a Rendering Failure makes the reader's ledger row of that edition
        "failed" with SES's error as the reason (SES dropped the message);
        all in one transaction.

        Returns {"suppressed": [...], "recorded": [...]} with the addresses
        concerned, or None when this SNS message was handled before (nothing
        changes then).
        """
        result: dict[str, list[str]] = {"suppressed": [], "recorded": []}
        stamp = self.clock()
        f = feedback_table
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(sns_seen_table).values(message_id=sns_message_id, received_at=stamp))
                for record in records:
                    key = record.email.strip().lower()
                    if not key:
                        continue
                    subscriber_id = conn.scalar(
                        select(subscribers_table.c.id).where(subscribers_table.c.email_key == key)
                    )
                    conn.execute(insert(f).values(
                        sns_message_id=sns_message_id, kind=record.kind, email_key=key,
                        subscriber_id=subscriber_id, issue_date=record.issue_date,
                        bounce_type=record.bounce_type, bounce_subtype=record.bounce_subtype,
                        detail=(record.detail or "")[:1000] or None, at=record.at or stamp,
                    ))
                    result["recorded"].append(key)
                    if subscriber_id is None:
                        continue

                    def recent_transient_bounces(window: dt.timedelta, key=key) -> int:
                        return conn.scalar(select(func.count()).select_from(f).where(
                            f.c.email_key == key, f.c.kind == FeedbackKind.BOUNCE,
                            f.c.bounce_type == "Transient", f.c.at >= stamp - window,
                        ))

                    if record.kind == FeedbackKind.RENDERING_FAILURE and record.issue_date:
                        # SES accepted the message and dropped it: the reader got nothing.
                        d = deliveries_table
                        changed = conn.execute(d.update().where(
                            d.c.issue_date == record.issue_date, d.c.subscriber_id == subscriber_id,
                            d.c.status.in_((DeliveryStatus.SENT, DeliveryStatus.UNKNOWN)),
                        ).values(status=DeliveryStatus.FAILED, reason=(record.detail or "")[:1000], updated_at=stamp))
                        if changed.rowcount:
                            forget_totals(conn, record.issue_date)  # the edition's kept counts changed
                    verdict = suppression(record, recent_transient_bounces)
                    if verdict and _change_status(conn, subscriber_id, verdict.status, "ses", verdict.reason,
                                                  verdict.only_from, stamp):
                        result["suppressed"].append(key)
        except IntegrityError:
            return None  # this SNS message id was handled before
        return result
