"""``newsletter db``: the database's schema revision and upgrades."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli import common
from newsletter.text import terminal_safe


@click.group()
def db() -> None:
    """The database: schema status and upgrade.

    Every command upgrades a database that is behind this release when it
    opens it; these show and do it explicitly.
    """


@db.command("status")
@click.pass_context
def db_status(ctx: click.Context) -> None:
    """Show the database's schema revision, the latest this release knows,
    and the migrations an upgrade would run. Changes nothing."""
    from newsletter.store import migrate

    state = migrate.status(common.settings_of(ctx).database_url)
    if state.problem:
        current = f"{state.revision or 'none'} ({state.problem})"
    elif state.release_1:
        current = f"none: made by release 1, which counts as {migrate.BASELINE}"
    elif state.empty:
        current = "none: the database is new or empty"
    else:
        current = state.revision
    pending = ", ".join(f"{revision} ({migrate.describe(revision)})" for revision in state.pending)
    if state.problem:
        pending = "none (this release cannot upgrade it)"
    click.echo(f"Current revision: {terminal_safe(current)}")
    click.echo(f"Latest revision:  {migrate.head()}")
    click.echo(f"Pending migrations: {pending or 'none'}")


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Upgrade the database to this release's schema now (any command
    would do it when it opens the database) and say what was done."""
    from newsletter.store import migrate

    store = common.store_of(ctx, report=False)
    if store.migration is not None:
        click.echo(str(store.migration))
    else:
        click.echo(f"The database is current (revision {migrate.head()}); nothing to do.")
