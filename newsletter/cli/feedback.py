"""What SES reports back: ``bounces poll`` (notifications through SQS) and
``stats`` (per-issue delivery figures against SES's limits)."""

from __future__ import annotations

import datetime as dt
import signal
import threading

import click

from newsletter.cli import common
from newsletter.core.text import terminal_safe


@click.group()
def bounces() -> None:
    """SES bounce and complaint notifications."""


@bounces.command("poll")
@click.option("--queue", "queue_url", required=True, metavar="URL",
              help="The SQS queue subscribed to the SES notification topic.")
@click.option("--once", is_flag=True, help="Handle what is waiting, then exit (for cron).")
@click.option("--wait", default=20, show_default=True, type=click.IntRange(0, 20),
              help="Seconds of long polling per receive.")
@click.pass_context
def bounces_poll(ctx: click.Context, queue_url: str, once: bool, wait: int) -> None:
    """Read SES notifications from an SQS queue and suppress bounced and complaining addresses.
    Messages are deleted only once handled."""
    from newsletter.feedback.sns import SnsVerifier
    from newsletter.feedback.sqs import poll, sqs_client

    settings = common.settings_of(ctx)
    # Queued messages can wait in SQS for up to 14 days before a poll.
    verifier = SnsVerifier(settings.sns_topic_arns, max_age=dt.timedelta(days=14))
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        report = poll(sqs_client(settings), queue_url, verifier, common.store_of(ctx), once, stop, wait)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for outcome in report.outcomes:
        click.echo(f"  {terminal_safe(outcome)}")
    click.echo(f"Handled {report.handled} notifications, refused {report.refused}.")


@click.command()
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3650),
              help="Issues sent in the last N days.")
@click.pass_context
def stats(ctx: click.Context, days: int) -> None:
    """Per issue: sent, delivered, bounced, complained, unsubscribed,
    and the bounce and complaint rates against the limits SES enforces."""
    from newsletter.feedback.stats import BOUNCE_REVIEW, COMPLAINT_REVIEW, issue_stats

    rows = issue_stats(common.store_of(ctx), days)
    if not rows:
        click.echo(f"No issue sent in the last {days} days.")
        return
    click.echo(f"{'issue':<12}{'sent':>9}{'delivered':>11}{'bounced':>9}{'complained':>12}"
               f"{'unsubscribed':>14}{'bounce':>9}{'complaint':>11}")
    warnings = []
    for row in rows:
        click.echo(f"{terminal_safe(row.issue_date):<12}{row.sent:>9,}{row.delivered:>11,}{row.bounced:>9,}{row.complained:>12,}"
                   f"{row.unsubscribed:>14,}{row.bounce_rate:>9.2%}{row.complaint_rate:>11.3%}")
        warnings += [f"{row.issue_date}: {w}" for w in row.warnings()]
    click.echo(f"SES reviews accounts at a {BOUNCE_REVIEW:.0%} bounce rate or a {COMPLAINT_REVIEW:.1%} complaint rate.")
    for warning in warnings:
        click.secho(f"WARNING {terminal_safe(warning)}", fg="red", bold=True, err=True)
