"""Signed unsubscribe tokens: round trip, nothing personal in them, rejection
of anything forged, tampered, truncated or made for another purpose, key
rotation, the secret key checks, and the unsubscribe URL."""

from __future__ import annotations

import base64
import re
import secrets
import time

import pytest
from itsdangerous import URLSafeSerializer
from itsdangerous.encoding import base64_decode

from conftest import SECRET
from newsletter.core.config import Settings, load_settings
from newsletter.core.errors import ConfigError, TokenError
from newsletter.store import open_store
from newsletter.readers.tokens import (
    MIN_SECRET_GUESSES_LOG10,
    UNSUBSCRIBE_SALT,
    Signer,
    check_secret,
    secret_guesses_log10,
)

OLD_SECRET = "4zXsAU5ho3LGIvk2kfS07YNedgdVSTzYe3VA5wnQUfc"
OTHER_SECRET = secrets.token_urlsafe(32)
REF = "Qm9vayBvZiBzYW5kIGFuZCBzdGFy"
URL_SAFE = re.compile(r"^[A-Za-z0-9_\-.]+$")


@pytest.fixture
def signer() -> Signer:
    return Signer(SECRET)


def invalid(signer: Signer, token: str) -> None:
    with pytest.raises(TokenError) as caught:
        signer.subscriber_ref(token)
    assert str(caught.value) == "invalid unsubscribe link"  # says nothing about whom


# --------------------------------------------------------------------------
# round trip and contents


def test_round_trip(signer):
    token = signer.unsubscribe_token(REF)
    assert URL_SAFE.match(token), token
    assert signer.subscriber_ref(token) == REF
    # A new Signer with the same key (another process) verifies it too.
    assert Signer(SECRET).subscriber_ref(token) == REF


def test_token_holds_neither_the_address_nor_the_ref_in_clear(tmp_path, signer):
    store = open_store(f"sqlite:///{tmp_path / 'tokens.db'}")
    try:
        subscriber, _ = store.add("ada.lovelace@example.com", "Ada Lovelace")
    finally:
        store.close()
    token = signer.unsubscribe_token(subscriber.ref)
    url = signer.unsubscribe_url("https://papers.example.org", subscriber.ref)
    encoded = base64.urlsafe_b64encode(subscriber.email.encode()).decode().rstrip("=")
    for text in (token, url):
        assert "ada" not in text.lower() and "lovelace" not in text.lower()
        assert "example.com" not in text and "@" not in text
        assert encoded[:12] not in text
        assert subscriber.ref not in text
    assert signer.subscriber_ref(token) == subscriber.ref


def test_a_token_verifies_only_with_its_key(signer):
    token = signer.unsubscribe_token(REF)
    invalid(Signer(OTHER_SECRET), token)
    invalid(Signer(OLD_SECRET, fallbacks=(OTHER_SECRET,)), token)


def test_tokens_never_expire(signer, monkeypatch):
    token = signer.unsubscribe_token(REF)
    in_three_years = time.time() + 3 * 365 * 24 * 3600
    monkeypatch.setattr(time, "time", lambda: in_three_years)
    assert signer.subscriber_ref(token) == REF


# --------------------------------------------------------------------------
# rejected tokens


def _other(char: str) -> str:
    return "A" if char != "A" else "B"


def test_every_changed_payload_character_is_rejected(signer):
    token = signer.unsubscribe_token(REF)
    payload, signature = token.rsplit(".", 1)
    for i in range(len(payload)):
        invalid(signer, payload[:i] + _other(payload[i]) + payload[i + 1:] + "." + signature)


def test_every_changed_signature_character_is_rejected(signer):
    token = signer.unsubscribe_token(REF)
    payload, signature = token.rsplit(".", 1)
    rejected = 0
    for i in range(len(signature)):
        changed = signature[:i] + _other(signature[i]) + signature[i + 1:]
        if base64_decode(changed) == base64_decode(signature):
            continue  # only the unused low bits of the last character: the same signature
        invalid(signer, f"{payload}.{changed}")
        rejected += 1
    assert rejected >= len(signature) - 1


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def second_spelling(token: str) -> str:
    """``token`` with the unused low bit of its signature's last character
    set the other way: the same signature bytes, written differently."""
    last = ALPHABET.index(token[-1])
    changed = token[:-1] + ALPHABET[last ^ 1]
    assert base64_decode(changed.rpartition(".")[2]) == base64_decode(token.rpartition(".")[2])
    return changed


def test_a_second_spelling_of_a_signature_is_refused_for_every_purpose(signer):
    # Before, such a token was accepted: a changed last character could
    # leave the signature as it was.
    unsubscribe = signer.unsubscribe_token(REF)
    preferences = signer.preferences_token(REF)
    feedback = signer.feedback_token(REF, "2025-03-11", 4, "2503.00001")
    confirm = signer.confirm_token("ada@example.com", "Ada", ("graphs",))
    assert signer.subscriber_ref(unsubscribe) == signer.preferences_ref(preferences) == REF
    assert signer.feedback_target(feedback)[0] == REF
    assert signer.confirmed(confirm, 60) == ("ada@example.com", "Ada", ("graphs",), "daily")
    invalid(signer, second_spelling(unsubscribe))
    for check, token in ((signer.preferences_ref, preferences), (signer.feedback_target, feedback),
                         (lambda t: signer.confirmed(t, 60), confirm)):
        with pytest.raises(TokenError):
            check(second_spelling(token))


@pytest.mark.parametrize("position", ["04", "+4", "٤", "4 ", "-4", "", "9" * 5000])
def test_a_feedback_token_with_another_spelling_of_its_position_is_refused(signer, position):
    token = signer.feedback_token(REF, "2025-03-11", 4, "2503.00001")
    assert signer.feedback_target(token) == (REF, "2025-03-11", 4, token.split("-")[1].split(".")[0])
    with pytest.raises(TokenError):
        signer.feedback_target(position + token[1:])


def test_tokens_of_one_purpose_are_refused_for_every_other(signer):
    tokens = {
        "unsubscribe": signer.unsubscribe_token(REF),
        "preferences": signer.preferences_token(REF),
        "feedback": signer.feedback_token(REF, "2025-03-11", 0, "2503.00001"),
        "confirm": signer.confirm_token(REF, None),
    }
    checks = {
        "unsubscribe": signer.subscriber_ref,
        "preferences": signer.preferences_ref,
        "feedback": signer.feedback_target,
        "confirm": lambda t: signer.confirmed(t, 60),
    }
    for purpose, token in tokens.items():
        checks[purpose](token)
        for other, check in checks.items():
            if other != purpose:
                with pytest.raises(TokenError):
                    check(token)


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_truncated_tokens_are_rejected(signer, cut):
    token = signer.unsubscribe_token(REF)
    invalid(signer, token[:-cut])
    invalid(signer, token[cut:])


def test_the_payload_or_signature_alone_is_rejected(signer):
    payload, signature = signer.unsubscribe_token(REF).rsplit(".", 1)
    for token in (payload, signature, payload + ".", "." + signature, f"{payload}..{signature}"):
        invalid(signer, token)


@pytest.mark.parametrize(
    "garbage",
    ["", " ", ".", "..", "a.b.c", "not-a-token", "é", "\x00", "%2e%2e", "null.null", "x" * 5000,
     "eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo"],
)
def test_garbage_is_rejected(signer, garbage):
    invalid(signer, garbage)


def test_a_token_made_for_another_purpose_is_rejected(signer):
    other_purpose = URLSafeSerializer(SECRET, salt="other").dumps(REF)
    invalid(signer, other_purpose)
    no_salt = URLSafeSerializer(SECRET).dumps(REF)
    invalid(signer, no_salt)


@pytest.mark.parametrize("value", ["", None, 12345, ["ref"], {"ref": REF}])
def test_a_correctly_signed_token_without_a_reference_is_rejected(signer, value):
    forged_with_the_key = URLSafeSerializer(SECRET, salt=UNSUBSCRIBE_SALT).dumps(value)
    invalid(signer, forged_with_the_key)


# --------------------------------------------------------------------------
# key rotation


def test_old_tokens_verify_with_the_old_key_in_fallbacks():
    old_token = Signer(OLD_SECRET).unsubscribe_token(REF)
    rotated = Signer(SECRET, fallbacks=(OLD_SECRET,))
    assert rotated.subscriber_ref(old_token) == REF
    # Without the fallback the old link is dead.
    invalid(Signer(SECRET), old_token)


def test_new_tokens_are_signed_with_the_current_key():
    rotated = Signer(SECRET, fallbacks=(OLD_SECRET,))
    new_token = rotated.unsubscribe_token(REF)
    assert Signer(SECRET).subscriber_ref(new_token) == REF
    invalid(Signer(OLD_SECRET), new_token)  # an app with only the old key rejects it
    assert new_token == Signer(SECRET).unsubscribe_token(REF)


def test_rotation_through_the_settings():
    settings = load_settings({
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_SECRET_KEY_FALLBACKS": f" {OLD_SECRET}, {OTHER_SECRET} ",
    })
    assert settings.secret_key_fallbacks == (OLD_SECRET, OTHER_SECRET)
    signer = Signer.from_settings(settings)
    for key in (OLD_SECRET, OTHER_SECRET, SECRET):
        assert signer.subscriber_ref(Signer(key).unsubscribe_token(REF)) == REF
    assert Signer(SECRET).subscriber_ref(signer.unsubscribe_token(REF)) == REF
    invalid(signer, Signer(secrets.token_urlsafe(32)).unsubscribe_token(REF))


# --------------------------------------------------------------------------
# the secret key


def test_a_missing_secret_is_explained():
    for make in (lambda: Signer(""), lambda: Signer.from_settings(Settings())):
        with pytest.raises(ConfigError) as caught:
            make()
        message = str(caught.value)
        assert "NEWSLETTER_SECRET_KEY is not set" in message
        assert "secrets.token_urlsafe" in message  # how to generate one


WEAK = ["hunter2-short-key", "a" * 40, "ab" * 20, "0123456789" * 4, "Xy" * 15 + "!"]
# Long enough and with enough different characters to pass a length and
# alphabet check, but repeated, sequential, keyboard walks or words.
GUESSABLE = [
    "0123456789ab0123456789ab0123456789ab",
    "abcdefghijklabcdefghijklabcdefghijkl",
    "changeme-changeme-changeme-changeme-01234",
    "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz",  # this suite's own key until it was refused
    "qwertyuiopasdfghjklzxcvbnm1234567890",  # keyboard walks
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "zaq12wsxcde34rfvbgt56yhnmju78ik,",
    "MyNewsletter2025!MyNewsletter2025!MyNewsletter2025!",  # a word repeated
    "correcthorsebatterystaplecorrecthorse",
    "MyN3wsl3tterK3y!00000000000000000000",  # a short key padded
    "2025-03-11-2025-03-11-2025-03-11-newsletter",
    "iloveyouiloveyouiloveyou1234567890!@#$",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghij" * 3,  # past zxcvbn's 72 characters
]


@pytest.mark.parametrize("weak", WEAK)
def test_weak_secrets_are_refused_without_showing_them(weak):
    with pytest.raises(ConfigError) as caught:
        Signer(weak)
    message = str(caught.value)
    assert "NEWSLETTER_SECRET_KEY" in message and "weak" in message
    assert "secrets.token_urlsafe" in message
    assert weak not in message
    assert weak[:8] not in message


@pytest.mark.parametrize("weak", WEAK)
def test_weak_fallback_keys_are_refused(weak):
    with pytest.raises(ConfigError) as caught:
        Signer(SECRET, fallbacks=(OLD_SECRET, weak))
    message = str(caught.value)
    assert "NEWSLETTER_SECRET_KEY_FALLBACKS" in message
    assert weak not in message


@pytest.mark.parametrize("weak", GUESSABLE)
def test_repetitive_or_guessable_secrets_are_refused_without_showing_them(weak):
    assert len(weak) >= 32 and len(set(weak)) >= 12  # only the estimate can refuse these
    for make in (lambda: Signer(weak), lambda: Signer(SECRET, fallbacks=(weak,))):
        with pytest.raises(ConfigError) as caught:
            make()
        message = str(caught.value)
        assert "too weak" in message and "secrets.token_urlsafe" in message
        assert weak not in message and weak[:8] not in message and weak[-8:] not in message
    assert secret_guesses_log10(weak) < MIN_SECRET_GUESSES_LOG10


def test_generated_secrets_always_pass():
    for _ in range(200):  # each check takes about 12 ms
        generated = secrets.token_urlsafe(32)
        assert check_secret("X", generated) == generated


def test_long_secrets_are_judged_by_their_strongest_stretch():
    random_part = secrets.token_urlsafe(32)
    assert check_secret("X", secrets.token_urlsafe(200))  # 267 characters
    assert check_secret("X", "a" * 100 + random_part + "b" * 100)
    with pytest.raises(ConfigError):
        check_secret("X", "Newsletter2025!" * 20)


def test_this_suites_secrets_pass():
    for key in (SECRET, OLD_SECRET, OTHER_SECRET, secrets.token_hex(16)):
        assert check_secret("X", key) == key


def test_settings_never_show_the_secret():
    settings = load_settings({"NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_SECRET_KEY_FALLBACKS": OLD_SECRET})
    assert settings.secret_key == SECRET
    for text in (repr(settings), str(settings)):
        assert SECRET not in text and OLD_SECRET not in text
        assert SECRET[:12] not in text and OLD_SECRET[:12] not in text
    assert "database_url" in repr(settings)  # the rest is still shown


# --------------------------------------------------------------------------
# the unsubscribe URL


@pytest.mark.parametrize(
    "base, expected",
    [
        ("https://papers.example.org", "https://papers.example.org/u/"),
        ("https://papers.example.org/", "https://papers.example.org/u/"),
        ("https://example.org/news//", "https://example.org/news/u/"),
    ],
)
def test_unsubscribe_url(signer, base, expected):
    url = signer.unsubscribe_url(base, REF)
    assert url == expected + signer.unsubscribe_token(REF)
    token = url[len(expected):]
    assert "/" not in token and URL_SAFE.match(token)
    assert signer.subscriber_ref(token) == REF


@pytest.mark.parametrize("fallbacks", [(), (OTHER_SECRET,)])
def test_the_fast_signing_of_a_send_makes_itsdangerous_own_tokens(fallbacks):
    """The links a send signs for every reader come from keys derived once
    (tokens._NewestKey), not from itsdangerous' own dumps; they must be
    the very tokens itsdangerous makes with the newest key, for references
    of every length (itsdangerous compresses long payloads)."""
    from itsdangerous import Signer as ItsdangerousSigner

    from newsletter.readers.tokens import FEEDBACK_SALT, PREFERENCES_SALT, UNSUBSCRIBE_SALT

    signer = Signer(SECRET, fallbacks)
    keys = [*fallbacks, SECRET]
    refs = [secrets.token_urlsafe(n) for n in (1, 8, 16, 24, 48)] + ["a" * 200, "x" * 3]
    for ref in refs:
        assert signer.unsubscribe_token(ref) == URLSafeSerializer(keys, salt=UNSUBSCRIBE_SALT).dumps(ref)
        assert signer.preferences_token(ref) == URLSafeSerializer(keys, salt=PREFERENCES_SALT).dumps(ref)
        assert signer.feedback_reader_part(ref, "2025-03-11-weekly") == (
            ItsdangerousSigner(keys, salt=FEEDBACK_SALT).sign(f"{ref}~2025-03-11-weekly").decode())
        assert signer.subscriber_ref(signer.unsubscribe_token(ref)) == ref
        assert signer.reader_urls("https://x.test/n/", ref) == (
            signer.unsubscribe_url("https://x.test/n", ref), signer.preferences_url("https://x.test/n", ref))
