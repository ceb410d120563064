"""``newsletter subscribers``: the list, by hand and from CSV files, and
each reader's interests."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from newsletter.cli import common
from newsletter.core.errors import InvalidProfile, Refused
from newsletter.picks.interests import PARSERS, SCHEDULE_CHOICES, choose_schedule, parse_day_of_week, parse_pause_end
from newsletter.readers.lists import read_subscriber_csv, write_subscriber_csv
from newsletter.core.models import (
    MAX_PICKS,
    Frequency,
    Muting,
    Profile,
    RestOfDay,
    Schedule,
    Subscriber,
    SubscriberStatus,
)
from newsletter.store import Store
from newsletter.store.reader_models import FORGOTTEN_DAYS
from newsletter.core.text import plural, terminal_safe

_STATUS = click.Choice([status.value for status in SubscriberStatus])
# How a reader's choice of the rest of the day is shown.
REST_WORDS = {RestOfDay.TITLES: "titles (every title)", RestOfDay.COUNT: "count (one line)"}
# Where a reader's muted phrases hide papers, as shown.
MUTING_WORDS = {Muting.PICKS: "from picks", Muting.TOP: "from picks and the top cards"}


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
    subscriber, created = common.store_of(ctx, create=True).add(email, name, source="cli")
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
    """Import FILE.csv
    (a header row with an `email` column and optional `name`, `interests`,
    `authors`, `frequency` and `paused_until` columns), all or nothing, in one
    transaction.

    Interests and authors are separated by semicolons; a frequency is
    daily, weekly (on NEWSLETTER_WEEKLY_DAY) or `weekly:<day>` such as
    `weekly:fri` (empty: daily); paused_until is YYYY-MM-DD (empty: no
    pause). Addresses already present are left as they are, profile and
    schedule included: one that unsubscribed, bounced or complained is
    never reactivated. Lines with an invalid address, frequency or date are
    reported with their line number and skipped.
    """
    from newsletter.readers.actions import ReaderActions

    rows = read_subscriber_csv(csv_file, with_profiles=True)
    store = common.store_of(ctx, create=True)
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
    """Make EMAIL active again, whatever its status
    (an operator's decision: use it for an address that complained or bounced
    only when you know why)."""
    _change(ctx, email, SubscriberStatus.ACTIVE, "reactivated by the operator", None,
            done="Reactivated {email} (was {was})")


# The options of `subscribers interests`, by profile field.
_PROFILE_OPTIONS = {"interests": "--keywords", "authors": "--authors", "categories": "--categories",
                    "seeds": "--seed-papers", "picks": "--picks", "muted": "--mute"}


@subscribers.command("interests")
@click.argument("email")
@click.option("--keywords", "interests", metavar="'A; B'", help="Interests: phrases separated by semicolons.")
@click.option("--authors", metavar="'X; Y'", help="Followed authors, separated by semicolons.")
@click.option("--categories", metavar="cs.CV,…", help="arXiv categories, separated by commas, such as cs.CV,stat.ML.")
@click.option("--seed-papers", "seeds", metavar="ID,…",
              help="Papers the reader likes: arXiv ids or arxiv.org links, separated by commas.")
@click.option("--picks", metavar="N", help=f"How many picks, 0 (none) to {MAX_PICKS}.")
@click.option("--mute", "muted", metavar="'A; B'",
              help="Never show papers about these: phrases separated by semicolons; a paper whose title or "
                   "abstract says one (any case or accents, singular or plural) is never picked.")
@click.option("--muting", type=click.Choice([choice.value for choice in Muting], case_sensitive=False),
              help="Where the muted phrases hide papers: picks (never picked; the default) or top (the top "
                   "cards leave them out too, the next papers taking their places).")
@click.option("--rest", type=click.Choice([choice.value for choice in RestOfDay], case_sensitive=False),
              help="How the email shows the papers neither picked nor among the top cards: titles (every title, "
                   "a compact list of links) or count (one line linking the web edition).")
@click.option("--frequency", type=click.Choice(SCHEDULE_CHOICES, case_sensitive=False),
              help="How often: daily, weekly (on --weekday, else the day they had, else NEWSLETTER_WEEKLY_DAY), "
                   "or paused until --until (then as before). Daily or weekly ends a pause.")
@click.option("--weekday", metavar="mon…sun", help="The day of a weekly reader's email (with --frequency weekly, "
                                                   "or for a reader who is weekly).")
@click.option("--until", metavar="YYYY-MM-DD", help="With --frequency paused: the day emails start again "
                                                    "(after today).")
@click.option("--forget-votes", is_flag=True,
              help=f"Forget the reader's 👍/👎 votes: they no longer shape their picks (their model of votes "
                   f"goes too). Kept {FORGOTTEN_DAYS} days for --restore-votes, as the preferences page's "
                   f"\"Forget my votes\".")
@click.option("--restore-votes", is_flag=True,
              help=f"Bring back the votes forgotten in the last {FORGOTTEN_DAYS} days (not those on papers "
                   "voted on since).")
@click.pass_context
def subscribers_interests(ctx: click.Context, email: str, rest: str | None, muting: str | None,
                          frequency: str | None, weekday: str | None, until: str | None,
                          forget_votes: bool, restore_votes: bool, **given: str | None) -> None:
    """Show EMAIL's interests and how often they get the newsletter, or replace the parts given as options
    (the others stay as they are; an empty value empties that part).

    Read and cut to the same limits as the reader's preferences page: 20
    interests, 50 authors, 20 categories, 20 seed papers and 20 muted phrases. Seed papers
    not in the database yet are fetched from arXiv by `newsletter serve`.
    A pause keeps the reader's frequency, which resumes on the --until day.
    """
    from newsletter.readers.actions import ReaderActions

    if frequency == "paused" and until is None:
        raise click.UsageError("--frequency paused needs --until YYYY-MM-DD")
    if until is not None and frequency != "paused":
        raise click.UsageError("--until goes with --frequency paused")
    if weekday is not None and frequency == "daily":
        raise click.UsageError("--weekday goes with --frequency weekly (a daily reader has no day)")
    if forget_votes and restore_votes:
        raise click.UsageError("--forget-votes and --restore-votes undo each other; give one")
    store = common.store_of(ctx)
    subscriber = _listed(store, email)
    if forget_votes:
        count = store.forget_votes(subscriber.id)
        click.echo(f"Forgot {plural(count, 'vote')}; --restore-votes brings them back within "
                   f"{FORGOTTEN_DAYS} days.", err=True)
    elif restore_votes:
        count = store.restore_votes(subscriber.id)
        click.echo(f"Brought back {plural(count, 'vote')}.", err=True)
    profile = store.profile(subscriber.id)
    today = store.clock().date()
    schedule = _chosen_schedule(subscriber, frequency, weekday, until, today)
    changes, notes = {}, []
    for field, value in given.items():
        if value is None:
            continue
        parsed = PARSERS[field](value)
        if parsed.error:
            raise InvalidProfile(f"{_PROFILE_OPTIONS[field]}: {parsed.error}")
        notes += [f"{_PROFILE_OPTIONS[field]}: {note}" for note in parsed.notes]
        changes[field] = parsed.values[0] if field == "picks" else parsed.values
    if rest is not None:
        changes["rest"] = RestOfDay(rest.lower())
    if muting is not None:
        changes["muting"] = Muting(muting.lower())
    if changes:
        profile = store.save_profile(dataclasses.replace(profile, **changes), schedule=schedule)
        for note in notes:
            click.echo(f"Warning: {terminal_safe(note)}", err=True)
        ReaderActions(store).queue_papers(profile.seeds)
    elif schedule is not None:
        store.set_schedule(subscriber.id, schedule)
    words = (schedule or subscriber.schedule).as_of(today).describe(common.settings_of(ctx).weekly_weekday)
    _show_profile(store, subscriber.email, profile, words)


def _chosen_schedule(subscriber: Subscriber, frequency: str | None, weekday: str | None, until: str | None,
                     today) -> Schedule | None:
    """The schedule the options choose for ``subscriber`` (None: they
    change nothing). Raises a usage error for a --weekday of a reader who
    is not and does not become weekly, and :class:`InvalidProfile` naming
    the option for a malformed day or date."""
    if frequency is None and weekday is None:
        return None
    current = subscriber.schedule.as_of(today)
    if weekday is not None and frequency != "weekly" and current.frequency != Frequency.WEEKLY:
        raise click.UsageError(f"--weekday goes with --frequency weekly ({subscriber.email} is not weekly)")
    day = None
    if weekday is not None:
        found = parse_day_of_week(weekday)
        if found.error:
            raise InvalidProfile(f"--weekday: {found.error}")
        day = found.values[0]
    paused_until = None
    if until is not None:
        found = parse_pause_end(until, today)
        if found.error:
            raise InvalidProfile(f"--until: {found.error}")
        paused_until = found.values[0]
    return choose_schedule(current, frequency, day, paused_until)


def _show_profile(store: Store, email: str, profile: Profile, schedule: str) -> None:
    """Print ``profile`` and the reader's ``schedule`` in words, one part a
    line, every stored value terminal-safe."""
    papers = store.papers(profile.seeds)
    seeds = [f"{key} ({papers[key].title})" if key in papers else f"{key} (not in the database yet)"
             for key in profile.seeds]
    votes = [vote.vote for vote in store.votes(profile.subscriber_id)]
    lines = [
        ("interests", "; ".join(profile.interests)),
        ("authors", "; ".join(profile.authors)),
        ("categories", ", ".join(profile.categories)),
        ("seed papers", ", ".join(seeds)),
        ("picks", f"{profile.picks}" + (" (off)" if profile.picks == 0 else "")),
        ("rest", REST_WORDS[profile.rest]),
        ("muted", "; ".join(profile.muted) + (f" ({MUTING_WORDS[profile.muting]})" if profile.muted else "")),
        ("votes", f"{votes.count(1)} up, {votes.count(-1)} down"),
        ("frequency", schedule),
    ]
    click.echo(terminal_safe(email))
    for label, value in lines:
        click.echo(f"  {label + ':':<13}{terminal_safe(value) or '(none)'}")
