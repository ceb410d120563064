"""Commands that make an issue from a batch: ``fetch`` (download a day),
``render`` (write the files) and ``preview`` (serve it in the browser)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from newsletter.batches import load_batch
from newsletter.cli import common
from newsletter.errors import OutputError
from newsletter.files import atomic_write_text
from newsletter.models import Issue
from newsletter.render import GMAIL_CLIP_BYTES, HTML_LIMIT_BYTES, encoded_bytes, render_issue
from newsletter.text import terminal_safe


@click.command()
@click.option("--date", "date", type=common.DATE, help="Day to fetch (YYYY-MM-DD). Default: today.")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("batches"),
    show_default=True, help="Folder for the saved batch (<date>.json).",
)
@click.pass_context
def fetch(ctx: click.Context, date: dt.datetime | None, out_dir: Path) -> None:
    """Download one day from the daily papers API and save it as a batch."""
    from newsletter.fetch import fetch_day

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


@click.command()
@click.argument("batch", type=click.Path(path_type=Path))
@click.option("--date", "date", type=common.DATE, help="Issue date (YYYY-MM-DD); gives the year to a text page.")
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
    settings = common.settings_of(ctx)
    loaded = load_batch(batch, date=common.day_of(date))
    common.warn(loaded)
    issue = render_issue(loaded, settings)
    out_dir = out_dir or Path("out") / issue.date.isoformat()
    # No reader's link in a file anyone may open: the sign-up page stands in.
    html, text = issue.personalized(settings.signup_url)
    facts = describe(issue, html, text)
    common.store_of(ctx).save_issue(issue)  # the web app shows it at /issues/<date>
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
    )


@click.command()
@click.argument("batch", type=click.Path(path_type=Path))
@click.option("--date", "date", type=common.DATE, help="Issue date (YYYY-MM-DD); gives the year to a text page.")
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535), help="Port on 127.0.0.1.")
@click.pass_context
def preview(ctx: click.Context, batch: Path, date: dt.datetime | None, port: int) -> None:
    """Show the rendered BATCH in the browser at desktop and phone widths.

    The page re-renders when the batch or a template changes: edit, then reload.
    """
    from newsletter.web import create_preview_app

    settings = common.settings_of(ctx)
    common.warn(load_batch(batch, date=common.day_of(date)))  # fail now, with a clear message, not on first request
    common.serve_app(create_preview_app(batch, settings, date=common.day_of(date)), "127.0.0.1", port,
           f"Previewing {terminal_safe(batch)}")
