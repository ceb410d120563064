"""Subscriber lists as CSV files: reading an import, writing an export."""

from __future__ import annotations

import csv
import io
import os
from typing import Iterable, TextIO

from newsletter.errors import ListError
from newsletter.models import Subscriber

MAX_LIST_BYTES = 200 * 1024 * 1024
EXPORT_COLUMNS = ("email", "name", "status", "source", "created_at", "updated_at")


def read_subscriber_csv(path: str | os.PathLike) -> list[tuple[int, str, str | None]]:
    """Return the (line, email, name) rows, ``line`` being where the row
    begins, of a CSV with an ``email`` column and an optional ``name`` column
    (a header row is required; other columns are ignored; blank lines are
    skipped).

    Raises :class:`ListError` naming the file and line for a missing file,
    invalid UTF-8, a missing header or ``email`` column, or a malformed row.
    """
    source = str(path)
    try:
        if os.path.getsize(path) > MAX_LIST_BYTES:
            raise ListError(f"{source}: larger than {MAX_LIST_BYTES:,} bytes")
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ListError(f"{source}: no such file") from None
    except OSError as exc:
        raise ListError(f"{source}: cannot read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ListError(f"{source}, line {line}: invalid UTF-8; save the file as UTF-8") from None

    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
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
        rows = []
        start = reader.line_num + 1
        for row in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                raise ListError(f"{source}, line {line}: {len(row)} fields, but the header has {len(columns)}")
            name = row[name_at].strip() if name_at is not None else None
            rows.append((line, row[email_at].strip(), name or None))
    except csv.Error as exc:
        raise ListError(f"{source}, line {start}: malformed CSV ({exc})") from None
    return rows


def write_subscriber_csv(subscribers: Iterable[Subscriber], out: TextIO) -> int:
    """Write ``subscribers`` as CSV (header first) to ``out``; return the count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for s in subscribers:
        writer.writerow(
            (s.email, s.name or "", s.status, s.source, s.created_at.isoformat(), s.updated_at.isoformat())
        )
        count += 1
    return count
