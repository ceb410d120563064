"""Configuration: every setting is documented in .env.example, only config.py
reads the environment, and load_settings parses, layers and rejects values."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from conftest import ROOT
from newsletter.config import SETTINGS, Settings, load_settings, read_environment
from newsletter.errors import ConfigError

PACKAGE = ROOT / "newsletter"
ENV_EXAMPLE = ROOT / ".env.example"
# A setting's name, not part of a longer identifier (such as the
# __NEWSLETTER_UNSUBSCRIBE_URL__ mark, which is not a setting).
SETTING_NAME = re.compile(r"(?<![A-Za-z0-9_])NEWSLETTER_[A-Z0-9_]*[A-Z0-9](?![A-Za-z0-9_])")
ASSIGNMENT = re.compile(r"^\s*(?:#\s*)?([A-Z][A-Z0-9_]*)\s*=")
READS_ENVIRONMENT = re.compile(r"os\.environ|\bgetenv\b|\bputenv\b|load_dotenv|dotenv_values|from os import environ")


def source_files() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert PACKAGE / "config.py" in files
    return files


def names_in_code() -> set[str]:
    names = set(SETTINGS)
    for path in source_files():
        names |= set(SETTING_NAME.findall(path.read_text(encoding="utf-8")))
    return names


def documented() -> dict[str, int]:
    """Names assigned in .env.example (``NAME=`` or ``# NAME=``) -> line index."""
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    return {m.group(1): i for i, line in enumerate(lines) if (m := ASSIGNMENT.match(line))}


# --------------------------------------------------------------------------
# documentation


def test_every_setting_is_documented_in_env_example():
    code = names_in_code()
    assert set(SETTINGS) <= code
    assert len(code) >= 6
    missing = code - set(documented())
    assert not missing, f"settings read by the code but not in .env.example: {sorted(missing)}"


def test_env_example_documents_nothing_unknown():
    extra = set(documented()) - names_in_code()
    assert not extra, f".env.example documents settings the code never reads: {sorted(extra)}"


def test_each_documented_setting_has_a_comment_above_it():
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    for name, index in documented().items():
        assert index > 0, name
        above = lines[index - 1].strip()
        assert above.startswith("#") and not ASSIGNMENT.match(above), f"{name}: no comment above it"
        assert len(above.lstrip("#").strip()) > 10, f"{name}: the comment above says nothing"


def test_env_example_values_are_the_defaults_and_load():
    """Copying .env.example to .env changes nothing: its values are valid and
    are the defaults."""
    from dotenv import dotenv_values

    values = {k: v for k, v in dotenv_values(ENV_EXAMPLE).items() if v is not None}
    assert load_settings(values) == Settings()


def test_only_config_reads_the_environment():
    offenders = []
    for path in source_files():
        if path.name == "config.py" and path.parent == PACKAGE:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if READS_ENVIRONMENT.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
    assert READS_ENVIRONMENT.search((PACKAGE / "config.py").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------
# load_settings


def test_defaults():
    assert load_settings({}) == Settings()
    assert load_settings() == Settings()  # empty folder, clean environment
    defaults = Settings()
    assert defaults.base_url.startswith(("http://", "https://"))
    assert defaults.fetch_timeout > 0
    assert defaults.templates_dir == Path("templates")


def test_values_from_a_mapping():
    settings = load_settings({
        "NEWSLETTER_NAME": "  Morning Papers  ",
        "NEWSLETTER_BASE_URL": "https://papers.example.org/",
        "NEWSLETTER_POSTAL_ADDRESS": "1 Main St · Springfield",
        "NEWSLETTER_TEMPLATES_DIR": "/srv/templates",
        "NEWSLETTER_API_BASE_URL": "http://127.0.0.1:9000",
        "NEWSLETTER_FETCH_TIMEOUT": "2.5",
        "UNRELATED": "ignored",
    })
    assert settings.name == "Morning Papers"
    assert settings.base_url == "https://papers.example.org/"
    assert settings.web_base == "https://papers.example.org"
    assert settings.postal_address == "1 Main St · Springfield"
    assert settings.templates_dir == Path("/srv/templates")
    assert settings.api_base_url == "http://127.0.0.1:9000"
    assert settings.fetch_timeout == 2.5


def test_every_setting_maps_to_a_field():
    fields = set(Settings.__dataclass_fields__)
    assert {field for field, _ in SETTINGS.values()} == fields


def test_dotenv_in_the_current_folder_is_read(isolated):
    (isolated / ".env").write_text(
        "# a comment\nNEWSLETTER_NAME=From Dotenv\nexport NEWSLETTER_FETCH_TIMEOUT=7\n"
        'NEWSLETTER_POSTAL_ADDRESS="2 Quoted Road, Town"\n',
        encoding="utf-8",
    )
    assert read_environment()["NEWSLETTER_NAME"] == "From Dotenv"
    settings = load_settings()
    assert settings.name == "From Dotenv"
    assert settings.fetch_timeout == 7
    assert settings.postal_address == "2 Quoted Road, Town"


def test_dotenv_elsewhere_is_not_read(isolated, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")
    (other / ".env").write_text("NEWSLETTER_NAME=Elsewhere\n", encoding="utf-8")
    assert load_settings().name == Settings().name
    assert read_environment(other / ".env")["NEWSLETTER_NAME"] == "Elsewhere"


def test_real_environment_wins_over_dotenv(isolated, monkeypatch):
    (isolated / ".env").write_text("NEWSLETTER_NAME=From Dotenv\nNEWSLETTER_FETCH_TIMEOUT=7\n", encoding="utf-8")
    monkeypatch.setenv("NEWSLETTER_NAME", "From Environment")
    settings = load_settings()
    assert settings.name == "From Environment"
    assert settings.fetch_timeout == 7  # the rest still comes from .env


@pytest.mark.parametrize("empty", ["", "   "])
def test_empty_values_count_as_unset(empty):
    env = {name: empty for name in SETTINGS}
    assert load_settings(env) == Settings()


def test_empty_environment_variable_does_not_hide_dotenv(isolated, monkeypatch):
    (isolated / ".env").write_text("NEWSLETTER_NAME=From Dotenv\nNEWSLETTER_BASE_URL=\n", encoding="utf-8")
    monkeypatch.setenv("NEWSLETTER_NAME", "")
    settings = load_settings()
    assert settings.name == "From Dotenv"
    assert settings.base_url == Settings().base_url


@pytest.mark.parametrize(
    "name, value",
    [
        ("NEWSLETTER_BASE_URL", "ftp://x"),
        ("NEWSLETTER_BASE_URL", "papers.example.org"),
        ("NEWSLETTER_BASE_URL", "https://"),
        ("NEWSLETTER_API_BASE_URL", "javascript:alert(1)"),
        ("NEWSLETTER_FETCH_TIMEOUT", "abc"),
        ("NEWSLETTER_FETCH_TIMEOUT", "0"),
        ("NEWSLETTER_FETCH_TIMEOUT", "-1"),
        ("NEWSLETTER_FETCH_TIMEOUT", "nan"),
        ("NEWSLETTER_FETCH_TIMEOUT", "inf"),
        ("NEWSLETTER_NAME", "Two\nlines"),
        ("NEWSLETTER_POSTAL_ADDRESS", "1 Main St\r\nBcc: x@example.org"),
    ],
)
def test_malformed_values_raise_config_error_naming_the_variable(name, value):
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value})
    assert name in str(caught.value)
    assert "\n" not in str(caught.value)


def test_malformed_value_in_dotenv(isolated):
    (isolated / ".env").write_text("NEWSLETTER_FETCH_TIMEOUT=soon\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="NEWSLETTER_FETCH_TIMEOUT"):
        load_settings()


def test_unreadable_dotenv_raises_config_error(isolated):
    (isolated / ".env").write_bytes(b"NEWSLETTER_NAME=caf\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(ConfigError, match=r"\.env"):
        load_settings()


def test_dotenv_that_is_a_folder_is_ignored(isolated):
    (isolated / ".env").mkdir()
    assert load_settings() == Settings()


def test_timeout_is_a_float():
    timeout = load_settings({"NEWSLETTER_FETCH_TIMEOUT": "30"}).fetch_timeout
    assert isinstance(timeout, float) and math.isfinite(timeout) and timeout == 30
