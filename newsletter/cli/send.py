"""``newsletter send``: render a batch and send it to every active reader,
exactly once, with its progress on screen and an exit code for cron."""

from __future__ import annotations

import datetime as dt
import signal
from pathlib import Path

import click

from newsletter.cli import common
from newsletter.core.models import EditionKind
from newsletter.core.text import terminal_safe
from newsletter.papers.batches import load_batch
from newsletter.readers.tokens import Signer
from newsletter.sending.plan import RunOptions, plan_run
from newsletter.sending.run import EditionRun, StopRequest, carry_out
from newsletter.sending.senders import SENDERS
from newsletter.sending.single import SentTest, send_test


@click.command()
@click.argument("batch", required=False, type=click.Path(path_type=Path))
@click.option("--date", "date", type=common.DATE,
              help="Edition date (YYYY-MM-DD); gives the year to a text page. Without BATCH: send what is stored.")
@click.option("--fetch", "fetch_first", is_flag=True,
              help="Fetch the day's batch from the daily papers API first (then BATCH is not needed).")
@click.option("--weekly", "weekly_only", is_flag=True,
              help="Only the weekly edition of the date (with --to: send that one as the test).")
@click.option("--sender", "sender_name", type=click.Choice(tuple(SENDERS)),
              help="How to deliver. Default: NEWSLETTER_SENDER.")
@click.option("--ses-mode", type=click.Choice(["bulk", "raw"]), default="bulk", show_default=True,
              help="SES: SendBulkEmail with a stored template, or one raw MIME SendEmail per reader.")
@click.option("--dry-run", is_flag=True, help="Show each edition that would go out, and to how many readers; send nothing.")
@click.option("--to", "test_address", metavar="EMAIL",
              help="Send the edition to this one address as a test, outside the ledger.")
@click.option("--limit", type=click.IntRange(1), help="Send each edition to at most N readers in this run.")
@click.option("--resend-unknown", is_flag=True,
              help="Also send to readers whose earlier send had an unknown outcome (they may get two copies).")
@click.option("--resend-rendering-failures", is_flag=True,
              help="Also send to readers whose message SES dropped with a Rendering Failure (they got nothing); "
                   "fix the cause first.")
@click.option("--allow-partial", is_flag=True,
              help="When the 24-hour quota cannot cover everyone, send what it allows instead of nothing.")
@click.option("--allow-future", is_flag=True, help=common.ALLOW_FUTURE_HELP)
@click.pass_context
def send(ctx: click.Context, batch: Path | None, date: dt.datetime | None, fetch_first: bool, weekly_only: bool,
         sender_name: str | None, ses_mode: str, dry_run: bool, test_address: str | None, limit: int | None,
         resend_unknown: bool, resend_rendering_failures: bool, allow_partial: bool,
         allow_future: bool) -> None:
    """Send the day's editions to their readers, each exactly once:
    the daily edition of BATCH to daily readers and, when the date is the
    weekly day of some readers, the weekly edition (the papers stored for the
    seven days ending on it) to them. A weekly edition whose day was missed
    (the machine was down) goes out with the next run within two days.

    Without BATCH and --fetch, give --date: the editions are made from the
    papers stored for those days.

    An edition goes on the web (archive, feed) when its send begins; a dry
    run or a test message (--to) publishes nothing.

    Safe to run again: readers already sent an edition are skipped, so a
    re-run after a crash or Ctrl-C finishes the job without duplicates.
    On a terminal a progress bar shows the send; otherwise a timestamped
    line every few seconds.

    Exit codes (the worst of the editions sent):

    \b
          0  done: every reader handled (or already sent, or nothing to send)
          1  some readers failed (refused for good) or were left for the next
             run (interrupted, faults that persisted): see the summary
          2  bad input or configuration, or SES cannot render the edition's
             template for some readers (its pre-flight): nothing was sent
          3  quota or account problem: the provider refuses to send
          4  another run holds the lock for this edition: it was not sent
        130  stopped by Ctrl-C (SIGINT): no further edition was started;
             run again to finish (SIGTERM stops the same way, with 1)
    """
    settings = common.settings_of(ctx)
    day = common.day_of(date)
    loaded = None
    if fetch_first:
        from newsletter.papers.fetch import fetch_day

        day = day or dt.date.today()
        common.refuse_future(day, allow_future)
        fetched, batch = fetch_day(settings.api_base_url, day, Path("batches"), settings.fetch_timeout)
        common.warn(fetched)  # the saved copy is already repaired: loading it again warns of nothing
    elif batch is None and day is None:
        raise click.UsageError("give a BATCH file, or --fetch, or --date to send what is stored for that day")
    elif day is not None:
        common.refuse_future(day, allow_future)
    if batch is not None:
        loaded = load_batch(batch, date=day)
        common.warn(loaded)
        day = loaded.date
    common.refuse_future(day, allow_future)
    signer = Signer.from_settings(settings)
    store = common.store_of(ctx)
    options = RunOptions(sender=sender_name, ses_mode=ses_mode, dry_run=dry_run, weekly_only=weekly_only,
                         test_to=test_address, limit=limit, resend_unknown=resend_unknown,
                         resend_rendering_failures=resend_rendering_failures, allow_partial=allow_partial)
    plan = plan_run(settings, store, day, loaded, options)
    for note in plan.notes:
        click.echo(terminal_safe(note))
    if options.test_to:
        _tell_test(send_test(settings, store, signer, plan))
        return
    from newsletter.cli.progress import SendProgress  # rich: only for a send

    with _StopOnSignal() as stop:
        report = carry_out(settings, store, signer, plan, stop, SendProgress, _tell)
    if report.exit_code:
        ctx.exit(report.exit_code)


class _StopOnSignal(StopRequest):
    """Set on SIGINT or SIGTERM while in a ``with`` block (the handlers it
    replaces are restored at its end); ``signum`` is the first signal
    received. The send in progress finishes its calls in flight and stops;
    the run starts no further edition."""

    def __enter__(self) -> "_StopOnSignal":
        self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *_exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame) -> None:
        if not self.is_set():
            self.signum = signal.Signals(signum)
            click.echo(f"{self.signum.name}: finishing the calls in flight, then stopping...", err=True)
        self.set()


def _tell(done: EditionRun) -> None:
    """Print what the run did with one edition: not started, what a dry run
    would send, the send's summary, the error it ended with."""
    issue = done.issue
    if not done.started:
        click.echo(f"Not started: the {issue.kind} edition of {issue.date}; "
                   "run the same command again to send it.", err=True)
        return
    if done.would is not None:
        would, name = done.would, done.sender
        click.echo(f"Would send the {issue.kind} edition '{terminal_safe(issue.subject)}' to {would.to_send:,} "
                   f"readers via {name}{' (SES ' + done.ses_mode + ')' if name == 'ses' else ''}; already sent "
                   f"{would.sent:,}, failed {would.failed:,}, unknown {would.unknown:,}. "
                   f"HTML {issue.html_bytes:,} bytes. Nothing was sent.")
    if done.report is not None:
        _summarize(done)
    if done.error is not None:
        click.echo(f"Error: {terminal_safe(done.error)}", err=True)


def _tell_test(sent: SentTest) -> None:
    """Print that the test message went out, and how its web version goes up."""
    issue = sent.issue
    click.echo(f"Sent a test of '{terminal_safe(issue.subject)}' to {terminal_safe(sent.email)} via {sent.sender} "
               f"({terminal_safe(sent.message_id)})")
    if not sent.published:
        weekly = " --weekly" if issue.kind == EditionKind.WEEKLY else ""
        click.echo(f"Its web version ({issue.web_url}) goes up with the send, or with "
                   f"`newsletter publish {issue.date}{weekly}`.")


def _summarize(done: EditionRun) -> None:
    """Print what the send of one edition did: the summary line, the first
    refusals and warnings about readers whose outcome is unknown."""
    issue, report, name = done.issue, done.report, done.sender
    where = f" → {done.where}" if done.where else ""
    which = f"{issue.date}{' weekly' if issue.kind == EditionKind.WEEKLY else ''}"
    if report.already_sent:
        totals = report.ledger
        click.echo(f"The {which} issue was already sent (sent {totals['sent']:,}, failed {totals['failed']:,}, "
                   f"unknown {totals['unknown']:,}): nothing to do.")
        if report.abandoned:
            click.echo(f"Warning: {report.abandoned:,} readers from a run that died mid-call are marked unknown; "
                       "they are not resent unless you run again with --resend-unknown.", err=True)
        return
    if report.to_send == 0:
        click.echo("No active subscribers waiting for this issue: nothing sent.")
        return
    rate = f" at up to {report.rate:g}/s" if report.rate else ""
    click.echo(f"{terminal_safe(issue.subject)}: sent {report.sent:,}, failed {report.failed:,}, unknown {report.unknown:,}, "
               f"skipped {report.skipped:,} (unsubscribed meanwhile), left {report.left:,}; "
               f"{report.elapsed:.1f} s via {name}{rate}{terminal_safe(where)}")
    for address, reason in report.failures[:5]:
        click.echo(f"  failed: {terminal_safe(address)}: {terminal_safe(reason)}", err=True)
    if report.abandoned:
        click.echo(f"Warning: {report.abandoned:,} readers from a run that died mid-call are marked unknown.", err=True)
    if report.unknown or report.abandoned:
        click.echo("Readers marked unknown may or may not have the issue; they are not resent unless you "
                   "run again with --resend-unknown.", err=True)
    if report.waiting and report.complete:
        click.echo(f"{report.waiting:,} active readers are still waiting for this issue (quota or --limit); "
                   "run the same command again to send to them.")
