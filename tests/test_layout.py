"""The package's layout: imports point one way (the import-linter contracts
in pyproject.toml are kept), every module has its place in the layers, and
the Layout section of docs/architecture.md names exactly the package's
modules and states the contract's layers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

from conftest import ROOT

PACKAGE = ROOT / "newsletter"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
PAGE = ARCHITECTURE.relative_to(ROOT).as_posix()
PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def contracts() -> dict[str, dict]:
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def contract_layers() -> list[str]:
    """The layers contract's layers, top first, as written (``a | b``)."""
    return contracts()["layers"]["layers"]


def layer_names(layers: list[str]) -> list[str]:
    return [name.strip() for layer in layers for name in re.split(r"[|:]", layer)]


def lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the venv's lint-imports on the contracts in pyproject.toml."""
    assert LINT_IMPORTS.is_file(), f"{LINT_IMPORTS} is missing: install the test extras (pip install -e '.[test]')"
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(PYPROJECT), "--no-cache"],
        cwd=cwd, env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True, text=True, timeout=120,
    )


def package_entries(package: Path) -> set[str]:
    """Every module and package under ``package``, as paths relative to it
    (``store/``, ``store/engine.py``); ``__init__.py`` files go with their
    package, and a ``migrations/`` folder stands for the scripts in it."""
    entries = set()
    for path in package.rglob("*.py"):
        relative = path.relative_to(package)
        if "__pycache__" in relative.parts:
            continue
        if "migrations" in relative.parts[:-1]:
            # Alembic's scripts: the folder is listed, not each revision.
            entries.add("/".join(relative.parts[: relative.parts.index("migrations") + 1]) + "/")
            continue
        if path.name != "__init__.py":
            entries.add(relative.as_posix())
        elif path.parent != package:
            entries.add(relative.parent.as_posix() + "/")
    return entries


def documented_layout(page: str) -> tuple[dict[str, str], list[str]]:
    """From the Layout section of the architecture page: what its tree lists under
    ``newsletter/`` (path -> the line's description), and its numbered list of
    layers with the backticks removed."""
    section = page.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    tree = section.split("```", 2)[1]
    listed: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # the folders the current line is in
    inside = False
    for line in tree.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        name, _, description = line.strip().partition(" ")
        if indent == 0:
            inside = name == "newsletter/"
            stack = []
            continue
        if not inside:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = "".join(folder for _, folder in stack) + name
        listed[path] = description.strip()
        if name.endswith("/"):
            stack.append((indent, name))
    layers = [
        " ".join(match.group(1).replace("`", "").split())
        for match in re.finditer(r"^\d+\. (.+)$", section, flags=re.MULTILINE)
    ]
    return listed, layers


def layout_problems(page: str, package: Path, layers: list[str]) -> list[str]:
    """What the Layout section of the architecture page gets wrong about
    ``package`` and the contract's ``layers``."""
    listed, page_layers = documented_layout(page)
    problems = [
        f"newsletter/{entry} is not in the Layout of {PAGE}" for entry in sorted(package_entries(package) - set(listed))
    ]
    for entry, text in listed.items():
        if not (package / entry).exists():
            problems.append(f"the Layout of {PAGE} names newsletter/{entry}, which does not exist")
        if not text:
            problems.append(f"the Layout of {PAGE} does not say what newsletter/{entry} is")
    contract = [" ".join(layer.split()) for layer in layers]
    if page_layers != contract:
        problems.append(f"the layers of {PAGE} {page_layers} are not the contract's {contract}")
    return problems


# --------------------------------------------------------------------------
# the contracts


def test_import_contracts_are_kept():
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(contracts())} kept, 0 broken" in run.stdout, run.stdout


def test_import_contracts_catch_a_wrong_import(tmp_path):
    """A copy of the package with imports that break each contract, and a
    module with no place in the layers: lint-imports names every one."""
    copy = tmp_path / "newsletter"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "core" / "models.py").open("a", encoding="utf-8") as models:
        models.write("\nimport argon2\nimport boto3\nimport click\n\nfrom newsletter import cli\n")
    with (copy / "readers" / "tokens.py").open("a", encoding="utf-8") as tokens:
        tokens.write("\nimport flask\nimport sklearn\nimport sqlalchemy\nimport PIL\n")
    (copy / "stray.py").write_text('"""A module with no layer."""\n', encoding="utf-8")
    # Inside each domain package, a module that imports one above it.
    upward = {
        "core/models.py": "newsletter.core.config",
        "sending/personalize.py": "newsletter.sending.run",
        "picks/ranking.py": "newsletter.picks.picking",
        "readers/tokens.py": "newsletter.readers.signup",
        "papers/batches.py": "newsletter.papers.fetch",
        "papers/fetch.py": "newsletter.papers.thumbnails",
        "issue/editions.py": "newsletter.issue.render",
        "operators/passwords.py": "newsletter.operators.admins",
    }
    for module, target in upward.items():
        with (copy / module).open("a", encoding="utf-8") as source:
            source.write(f"\nimport {target}\n")

    run = lint_imports(tmp_path, env={"PYTHONPATH": str(tmp_path)})
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert f"0 kept, {len(contracts())} broken" in output, output
    for expected in [
        "newsletter.core.models -> newsletter.cli",
        "newsletter.stray",
        "newsletter.core.models -> click",
        "newsletter.core.models -> boto3",
        "newsletter.core.models -> argon2",
        "newsletter.readers.tokens -> flask",
        "newsletter.readers.tokens -> sqlalchemy",
        "newsletter.readers.tokens -> sklearn",
        "newsletter.readers.tokens -> PIL",
        *(f"newsletter.{module[:-3].replace('/', '.')} -> {target}" for module, target in upward.items()),
    ]:
        assert expected in output, f"{expected!r} not reported:\n{output}"


def test_every_module_has_its_place_in_the_layers():
    layers = contracts()["layers"]
    assert layers["type"] == "layers" and layers["containers"] == ["newsletter"]
    assert layers.get("exhaustive") is True  # lint-imports itself refuses a module with no layer
    names = layer_names(layers["layers"])
    assert len(names) == len(set(names)), names
    children = {path.stem for path in PACKAGE.glob("*.py") if path.name != "__init__.py"}
    children |= {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert set(names) == children, (
        f"not in the layers: {sorted(children - set(names))}; no such module: {sorted(set(names) - children)}"
    )


def test_package_root_imports_nothing_of_the_package():
    """``newsletter/__init__.py`` is the layers' container, which the contract
    does not place: cli and fetch import it for the version, so it must not
    import any module of the package (or those would reach around the layers)."""
    graph = grimp.build_graph("newsletter")
    assert graph.find_modules_directly_imported_by("newsletter") == set()
    assert graph.find_modules_that_directly_import("newsletter") >= {"newsletter.cli", "newsletter.papers.fetch"}


# --------------------------------------------------------------------------
# the architecture page


def test_architecture_layout_lists_every_module_and_states_the_layers():
    problems = layout_problems(ARCHITECTURE.read_text(encoding="utf-8"), PACKAGE, contract_layers())
    assert not problems, "\n".join(problems)
    listed, _ = documented_layout(ARCHITECTURE.read_text(encoding="utf-8"))
    assert {"store/", "store/engine.py", "sending/senders/ses.py", "__main__.py", "templates/"} <= set(listed)


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda t: t.replace("    ledger.py ", "    ledgers.py "), "newsletter/store/ledger.py is not in"),
        (lambda t: t.replace("    ledger.py ", "    ledgers.py "), "names newsletter/store/ledgers.py, which does not"),
        (lambda t: t.replace("    fetch.py ", "    loader.py         the old batch loader\n    fetch.py "),
         "names newsletter/papers/loader.py, which does not exist"),
        (lambda t: re.sub(r"\n +smtp\.py .*", "", t, count=1),
         "newsletter/sending/senders/smtp.py is not in"),
        (lambda t: re.sub(r"\n  sending/ .*", "", t, count=1), "newsletter/sending/ is not in"),
        (lambda t: re.sub(r"\n    tokens\.py .*", "\n    tokens.py", t, count=1),
         "does not say what newsletter/readers/tokens.py is"),
        (lambda t: t.replace("2. `cli`\n3. `web`", "2. `web`\n3. `cli`"), "are not the contract's"),
        (lambda t: t.replace("`store` | `papers`", "`store`"), "are not the contract's"),
    ],
)
def test_architecture_layout_check_finds_disagreements(change, problem):
    text = ARCHITECTURE.read_text(encoding="utf-8")
    changed = change(text)
    assert changed != text
    problems = layout_problems(changed, PACKAGE, contract_layers())
    assert any(problem in found for found in problems), problems
