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
MIN_SECRET_DISTINCT_CHARS = 12
# Anyone who receives one issue holds a token signed with the key, so the key
# can be attacked offline: guessed and checked against that token as fast as
# HMAC runs. 10^24 guesses (about 80 bits) is far beyond what a large GPU
# cluster tries in decades (about 10^21), and far below what a generated key
# gets: a secrets.token_urlsafe(32) key scores 10^41 or more, a 32-character
# hex key (128 random bits) about 10^28.
MIN_SECRET_GUESSES_LOG10 = 24
_ZXCVBN_MAX_CHARS = 72  # zxcvbn refuses longer input
GENERATE_HINT = "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def secret_guesses_log10(value: str) -> float:
    """Return the base-10 logarithm of the number of guesses an attacker who
    knows how people pick keys would need to find ``value``.

    The estimate is zxcvbn's, which counts a repeated chunk, a sequence
    (``abcdef``, ``0123``), a keyboard walk (``qwerty``), a date or a word
    from its dictionaries as the few guesses they cost rather than as random
    characters. zxcvbn reads at most 72 characters, so a longer key gets the
    score of its strongest 72-character stretch (stretches overlapping by
    half): a weak pattern repeated past 72 characters cannot add up to a pass.
    """
    from zxcvbn import zxcvbn  # loads its dictionaries: only when a key is checked

    step = _ZXCVBN_MAX_CHARS // 2
    starts = range(0, max(len(value) - _ZXCVBN_MAX_CHARS, 0) + step, step)
    return max(
        zxcvbn(value[start:start + _ZXCVBN_MAX_CHARS], user_inputs=["newsletter", "secret", "key"])["guesses_log10"]
        for start in starts
    )


def check_secret(name: str, value: str) -> str:
    """Return ``value`` if it is usable as a signing key.

    Raises :class:`ConfigError` naming ``name`` (never showing the key) when
    it is missing, shorter than 32 characters, made of fewer than 12
    different characters, or repetitive or guessable: fewer than 10^24
    guesses by :func:`secret_guesses_log10`.
    """
    if not value:
        raise ConfigError(f"{name} is not set; {GENERATE_HINT}")
    if len(value) < MIN_SECRET_CHARS or len(set(value)) < MIN_SECRET_DISTINCT_CHARS:
        raise ConfigError(f"{name} is too weak (at least {MIN_SECRET_CHARS} random characters); {GENERATE_HINT}")
    if secret_guesses_log10(value) < MIN_SECRET_GUESSES_LOG10:
        raise ConfigError(
            f"{name} is too weak (repeated, sequential or made of words: it must be random); {GENERATE_HINT}"
        )
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
        except (BadData, UnicodeError, ValueError) as exc:
            raise TokenError("invalid unsubscribe link") from exc
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
        except (BadData, UnicodeError, ValueError) as exc:
            raise TokenError("invalid or expired confirmation link") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("e"), str):
            raise TokenError("invalid or expired confirmation link")
        return payload["e"], payload.get("n") or None

