"""Who may see the dashboard: the login page, the session, CSRF and the
headers of every /admin page.

Every request under /admin goes through :func:`guard` first: the whole
dashboard answers 404 while there is no operator; without a live session
any /admin address (static files included) redirects to the login page;
and every POST needs the form's CSRF token (Flask-WTF), checked only once
the session is known, so a POST without a session changes nothing either.

The session cookie (Flask's, signed with the secret key) carries a random
token; the database keeps its SHA-256 (see ``newsletter.operators.admins``), so
logging out, a new password and inactivity end it on the server. The
cookie is ``HttpOnly``, ``SameSite=Lax``, limited to /admin, and ``Secure``
whenever the public address is https.
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Blueprint, Flask, Response, g, redirect, request, session
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf

from newsletter.operators.admins import log_in, log_out, session_admin
from newsletter.core.models import Admin
from newsletter.operators.passwords import MAX_PASSWORD_CHARS, dummy_hash
from newsletter.core.text import strip_controls
from newsletter.web.app import page, state

blueprint = Blueprint("admin", __name__, url_prefix="/admin", static_folder="static",
                      static_url_path="/static")
csrf = CSRFProtect()

PREFIX = "/admin"
LOGIN = "/admin/login"
# The dashboard's own policy: its script and the JSON it polls come from
# this site only; nothing may frame it.
ADMIN_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
        "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    # Same-site requests keep their Referer: Flask-WTF checks it on HTTPS.
    "Referrer-Policy": "same-origin",
}
# What an import may upload (and its preview send back for confirmation).
MAX_IMPORT_BYTES = 20 * 1024 * 1024
IMPORT_ENDPOINTS = ("admin.import_preview", "admin.import_confirm")


def under_admin(path: str) -> bool:
    """Whether ``path`` is the dashboard's."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def install(app: Flask) -> None:
    """Give ``app`` the dashboard's session, CSRF protection, guard and headers."""
    settings = state_of(app).settings
    app.secret_key = settings.secret_key
    app.config.update(
        SECRET_KEY_FALLBACKS=list(settings.secret_key_fallbacks),
        SESSION_COOKIE_NAME="newsletter_admin",
        SESSION_COOKIE_PATH=PREFIX,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_https,
        # Checked by the guard on the dashboard's forms only: readers' forms
        # carry signed tokens instead, and RFC 8058 one-click POSTs no token.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,  # a token lives as long as its session
    )
    csrf.init_app(app)
    app.before_request(guard)
    app.after_request(admin_headers)
    app.register_error_handler(CSRFError, csrf_failed)


def state_of(app: Flask):
    """The newsletter's state of ``app`` (outside a request)."""
    return app.extensions["newsletter"]


def current_admin() -> Admin:
    """The operator of the current request (the guard found them)."""
    return g.admin


def guard() -> Response | None:
    """Let a request under /admin through only as described above."""
    if not under_admin(request.path):
        return None
    app = state()
    if not app.store.has_admins():
        return page("web/not_found.html", 404)
    if request.endpoint in IMPORT_ENDPOINTS:
        request.max_content_length = MAX_IMPORT_BYTES * 2  # the confirmation carries it base64-encoded
        request.max_form_memory_size = MAX_IMPORT_BYTES * 2
    if request.endpoint in ("admin.login_form", "admin.login"):
        if request.method == "POST":
            csrf.protect()
        return None
    admin = session_admin(app.store, session.get("token", ""), app.settings.admin_session_idle)
    if admin is None:
        session.pop("token", None)
        wanted = request.full_path.rstrip("?") if request.method == "GET" else PREFIX + "/"
        return redirect(f"{LOGIN}?next={quote(wanted, safe='/')}", 303)
    g.admin = admin
    if request.method == "POST":
        csrf.protect()
    return None


def admin_headers(response: Response) -> Response:
    """The dashboard's headers on every answer under /admin."""
    if under_admin(request.path):
        response.headers.update(ADMIN_HEADERS)
    return response


def csrf_failed(error: CSRFError) -> Response:
    """A dashboard form without its token, or with a wrong or stale one:
    nothing was done."""
    return admin_page("admin/error.html", 400, heading="The form was refused", section="",
                      message="It did not carry this session's security token (it may be from before you last logged "
                              "in, or from another site). Nothing was changed: go back, reload the page and try again.")


def admin_page(template: str, status: int = 200, **context) -> Response:
    """Render a dashboard page: with the operator, the CSRF token for its
    forms, and the page's name for the navigation."""
    return page(template, status, admin=g.get("admin"), csrf_token=generate_csrf(), **context)


def local_next(value: str | None) -> str:
    """Where to go after logging in: ``value`` when it is a dashboard path
    on this site, else the overview. No control character (a CR or LF
    cannot go into a header; browsers drop a tab) and no backslash."""
    if value and under_admin(value) and not value.startswith("//") and "\\" not in value and value.isprintable():
        return value
    return PREFIX + "/"


# --------------------------------------------------------------------------
# logging in and out


def login_page(status: int = 200, error: str = "", notice: str = "") -> Response:
    return admin_page("admin/login.html", status, heading="Log in", error=error, notice=notice,
                      next=local_next(request.values.get("next")))


@blueprint.get("/login")
def login_form() -> Response:
    dummy_hash()  # made now, so no login attempt waits for it
    app = state()
    if session_admin(app.store, session.get("token", ""), app.settings.admin_session_idle) is not None:
        return redirect(local_next(request.args.get("next")), 303)
    return login_page(notice="You are logged out." if request.args.get("out") else "")


@blueprint.post("/login")
def login() -> Response:
    """Check the name and password within the limits. The answer to an
    unknown name and to a wrong password is the same page, status and
    work; a new session (and session cookie) only on success."""
    app = state()
    name = strip_controls(request.form.get("name", "")[:100])[0]  # no name holds one; PostgreSQL cannot hold NUL
    password = request.form.get("password", "")[:MAX_PASSWORD_CHARS + 1]
    attempt = log_in(app.store, name, password, request.remote_addr or "unknown", app.settings.admin_session_idle)
    if attempt.outcome == "throttled":
        return login_page(429, error="Too many failed attempts from your address. Wait a quarter of an hour, "
                                     "then try again.")
    if attempt.outcome == "failed":
        return login_page(401, error="The name or the password is wrong.")
    old = session.get("token")
    if old:
        log_out(app.store, old)
    session.clear()  # a new session: nothing from before the login carries over (the CSRF token neither)
    session["token"] = attempt.token
    return redirect(local_next(request.form.get("next")), 303)


@blueprint.post("/logout")
def logout() -> Response:
    log_out(state().store, session.get("token", ""))
    session.clear()
    return redirect(f"{LOGIN}?out=1", 303)
