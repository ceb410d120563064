"""``newsletter serve``: the web app under waitress."""

from __future__ import annotations

import click

from newsletter.cli import common


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for all).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int) -> None:
    """Run the web app: unsubscribe pages (with RFC 8058 one-click), readers' preferences pages and feedback links,
    sign-up, past issues, their Atom feed and /healthz. Put it behind an HTTPS
    proxy."""
    from newsletter.readers.tokens import Signer
    from newsletter.web import create_app

    settings = common.settings_of(ctx)
    Signer.from_settings(settings)  # the secret key is checked before the database is opened
    app = create_app(settings, common.store_of(ctx))  # never creates one: a missing database is an error
    common.serve_app(app, host, port, "Serving the web app")
