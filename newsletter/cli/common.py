"""What the commands share: turning errors into one line and an exit code,
the settings and database of a command, dates, batch warnings, serving."""

from __future__ import annotations

import datetime as dt

import click

from newsletter.core.config import Settings, env_file_searched, load_settings
from newsletter.core.errors import DatabaseMissing, NewsletterError
from newsletter.core.models import Batch
from newsletter.sending.senders import check_sender
from newsletter.store import Store, open_store
from newsletter.core.text import terminal_safe


class ErrorGroup(click.Group):
    """A group that turns the project's errors into a message and exit
    code, and says when a command created the database."""

    def invoke(self, ctx: click.Context):
        try:
            result = super().invoke(ctx)
        except NewsletterError as exc:
            # Messages quote input (addresses, file names, paper text): shown escaped.
            click.echo(f"Error: {terminal_safe(exc)}", err=True)
            ctx.exit(exc.exit_code)
        if "created" in ctx.meta:  # said once the command succeeded: an error stays one line
            click.echo(f"Created a new database at {terminal_safe(ctx.meta['created'])}", err=True)
        return result


DATE = click.DateTime(formats=["%Y-%m-%d"])


def day_of(value: dt.datetime | None) -> dt.date | None:
    """The date of a ``DATE`` option's value (None when not given)."""
    return value.date() if value else None


ALLOW_FUTURE_HELP = "Accept an edition date more than a day ahead (refused otherwise: a mistyped date)."


def refuse_future(day: dt.date, allow_future: bool) -> None:
    """Refuse an edition date more than a day after today (a mistyped
    year, month or day), unless ``allow_future``: raises
    :class:`click.UsageError` (exit 2)."""
    today = dt.date.today()
    if not allow_future and day > today + dt.timedelta(days=1):
        raise click.UsageError(f"{day} is more than a day in the future (today is {today}); check the date, "
                               "or pass --allow-future if you mean it")


def settings_of(ctx: click.Context) -> Settings:
    """The settings, loaded on first use, so --help works even with a broken
    setting. Raises :class:`ConfigError` for a malformed one, an unknown
    ``NEWSLETTER_SENDER`` included (whatever the command)."""
    root = ctx.find_root()
    if root.obj is None:
        settings = load_settings()
        check_sender(settings.sender)
        root.obj = settings
    return root.obj


# The commands that may create a database (the others refuse a missing one).
CREATING_COMMANDS = "`newsletter subscribers import`, `subscribers add`, `db upgrade` or `admin add`"


def store_of(ctx: click.Context, report: bool = True, create: bool = False) -> Store:
    """Open the configured database for this command (once: later calls
    return the same store); closed when it ends. Opening upgrades a
    database that is behind; with ``report``, that is said in one line on
    stderr (and a new database, once the command succeeds). Only with
    ``create`` is a database made where there is none: otherwise raises :class:`DatabaseMissing`
    naming the database and where ``.env`` was looked for, since a command
    run from the wrong folder would otherwise succeed at nothing."""
    if "store" in ctx.meta:
        return ctx.meta["store"]
    try:
        store = open_store(settings_of(ctx).database_url, create=create)
    except DatabaseMissing as exc:
        raise DatabaseMissing(f"{exc}; settings were read from the environment and {env_file_searched()}. "
                              "Run from the folder that holds your .env, or set NEWSLETTER_DATABASE_URL; "
                              f"{CREATING_COMMANDS} create a new database", exc.where) from exc
    ctx.meta["store"] = store
    ctx.call_on_close(store.close)
    if report and create and store.migration is not None and store.migration.from_revision is None:
        ctx.meta["created"] = store.where  # said by ErrorGroup once the command succeeds
    elif report:
        report_migration(store)
    return store


def existing_store(ctx: click.Context) -> tuple[Store | None, DatabaseMissing | None]:
    """The configured database as :func:`store_of` opens it, or None and
    why when there is none (nothing is created)."""
    try:
        return store_of(ctx), None
    except DatabaseMissing as missing:
        return None, missing


def report_migration(store: Store) -> None:
    """Say on stderr that opening ``store`` upgraded its database (a new
    database is said by :func:`store_of`)."""
    if store.migration is not None and store.migration.from_revision is not None:
        click.echo(str(store.migration), err=True)


def warn(batch: Batch) -> None:
    """Print the batch's warnings (text that was repaired while loading) to stderr."""
    for warning in batch.warnings:
        click.echo(f"Warning: {terminal_safe(warning)}", err=True)


def serve_app(app, host: str, port: int, what: str) -> None:
    """Run ``app`` under waitress until Ctrl-C or SIGTERM."""
    from newsletter.web import run_server

    run_server(app, host, port, lambda url: click.echo(f"{what} at {url}  (Ctrl-C to stop)"))
