"""The outbox sender: each message as an RFC 5322 ``.eml`` file, byte for
byte what would be sent, under ``<outbox>/<date>/``. Needs no account."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
from pathlib import Path

from newsletter.core.errors import AccountError
from newsletter.core.files import atomic_write_bytes
from newsletter.core.models import DeliveryStatus, Issue
from newsletter.sending.personalize import PreparedMessage, Recipient
from newsletter.sending.senders.base import Delivery, Quota


# What an address keeps in a file name: the characters every file system takes.
_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]")
ADDRESS_CHARS = 200  # of a file name's 255 bytes, with room for the id


def reader_file_name(subscriber_id: int, address: str) -> str:
    """The file of one reader's message in an issue's folder:
    ``<subscriber id>-<address>.eml``, every character of the address but
    letters, digits and ``@._+-`` written ``_``, cut to
    :data:`ADDRESS_CHARS`. The id comes first: names stay unique (two
    addresses may look alike once made safe) and a re-run writes the same
    reader's file again, not a second one."""
    return f"{subscriber_id}-{_UNSAFE.sub('_', address)[:ADDRESS_CHARS]}.eml"


def unique_name() -> str:
    """A file name no other message gets: ``<UTC time>-<random>.eml``."""
    return f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}.eml"


class OutboxSender:
    """Writes one file per reader (:func:`reader_file_name`:
    ``<subscriber id>-<address>.eml``); the message id is the file name.
    A copy outside the ledger (a recipient with id 0: a test message, a
    dashboard's "send again") gets a file of its own (:func:`unique_name`),
    so it replaces neither the send's file nor an earlier copy."""

    name = "outbox"
    batch_size = 50

    def __init__(self, outbox_dir: Path):
        self.outbox_dir = Path(outbox_dir)
        self.folder: Path | None = None
        self.message: PreparedMessage | None = None

    def quota(self) -> Quota:
        return Quota(max_send_rate=None, max_24_hour_send=None, sent_last_24_hours=0)

    def check_ahead(self, issue: Issue, stop: threading.Event) -> None:
        """Nothing to check before the send starts."""

    def open(self, issue: Issue, message: PreparedMessage) -> None:
        self.folder = self.outbox_dir / issue.edition
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AccountError(f"cannot create the outbox folder {self.folder}: {exc.strerror or exc}") from exc
        self.message = message

    def send(self, recipients: list[Recipient]) -> list[Delivery]:
        deliveries = []
        for recipient in recipients:
            name = (reader_file_name(recipient.subscriber_id, recipient.email) if recipient.subscriber_id
                    else unique_name())
            try:
                atomic_write_bytes(self.folder / name, self.message.render(recipient))
            except OSError as exc:
                raise AccountError(f"cannot write to the outbox {self.folder}: {exc.strerror or exc}") from exc
            deliveries.append(Delivery(recipient, DeliveryStatus.SENT, message_id=name))
        return deliveries

    def close(self, complete: bool) -> None:
        pass

    def where(self, issue: Issue) -> str:
        return f"{self.outbox_dir / issue.edition}/"

    def send_single(self, to_address: str, data: bytes) -> str:
        """Write one message outside any issue to ``<outbox>/single/``; return its file name."""
        name = unique_name()
        try:
            atomic_write_bytes(self.outbox_dir / "single" / name, data)
        except OSError as exc:
            raise AccountError(f"cannot write to the outbox {self.outbox_dir}: {exc.strerror or exc}") from exc
        return name
