"""Configuration: the only module that reads the environment and ``.env``.

Every setting is declared once in ``SETTINGS`` below and documented in
``.env.example``; a test fails when the two drift apart. Everything else in
the package receives values as arguments.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

from dotenv import dotenv_values

from newsletter.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    """Resolved configuration (see ``.env.example`` for what each one means)."""

    name: str = "Daily Papers"
    base_url: str = "http://127.0.0.1:8000"
    postal_address: str = "Daily Papers · 1 Example Street · Example City"
    templates_dir: Path = Path("templates")
    api_base_url: str = "https://huggingface.co"
    fetch_timeout: float = 20.0
    database_url: str = "sqlite:///subscribers/newsletter.db"
    # Secrets never appear in a repr, a log line or an error message.
    secret_key: str = field(default="", repr=False)
    secret_key_fallbacks: tuple[str, ...] = field(default=(), repr=False)
    sender: str = "outbox"
    from_address: str = "Daily Papers <newsletter@example.com>"
    outbox_dir: Path = Path("outbox")
    max_send_rate: float | None = None  # None: the provider's quota decides
    send_concurrency: int = 8
    aws_region: str = "us-east-1"
    ses_endpoint_url: str | None = None
    ses_configuration_set: str | None = None
    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_starttls: bool = True
    sns_topic_arns: tuple[str, ...] = ()
    sqs_endpoint_url: str | None = None
    proxy_count: int = 0

    @property
    def web_base(self) -> str:
        """``base_url`` without a trailing slash, ready for joining paths."""
        return self.base_url.rstrip("/")

    @property
    def signup_url(self) -> str:
        """The web app's public sign-up page: the link a message that is not
        meant for a subscriber (a rendered file, a preview, a test message to
        an address not on the list) carries in place of an unsubscribe link."""
        return f"{self.web_base}/subscribe"


def _http_url(name: str, value: str) -> str:
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if not parts or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
    if parts.query or parts.fragment:
        # Paths are appended to it (/issues/..., /u/...); a query would break them.
        raise ConfigError(f"{name} must not have a query or fragment, got {value!r}")
    return value


MAX_SECONDS = 3600


def _positive_float(name: str, value: str, high: float = MAX_SECONDS, unit: str = "seconds") -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not number > 0:
        raise ConfigError(f"{name} must be greater than 0, got {value!r}")
    if not math.isfinite(number) or number > high:
        raise ConfigError(f"{name} must be at most {high:g} {unit}, got {value!r}")
    return number


def _text(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ConfigError(f"{name} must be a single line")
    return value.strip()


def _database_url(name: str, value: str) -> str:
    if "://" not in value:
        raise ConfigError(f"{name} must be a database URL such as sqlite:///subscribers/newsletter.db")
    return value


def _secret(_name: str, value: str) -> str:
    return value  # checked where a secret is needed (newsletter.tokens)


def _list(_name: str, value: str) -> tuple[str, ...]:
    """A list separated by commas or spaces."""
    return tuple(part for part in value.replace(",", " ").split() if part)


SENDERS = ("outbox", "ses", "smtp")


def _sender(name: str, value: str) -> str:
    if value not in SENDERS:
        raise ConfigError(f"{name} must be one of {', '.join(SENDERS)}, got {value!r}")
    return value


def _from_address(name: str, value: str) -> str:
    from email.utils import parseaddr

    value = _text(name, value)
    _display, address = parseaddr(value)
    if "@" not in address or address.startswith("@") or address.endswith("@"):
        raise ConfigError(f"{name} must be an address such as 'Daily Papers <papers@example.org>', got {value!r}")
    return value


def _positive_int(name: str, value: str, high: int = 1000) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if not 1 <= number <= high:
        raise ConfigError(f"{name} must be between 1 and {high}, got {value!r}")
    return number


def _port(name: str, value: str) -> int:
    return _positive_int(name, value, high=65535)


def _flag(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _optional_text(name: str, value: str) -> str | None:
    return _text(name, value) or None


# environment variable -> (Settings field, parser)
SETTINGS: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "NEWSLETTER_NAME": ("name", _text),
    "NEWSLETTER_BASE_URL": ("base_url", _http_url),
    "NEWSLETTER_POSTAL_ADDRESS": ("postal_address", _text),
    "NEWSLETTER_TEMPLATES_DIR": ("templates_dir", lambda _n, v: Path(v)),
    "NEWSLETTER_API_BASE_URL": ("api_base_url", _http_url),
    "NEWSLETTER_FETCH_TIMEOUT": ("fetch_timeout", _positive_float),
    "NEWSLETTER_DATABASE_URL": ("database_url", _database_url),
    "NEWSLETTER_SECRET_KEY": ("secret_key", _secret),
    "NEWSLETTER_SECRET_KEY_FALLBACKS": ("secret_key_fallbacks", _list),
    "NEWSLETTER_SENDER": ("sender", _sender),
    "NEWSLETTER_FROM": ("from_address", _from_address),
    "NEWSLETTER_OUTBOX_DIR": ("outbox_dir", lambda _n, v: Path(v)),
    "NEWSLETTER_MAX_SEND_RATE": (
        "max_send_rate", lambda n, v: _positive_float(n, v, high=1_000_000, unit="messages per second")
    ),
    "NEWSLETTER_SEND_CONCURRENCY": ("send_concurrency", _positive_int),
    "AWS_REGION": ("aws_region", _text),
    "NEWSLETTER_SES_ENDPOINT_URL": ("ses_endpoint_url", _http_url),
    "NEWSLETTER_SES_CONFIGURATION_SET": ("ses_configuration_set", _optional_text),
    "NEWSLETTER_SMTP_HOST": ("smtp_host", _text),
    "NEWSLETTER_SMTP_PORT": ("smtp_port", _port),
    "NEWSLETTER_SMTP_USERNAME": ("smtp_username", _optional_text),
    "NEWSLETTER_SMTP_PASSWORD": ("smtp_password", _secret),
    "NEWSLETTER_SMTP_STARTTLS": ("smtp_starttls", _flag),
    "NEWSLETTER_SNS_TOPIC_ARNS": ("sns_topic_arns", _list),
    "NEWSLETTER_SQS_ENDPOINT_URL": ("sqs_endpoint_url", _http_url),
    "NEWSLETTER_PROXY_COUNT": ("proxy_count", lambda n, v: _positive_int(n, v, high=10) if v != "0" else 0),
}


def read_environment(env_file: str | os.PathLike | None = ".env") -> dict[str, str]:
    """Return the process environment layered over the ``.env`` file.

    A variable set in the real environment wins over the same one in ``.env``
    (as cron and systemd users expect), unless it is empty: empty values count
    as unset. A missing ``.env`` is fine; raises :class:`ConfigError` when it
    exists but cannot be read (not UTF-8, no permission).
    """
    values: dict[str, str] = {}
    if env_file and Path(env_file).is_file():
        try:
            found = dotenv_values(env_file, encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{env_file}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x})") from None
        except OSError as exc:
            raise ConfigError(f"{env_file}: cannot read ({exc.strerror or exc})") from None
        values.update({k: v for k, v in found.items() if v is not None})
    values.update({k: v for k, v in os.environ.items() if v.strip() or k not in values})
    return values


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default: environment plus ``.env``).

    Empty values count as unset. Raises :class:`ConfigError` naming the
    variable when a value is malformed.
    """
    env = read_environment() if env is None else env
    values = {}
    for var, (field_name, parse) in SETTINGS.items():
        raw = env.get(var, "")
        if raw.strip():
            values[field_name] = parse(var, raw.strip())
    return Settings(**values)
