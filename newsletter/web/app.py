"""What every page of the web app shares: the app object and its state, the
security headers, page rendering, how a failed request is logged, how ids
in addresses are read, and where the router's own redirects go."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import jinja2
from flask import Flask, Response, abort, current_app, redirect, request
from werkzeug.routing import BaseConverter, RequestRedirect, ValidationError

from newsletter.readers.actions import ReaderActions
from newsletter.core.config import Settings
from newsletter.core.errors import RateLimited
from newsletter.feedback.sns import SnsVerifier
from newsletter.issue.render import render_template
from newsletter.store import MAX_ID, Store
from newsletter.readers.tokens import Signer

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; "
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


def parse_id(text: str | None) -> int | None:
    """``text`` as a row's id (a reader's): a whole number in ASCII digits
    from 0 to :data:`MAX_ID`, else None. Anything larger is no row's id,
    and the databases cannot compare it with one (SQLite refuses integers
    over 64 bits, PostgreSQL over 32 bits against an integer column)."""
    if not text or len(text) > len(str(MAX_ID)) or not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if number <= MAX_ID else None


class IdConverter(BaseConverter):
    """The ``<id:name>`` part of a route: a row's id (:func:`parse_id`);
    anything else matches no route (404)."""

    regex = r"[0-9]+"
    weight = 50  # as werkzeug's own number converters

    def to_python(self, value: str) -> int:
        number = parse_id(value)
        if number is None:
            raise ValidationError()
        return number

    def to_url(self, value: int) -> str:
        return str(value)


class App(Flask):
    """Flask, logging a failed request by its route (``/u/<token>``), never
    by its path: paths carry the readers' signed tokens; with the ``id``
    converter; and sending the router's redirects to the public address."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.url_map.converters["id"] = IdConverter

    def log_exception(self, exc_info) -> None:
        route = request.url_rule.rule if request.url_rule is not None else "(no route)"
        self.logger.error("Exception on %s [%s]", route, request.method, exc_info=exc_info)

    def raise_routing_exception(self, request):
        """The router redirects an address to its canonical form (a slash
        added, doubled slashes merged) with an absolute URL made from the
        request's Host header, which the client chooses: the redirect goes
        to ``NEWSLETTER_BASE_URL`` instead (the preview, which has no
        settings, redirects to the path alone). Other routing errors as
        Flask raises them."""
        error = request.routing_exception
        if isinstance(error, RequestRedirect):
            target = urlsplit(error.new_url)
            base = self.extensions["newsletter"].settings.web_base if "newsletter" in self.extensions else ""
            abort(redirect(base + target.path + (f"?{target.query}" if target.query else ""), error.code))
        super().raise_routing_exception(request)


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
    limits (see ``newsletter.readers.actions``): it says nothing was saved this
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
