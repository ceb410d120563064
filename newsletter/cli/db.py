"""``newsletter db``: the database's schema revision, upgrades, backups and restores."""

from __future__ import annotations

from pathlib import Path

import click

from newsletter.cli import common
from newsletter.core.text import terminal_safe


@click.group()
def db() -> None:
    """The database: schema status and upgrade, backup and restore.

    Every command upgrades a database that is behind this release when it
    opens it; these show and do it explicitly, and copy the database.
    """


@db.command("status")
@click.pass_context
def db_status(ctx: click.Context) -> None:
    """Show the database's schema revision, the latest this release knows, and the migrations an upgrade would run.
    Changes nothing."""
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
    """Upgrade the database to this release's schema now
    (any command would do it when it opens the database) and say what was done."""
    from newsletter.store import migrate

    store = common.store_of(ctx, report=False, create=True)
    if store.migration is not None:
        click.echo(str(store.migration))
    else:
        click.echo(f"The database is current (revision {migrate.head()}); nothing to do.")


@db.command("backup")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
def db_backup(ctx: click.Context, file: Path) -> None:
    """Copy the SQLite database to FILE, consistently, while the web app and sends keep running.

    Reader actions still waiting are applied first, so the copy has them.
    The copy is written beside FILE and checked before it replaces FILE.
    A database behind this release is copied as it is, not upgraded (a
    copy to keep before the upgrade). PostgreSQL is backed up with pg_dump
    (the command is shown).
    """
    from newsletter.readers.actions import ReaderActions
    from newsletter.core.errors import StoreError
    from newsletter.store import migrate
    from newsletter.store.backup import backup, sqlite_path

    database_url = common.settings_of(ctx).database_url
    database = sqlite_path(database_url, "backup")  # PostgreSQL: explained before anything is opened
    state = migrate.status(database_url)
    if state.problem:
        raise StoreError(state.problem)
    if state.current:
        applied = ReaderActions(common.store_of(ctx)).apply_pending()
        if applied:
            click.echo(f"Applied {applied:,} waiting reader actions first.")
    copy = backup(database, file)
    click.echo(f"Backed up the database to {terminal_safe(file)}: {copy.summary()}.")
    if copy.behind:
        click.echo(f"The database was copied as it is, before its upgrade to revision {migrate.head()} "
                   "(which the next command to open it does).")


@db.command("restore")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
def db_restore(ctx: click.Context, file: Path) -> None:
    """Replace the SQLite database with the backup FILE.

    FILE is checked first. Stop the web app and any send first: the
    restore refuses while another process has the database open. The
    replaced database is kept beside it as
    `NAME.before-restore-<UTC time>.db`. A backup older than this release is
    upgraded when the database is next opened.
    """
    from newsletter.store import migrate
    from newsletter.store.backup import restore

    restored, kept = restore(common.settings_of(ctx).database_url, file)
    click.echo(f"Restored {terminal_safe(file)} into {terminal_safe(restored.path)}: {restored.summary()}.")
    if kept is not None:
        click.echo(f"The replaced database is kept as {terminal_safe(kept)}.")
    if restored.behind:
        click.echo(f"It will be upgraded to revision {migrate.head()} when it is next opened "
                   "(or now, with `newsletter db upgrade`).")
