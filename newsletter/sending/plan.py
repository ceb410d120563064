"""Planning a run of ``newsletter send``: which editions go out on a day
(the daily edition, the weekly edition of the day, overdue weeklies), made
from a loaded batch or from the papers stored for them, and what to tell the
operator about the editions that have nothing to send."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from newsletter.core.config import Settings
from newsletter.core.models import Batch, Edition, EditionKind
from newsletter.issue.editions import edition_batch
from newsletter.store import Ledger, Store


@dataclass(frozen=True)
class RunOptions:
    """How a run goes (the ``newsletter send`` options)."""

    sender: str | None = None  # the sender's name (see senders.SENDERS); None: NEWSLETTER_SENDER
    ses_mode: str = "bulk"  # SES: "bulk" (a stored template) or "raw" (one MIME message per reader)
    dry_run: bool = False  # say what would be sent, send nothing
    weekly_only: bool = False  # only the weekly edition of the day
    test_to: str | None = None  # send the first edition to this address alone, outside the ledger
    limit: int | None = None  # each edition to at most this many readers
    resend_unknown: bool = False  # readers whose earlier send had an unknown outcome too
    resend_rendering_failures: bool = False  # readers whose message SES dropped with a Rendering Failure too
    allow_partial: bool = False  # send what the 24-hour quota allows rather than nothing

    def sender_name(self, settings: Settings) -> str:
        """The name of the sender the run sends through."""
        return self.sender or settings.sender


@dataclass
class RunPlan:
    """What a run sends: ``editions``, the papers of each edition in the
    order they go out (the daily first), each with its papers; ``notes``,
    lines for the operator (editions without papers, readers sent again)."""

    day: dt.date
    options: RunOptions
    editions: list[Batch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan_run(settings: Settings, store: Store, day: dt.date, loaded: Batch | None = None,
             options: RunOptions = RunOptions()) -> RunPlan:
    """Return the plan of a run on ``day``: the daily edition from
    ``loaded`` (a batch file read for the day) or, without it, from the
    papers stored for the day; and the weekly editions due (see
    :func:`weekly_editions`), from the papers stored for their weeks.
    Editions without papers are left out, with a note; with
    ``options.weekly_only``, only weeklies are planned.

    Before planning, the papers of ``loaded`` are stored (feedback links
    and weeklies read them) and, with ``options.resend_rendering_failures``
    (not on a dry run), the readers of the day's editions whose message SES
    dropped with a Rendering Failure are forgotten by the ledger, so the run
    sends to them again (a note says how many).
    """
    plan = RunPlan(day, options)
    if loaded is not None and loaded.papers:
        store.store_batch(loaded)  # the papers and their ranks, which feedback links and weeklies read
    if options.resend_rendering_failures and not options.dry_run:
        for edition in (Edition(day), Edition(day, EditionKind.WEEKLY)):
            again = Ledger(store, edition, settings.weekly_weekday).forget_rendering_failures()
            if again:
                plan.notes.append(f"Sending the {edition.key} edition again to {again:,} readers whose message SES "
                                  "dropped with a Rendering Failure.")
    if not options.weekly_only:
        if loaded is not None and not loaded.papers:
            plan.notes.append(f"No papers for {loaded.date} in {loaded.source}: no daily edition, nothing sent.")
        daily = loaded if loaded is not None else edition_batch(store, Edition(day))
        if daily.papers:
            plan.editions.append(daily)
        elif loaded is None:
            plan.notes.append(f"No papers stored for {day}: no daily edition.")
    # A test, or --weekly, takes the weekly edition of the day whether or not
    # some readers have it that day, and no overdue one.
    every = options.weekly_only or bool(options.test_to)
    for edition in weekly_editions(store, settings, day, options.resend_unknown, every=every):
        week = edition_batch(store, edition)
        if week.papers:
            plan.editions.append(week)
        else:
            plan.notes.append(f"No papers stored for {edition.describe()}: no weekly edition.")
    return plan


def weekly_editions(store: Store, settings: Settings, day: dt.date, resend_unknown: bool = False,
                    every: bool = False) -> list[Edition]:
    """Return the weekly editions a run on ``day`` sends: the weekly edition
    of ``day`` when some readers have it as their weekly day (with
    ``every``: whether or not), and that of either of the two days before
    when it is overdue: its send was begun and never finished, or no
    edition at all was made that day (the machine was down)."""
    due = []
    for back in (2, 1, 0):
        edition = Edition(day - dt.timedelta(days=back), EditionKind.WEEKLY)
        stored = store.get_issue(edition.date, EditionKind.WEEKLY)
        if back:
            if every:
                continue
            missed = stored is None and store.get_issue(edition.date) is None
            if not (missed or (stored is not None and stored.finished_at is None)):
                continue
        waiting = Ledger(store, edition, settings.weekly_weekday).count_unsent(resend_unknown)
        if waiting or stored is not None or (every and not back):
            due.append(edition)
    return due
