"""Reader actions from the web: recorded first, applied at once when the
database allows, else as soon as it is free; never lost.

An unsubscribe is a legal obligation, and it may arrive while a long
operation (an import of a million rows, a migration) holds the database.
So every reader action (unsubscribe, resubscribe, a confirmed sign-up, a
sign-up request: see ``newsletter.signup``) is first recorded in the store's action inbox, which a
long operation never holds, and only then applied: at once, waiting at most
a second for the database, or later by the worker. Until it is applied, an
unsubscribe already counts: the send loop never mails a reader whose
unsubscribe is waiting (``Store.active_ids``).

Sign-up requests are never handled in the request itself: the worker sends
the confirmation emails. So a sign-up does the same work whether or not the
address is on the list (nothing to learn from its timing), and a request
that was accepted is mailed even if the server stops right after answering.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Callable

from newsletter.errors import SendError, StoreBusy
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.store import Store

log = logging.getLogger("newsletter.actions")

# Actions the store applies by itself (a sign-up needs an email sent).
STORE_KINDS = ("unsubscribe", "resubscribe", "confirm")
# A confirmation email that failed is tried again after these many seconds
# (doubling, at most an hour) until its link would have expired.
RETRY_BASE_SECONDS = 30.0
RETRY_CAP_SECONDS = 3600.0
GIVE_UP_AFTER = dt.timedelta(days=7)
PURGE_EVERY_SECONDS = 3600.0


class ReaderActions:
    """Records and applies reader actions on ``store``.

    ``send_confirmation(email, name)`` sends a sign-up's confirmation email
    (raising a :class:`SendError` subclass when it could not); without it,
    sign-up requests wait for a worker that has one.
    """

    def __init__(self, store: Store, send_confirmation: Callable[[str, str | None], None] | None = None):
        self.store = store
        self.send_confirmation = send_confirmation
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- actions

    def unsubscribe(self, subscriber: Subscriber, *, one_click: bool) -> str:
        """Unsubscribe ``subscriber`` (idempotent); return the status they
        have (or will have once it is applied): "unsubscribed", or their
        status when it is neither active nor unsubscribed (bounced,
        complained: left alone)."""
        status = self.store.pending_status(subscriber.id) or subscriber.status
        if status != SubscriberStatus.ACTIVE:
            return status
        payload = {"source": "one-click" if one_click else "web",
                   "reason": "one-click unsubscribe (RFC 8058)" if one_click else "unsubscribed on the web page",
                   "ref": subscriber.ref}
        self._submit("unsubscribe", payload, subscriber_id=subscriber.id)
        return SubscriberStatus.UNSUBSCRIBED

    def resubscribe(self, subscriber: Subscriber) -> bool:
        """Make ``subscriber`` active again if they unsubscribed themself;
        return whether they are (or will be, once it is applied) active."""
        if (self.store.pending_status(subscriber.id) or subscriber.status) == SubscriberStatus.ACTIVE:
            return True
        _found, allowed = self.store.signup_state(subscriber.email)
        if not allowed:
            return False
        if self._submit("resubscribe", {"ref": subscriber.ref}, subscriber_id=subscriber.id) is not False:
            return True
        return self.store.get(ref=subscriber.ref).status == SubscriberStatus.ACTIVE  # made active meanwhile

    def confirm(self, email: str, name: str | None) -> str:
        """Apply a used confirmation link; return "subscribed",
        "resubscribed", "already" or "refused" (the address may not be
        made active from the web: the operator removed it, or it bounced or
        complained since the link was sent). The address's status is
        checked when the confirmation is applied."""
        found, allowed = self.store.signup_state(email)
        if found is not None and found.status == SubscriberStatus.ACTIVE:
            return "already"
        if not allowed:
            return "refused"
        outcome = self._submit("confirm", {"email": email, "name": name}, email=email)
        if outcome is None:  # applied later: say what it will do
            return "subscribed" if found is None else "resubscribed"
        return outcome

    # ---------------------------------------------------------------- applying

    def _submit(self, kind: str, payload: dict, *, subscriber_id: int | None = None, email: str | None = None):
        """Record an action, then try to apply it at once. Returns its
        outcome, or None when it was left for the worker (the database is
        held, or an older action about the same reader is still waiting)."""
        action_id = self.store.record_action(kind, subscriber_id=subscriber_id, email=email, payload=payload,
                                             claim=True)
        if self.store.has_earlier_pending(action_id, subscriber_id=subscriber_id, email=email):
            self.store.release_action(action_id)
            return None
        try:
            outcome = self._apply(kind, payload, quick=True)
        except StoreBusy:
            log.warning("the database is busy: a reader's %s is kept and applied when it is free", kind)
            self.store.release_action(action_id)
            return None
        except BaseException:
            self.store.release_action(action_id)
            raise
        self.store.finish_action(action_id, str(outcome))
        return outcome

    def _apply(self, kind: str, payload: dict, quick: bool = False):
        """Apply one action to the store; returns its outcome."""
        if kind == "unsubscribe":
            _subscriber, changed = self.store.unsubscribe(payload["ref"], source=payload["source"],
                                                          reason=payload["reason"], quick=quick)
            return changed
        if kind == "resubscribe":
            _subscriber, changed = self.store.resubscribe(payload["ref"], source="web", quick=quick)
            return changed
        if kind == "confirm":
            return self.store.confirm_signup(payload["email"], payload.get("name"), quick=quick)
        raise ValueError(f"unknown reader action {kind!r}")

    def apply_pending(self) -> int:
        """Apply every waiting store action (unsubscribes, resubscribes,
        confirmations), oldest first; return how many were applied. Waits
        for the database as long as any writer does."""
        applied = 0
        while True:
            due = self.store.due_actions(STORE_KINDS)
            progress = False
            for action in due:
                # Actions about one reader are applied in the order they came.
                if self.store.has_earlier_pending(action.id, subscriber_id=action.subscriber_id,
                                                  email=action.email_key) or not self.store.claim_action(action.id):
                    continue
                try:
                    outcome = self._apply(action.kind, action.payload)
                except BaseException:
                    self.store.release_action(action.id)
                    raise
                self.store.finish_action(action.id, str(outcome))
                applied += 1
                progress = True
            if not due or not progress:
                return applied

    def send_pending_confirmations(self) -> int:
        """Send the confirmation email of every waiting sign-up request
        whose address may be made active (see ``Store.signup_state``);
        return how many were sent. A failed email is tried again later,
        with a growing delay, until its link would have expired."""
        if self.send_confirmation is None:
            return 0
        sent = 0
        for action in self.store.due_actions(("signup",)):
            if not self.store.claim_action(action.id):
                continue
            email, name = action.payload["email"], action.payload.get("name")
            found, allowed = self.store.signup_state(email)
            if not allowed or (found is not None and found.status == SubscriberStatus.ACTIVE):
                self.store.finish_action(action.id, f"nothing sent: {found.status if found else 'new'}")
                continue
            try:
                self.send_confirmation(email, name)
            except SendError as exc:
                if self.store.clock() - action.received_at > GIVE_UP_AFTER:
                    self.store.finish_action(action.id, f"gave up: {exc}")
                else:
                    delay = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** action.attempts)
                    self.store.release_action(action.id, retry_in=delay, outcome=f"not sent: {exc}")
                log.error("sign-up confirmation not sent: %s", exc)
                continue
            except BaseException:
                self.store.release_action(action.id)
                raise
            self.store.finish_action(action.id, "confirmation sent")
            sent += 1
        return sent

    def run_pending(self) -> None:
        """Apply waiting actions and send waiting confirmations."""
        self.apply_pending()
        self.send_pending_confirmations()

    # ---------------------------------------------------------------- worker

    def start(self, interval: float = 0.5) -> None:
        """Run :meth:`run_pending` every ``interval`` seconds in a daemon
        thread until :meth:`stop`. Failures are logged and retried."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._work, args=(interval,), name="reader-actions", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker thread (after the round in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _work(self, interval: float) -> None:
        last_purge = 0.0
        while not self._stop.wait(interval):
            try:
                self.run_pending()
                if (stamp := self.store.clock().timestamp()) - last_purge > PURGE_EVERY_SECONDS:
                    self.store.purge_actions()
                    last_purge = stamp
            except Exception:  # a database hiccup: log it, the next round tries again
                log.exception("applying reader actions failed; retrying")
