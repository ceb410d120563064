"""Configuration: every setting is declared once in config.py and shown with
the same name and default in .env.example and in the documentation's table
(docs/reference/configuration.md as the site's hook makes it), only
config.py reads the environment, and load_settings parses, layers and rejects
values."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest

from conftest import ROOT
from newsletter.core.config import DECLARED, SETTINGS, Setting, Settings, load_settings, read_environment, shown_default
from newsletter.core.errors import ConfigError

PACKAGE = ROOT / "newsletter"
ENV_EXAMPLE = ROOT / ".env.example"
CONFIG_MODULE = PACKAGE / "core" / "config.py"
CONFIGURATION_PAGE = ROOT / "docs" / "reference" / "configuration.md"
DOCS_HOOKS = ROOT / "docs" / "hooks.py"
# A setting's name, not part of a longer identifier (such as the
# __NEWSLETTER_UNSUBSCRIBE_URL__ mark, which is not a setting).
SETTING_NAME = re.compile(r"(?<![A-Za-z0-9_])NEWSLETTER_[A-Z0-9_]*[A-Z0-9](?![A-Za-z0-9_])")
ASSIGNMENT = re.compile(r"^\s*(?:#\s*)?([A-Z][A-Z0-9_]*)\s*=")
READS_ENVIRONMENT = re.compile(r"os\.environ|\bgetenv\b|\bputenv\b|load_dotenv|dotenv_values|from os import environ")


def source_files() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert CONFIG_MODULE in files
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
        if path == CONFIG_MODULE:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if READS_ENVIRONMENT.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
    assert READS_ENVIRONMENT.search(CONFIG_MODULE.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------
# one declaration, shown the same way in .env.example and the documentation
#
# The rule for showing a default: shown_default(default) gives the text; in
# .env.example it follows ``NAME=`` unquoted (nothing for no default), in the
# documentation's table it stands between backticks, or is the word "none"
# when empty.


def env_example_problems(text: str) -> list[str]:
    """What in the text of an .env.example disagrees with the declarations:
    each declared variable must be set exactly once, uncommented, to its shown
    default, in the order of the declarations, and nothing else may be set."""
    declared = {s.variable: s for s in DECLARED}
    found: dict[str, str] = {}
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not (match := ASSIGNMENT.match(line)):
            continue
        name, value = match.group(1), line.split("=", 1)[1].strip()
        if name not in declared:
            problems.append(f"line {number}: {name} is not a setting declared in newsletter/core/config.py")
            continue
        shown = shown_default(declared[name].default)
        expected = f"{name}={shown}"
        if name in found:
            problems.append(f"line {number}: {name} is set a second time")
        elif line.lstrip().startswith("#"):
            problems.append(f"line {number}: {name} is commented out; write {expected}")
        elif value != shown:
            problems.append(f"line {number}: {name}={value} but its declared default is shown as {expected}")
        found.setdefault(name, value)
    problems += [f"{name} is declared but not in .env.example" for name in declared if name not in found]
    if not problems and list(found) != list(declared):
        problems.append(f"the settings are not in the declared order: {list(declared)}")
    return problems


def table_default(value: object) -> str:
    shown = shown_default(value)
    return f"`{shown}`" if shown else "none"


def table_row(declared: Setting) -> str:
    return f"| `{declared.variable}` | {table_default(declared.default)} | {declared.help} |"


TABLE_HEADER = "| variable | default | meaning |\n| --- | --- | --- |"


def configuration_page() -> str:
    """The configuration page's Markdown as the site is built from it: the
    docs' hook puts the table of settings in."""
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS_HOOKS)
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    return hooks.expand(CONFIGURATION_PAGE.read_text(encoding="utf-8"), "reference/configuration.md")


def settings_table(page: str) -> list[str]:
    """The rows of the table of settings on the configuration page (its
    first section, before the first ``##`` heading)."""
    section = page.split("# Configuration\n", 1)[1].split("\n## ", 1)[0]
    assert TABLE_HEADER in section, "the Configuration page has no table of settings"
    rows = []
    for line in section.split(TABLE_HEADER, 1)[1].strip("\n").splitlines():
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def settings_table_problems(page: str) -> list[str]:
    """What in the configuration page's table disagrees with the
    declarations: one row per declared variable, in their order, showing its
    default and its help."""
    declared = {s.variable: s for s in DECLARED}
    found: list[str] = []
    problems = []
    for row in settings_table(page):
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) != 3 or not re.fullmatch(r"`[A-Z][A-Z0-9_]*`", cells[0]):
            problems.append(f"not a row of one `VARIABLE`, its default and its meaning: {row}")
            continue
        name = cells[0].strip("`")
        if name not in declared:
            problems.append(f"{name} is in the table but is not a setting declared in newsletter/core/config.py")
            continue
        found.append(name)
        default, meaning = cells[1], cells[2]
        if default != (expected := table_default(declared[name].default)):
            problems.append(f"{name}: the table shows the default {default}, declared: {expected}")
        if meaning != declared[name].help:
            problems.append(f"{name}: the table says {meaning!r}, its declared help: {declared[name].help!r}")
    problems += [f"{name} is declared but not in the table" for name in declared if name not in found]
    if not problems and found != list(declared):
        problems.append("the rows are not in the declared order")
    return problems


def test_every_field_is_a_declared_setting():
    assert [s.field for s in DECLARED] == list(Settings.__dataclass_fields__)
    assert len({s.variable for s in DECLARED}) == len(DECLARED)
    for declared in DECLARED:
        assert declared.help.strip() and "|" not in declared.help and "\n" not in declared.help, declared.variable
        # The shown default is what the setting's parser reads back.
        if shown := shown_default(declared.default):
            assert declared.parse(declared.variable, shown) == declared.default, declared.variable


def test_env_example_shows_every_declared_setting_with_its_default():
    problems = env_example_problems(ENV_EXAMPLE.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_documented_table_is_made_from_the_declarations():
    problems = settings_table_problems(configuration_page())
    table = "\n".join([TABLE_HEADER, *map(table_row, DECLARED)])
    assert not problems, "\n".join(problems) + "\n\nThe table made from the declarations:\n" + table


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda t: t.replace("NEWSLETTER_SENDER=outbox\n", ""), "NEWSLETTER_SENDER is declared but not in"),
        (lambda t: t + "NEWSLETTER_COLOUR=blue\n", "NEWSLETTER_COLOUR is not a setting declared"),
        (lambda t: t.replace("NEWSLETTER_SMTP_PORT=587", "NEWSLETTER_SMTP_PORT=25"), "NEWSLETTER_SMTP_PORT=25 but"),
        (lambda t: t.replace("NEWSLETTER_PROXY_COUNT=0", "# NEWSLETTER_PROXY_COUNT=0"), "commented out"),
        (lambda t: t + "NEWSLETTER_NAME=Daily Papers\n", "NEWSLETTER_NAME is set a second time"),
        (lambda t: t.replace("NEWSLETTER_SECRET_KEY=\n", "") + "NEWSLETTER_SECRET_KEY=\n", "declared order"),
    ],
)
def test_env_example_check_finds_disagreements(change, problem):
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert not env_example_problems(text)
    changed = change(text)
    assert changed != text
    assert any(problem in found for found in env_example_problems(changed)), env_example_problems(changed)


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda t: t.replace("| `NEWSLETTER_SENDER` |", "| `NEWSLETTER_SENDERS` |"),
         "NEWSLETTER_SENDER is declared but"),
        (lambda t: t.replace("| `NEWSLETTER_SENDER` |", "| `NEWSLETTER_SENDERS` |"),
         "NEWSLETTER_SENDERS is in the table"),
        (lambda t: t.replace("| `NEWSLETTER_SMTP_PORT` | `587` |", "| `NEWSLETTER_SMTP_PORT` | `25` |"),
         "NEWSLETTER_SMTP_PORT: the table shows the default `25`"),
        (lambda t: t.replace("| `NEWSLETTER_SECRET_KEY` | none |", "| `NEWSLETTER_SECRET_KEY` | `` |"),
         "NEWSLETTER_SECRET_KEY: the table shows the default"),
        (lambda t: t.replace("Seconds before `fetch` gives up.", "Seconds to wait."),
         "NEWSLETTER_FETCH_TIMEOUT: the table says"),
    ],
)
def test_documented_table_check_finds_disagreements(change, problem):
    text = configuration_page()
    assert not settings_table_problems(text)
    changed = change(text)
    assert changed != text
    assert any(problem in found for found in settings_table_problems(changed)), settings_table_problems(changed)


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


def test_a_base_url_given_in_capitals_is_https_and_written_in_lower_case():
    settings = load_settings({"NEWSLETTER_BASE_URL": "HTTPS://Papers.Example.org/News"})
    assert settings.base_url == "https://Papers.Example.org/News"
    assert settings.public_https
    assert Settings(base_url="HtTpS://papers.example.org").public_https
    assert not load_settings({"NEWSLETTER_BASE_URL": "HTTP://papers.example.org"}).public_https
    with pytest.raises(ConfigError, match="NEWSLETTER_BASE_URL must be an http"):
        load_settings({"NEWSLETTER_BASE_URL": "\x01https://papers.example.org"})  # urlsplit skips the \x01


def test_a_password_in_a_malformed_url_is_masked_in_the_error():
    with pytest.raises(ConfigError) as caught:
        load_settings({"NEWSLETTER_BASE_URL": "https://user:hunter2secret@papers.example.org/?x=1"})
    assert "hunter2secret" not in str(caught.value) and "user:••••••@papers.example.org" in str(caught.value)


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
