"""The ``newsletter`` command. Thin: parse options, call the core, print.

Expected failures arrive as :class:`NewsletterError` and leave as one line on
stderr with the error's exit code (2 for bad input or configuration).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from newsletter import __version__
from newsletter.config import Settings, load_settings
from newsletter.errors import NewsletterError, OutputError
from newsletter.files import atomic_write_text
from newsletter.models import Issue
from newsletter.papers import load_batch
from newsletter.render import GMAIL_CLIP_BYTES, HTML_LIMIT_BYTES, render_issue


class _Group(click.Group):
    """A group that turns the project's errors into a message and exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)


_DATE = click.DateTime(formats=["%Y-%m-%d"])


def _date(value: dt.datetime | None) -> dt.date | None:
    return value.date() if value else None


def _settings(ctx: click.Context) -> Settings:
    # Loaded on first use, so --help works even with a broken setting.
    if ctx.obj is None:
        ctx.obj = load_settings()
    return ctx.obj


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
    click.echo(f"Fetched {len(batch.papers)} papers for {day.isoformat()} → {path}")


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
    issue = render_issue(loaded, settings)
    out_dir = out_dir or Path("out") / issue.date.isoformat()
    placeholder = f"{settings.web_base}/unsubscribe"
    html, text = issue.personalized(placeholder)
    facts = describe(issue, html, text)
    try:
        atomic_write_text(out_dir / "issue.html", html)
        atomic_write_text(out_dir / "issue.txt", text)
        atomic_write_text(out_dir / "web.html", issue.web_html)
        atomic_write_text(out_dir / "issue.json", json.dumps(facts, ensure_ascii=False, indent=2) + "\n")
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot write ({exc.strerror or exc})") from None
    share = facts["html_bytes"] / GMAIL_CLIP_BYTES
    click.echo(
        f"{issue.subject}: {issue.card_count} cards, {issue.listed_count} listed, "
        f"{issue.more_count} web-only; HTML {facts['html_bytes']:,} bytes ({share:.0%} of Gmail's "
        f"{GMAIL_CLIP_BYTES:,}-byte clip); text {facts['text_bytes']:,} bytes → {out_dir}/"
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
    from waitress import create_server

    from newsletter.web import create_preview_app

    settings = _settings(ctx)
    load_batch(batch, date=_date(date))  # fail now, with a clear message, not on first request
    app = create_preview_app(batch, settings, date=_date(date))
    server = create_server(app, host="127.0.0.1", port=port, threads=4)
    click.echo(f"Previewing {batch} at http://127.0.0.1:{server.effective_port}/  (Ctrl-C to stop)")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="newsletter")
