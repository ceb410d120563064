"""``newsletter admin``: the operators who may use the dashboard (/admin/)."""

from __future__ import annotations

import sys

import click

from newsletter.operators.admins import add_admin, admin_name, change_password, remove_admin
from newsletter.cli import common
from newsletter.core.errors import AdminError, InvalidPassword
from newsletter.operators.passwords import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS
from newsletter.core.text import terminal_safe

STDIN_HELP = "Read the password from the first line of standard input (the default when it is not a terminal)."


def interactive() -> bool:
    """Whether the password can be asked on a terminal."""
    return sys.stdin.isatty()


def read_password(from_stdin: bool) -> str:
    """The new password: asked twice, hidden, on a terminal; else (or with
    ``from_stdin``) the first line of standard input. Raises
    :class:`InvalidPassword` when the two typed differ or none was given."""
    if from_stdin or not interactive():
        password = sys.stdin.readline(MAX_PASSWORD_CHARS + 2).rstrip("\r\n")
        if not password:
            raise InvalidPassword("no password on standard input")
        return password
    click.echo(f"At least {MIN_PASSWORD_CHARS} characters; not one of the most common passwords.", err=True)
    password = click.prompt("Password", hide_input=True, err=True)
    again = click.prompt("Repeat the password", hide_input=True, err=True)
    if password != again:
        raise InvalidPassword("the two passwords differ; nothing was changed")
    return password


@click.group()
def admin() -> None:
    """Manage the operators who may use the dashboard (/admin/).

    The dashboard is off (404) until there is at least one operator.
    """


@admin.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help=STDIN_HELP)
@click.pass_context
def admin_add(ctx: click.Context, name: str, password_stdin: bool) -> None:
    """Add the operator NAME (1 to 24 letters, digits, '.', '_' or '-').

    The password is asked twice on a terminal, or read from standard input.
    It needs at least 12 characters and must not be a common password.
    """
    store = common.store_of(ctx, create=True)
    key = admin_name(name)
    if store.get_admin(key) is not None:  # said before a password is asked for nothing
        raise AdminError(f"there is already an operator called {key!r}")
    added = add_admin(store, key, read_password(password_stdin))
    click.echo(f"Added the operator {terminal_safe(added.name)}: the dashboard is at "
               f"{terminal_safe(common.settings_of(ctx).web_base)}/admin/")


@admin.command("list")
@click.pass_context
def admin_list(ctx: click.Context) -> None:
    """List the operators: name, when added, last login."""
    for found in common.store_of(ctx).admins():
        last = f"{found.last_login_at:%Y-%m-%d %H:%M} UTC" if found.last_login_at else "never logged in"
        click.echo(f"{terminal_safe(found.name)}\tadded {found.created_at:%Y-%m-%d}\t{last}")


@admin.command("remove")
@click.argument("name")
@click.pass_context
def admin_remove(ctx: click.Context, name: str) -> None:
    """Remove the operator NAME and end their sessions."""
    remove_admin(common.store_of(ctx), name)
    click.echo(f"Removed the operator {terminal_safe(admin_name(name))}; their sessions are ended.")


@admin.command("password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help=STDIN_HELP)
@click.pass_context
def admin_password(ctx: click.Context, name: str, password_stdin: bool) -> None:
    """Give the operator NAME a new password, ending every session of theirs."""
    store = common.store_of(ctx)
    key = admin_name(name)
    if store.get_admin(key) is None:
        raise AdminError(f"there is no operator called {key!r}")
    change_password(store, key, read_password(password_stdin))
    click.echo(f"Changed the password of {terminal_safe(key)}; their sessions are ended.")
