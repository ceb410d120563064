"""Carrying out a planned run of ``newsletter send`` (see
:mod:`newsletter.sending.plan`): every edition rendered and stored first,
then each sent to its readers by the dispatcher (on a dry run, only
counted), put on the web as its send begins and noted finished once no
reader waits for it; the run's exit code from its editions' errors and the
operator's stop."""

from __future__ import annotations

import contextlib
import gc
import signal
import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol

from newsletter.core.config import Settings
from newsletter.core.errors import NewsletterError
from newsletter.core.models import Edition, Issue
from newsletter.issue.render import render_for_readers
from newsletter.picks.picking import EditionPicks
from newsletter.readers.tokens import Signer
from newsletter.sending.dispatch import Dispatcher, SendOptions, SendReport
from newsletter.sending.plan import RunOptions, RunPlan
from newsletter.sending.senders import create_sender
from newsletter.sending.senders.base import Sender
from newsletter.store import Ledger, Store
from newsletter.store.ledger import SendPlan

# Stopped by Ctrl-C (SIGINT): the shell's convention, 128 + the signal's number.
INTERRUPTED_EXIT_CODE = 128 + signal.SIGINT
# New objects (allocated less freed) between two collections of the
# youngest generation during a send (see _send_edition); 700 by default.
SEND_GC_THRESHOLD = 20_000


class StopRequest(threading.Event):
    """The operator's request to stop a run, set from a signal handler: the
    send in progress finishes its calls in flight and stops, and no further
    edition starts. ``signum`` is the signal that asked first (None until
    one does)."""

    signum: signal.Signals | None = None


class Progress(Protocol):
    """How one edition's send in progress is shown (the command's
    ``SendProgress``): a context manager around the send, whose ``update``
    the dispatcher calls with its live report every couple of seconds."""

    def __enter__(self) -> "Progress": ...

    def __exit__(self, *exc) -> None: ...

    def update(self, report: SendReport) -> None: ...


@dataclass
class EditionRun:
    """What a run did with one edition, rendered as ``issue``, through the
    sender called ``sender``: sent it (``report``, and ``where`` the sender
    put the messages, when it says), or on a dry run counted what would be
    sent (``would``), or never started it (``started`` false: the run was
    stopped before). ``error`` is what it ended with (None: done)."""

    issue: Issue
    sender: str
    ses_mode: str
    started: bool = True
    would: SendPlan | None = None
    report: SendReport | None = None
    where: str | None = None
    error: NewsletterError | None = None


@dataclass
class RunReport:
    """What a run did: each planned edition's :class:`EditionRun`, in order,
    and whether the operator stopped it (``signum``: by which signal)."""

    editions: list[EditionRun] = field(default_factory=list)
    stopped: bool = False
    signum: signal.Signals | None = None

    @property
    def exit_code(self) -> int:
        """The exit code of ``newsletter send``: :data:`INTERRUPTED_EXIT_CODE`
        when stopped by Ctrl-C (SIGINT); else the worst of the editions'
        errors' codes, and 1 when stopped otherwise (SIGTERM: readers are
        left); 0 when every edition is done."""
        if self.signum == signal.SIGINT:
            return INTERRUPTED_EXIT_CODE
        codes = [run.error.exit_code for run in self.editions if run.error is not None]
        return max(codes + ([1] if self.stopped else []), default=0)


def carry_out(settings: Settings, store: Store, signer: Signer, plan: RunPlan, stop: StopRequest | None = None,
              progress: Callable[[], Progress] | None = None,
              told: Callable[[EditionRun], None] | None = None) -> RunReport:
    """Send the editions of ``plan`` as its options say; return the report.

    Every edition is rendered for its readers (links signed by ``signer``)
    and stored, and its ranking index built, before the first message: the
    sending of one edition runs into the next's. Each edition is then put on
    the web and sent to its readers with their picks, showing its progress
    with a display ``progress()`` makes; each edition after the first is
    checked (SES: its pre-flight) while the one before it sends (see
    :class:`_CheckAhead`); ``told(edition run)`` hears of
    each edition as it ends. Once ``stop`` is set, the send in progress
    ends after its calls in flight and no further edition starts.

    Raises what rendering and storing an issue raise (:class:`RenderError`,
    :class:`StoreError`); an edition's send that fails keeps its error in
    its :class:`EditionRun`, and the other editions still go out.
    """
    stop = stop or StopRequest()
    options = plan.options
    issues = [render_for_readers(papers, settings, signer) for papers in plan.editions]
    pickers = []
    for issue in issues:
        store.save_issue(issue)
        pickers.append(EditionPicks(store, issue.edition, issue.date, issue.papers, issue.pickable))
        if not options.dry_run and not stop.is_set():
            pickers[-1].prepare()
    senders = [None if options.dry_run else _sender(settings, options) for _issue in issues]
    checks = _CheckAhead(settings, store, options, list(zip(issues, senders)), stop)
    report = RunReport()
    try:
        for n, (issue, picks, sender) in enumerate(zip(issues, pickers, senders)):
            if not stop.is_set():
                checks.wait(n)
            if stop.is_set():  # a stop ends the whole run: no further edition starts
                done = EditionRun(issue, options.sender_name(settings), options.ses_mode, started=False)
            else:
                done = _send_edition(settings, store, signer, issue, picks, sender, options, stop, progress,
                                     checks.opened[n])
            report.editions.append(done)
            if told:
                told(done)
    finally:
        checks.finish()
    report.stopped, report.signum = stop.is_set(), stop.signum
    return report


def _sender(settings: Settings, options: RunOptions) -> Sender | NewsletterError:
    """The sender of one edition of the run, or the error that made it
    impossible (a missing library: that edition's error)."""
    try:
        return create_sender(settings, options.sender_name(settings), options.ses_mode)
    except NewsletterError as error:
        return error


class _CheckAhead:
    """Checks each edition of a run after the first, in a thread of its
    own, while the edition before it sends (see ``Sender.check_ahead``): an
    edition's check (SES: the pre-flight, one render a second for each
    shape of reader data, 5 s or more) would otherwise stand the run still
    between two editions. The first edition checks itself when it opens,
    after its lock and quota. An edition's check starts once the edition
    before it is open (``opened``; SES allows one render a second to the
    account) and has readers waiting; each edition waits for its own check
    before it starts (:meth:`wait`)."""

    def __init__(self, settings: Settings, store: Store, options: RunOptions,
                 editions: list[tuple[Issue, Sender | NewsletterError | None]], stop: threading.Event):
        self.opened = [threading.Event() for _ in editions]  # set by each edition's send (see Dispatcher.run)
        self._checked = [threading.Event() for _ in editions]
        if editions:
            self._checked[0].set()  # the first edition checks itself
        self._over = threading.Event()
        self._thread = threading.Thread(target=self._check, args=(settings, store, options, editions, stop),
                                        name="send-check-ahead", daemon=True)
        self._thread.start()

    def _check(self, settings: Settings, store: Store, options: RunOptions,
               editions: list[tuple[Issue, Sender | NewsletterError | None]], stop: threading.Event) -> None:
        for n, (issue, sender) in enumerate(editions[1:], start=1):
            try:
                self.opened[n - 1].wait()  # set by the time that edition ends, or by finish()
                if isinstance(sender, NewsletterError) or sender is None or stop.is_set() or self._over.is_set():
                    continue
                ledger = Ledger(store, Edition(issue.date, issue.kind), settings.weekly_weekday)
                if ledger.count_unsent(options.resend_unknown):
                    sender.check_ahead(issue, stop)
            except NewsletterError:
                pass  # the database, say: the edition's send meets it, and checks for itself
            finally:
                self._checked[n].set()

    def wait(self, n: int) -> None:
        """Return once the check of edition ``n`` is over (done, or not needed)."""
        self._checked[n].wait()

    def finish(self) -> None:
        """Let the thread end, and return once it has: at most a call in
        flight, when the run ended before an edition started."""
        self._over.set()
        for opened in self.opened:
            opened.set()
        self._thread.join()


def _send_edition(settings: Settings, store: Store, signer: Signer, issue: Issue, picks: EditionPicks,
                  sender: Sender | NewsletterError | None, options: RunOptions, stop: threading.Event,
                  progress: Callable[[], Progress] | None, opened: threading.Event) -> EditionRun:
    """Send ``issue`` to its readers with their ``picks`` through ``sender``
    (the error that made one impossible; None on a dry run), or on a dry run
    count what would be sent; note it finished when no reader is left
    waiting; set ``opened`` once its sender is open, or it ended without
    opening it. Returns what was done, with the error it ended with (see
    ``SendReport.error``, or the error that stopped it before sending)."""
    done = EditionRun(issue, options.sender_name(settings), options.ses_mode)
    edition = Edition(issue.date, issue.kind)
    try:
        if options.dry_run:
            done.would = Ledger(store, edition, settings.weekly_weekday).plan(options.resend_unknown, options.limit)
            return done
        if isinstance(sender, NewsletterError):
            raise sender
        store.publish_issue(edition)  # before the first message: its "view in browser" link works
        send_options = SendOptions(limit=options.limit, resend_unknown=options.resend_unknown,
                                   allow_partial=options.allow_partial, max_rate=settings.max_send_rate,
                                   concurrency=settings.send_concurrency, weekly_day=settings.weekly_weekday)
        shown = progress() if progress else None
        dispatcher = Dispatcher(store, sender, signer, settings.base_url, settings.from_address, send_options, stop,
                                shown.update if shown else None)
        thresholds = gc.get_threshold()
        try:
            # What is loaded by now (libraries, the issue, the ranking's index)
            # lives to the end: out of the collector's sight, its collections
            # during the send scan only the send's own objects (ranking a fifth
            # faster). And they run less often: a send keeps thousands of
            # objects alive at once (the pages of readers ranked, the calls
            # queued), which every collection of the youngest generation
            # (each 700 new objects, by default) walked again, a tenth of a
            # bulk send's CPU; a send makes few reference cycles (a few
            # thousand objects over 40,000 messages), so little waits longer.
            gc.freeze()
            gc.set_threshold(SEND_GC_THRESHOLD, *thresholds[1:])
            with shown or contextlib.nullcontext():
                done.report = dispatcher.run(issue, picks.for_readers, opened)
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()
        done.where = sender.where(issue)
        done.error = done.report.error()
        if done.error is None and done.report.waiting == 0:
            store.finish_issue(edition)
    except NewsletterError as error:  # the other editions still go out; the worst error is the exit code
        done.error = error
    finally:
        opened.set()  # also when it never opened: the next edition's check waits no longer
    return done
