"""Configuration: the only module that reads the environment and ``.env``.

Every setting is declared once, as a field of :class:`Settings` made with
:func:`setting`: its environment variable, its type, its default, how its
value is parsed and one line of help. ``.env.example`` and the docs'
configuration table show the same names and defaults (see
:func:`shown_default`); tests fail when they drift apart. Everything else in
the package receives values as arguments.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import string
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple
from urllib.parse import unquote_plus, urlsplit

from dotenv import dotenv_values

from newsletter.core.errors import ConfigError
from newsletter.core.models import WEEKDAYS, parse_weekday

# A parser takes the variable's name (for its error messages) and the raw,
# non-empty value, and returns the field's value or raises ConfigError.
Parser = Callable[[str, str], Any]


# --------------------------------------------------------------------------
# showing URLs

MASK = "••••••"
# Query parameters that may hold a secret (a database URL's ?password=,
# ?sslpassword=, an API's ?token= or ?key=...), matched in any case.
_SECRET_PARAMETER = re.compile(r"pass|pwd|secret|token|key|auth|cred", re.IGNORECASE)
# The user part of a URL's authority, read as SQLAlchemy reads a database
# URL: a name without ":" or "/", then the password up to the first "@".
_USERINFO = re.compile(r"(?P<scheme>[^:/?#]+://)(?P<user>[^:/]*):(?P<password>[^@]*)@")


def masked_url(value: str) -> str:
    """Return ``value`` (a URL, a database URL especially) as it may be
    shown: its password (``user:PASSWORD@host``) and the value of every
    secret-looking query parameter (``?password=``, ``?sslpassword=``,
    ``?token=``...) replaced by ``••••••``; anything else as it is. Works
    on malformed URLs too, so error messages can show them."""
    head, rest = "", value
    userinfo = _USERINFO.match(value)
    if userinfo:
        password = MASK if userinfo.group("password") else ""
        head, rest = f"{userinfo.group('scheme')}{userinfo.group('user')}:{password}@", value[userinfo.end():]
    path, mark, query = rest.partition("?")
    shown = []
    for parameter in query.split("&") if mark else ():
        name, equals, secret = parameter.partition("=")
        hidden = equals and secret and _SECRET_PARAMETER.search(unquote_plus(name))
        shown.append(f"{name}={MASK}" if hidden else parameter)
    return head + path + mark + "&".join(shown)


# --------------------------------------------------------------------------
# parsers


def _http_url(name: str, value: str) -> str:
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    # urlsplit reads the scheme in any case (HTTPS://) and skips leading
    # control characters: the value must start with the scheme itself.
    if (not parts or parts.scheme not in ("http", "https") or not parts.hostname
            or not value.lower().startswith(parts.scheme + "://")):
        raise ConfigError(f"{name} must be an http(s) URL, got {masked_url(value)!r}")
    if parts.query or parts.fragment:
        # Paths are appended to it (/issues/..., /u/...); a query would break them.
        raise ConfigError(f"{name} must not have a query or fragment, got {masked_url(value)!r}")
    # The scheme in lower case: links are made from it (a List-Unsubscribe
    # link must be https, and receivers may compare that literally).
    return parts.scheme + value[len(parts.scheme):]


MAX_SECONDS = 3600


def _positive_float(name: str, value: str, high: float = MAX_SECONDS, unit: str = "seconds") -> float:
    try:
        number = float(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {value!r}") from exc
    if not number > 0:
        raise ConfigError(f"{name} must be greater than 0, got {value!r}")
    if not math.isfinite(number) or number > high:
        raise ConfigError(f"{name} must be at most {high:g} {unit}, got {value!r}")
    return number


def _text(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ConfigError(f"{name} must be a single line")
    return value.strip()


# What a subject template (NEWSLETTER_SUBJECT) may name.
SUBJECT_FIELDS = ("subject", "name", "date", "count", "pick")


def _subject_template(name: str, value: str) -> str:
    value = _text(name, value)
    try:
        placeholders = [(key, spec, conversion) for _literal, key, spec, conversion in string.Formatter().parse(value)
                        if key is not None]
    except ValueError as exc:
        raise ConfigError(f"{name} is not a subject template ({exc}); write {{{{ and }}}} for a brace") from exc
    for key, spec, conversion in placeholders:
        if key not in SUBJECT_FIELDS or spec or conversion:
            written = key + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise ConfigError(f"{name} has {{{written}}}; it can use {', '.join('{' + f + '}' for f in SUBJECT_FIELDS)}")
    return value


def _database_url(name: str, value: str) -> str:
    if "://" not in value:
        raise ConfigError(f"{name} must be a database URL such as sqlite:///subscribers/newsletter.db")
    return value


def _secret(_name: str, value: str) -> str:
    return value  # checked where a secret is needed (newsletter.readers.tokens)


def _list(_name: str, value: str) -> tuple[str, ...]:
    """A list separated by commas or spaces."""
    return tuple(part for part in value.replace(",", " ").split() if part)


def _from_address(name: str, value: str) -> str:
    from email.utils import parseaddr

    value = _text(name, value)
    _display, address = parseaddr(value)
    if "@" not in address or address.startswith("@") or address.endswith("@"):
        raise ConfigError(f"{name} must be an address such as 'Daily Papers <papers@example.org>', got {value!r}")
    return value


TEASERS = ("summary", "abstract")


def _teaser(name: str, value: str) -> str:
    if value not in TEASERS:
        raise ConfigError(f"{name} must be one of {', '.join(TEASERS)}, got {value!r}")
    return value


def _positive_int(name: str, value: str, high: int = 1000) -> int:
    try:
        number = int(value)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from exc
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


def _weekday(name: str, value: str) -> str:
    try:
        return WEEKDAYS[parse_weekday(value)]
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from exc


def _optional_text(name: str, value: str) -> str | None:
    return _text(name, value) or None


def _path(_name: str, value: str) -> Path:
    return Path(value)


def _send_rate(name: str, value: str) -> float:
    return _positive_float(name, value, high=1_000_000, unit="messages per second")


def _session_hours(name: str, value: str) -> float:
    return _positive_float(name, value, high=24 * 30, unit="hours")


def _top_cards(name: str, value: str) -> int:
    return _positive_int(name, value, high=50)


def _proxy_count(name: str, value: str) -> int:
    return _positive_int(name, value, high=10) if value != "0" else 0


# --------------------------------------------------------------------------
# the settings


def setting(variable: str, default: Any, parse: Parser, help: str, *, secret: bool = False) -> Any:
    """Declare one setting: a dataclass field with ``default`` whose metadata
    holds the environment ``variable`` that sets it, the ``parse`` function for
    its value and its ``help`` line (the docs' configuration table shows
    it). A ``secret`` is left out of the repr: secrets never appear in a
    repr, a log line or an error message.

    Returns the ``dataclasses.field`` to assign in :class:`Settings`.
    """
    return field(default=default, repr=not secret, metadata={"variable": variable, "parse": parse, "help": help})


@dataclass(frozen=True)
class Settings:
    """Resolved configuration; each field is one setting (see ``.env.example``)."""

    name: str = setting("NEWSLETTER_NAME", "Daily Papers", _text, "Masthead, subject and page titles.")
    base_url: str = setting(
        "NEWSLETTER_BASE_URL", "http://127.0.0.1:8000", _http_url,
        "Public address of the web app; the view-in-browser and unsubscribe links start with it.",
    )
    postal_address: str = setting(
        "NEWSLETTER_POSTAL_ADDRESS", "Daily Papers · 1 Example Street · Example City", _text,
        "The sender's postal address in every footer.",
    )
    templates_dir: Path = setting(
        "NEWSLETTER_TEMPLATES_DIR", Path("templates"), _path, "Folder whose files override the packaged templates."
    )
    teaser: str = setting(
        "NEWSLETTER_TEASER", "summary", _teaser,
        "What a card's teaser shows: `summary` (the source's AI summary when it has one, else the abstract's"
        " TL;DR: its sentence that says what the paper brings, such as \"We propose…\") or `abstract` (always"
        " the abstract's first sentences).",
    )
    subject: str = setting(
        "NEWSLETTER_SUBJECT", "", _subject_template,
        "The email's subject, when not the dated one every reader shares (\"Daily Papers · Tue 11 Mar 2025 · 85"
        " papers\", which keeps each day's issue apart and every reader's in one thread): a template of"
        " `{subject}` (the dated subject), `{name}`, `{date}`, `{count}` (the edition's papers) and `{pick}` (the"
        " title of the reader's first pick, or the day's top paper for a reader without picks), such as"
        " `{pick} · {name}`.",
    )
    top_cards: int = setting(
        "NEWSLETTER_TOP_CARDS", 8, _top_cards,
        "How many of the day's most upvoted papers a reader's daily email shows as cards under \"Top of the"
        " day\", after their picks and without them (a weekly shows its week's top 10); the other papers follow"
        " as a list of titles, or one line, as each reader chooses.",
    )
    thumbnails: bool = setting(
        "NEWSLETTER_THUMBNAILS", False, _flag,
        "Copy each paper's thumbnail when its day is stored, for cards to show from this web app (`on` or `off`).",
    )
    api_base_url: str = setting(
        "NEWSLETTER_API_BASE_URL", "https://huggingface.co", _http_url, "Where `fetch` finds `/api/daily_papers`."
    )
    fetch_timeout: float = setting(
        "NEWSLETTER_FETCH_TIMEOUT", 20.0, _positive_float, "Seconds before `fetch` gives up."
    )
    arxiv_api_url: str = setting(
        "NEWSLETTER_ARXIV_API_URL", "https://export.arxiv.org/api/query", _http_url,
        "The arXiv API that seed papers missing from the database are fetched from (in the background).",
    )
    database_url: str = setting(
        "NEWSLETTER_DATABASE_URL", "sqlite:///subscribers/newsletter.db", _database_url,
        "The subscriber database: SQLite or `postgresql+psycopg://…`.",
    )
    secret_key: str = setting(
        "NEWSLETTER_SECRET_KEY", "", _secret,
        "Signs unsubscribe links; at least 32 random characters (repeated, sequential or word-like keys are"
        " refused). Needed by `serve`.",
        secret=True,
    )
    secret_key_fallbacks: tuple[str, ...] = setting(
        "NEWSLETTER_SECRET_KEY_FALLBACKS", (), _list, "Older keys, comma-separated, still accepted for links.",
        secret=True,
    )
    # A sender's name, checked where the senders are (newsletter.sending.senders).
    sender: str = setting("NEWSLETTER_SENDER", "outbox", _text, "`outbox`, `ses` or `smtp`.")
    from_address: str = setting(
        "NEWSLETTER_FROM", "Daily Papers <newsletter@example.com>", _from_address,
        "The From header; a verified SES identity for `ses`.",
    )
    outbox_dir: Path = setting("NEWSLETTER_OUTBOX_DIR", Path("outbox"), _path, "Where the outbox sender writes.")
    max_send_rate: float | None = setting(
        "NEWSLETTER_MAX_SEND_RATE", None, _send_rate,
        "Messages per second at most; unset, the SES account's `MaxSendRate` decides (no limit for `outbox`"
        " and `smtp`).",
    )
    send_concurrency: int = setting(
        "NEWSLETTER_SEND_CONCURRENCY", 8, _positive_int, "Calls in flight at once while sending."
    )
    aws_region: str = setting("AWS_REGION", "us-east-1", _text, "The AWS region of SES and SQS.")
    ses_configuration_set: str | None = setting(
        "NEWSLETTER_SES_CONFIGURATION_SET", None, _optional_text, "SES configuration set for event publishing."
    )
    ses_endpoint_url: str | None = setting(
        "NEWSLETTER_SES_ENDPOINT_URL", None, _http_url,
        "Another SES endpoint (a local stand-in); unset, SES's own for `AWS_REGION`.",
    )
    smtp_host: str = setting("NEWSLETTER_SMTP_HOST", "localhost", _text, "The SMTP server.")
    smtp_port: int = setting("NEWSLETTER_SMTP_PORT", 587, _port, "The SMTP server's port (587 for STARTTLS).")
    smtp_username: str | None = setting(
        "NEWSLETTER_SMTP_USERNAME", None, _optional_text, "SMTP login name; unset for a server that needs no login."
    )
    smtp_password: str | None = setting(
        "NEWSLETTER_SMTP_PASSWORD", None, _secret, "SMTP password (SES SMTP credentials, not the AWS secret key).",
        secret=True,
    )
    smtp_starttls: bool = setting(
        "NEWSLETTER_SMTP_STARTTLS", True, _flag,
        "Upgrade the SMTP connection with STARTTLS (`false` only for a local catcher).",
    )
    sns_topic_arns: tuple[str, ...] = setting(
        "NEWSLETTER_SNS_TOPIC_ARNS", (), _list, "SNS topics whose SES notifications are accepted, comma-separated."
    )
    sqs_endpoint_url: str | None = setting(
        "NEWSLETTER_SQS_ENDPOINT_URL", None, _http_url,
        "Another SQS endpoint for `bounces poll` (a local stand-in); unset, SQS's own for `AWS_REGION`.",
    )
    proxy_count: int = setting(
        "NEWSLETTER_PROXY_COUNT", 0, _proxy_count, "Reverse proxies in front of `serve` that set X-Forwarded-For."
    )
    weekly_day: str = setting(
        "NEWSLETTER_WEEKLY_DAY", "mon", _weekday, "The weekly edition's day for readers who chose none (`mon` … `sun`)."
    )
    admin_session_hours: float = setting(
        "NEWSLETTER_ADMIN_SESSION_HOURS", 12.0, _session_hours,
        "Hours without use after which a dashboard session ends (the operator logs in again).",
    )

    @property
    def weekly_weekday(self) -> int:
        """``weekly_day`` as ``date.weekday()`` numbers it (0 Monday)."""
        return WEEKDAYS.index(self.weekly_day)

    @property
    def admin_session_idle(self) -> dt.timedelta:
        """``admin_session_hours`` as a duration."""
        return dt.timedelta(hours=self.admin_session_hours)

    @property
    def secret_variables(self) -> frozenset[str]:
        """The environment variables of the settings that are secret (masked
        wherever settings are shown)."""
        return frozenset(f.metadata["variable"] for f in fields(self) if not f.repr)

    @property
    def public_https(self) -> bool:
        """Whether ``base_url``, the public address, is https (in any case)."""
        return urlsplit(self.base_url).scheme == "https"

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


class Setting(NamedTuple):
    """One declared setting, as read back from its :class:`Settings` field."""

    variable: str
    field: str
    default: Any
    parse: Parser
    help: str


DECLARED: tuple[Setting, ...] = tuple(
    Setting(f.metadata["variable"], f.name, f.default, f.metadata["parse"], f.metadata["help"])
    for f in fields(Settings)
)

# environment variable -> (Settings field, parser): what load_settings reads
SETTINGS: dict[str, tuple[str, Parser]] = {s.variable: (s.field, s.parse) for s in DECLARED}


def shown_default(value: Any) -> str:
    """Return a default as ``.env.example`` writes it after ``NAME=`` (and the
    docs' table between backticks): ``""`` for no value (``None``, an
    empty string or list), ``true``/``false`` for a flag, a number without a
    needless ``.0``, a list joined with ``", "``, anything else as ``str``.
    Parsing the result gives the default back."""
    if value is None or value == "" or value == ():
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ", ".join(value)
    return str(value)


ENV_FILE = ".env"


def env_file_searched(env_file: str | os.PathLike = ENV_FILE) -> str:
    """Where settings were looked for in a ``.env`` file, for error
    messages: its absolute path, and whether it is there."""
    path = Path(env_file).absolute()
    return f"{path} ({'found' if path.is_file() else 'none there'})"


def read_environment(env_file: str | os.PathLike | None = ENV_FILE) -> dict[str, str]:
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
            raise ConfigError(f"{env_file}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x})") from exc
        except OSError as exc:
            raise ConfigError(f"{env_file}: cannot read ({exc.strerror or exc})") from exc
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
