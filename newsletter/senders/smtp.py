"""The SMTP sender: smtplib with STARTTLS and login, for SES's SMTP interface
or a local mail catcher. One connection per worker thread, reused."""

from __future__ import annotations

import email.utils
import smtplib
import socket
import ssl
import threading

from newsletter.config import Settings
from newsletter.errors import AccountError, TransientError
from newsletter.models import Issue
from newsletter.personalize import PreparedMessage, Recipient
from newsletter.senders.base import FAILED, RETRY, SENT, UNKNOWN, Delivery, Quota


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

    def open(self, issue: Issue, message: PreparedMessage) -> None:
        self.message = message

    def _connection(self) -> smtplib.SMTP:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        s = self.settings
        try:
            conn = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=self.timeout)
            if s.smtp_starttls:
                conn.starttls(context=ssl.create_default_context())
            if s.smtp_username:
                conn.login(s.smtp_username, s.smtp_password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise AccountError(f"SMTP login refused by {s.smtp_host}: {exc.smtp_code}") from None
        except smtplib.SMTPNotSupportedError:
            raise AccountError(f"{s.smtp_host} does not offer STARTTLS; set NEWSLETTER_SMTP_STARTTLS=false "
                               "only for a local mail catcher") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"cannot connect to SMTP {s.smtp_host}:{s.smtp_port}: {exc}") from None
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def send(self, recipients: list[Recipient]) -> list[Delivery]:
        deliveries = []
        for recipient in recipients:
            conn = self._connection()
            message_id = self.message.message_id(recipient)
            data = self.message.render(recipient, message_id)
            try:
                refused = conn.sendmail(self.envelope_from, [recipient.email], data)
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                status = RETRY if 400 <= code < 500 else FAILED
                deliveries.append(Delivery(recipient, status, reason=f"SMTP {code} {text.decode(errors='replace')}"))
                continue
            except smtplib.SMTPSenderRefused as exc:
                raise AccountError(f"SMTP server refused the sender {self.envelope_from}: {exc.smtp_code}") from None
            except smtplib.SMTPDataError as exc:
                status = RETRY if 400 <= exc.smtp_code < 500 else FAILED
                deliveries.append(Delivery(recipient, status, reason=f"SMTP {exc.smtp_code}"))
                continue
            except (smtplib.SMTPServerDisconnected, socket.timeout, OSError) as exc:
                # The message may have been accepted just before the line dropped.
                self._drop_connection()
                deliveries.append(Delivery(recipient, UNKNOWN, reason=f"SMTP connection lost during DATA ({exc})"))
                untried = recipients[len(deliveries):]
                deliveries.extend(Delivery(r, RETRY, reason="not tried: connection lost") for r in untried)
                break
            assert not refused
            deliveries.append(Delivery(recipient, SENT, message_id=f"<{message_id}>"))
        return deliveries

    def close(self, complete: bool) -> None:
        with self._lock:
            for conn in self._connections:
                try:
                    conn.quit()
                except (OSError, smtplib.SMTPException):
                    pass
            self._connections.clear()
