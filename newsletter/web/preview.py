"""The local preview of an issue while templates are being edited
(``newsletter preview``): the email at two widths, its text part and its
size against Gmail's clip, rendered again when the batch or a template
changes."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Callable

from flask import Flask, Response

from newsletter.papers.batches import load_batch
from newsletter.core.config import Settings
from newsletter.core.errors import NewsletterError
from newsletter.core.models import Batch, Issue
from newsletter.issue.render import (
    GMAIL_CLIP_BYTES,
    HTML_LIMIT_BYTES,
    PACKAGE_TEMPLATES,
    encoded_bytes,
    render_issue,
    render_template,
    template_environment,
)
from newsletter.web.app import App, add_security_headers


class PreviewSource:
    """Renders a batch and renders it again when the batch or a template
    file changes (compared by modification time and size). ``load``, when
    given, makes the batch instead of reading ``batch_path`` (a weekly
    edition, from the store)."""

    def __init__(self, batch_path: Path | None, settings: Settings, date: dt.date | None = None,
                 load: Callable[[], Batch] | None = None):
        self.batch_path = Path(batch_path) if batch_path else None
        self.settings = settings
        self.date = date
        self.load = load or (lambda: load_batch(self.batch_path, date=self.date))
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._result: Issue | NewsletterError | None = None

    def _current_stamp(self) -> tuple:
        files = [self.batch_path] if self.batch_path else []
        for folder in (Path(self.settings.templates_dir), PACKAGE_TEMPLATES):
            if folder.is_dir():
                files.extend(sorted(p for p in folder.rglob("*") if p.is_file()))
        stamp = []
        for path in files:
            try:
                info = path.stat()
                stamp.append((str(path), info.st_mtime_ns, info.st_size))
            except OSError:
                stamp.append((str(path), None, None))
        return tuple(stamp)

    def get(self) -> Issue | NewsletterError:
        """Return the current issue, or the error that prevents rendering it."""
        with self._lock:
            stamp = self._current_stamp()
            if stamp != self._stamp:
                # Jinja2's auto_reload only watches the file a template was
                # loaded from, and the cached environment fixes its search
                # path when created: without a fresh one, an override copied
                # into the templates folder (or the folder itself, created
                # later) would be ignored until a restart.
                template_environment.cache_clear()
                try:
                    self._result = render_issue(self.load(), self.settings)
                except NewsletterError as exc:
                    self._result = exc
                self._stamp = stamp
            return self._result


def create_preview_app(batch_path: Path | None, settings: Settings, date: dt.date | None = None,
                       load: Callable[[], Batch] | None = None, label: str = "") -> Flask:
    """Return a WSGI app previewing ``batch_path`` (or the batch ``load``
    makes, called ``label``): ``/`` (subject, sizes, the email at two
    widths, the text part), ``/email.html`` and ``/web.html``."""
    app = App(__name__)
    app.after_request(add_security_headers)
    source = PreviewSource(batch_path, settings, date, load)
    placeholder = settings.signup_url  # a page that exists, in place of a reader's own link

    def page(issue: Issue | None, error: str | None, status: int = 200) -> Response:
        env = template_environment(settings.templates_dir)
        body = render_template(env, "web/preview.html", {
            "name": settings.name,
            "batch_path": label or str(batch_path),
            "issue": issue,
            "text": issue.personalized(placeholder)[1] if issue else "",
            "encoded_bytes": encoded_bytes(issue.html) if issue else 0,
            "error": error,
            "clip_bytes": GMAIL_CLIP_BYTES,
            "limit_bytes": HTML_LIMIT_BYTES,
        })
        return Response(body, status=status, mimetype="text/html")

    @app.get("/")
    def index() -> Response:
        result = source.get()
        if isinstance(result, NewsletterError):
            return page(None, str(result), status=500)
        return page(result, None)

    @app.get("/email.html")
    def email_html() -> Response:
        result = source.get()
        if isinstance(result, NewsletterError):
            return Response(str(result), status=500, mimetype="text/plain")
        # Links clicked in the preview frames open in a new tab, not inside the frame.
        html = result.personalized(placeholder)[0].replace("<head>", '<head><base target="_blank">', 1)
        return Response(html, mimetype="text/html")

    @app.get("/web.html")
    def web_html() -> Response:
        result = source.get()
        if isinstance(result, NewsletterError):
            return Response(str(result), status=500, mimetype="text/plain")
        return Response(result.web_html, mimetype="text/html")

    return app
