"""Text hygiene for untrusted text (names, paper text, terminal output and
CSV cells), and the quoted-printable form an email's text takes on the wire.

Names come from a web form, the command line and CSV files; paper text from
files and an API. None of it may carry characters that act instead of
showing: C0 and C1 control characters (NUL in a header, ESC sequences that
retitle or clear a terminal), the Unicode bidirectional controls that make
text read differently from what it is, and lone surrogates (which cannot be
encoded, so they would crash a write far from where they came in).
"""

from __future__ import annotations

import binascii
import re
import textwrap
from urllib.parse import urlsplit

NAME_MAX_CHARS = 200

# Every C0 control but tab, LF and CR (the whitespace of ordinary text), DEL,
# every C1 control, the characters with the Unicode Bidi_Control property
# (marks, embeddings, overrides and isolates), and lone surrogates.
_CONTROLS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_STRIPPED = re.compile(f"[{_CONTROLS}]")
# What a terminal must never be given raw: the above plus tab, LF and CR
# (which would break a tab-separated line or start a new one) and the
# Unicode line and paragraph separators.
_UNSAFE_ON_TERMINAL = re.compile(f"[\t\n\r\u2028\u2029{_CONTROLS}]")
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}

# Spreadsheets run a cell starting with one of these as a formula (OWASP,
# "CSV Injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _drop(match: re.Match) -> str:
    # A control that separates (vertical tab, form feed, the information
    # separators, NEL) leaves a space, so the words around it stay apart.
    return " " if match.group().isspace() else ""


def strip_controls(value: str) -> tuple[str, int]:
    """Return ``value`` without control, bidirectional-control and lone
    surrogate characters (tab, LF and CR are kept; a separating control such
    as a form feed becomes a space), and how many were removed."""
    return _STRIPPED.subn(_drop, value)


def clean_name(value: str | None) -> str | None:
    """Return a reader's name as printable text on one line: control
    characters removed, whitespace collapsed to single spaces, cut to
    ``NAME_MAX_CHARS``. Returns None when nothing is left."""
    if value is None:
        return None
    cleaned, _removed = strip_controls(value)
    return " ".join(cleaned.split())[:NAME_MAX_CHARS].rstrip() or None


def _escape(match: re.Match) -> str:
    char = match.group()
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def terminal_safe(value: object) -> str:
    """Return ``str(value)`` fit to print on a terminal: every control
    character, bidirectional control, line separator and lone surrogate is
    shown as a visible escape (``\\x1b``, ``\\t``, ``\\u202e``); printable
    text, Unicode included, is kept as it is."""
    return _UNSAFE_ON_TERMINAL.sub(_escape, str(value))


def csv_safe(cell: str) -> str:
    """Return ``cell`` as a spreadsheet will show it rather than run it: a
    cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR gets a leading
    ``'`` (see :func:`csv_unescape` for the way back)."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def csv_unescape(cell: str) -> str:
    """Return a cell read from CSV with the ``'`` that :func:`csv_safe` adds
    removed, so an export imports back unchanged. Only a ``'`` followed by
    one of the formula characters is removed; any other cell is unchanged."""
    if cell.startswith("'") and cell[1:].startswith(_FORMULA_STARTS):
        return cell[1:]
    return cell


def quoted_printable(text: str) -> bytes:
    """Return ``text`` as UTF-8 quoted-printable bytes with CRLF line ends:
    how a message's text and HTML parts are sent (lines of at most 76
    characters joined by ``=`` soft breaks, ``=`` and each byte outside
    printable ASCII written as three characters, so a CJK character takes
    nine)."""
    encoded = binascii.b2a_qp(text.encode("utf-8"), istext=True)
    return encoded.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def html_escape(text: str) -> str:
    """``text`` escaped for HTML text or a double-quoted attribute, with the
    characters Handlebars escapes in ``{{x}}``: escaped in Python (SES does
    not escape a template's values), every sender's message reads the same."""
    return text.translate(_HANDLEBARS_ESCAPES)


def is_http_url(value: str) -> bool:
    """Return whether ``value`` is an http(s) URL with a host: the only
    links an email or a page may carry (a ``javascript:`` or ``data:`` link
    would run or show something other than a page)."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


_HANDLEBARS_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;",
                                     "`": "&#x60;"})


TEXT_COLUMNS = 78  # the plain-text part's longest line, URLs apart (RFC 5322's advice)
_URL_START = re.compile(r"\(?https?://", re.IGNORECASE)


def wrap_text(text: str, width: int = TEXT_COLUMNS, indent: str = "", first: str | None = None) -> str:
    """Return ``text`` wrapped to lines of at most ``width`` characters, each
    starting with ``indent`` (the first with ``first`` when given, such as a
    number). A URL is never split: one longer than a line keeps a line of
    its own. Any other run longer than a line (text without spaces, such as
    Chinese) is cut to fit."""
    first = indent if first is None else first
    room = max(1, width - max(len(indent), len(first)))
    words = []
    for word in text.split():
        if len(word) > room and not _URL_START.match(word):
            words.extend(word[i : i + room] for i in range(0, len(word), room))
        else:
            words.append(word)
    return textwrap.fill(
        " ".join(words),
        width=width,
        initial_indent=first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def plural(count: int, noun: str) -> str:
    """Return ``"1 upvote"``, ``"12 upvotes"``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
