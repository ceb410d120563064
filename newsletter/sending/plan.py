"""Planning a run of ``newsletter send``: which editions go out on a day
(the daily edition, the weekly edition of the day, overdue weeklies), made
from a loaded batch or from the papers stored for them, and what to tell the
operator about the editions that have nothing to send."""

from __future__ import annotations

import dataclasses
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from newsletter.core.config import Settings
from newsletter.core.errors import ThumbnailError
from newsletter.core.models import Batch, Edition, EditionKind, paper_key
from newsletter.issue.editions import edition_batch
from newsletter.papers.thumbnails import copy_thumbnail
from newsletter.store import Ledger, Store

# Thumbnails downloaded at once when a day is stored.
THUMBNAIL_DOWNLOADS = 4


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

    With ``settings.thumbnails`` on, storing ``loaded`` also copies the
    thumbnails of its papers (see :func:`copy_thumbnails`; a thumbnail that
    cannot be copied is a note, never a failed run), and every paper of the
    planned editions whose thumbnail has a stored copy comes with
    ``thumbnail_stored`` set: an email shows a paper's thumbnail exactly
    when that is true, from ``settings.web_base +
    thumbnail_path(paper_key(paper))``. With the setting off, no paper has
    it set.
    """
    plan = RunPlan(day, options)
    if loaded is not None and loaded.papers:
        store.store_batch(loaded)  # the papers and their ranks, which feedback links and weeklies read
        if settings.thumbnails:
            plan.notes.extend(copy_thumbnails(store, loaded, settings.fetch_timeout))
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
    if settings.thumbnails:
        plan.editions = mark_thumbnails(store, plan.editions)
    return plan


def copy_thumbnails(store: Store, batch: Batch, timeout: float) -> list[str]:
    """Copy into ``store`` the thumbnail of each paper of ``batch`` (stored
    already) that has a ``thumbnail_url`` and no stored copy yet: downloaded
    within ``timeout`` seconds each, a few at a time, and made a PNG at most
    600 pixels wide (see :mod:`newsletter.papers.thumbnails`).

    Returns a note for each thumbnail that could not be copied (the paper
    then has none); raises nothing for them.
    """
    wanted = {paper_key(p): p for p in batch.papers if p.thumbnail_url}
    wanted = {key: p for key, p in wanted.items() if key not in store.stored_thumbnail_keys(wanted)}
    if not wanted:
        return []

    def copy(key: str):
        try:
            return key, copy_thumbnail(wanted[key].thumbnail_url, timeout)
        except ThumbnailError as exc:
            return key, exc

    notes = []
    with ThreadPoolExecutor(max_workers=min(THUMBNAIL_DOWNLOADS, len(wanted))) as pool:
        for key, copied in pool.map(copy, list(wanted)):
            if isinstance(copied, ThumbnailError):
                notes.append(f"No thumbnail for {key}: {copied}")
            else:
                store.store_thumbnail(key, copied)
    return notes


def mark_thumbnails(store: Store, editions: list[Batch]) -> list[Batch]:
    """Return ``editions`` with ``thumbnail_stored`` set on each paper
    whose thumbnail has a stored copy."""
    keys = {paper_key(p) for batch in editions for p in batch.papers}
    stored = store.stored_thumbnail_keys(keys) if keys else set()
    return [dataclasses.replace(batch, papers=tuple(
        dataclasses.replace(p, thumbnail_stored=True) if paper_key(p) in stored else p for p in batch.papers))
        for batch in editions]


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
