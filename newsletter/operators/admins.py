"""The dashboard's operators: their accounts, logging in, and sessions.

An operator's name is 1 to 24 characters: lower-case letters, digits, ``.``,
``_`` and ``-`` (it goes into each reader's history as ``admin:<name>``).
Passwords are checked and hashed by ``newsletter.operators.passwords``.

Logging in is limited by a client's own failures: at most
:data:`PER_NAME_AND_CLIENT` attempts that did not succeed for one name and
:data:`PER_CLIENT` in all from one client address within
:data:`LOGIN_WINDOW`. Others' failures never shut a name, they slow it
down (:func:`login_delay`): each guess at a name under attack waits a few
seconds, and its operator still logs in. Both are counted in the database
(so across processes and parallel requests). An unknown name costs the same
work as a wrong password (a check against a dummy hash), and gets the same
answer.

A session is a random token: its cookie carries it, the database keeps its
SHA-256. It ends when the operator logs out, when their password changes or
their account is removed, and after a period without use.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from time import sleep

from newsletter.core.errors import AdminError
from newsletter.core.models import Admin
from newsletter.operators.passwords import check_password, dummy_hash, hash_password, needs_rehash, verify_password
from newsletter.store import Store

NAME_RULE = re.compile(r"[a-z0-9][a-z0-9._-]{0,23}")
LOGIN_WINDOW = dt.timedelta(minutes=15)
PER_NAME_AND_CLIENT = 5
PER_CLIENT = 20
# The wait before a name's password is checked, in seconds: after one
# recent attempt for that name that did not succeed, doubling with each
# more, up to the last.
FIRST_DELAY = 0.25
MAX_DELAY = 4.0


def admin_name(name: str) -> str:
    """Return ``name`` as operators' names are kept (lower-case). Raises
    :class:`AdminError` when it is not 1 to 24 letters, digits, ``.``,
    ``_`` or ``-``, starting with a letter or digit."""
    key = name.strip().lower()
    if not NAME_RULE.fullmatch(key):
        raise AdminError(f"{name.strip()!r} is not a name for an operator: use 1 to 24 letters, digits, '.', '_'"
                         " or '-', starting with a letter or digit")
    return key


def add_admin(store: Store, name: str, password: str) -> Admin:
    """Add the operator ``name`` with ``password`` and return them. Raises
    :class:`AdminError` for a malformed or taken name and
    :class:`InvalidPassword` for a weak password."""
    key = admin_name(name)
    check_password(password, key)
    if not store.add_admin(key, hash_password(password)):
        raise AdminError(f"there is already an operator called {key!r}")
    added = store.get_admin(key)
    assert added is not None
    return added


def change_password(store: Store, name: str, password: str) -> None:
    """Give ``name`` a new password and end every session of theirs. Raises
    :class:`AdminError` for an unknown operator and :class:`InvalidPassword`
    for a weak password."""
    key = admin_name(name)
    if store.get_admin(key) is None:
        raise AdminError(f"there is no operator called {key!r}")
    check_password(password, key)
    store.set_admin_password(key, hash_password(password))


def remove_admin(store: Store, name: str) -> None:
    """Remove ``name`` and end their sessions. Raises :class:`AdminError`
    when there is no such operator."""
    key = admin_name(name)
    if not store.remove_admin(key):
        raise AdminError(f"there is no operator called {key!r}")


def token_digest(token: str) -> str:
    """What the database keeps of a session token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Login:
    """What a login attempt came to: ``outcome`` is "ok" (with the
    operator and their new session's ``token``), "failed" (an unknown name
    or a wrong password: never told apart) or "throttled" (the client
    reached a limit with its own failures; the password was not checked)."""

    outcome: str
    admin: Admin | None = None
    token: str = ""


def login_delay(failures: int) -> float:
    """Return how many seconds an attempt for a name waits before its
    password is checked, after ``failures`` attempts for that name (from
    any client) that did not succeed within :data:`LOGIN_WINDOW`: none after
    none, then :data:`FIRST_DELAY` doubling with each one more, at most
    :data:`MAX_DELAY`."""
    if failures <= 0:
        return 0.0
    return min(FIRST_DELAY * 2 ** min(failures - 1, 16), MAX_DELAY)


def log_in(store: Store, name: str, password: str, client: str, idle: dt.timedelta) -> Login:
    """Check ``name`` and ``password`` from the client address ``client``,
    within the login limits and after the name's delay, and start a session
    when they match (sessions idle for longer than ``idle`` are dropped
    meanwhile). Returns a :class:`Login`. A hash made with older parameters
    is replaced by one with today's."""
    key = name.strip().lower()
    begun = store.begin_login(key, client, window=LOGIN_WINDOW, per_name_and_client=PER_NAME_AND_CLIENT,
                              per_client=PER_CLIENT)
    if begun is None:
        return Login("throttled")
    attempt_id, failures = begun
    # Every attempt for a name others failed waits, the right password too:
    # a lock-out would let anyone shut the dashboard; a wait of seconds
    # costs a guesser far more than it costs the operator.
    delay = login_delay(failures)
    if delay:
        sleep(delay)
    admin = store.get_admin(key) if NAME_RULE.fullmatch(key) else None
    # The same work whether the name exists or not: a hash is checked either way.
    matches = verify_password(admin.password_hash if admin else dummy_hash(), password)
    succeeded = matches and admin is not None
    store.end_login(attempt_id, succeeded)
    if not succeeded:
        return Login("failed")
    if needs_rehash(admin.password_hash):
        store.set_admin_password(admin.name, hash_password(password), end_sessions=False)
    token = secrets.token_urlsafe(32)
    store.start_session(admin.id, token_digest(token), client, idle)
    return Login("ok", admin, token)


def session_admin(store: Store, token: str, idle: dt.timedelta) -> Admin | None:
    """The operator whose session ``token`` is, or None when it is not a
    session, it ended, or it was idle for longer than ``idle``."""
    if not token or len(token) > 100:
        return None
    return store.session_admin(token_digest(token), idle)


def log_out(store: Store, token: str) -> None:
    """End the session ``token`` (nothing when it is not one)."""
    if token:
        store.end_session(token_digest(token))
