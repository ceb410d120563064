"""How ``newsletter send`` shows a send in progress.

The dispatcher calls back with its live :class:`~newsletter.sending.dispatch.SendReport`
every couple of seconds; this module decides what a person sees:

- on a terminal, a rich progress bar with the readers sent, failed and
  unknown, the rate and the time left, redrawn in place;
- anywhere else (cron mail, a log file, a pipe), one plain line per call
  back, starting with the ISO 8601 time, so the output stays readable as
  text: ``2025-03-11T06:30:02+00:00 sent 120 of 2,000, failed 0, unknown 0; 60.0/s``.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from typing import TextIO

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


def _handled(report) -> int:
    """Readers of this run that need nothing more: sent, failed, unknown or skipped."""
    return report.sent + report.failed + report.unknown + report.skipped


def plain_line(report, elapsed: float, moment: dt.datetime) -> str:
    """Return one progress line for a log: the time ``moment`` (ISO 8601),
    the counts in ``report`` and the average rate over ``elapsed`` seconds."""
    rate = _handled(report) / elapsed if elapsed > 0 else 0.0
    return (f"{moment.isoformat(timespec='seconds')} sent {report.sent:,} of {report.to_send:,}, "
            f"failed {report.failed:,}, unknown {report.unknown:,}; {rate:,.1f}/s")


class _Rate(ProgressColumn):
    """Readers per second over rich's recent window (a dash until known)."""

    def render(self, task) -> Text:
        speed = task.speed
        return Text("–/s" if speed is None else f"{speed:,.1f}/s", style="progress.data.speed")


class _LiveBar(Progress):
    """A rich Progress that reads the counts afresh on every redraw: the
    dispatcher stops calling back once the last calls are submitted, and the
    bar should keep moving while they finish."""

    def __init__(self, before_render, *columns, **options):
        self._before_render = before_render
        super().__init__(*columns, **options)

    def get_renderables(self):
        self._before_render()
        yield from super().get_renderables()


class SendProgress:
    """Shows a running send on ``stream`` (standard error by default).

    Use it as a context manager around the send and pass :meth:`update` as
    the dispatcher's progress callback. ``terminal`` overrides the check of
    whether ``stream`` is a terminal.
    """

    def __init__(self, stream: TextIO | None = None, terminal: bool | None = None):
        self.stream = stream or sys.stderr
        if terminal is None:
            # The stream itself decides, not FORCE_COLOR or the like (CI
            # systems set those): a log file gets plain lines. A dumb
            # terminal cannot redraw a bar in place.
            isatty = getattr(self.stream, "isatty", None)
            terminal = bool(isatty and isatty()) and not Console(file=self.stream).is_dumb_terminal
        self.terminal = terminal
        self.console = Console(file=self.stream, force_terminal=terminal)
        self.started = time.monotonic()
        self._report = None
        self._bar: _LiveBar | None = None
        self._task = None

    def __enter__(self) -> "SendProgress":
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._sync()  # the last figures stay on screen above the summary
            self._bar.stop()
            self._bar = None

    def update(self, report) -> None:
        """The dispatcher's callback: show ``report``'s counts."""
        self._report = report
        if not self.terminal:
            moment = dt.datetime.now().astimezone()
            click.echo(plain_line(report, time.monotonic() - self.started, moment), file=self.stream)
            return
        if self._bar is None:
            self._bar = _LiveBar(
                self._sync,
                TextColumn("[bold]Sending"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("sent {task.fields[sent]:,} · failed {task.fields[failed]:,} · "
                           "unknown {task.fields[unknown]:,}"),
                _Rate(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._task = self._bar.add_task("send", total=report.to_send, sent=0, failed=0, unknown=0)
            self._bar.start()
        self._sync()

    def _sync(self) -> None:
        report = self._report
        if report is None or self._bar is None:
            return
        self._bar.update(self._task, total=report.to_send, completed=_handled(report),
                         sent=report.sent, failed=report.failed, unknown=report.unknown)
