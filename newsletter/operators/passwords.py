"""Operators' passwords: what is accepted, and how it is kept.

A password is kept only as an Argon2id hash (argon2-cffi, its default
parameters: RFC 9106's low-memory profile, 64 MiB and 3 passes), never in
clear, never logged. One is refused when it is shorter than
:data:`MIN_PASSWORD_CHARS` characters, is one of the 10,000 most common
passwords (also with digits or symbols added before or after it, or
repeated), holds the operator's name, or is easy to guess by zxcvbn's
estimate (keyboard walks, sequences, dates, words).

The list, ``data/common-passwords.txt``, is the top 10,000 of Mark Burnett's
list of 10 million passwords seen in leaks (xato.net), most common first, as
the zxcvbn package (MIT licence) ships it.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from newsletter.core.errors import InvalidPassword

MIN_PASSWORD_CHARS = 12
# Hashing is the costly part of a login: a bound keeps a megabyte-long
# "password" from being hashed at all.
MAX_PASSWORD_CHARS = 1024
MIN_DISTINCT_CHARS = 5
# zxcvbn's estimate (base-10 logarithm of the guesses needed) below which a
# password is refused: 10^8 is its "safely unguessable" boundary for an
# online attack, which is what a throttled login form faces.
MIN_GUESSES_LOG10 = 8
COMMON_PASSWORDS = Path(__file__).parents[1] / "data" / "common-passwords.txt"
_AFFIXES = re.compile(r"^[\W\d_]+|[\W\d_]+$")
_ZXCVBN_MAX_CHARS = 72  # zxcvbn refuses longer input

_hasher = PasswordHasher()  # Argon2id
# Each verification takes 64 MiB for a fraction of a second: at most two at
# once, so a burst of login attempts cannot take the server's memory.
_verifying = threading.BoundedSemaphore(2)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lower-cased."""
    return frozenset(line.strip().lower() for line in COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines()
                     if line.strip())


def _is_common(password: str) -> bool:
    """Whether ``password`` is a common one, with digits or symbols around
    it, or repeated (``password``, ``Password2024!``, ``qwertyqwerty``)."""
    common = common_passwords()
    lowered = password.lower()
    candidates = {lowered, _AFFIXES.sub("", lowered)}
    for size in range(1, len(lowered) // 2 + 1):
        if len(lowered) % size == 0 and lowered[:size] * (len(lowered) // size) == lowered:
            candidates.add(lowered[:size])
            break
    return any(candidate in common for candidate in candidates)


def _guesses_log10(password: str, name: str) -> float:
    from zxcvbn import zxcvbn  # loads its dictionaries: only when a password is set

    return zxcvbn(password[:_ZXCVBN_MAX_CHARS], user_inputs=[name, "newsletter", "admin"])["guesses_log10"]


def check_password(password: str, name: str) -> None:
    """Refuse a weak password for the operator ``name``.

    Raises :class:`InvalidPassword` saying why (never repeating the
    password): too short or too long, one of the most common passwords,
    holding the name, too few different characters, or easy to guess.
    """
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidPassword(f"the password is too short: use at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise InvalidPassword(f"the password is too long: use at most {MAX_PASSWORD_CHARS} characters")
    if _is_common(password):
        raise InvalidPassword("the password is one of the most common passwords; choose another")
    if name and name.lower() in password.lower():
        raise InvalidPassword("the password contains the name; choose another")
    if len(set(password)) < MIN_DISTINCT_CHARS:
        raise InvalidPassword(f"the password has fewer than {MIN_DISTINCT_CHARS} different characters")
    if _guesses_log10(password, name) < MIN_GUESSES_LOG10:
        raise InvalidPassword("the password is easy to guess (a keyboard pattern, a sequence, a date or words"
                              " with few changes); choose a longer or less predictable one")


def hash_password(password: str) -> str:
    """Return the Argon2id hash of ``password`` (salted: a new hash each call)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``. A password over
    :data:`MAX_PASSWORD_CHARS` never does (and costs nothing); a malformed
    hash never matches either."""
    if len(password) > MAX_PASSWORD_CHARS:
        return False
    with _verifying:
        try:
            return _hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def needs_rehash(password_hash: str) -> bool:
    """Whether ``password_hash`` was made with other parameters than today's
    (then a successful login stores a new one)."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """A hash of a random password, with today's parameters: a login with an
    unknown name is checked against it, so it takes as long as a wrong
    password for a real one."""
    import secrets

    return hash_password(secrets.token_urlsafe(24))
