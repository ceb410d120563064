"""Subscriber lists as CSV files: reading an import, writing an export.

An export writes each reader's schedule in the ``frequency`` and
``paused_until`` columns an import reads (see
``interests.parse_schedule_cells``), so it imports back with them.

An export is opened in spreadsheets, so a cell that a spreadsheet would run
as a formula (a name such as ``=HYPERLINK(...)``) is written with a leading
``'`` (see :func:`newsletter.core.text.csv_safe`); an import removes that ``'``
again, so an export imports back unchanged.
"""

from __future__ import annotations

import csv
import io
import os
from typing import BinaryIO, Iterable, Iterator, TextIO

from newsletter.core.errors import ListError
from newsletter.picks.interests import parse_authors, parse_interests, parse_schedule_cells, schedule_cells
from newsletter.core.models import Schedule, Subscriber, SubscriberRow
from newsletter.core.text import csv_safe, csv_unescape

MAX_LIST_BYTES = 200 * 1024 * 1024
EXPORT_COLUMNS = ("email", "name", "status", "source", "created_at", "updated_at", "frequency", "paused_until")


def read_subscriber_csv(path: str | os.PathLike, with_profiles: bool = False) -> list[SubscriberRow]:
    """Return the rows of a CSV with an ``email`` column and an optional
    ``name`` column (a header row is required; other columns are ignored;
    blank lines are skipped), each with the line where it begins. A cell
    that :func:`write_subscriber_csv` protected from spreadsheets (``'``
    before ``=``, ``+``, ``-``, ``@``, tab or CR) is read without that ``'``.

    With ``with_profiles``, the rows also have the optional ``interests``
    and ``authors`` columns, separated by semicolons, read and cut as
    ``newsletter.picks.interests`` does (empty when a column is absent), and
    the reader's schedule from the optional ``frequency`` (daily, weekly or
    weekly:<day>) and ``paused_until`` (YYYY-MM-DD) columns as
    ``interests.parse_schedule_cells`` reads them, or the error that makes
    the line invalid (the import reports it with the line, as it does a
    malformed address); the default schedule (daily) when neither column
    is there.

    Raises :class:`ListError` naming the file and line for a missing file,
    invalid UTF-8, a missing header or ``email`` column, or a malformed row.
    """
    source = str(path)
    try:
        if os.path.getsize(path) > MAX_LIST_BYTES:
            raise ListError(f"{source}: larger than {MAX_LIST_BYTES:,} bytes")
        with open(path, "rb") as handle:
            return list(iter_subscriber_rows(handle, source, with_profiles))
    except FileNotFoundError as exc:
        raise ListError(f"{source}: no such file") from exc
    except OSError as exc:
        raise ListError(f"{source}: cannot read ({exc.strerror or exc})") from exc


def iter_subscriber_rows(stream: BinaryIO, source: str, with_profiles: bool = False) -> Iterator[SubscriberRow]:
    """Yield the rows of the CSV file open in ``stream`` (binary; named
    ``source`` in messages) one at a time, as :func:`read_subscriber_csv`
    returns them, reading the file as they are asked for (so a large file
    is never held whole). Raises :class:`ListError` the same way, when
    the row at fault is reached."""
    reader = csv.reader(_text_lines(stream, source), strict=True)
    # Where the record being read begins: a quoted field can span lines, and
    # reader.line_num is where a record ends.
    start = 1
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            start = reader.line_num + 1
            header = next(reader, None)
        if header is None:
            raise ListError(f"{source}: empty file; expected a header row with an 'email' column")
        columns = [cell.strip().lower() for cell in header]
        if "email" not in columns:
            raise ListError(
                f"{source}, line {start}: the header has no 'email' column (found: {', '.join(columns)})"
            )
        email_at = columns.index("email")
        name_at = columns.index("name") if "name" in columns else None
        interests_at = columns.index("interests") if "interests" in columns else None
        authors_at = columns.index("authors") if "authors" in columns else None
        frequency_at = columns.index("frequency") if "frequency" in columns else None
        paused_at = columns.index("paused_until") if "paused_until" in columns else None
        start = reader.line_num + 1
        for row in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                raise ListError(f"{source}, line {line}: {len(row)} fields, but the header has {len(columns)}")
            name = (_cell(row[name_at]) if name_at is not None else None) or None
            if not with_profiles:
                yield SubscriberRow(line, _cell(row[email_at]), name)
                continue
            interests = parse_interests(_cell(row[interests_at])).values if interests_at is not None else ()
            authors = parse_authors(_cell(row[authors_at])).values if authors_at is not None else ()
            schedule, error = Schedule(), None  # neither column: the default schedule, nothing read per row
            if frequency_at is not None or paused_at is not None:
                parsed = parse_schedule_cells(_cell(row[frequency_at]) if frequency_at is not None else "",
                                              _cell(row[paused_at]) if paused_at is not None else "")
                schedule, error = (parsed.values or (schedule,))[0], parsed.error
            yield SubscriberRow(line, _cell(row[email_at]), name, interests, authors, schedule, error)
    except csv.Error as exc:
        raise ListError(f"{source}, line {start}: malformed CSV ({exc})") from exc


def _text_lines(stream: BinaryIO, source: str) -> Iterator[str]:
    """The lines of ``stream`` as text, each with its line ending (LF, CRLF
    or a lone CR, as a file opened with ``newline=""`` gives them); raises
    :class:`ListError` naming the line of a byte that is not UTF-8."""
    for number, raw in enumerate(stream, 1):  # no byte of a multi-byte character is a LF
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise ListError(f"{source}, line {number}: invalid UTF-8; save the file as UTF-8") from exc
        yield from io.StringIO(text, newline="")


def _cell(value: str) -> str:
    """A cell's value: trimmed, without the ``'`` an export put before a formula character."""
    return csv_unescape(value.strip()).strip()


def iter_subscriber_csv(subscribers: Iterable[Subscriber], rows_per_chunk: int = 1000) -> Iterator[str]:
    """Yield ``subscribers`` as CSV text (header first), ``rows_per_chunk``
    rows at a time, every cell that a spreadsheet would run as a formula
    given a leading ``'``: an export streamed without holding the list."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    # The csv module quotes a field only for the characters of its own line
    # terminator, so a field holding a CR (possible in a row written before
    # names were cleaned) would end the record early: quote such rows fully.
    quoting_all = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(EXPORT_COLUMNS)
    for count, s in enumerate(subscribers, 1):
        cells = (s.email, s.name or "", s.status, s.source, s.created_at.isoformat(), s.updated_at.isoformat(),
                 *schedule_cells(s.schedule))
        cells = [csv_safe(cell) for cell in cells]
        (quoting_all if any("\r" in cell for cell in cells) else writer).writerow(cells)
        if count % rows_per_chunk == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    if out.getvalue():
        yield out.getvalue()


def write_subscriber_csv(subscribers: Iterable[Subscriber], out: TextIO) -> int:
    """Write ``subscribers`` as CSV (header first) to ``out`` (see
    :func:`iter_subscriber_csv`); return the count."""
    count = 0

    def counted():
        nonlocal count
        for subscriber in subscribers:
            count += 1
            yield subscriber

    for chunk in iter_subscriber_csv(counted()):
        out.write(chunk)
    return count
