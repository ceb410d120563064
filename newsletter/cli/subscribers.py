"""``newsletter subscribers``: the list, by hand and from CSV files."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from newsletter.cli import common
from newsletter.errors import Refused
from newsletter.lists import read_subscriber_csv, write_subscriber_csv
from newsletter.models import SubscriberStatus
from newsletter.store import Store
from newsletter.text import terminal_safe

_STATUS = click.Choice([status.value for status in SubscriberStatus])


@click.group()
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
    subscriber, created = common.store_of(ctx).add(email, name, source="cli")
    if created:
        click.echo(f"Added {terminal_safe(subscriber.email)}")
    elif subscriber.status == SubscriberStatus.ACTIVE:
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
    _change(ctx, email, SubscriberStatus.UNSUBSCRIBED, "removed by the operator", (SubscriberStatus.ACTIVE,),
            done="Unsubscribed {email}")


def _change(ctx: click.Context, email: str, status: SubscriberStatus, reason: str,
            only_from: tuple[SubscriberStatus, ...] | None, done: str) -> None:
    """Give the subscriber ``email`` the ``status`` as the operator, and say
    so with ``done`` (its ``{email}`` and ``{was}`` filled in), or say that
    nothing changed. Raises :class:`Refused` when the address is not listed."""
    store = common.store_of(ctx)
    subscriber = _listed(store, email)
    address = terminal_safe(subscriber.email)
    if store.change_status(subscriber.id, status, source="cli", reason=reason, only_from=only_from):
        click.echo(done.format(email=address, was=terminal_safe(subscriber.status)))
    else:
        click.echo(f"{address} is already {terminal_safe(subscriber.status)}")


@subscribers.command("list")
@click.option("--status", type=_STATUS, help="Only subscribers with this status.")
@click.pass_context
def subscribers_list(ctx: click.Context, status: str | None) -> None:
    """List subscribers: address, status, since when, and name."""
    for s in common.store_of(ctx).iter_subscribers(status=status):
        # Each field escaped on its own: a tab or newline in one cannot shift
        # the columns, and no escape sequence reaches the terminal.
        fields = (s.email, s.status, f"{s.updated_at:%Y-%m-%d}", s.name or "")
        click.echo("\t".join(terminal_safe(field) for field in fields))


@subscribers.command("count")
@click.pass_context
def subscribers_count(ctx: click.Context) -> None:
    """Count subscribers by status."""
    counts = common.store_of(ctx).counts()
    for status, count in counts.items():
        click.echo(f"{terminal_safe(status):<13}{count:>8}")
    click.echo(f"{'total':<13}{sum(counts.values()):>8}")


@subscribers.command("export")
@click.option("--status", type=_STATUS, help="Only subscribers with this status.")
@click.pass_context
def subscribers_export(ctx: click.Context, status: str | None) -> None:
    """Write subscribers as CSV to standard output."""
    write_subscriber_csv(common.store_of(ctx).iter_subscribers(status=status), sys.stdout)


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
    store = common.store_of(ctx)
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
    _change(ctx, email, SubscriberStatus.ACTIVE, "reactivated by the operator", None,
            done="Reactivated {email} (was {was})")
