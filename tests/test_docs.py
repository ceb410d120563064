"""The documentation site: `mkdocs build --strict` builds it offline from
this checkout, a link to a missing page or heading fails the build, and what
is made from the code is there: every command in the command-line
reference, every setting in the configuration table, the README's parts
where the pages show them."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from conftest import ROOT
from newsletter.cli import cli
from newsletter.core.config import DECLARED

MKDOCS_YML = ROOT / "mkdocs.yml"
# What a build reads besides the pages: the README's parts, .env.example.
BUILD_INPUTS = ["mkdocs.yml", "docs", "README.md", ".env.example"]
# Any attempt to reach the network goes to a port where nothing listens.
NO_NETWORK = {name: "http://127.0.0.1:9" for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}


def build(source: Path, site: Path) -> subprocess.CompletedProcess:
    """Run ``mkdocs build --strict`` on the site whose mkdocs.yml is in
    ``source``, into ``site``, importing the package of this checkout."""
    pytest.importorskip("mkdocs", reason="mkdocs is missing: install the test extras (pip install -e '.[test]')")
    env = {
        **os.environ, **NO_NETWORK,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "NO_MKDOCS_2_WARNING": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(source / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=source, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built from this checkout."""
    site = tmp_path_factory.mktemp("site")
    run = build(ROOT, site)
    assert run.returncode == 0, run.stdout + run.stderr
    return site


def page_text(site: Path, page: str) -> str:
    """The text of a built page, its tags removed and entities read."""
    return html.unescape(re.sub(r"<[^>]+>", "", (site / page / "index.html").read_text(encoding="utf-8")))


def command_paths(command: click.Command, path: str = "newsletter") -> list[str]:
    """Every command under ``command``, as typed (``newsletter db backup``)."""
    paths = [path]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        paths += command_paths(sub, f"{path} {name}")
    return paths


def test_site_builds_strict_and_offline(site):
    assert (site / "index.html").is_file()
    for page in ["getting-started", "guides/sending", "reference/cli", "reference/configuration",
                 "performance", "architecture"]:
        assert (site / page / "index.html").is_file(), page
    # Only the theme's own files: no font or script from another site.
    index = (site / "index.html").read_text(encoding="utf-8")
    assert not re.findall(r'<(?:link|script)[^>]*(?:href|src)="https?://', index)


def test_command_line_reference_has_every_command(site):
    reference = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    paths = command_paths(cli)
    assert {"newsletter send", "newsletter db backup", "newsletter subscribers import"} <= set(paths)
    for path in paths:
        assert f'id="{path.replace(" ", "-")}"' in reference, f"{path} is not in the command-line reference"
    text = page_text(site, "reference/cli")
    for option in ["--resend-rendering-failures", "--password-stdin", "--seed-papers"]:
        assert option in text


def test_configuration_reference_has_every_setting(site):
    text = page_text(site, "reference/configuration")
    for declared in DECLARED:
        assert declared.variable in text, declared.variable
        assert " ".join(declared.help.replace("`", "").split()) in " ".join(text.split()), declared.variable


def test_pages_show_the_readme_parts(site):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "<!-- part: what it is -->" in readme and "<!-- part: going to production -->" in readme
    assert "Delivers exactly once" in page_text(site, ".")
    production = (site / "getting-started" / "index.html").read_text(encoding="utf-8")
    assert "newsletter admin add NAME" in html.unescape(production)
    # The README's links into docs/ lead to the pages on the site.
    assert 'href="../guides/ses/"' in production


@pytest.mark.parametrize(
    "page, change",
    [
        ("guides/sending.md", lambda t: t + "\nSee [the backups](backup.md).\n"),
        ("guides/sending.md", lambda t: t + "\nSee [the exit codes](#exit-code).\n"),
        ("reference/templates.md", lambda t: t + "\nSee [SES](../guides/ses.md#no-such-step).\n"),
    ],
)
def test_a_broken_link_fails_the_build(tmp_path, page, change):
    source = tmp_path / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, source / name)
    edited = source / "docs" / page
    edited.write_text(change(edited.read_text(encoding="utf-8")), encoding="utf-8")
    run = build(source, tmp_path / "site")
    assert run.returncode != 0, run.stdout + run.stderr
    assert f"'{page}'" in run.stderr, run.stderr
