"""What a reader tells us they read, as typed: interests, followed authors,
arXiv categories, seed papers, the number of picks, how their email
shows the rest of the day, and the phrases they never want to see papers
about (muted) and where those hide papers, read the same way
and cut to the same limits wherever they come from (the preferences page,
the sign-up form, ``newsletter subscribers interests``, a CSV import); and
how often they want the newsletter (daily, weekly on a day, or paused
until a date), read and checked the same way everywhere too.

All of it is untrusted text. Control and bidirectional control characters
are removed and whitespace collapsed, so a phrase is printable text on one
line; each entry and each list is cut to a limit (and a note says so),
so no field can grow the database, a page or a token without bound.
Categories and seed papers are checked: an entry that is not one is an
error, which names it (cut short), and nothing of that field is kept.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Callable

from newsletter.core.models import (
    MAX_PICKS,
    WEEKDAYS,
    Frequency,
    Muting,
    RestOfDay,
    Schedule,
    arxiv_id_of,
    parse_weekday,
)
from newsletter.core.text import strip_controls

MAX_INTERESTS = 20
MAX_PHRASE_CHARS = 100  # an interest is a phrase, not an essay
MAX_MUTED = 20  # phrases never to see papers about, each cut as an interest is
MAX_AUTHORS = 50
MAX_AUTHOR_CHARS = 100
MAX_CATEGORIES = 20
MAX_SEEDS = 20
# How much of a wrong entry an error message quotes.
QUOTED_CHARS = 40

# arXiv's archives (https://arxiv.org/category_taxonomy): those whose
# categories always have a subject class (cs.CV), those that may have one
# (astro-ph, astro-ph.CO), and those that never do (hep-th).
_WITH_CLASS = {"cs", "econ", "eess", "math", "physics", "q-bio", "q-fin", "stat"}
_MAYBE_CLASS = {"astro-ph", "cond-mat", "nlin"}
_NO_CLASS = {"gr-qc", "hep-ex", "hep-lat", "hep-ph", "hep-th", "math-ph", "nucl-ex", "nucl-th", "quant-ph"}
# A subject class: two letters (CV, ML, NC) or a word or two (comp-ph, mes-hall).
_CATEGORY = re.compile(r"^([a-z]+(?:-[a-z]+)?)(?:\.([a-z]{2}|[a-z]{3,}(?:-[a-z]+)?))?$", re.IGNORECASE)
CATEGORY_EXAMPLES = "such as cs.CV, stat.ML or q-bio.NC"


@dataclass(frozen=True)
class Parsed:
    """What one field gave: the ``values`` kept, or an ``error`` (then no
    value is kept), and ``notes`` saying what was cut."""

    values: tuple = ()
    error: str | None = None
    notes: tuple[str, ...] = ()


def _clean(value: str) -> str:
    """``value`` as printable text on one line: controls removed, whitespace collapsed."""
    return " ".join(strip_controls(value)[0].split())


def _quoted(value: str) -> str:
    """A wrong entry as an error message shows it: cut short, in quotes."""
    shown = value if len(value) <= QUOTED_CHARS else value[:QUOTED_CHARS - 1] + "…"
    return f"“{shown}”"


def _entries(text: str, separators: str) -> list[str]:
    """The non-empty entries of ``text`` split at ``separators`` (a regex
    character class), cleaned."""
    return [entry for entry in (_clean(part) for part in re.split(separators, strip_controls(text)[0])) if entry]


def _limited(entries: list[str], limit: int, what: str, key: Callable[[str], str] = str.casefold,
             notes: list[str] | None = None) -> Parsed:
    """``entries`` without repeats (by ``key``), the first ``limit`` of
    them, with a note when some were left out."""
    notes = notes or []
    seen: set[str] = set()
    unique = []
    for entry in entries:
        if key(entry) not in seen:
            seen.add(key(entry))
            unique.append(entry)
    if len(unique) > limit:
        notes.append(f"Only the first {limit} {what} are kept.")
    return Parsed(tuple(unique[:limit]), notes=tuple(notes))


def _phrases(text: str, limit: int, chars: int, what: str) -> Parsed:
    entries = _entries(text, r"[\n\r;\u2028\u2029]")
    cut = [entry[:chars].rstrip() for entry in entries]
    notes = [f"{what.capitalize()} longer than {chars} characters are cut short."] if cut != entries else []
    return _limited(cut, limit, what, notes=notes)


def parse_interests(text: str) -> Parsed:
    """Interests: free phrases, one per line or separated by semicolons;
    at most :data:`MAX_INTERESTS` of at most :data:`MAX_PHRASE_CHARS`
    characters, repeats (any case) left out. Never an error."""
    return _phrases(text, MAX_INTERESTS, MAX_PHRASE_CHARS, "interests")


def parse_muted(text: str) -> Parsed:
    """Muted phrases ("never show me papers about …"): free phrases, one per
    line or separated by semicolons, read and cut as interests are; at most
    :data:`MAX_MUTED`. Never an error (a phrase without a letter or digit
    mutes nothing; see ``newsletter.picks.muting``)."""
    return _phrases(text, MAX_MUTED, MAX_PHRASE_CHARS, "muted phrases")


def parse_authors(text: str) -> Parsed:
    """Followed authors' names, one per line or separated by semicolons; at
    most :data:`MAX_AUTHORS` of at most :data:`MAX_AUTHOR_CHARS`
    characters. Never an error."""
    return _phrases(text, MAX_AUTHORS, MAX_AUTHOR_CHARS, "authors")


def category_of(text: str) -> str | None:
    """The arXiv category ``text`` names, written as arXiv writes it
    (``cs.cv`` → ``cs.CV``, ``physics.comp-ph``, ``hep-th``), or None when
    it names none."""
    match = _CATEGORY.match(text)
    if not match:
        return None
    archive, subject = match.group(1).lower(), match.group(2)
    if subject is None:
        return archive if archive in _NO_CLASS | _MAYBE_CLASS else None
    if archive not in _WITH_CLASS | _MAYBE_CLASS:
        return None
    return f"{archive}.{subject.upper() if len(subject) == 2 else subject.lower()}"


def _checked(entries: list[str], check: Callable[[str], str | None], what: tuple[str, str], example: str) -> \
        tuple[list[str], str | None]:
    """``entries`` as ``check`` reads them, or an error naming the first
    few it cannot read (``what``: what an entry should be, in the singular
    and the plural)."""
    found = [check(entry) for entry in entries]
    wrong = [entry for entry, value in zip(entries, found) if value is None]
    if not wrong:
        return found, None
    more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
    shown = ", ".join(_quoted(entry) for entry in wrong[:3])
    said = f"is not {what[0]}" if len(wrong) == 1 else f"are not {what[1]}"
    return [], f"{shown}{more} {said} ({example})."


def parse_categories(text: str) -> Parsed:
    """arXiv categories separated by commas, semicolons or spaces, checked
    against arXiv's archives; at most :data:`MAX_CATEGORIES`."""
    found, error = _checked(_entries(text, r"[\s,;]+"), category_of, ("an arXiv category", "arXiv categories"),
                            CATEGORY_EXAMPLES)
    return Parsed(error=error) if error else _limited(found, MAX_CATEGORIES, "categories")


def parse_seeds(text: str) -> Parsed:
    """Seed papers: arXiv ids or arxiv.org abstract or PDF links, one per
    line (or separated by commas, semicolons or spaces), as bare ids
    without version; at most :data:`MAX_SEEDS`."""
    found, error = _checked(_entries(text, r"[\s,;]+"), arxiv_id_of, ("an arXiv paper", "arXiv papers"),
                            "an id such as 2403.01234 or an arxiv.org link")
    return Parsed(error=error) if error else _limited(found, MAX_SEEDS, "seed papers", key=str.lower)


def parse_picks(text: str) -> Parsed:
    """The number of picks: a whole number from 0 (no picks) to
    :data:`MAX_PICKS`."""
    value = _clean(text)
    # Checked as text first: int() of thousands of digits is refused (or slow).
    if not (value.isascii() and value.isdigit() and len(value) <= 3) or int(value) > MAX_PICKS:
        return Parsed(error=f"The number of picks is a whole number from 0 to {MAX_PICKS} (0: no picks).")
    return Parsed((int(value),))


# What each field of a profile is read with, in the order forms show them.
PARSERS: dict[str, Callable[[str], Parsed]] = {
    "interests": parse_interests,
    "authors": parse_authors,
    "categories": parse_categories,
    "seeds": parse_seeds,
    "picks": parse_picks,
    "muted": parse_muted,
}


def parse_rest(text: str) -> Parsed:
    """How the reader's email shows the rest of the day (the papers neither
    picked for them nor among the top cards): a :class:`RestOfDay` value,
    in any case; the value is the enum."""
    value = _clean(text).lower()
    try:
        return Parsed((RestOfDay(value),))
    except ValueError:
        return Parsed(error="Choose every title or just the top for the rest of the day.")


def parse_muting(text: str) -> Parsed:
    """Where a reader's muted phrases hide papers: a :class:`Muting` value
    (``picks``, or ``top``: the top cards too), in any case; the value is
    the enum."""
    value = _clean(text).lower()
    try:
        return Parsed((Muting(value),))
    except ValueError:
        return Parsed(error="Choose to hide muted papers from your picks, or from your picks and the top.")


# --------------------------------------------------------------------------
# how often

# What a reader chooses: a frequency, or a pause (which keeps the frequency
# they come back to: "paused" is never stored as one).
SCHEDULE_CHOICES = ("daily", "weekly", "paused")
FREQUENCY_EXAMPLES = "daily, weekly or weekly:<day>, such as weekly:fri"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)


def _iso_date(value: str) -> dt.date | None:
    """The date ``value`` writes as YYYY-MM-DD, or None (no other spelling:
    ``fromisoformat`` would also take 20260401)."""
    if not _ISO_DATE.match(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:  # 2026-02-30
        return None


def parse_day_of_week(text: str) -> Parsed:
    """A day of the week for a weekly reader: ``mon`` … ``sun`` or its
    English name, in any case; the value is its number (0 Monday)."""
    value = _clean(text)
    try:
        return Parsed((parse_weekday(value),))
    except ValueError:
        return Parsed(error=f"{_quoted(value)} is not a day of the week ({', '.join(WEEKDAYS)}).")


def parse_pause_end(text: str, today: dt.date) -> Parsed:
    """The day a pause ends, YYYY-MM-DD, after ``today`` (the reader gets
    the editions from that day on); the value is a date."""
    value = _clean(text)
    if not value:
        return Parsed(error="A pause needs the day it ends (YYYY-MM-DD).")
    day = _iso_date(value)
    if day is None:
        return Parsed(error=f"{_quoted(value)} is not a date (YYYY-MM-DD, such as {today + dt.timedelta(days=14)}).")
    if day <= today:
        when = "in the past" if day < today else "today"
        return Parsed(error=f"{value} is {when}: a pause ends on a day after today ({today}).")
    return Parsed((day,))


def choose_schedule(current: Schedule, choice: str | None, weekday: int | None = None,
                    paused_until: dt.date | None = None) -> Schedule:
    """The schedule of a reader on ``current`` who chooses ``choice``:

    - "daily": every day's edition (no weekday, no pause);
    - "weekly": the weekly edition on ``weekday``, else on the day they
      had, else on the list's day (None); any pause ends;
    - "paused": nothing before ``paused_until``, then the frequency (and
      day) they had;
    - None: their frequency and pause as they are.

    ``weekday`` counts only for a reader who is weekly or becomes so.
    Raises ValueError for another choice, or "paused" without its end.
    """
    if choice == "daily":
        return Schedule(Frequency.DAILY)
    if choice == "weekly":
        return Schedule(Frequency.WEEKLY, current.weekday if weekday is None else weekday)
    if choice not in ("paused", None):
        raise ValueError(f"not a choice of how often: {choice!r}")
    if choice == "paused" and paused_until is None:
        raise ValueError("a pause needs the day it ends")
    day = weekday if weekday is not None and current.frequency == Frequency.WEEKLY else current.weekday
    return Schedule(current.frequency, day, paused_until if choice == "paused" else current.paused_until)


def parse_schedule_cells(frequency: str, paused_until: str = "") -> Parsed:
    """The schedule of a subscriber list's row: its ``frequency`` cell
    (daily, weekly on the list's day, or weekly:<day> such as weekly:fri;
    empty: daily) and ``paused_until`` cell (YYYY-MM-DD, or empty: no
    pause; a day already past is accepted and means no pause any more).
    The value is a :class:`Schedule`; an error names the column."""
    kind, colon, day = _clean(frequency).lower().partition(":")
    kind = kind.strip()
    schedule = None
    if kind in ("", Frequency.DAILY) and not colon:
        schedule = Schedule(Frequency.DAILY)
    elif kind == Frequency.WEEKLY:
        weekday = parse_day_of_week(day) if colon else Parsed((None,))
        schedule = None if weekday.error else Schedule(Frequency.WEEKLY, weekday.values[0])
    if schedule is None:
        return Parsed(error=f"frequency: {_quoted(_clean(frequency))} is not a frequency ({FREQUENCY_EXAMPLES}).")
    pause = _clean(paused_until)
    if pause:
        day_ends = _iso_date(pause)
        if day_ends is None:
            return Parsed(error=f"paused_until: {_quoted(pause)} is not a date (YYYY-MM-DD).")
        schedule = Schedule(schedule.frequency, schedule.weekday, day_ends)
    return Parsed((schedule,))


def schedule_cells(schedule: Schedule) -> tuple[str, str]:
    """The ``frequency`` and ``paused_until`` cells of ``schedule`` in a
    subscriber list, as :func:`parse_schedule_cells` reads them back."""
    frequency = str(schedule.frequency)
    if schedule.frequency == Frequency.WEEKLY and schedule.weekday is not None:
        frequency += f":{WEEKDAYS[schedule.weekday]}"
    return frequency, schedule.paused_until.isoformat() if schedule.paused_until else ""
