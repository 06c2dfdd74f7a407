"""Reading import files: encoding, header, line numbers and field parsers (no database)."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal

import pytest

from portal.imports.parsing import (
    BadValue,
    CsvDialect,
    ImportFailed,
    RowError,
    decimal_comma_to_point,
    detect_dialect,
    parse_amount,
    parse_currency,
    parse_date,
    parse_decimal_text,
    parse_email,
    parse_line_number,
    parse_locale,
    parse_positive_amount,
    parse_quantity_milli,
    parse_timezone,
    read_table,
    read_text,
)
from portal.imports.records import looks_scientific, unstorable_character

REQUIRED = ("account_number", "name")
OPTIONAL = ("phone",)


def test_byte_order_mark_is_dropped_from_bytes_and_text():
    assert read_text(io.BytesIO("\ufeffa,b\n".encode())) == "a,b\n"
    assert read_text(io.StringIO("\ufeffa,b\n")) == "a,b\n"


def test_path_is_read_as_utf8_with_bom(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_bytes("\ufeffaccount_number,name\nA-1,Müller GmbH\n".encode())
    table = read_table(read_text(path), required=REQUIRED)
    assert table.columns == ("account_number", "name")
    assert table.rows[0].values == {"account_number": "A-1", "name": "Müller GmbH"}


def test_non_utf8_file_is_refused_with_the_line_of_the_bad_byte():
    data = b"account_number,name\nA-1,ok\nA-2," + "Müller".encode("latin-1") + b"\n"
    with pytest.raises(ImportFailed) as failure:
        read_text(io.BytesIO(data))
    [error] = failure.value.errors
    assert error.line == 3
    assert "not UTF-8" in error.message


def test_empty_file_needs_a_header():
    with pytest.raises(ImportFailed) as failure:
        read_table("", required=REQUIRED)
    assert failure.value.errors == [RowError(1, "the file is empty; a header row is required")]


def test_header_problems_are_all_reported_on_line_1():
    with pytest.raises(ImportFailed) as failure:
        read_table("account_number,colour,phone,phone\n", required=REQUIRED, optional=OPTIONAL)
    messages = [error.message for error in failure.value.errors]
    assert {error.line for error in failure.value.errors} == {1}
    assert any("'phone' appears twice" in m for m in messages)
    assert any("unknown column 'colour'" in m for m in messages)
    assert any("missing required column 'name'" in m for m in messages)


def test_header_names_are_trimmed_and_case_insensitive():
    table = read_table(" Account_Number , NAME \nA-1,Acme\n", required=REQUIRED)
    assert table.columns == REQUIRED
    assert table.has_column("name")
    assert not table.has_column("phone")


def test_optional_column_may_be_absent():
    table = read_table("account_number,name\nA-1,Acme\n", required=REQUIRED, optional=OPTIONAL)
    assert table.rows[0].values == {"account_number": "A-1", "name": "Acme"}


def test_line_numbers_count_blank_lines_and_quoted_newlines():
    text = 'account_number,name\n\nA-1,"two\nlines"\nA-2,  Beta  \r\n'
    table = read_table(text, required=REQUIRED)
    assert [(row.line, row.values["name"]) for row in table.rows] == [
        (3, "two\nlines"),
        (5, "Beta"),
    ]


def test_rows_with_the_wrong_number_of_fields_are_reported():
    table = read_table("account_number,name\nA-1\nA-2,Beta,extra\nA-3,Gamma\n", required=REQUIRED)
    assert [row.line for row in table.rows] == [4]
    assert table.errors == [
        RowError(2, "expected 2 fields as in the header, found 1"),
        RowError(3, "expected 2 fields as in the header, found 3"),
    ]


def test_import_failed_sorts_errors_by_line_and_counts_them():
    failure = ImportFailed([RowError(9, "b"), RowError(2, "a")])
    assert [e.line for e in failure.errors] == [2, 9]
    assert str(failure) == "2 bad rows (2 problems); nothing was imported"
    assert str(failure.errors[0]) == "line 2: a"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2026-01-31", date(2026, 1, 31)), ("2024-02-29", date(2024, 2, 29))],
)
def test_dates_are_iso(text, expected):
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2026-02-30", "is not a real date"),
        ("2026-13-01", "is not a real date"),
        ("31/01/2026", "YYYY-MM-DD"),
        ("20260131", "YYYY-MM-DD"),
        ("2026-1-31", "YYYY-MM-DD"),
    ],
)
def test_bad_dates_say_why(text, problem):
    with pytest.raises(BadValue, match=problem):
        parse_date(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("12", Decimal(12)), ("12.5", Decimal("12.5")), (".5", Decimal("0.5")), ("-3", Decimal(-3))],
)
def test_plain_decimals_are_read_exactly(text, expected):
    assert parse_decimal_text(text) == expected


@pytest.mark.parametrize("text", ["1,000.00", "1_000", "1e3", "NaN", "Infinity", "12,5", "$5", "-"])
def test_anything_but_a_plain_decimal_is_refused(text):
    with pytest.raises(BadValue, match="is not a decimal number"):
        parse_decimal_text(text)


def test_amounts_may_be_zero_but_not_negative():
    assert parse_amount("0") == 0
    with pytest.raises(BadValue, match="must not be negative"):
        parse_amount("-0.01")


def test_positive_amounts_must_be_more_than_zero():
    assert parse_positive_amount("0.01") == Decimal("0.01")
    with pytest.raises(BadValue, match="must be more than zero"):
        parse_positive_amount("0.00")


@pytest.mark.parametrize(
    ("text", "milli"), [("1", 1000), ("2.5", 2500), ("0.001", 1), ("1.2500", 1250)]
)
def test_quantities_are_stored_in_thousandths(text, milli):
    assert parse_quantity_milli(text) == milli


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0", "more than zero"),
        ("-1", "more than zero"),
        ("1.2345", "more than 3 decimal places"),
        ("99999999", "too large"),
    ],
)
def test_bad_quantities_say_why(text, problem):
    with pytest.raises(BadValue, match=problem):
        parse_quantity_milli(text)


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "x", "٣", "100001"])
def test_line_numbers_are_whole_positive_numbers(text):
    with pytest.raises(BadValue):
        parse_line_number(text)


def test_currency_codes_are_normalized_and_checked():
    assert parse_currency("jpy") == "JPY"
    with pytest.raises(BadValue, match="ISO 4217"):
        parse_currency("XYZ")


def test_email_locale_and_timezone_are_checked():
    assert parse_email("ap@acme.example") == "ap@acme.example"
    with pytest.raises(BadValue, match="valid email"):
        parse_email("ap@")
    assert parse_locale("DE") == "de"
    with pytest.raises(BadValue, match="en, es, fr, de"):
        parse_locale("it")
    assert parse_timezone("Europe/Paris") == "Europe/Paris"
    with pytest.raises(BadValue, match="time zone"):
        parse_timezone("Mars/Olympus_Mons")
    with pytest.raises(BadValue, match="time zone"):
        parse_timezone("../etc/passwd")


# --- European files, unstorable text, scientific notation ---------------------------------


@pytest.mark.parametrize(
    ("text", "point"),
    [
        ("1.234,50", "1234.50"),
        ("1234,5", "1234.5"),
        ("0,19", "0.19"),
        (",5", ".5"),
        ("12", "12"),
        ("1.234", "1234"),
        ("1.234.567,891", "1234567.891"),
        ("-3,5", "-3.5"),
    ],
)
def test_decimal_comma_numbers_are_read(text, point):
    assert decimal_comma_to_point(text) == point


@pytest.mark.parametrize("text", ["1234.50", "1,2,3", "12.34,5", "1.23,4", "", "-", "abc", "1e3"])
def test_what_is_not_a_decimal_comma_number_is_refused(text):
    with pytest.raises(BadValue):
        decimal_comma_to_point(text)


@pytest.mark.parametrize(
    ("text", "options", "dialect"),
    [
        ("a,b,c\n1;2,3\n", {}, CsvDialect(",", decimal_comma=False)),
        ("a;b;c\n", {}, CsvDialect(";", decimal_comma=True)),
        ("\n;;\na;b,x;c\n", {}, CsvDialect(";", decimal_comma=True)),
        ("a,b,c\n", {"delimiter": ";"}, CsvDialect(";", decimal_comma=True)),
        ("a;b;c\n", {"decimal_comma": False}, CsvDialect(";", decimal_comma=False)),
        ("a;b;c\n", {"delimiter": ";", "decimal_comma": True}, CsvDialect(";", True)),
    ],
)
def test_the_dialect_is_read_from_the_header_line_unless_chosen(text, options, dialect):
    assert detect_dialect(text, **options) == dialect


def test_a_decimal_comma_with_comma_separators_is_refused():
    with pytest.raises(ImportFailed) as failure:
        detect_dialect("a,b\n", delimiter=",", decimal_comma=True)
    assert failure.value.errors[0].line == 1


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("plain text", None),
        ("tab\tand\r\nbreaks", None),
        ("Zoë, 日本, emoji 🎉", None),
        ("nul\x00", "U+0000"),
        ("bell\x07", "U+0007"),
        ("escape\x1b[0m", "U+001B"),
        ("delete\x7f", "U+007F"),
        ("c1 \x85", "U+0085"),
        ("lone \udc80", "U+DC80"),
    ],
)
def test_unstorable_characters_are_found(text, found):
    assert unstorable_character(text) == found


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7.01E+08", True),
        ("1E5", True),
        ("7,01E+08", True),
        ("1.2345e-3", True),
        ("E12", False),
        ("ACC-1E5", False),
        ("70100000", False),
        ("INV-2026-0001", False),
    ],
)
def test_scientific_notation_is_recognized(text, expected):
    assert looks_scientific(text) is expected
