"""Benchmark: how each reader's email looks and weighs, as the outbox wrote it.

Run from anywhere: ``python bench/email_look.py [--keep DIR] [--no-browser]``
(``make bench``). In a scratch folder (its own SQLite database, outbox and
settings) the real command imports subscribers/example.csv and sends the
example day (examples/daily-papers-mar-11.txt, Tue 11 Mar 2025) through the
outbox sender; then the same day is stored under the six following dates
(``newsletter render``) and ``send --weekly --date 2025-03-17`` sends the
weekly edition of 11–17 Mar to the list's weekly reader (the same papers
seven days running: one week's edition of the example's 85 papers).

For each reader's message (``<id>-<address>.eml``), read with the email
package and the project's own HTML parser (lxml), one row of:

* the HTML part's bytes as sent (quoted-printable) and decoded;
* cards (``td.card``), pick cards (``td.card.pick``), top cards
  (``td.card.top``), and how many pick cards have both a TL;DR (``p.tz``)
  and authors (``.au``);
* vote links (``a`` whose href holds ``/f/`` and ends with ``/up`` or
  ``/down``) and their share of the HTML: the bytes of those whole
  ``<a …>…</a>`` elements over the decoded HTML's;
* the rest of the day: ``ul.rest`` (its titles) or ``p.more`` (one line);
* the text part's lines, and how many of them are vote URLs;
* the height of the HTML in px at 375 px wide in headless Chromium
  (``document.documentElement.scrollHeight`` once loaded).

A selector the email does not use counts 0. Then the medians of the daily
readers' rows. Nothing here asserts anything: the figures are for people to
compare before and after a change of the email's layout.
"""

from __future__ import annotations

import argparse
import dataclasses
import email
import email.policy
import html as html_module
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from lxml import html as lxml_html

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "daily-papers-mar-11.txt"
SUBSCRIBERS = ROOT / "subscribers" / "example.csv"
JUST_THE_TOP = "ada.top@example.com"
DATE = "2025-03-11"
WEEK_DAYS = range(12, 18)  # 12–17 Mar 2025: with the 11th, the week of Monday 17 Mar
WEEKLY_DATE = "2025-03-17"
WIDTH = 375  # a phone
CHROMIUM = "/usr/bin/chromium"
# As tests/conftest.py launches it.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

# A vote link: /f/<token>/up or /f/<token>/down on the site.
VOTE_HREF = re.compile(r"/f/.*/(up|down)$")
# Every <a …>…</a> of the source, to weigh the vote links as the HTML carries
# them (lxml would weigh its own serialization); links do not nest.
ANCHOR = re.compile(r"<a\b[^>]*>.*?</a\s*>", re.IGNORECASE | re.DOTALL)
HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)
VOTE_URL = re.compile(r"https?://\S*/f/\S*/(up|down)\b")


def has_class(name: str) -> str:
    """The XPath predicate "has class ``name``" (one of its class tokens)."""
    return f"contains(concat(' ', normalize-space(@class), ' '), ' {name} ')"


@dataclasses.dataclass
class Look:
    """What one reader's message weighs and shows."""

    reader: str
    edition: str
    sent_bytes: int = 0  # the HTML part as sent (quoted-printable)
    html_bytes: int = 0  # decoded
    cards: int = 0
    picks: int = 0
    tops: int = 0
    picks_full: int = 0  # pick cards with a TL;DR and authors
    votes: int = 0
    vote_bytes: int = 0
    rest: str = "-"  # "N listed", "more" or "-"
    text_lines: int = 0
    text_votes: int = 0
    height: int | None = None

    @property
    def vote_share(self) -> float:
        return self.vote_bytes / self.html_bytes if self.html_bytes else 0.0


def newsletter(folder: Path, env: dict[str, str], *args: str) -> None:
    """Run this checkout's ``newsletter`` command in ``folder``; on failure
    print its output and exit with its code."""
    result = subprocess.run([sys.executable, "-m", "newsletter", *args], cwd=folder, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(f"newsletter {' '.join(args)} exited {result.returncode}\n{result.stdout}{result.stderr}")
        sys.exit(result.returncode)


def send_example(folder: Path, weekly: bool = True) -> Path:
    """Import the example list and send the example day (and, with
    ``weekly``, the week's edition) through the outbox in ``folder``;
    return the outbox."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")},
        "PYTHONPATH": str(ROOT),
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{folder / 'newsletter.db'}",
        "NEWSLETTER_OUTBOX_DIR": str(folder / "outbox"),
        "NEWSLETTER_SENDER": "outbox",
        "NEWSLETTER_SECRET_KEY": secrets.token_urlsafe(32),
        "NEWSLETTER_BASE_URL": "https://papers.example.org",
    }
    newsletter(folder, env, "subscribers", "import", str(SUBSCRIBERS))
    # Ada's twin who chose "just the top": the shortest copy a reader with picks gets.
    newsletter(folder, env, "subscribers", "add", JUST_THE_TOP)
    newsletter(folder, env, "subscribers", "interests", JUST_THE_TOP, "--keywords",
               "machine unlearning; concept erasure", "--rest", "count")
    newsletter(folder, env, "send", str(EXAMPLE), "--date", DATE)
    if weekly:
        page = EXAMPLE.read_text(encoding="utf-8")
        for day in WEEK_DAYS:
            # The page names its day ("Mar 11" on a line of its own): the same
            # papers, stored as another day's.
            copy = folder / f"daily-papers-mar-{day}.txt"
            copy.write_text(re.sub(r"(?m)^Mar 11$", f"Mar {day}", page), encoding="utf-8")
            newsletter(folder, env, "render", str(copy), "--date", f"2025-03-{day}",
                       "--out", str(folder / "out" / str(day)))
        newsletter(folder, env, "send", "--weekly", "--date", WEEKLY_DATE)
    return folder / "outbox"


def reader_files(outbox: Path) -> list[Path]:
    """The readers' messages of every edition in ``outbox``, by edition then
    reader id."""
    files = [p for p in outbox.glob("*/*-*@*.eml") if p.name.split("-", 1)[0].isdigit()]
    return sorted(files, key=lambda p: (p.parent.name, int(p.name.split("-", 1)[0])))


def vote_bytes(markup: str) -> tuple[int, int]:
    """The number of vote links in ``markup`` and the UTF-8 bytes of those
    whole ``<a …>…</a>`` elements."""
    count = size = 0
    for anchor in ANCHOR.finditer(markup):
        found = HREF.search(anchor.group(0)[: anchor.group(0).index(">") + 1])
        href = html_module.unescape(next(g for g in found.groups() if g is not None)) if found else ""
        if "/f/" in href and VOTE_HREF.search(href):
            count += 1
            size += len(anchor.group(0).encode("utf-8"))
    return count, size


def measure(path: Path) -> tuple[Look, str]:
    """Measure the message at ``path``; return its figures (no height yet)
    and its decoded HTML."""
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    look = Look(reader=path.stem.split("-", 1)[1], edition=path.parent.name)
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    markup = ""
    if html_part is not None:
        look.sent_bytes = len(html_part.get_payload(decode=False).encode("ascii", "replace"))
        decoded = html_part.get_payload(decode=True)
        look.html_bytes = len(decoded)
        markup = html_part.get_content()
        doc = lxml_html.document_fromstring(markup)
        card = f"//td[{has_class('card')}]"
        look.cards = len(doc.xpath(card))
        pick_cards = doc.xpath(f"//td[{has_class('card')} and {has_class('pick')}]")
        look.picks = len(pick_cards)
        look.tops = len(doc.xpath(f"//td[{has_class('card')} and {has_class('top')}]"))
        look.picks_full = sum(1 for c in pick_cards
                              if c.xpath(f".//p[{has_class('tz')}]") and c.xpath(f".//*[{has_class('au')}]"))
        parsed_votes = sum(1 for a in doc.iter("a")
                           if "/f/" in (a.get("href") or "") and VOTE_HREF.search(a.get("href") or ""))
        look.votes, look.vote_bytes = vote_bytes(markup)
        if look.votes != parsed_votes:  # the source scan missed or doubled a link: say so, keep the parser's count
            print(f"  note: {path.name}: {parsed_votes} vote links parsed, {look.votes} weighed", file=sys.stderr)
            look.votes = parsed_votes
        rest = doc.xpath(f"//ul[{has_class('rest')}]")
        if rest:
            look.rest = f"{sum(len(r.xpath('./li')) for r in rest)} listed"
        elif doc.xpath(f"//p[{has_class('more')}]"):
            look.rest = "more"
    if text_part is not None:
        lines = text_part.get_content().splitlines()
        look.text_lines = len(lines)
        look.text_votes = sum(1 for line in lines if VOTE_URL.search(line))
    return look, markup


def heights(markups: list[str]) -> list[int | None]:
    """The height in px of each HTML document of ``markups`` at
    :data:`WIDTH` px wide in headless Chromium; None for each when Chromium
    or Playwright is missing (said once on stderr)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("  no heights: playwright is not installed (pip install -e '.[test]')", file=sys.stderr)
        return [None] * len(markups)
    if not shutil.which(CHROMIUM):
        print(f"  no heights: {CHROMIUM} is missing (apt-get install chromium)", file=sys.stderr)
        return [None] * len(markups)
    found = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": WIDTH, "height": 800})
        # The email loads nothing from the network; block it all the same.
        page.route("**/*", lambda route: route.abort() if route.request.url.startswith("http")
                   else route.continue_())
        for markup in markups:
            if not markup:
                found.append(None)
                continue
            page.set_content(markup, wait_until="load")
            found.append(page.evaluate("document.documentElement.scrollHeight"))
        browser.close()
    return found


COLUMNS = (  # heading, width, the cell of a Look
    ("reader", 20, lambda r: r.reader),
    ("edition", 17, lambda r: r.edition),
    ("sent B", 8, lambda r: f"{r.sent_bytes:,}"),
    ("HTML B", 8, lambda r: f"{r.html_bytes:,}"),
    ("cards", 5, lambda r: str(r.cards)),
    ("pick", 4, lambda r: str(r.picks)),
    ("top", 4, lambda r: str(r.tops)),
    ("pick+tz+au", 10, lambda r: str(r.picks_full)),
    ("votes", 5, lambda r: str(r.votes)),
    ("vote %", 6, lambda r: f"{r.vote_share:.1%}"),
    ("rest", 9, lambda r: r.rest),
    ("txt lines", 9, lambda r: str(r.text_lines)),
    ("txt votes", 9, lambda r: str(r.text_votes)),
    ("px @375", 7, lambda r: "-" if r.height is None else f"{r.height:,}"),
)
NUMERIC = ("sent_bytes", "html_bytes", "cards", "picks", "tops", "picks_full", "votes", "vote_bytes", "text_lines",
           "text_votes", "height")


def median_of(rows: list[Look], label: str) -> Look:
    """A row of the medians of ``rows``' figures (rounded down)."""
    middle = Look(reader=label, edition="")
    for name in NUMERIC:
        values = [getattr(r, name) for r in rows if getattr(r, name) is not None]
        setattr(middle, name, int(statistics.median(values)) if values else None)
    # The median share, not the share of the medians.
    middle.vote_bytes = int(statistics.median([r.vote_share for r in rows]) * middle.html_bytes) if middle.html_bytes else 0
    middle.rest = ""
    return middle


def table(rows: list[Look]) -> str:
    """The rows as a plain text table, one line per reader, then the medians
    of the daily readers."""
    def line(cells):
        return "  ".join(f"{c:<{w}}" if i < 2 else f"{c:>{w}}" for i, (c, (_, w, _)) in enumerate(zip(cells, COLUMNS)))

    out = [line([h for h, _, _ in COLUMNS]), line(["-" * w for _, w, _ in COLUMNS])]
    out += [line([cell(r) for _, _, cell in COLUMNS]) for r in rows]
    daily = [r for r in rows if not r.edition.endswith("-weekly")]
    if daily:
        out.append(line(["-" * w for _, w, _ in COLUMNS]))
        out.append(line([cell(median_of(daily, f"median, {len(daily)} daily")) for _, _, cell in COLUMNS]))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="work in DIR (created; must be empty) and keep its outbox of .eml files")
    parser.add_argument("--no-weekly", action="store_true", help="send the daily edition only")
    parser.add_argument("--no-browser", action="store_true", help="do not measure heights (no Chromium)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        if args.keep:
            folder = args.keep.resolve()
            folder.mkdir(parents=True, exist_ok=True)
            if any(folder.iterdir()):
                parser.error(f"--keep {args.keep}: the folder is not empty")
        outbox = send_example(folder, weekly=not args.no_weekly)
        measured = [measure(path) for path in reader_files(outbox)]
    rows = [look for look, _ in measured]
    if not args.no_browser:
        for look, height in zip(rows, heights([markup for _, markup in measured])):
            look.height = height
    print(f"Email benchmark: {EXAMPLE.relative_to(ROOT)} to {SUBSCRIBERS.relative_to(ROOT)} through the outbox"
          + ("" if args.no_weekly else f", and the weekly edition of {WEEKLY_DATE}"))
    print("vote % = bytes of the whole vote <a> elements / decoded HTML bytes; height at 375 px wide")
    print()
    print(table(rows))
    if args.keep:
        print(f"\nThe messages: {outbox}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
