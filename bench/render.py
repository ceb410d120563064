"""Benchmark: load and render the example day, and a synthetic 500-paper day.

Run from anywhere: ``python bench/render.py [--runs N]`` (``make bench``).
Prints the median, min and max over N runs (after one untimed warm-up run
that fills the template cache) of:

* ``load_batch`` on examples/daily-papers-mar-11.txt;
* ``render_issue`` on it, and its two heavy steps measured on their own:
  ``compile_mjml`` of the email's MJML and ``inline_css`` of the result;
* the total, load + render;

then the sizes of what was rendered (the email's HTML also as sent,
quoted-printable: what the size budget measures), and the render time of a
synthetic day of 500 papers, big enough that the email must fall back to
listed titles.
Nothing here asserts a time: the figures are for people to compare.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "daily-papers-mar-11.txt"
DATE = dt.date(2025, 3, 11)
SYNTHETIC_PAPERS = 500

try:
    import newsletter  # noqa: F401
except ImportError:  # run with a Python that does not have the package installed
    sys.path.insert(0, str(ROOT))

from newsletter import render as render_module  # noqa: E402
from newsletter.batches import load_batch  # noqa: E402
from newsletter.config import Settings  # noqa: E402
from newsletter.models import Batch, Issue, Paper  # noqa: E402
from newsletter.render import (  # noqa: E402
    GMAIL_CLIP_BYTES,
    PACKAGE_TEMPLATES,
    compile_mjml,
    encoded_bytes,
    inline_css,
    render_issue,
)


def timed(function: Callable[[], object], runs: int) -> tuple[list[float], object]:
    """Call ``function`` once untimed, then ``runs`` times; return the times
    in seconds and the last result."""
    result = function()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return times, result


def email_steps(batch: Batch, settings: Settings) -> tuple[str, str, dict[str, float | int]]:
    """Render ``batch`` once with ``compile_mjml`` and ``inline_css`` watched.

    Returns the MJML of the email as sent (the source whose compiled HTML is
    inlined), that compiled HTML, and the calls and seconds spent in each step
    within that one ``render_issue``.
    """
    compiled_from: dict[str, str] = {}
    inlined: list[str] = []
    spent = {"compile_calls": 0, "compile_s": 0.0, "inline_calls": 0, "inline_s": 0.0}

    def watched_compile(source: str) -> str:
        start = time.perf_counter()
        html = compile_mjml(source)
        spent["compile_s"] += time.perf_counter() - start
        spent["compile_calls"] += 1
        compiled_from[html] = source
        return html

    def watched_inline(html: str) -> str:
        start = time.perf_counter()
        result = inline_css(html)
        spent["inline_s"] += time.perf_counter() - start
        spent["inline_calls"] += 1
        inlined.append(html)
        return result

    render_module.compile_mjml, render_module.inline_css = watched_compile, watched_inline
    try:
        render_issue(batch, settings)
    finally:
        render_module.compile_mjml, render_module.inline_css = compile_mjml, inline_css
    html = inlined[-1]
    return compiled_from[html], html, spent


def synthetic_batch(template: Batch, count: int = SYNTHETIC_PAPERS) -> Batch:
    """Return a day of ``count`` distinct papers made from ``template``'s,
    with arXiv ids and falling upvotes like a real busy day."""
    papers = []
    for i in range(count):
        model = template.papers[i % len(template.papers)]
        papers.append(
            Paper(
                title=f"{model.title} (variant {i + 1})",
                abstract=model.abstract,
                authors=tuple(f"Author {i}-{k}" for k in range(1 + i % 7)),
                arxiv_id=f"2503.{10000 + i}",
                url=f"https://arxiv.org/abs/2503.{10000 + i}",
                upvotes=count - i,
                code_url=model.code_url,
            )
        )
    return Batch(date=template.date, papers=tuple(papers), source="synthetic")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:9.1f} ms"


def row(label: str, times: list[float]) -> str:
    return f"  {label:<36}{ms(statistics.median(times))}{ms(min(times))}{ms(max(times))}"


def layout(issue: Issue) -> str:
    return (
        f"{issue.paper_count} papers → {issue.card_count} cards, "
        f"{issue.listed_count} listed, {issue.more_count} web-only"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per measure (default: 30)")
    parser.add_argument(
        "--templates", type=Path, default=PACKAGE_TEMPLATES,
        help="templates folder (default: the package's own templates)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    settings = Settings(templates_dir=args.templates)
    runs = args.runs

    load_times, batch = timed(lambda: load_batch(EXAMPLE, date=DATE), runs)
    render_times, issue = timed(lambda: render_issue(batch, settings), runs)
    total_times, _ = timed(lambda: render_issue(load_batch(EXAMPLE, date=DATE), settings), runs)
    mjml, compiled, spent = email_steps(batch, settings)
    compile_times, _ = timed(lambda: compile_mjml(mjml), runs)
    inline_times, _ = timed(lambda: inline_css(compiled), runs)

    big = synthetic_batch(batch)
    big_times, big_issue = timed(lambda: render_issue(big, settings), runs)
    _, _, big_spent = email_steps(big, settings)

    print(f"Render benchmark: {EXAMPLE.relative_to(ROOT)}, {runs} runs each after 1 warm-up")
    print(f"Python {sys.version.split()[0]}, templates: {args.templates}")
    print()
    print(f"  {'step':<36}{'median':>12}{'min':>12}{'max':>12}")
    print(row("load_batch", load_times))
    print(row("render_issue", render_times))
    print(row("  compile_mjml (the email's MJML)", compile_times))
    print(row("  inline_css (the compiled email)", inline_times))
    print(row("load + render", total_times))
    print(row(f"render_issue, synthetic {SYNTHETIC_PAPERS} papers", big_times))
    print()
    for name, day, steps in (("example day", issue, spent), (f"synthetic {SYNTHETIC_PAPERS}", big_issue, big_spent)):
        print(f"  {name}: {layout(day)}")
        sent = encoded_bytes(day.html)
        print(
            f"    email HTML {day.html_bytes:,} bytes, {sent:,} as sent (quoted-printable; "
            f"{sent / GMAIL_CLIP_BYTES:.0%} of Gmail's {GMAIL_CLIP_BYTES:,}-byte clip), "
            f"text {day.text_bytes:,} bytes, web version {len(day.web_html.encode('utf-8')):,} bytes"
        )
        print(
            f"    one render_issue: {steps['compile_calls']} compile_mjml calls "
            f"({steps['compile_s'] * 1000:.1f} ms), {steps['inline_calls']} inline_css "
            f"({steps['inline_s'] * 1000:.1f} ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
