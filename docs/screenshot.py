"""Make docs/assets/reader-email.png, the picture of a reader's email on the
home page: the example day sent through the outbox sender to one reader
with interests (so it shows "Picked for you"), and the top of that
message's HTML part shot at 600 px in headless Chromium.

    python docs/screenshot.py [--out docs/assets/reader-email.png]

Everything happens in a scratch folder (its own database, outbox and
settings): nothing of the checkout's is read or changed but the picture.
Needs Debian's chromium and fonts-noto-color-emoji (for the 👍/👎 links)
and the Python package playwright (the test extras).
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "daily-papers-mar-11.txt"
DATE = "2025-03-11"
READER = "ada@example.com"
INTERESTS = "machine unlearning; concept erasure; vision-language models"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WIDTH, HEIGHT = 600, 1100  # the email's width; its masthead, picks and first cards


def newsletter(folder: Path, *args: str) -> None:
    """Run this checkout's ``newsletter`` command in ``folder``; raises
    CalledProcessError when it fails."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{folder / 'newsletter.db'}",
        "NEWSLETTER_OUTBOX_DIR": str(folder / "outbox"),
        "NEWSLETTER_SENDER": "outbox",
        "NEWSLETTER_SECRET_KEY": secrets.token_urlsafe(32),
        "NEWSLETTER_BASE_URL": "https://papers.example.org",
    }
    subprocess.run([sys.executable, "-m", "newsletter", *args], cwd=folder, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def reader_email_html(folder: Path) -> str:
    """Send the example day to one reader through the outbox and return the
    HTML part of the message written for them."""
    newsletter(folder, "subscribers", "add", READER, "--name", "Ada Lovelace")
    newsletter(folder, "subscribers", "interests", READER, "--keywords", INTERESTS)
    newsletter(folder, "send", str(EXAMPLE), "--date", DATE)
    [message_file] = sorted((folder / "outbox").glob("*/*.eml"))
    message = email.message_from_bytes(message_file.read_bytes(), policy=email.policy.default)
    return message.get_body(preferencelist=("html",)).get_content()


def shoot(html: str, out: Path) -> None:
    """Write the top of ``html`` at the email's width as a PNG to ``out``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT}, color_scheme="light")
        # The email loads nothing from the network; block it all the same.
        page.route("**/*", lambda route: route.abort() if route.request.url.startswith("http") else route.continue_())
        page.set_content(html)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), clip={"x": 0, "y": 0, "width": WIDTH, "height": HEIGHT})
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "assets" / "reader-email.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        html = reader_email_html(Path(scratch))
    shoot(html, args.out)
    print(f"Wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
