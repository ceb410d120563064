"""MkDocs hooks: what the pages show from elsewhere, made at build time.

- ``<!-- settings table -->`` becomes the table of every setting, made from
  their one declaration (``newsletter.core.config.DECLARED``): its variable,
  its default as ``.env.example`` shows it, its help line, in the declared
  order.
- ``<!-- README: NAME -->`` becomes the README's part NAME (the lines between
  ``<!-- part: NAME -->`` and ``<!-- end of part: NAME -->``), its links into
  ``docs/`` made relative to the page, so the README and the site say it
  once.
"""

from __future__ import annotations

import posixpath
import re
import sys
from pathlib import Path

# The package of this checkout, whichever one the environment has installed
# (the command-line reference imports it too).
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from newsletter.core.config import DECLARED, Setting, shown_default  # noqa: E402

README = ROOT / "README.md"
SETTINGS_MARK = "<!-- settings table -->"
HEADER = "| variable | default | meaning |\n| --- | --- | --- |"
README_MARK = re.compile(r"<!-- README: (?P<name>[a-z ]+) -->")
DOCS_LINK = re.compile(r"\]\(docs/(?P<target>[^)]*)\)")


def table_default(value: object) -> str:
    """Return a default as the table shows it: between backticks as
    ``.env.example`` writes it, or "none" when there is none."""
    shown = shown_default(value)
    return f"`{shown}`" if shown else "none"


def table_row(declared: Setting) -> str:
    """Return the table's row for one declared setting."""
    return f"| `{declared.variable}` | {table_default(declared.default)} | {declared.help} |"


def settings_table() -> str:
    """Return the table of every declared setting, in the declared order."""
    return "\n".join([HEADER, *map(table_row, DECLARED)])


def readme_part(name: str, page: str, readme: str) -> str:
    """Return the part ``name`` of the README's text ``readme`` as the page
    ``page`` (its path under docs/, such as ``guides/ses.md``) shows it: the
    README's links into docs/ made relative to the page. Raises ValueError
    when the README has no such part."""
    start, end = f"<!-- part: {name} -->\n", f"<!-- end of part: {name} -->"
    if start not in readme or end not in readme.split(start, 1)[1]:
        raise ValueError(f"README.md has no part {name!r} (between {start.strip()} and {end})")
    part = readme.split(start, 1)[1].split(end, 1)[0].strip("\n")
    here = posixpath.dirname(page)
    return DOCS_LINK.sub(lambda link: f"]({posixpath.relpath(link.group('target'), here or '.')})", part)


def expand(markdown: str, page: str = "index.md", readme: str | None = None) -> str:
    """Return the Markdown of the page ``page`` with the settings table and
    the README's parts in place of their marks."""
    if README_MARK.search(markdown):
        readme = README.read_text(encoding="utf-8") if readme is None else readme
        markdown = README_MARK.sub(lambda mark: readme_part(mark.group("name"), page, readme), markdown)
    return markdown.replace(SETTINGS_MARK, settings_table())


def on_page_markdown(markdown: str, page, **_: object) -> str:
    """MkDocs' hook on each page's Markdown, before it is converted."""
    return expand(markdown, page.file.src_uri)

