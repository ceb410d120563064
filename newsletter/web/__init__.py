"""The web layer (Flask). Thin: each view loads, renders and returns.

``create_app`` is the public web app, one blueprint per area:
``unsubscribe`` (RFC 8058 one-click), ``preferences`` (a reader's
interests and votes), ``feedback`` (the 👍/👎 links of emails), ``issues``
(past issues and their feed), ``papers`` (the searchable paper archive),
``signup`` (confirmed sign-up), ``sns`` (SES notifications) and
``health``, and the operators' dashboard under /admin (``admin``: off until
an operator exists); any WSGI server can run it. ``preview`` serves the local preview
of an issue while templates are being edited; ``server`` runs an app under
waitress.
"""

from __future__ import annotations

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

from newsletter.readers.actions import ReaderActions
from newsletter.core.config import Settings, load_settings
from newsletter.feedback.sns import SnsVerifier
from newsletter.issue.render import template_environment
from newsletter.sending.senders import create_sender
from newsletter.readers.signup import confirmation_sender
from newsletter.store import Store, open_store
from newsletter.readers.tokens import Signer
from newsletter.web import admin, feedback, health, issues, papers, preferences, signup, sns, unsubscribe
from newsletter.web.app import (
    SECURITY_HEADERS,
    App,
    AppState,
    add_security_headers,
    mask_email,
    page,
)
from newsletter.web.preview import create_preview_app
from newsletter.web.server import run_server

__all__ = ["SECURITY_HEADERS", "create_app", "create_preview_app", "mask_email", "run_server"]


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

    Readers' actions go through :class:`ReaderActions` (recorded first, then
    applied; see ``newsletter.readers.actions``), kept with the rest of the app's
    state in ``app.extensions["newsletter"]``. With ``background`` (the
    default) its worker thread runs, applying what waited for the database,
    sending sign-up confirmations and fetching seed papers from arXiv;
    without it, call ``app.extensions["newsletter"].actions.run_pending()``.
    """
    settings = settings or load_settings()
    signer = Signer.from_settings(settings)
    store = store or open_store(settings.database_url)
    sender = sender or create_sender(settings)
    actions = ReaderActions(store, confirmation_sender(settings, signer, sender), settings.arxiv_api_url)
    app = App(__name__)
    app.extensions["newsletter"] = AppState(
        settings=settings, store=store, signer=signer, actions=actions,
        verifier=sns_verifier or SnsVerifier(settings.sns_topic_arns),
        templates=template_environment(settings.templates_dir),
    )
    if settings.proxy_count:
        # The client is the entry of X-Forwarded-For that the outermost of our
        # proxies appended, under any WSGI server; under `newsletter serve`
        # waitress has taken the same one already (``server.proxy_adjustments``).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_count)
    app.config["MAX_CONTENT_LENGTH"] = 512 * 1024  # SNS notifications can be 256 KB
    app.after_request(add_security_headers)
    for module in (unsubscribe, preferences, feedback, issues, papers, signup, sns, health):
        app.register_blueprint(module.blueprint)
    admin.install(app)

    @app.errorhandler(404)
    def not_found(_error) -> Response:
        return page("web/not_found.html", 404)

    @app.errorhandler(405)
    def not_allowed(_error) -> Response:
        return Response("Method not allowed\n", status=405, mimetype="text/plain")

    @app.errorhandler(413)
    def too_large(_error) -> Response:
        return Response("Request too large\n", status=413, mimetype="text/plain")

    if background:
        actions.start()
    return app
