"""Evaluation: how often is a card's TL;DR the abstract's contribution sentence?

Run from anywhere: ``python bench/tldr.py`` (``make bench``). On the 85
papers of examples/daily-papers-mar-11.txt (none has an AI summary, so every
teaser comes from the abstract) it prints:

* the share whose TL;DR is a contribution sentence rather than the first
  sentence, and how many abstracts have no contribution sentence at all;
* on the abstracts labelled by reading (tests/fixtures/tldr-labels.json:
  the sentence that states what the paper brings, labelled before the rules
  were tuned), the share where the picker found that sentence, and the ones
  it missed;
* the time to pick the day's TL;DRs, and the email's size with TL;DRs and
  with first sentences (``NEWSLETTER_TEASER=abstract``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "daily-papers-mar-11.txt"
LABELS = ROOT / "tests" / "fixtures" / "tldr-labels.json"
DATE = dt.date(2025, 3, 11)
RUNS = 30

try:
    import newsletter  # noqa: F401
except ImportError:  # run with a Python that does not have the package installed
    sys.path.insert(0, str(ROOT))

from newsletter.core.config import Settings  # noqa: E402
from newsletter.issue.render import TEASER_CHARS, encoded_bytes, render_issue  # noqa: E402
from newsletter.issue.tldr import contribution_index, sentences, tldr  # noqa: E402
from newsletter.papers.batches import load_batch  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n", 1)[0]).parse_args(argv)
    papers = load_batch(EXAMPLE, date=DATE).papers
    picked = [contribution_index(sentences(p.abstract)) for p in papers]
    moved = sum(1 for index in picked if index)
    none = sum(1 for index in picked if index is None)
    print(f"TL;DR benchmark: {EXAMPLE.relative_to(ROOT)}, {len(papers)} papers, "
          f"{sum(1 for p in papers if p.ai_summary)} with an AI summary")
    print(f"  TL;DR is a contribution sentence, not the first: {moved} of {len(papers)} ({moved / len(papers):.0%})")
    print(f"  TL;DR is the first sentence, itself the contribution: {len(papers) - moved - none}")
    print(f"  no contribution sentence (the first sentence is shown): {none}")

    labels = json.loads(LABELS.read_text(encoding="utf-8"))["papers"]
    by_title = {p.title: p for p in papers}
    missed = []
    for label in labels:
        index = contribution_index(sentences(by_title[label["title"]].abstract))
        if index != label["contribution"]:
            missed.append(f"    {label['title'][:60]}: picked sentence {index}, labelled {label['contribution']}")
    found = len(labels) - len(missed)
    print(f"  hand-labelled abstracts: the labelled sentence found in {found} of {len(labels)} "
          f"({found / len(labels):.0%})")
    print("\n".join(missed))

    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        for paper in papers:
            tldr(paper.abstract, TEASER_CHARS)
        times.append(time.perf_counter() - start)
    print(f"  picking the day's {len(papers)} TL;DRs: {statistics.median(times) * 1000:.1f} ms (median of {RUNS})")
    for source in ("summary", "abstract"):
        issue = render_issue(load_batch(EXAMPLE, date=DATE), Settings(teaser=source))
        print(f"  email with NEWSLETTER_TEASER={source}: {issue.card_count} cards, "
              f"{encoded_bytes(issue.html):,} bytes as sent, text {issue.text_bytes:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
