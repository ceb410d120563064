"""Senders: the local outbox, Amazon SES v2 and SMTP."""

from __future__ import annotations

from newsletter.core.config import Settings
from newsletter.core.errors import ConfigError
from newsletter.sending.senders.base import Sender


def create_sender(settings: Settings, name: str | None = None, ses_mode: str = "bulk") -> Sender:
    """Return the sender called ``name`` (default: ``settings.sender``).

    Raises :class:`ConfigError` for an unknown name or a sender whose
    library is missing.
    """
    name = name or settings.sender
    if name == "outbox":
        from newsletter.sending.senders.outbox import OutboxSender

        return OutboxSender(settings.outbox_dir)
    if name == "smtp":
        from newsletter.sending.senders.smtp import SmtpSender

        return SmtpSender(settings)
    if name == "ses":
        try:
            from newsletter.sending.senders.ses import SesSender
        except ModuleNotFoundError as exc:  # boto3 is a dependency, but be clear if it is gone
            raise ConfigError(f"the ses sender needs {exc.name}: pip install boto3") from exc
        return SesSender(settings, mode=ses_mode)
    raise ConfigError(f"unknown sender {name!r}; choose outbox, ses or smtp")
