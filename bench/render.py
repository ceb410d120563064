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
listed titles. Each day is rendered twice: as the web version and ``render``
show it (no reader), and as readers get it (``newsletter send``: 👍/👎
links on every paper, room for a "Picked for you" section), with the size
of the largest copy a reader can get (10 picks, the day's longest titles).
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

from newsletter.issue import render as render_module  # noqa: E402
from newsletter.papers.batches import load_batch  # noqa: E402
from newsletter.core.config import Settings  # noqa: E402
from newsletter.core.models import MAX_PICKS, Batch, Issue, Paper, Pick, Reason, paper_key  # noqa: E402
from newsletter.sending.personalize import Recipient, picks_section  # noqa: E402
from newsletter.issue.render import (  # noqa: E402
    GMAIL_CLIP_BYTES,
    PACKAGE_TEMPLATES,
    compile_mjml,
    encoded_bytes,
    inline_css,
    render_for_readers,
    render_issue,
)
from newsletter.readers.tokens import Signer  # noqa: E402


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


SECRET = "dxtEQZMdnn6B4mWzyuJiERci05PjOKsu7h92_qLYz9M"


def largest_copy(issue: Issue, settings: Settings) -> int:
    """Bytes as sent (quoted-printable) of the largest HTML a reader gets
    of ``issue``: 10 picks of the papers with the longest titles, each with
    the longest reason, their links as long as real ones."""
    signer = Signer(SECRET)
    ref = "R" * 22
    # Of the papers that can be picked: a very big day's tail has no pick card.
    longest = sorted(range(issue.pickable), key=lambda i: len(issue.papers[i].title), reverse=True)[:MAX_PICKS]
    picks = tuple(Pick(i, paper_key(issue.papers[i]), 1.0, Reason("liked", "W" * 200)) for i in longest)
    recipient = Recipient(1, "reader@example.org", None, signer.unsubscribe_url(settings.base_url, ref),
                          preferences_url=signer.preferences_url(settings.base_url, ref),
                          feedback=signer.feedback_reader_part(ref, issue.edition), picks_state="picks", picks=picks)
    html, _text = issue.personalized(recipient.unsubscribe_url, recipient.preferences_url, recipient.feedback,
                                     picks_section(issue, recipient))
    return encoded_bytes(html)


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
    signer = Signer(SECRET)
    reader_times, reader_issue = timed(lambda: render_for_readers(batch, settings, signer), runs)
    big_reader = render_for_readers(big, settings, signer)

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
    print(row("render as readers get it", reader_times))
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
    for name, day in (("example day", reader_issue), (f"synthetic {SYNTHETIC_PAPERS}", big_reader)):
        largest = largest_copy(day, settings)
        print(f"  {name}, as readers get it: {layout(day)}; the largest copy a reader can get (10 picks) "
              f"{largest:,} bytes as sent, {largest / GMAIL_CLIP_BYTES:.0%} of the clip")
    return 0


if __name__ == "__main__":
    sys.exit(main())
