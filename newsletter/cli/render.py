"""Commands that make an issue from a batch: ``fetch`` (download a day),
``render`` (write the files) and ``preview`` (serve it in the browser);
``publish`` and ``unpublish`` put a stored edition on the web and take it
off."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from newsletter.papers.batches import load_batch
from newsletter.cli import common
from newsletter.core.errors import BatchError, EditionNotStored, OutputError, Refused
from newsletter.core.files import atomic_write_text
from newsletter.core.models import Batch, Edition, EditionKind, Issue
from newsletter.issue.render import GMAIL_CLIP_BYTES, HTML_LIMIT_BYTES, encoded_bytes, render_issue
from newsletter.core.text import terminal_safe


@click.command()
@click.option("--date", "date", type=common.DATE, help="Day to fetch (YYYY-MM-DD). Default: today.")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("batches"),
    show_default=True, help="Folder for the saved batch (<date>.json).",
)
@click.pass_context
def fetch(ctx: click.Context, date: dt.datetime | None, out_dir: Path) -> None:
    """Download one day from the daily papers API and save it as a batch."""
    from newsletter.papers.fetch import fetch_day

    settings = common.settings_of(ctx)
    day = common.day_of(date) or dt.date.today()
    batch, path = fetch_day(settings.api_base_url, day, out_dir, settings.fetch_timeout)
    common.warn(batch)
    click.echo(f"Fetched {len(batch.papers)} papers for {day.isoformat()} → {terminal_safe(path)}")


def describe(issue: Issue, html: str, text: str) -> dict:
    """Return the facts that ``render`` saves as issue.json, with the sizes of
    the ``html`` and ``text`` parts as written, and of the HTML part as sent
    (quoted-printable: what the limit applies to)."""
    return {
        "date": issue.date.isoformat(),
        "edition": issue.edition,
        "kind": issue.kind.value,
        "subject": issue.subject,
        "preheader": issue.preheader,
        "paper_count": issue.paper_count,
        "cards": issue.card_count,
        "listed": issue.listed_count,
        "web_only": issue.more_count,
        "html_bytes": len(html.encode("utf-8")),
        "html_encoded_bytes": encoded_bytes(html),
        "html_limit_bytes": HTML_LIMIT_BYTES,
        "text_bytes": len(text.encode("utf-8")),
        "web_url": issue.web_url,
    }


def edition_to_render(ctx: click.Context, batch: Path | None, date: dt.datetime | None, weekly: bool) -> Batch:
    """The batch ``render`` and ``preview`` show: BATCH, or with ``weekly``
    the weekly edition of the date (BATCH's, else --date) from the papers
    stored for its seven days, BATCH's papers stored first. Raises
    :class:`click.UsageError` without BATCH or a weekly date, and
    :class:`BatchError` when nothing is stored for that week."""
    from newsletter.issue.editions import edition_batch

    day = common.day_of(date)
    if batch is None and not (weekly and day):
        raise click.UsageError("give a BATCH file (or --weekly --date YYYY-MM-DD)")
    loaded = load_batch(batch, date=day) if batch is not None else None
    if loaded is not None:
        common.warn(loaded)
        if not weekly:
            return loaded
    store = common.store_of(ctx)
    if loaded is not None and loaded.papers:
        store.store_batch(loaded)
    edition = Edition(loaded.date if loaded is not None else day, EditionKind.WEEKLY)
    week = edition_batch(store, edition)
    if not week.papers:
        raise BatchError(week.source, "nothing is stored for these days (send or render their batches first)")
    return week


@click.command()
@click.argument("batch", required=False, type=click.Path(path_type=Path))
@click.option("--date", "date", type=common.DATE, help="Issue date (YYYY-MM-DD); gives the year to a text page.")
@click.option("--weekly", is_flag=True, help="Render the weekly edition of the date, from the stored papers.")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
    help="Output folder. Default: out/<date>/ (out/<date>-weekly/ for a weekly edition).",
)
@click.option("--allow-future", is_flag=True, help=common.ALLOW_FUTURE_HELP)
@click.pass_context
def render(ctx: click.Context, batch: Path | None, date: dt.datetime | None, weekly: bool, out_dir: Path | None,
           allow_future: bool) -> None:
    """Render BATCH into issue.html, issue.txt, web.html and issue.json.

    BATCH is a daily papers page saved as text, a daily papers API answer,
    an arXiv Atom feed or a batch written by `newsletter fetch`. With
    --weekly, the weekly edition of the date (the seven days ending on it)
    from the papers stored for those days.

    The edition is stored (when there is a database: render never creates
    one), not published: the web's archive and feed show it once it is sent
    (or `newsletter publish DATE`).
    """
    settings = common.settings_of(ctx)
    common.refuse_future(common.day_of(date) or dt.date.today(), allow_future)
    papers = edition_to_render(ctx, batch, date, weekly)
    common.refuse_future(papers.date, allow_future)  # a batch's own date
    issue = render_issue(papers, settings)
    out_dir = out_dir or Path("out") / issue.edition
    # No reader's link in a file anyone may open: the sign-up page stands in.
    html, text = issue.personalized(settings.signup_url)
    facts = describe(issue, html, text)
    store, missing = common.existing_store(ctx)  # the files need no database: render never creates one
    if store is not None:
        if papers.kind == EditionKind.DAILY:
            store.store_batch(papers)  # its papers join the archive
        store.save_issue(issue)  # for `publish`; not on the web until then, or until it is sent
    try:
        atomic_write_text(out_dir / "issue.html", html)
        atomic_write_text(out_dir / "issue.txt", text)
        atomic_write_text(out_dir / "web.html", issue.web_html)
        atomic_write_text(out_dir / "issue.json", json.dumps(facts, ensure_ascii=False, indent=2) + "\n")
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot write ({exc.strerror or exc})") from exc
    share = facts["html_encoded_bytes"] / GMAIL_CLIP_BYTES
    click.echo(
        f"{terminal_safe(issue.subject)}: {issue.card_count} cards, {issue.listed_count} listed, "
        f"{issue.more_count} web-only; HTML {facts['html_bytes']:,} bytes, {facts['html_encoded_bytes']:,} as sent "
        f"({share:.0%} of Gmail's {GMAIL_CLIP_BYTES:,}-byte clip); text {facts['text_bytes']:,} bytes "
        f"→ {terminal_safe(out_dir)}/"
        + (f"; not stored: there is no database at {terminal_safe(missing.where)}" if missing else "")
    )


@click.command()
@click.argument("batch", required=False, type=click.Path(path_type=Path))
@click.option("--date", "date", type=common.DATE, help="Issue date (YYYY-MM-DD); gives the year to a text page.")
@click.option("--weekly", is_flag=True, help="Preview the weekly edition of the date, from the stored papers.")
@click.option("--as", "as_email", metavar="EMAIL",
              help="Show this subscriber's own copy: their picks (recorded nowhere) and their signed links.")
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535), help="Port on 127.0.0.1.")
@click.pass_context
def preview(ctx: click.Context, batch: Path | None, date: dt.datetime | None, weekly: bool, as_email: str | None,
            port: int) -> None:
    """Show the rendered BATCH (or with --weekly, the weekly edition of the date)
    in the browser at desktop and phone widths, with its size against Gmail's clip.

    With --as EMAIL, the email is that subscriber's own copy, as the send
    would make it: their picks, ranked as the send ranks them (recorded
    nowhere: the send ranks them again), and their unsubscribe, preferences
    and 👍/👎 links, signed with the configured key (they work: an
    unsubscribe link clicked unsubscribes them).

    The page re-renders when the batch or a template changes (with --as,
    also the reader's profile): edit, then reload.
    """
    from newsletter.issue.editions import edition_batch
    from newsletter.web import create_preview_app

    settings = common.settings_of(ctx)
    reader, store = None, None
    if as_email is not None:
        store = common.store_of(ctx)
        reader = store.get(email=as_email)
        if reader is None:
            raise Refused(f"{as_email.strip()} is not on the list: no copy of theirs to preview")
    first = edition_to_render(ctx, batch, date, weekly)  # fail now, with a clear message, not on first request
    whose = f" as {terminal_safe(reader.email)}" if reader else ""
    if weekly:
        store = common.store_of(ctx)
        app = create_preview_app(None, settings, load=lambda: edition_batch(store, first.edition),
                                 label=f"the weekly edition of {first.edition.describe()}", reader=reader, store=store)
        what = f"Previewing the weekly edition of {first.edition.describe()}{whose}"
    else:
        app = create_preview_app(batch, settings, date=common.day_of(date), reader=reader, store=store)
        what = f"Previewing {terminal_safe(batch)}{whose}"
    common.serve_app(app, "127.0.0.1", port, what)


@click.command()
@click.argument("date", type=common.DATE)
@click.option("--weekly", is_flag=True, help="The weekly edition of DATE (default: the daily edition).")
@click.pass_context
def publish(ctx: click.Context, date: dt.datetime, weekly: bool) -> None:
    """Put the stored edition of DATE on the web: the archive (/issues/), its page and the Atom feed.
    A send does this by itself; this is for an edition rendered but not sent,
    or taken off with `unpublish`."""
    edition = Edition(date.date(), EditionKind.WEEKLY if weekly else EditionKind.DAILY)
    if not common.store_of(ctx).publish_issue(edition):
        raise EditionNotStored(f"the {edition.kind} edition of {edition.date} is not stored: render it first "
                               f"(newsletter render{' --weekly' if weekly else ''} …)")
    click.echo(f"Published the {edition.kind} edition of {edition.date} at {_web_address(ctx, edition)}")


@click.command()
@click.argument("date", type=common.DATE)
@click.option("--weekly", is_flag=True, help="The weekly edition of DATE (default: the daily edition).")
@click.pass_context
def unpublish(ctx: click.Context, date: dt.datetime, weekly: bool) -> None:
    """Take the edition of DATE off the web: off the archive and the Atom feed, and its page answers 404.
    It stays stored (`publish` puts it back); readers' emails are not touched."""
    edition = Edition(date.date(), EditionKind.WEEKLY if weekly else EditionKind.DAILY)
    if not common.store_of(ctx).unpublish_issue(edition):
        raise EditionNotStored(f"the {edition.kind} edition of {edition.date} is not stored: nothing to unpublish")
    click.echo(f"Took the {edition.kind} edition of {edition.date} off the web ({_web_address(ctx, edition)} "
               "now answers 404)")


def _web_address(ctx: click.Context, edition: Edition) -> str:
    """The public address of ``edition``'s web version."""
    suffix = "/weekly" if edition.kind == EditionKind.WEEKLY else ""
    return f"{common.settings_of(ctx).web_base}/issues/{edition.date.isoformat()}{suffix}"
