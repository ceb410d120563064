"""Signed tokens for the links in emails.

Each purpose has its own salt, so a token made for one purpose is worthless
for another. Unsubscribe tokens never expire (a link in a year-old email must
still work) and carry the subscriber's opaque reference, never the address.
Old keys keep verifying after a rotation: sign with the current key, accept
it and every fallback.
"""

from __future__ import annotations

import hmac
import json
import zlib
from typing import NamedTuple

from itsdangerous import BadData, URLSafeSerializer, URLSafeTimedSerializer
from itsdangerous import Signer as ItsdangerousSigner
from itsdangerous.encoding import base64_decode, base64_encode

from newsletter.core.config import Settings, env_file_searched
from newsletter.core.errors import ConfigError, TokenError
from newsletter.core.models import Frequency

UNSUBSCRIBE_SALT = "newsletter.unsubscribe.v1"
CONFIRM_SALT = "newsletter.confirm.v1"
PREFERENCES_SALT = "newsletter.preferences.v1"
FEEDBACK_SALT = "newsletter.feedback.v1"
FEEDBACK_PAPER_SALT = "newsletter.feedback-paper.v1"
# Characters of a paper's code in a feedback token (base64: 36 bits).
PAPER_CODE_CHARS = 6
VOTES = ("up", "down")
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


def canonical_signature(token: str) -> bool:
    """Whether the signature that ends ``token`` (after its last dot) is
    written as it is signed. Base64 leaves the low bits of a signature's
    last character unused, so that character can change and still decode
    to the same signature; such a second spelling is refused, so that a
    token with any character changed is."""
    signature = token.rpartition(".")[2]
    try:
        return base64_encode(base64_decode(signature)).decode("ascii") == signature
    except (BadData, ValueError, UnicodeError):
        return False


def _reference(serializer: URLSafeSerializer, token: str, purpose: str) -> str:
    """Return the subscriber reference signed in ``token`` by ``serializer``.
    Raises :class:`TokenError` ("invalid <purpose> link") for a forged,
    truncated, tampered or other-purpose token."""
    try:
        ref = serializer.loads(token)
    except (BadData, UnicodeError, ValueError) as exc:
        raise TokenError(f"invalid {purpose} link") from exc
    if not isinstance(ref, str) or not ref or not canonical_signature(token):
        raise TokenError(f"invalid {purpose} link")
    return ref


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


class Confirmation(NamedTuple):
    """What a sign-up confirmation link carries: the address, the name and
    the interests given with the sign-up, and how often the reader wants
    the newsletter."""

    email: str
    name: str | None
    interests: tuple[str, ...]
    frequency: Frequency


class _NewestKey:
    """Signs as an itsdangerous ``signer`` signs, with its newest key, the
    key derived and the HMAC keyed once: itsdangerous derives the key again
    for every token, which was most of a send's cost of a reader's links.
    The tokens are the same, byte for byte (a test compares them)."""

    def __init__(self, signer: ItsdangerousSigner):
        self._mac = hmac.new(signer.derive_key(), digestmod=signer.digest_method)
        self._sep = signer.sep

    def sign(self, value: bytes) -> bytes:
        """Return ``value``, the separator and ``value``'s signature."""
        mac = self._mac.copy()
        mac.update(value)
        return value + self._sep + base64_encode(mac.digest())


# The payload of a URL-safe itsdangerous token, as its URLSafeSerializer
# writes it (compact JSON in UTF-8, zlib-compressed when that saves more
# than a byte, then base64), made here without a JSON encoder made per call.
_compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _url_safe_payload(value) -> bytes:
    """Return the payload itsdangerous' URLSafeSerializer signs for
    ``value`` (a test compares the two)."""
    payload = _compact_json(value).encode("utf-8")
    compressed = zlib.compress(payload)
    if len(compressed) < len(payload) - 1:
        return b"." + base64_encode(compressed)
    return base64_encode(payload)


class Signer:
    """Makes and checks the tokens of one secret key (plus fallbacks)."""

    def __init__(self, secret_key: str, fallbacks: tuple[str, ...] = ()):
        check_secret("NEWSLETTER_SECRET_KEY", secret_key)
        for key in fallbacks:
            check_secret("NEWSLETTER_SECRET_KEY_FALLBACKS", key)
        # itsdangerous signs with the last key and verifies with all of them.
        self._unsubscribe = URLSafeSerializer([*fallbacks, secret_key], salt=UNSUBSCRIBE_SALT)
        self._confirm = URLSafeTimedSerializer([*fallbacks, secret_key], salt=CONFIRM_SALT)
        self._preferences = URLSafeSerializer([*fallbacks, secret_key], salt=PREFERENCES_SALT)
        self._feedback = ItsdangerousSigner([*fallbacks, secret_key], salt=FEEDBACK_SALT)
        self._paper_codes = [ItsdangerousSigner(key, salt=FEEDBACK_PAPER_SALT) for key in (secret_key, *fallbacks)]
        # What a send signs for every reader, made fast (see _NewestKey).
        self._sign_unsubscribe = _NewestKey(self._unsubscribe.make_signer()).sign
        self._sign_preferences = _NewestKey(self._preferences.make_signer()).sign
        self._sign_feedback = _NewestKey(self._feedback).sign

    @classmethod
    def from_settings(cls, settings: Settings) -> "Signer":
        """Return the signer for the configured keys; raises :class:`ConfigError`
        when the secret key is missing (naming where ``.env`` was looked
        for) or weak."""
        if not settings.secret_key:
            # Most likely run from another folder: a new key would break every link already sent.
            raise ConfigError(f"NEWSLETTER_SECRET_KEY is not set, in the environment or in {env_file_searched()}; "
                              "run from the folder that holds your .env, or set it (a new key breaks every link "
                              f"already sent; for a first install, {GENERATE_HINT})")
        return cls(settings.secret_key, settings.secret_key_fallbacks)

    def unsubscribe_token(self, subscriber_ref: str) -> str:
        """Return the never-expiring unsubscribe token for ``subscriber_ref``."""
        return self._sign_unsubscribe(_url_safe_payload(subscriber_ref)).decode("ascii")

    def subscriber_ref(self, token: str) -> str:
        """Return the subscriber reference inside an unsubscribe token.

        Raises :class:`TokenError` for a forged, truncated, tampered or
        other-purpose token.
        """
        return _reference(self._unsubscribe, token, "unsubscribe")

    def unsubscribe_url(self, base_url: str, subscriber_ref: str) -> str:
        """Return the reader's personal unsubscribe address under ``base_url``:
        the link in the email's footer and its ``List-Unsubscribe`` header."""
        return f"{base_url.rstrip('/')}/u/{self.unsubscribe_token(subscriber_ref)}"

    def reader_urls(self, base_url: str, subscriber_ref: str) -> tuple[str, str]:
        """Return the reader's (unsubscribe, preferences) addresses under
        ``base_url``, as :meth:`unsubscribe_url` and :meth:`preferences_url`
        make them, their shared payload made once (a send makes both for
        every reader)."""
        payload = _url_safe_payload(subscriber_ref)
        base = base_url.rstrip("/")
        return (f"{base}/u/{self._sign_unsubscribe(payload).decode('ascii')}",
                f"{base}/p/{self._sign_preferences(payload).decode('ascii')}")

    def preferences_token(self, subscriber_ref: str) -> str:
        """Return the never-expiring token of the reader's preferences page."""
        return self._sign_preferences(_url_safe_payload(subscriber_ref)).decode("ascii")

    def preferences_ref(self, token: str) -> str:
        """Return the subscriber reference inside a preferences token.
        Raises :class:`TokenError` for a forged, tampered or other-purpose token."""
        return _reference(self._preferences, token, "preferences")

    def preferences_url(self, base_url: str, subscriber_ref: str) -> str:
        """Return the reader's personal preferences page under ``base_url``."""
        return f"{base_url.rstrip('/')}/p/{self.preferences_token(subscriber_ref)}"

    # A feedback token is "<position>-<code>.<reader part>": the reader part
    # is signed for one reader and one edition (the same in every link of
    # their email); the code signs that edition's paper at that position, so
    # a token only ever names a paper of an edition the reader was sent, and
    # a changed character anywhere is refused. No address is in it.

    def feedback_reader_part(self, subscriber_ref: str, edition: str) -> str:
        """Return the part of a reader's feedback tokens shared by every
        paper of ``edition`` (what each email carries once)."""
        return self._sign_feedback(f"{subscriber_ref}~{edition}".encode()).decode("ascii")

    def paper_code(self, edition: str, position: int, paper_key: str) -> str:
        """Return the code of the paper ``paper_key`` at ``position`` in
        ``edition``, the same for every reader."""
        return self._paper_codes[0].get_signature(f"{edition}:{position}:{paper_key}").decode("ascii")[
            :PAPER_CODE_CHARS]

    def feedback_token(self, subscriber_ref: str, edition: str, position: int, paper_key: str) -> str:
        """Return the feedback token of one reader for one paper of ``edition``."""
        return (f"{position}-{self.paper_code(edition, position, paper_key)}."
                f"{self.feedback_reader_part(subscriber_ref, edition)}")

    def feedback_target(self, token: str) -> tuple[str, str, int, str]:
        """Return (subscriber reference, edition, position, paper code) of a
        feedback token whose reader part is genuine; the caller checks the
        paper with :meth:`paper_matches`. Raises :class:`TokenError` for a
        forged, tampered, truncated or other-purpose token."""
        paper, _, reader = token.partition(".")
        position, _, code = paper.partition("-")
        try:
            value = self._feedback.unsign(reader).decode("utf-8")
        except (BadData, UnicodeError, ValueError) as exc:
            raise TokenError("invalid feedback link") from exc
        ref, _, edition = value.partition("~")
        # Only the digits written here: no other script's digits, no leading
        # zero (no second spelling of a token), and not thousands of them.
        canonical = (position.isascii() and position.isdigit() and len(position) <= 6
                     and (position == "0" or not position.startswith("0")))
        if not (ref and edition and canonical and len(code) == PAPER_CODE_CHARS and canonical_signature(reader)):
            raise TokenError("invalid feedback link")
        return ref, edition, int(position), code

    def paper_matches(self, code: str, edition: str, position: int, paper_key: str) -> bool:
        """Whether ``code`` is the code of ``paper_key`` at ``position`` in
        ``edition`` (under the current key or a previous one)."""
        value = f"{edition}:{position}:{paper_key}"
        return any(hmac.compare_digest(signer.get_signature(value).decode("ascii")[:PAPER_CODE_CHARS], code)
                   for signer in self._paper_codes)

    def confirm_token(self, email: str, name: str | None, interests: tuple[str, ...] = (),
                      frequency: Frequency = Frequency.DAILY) -> str:
        """Return a sign-up confirmation token for ``email`` (timestamped: it
        expires, see :meth:`confirmed`), carrying the ``interests`` given
        with the sign-up (the caller keeps them short: see
        ``newsletter.picks.interests``) and the ``frequency`` chosen."""
        payload = {"e": email, "n": name or ""}
        if interests:
            payload["i"] = list(interests)
        if frequency != Frequency.DAILY:  # left out for daily: such links are as short as before
            payload["f"] = str(frequency)
        return self._confirm.dumps(payload)

    def confirmed(self, token: str, max_age_seconds: int) -> Confirmation:
        """Return what a confirmation token at most ``max_age_seconds`` old
        carries (a link without a frequency is for daily). Raises
        :class:`TokenError` when it is forged, tampered, for another
        purpose or expired."""
        try:
            payload = self._confirm.loads(token, max_age=max_age_seconds)
        except (BadData, UnicodeError, ValueError) as exc:
            raise TokenError("invalid or expired confirmation link") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("e"), str) or not canonical_signature(token):
            raise TokenError("invalid or expired confirmation link")
        interests = payload.get("i", [])
        if not isinstance(interests, list) or not all(isinstance(i, str) for i in interests):
            raise TokenError("invalid or expired confirmation link")
        frequency = payload.get("f", Frequency.DAILY)
        if frequency not in tuple(Frequency):
            raise TokenError("invalid or expired confirmation link")
        return Confirmation(payload["e"], payload.get("n") or None, tuple(interests), Frequency(frequency))

