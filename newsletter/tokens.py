"""Signed tokens for the links in emails.

Each purpose has its own salt, so a token made for one purpose is worthless
for another. Unsubscribe tokens never expire (a link in a year-old email must
still work) and carry the subscriber's opaque reference, never the address.
Old keys keep verifying after a rotation: sign with the current key, accept
it and every fallback.
"""

from __future__ import annotations

from itsdangerous import BadData, URLSafeSerializer, URLSafeTimedSerializer

from newsletter.config import Settings
from newsletter.errors import ConfigError, TokenError

UNSUBSCRIBE_SALT = "newsletter.unsubscribe.v1"
CONFIRM_SALT = "newsletter.confirm.v1"
MIN_SECRET_CHARS = 32
GENERATE_HINT = "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def check_secret(name: str, value: str) -> str:
    """Return ``value`` if it is usable as a signing key.

    Raises :class:`ConfigError` naming ``name`` when it is missing, shorter
    than 32 characters or obviously not random.
    """
    if not value:
        raise ConfigError(f"{name} is not set; {GENERATE_HINT}")
    if len(value) < MIN_SECRET_CHARS or len(set(value)) < 12:
        raise ConfigError(f"{name} is too weak (at least {MIN_SECRET_CHARS} random characters); {GENERATE_HINT}")
    return value


class Signer:
    """Makes and checks the tokens of one secret key (plus fallbacks)."""

    def __init__(self, secret_key: str, fallbacks: tuple[str, ...] = ()):
        check_secret("NEWSLETTER_SECRET_KEY", secret_key)
        for key in fallbacks:
            check_secret("NEWSLETTER_SECRET_KEY_FALLBACKS", key)
        # itsdangerous signs with the last key and verifies with all of them.
        self._unsubscribe = URLSafeSerializer([*fallbacks, secret_key], salt=UNSUBSCRIBE_SALT)
        self._confirm = URLSafeTimedSerializer([*fallbacks, secret_key], salt=CONFIRM_SALT)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Signer":
        """Return the signer for the configured keys; raises :class:`ConfigError`
        when the secret key is missing or weak."""
        return cls(settings.secret_key, settings.secret_key_fallbacks)

    def unsubscribe_token(self, subscriber_ref: str) -> str:
        """Return the never-expiring unsubscribe token for ``subscriber_ref``."""
        return self._unsubscribe.dumps(subscriber_ref)

    def subscriber_ref(self, token: str) -> str:
        """Return the subscriber reference inside an unsubscribe token.

        Raises :class:`TokenError` for a forged, truncated, tampered or
        other-purpose token.
        """
        try:
            ref = self._unsubscribe.loads(token)
        except (BadData, UnicodeError, ValueError):
            raise TokenError("invalid unsubscribe link") from None
        if not isinstance(ref, str) or not ref:
            raise TokenError("invalid unsubscribe link")
        return ref

    def unsubscribe_url(self, base_url: str, subscriber_ref: str) -> str:
        """Return the reader's personal unsubscribe address under ``base_url``:
        the link in the email's footer and its ``List-Unsubscribe`` header."""
        return f"{base_url.rstrip('/')}/u/{self.unsubscribe_token(subscriber_ref)}"

    def confirm_token(self, email: str, name: str | None) -> str:
        """Return a sign-up confirmation token for ``email`` (timestamped: it
        expires, see :meth:`confirmed`)."""
        return self._confirm.dumps({"e": email, "n": name or ""})

    def confirmed(self, token: str, max_age_seconds: int) -> tuple[str, str | None]:
        """Return (email, name) from a confirmation token at most
        ``max_age_seconds`` old. Raises :class:`TokenError` when it is
        forged, tampered, for another purpose or expired."""
        try:
            payload = self._confirm.loads(token, max_age=max_age_seconds)
        except (BadData, UnicodeError, ValueError):
            raise TokenError("invalid or expired confirmation link") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("e"), str):
            raise TokenError("invalid or expired confirmation link")
        return payload["e"], payload.get("n") or None

