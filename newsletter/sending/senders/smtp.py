"""The SMTP sender: smtplib with STARTTLS and login, for SES's SMTP interface
or a local mail catcher. One connection per worker thread, reused.

Each message is one MAIL FROM / RCPT TO / DATA exchange, driven step by step
so that a failure is sorted by where it happened: a refusal or a lost
connection before DATA certainly sent nothing (retry; a reused connection the
server closed while idle is reopened once at once), a 4xx is temporary
(retry), a 5xx to RCPT or DATA refuses that reader (failed), a 5xx to MAIL
FROM refuses the sender (stop the run), and a connection lost during DATA
leaves the outcome unknown. An address that cannot be written in an ASCII
message fails that reader.
"""

from __future__ import annotations

import email.parser
import email.utils
import smtplib
import socket
import ssl
import threading

from newsletter.core.config import Settings
from newsletter.core.errors import AccountError, SendError, TransientError
from newsletter.core.models import DeliveryStatus, Issue
from newsletter.sending.personalize import PreparedMessage, Recipient
from newsletter.sending.senders.base import Delivery, Quota, StoppedMidBatch

_LOST = (smtplib.SMTPServerDisconnected, socket.timeout, OSError)


class _LostBeforeData(Exception):
    """The connection failed before DATA: this message certainly did not go out."""


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", errors="replace") if isinstance(reply, bytes) else str(reply)


def _closed(conn: smtplib.SMTP) -> bool:
    return conn.sock is None


class SmtpSender:
    """Sends each message with one MAIL FROM / RCPT TO / DATA exchange."""

    name = "smtp"
    batch_size = 20

    def __init__(self, settings: Settings, timeout: float = 30.0):
        self.settings = settings
        self.timeout = timeout
        self.envelope_from = email.utils.parseaddr(settings.from_address)[1]
        self.message: PreparedMessage | None = None
        self._local = threading.local()
        self._connections: list[smtplib.SMTP] = []
        self._lock = threading.Lock()

    def quota(self) -> Quota:
        return Quota(max_send_rate=None, max_24_hour_send=None, sent_last_24_hours=0)

    def check_ahead(self, issue: Issue, stop: threading.Event) -> None:
        """Nothing to check before the send starts."""

    def open(self, issue: Issue, message: PreparedMessage) -> None:
        self.message = message

    # ---------------------------------------------------------------- connections

    def _open(self) -> smtplib.SMTP:
        """A new connection, through STARTTLS and login as configured.
        Raises AccountError (login refused, no STARTTLS) or TransientError."""
        s = self.settings
        try:
            conn = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=self.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"cannot connect to SMTP {s.smtp_host}:{s.smtp_port}: {exc}") from exc
        try:
            if s.smtp_starttls:
                conn.starttls(context=ssl.create_default_context())
            if s.smtp_username:
                conn.login(s.smtp_username, s.smtp_password or "")
            conn.ehlo_or_helo_if_needed()
        except smtplib.SMTPAuthenticationError as exc:
            conn.close()
            raise AccountError(f"SMTP login refused by {s.smtp_host}: {exc.smtp_code}") from exc
        except smtplib.SMTPNotSupportedError as exc:
            conn.close()
            raise AccountError(f"{s.smtp_host} does not offer STARTTLS; set NEWSLETTER_SMTP_STARTTLS=false "
                               "only for a local mail catcher") from exc
        except (OSError, smtplib.SMTPException) as exc:
            conn.close()
            raise TransientError(f"cannot connect to SMTP {s.smtp_host}:{s.smtp_port}: {exc}") from exc
        return conn

    def _connection(self) -> tuple[smtplib.SMTP, bool]:
        """This thread's connection, and whether it was opened just now."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, False
        conn = self._open()
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn, True

    def _forget_if_closed(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and _closed(conn):
            self._local.conn = None
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)

    # ---------------------------------------------------------------- one message

    @staticmethod
    def _end_transaction(conn: smtplib.SMTP, code: int) -> None:
        """After a refusal: 421 means the server is closing; else RSET."""
        if code == 421:
            conn.close()
            return
        try:
            conn.rset()
        except _LOST + (smtplib.SMTPException,):
            conn.close()

    def _exchange(self, conn: smtplib.SMTP, address: str, data: bytes) -> tuple[str, str | None]:
        """MAIL FROM / RCPT TO / DATA for one message: (status, reason).

        Raises _LostBeforeData, TransientError for a 4xx to MAIL FROM, or
        AccountError for a 5xx to it. A connection that can no longer be
        used is closed (``conn.sock`` is None).
        """
        try:
            options = [f"SIZE={len(data)}"] if conn.does_esmtp and conn.has_extn("size") else []
            code, reply = conn.mail(self.envelope_from, options)
            if code != 250:
                self._end_transaction(conn, code)
                if 400 <= code < 500:  # the sender, not this reader: the rest of the batch waits too
                    raise TransientError(f"SMTP {code} {_text(reply)} (MAIL FROM)")
                raise AccountError(f"SMTP server refused the sender {self.envelope_from}: {code} {_text(reply)}")
            code, reply = conn.rcpt(address)
            if code not in (250, 251):
                self._end_transaction(conn, code)
                return (DeliveryStatus.RETRY if 400 <= code < 500 else DeliveryStatus.FAILED), f"SMTP {code} {_text(reply)}"
        except _LOST as exc:
            conn.close()
            raise _LostBeforeData(str(exc) or type(exc).__name__) from exc
        try:
            code, reply = conn.data(data)
        except smtplib.SMTPDataError as exc:  # DATA itself refused: the message was not sent
            self._end_transaction(conn, exc.smtp_code)
            return (DeliveryStatus.RETRY if 400 <= exc.smtp_code < 500 else DeliveryStatus.FAILED), f"SMTP {exc.smtp_code} {_text(exc.smtp_error)}"
        except _LOST as exc:
            # The message may have been accepted just before the line dropped.
            conn.close()
            return DeliveryStatus.UNKNOWN, f"SMTP connection lost during DATA ({exc})"
        if code != 250:
            self._end_transaction(conn, code)
            return (DeliveryStatus.RETRY if 400 <= code < 500 else DeliveryStatus.FAILED), f"SMTP {code} {_text(reply)}"
        return DeliveryStatus.SENT, None

    # ---------------------------------------------------------------- batches

    @staticmethod
    def _stop_early(deliveries: list[Delivery], rest: list[Recipient], error: SendError) -> list[Delivery]:
        """Stop this batch at ``rest`` (not sent). With nothing done yet,
        raise ``error`` for the whole batch. Else the outcomes so far must
        reach the ledger: return them with ``rest`` to retry, or for an
        AccountError raise StoppedMidBatch carrying them."""
        if not deliveries:
            raise error
        done = deliveries + [Delivery(r, DeliveryStatus.RETRY, reason=f"not tried: {error}") for r in rest]
        if isinstance(error, AccountError):
            raise StoppedMidBatch(str(error), done) from error
        return done

    def send(self, recipients: list[Recipient]) -> list[Delivery]:
        """One Delivery per recipient, in order. Raises TransientError or
        AccountError when nothing was done, and StoppedMidBatch (an
        AccountError with ``deliveries``) when the server refused the sender
        partway through the batch."""
        deliveries: list[Delivery] = []
        for index, recipient in enumerate(recipients):
            message_id = self.message.message_id(recipient)
            try:
                data = self.message.render(recipient, message_id)
            except UnicodeError:
                reason = "the address is not ASCII (SMTPUTF8 is not supported)"
                deliveries.append(Delivery(recipient, DeliveryStatus.FAILED, reason=reason))
                continue
            for attempt in (1, 2):
                try:
                    conn, fresh = self._connection()
                    status, reason = self._exchange(conn, recipient.email, data)
                except (AccountError, TransientError) as exc:
                    self._forget_if_closed()
                    return self._stop_early(deliveries, recipients[index:], exc)
                except _LostBeforeData as exc:
                    self._forget_if_closed()
                    if fresh or attempt == 2:
                        # Nothing of this message went out: the dispatcher retries it and the rest.
                        return self._stop_early(
                            deliveries, recipients[index:], TransientError(f"SMTP connection lost ({exc})")
                        )
                    continue  # a reused connection the server had closed: reopen it once
                self._forget_if_closed()
                break
            if status == DeliveryStatus.SENT:
                deliveries.append(Delivery(recipient, DeliveryStatus.SENT, message_id=f"<{message_id}@{self.message.domain}>"))
                continue
            deliveries.append(Delivery(recipient, status, reason=reason))
            if status == DeliveryStatus.UNKNOWN:
                untried = recipients[index + 1:]
                deliveries.extend(Delivery(r, DeliveryStatus.RETRY, reason="not tried: connection lost") for r in untried)
                break
        return deliveries

    def send_single(self, to_address: str, data: bytes) -> str:
        """Send one ready-made message outside any issue (a sign-up
        confirmation) on a connection of its own; return its Message-ID
        header (or ""). Raises TransientError when it was not sent or its
        outcome is unknown, AccountError when the server refuses the sender
        or the login, and SendError when it refuses the recipient."""
        conn = self._open()
        try:
            try:
                status, reason = self._exchange(conn, to_address, data)
            except _LostBeforeData as exc:
                raise TransientError(f"SMTP connection lost ({exc})") from exc
        finally:
            if not _closed(conn):
                try:
                    conn.quit()
                except (OSError, smtplib.SMTPException):
                    conn.close()
        if status == DeliveryStatus.SENT:
            header = email.parser.BytesHeaderParser().parsebytes(data).get("Message-ID", "")
            return str(header).strip()
        if status == DeliveryStatus.FAILED:
            raise SendError(f"{to_address} refused: {reason}")
        raise TransientError(f"not sent to {to_address}: {reason}")

    def close(self, complete: bool) -> None:
        with self._lock:
            for conn in self._connections:
                try:
                    conn.quit()
                except (OSError, smtplib.SMTPException):
                    pass
            self._connections.clear()

    def where(self, issue: Issue) -> None:
        return None
