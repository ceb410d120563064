"""The local preview of an issue while templates are being edited
(``newsletter preview``): the email at two widths, its text part and its
size against Gmail's clip, rendered again when the batch or a template
changes. Shown as no one's (the sign-up page in place of a reader's links),
or as one reader's own copy (``--as``): their picks, ranked as the send
ranks them and recorded nowhere, and their signed links."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from flask import Flask, Response

from newsletter.papers.batches import load_batch
from newsletter.core.config import Settings
from newsletter.core.errors import NewsletterError
from newsletter.core.models import Batch, Issue, Subscriber
from newsletter.issue.render import (
    GMAIL_CLIP_BYTES,
    HTML_LIMIT_BYTES,
    PACKAGE_TEMPLATES,
    encoded_bytes,
    render_for_readers,
    render_issue,
    render_template,
    template_environment,
)
from newsletter.readers.tokens import Signer
from newsletter.sending.personalize import Recipient, reader_copy, reader_subject
from newsletter.sending.single import own_copy
from newsletter.store import Store
from newsletter.web.app import App, add_security_headers


@dataclass(frozen=True)
class Shown:
    """What the preview shows: ``issue``, and its email's ``html`` and
    ``text`` as ``recipient`` reads them (None: as no one does, the sign-up
    page in place of a reader's links)."""

    issue: Issue
    html: str
    text: str
    recipient: Recipient | None = None


class PreviewSource:
    """Renders a batch with ``show`` and renders it again when the batch or
    a template file changes (compared by modification time and size), or
    what ``watch`` returns does (a reader's profile). ``load``, when given,
    makes the batch instead of reading ``batch_path`` (a weekly edition,
    from the store)."""

    def __init__(self, batch_path: Path | None, settings: Settings, show: Callable[[Batch], Shown],
                 date: dt.date | None = None, load: Callable[[], Batch] | None = None,
                 watch: Callable[[], object] = lambda: None):
        self.batch_path = Path(batch_path) if batch_path else None
        self.settings = settings
        self.show = show
        self.date = date
        self.load = load or (lambda: load_batch(self.batch_path, date=self.date))
        self.watch = watch
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._result: Shown | NewsletterError | None = None

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
        return tuple(stamp), self.watch()

    def get(self) -> Shown | NewsletterError:
        """Return what is shown now, or the error that prevents rendering it."""
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
                    self._result = self.show(self.load())
                except NewsletterError as exc:
                    self._result = exc
                self._stamp = stamp
            return self._result


def create_preview_app(batch_path: Path | None, settings: Settings, date: dt.date | None = None,
                       load: Callable[[], Batch] | None = None, label: str = "",
                       reader: Subscriber | None = None, store: Store | None = None) -> Flask:
    """Return a WSGI app previewing ``batch_path`` (or the batch ``load``
    makes, called ``label``): ``/`` (subject, sizes, the email at two
    widths, the text part), ``/email.html`` and ``/web.html``.

    With ``reader`` (a subscriber of ``store``), the email is their own
    copy, as the send renders it for readers: their picks (ranked again
    when their profile changes; recorded nowhere) and their links, signed
    with the configured key; the page says whose it is and its size. Raises
    :class:`ConfigError` then when the secret key is missing or weak."""
    app = App(__name__)
    app.after_request(add_security_headers)
    if reader is None:
        def show(batch: Batch) -> Shown:
            issue = render_issue(batch, settings)
            # The sign-up page, a page that exists, in place of a reader's own links.
            return Shown(issue, *issue.personalized(settings.signup_url))

        source = PreviewSource(batch_path, settings, show, date, load)
    else:
        signer = Signer.from_settings(settings)

        def show(batch: Batch) -> Shown:
            issue = render_for_readers(batch, settings, signer)
            recipient = own_copy(settings, store, signer, issue, reader)
            return Shown(issue, *reader_copy(issue, recipient), recipient)

        source = PreviewSource(batch_path, settings, show, date, load, watch=lambda: store.profile(reader.id))

    def page(shown: Shown | None, error: str | None, status: int = 200) -> Response:
        env = template_environment(settings.templates_dir)
        if shown is None:
            measured, measured_text = "", ""
        elif shown.recipient is None:  # no one's copy: as rendered, the size the budget holds
            measured, measured_text = shown.issue.html, shown.issue.text
        else:  # a reader's copy: as they get it
            measured, measured_text = shown.html, shown.text
        body = render_template(env, "web/preview.html", {
            "name": settings.name,
            "batch_path": label or str(batch_path),
            "issue": shown.issue if shown else None,
            "subject": (reader_subject(shown.issue, shown.recipient) if shown and shown.recipient
                        else shown.issue.subject if shown else ""),
            "reader": reader,
            "recipient": shown.recipient if shown else None,
            "text": shown.text if shown else "",
            "html_bytes": len(measured.encode("utf-8")),
            "text_bytes": len(measured_text.encode("utf-8")),
            "encoded_bytes": encoded_bytes(measured),
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
        html = result.html.replace("<head>", '<head><base target="_blank">', 1)
        return Response(html, mimetype="text/html")

    @app.get("/web.html")
    def web_html() -> Response:
        result = source.get()
        if isinstance(result, NewsletterError):
            return Response(str(result), status=500, mimetype="text/plain")
        return Response(result.issue.web_html, mimetype="text/html")

    return app
