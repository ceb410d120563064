"""What every page of the web app shares: the app object and its state, the
security headers, page rendering, and how a failed request is logged."""

from __future__ import annotations

from dataclasses import dataclass

import jinja2
from flask import Flask, Response, current_app, request

from newsletter.actions import ReaderActions
from newsletter.config import Settings
from newsletter.errors import RateLimited
from newsletter.feedback.sns import SnsVerifier
from newsletter.render import render_template
from newsletter.store import Store
from newsletter.tokens import Signer

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
        "frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def add_security_headers(response: Response) -> Response:
    """Give ``response`` the security headers it does not set itself."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class App(Flask):
    """Flask, logging a failed request by its route (``/u/<token>``), never
    by its path: paths carry the readers' signed tokens."""

    def log_exception(self, exc_info) -> None:
        route = request.url_rule.rule if request.url_rule is not None else "(no route)"
        self.logger.error("Exception on %s [%s]", route, request.method, exc_info=exc_info)


@dataclass(frozen=True)
class AppState:
    """What the views of one app work with (``app.extensions["newsletter"]``)."""

    settings: Settings
    store: Store
    signer: Signer
    actions: ReaderActions
    verifier: SnsVerifier
    templates: jinja2.Environment


def state() -> AppState:
    """The state of the app handling the current request."""
    return current_app.extensions["newsletter"]


def page(template: str, status: int = 200, mimetype: str = "text/html", **context) -> Response:
    """Render ``template`` (with the newsletter's name) as a response."""
    app = state()
    body = render_template(app.templates, template, {"name": app.settings.name, **context})
    return Response(body, status=status, mimetype=mimetype)


def invalid_link() -> Response:
    """The page (400) for any link to a reader's page that is forged,
    tampered with, truncated, made for another purpose, or for an unknown
    reader: the same page whatever the link and the reason, so it tells
    nothing about who is subscribed."""
    return page("web/unsubscribe.html", 400, heading="Invalid link", state="invalid", masked="", action="",
                preferences="")


def client_address() -> str:
    """The address of the client making the request (the real one behind
    the configured proxies), as the reader-action limits count it."""
    return request.remote_addr or "unknown"


def slow_down(error: RateLimited) -> Response:
    """The page (429, with ``Retry-After``) for a reader's change beyond the
    limits (see ``newsletter.actions``): it says nothing was saved this
    time and when to try again."""
    minutes = -(-error.retry_after // 60)
    response = page("web/slow_down.html", 429, heading="Too many changes",
                    wait="a minute" if minutes <= 1 else f"{minutes} minutes")
    response.headers["Retry-After"] = str(error.retry_after)
    return response


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
