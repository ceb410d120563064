"""The operators' dashboard under /admin/: ``access`` (logging in, the
session, CSRF, the headers and the guard in front of every /admin address),
``pages`` (overview, sends and their live view, settings), ``readers`` (the
list, one reader and the operator's actions, import and export) and
``charts`` (SVG charts drawn on the server). ``static/live.js`` is its one
script: the live view of a running send, which the page does without."""

from __future__ import annotations

from flask import Flask

from newsletter.web.admin import access, pages, readers  # noqa: F401  (their views join the blueprint)


def install(app: Flask) -> None:
    """Add the dashboard to ``app`` (whose state is already in place)."""
    access.install(app)
    app.register_blueprint(access.blueprint)
