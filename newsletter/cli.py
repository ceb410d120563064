"""The ``newsletter`` command. Thin: parse options, call the core, print.

Expected failures arrive as :class:`NewsletterError` and leave as one line on
stderr with the error's exit code (2 for bad input or configuration).
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import sys
import threading
from pathlib import Path

import click

from newsletter import __version__
from newsletter.config import SENDERS, Settings, load_settings
from newsletter.errors import AccountError, NewsletterError, OutputError, ReadersFailed, Refused, SendError
from newsletter.files import atomic_write_text
from newsletter.lists import read_subscriber_csv, write_subscriber_csv
from newsletter.models import Batch, Issue
from newsletter.papers import load_batch
from newsletter.render import GMAIL_CLIP_BYTES, HTML_LIMIT_BYTES, render_issue
from newsletter.store import STATUSES, Store, open_store
from newsletter.text import terminal_safe


class _Group(click.Group):
    """A group that turns the project's errors into a message and exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            # Messages quote input (addresses, file names, paper text): shown escaped.
            click.echo(f"Error: {terminal_safe(exc)}", err=True)
            ctx.exit(exc.exit_code)


_DATE = click.DateTime(formats=["%Y-%m-%d"])


def _date(value: dt.datetime | None) -> dt.date | None:
    return value.date() if value else None


def _settings(ctx: click.Context) -> Settings:
    # Loaded on first use, so --help works even with a broken setting.
    root = ctx.find_root()
    if root.obj is None:
        root.obj = load_settings()
    return root.obj


def _store(ctx: click.Context) -> Store:
    """Open the configured database for this command; closed when it ends."""
    store = open_store(_settings(ctx).database_url)
    ctx.call_on_close(store.close)
    return store


def _serve(app, host: str, port: int, what: str) -> None:
    """Run ``app`` under waitress until Ctrl-C or SIGTERM."""
    from newsletter.web import run_server

    run_server(app, host, port, lambda url: click.echo(f"{what} at {url}  (Ctrl-C to stop)"))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Render the day's trending research papers as a responsive email and
    deliver it to subscribers.

    Settings come from the environment and from a .env file in the current
    folder (see .env.example).
    """
    ctx.obj = None


@cli.command()
@click.option("--date", "date", type=_DATE, help="Day to fetch (YYYY-MM-DD). Default: today.")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("batches"),
    show_default=True, help="Folder for the saved batch (<date>.json).",
)
@click.pass_context
def fetch(ctx: click.Context, date: dt.datetime | None, out_dir: Path) -> None:
    """Download one day from the daily papers API and save it as a batch."""
    from newsletter.fetch import fetch_day

    settings = _settings(ctx)
    day = _date(date) or dt.date.today()
    batch, path = fetch_day(settings.api_base_url, day, out_dir, settings.fetch_timeout)
    _warn(batch)
    click.echo(f"Fetched {len(batch.papers)} papers for {day.isoformat()} → {terminal_safe(path)}")


def _warn(batch: Batch) -> None:
    """Print the batch's warnings (text that was repaired while loading) to stderr."""
    for warning in batch.warnings:
        click.echo(f"Warning: {terminal_safe(warning)}", err=True)


def describe(issue: Issue, html: str, text: str) -> dict:
    """Return the facts that ``render`` saves as issue.json, with the sizes of
    the ``html`` and ``text`` parts as written."""
    return {
        "date": issue.date.isoformat(),
        "subject": issue.subject,
        "preheader": issue.preheader,
        "paper_count": issue.paper_count,
        "cards": issue.card_count,
        "listed": issue.listed_count,
        "web_only": issue.more_count,
        "html_bytes": len(html.encode("utf-8")),
        "html_limit_bytes": HTML_LIMIT_BYTES,
        "text_bytes": len(text.encode("utf-8")),
        "web_url": issue.web_url,
    }


@cli.command()
@click.argument("batch", type=click.Path(path_type=Path))
@click.option("--date", "date", type=_DATE, help="Issue date (YYYY-MM-DD); gives the year to a text page.")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
    help="Output folder. Default: out/<date>/.",
)
@click.pass_context
def render(ctx: click.Context, batch: Path, date: dt.datetime | None, out_dir: Path | None) -> None:
    """Render BATCH into issue.html, issue.txt, web.html and issue.json.

    BATCH is a daily papers page saved as text, a daily papers API answer,
    an arXiv Atom feed or a batch written by `newsletter fetch`.
    """
    settings = _settings(ctx)
    loaded = load_batch(batch, date=_date(date))
    _warn(loaded)
    issue = render_issue(loaded, settings)
    out_dir = out_dir or Path("out") / issue.date.isoformat()
    # No reader's link in a file anyone may open: the sign-up page stands in.
    html, text = issue.personalized(settings.signup_url)
    facts = describe(issue, html, text)
    _store(ctx).save_issue(issue)  # the web app shows it at /issues/<date>
    try:
        atomic_write_text(out_dir / "issue.html", html)
        atomic_write_text(out_dir / "issue.txt", text)
        atomic_write_text(out_dir / "web.html", issue.web_html)
        atomic_write_text(out_dir / "issue.json", json.dumps(facts, ensure_ascii=False, indent=2) + "\n")
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot write ({exc.strerror or exc})") from None
    share = facts["html_bytes"] / GMAIL_CLIP_BYTES
    click.echo(
        f"{terminal_safe(issue.subject)}: {issue.card_count} cards, {issue.listed_count} listed, "
        f"{issue.more_count} web-only; HTML {facts['html_bytes']:,} bytes ({share:.0%} of Gmail's "
        f"{GMAIL_CLIP_BYTES:,}-byte clip); text {facts['text_bytes']:,} bytes → {terminal_safe(out_dir)}/"
    )


@cli.command()
@click.argument("batch", type=click.Path(path_type=Path))
@click.option("--date", "date", type=_DATE, help="Issue date (YYYY-MM-DD); gives the year to a text page.")
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535), help="Port on 127.0.0.1.")
@click.pass_context
def preview(ctx: click.Context, batch: Path, date: dt.datetime | None, port: int) -> None:
    """Show the rendered BATCH in the browser at desktop and phone widths.

    The page re-renders when the batch or a template changes: edit, then reload.
    """
    from newsletter.web import create_preview_app

    settings = _settings(ctx)
    _warn(load_batch(batch, date=_date(date)))  # fail now, with a clear message, not on first request
    _serve(create_preview_app(batch, settings, date=_date(date)), "127.0.0.1", port,
           f"Previewing {terminal_safe(batch)}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for all).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int) -> None:
    """Run the web app: unsubscribe pages (with RFC 8058 one-click), past
    issues, their Atom feed and /healthz. Put it behind an HTTPS proxy.
    """
    from newsletter.web import create_app

    # create_app checks the secret key before it opens the database.
    _serve(create_app(_settings(ctx)), host, port, "Serving the web app")


# ---------------------------------------------------------------- send


@cli.command()
@click.argument("batch", required=False, type=click.Path(path_type=Path))
@click.option("--date", "date", type=_DATE, help="Issue date (YYYY-MM-DD); gives the year to a text page.")
@click.option("--fetch", "fetch_first", is_flag=True,
              help="Fetch the day's batch from the daily papers API first (then BATCH is not needed).")
@click.option("--sender", "sender_name", type=click.Choice(SENDERS), help="How to deliver. Default: NEWSLETTER_SENDER.")
@click.option("--ses-mode", type=click.Choice(["bulk", "raw"]), default="bulk", show_default=True,
              help="SES: SendBulkEmail with a stored template, or one raw MIME SendEmail per reader.")
@click.option("--dry-run", is_flag=True, help="Show what would be sent, and to how many readers; send nothing.")
@click.option("--to", "test_address", metavar="EMAIL",
              help="Send the issue to this one address as a test, outside the ledger.")
@click.option("--limit", type=click.IntRange(1), help="Send to at most N readers in this run.")
@click.option("--resend-unknown", is_flag=True,
              help="Also send to readers whose earlier send had an unknown outcome (they may get two copies).")
@click.option("--allow-partial", is_flag=True,
              help="When the 24-hour quota cannot cover everyone, send what it allows instead of nothing.")
@click.pass_context
def send(ctx: click.Context, batch: Path | None, date: dt.datetime | None, fetch_first: bool,
         sender_name: str | None, ses_mode: str, dry_run: bool, test_address: str | None, limit: int | None,
         resend_unknown: bool, allow_partial: bool) -> None:
    """Render BATCH and send it to every active subscriber, exactly once.

    Safe to run again: readers already sent this issue are skipped, so a
    re-run after a crash or Ctrl-C finishes the job without duplicates.
    On a terminal a progress bar shows the send; otherwise a timestamped
    line every few seconds.

    \b
    Exit codes:
      0  done: every reader handled (or already sent, or nothing to send)
      1  some readers failed (refused for good) or were left for the next
         run (interrupted, faults that persisted): see the summary
      2  bad input or configuration
      3  quota or account problem: the provider refuses to send
      4  another run holds the lock for this issue: nothing was sent
    """
    from newsletter.dispatch import Dispatcher, SendOptions
    from newsletter.progress import SendProgress
    from newsletter.senders import create_sender
    from newsletter.tokens import Signer

    settings = _settings(ctx)
    day = _date(date)
    if fetch_first:
        from newsletter.fetch import fetch_day

        day = day or dt.date.today()
        fetched, batch = fetch_day(settings.api_base_url, day, Path("batches"), settings.fetch_timeout)
        _warn(fetched)  # the saved copy is already repaired: loading it again warns of nothing
    elif batch is None:
        raise click.UsageError("give a BATCH file, or --fetch")
    loaded = load_batch(batch, date=day)
    _warn(loaded)
    if not loaded.papers:
        click.echo(f"No papers for {loaded.date} in {terminal_safe(batch)}: nothing sent.")
        return
    signer = Signer.from_settings(settings)
    issue = render_issue(loaded, settings)
    store = _store(ctx)
    store.save_issue(issue)
    name = sender_name or settings.sender

    if test_address:
        _send_test(settings, store, signer, issue, name, test_address)
        return
    if dry_run:
        from newsletter.store import Ledger

        ledger = Ledger(store, issue.date)
        waiting = ledger.count_unsent(resend_unknown)
        if limit:
            waiting = min(waiting, limit)
        done = ledger.counts()
        click.echo(f"Would send '{terminal_safe(issue.subject)}' to {waiting:,} readers via {name}"
                   f"{' (SES ' + ses_mode + ')' if name == 'ses' else ''}; already sent {done['sent']:,}, "
                   f"failed {done['failed']:,}, unknown {done['unknown']:,}. HTML {issue.html_bytes:,} bytes. "
                   "Nothing was sent.")
        return

    sender = create_sender(settings, name, ses_mode)
    stop = threading.Event()

    def interrupt(signum, _frame):
        if not stop.is_set():
            click.echo(f"{signal.Signals(signum).name}: finishing the calls in flight, then stopping...", err=True)
        stop.set()

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    options = SendOptions(limit=limit, resend_unknown=resend_unknown, allow_partial=allow_partial,
                          max_rate=settings.max_send_rate, concurrency=settings.send_concurrency)
    try:
        with SendProgress() as progress:
            report = Dispatcher(store, sender, signer, settings.base_url, settings.from_address, options, stop,
                                progress.update).run(issue)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _summarize(issue, name, settings, report)


def _send_test(settings: Settings, store: Store, signer, issue: Issue, name: str, address: str) -> None:
    """Send ``issue`` to ``address`` alone, outside the ledger. A subscriber
    gets their own working unsubscribe link; anyone else gets no
    List-Unsubscribe header (there is nothing for them to leave) and the
    sign-up page in the footer. Raises :class:`SendError` when it was not sent."""
    from newsletter.personalize import PreparedMessage, Recipient
    from newsletter.senders import create_sender
    from newsletter.store import normalize_email

    email = normalize_email(address)
    subscriber = store.get(email=email)
    # Subscriber id 0: the outbox names files by id, and a test must not
    # overwrite the copy of the issue the real send wrote for this reader.
    if subscriber is not None:
        recipient = Recipient(0, email, subscriber.name, signer.unsubscribe_url(settings.base_url, subscriber.ref))
    else:
        recipient = Recipient(0, email, None, settings.signup_url)
    sender = create_sender(settings, name, "raw")  # a test message needs no stored SES template
    sender.open(issue, PreparedMessage(issue, settings.from_address, list_unsubscribe=subscriber is not None))
    try:
        if name != "outbox":
            sender.quota()  # an account that cannot send says so now
        delivery = sender.send([recipient])[0]
    finally:
        sender.close(complete=False)
    if delivery.status != "sent":
        raise SendError(f"test message to {recipient.email} not sent: {delivery.status} {delivery.reason or ''}")
    click.echo(f"Sent a test of '{terminal_safe(issue.subject)}' to {terminal_safe(recipient.email)} via {name} "
               f"({terminal_safe(delivery.message_id)})")


def _summarize(issue: Issue, name: str, settings: Settings, report) -> None:
    where = f" → {settings.outbox_dir / issue.date.isoformat()}/" if name == "outbox" else ""
    if report.already_sent:
        totals = report.ledger
        click.echo(f"The {issue.date} issue was already sent (sent {totals['sent']:,}, failed {totals['failed']:,}, "
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
    if report.stopped_by:
        error = AccountError if report.stopped_exit == AccountError.exit_code else SendError
        raise error(f"stopped: {report.stopped_by}. {report.left:,} readers left; run again once fixed.")
    if report.waiting and not (report.interrupted or report.left):
        click.echo(f"{report.waiting:,} active readers are still waiting for this issue (quota or --limit); "
                   "run the same command again to send to them.")
    if report.interrupted or report.left:
        raise SendError(f"stopped before the end: {report.left:,} readers left; run the same command again to finish.")
    if report.failed:
        who = "1 reader was" if report.failed == 1 else f"{report.failed:,} readers were"
        raise ReadersFailed(f"{who} refused for good (marked failed, not retried); every other reader was handled.")


# ---------------------------------------------------------------- subscribers

_STATUS = click.Choice(STATUSES)


@cli.group()
def subscribers() -> None:
    """Manage the subscriber list."""


@subscribers.command("add")
@click.argument("email")
@click.option("--name", help="The reader's name (optional).")
@click.pass_context
def subscribers_add(ctx: click.Context, email: str, name: str | None) -> None:
    """Add EMAIL as an active subscriber.

    An address that unsubscribed, bounced or complained is never reactivated.
    """
    subscriber, created = _store(ctx).add(email, name, source="cli")
    if created:
        click.echo(f"Added {terminal_safe(subscriber.email)}")
    elif subscriber.status == "active":
        click.echo(f"{terminal_safe(subscriber.email)} is already subscribed")
    else:
        raise Refused(f"{subscriber.email} is {subscriber.status}; it is not reactivated")


def _listed(store: Store, email: str):
    """The subscriber with ``email``; raises :class:`Refused` when there is none."""
    subscriber = store.get(email=email)
    if subscriber is None:
        raise Refused(f"{email.strip()} is not on the list")
    return subscriber


@subscribers.command("remove")
@click.argument("email")
@click.pass_context
def subscribers_remove(ctx: click.Context, email: str) -> None:
    """Mark EMAIL unsubscribed (kept, with the reason, so it is never re-added by accident)."""
    store = _store(ctx)
    subscriber = _listed(store, email)
    if store.change_status(subscriber.id, "unsubscribed", source="cli", reason="removed by the operator",
                           only_from=("active",)):
        click.echo(f"Unsubscribed {terminal_safe(subscriber.email)}")
    else:
        click.echo(f"{terminal_safe(subscriber.email)} is already {terminal_safe(subscriber.status)}")


@subscribers.command("list")
@click.option("--status", type=_STATUS, help="Only subscribers with this status.")
@click.pass_context
def subscribers_list(ctx: click.Context, status: str | None) -> None:
    """List subscribers: address, status, since when, and name."""
    for s in _store(ctx).iter_subscribers(status=status):
        # Each field escaped on its own: a tab or newline in one cannot shift
        # the columns, and no escape sequence reaches the terminal.
        fields = (s.email, s.status, f"{s.updated_at:%Y-%m-%d}", s.name or "")
        click.echo("\t".join(terminal_safe(field) for field in fields))


@subscribers.command("count")
@click.pass_context
def subscribers_count(ctx: click.Context) -> None:
    """Count subscribers by status."""
    counts = _store(ctx).counts()
    for status, count in counts.items():
        click.echo(f"{terminal_safe(status):<13}{count:>8}")
    click.echo(f"{'total':<13}{sum(counts.values()):>8}")


@subscribers.command("export")
@click.option("--status", type=_STATUS, help="Only subscribers with this status.")
@click.pass_context
def subscribers_export(ctx: click.Context, status: str | None) -> None:
    """Write subscribers as CSV to standard output."""
    write_subscriber_csv(_store(ctx).iter_subscribers(status=status), sys.stdout)


@subscribers.command("import")
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(path_type=Path))
@click.pass_context
def subscribers_import(ctx: click.Context, csv_file: Path) -> None:
    """Import FILE.csv (a header row with an `email` column and an optional
    `name` column), all or nothing, in one transaction.

    Addresses already present are left as they are: one that unsubscribed,
    bounced or complained is never reactivated. Invalid addresses are
    reported with their line and skipped.
    """
    from newsletter.actions import ReaderActions

    rows = read_subscriber_csv(csv_file)
    store = _store(ctx)
    report = store.import_subscribers(rows, source=f"import:{csv_file.name}"[:32])
    # Readers who unsubscribed while the import held the database: now.
    ReaderActions(store).apply_pending()
    for line, why in report.invalid:
        click.echo(f"{terminal_safe(csv_file)}, line {line}: {terminal_safe(why)}", err=True)
    for line, status in report.refused:
        click.echo(f"{terminal_safe(csv_file)}, line {line}: {terminal_safe(status)}; not reactivated", err=True)
    click.echo(
        f"{terminal_safe(csv_file)}: added {len(report.added)}, already present {len(report.present)}, "
        f"invalid {len(report.invalid)}, refused {len(report.refused)} "
        f"(database held for {report.write_seconds:.2f} s)"
    )


@subscribers.command("reactivate")
@click.argument("email")
@click.pass_context
def subscribers_reactivate(ctx: click.Context, email: str) -> None:
    """Make EMAIL active again, whatever its status (an operator's decision:
    use it for an address that complained or bounced only when you know why)."""
    store = _store(ctx)
    subscriber = _listed(store, email)
    if store.change_status(subscriber.id, "active", source="cli", reason="reactivated by the operator"):
        click.echo(f"Reactivated {terminal_safe(subscriber.email)} (was {terminal_safe(subscriber.status)})")
    else:
        click.echo(f"{terminal_safe(subscriber.email)} is already active")


# ---------------------------------------------------------------- feedback


@cli.group()
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
    """Read SES notifications from an SQS queue and suppress bounced and
    complaining addresses. Messages are deleted only once handled."""
    from newsletter.sns import SnsVerifier
    from newsletter.sqs import poll, sqs_client

    settings = _settings(ctx)
    # Queued messages can wait in SQS for up to 14 days before a poll.
    verifier = SnsVerifier(settings.sns_topic_arns, max_age=dt.timedelta(days=14))
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        report = poll(sqs_client(settings), queue_url, verifier, _store(ctx), once, stop, wait)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for outcome in report.outcomes:
        click.echo(f"  {terminal_safe(outcome)}")
    click.echo(f"Handled {report.handled} notifications, refused {report.refused}.")


@cli.command()
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3650),
              help="Issues sent in the last N days.")
@click.pass_context
def stats(ctx: click.Context, days: int) -> None:
    """Per issue: sent, delivered, bounced, complained, unsubscribed, and the
    bounce and complaint rates against the limits SES enforces."""
    from newsletter.stats import BOUNCE_REVIEW, COMPLAINT_REVIEW, issue_stats

    rows = issue_stats(_store(ctx), days)
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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="newsletter")
