"""The rendered email and its web version checked by the tools an audit
uses: axe-core in headless Chromium (no serious or critical violation, in
light and in dark colour schemes) and html-validate (clean, with the rules
that do not apply to email HTML turned off in tests/js/htmlvalidate-email.cjs,
each with its reason).

Both are npm packages pinned in tests/js/package-lock.json and installed by
tests/ensure-tools.sh (``npm ci``); nothing is downloaded here. Without node
or the installed packages these tests are skipped with the reason, and fail
in CI.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_render import synthetic_batch

from conftest import EXAMPLE, FIXTURES, SECRET, reader_parts, unavailable
from newsletter.papers.batches import load_batch
from newsletter.core.config import Settings
from newsletter.core.models import Pick, Reason, paper_key
from newsletter.issue.render import render_for_readers, render_issue
from newsletter.readers.tokens import Signer

JS = Path(__file__).resolve().parent / "js"
MODULES = JS / "node_modules"
HTML_VALIDATE_CONFIG = JS / "htmlvalidate-email.cjs"
AXE = MODULES / "axe-core" / "axe.min.js"
DAY = dt.date(2025, 3, 11)
BLOCKING = ("serious", "critical")


def node_tools() -> str:
    """Return the path of ``node``, once the pinned packages are installed;
    skip (fail in CI) with the reason when they cannot be run."""
    node = shutil.which("node")
    if not node:
        unavailable("node is not installed (apt-get install nodejs npm; `make test` does it as root)")
    if not (MODULES / "axe-core").is_dir() or not (MODULES / "html-validate").is_dir():
        unavailable("tests/js/node_modules is missing: run `bash tests/ensure-tools.sh` (npm ci in tests/js)")
    return node


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> dict[str, Path]:
    """The email and the web version of three days, written to files as a
    reader's browser or mail client would get them: the example day (all
    cards), the daily papers API fixture (every rich field) and a
    synthetic 300-paper day (cards, then the compact list); and the example
    day as a reader gets it, with 👍/👎 links and "Picked for you" (five
    picks, one of each kind of reason), or the invitation to say what they
    read."""
    folder = tmp_path_factory.mktemp("documents")
    settings = Settings()
    days = {
        "example": load_batch(EXAMPLE, date=DAY),
        "api": load_batch(FIXTURES / "api" / "daily_papers.json"),
        "big": synthetic_batch(300),
    }
    files = {}
    for name, batch in days.items():
        issue = render_issue(batch, settings)
        html, _text = issue.personalized("https://news.example.org/u/a-reader-token")
        for kind, markup in (("email", html), ("web", issue.web_html)):
            path = folder / f"{name}-{kind}.html"
            path.write_text(markup, encoding="utf-8")
            files[f"{name}-{kind}"] = path
    reader = SimpleNamespace(id=1, email="ada@example.com", name="Ada", ref="a-reader-ref-of-22-chars")
    issue = render_for_readers(days["example"], settings, Signer(SECRET))
    subjects = {"interest": "machine unlearning", "author": "Ada Lovelace", "seed": "Score Forgetting Distillation",
                "liked": "MarvelOVD", "category": "cs.CV"}
    picks = [Pick(position, paper_key(issue.papers[position]), 0.5, Reason(kind, subject))
             for position, (kind, subject) in zip((31, 0, 77, 36, 3), subjects.items())]
    for name, state in (("picks", "picks"), ("invite", "invite")):
        html, _text = reader_parts(issue, reader, state, picks if state == "picks" else ())
        path = folder / f"{name}-email.html"
        path.write_text(html, encoding="utf-8")
        files[f"{name}-email"] = path
    return files


# --------------------------------------------------------------------------
# html-validate


def html_validate(node: str, *paths: Path) -> tuple[int, list[dict]]:
    """Run html-validate's CLI through node on ``paths``; return its exit code
    and the messages it reported (file, line, rule, message)."""
    package = json.loads((MODULES / "html-validate" / "package.json").read_text(encoding="utf-8"))
    bin_entry = package["bin"] if isinstance(package["bin"], str) else package["bin"]["html-validate"]
    result = subprocess.run(
        [node, str(MODULES / "html-validate" / bin_entry), "--config", str(HTML_VALIDATE_CONFIG),
         "--formatter", "json", *map(str, paths)],
        capture_output=True, text=True, timeout=120, cwd=JS,
    )
    reports = json.loads(result.stdout or "[]")
    messages = [
        {"file": Path(r["filePath"]).name, "line": m["line"], "rule": m["ruleId"], "message": m["message"]}
        for r in reports for m in r["messages"]
    ]
    return result.returncode, messages


def test_html_validate_finds_nothing(documents):
    # The reader's copies hold what they are here to check.
    picks = documents["picks-email"].read_text(encoding="utf-8")
    # Votes on the cards only: five picks and the top eight.
    assert "Picked for you" in picks and picks.count("/f/") == 2 * (5 + 8)
    assert "Tell us what you like" in documents["invite-email"].read_text(encoding="utf-8")
    node = node_tools()
    code, messages = html_validate(node, *documents.values())
    assert messages == [] and code == 0, "\n".join(map(str, messages[:40]))


def test_html_validate_would_catch_a_broken_card(documents, tmp_path):
    """The check is not vacuous: a card left unclosed, an id used twice and
    a link with no text are reported."""
    node = node_tools()
    markup = documents["api-email"].read_text(encoding="utf-8")
    broken = markup.replace("</h3>", "", 1).replace('class="card top"', 'id="dup" class="card top"', 2)
    broken = broken.replace(">PDF</a>", "></a>", 1)
    path = tmp_path / "broken.html"
    path.write_text(broken, encoding="utf-8")
    code, messages = html_validate(node, path)
    assert code != 0
    rules = {m["rule"] for m in messages}
    assert {"no-dup-id", "wcag/h30"} <= rules, messages
    assert rules & {"close-order", "element-permitted-content", "close-attr"}, messages


def test_each_rule_turned_off_says_why():
    text = HTML_VALIDATE_CONFIG.read_text(encoding="utf-8")
    lines = text.splitlines()
    off = [i for i, line in enumerate(lines) if re.search(r'"[a-z-]+":\s*"off"', line)]
    assert off, "the config turns no rule off"
    for index in off:
        # Each turned-off rule has a comment right above it (or above the
        # rules it is grouped with).
        above = index - 1
        while above >= 0 and re.search(r'"[a-z-]+":\s*"off"', lines[above]):
            above -= 1
        assert lines[above].strip().startswith("//"), f"no reason given for: {lines[index].strip()}"
    assert '"html-validate:recommended"' in text and "root: true" in text


# --------------------------------------------------------------------------
# axe-core in Chromium


def axe_violations(page, markup: str) -> list[dict]:
    """Load ``markup`` into ``page``, run axe-core on it and return its
    violations (rule id, impact, how many elements, the first failure)."""
    page.set_content(markup, wait_until="load")
    page.add_script_tag(path=str(AXE))
    return page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            if (result.passes.length + result.violations.length === 0) throw new Error("axe ran no rule");
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, count: v.nodes.length,
                first: v.nodes[0].target.join(" ") + ": " + v.nodes[0].failureSummary,
            }));
        }"""
    )


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("document", ["example-email", "example-web", "api-email", "big-email", "picks-email",
                                      "invite-email"])
def test_axe_finds_no_serious_or_critical_violation(documents, new_page, scheme, document):
    node_tools()
    page = new_page(viewport={"width": 600, "height": 900}, color_scheme=scheme)
    violations = axe_violations(page, documents[document].read_text(encoding="utf-8"))
    blocking = [v for v in violations if v["impact"] in BLOCKING]
    assert blocking == [], json.dumps(blocking, ensure_ascii=False, indent=1)


@pytest.mark.browser
def test_axe_would_catch_the_old_grey(documents, new_page):
    """The check is not vacuous: the rank numbers in the old #8a9099 grey
    (3.2:1 on white) are a serious colour-contrast violation."""
    node_tools()
    markup = documents["api-email"].read_text(encoding="utf-8")
    old = re.sub(r'(class="n" style="color:)#6b7280', r"\1#8a9099", markup)
    assert old != markup
    violations = axe_violations(new_page(color_scheme="light"), old)
    assert any(v["id"] == "color-contrast" and v["impact"] == "serious" for v in violations), violations
