"""Past editions, the published ones only: ``/issues/`` (newest first), ``/issues/<YYYY-MM-DD>`` and
``/issues/<YYYY-MM-DD>/weekly`` (the web versions of the daily and weekly
editions: no personal link in either) and ``/issues/feed.xml`` (Atom, both
kinds)."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, redirect

from newsletter.core.models import EditionKind
from newsletter.web.app import page, state

blueprint = Blueprint("issues", __name__)


@blueprint.get("/")
def home() -> Response:
    return redirect("/issues/")


@blueprint.get("/issues/")
def issues() -> Response:
    return page("web/issues.html", issues=state().store.list_issues(published_only=True))


@blueprint.get("/issues/feed.xml")
def feed() -> Response:
    app = state()
    latest = app.store.list_issues(limit=30, published_only=True)
    updated = max((i.updated_at for i in latest), default=None)
    return page(
        "web/feed.xml",
        mimetype="application/atom+xml",
        issues=latest,
        base_url=app.settings.web_base,
        updated=(updated or dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


@blueprint.get("/issues/<day>")
def issue(day: str) -> Response:
    return _stored(day, EditionKind.DAILY)


@blueprint.get("/issues/<day>/weekly")
def weekly_issue(day: str) -> Response:
    return _stored(day, EditionKind.WEEKLY)


def _stored(day: str, kind: EditionKind) -> Response:
    """The web version of the published edition of ``day`` and ``kind``,
    or the not-found page."""
    try:
        date = dt.date.fromisoformat(day)
    except ValueError:
        date = None
    # Only the canonical YYYY-MM-DD address: fromisoformat also accepts
    # other ISO 8601 forms (2025-W11-1, 20250310) of the same day.
    stored = state().store.get_issue(date, kind, published_only=True) if date and date.isoformat() == day else None
    if stored is None:
        return page("web/not_found.html", 404)
    return Response(stored.web_html, mimetype="text/html")
