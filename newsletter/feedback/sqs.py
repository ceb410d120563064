"""Polling an SQS queue subscribed to the SES feedback topic (boto3 ``sqs``).

Long polling; a message is deleted only after it was handled. A message that
fails verification or is malformed is counted as refused, left in the queue
(an SQS redrive policy moves it to a dead-letter queue after a few receives)
and reported.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from newsletter.core.config import Settings
from newsletter.core.errors import AccountError, SnsError
from newsletter.feedback.events import handle_sns
from newsletter.feedback.sns import parse_envelope


@dataclass
class PollReport:
    """What one poll did."""

    handled: int = 0
    refused: int = 0
    outcomes: list[str] = field(default_factory=list)


def sqs_client(settings: Settings):
    """Return a boto3 SQS client for the configured region and endpoint."""
    return boto3.client("sqs", region_name=settings.aws_region, endpoint_url=settings.sqs_endpoint_url)


def poll(client, queue_url: str, verifier, store, once: bool, stop: threading.Event, wait: int = 20) -> PollReport:
    """Receive and handle messages until the queue is empty (``once``) or
    ``stop`` is set. With ``once``, a message refused earlier in the same run
    that comes back (its visibility timeout ended) counts as empty: it is
    neither handled nor reported again. Returns a :class:`PollReport`; raises
    :class:`AccountError` when the queue cannot be read."""
    report = PollReport()
    refused_ids: set = set()  # with ``once``: refused in this run
    while not stop.is_set():
        try:
            answer = client.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=min(1, wait) if once else wait
            )
        except (ClientError, BotoCoreError) as exc:
            raise AccountError(f"cannot read the queue {queue_url}: {exc}") from exc
        messages = [m for m in answer.get("Messages") or [] if m.get("MessageId") not in refused_ids]
        if not messages and once:
            break
        for message in messages:
            try:
                outcome = handle_sns(parse_envelope(message.get("Body") or ""), verifier, store, confirm=False)
            except SnsError as exc:  # SnsMalformed included: refused alike
                report.refused += 1
                if once:
                    refused_ids.add(message.get("MessageId"))
                report.outcomes.append(f"refused {message.get('MessageId')}: {exc}")
                continue
            client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            report.handled += 1
            report.outcomes.append(outcome)
    return report
