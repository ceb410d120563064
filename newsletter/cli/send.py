"""``newsletter send``: render a batch and send it to every active reader,
exactly once, with its progress on screen and an exit code for cron."""

from __future__ import annotations

import datetime as dt
import gc
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from newsletter.papers.batches import load_batch
from newsletter.cli import common
from newsletter.core.config import Settings
from newsletter.core.errors import NewsletterError, SendError
from newsletter.core.models import Batch, DeliveryStatus, Edition, EditionKind, Issue
from newsletter.sending.senders import SENDERS
from newsletter.store import Ledger, Store
from newsletter.core.text import terminal_safe

if TYPE_CHECKING:
    from newsletter.sending.dispatch import SendReport


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
    """Send the day's editions to their readers, each exactly once: the
    daily edition of BATCH to daily readers and, when the date is the
    weekly day of some readers, the weekly edition (the papers stored for
    the seven days ending on it) to them. A weekly edition whose day was
    missed (the machine was down) goes out with the next run within two
    days.

    Without BATCH and --fetch, give --date: the editions are made from the
    papers stored for those days.

    An edition goes on the web (archive, feed) when its send begins; a dry
    run or a test message (--to) publishes nothing.

    Safe to run again: readers already sent an edition are skipped, so a
    re-run after a crash or Ctrl-C finishes the job without duplicates.
    On a terminal a progress bar shows the send; otherwise a timestamped
    line every few seconds.

    \b
    Exit codes (the worst of the editions sent):
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
    from newsletter.issue.editions import edition_batch
    from newsletter.picks.picking import EditionPicks
    from newsletter.readers.tokens import Signer

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
    if loaded is not None and loaded.papers:
        store.store_batch(loaded)  # the papers and their ranks, which feedback links and weeklies read
    if resend_rendering_failures and not dry_run:
        for edition in (Edition(day), Edition(day, EditionKind.WEEKLY)):
            again = Ledger(store, edition, settings.weekly_weekday).forget_rendering_failures()
            if again:
                click.echo(f"Sending the {edition.key} edition again to {again:,} readers whose message SES dropped "
                           "with a Rendering Failure.")

    editions: list[Batch] = []
    if not weekly_only:
        if loaded is not None and not loaded.papers:
            click.echo(f"No papers for {loaded.date} in {terminal_safe(batch)}: no daily edition, nothing sent.")
        daily = loaded if loaded is not None else edition_batch(store, Edition(day))
        if daily.papers:
            editions.append(daily)
        elif loaded is None:
            click.echo(f"No papers stored for {day}: no daily edition.")
    for edition in weekly_editions(store, settings, day, resend_unknown, every=weekly_only or bool(test_address)):
        week = edition_batch(store, edition)
        if week.papers:
            editions.append(week)
        else:
            click.echo(f"No papers stored for {edition.describe()}: no weekly edition.")
    if test_address:
        if not editions:
            raise SendError("nothing to send as a test: no papers for this edition")
        issue = common.render_for_readers(editions[0], settings, signer)
        store.save_issue(issue)  # `newsletter publish` can then put it on the web; a test does not
        _send_test(settings, store, signer, issue, editions[0], sender_name or settings.sender, test_address)
        return

    with _StopOnSignal() as stop:
        # Every edition rendered, stored and its ranking index built before the
        # first message: the sending of one edition runs into the next's.
        issues = [common.render_for_readers(papers, settings, signer) for papers in editions]
        picks = []
        for issue in issues:
            store.save_issue(issue)
            picks.append(EditionPicks(store, issue.edition, issue.date, issue.papers))
            if not dry_run and not stop.is_set():
                picks[-1].prepare()
        errors = []
        for issue, picker in zip(issues, picks):
            if stop.is_set():  # a signal stops the whole run: no further edition starts
                click.echo(f"Not started: the {issue.kind} edition of {issue.date}; "
                           "run the same command again to send it.", err=True)
                continue
            try:
                _send_edition(settings, store, signer, issue, picker, sender_name or settings.sender, ses_mode,
                              dry_run, limit, resend_unknown, allow_partial, stop)
            except NewsletterError as error:  # the other editions still go out; the worst error is the exit code
                click.echo(f"Error: {terminal_safe(error)}", err=True)
                errors.append(error)
    if stop.signum == signal.SIGINT:
        ctx.exit(INTERRUPTED_EXIT_CODE)
    codes = [error.exit_code for error in errors] + ([1] if stop.is_set() else [])  # SIGTERM: readers left
    if codes:
        ctx.exit(max(codes))


# Stopped by Ctrl-C (SIGINT): the shell's convention, 128 + the signal's number.
INTERRUPTED_EXIT_CODE = 128 + signal.SIGINT


class _StopOnSignal(threading.Event):
    """Set on SIGINT or SIGTERM while in a ``with`` block (the handlers it
    replaces are restored at its end); ``signum`` is the first signal
    received (None until one is). The send in progress finishes its calls
    in flight and stops; the run starts no further edition."""

    signum: signal.Signals | None = None

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


def weekly_editions(store: Store, settings: Settings, day: dt.date, resend_unknown: bool = False,
                    every: bool = False) -> list[Edition]:
    """Return the weekly editions a run on ``day`` sends: the weekly edition
    of ``day`` when some readers have it as their weekly day (with
    ``every``: whether or not), and that of either of the two days before
    when it is overdue: its send was begun and never finished, or no
    edition at all was made that day (the machine was down)."""
    due = []
    for back in (2, 1, 0):
        edition = Edition(day - dt.timedelta(days=back), EditionKind.WEEKLY)
        stored = store.get_issue(edition.date, EditionKind.WEEKLY)
        if back:
            if every:
                continue
            missed = stored is None and store.get_issue(edition.date) is None
            if not (missed or (stored is not None and stored.finished_at is None)):
                continue
        waiting = Ledger(store, edition, settings.weekly_weekday).count_unsent(resend_unknown)
        if waiting or stored is not None or (every and not back):
            due.append(edition)
    return due


def _send_edition(settings: Settings, store: Store, signer, issue: Issue, picks, name: str, ses_mode: str,
                  dry_run: bool, limit: int | None, resend_unknown: bool, allow_partial: bool,
                  stop: threading.Event) -> None:
    """Send ``issue`` to its readers, with their ``picks`` (its
    ``EditionPicks``), or with ``dry_run`` say what would be sent; note it
    finished when no reader is left waiting. ``stop``, once set, ends the
    send after the calls in flight. Raises the run's error (see
    ``SendReport.error``)."""
    from newsletter.cli.progress import SendProgress
    from newsletter.sending.dispatch import Dispatcher, SendOptions
    from newsletter.sending.senders import create_sender

    edition = Edition(issue.date, issue.kind)
    if dry_run:
        plan = Ledger(store, edition, settings.weekly_weekday).plan(resend_unknown, limit)
        click.echo(f"Would send the {issue.kind} edition '{terminal_safe(issue.subject)}' to {plan.to_send:,} readers "
                   f"via {name}{' (SES ' + ses_mode + ')' if name == 'ses' else ''}; already sent {plan.sent:,}, "
                   f"failed {plan.failed:,}, unknown {plan.unknown:,}. HTML {issue.html_bytes:,} bytes. "
                   "Nothing was sent.")
        return
    store.publish_issue(edition)  # before the first message: its "view in browser" link works
    sender = create_sender(settings, name, ses_mode)
    options = SendOptions(limit=limit, resend_unknown=resend_unknown, allow_partial=allow_partial,
                          max_rate=settings.max_send_rate, concurrency=settings.send_concurrency,
                          weekly_day=settings.weekly_weekday)
    try:
        # What is loaded by now (libraries, the issue, the ranking's index)
        # lives to the end: out of the collector's sight, its collections
        # during the send scan only the send's own objects (ranking a fifth
        # faster).
        gc.freeze()
        with SendProgress() as progress:
            report = Dispatcher(store, sender, signer, settings.base_url, settings.from_address, options, stop,
                                progress.update).run(issue, picks.for_readers)
    finally:
        gc.unfreeze()
    _summarize(issue, name, settings, report)
    error = report.error()
    if error is None and report.waiting == 0:
        store.finish_issue(edition)
    if error is not None:
        raise error


def _send_test(settings: Settings, store: Store, signer, issue: Issue, loaded, name: str, address: str) -> None:
    """Send ``issue`` to ``address`` alone, outside the ledger. A subscriber
    gets exactly their own copy: their working links and their picks
    (recorded nowhere). Anyone else gets the issue with no personal link:
    no List-Unsubscribe header (there is nothing for them to leave), no
    👍/👎 links, the sign-up page in the footer. Raises :class:`SendError`
    when it was not sent."""
    from newsletter.sending.personalize import PreparedMessage, Recipient
    from newsletter.picks.picking import EditionPicks
    from newsletter.issue.render import render_issue
    from newsletter.sending.dispatch import reader_recipient
    from newsletter.sending.senders import create_sender
    from newsletter.store import normalize_email

    email = normalize_email(address)
    subscriber = store.get(email=email)
    # Subscriber id 0: the outbox names files by id, and a test must not
    # overwrite the copy of the issue the real send wrote for this reader.
    if subscriber is not None:
        picks = EditionPicks(store, issue.edition, issue.date, issue.papers).for_readers([subscriber.id])[subscriber.id]
        recipient = reader_recipient(signer, settings.base_url, issue, subscriber, picks, file_id=0)
    else:
        issue = render_issue(loaded, settings)
        recipient = Recipient(0, email, None, settings.signup_url)
    sender = create_sender(settings, name, "raw")  # a test message needs no stored SES template
    sender.open(issue, PreparedMessage(issue, settings.from_address, list_unsubscribe=subscriber is not None))
    try:
        sender.quota()  # an account that cannot send says so now (the outbox: no limit)
        delivery = sender.send([recipient])[0]
    finally:
        sender.close(complete=False)
    if delivery.status != DeliveryStatus.SENT:
        raise SendError(f"test message to {recipient.email} not sent: {delivery.status} {delivery.reason or ''}")
    click.echo(f"Sent a test of '{terminal_safe(issue.subject)}' to {terminal_safe(recipient.email)} via {name} "
               f"({terminal_safe(delivery.message_id)})")
    if store.get_issue(issue.date, issue.kind, published_only=True) is None:
        weekly = " --weekly" if issue.kind == EditionKind.WEEKLY else ""
        click.echo(f"Its web version ({issue.web_url}) goes up with the send, or with "
                   f"`newsletter publish {issue.date}{weekly}`.")


def _summarize(issue: Issue, name: str, settings: Settings, report: SendReport) -> None:
    """Print what the run did: the summary line, the first refusals and
    warnings about readers whose outcome is unknown."""
    where = f" → {settings.outbox_dir / issue.edition}/" if name == "outbox" else ""
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
