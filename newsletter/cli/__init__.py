"""The ``newsletter`` command. Thin: parse options, call the package, print.

One module per group of commands: ``render`` (fetch, render, preview,
publish, unpublish),
``send``, ``serve``, ``subscribers`` (the list and readers' interests),
``picks`` (readers' personal picks), ``feedback`` (bounces, stats), ``db``
(schema revision, upgrade, backup, restore), ``doctor`` (readiness for a
real send), ``admin`` (the dashboard's operators). Expected
failures arrive as :class:`NewsletterError` and leave as one line on stderr
with the error's exit code (2 for bad input or configuration).
"""

from __future__ import annotations

import click

from newsletter import __version__
from newsletter.cli import admin, db, doctor, feedback, picks, render, send, serve, subscribers
from newsletter.cli.common import ErrorGroup


@click.group(cls=ErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Render the day's trending research papers as a responsive email and
    deliver it to subscribers.

    Settings come from the environment and from a .env file in the current
    folder (see .env.example).
    """
    ctx.obj = None


for command in (render.fetch, render.render, render.preview, render.publish, render.unpublish, send.send, serve.serve, subscribers.subscribers,
                picks.picks, feedback.bounces, feedback.stats, db.db, doctor.doctor, admin.admin):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="newsletter")
