"""The web layer (Flask). Thin: each view loads, renders and returns.

``create_app`` is the public web app (unsubscribe pages with RFC 8058
one-click, past issues, their feed, a health check); any WSGI server can run
it. ``create_preview_app`` serves the local preview of an issue while
templates are being edited.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path
from typing import Callable

from flask import Flask, Response, redirect, request
from werkzeug.middleware.proxy_fix import ProxyFix

from newsletter.config import Settings, load_settings
from newsletter.errors import InvalidEmail, NewsletterError, SnsError, SnsMalformed, StoreError, TokenError
from newsletter.feedback import handle_sns
from newsletter.models import Issue, Subscriber
from newsletter.papers import load_batch
from newsletter.render import (
    GMAIL_CLIP_BYTES,
    HTML_LIMIT_BYTES,
    PACKAGE_TEMPLATES,
    render_issue,
    render_template,
    template_environment,
)
from newsletter.senders import create_sender
from newsletter.actions import ReaderActions
from newsletter.signup import CONFIRM_MAX_AGE, confirmation_sender, request_signup
from newsletter.sns import SnsVerifier, parse_envelope
from newsletter.store import ACTIVE, UNSUBSCRIBED, Store, open_store
from newsletter.tokens import Signer

log = logging.getLogger("newsletter.web")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
        "frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class _App(Flask):
    """Flask, logging a failed request by its route (``/u/<token>``), never
    by its path: paths carry the readers' signed tokens."""

    def log_exception(self, exc_info) -> None:
        route = request.url_rule.rule if request.url_rule is not None else "(no route)"
        self.logger.error("Exception on %s [%s]", route, request.method, exc_info=exc_info)


def run_server(app: Flask, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve ``app`` with waitress on ``host``:``port`` until Ctrl-C, after
    calling ``announce`` with its address; then stop its reader-action
    worker, if it has one.

    waitress answers some malformed requests itself (400, 413, 431) without
    calling the app; those answers carry the security headers too. What
    waitress cannot cover (TLS, requests it drops) is the reverse proxy's
    part (see the README).
    """
    from waitress import create_server
    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask

    class SecureErrorTask(ErrorTask):
        def execute(self):
            self.response_headers.extend(SECURITY_HEADERS.items())
            super().execute()

    class SecureChannel(HTTPChannel):
        error_task_class = SecureErrorTask

    server = create_server(app, host=host, port=port, threads=8, ident="newsletter")
    server.channel_class = SecureChannel  # used for every connection accepted from now on
    announce(f"http://{host}:{server.effective_port}/")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        actions = app.extensions.get("newsletter.actions")
        if actions is not None:
            actions.stop()


class PreviewSource:
    """Renders a batch and renders it again when the batch or a template
    file changes (compared by modification time and size)."""

    def __init__(self, batch_path: Path, settings: Settings, date: dt.date | None = None):
        self.batch_path = Path(batch_path)
        self.settings = settings
        self.date = date
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._result: Issue | NewsletterError | None = None

    def _current_stamp(self) -> tuple:
        files = [self.batch_path]
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
                    batch = load_batch(self.batch_path, date=self.date)
                    self._result = render_issue(batch, self.settings)
                except NewsletterError as exc:
                    self._result = exc
                self._stamp = stamp
            return self._result


def create_preview_app(batch_path: Path, settings: Settings, date: dt.date | None = None) -> Flask:
    """Return a WSGI app previewing ``batch_path``: ``/`` (subject, sizes, the
    email at two widths, the text part), ``/email.html`` and ``/web.html``."""
    app = _App(__name__)
    app.after_request(_add_security_headers)
    source = PreviewSource(batch_path, settings, date)
    placeholder = settings.signup_url  # a page that exists, in place of a reader's own link

    def page(issue: Issue | None, error: str | None, status: int = 200) -> Response:
        env = template_environment(settings.templates_dir)
        body = render_template(env, "web/preview.html", {
            "name": settings.name,
            "batch_path": str(batch_path),
            "issue": issue,
            "text": issue.personalized(placeholder)[1] if issue else "",
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


def mask_email(address: str) -> str:
    """Return ``address`` partly hidden, e.g. ``a•••e@e•••.com``: enough for
    its owner to recognise it, too little for anyone else to learn it."""
    local, _, domain = address.rpartition("@")
    host, dot, tld = domain.rpartition(".")
    if not dot:  # no top-level part to show: the whole domain is the name
        host, tld = domain, ""
    # A part of one character is hidden entirely: its first would be all of it.
    hidden_local = (local[0] + "•••" + (local[-1] if len(local) > 2 else "")) if len(local) > 1 else "•••"
    hidden_host = (host[0] + "•••") if len(host) > 1 else "•••"
    return f"{hidden_local}@{hidden_host}{dot}{tld}"


def create_app(
    settings: Settings | None = None,
    store: Store | None = None,
    sender=None,
    sns_verifier: SnsVerifier | None = None,
    background: bool = True,
) -> Flask:
    """Return the public web app.

    ``settings`` default to the environment and ``.env``; ``store`` to the
    configured database; ``sender`` (for sign-up confirmations) to the
    configured sender; ``sns_verifier`` to one accepting the configured
    topics from SNS hosts of AWS. Raises :class:`ConfigError` when the secret
    key is missing or weak, and :class:`StoreError` when the database cannot
    be opened.

    Routes: ``GET /u/<token>`` shows an unsubscribe page and changes nothing
    (mail scanners follow links); ``POST /u/<token>`` unsubscribes, accepting
    what RFC 8058 receivers send with no cookie or CSRF token, since the signed
    token is the proof; ``POST /u/<token>/resubscribe`` undoes it; ``/issues/``,
    ``/issues/<YYYY-MM-DD>``, ``/issues/feed.xml``; ``/healthz``; ``/subscribe``
    and ``/confirm/<token>`` (confirmed sign-up; GET changes nothing);
    ``POST /sns`` (SES bounce, complaint and delivery notifications).

    Readers' actions go through :class:`ReaderActions` (recorded first, then
    applied; see ``newsletter.actions``), kept in
    ``app.extensions["newsletter.actions"]``. With ``background`` (the
    default) its worker thread runs, applying what waited for the database
    and sending sign-up confirmations; without it, call its
    ``run_pending()``.
    """
    settings = settings or load_settings()
    signer = Signer.from_settings(settings)
    store = store or open_store(settings.database_url)
    sender = sender or create_sender(settings)
    verifier = sns_verifier or SnsVerifier(settings.sns_topic_arns)
    actions = ReaderActions(store, confirmation_sender(settings, signer, sender))
    app = _App(__name__)
    app.extensions["newsletter.actions"] = actions
    if settings.proxy_count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_count)
    app.config["MAX_CONTENT_LENGTH"] = 512 * 1024  # SNS notifications can be 256 KB
    app.after_request(_add_security_headers)
    env = template_environment(settings.templates_dir)

    def page(template: str, status: int = 200, mimetype: str = "text/html", **context) -> Response:
        body = render_template(env, template, {"name": settings.name, **context})
        return Response(body, status=status, mimetype=mimetype)

    def reader(token: str) -> Subscriber | None:
        # Any bad token and any unknown reference get the same answer, so a
        # response never tells whether someone is subscribed.
        try:
            return store.get(ref=signer.subscriber_ref(token))
        except TokenError:
            return None

    def unsubscribe_page(token: str, subscriber: Subscriber | None, state: str) -> Response:
        if subscriber is None:
            return page("web/unsubscribe.html", 400, heading="Invalid link", state="invalid", masked="", action="")
        headings = {
            "confirm": "Unsubscribe",
            "done": "You are unsubscribed",
            "resubscribed": "You are subscribed again",
            "not-resubscribed": "Not resubscribed",
            "inactive": "No more emails",
        }
        return page(
            "web/unsubscribe.html",
            heading=headings[state],
            state=state,
            masked=mask_email(subscriber.email),
            action=f"/u/{token}",
        )

    @app.get("/u/<token>")
    def unsubscribe_form(token: str) -> Response:
        subscriber = reader(token)
        if subscriber is None:
            return unsubscribe_page(token, None, "invalid")
        status = store.pending_status(subscriber.id) or subscriber.status
        state = {ACTIVE: "confirm", UNSUBSCRIBED: "done"}.get(status, "inactive")
        return unsubscribe_page(token, subscriber, state)

    @app.post("/u/<token>")
    def unsubscribe(token: str) -> Response:
        subscriber = reader(token)
        if subscriber is None:
            return unsubscribe_page(token, None, "invalid")
        one_click = request.form.get("List-Unsubscribe") == "One-Click"
        status = actions.unsubscribe(subscriber, one_click=one_click)
        return unsubscribe_page(token, subscriber, "done" if status == UNSUBSCRIBED else "inactive")

    @app.post("/u/<token>/resubscribe")
    def resubscribe(token: str) -> Response:
        subscriber = reader(token)
        if subscriber is None:
            return unsubscribe_page(token, None, "invalid")
        active = actions.resubscribe(subscriber)
        return unsubscribe_page(token, subscriber, "resubscribed" if active else "not-resubscribed")

    @app.get("/")
    def home() -> Response:
        return redirect("/issues/")

    @app.get("/issues/")
    def issues() -> Response:
        return page("web/issues.html", issues=store.list_issues())

    @app.get("/issues/feed.xml")
    def feed() -> Response:
        latest = store.list_issues(limit=30)
        updated = max((i.updated_at for i in latest), default=None)
        return page(
            "web/feed.xml",
            mimetype="application/atom+xml",
            issues=latest,
            base_url=settings.web_base,
            updated=(updated or dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )

    @app.get("/issues/<day>")
    def issue(day: str) -> Response:
        try:
            date = dt.date.fromisoformat(day)
        except ValueError:
            date = None
        # Only the canonical YYYY-MM-DD address: fromisoformat also accepts
        # other ISO 8601 forms (2025-W11-1, 20250310) of the same day.
        stored = store.get_issue(date) if date and date.isoformat() == day else None
        if stored is None:
            return page("web/not_found.html", 404)
        return Response(stored.web_html, mimetype="text/html")

    @app.get("/subscribe")
    def subscribe_form() -> Response:
        return page("web/subscribe.html", heading="Subscribe", state="form", error="", email="", reader_name="")

    @app.post("/subscribe")
    def subscribe() -> Response:
        address = request.form.get("email", "")[:320]
        reader_name = request.form.get("name", "")[:200]
        if request.form.get("website"):  # the honeypot: only bots fill it in
            return page("web/subscribe.html", heading="Almost there", state="sent")
        try:
            recorded = request_signup(store, address, reader_name, request.remote_addr or "unknown")
        except InvalidEmail:
            return page("web/subscribe.html", 400, heading="Subscribe", state="form",
                        error="Please enter a valid email address.", email=address, reader_name=reader_name)
        log.info("sign-up: %s", "recorded" if recorded else "limit reached: nothing recorded")
        # The same reply whatever happened: it never tells who is on the list.
        return page("web/subscribe.html", heading="Almost there", state="sent")

    def confirmation(token: str) -> tuple[str, str | None] | None:
        try:
            return signer.confirmed(token, CONFIRM_MAX_AGE)
        except TokenError:
            return None

    @app.get("/confirm/<token>")
    def confirm_form(token: str) -> Response:
        found = confirmation(token)
        if found is None:
            return page("web/subscribe.html", 400, heading="Invalid link", state="invalid")
        return page("web/subscribe.html", heading="Confirm your subscription", state="confirm",
                    masked=mask_email(found[0]), action=f"/confirm/{token}")

    @app.post("/confirm/<token>")
    def confirm(token: str) -> Response:
        found = confirmation(token)
        if found is None:
            return page("web/subscribe.html", 400, heading="Invalid link", state="invalid")
        outcome = actions.confirm(*found)
        if outcome == "refused":
            return page("web/subscribe.html", heading="Not subscribed", state="refused")
        return page("web/subscribe.html", heading="You are subscribed", state="subscribed")

    @app.post("/sns")
    def sns() -> Response:
        # Malformed (not JSON, a field of the wrong type...) is a 400;
        # well formed but not trusted (forged, foreign topic, too old) a 403.
        # Either way nothing has changed.
        try:
            outcome = handle_sns(parse_envelope(request.get_data()), verifier, store)
        except SnsMalformed as exc:
            log.warning("refused a malformed SNS message: %s", exc)
            return Response("malformed SNS message\n", status=400, mimetype="text/plain")
        except SnsError as exc:
            log.warning("refused an SNS message: %s", exc)
            return Response("refused\n", status=403, mimetype="text/plain")
        log.info("SNS: %s", outcome)
        return Response("ok\n", mimetype="text/plain")

    @app.get("/healthz")
    def healthz() -> Response:
        try:
            store.ping()
        except StoreError:
            return Response('{"status": "database unreachable"}', status=503, mimetype="application/json")
        return Response('{"status": "ok"}', mimetype="application/json")

    if background:
        actions.start()

    @app.errorhandler(404)
    def not_found(_error) -> Response:
        return page("web/not_found.html", 404)

    @app.errorhandler(405)
    def not_allowed(_error) -> Response:
        return Response("Method not allowed\n", status=405, mimetype="text/plain")

    @app.errorhandler(413)
    def too_large(_error) -> Response:
        return Response("Request too large\n", status=413, mimetype="text/plain")

    return app
