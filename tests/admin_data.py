"""What the dashboard tests share: an operator, logging in through a form,
and a list with a few days of history, two sends and SES feedback."""

from __future__ import annotations

import contextlib
import functools
import datetime as dt
import re
from unittest import mock
from dataclasses import dataclass

from newsletter.operators.admins import add_admin
from newsletter.operators.passwords import hash_password
from newsletter.core.models import DeliveryStatus, Edition, EditionKind, Feedback, FeedbackKind, SubscriberStatus
from newsletter.store import Ledger
from newsletter.store.ledger import LedgerRow

NAME = "alice"
# Passes the password rules (newsletter.operators.passwords).
PASSWORD = "Vt7#qLm2!xRw9-dash"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the first dashboard form in ``html``."""
    found = CSRF_FIELD.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def log_in(client, name: str = NAME, password: str = PASSWORD, **kwargs):
    """Log ``client`` (a Flask test client keeping cookies) in through the
    login form; return the POST's response."""
    token = csrf_of(client.get("/admin/login", **kwargs).get_data(as_text=True))
    return client.post("/admin/login", data={"name": name, "password": password, "csrf_token": token}, **kwargs)


@contextlib.contextmanager
def clock(store, moment: dt.datetime):
    """Everything ``store`` writes meanwhile is stamped ``moment``."""
    store.clock = lambda: moment
    try:
        yield
    finally:
        del store.clock


def send(store, edition: Edition, outcomes: dict[int, DeliveryStatus], moment: dt.datetime,
         release: bool = True) -> None:
    """Write the ledger of a run of ``edition`` at ``moment``: its readers'
    ``outcomes`` (a pending one stays pending); with ``release``, the run
    ends (its lock is given up)."""
    ledger = Ledger(store, edition)
    with clock(store, moment):
        assert ledger.acquire("test-run", lambda owner: False) is None
        ledger.mark_pending(outcomes)
        ledger.record(LedgerRow(i, status, f"m-{i}" if status == DeliveryStatus.SENT else None,
                                None if status == DeliveryStatus.SENT else "refused")
                      for i, status in outcomes.items() if status != DeliveryStatus.PENDING)
        if release:
            ledger.release("test-run")


@dataclass(frozen=True)
class History:
    """What :func:`history` wrote: the days (UTC) and the readers."""

    today: dt.date
    readers: dict[str, int]  # address -> id
    daily: Edition
    weekly: Edition


def history(store) -> History:
    """Three days (UTC) of a small list, ending now: two days ago three
    readers join; yesterday two more join, one of the first leaves by their
    own link, and the daily edition of yesterday goes to the four active
    readers (one refused); today SES reports a permanent bounce and a
    complaint about that edition (suppressing both addresses), one more
    reader joins, and the weekly edition of yesterday goes to one reader."""
    now = dt.datetime.now(dt.timezone.utc)
    two_days, one_day, today = now - dt.timedelta(days=2), now - dt.timedelta(days=1), now - dt.timedelta(seconds=2)
    readers: dict[str, int] = {}

    def add(address: str, name: str | None = None) -> int:
        readers[address] = store.add(address, name)[0].id
        return readers[address]

    with clock(store, two_days):
        add("ada@example.com", "Ada Lovelace")
        add("bob@example.org", "Bob")
        add("carol@example.net")
    with clock(store, one_day):
        add("dave@example.com", "Dave")
        add("erin@example.com", "Erin")
        store.change_status(readers["carol@example.net"], SubscriberStatus.UNSUBSCRIBED, source="web",
                            reason="unsubscribed by the reader")
    daily = Edition(one_day.date())
    sent, failed = DeliveryStatus.SENT, DeliveryStatus.FAILED
    send(store, daily, {readers["ada@example.com"]: sent, readers["bob@example.org"]: sent,
                        readers["dave@example.com"]: sent, readers["erin@example.com"]: failed},
         one_day + dt.timedelta(seconds=1))
    with clock(store, today):
        store.apply_feedback("sns-bounce", [Feedback(FeedbackKind.BOUNCE, "dave@example.com", daily.key, "Permanent",
                                                     "General", "550 no such user", at=today)])
        store.apply_feedback("sns-complaint", [Feedback(FeedbackKind.COMPLAINT, "bob@example.org", daily.key,
                                                        detail="abuse", at=today)])
        add("frank@example.com", "Frank")
    weekly = Edition(one_day.date(), EditionKind.WEEKLY)
    send(store, weekly, {readers["ada@example.com"]: DeliveryStatus.SENT}, today + dt.timedelta(seconds=1))
    return History(now.date(), readers, daily, weekly)


@functools.lru_cache
def _hash_of(password: str) -> str:
    """``password``'s Argon2id hash, made once per worker: a hash takes 0.1 s
    (a login's check of it as long), and most tests begin with an operator."""
    return hash_password(password)


def operator(store, name: str = NAME, password: str = PASSWORD):
    """Add the operator ``name`` (as ``add_admin`` does: the name and the
    password checked, the hash stored) and return them."""
    with mock.patch("newsletter.operators.admins.hash_password", _hash_of):
        return add_admin(store, name, password)
