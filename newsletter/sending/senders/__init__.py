"""Senders: the local outbox, Amazon SES v2 and SMTP, by the names
``NEWSLETTER_SENDER`` and ``send --sender`` give them (:data:`SENDERS`)."""

from __future__ import annotations

from typing import Callable

from newsletter.core.config import Settings
from newsletter.core.errors import ConfigError
from newsletter.sending.senders.base import Sender

# Each sender's module is imported when that sender is made: the SES
# sender's libraries are not every command's start-up.


def _outbox(settings: Settings, _ses_mode: str) -> Sender:
    from newsletter.sending.senders.outbox import OutboxSender

    return OutboxSender(settings.outbox_dir)


def _ses(settings: Settings, ses_mode: str) -> Sender:
    try:
        from newsletter.sending.senders.ses import SesSender
    except ModuleNotFoundError as exc:  # boto3 is a dependency, but be clear if it is gone
        raise ConfigError(f"the ses sender needs {exc.name}: pip install boto3") from exc
    return SesSender(settings, mode=ses_mode)


def _smtp(settings: Settings, _ses_mode: str) -> Sender:
    from newsletter.sending.senders.smtp import SmtpSender

    return SmtpSender(settings)


# name -> factory(settings, SES mode): every sender there is.
SENDERS: dict[str, Callable[[Settings, str], Sender]] = {"outbox": _outbox, "ses": _ses, "smtp": _smtp}


def check_sender(name: str) -> str:
    """Return ``name`` when it names a sender (see :data:`SENDERS`).

    Raises :class:`ConfigError` otherwise: the name comes from
    ``NEWSLETTER_SENDER`` (``--sender`` offers only the senders there are).
    """
    if name not in SENDERS:
        raise ConfigError(f"NEWSLETTER_SENDER must be one of {', '.join(SENDERS)}, got {name!r}")
    return name


def create_sender(settings: Settings, name: str | None = None, ses_mode: str = "bulk") -> Sender:
    """Return the sender called ``name`` (default: ``settings.sender``);
    ``ses_mode`` is how the SES sender sends ("bulk" or "raw"), the others
    ignore it.

    Raises :class:`ConfigError` for an unknown name (see
    :func:`check_sender`) or a sender whose library is missing.
    """
    return SENDERS[check_sender(name or settings.sender)](settings, ses_mode)
