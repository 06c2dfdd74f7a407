"""Reading the import CSV files: header checks, rows with their line numbers, field parsers.

Everything here is pure (no database): it turns text into values or into a plain-English
reason why not. Line numbers are the file's physical lines, the header being line 1.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import IO, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from portal.config import SUPPORTED_LOCALES
from portal.imports.records import BadValue, ImportFailed, Record, RowError, RowReader, quote
from portal.money import MAX_MAJOR, MAX_MINOR, UnknownCurrency, normalize_currency

# Columns holding amounts or quantities are 64-bit integers (BIGINT) on every database.
MAX_DB_INT = MAX_MINOR
MAX_LINE_NUMBER = 100_000
QUANTITY_DECIMALS = 3

T = TypeVar("T")

__all__ = [
    "BadValue",
    "CsvDialect",
    "CsvRow",
    "CsvTable",
    "ImportFailed",
    "RowError",
    "RowReader",
    "read_table",
    "read_text",
]

CsvRow = Record  # a CSV row is a record located by its line number


@dataclass(frozen=True)
class CsvDialect:
    """How a file writes its fields: the separator and the decimal mark of numbers.

    Spreadsheets in most of Europe save "CSV" with `;` between fields and `,` as the
    decimal mark (`1.234,50`), since `,` is their decimal mark.
    """

    delimiter: str = ","
    decimal_comma: bool = False

    def describe(self) -> str:
        mark = "decimal comma" if self.decimal_comma else "decimal point"
        return f"separator {self.delimiter!r}, {mark}"


COMMA = CsvDialect()


def detect_dialect(
    text: str, *, delimiter: str | None = None, decimal_comma: bool | None = None
) -> CsvDialect:
    """The dialect chosen by the caller, else read from the header line: a header with more
    `;` than `,` is a European file (`;` separator, decimal comma)."""
    if delimiter is None:
        header = next((line for line in text.splitlines() if line.strip(" \t,;")), "")
        delimiter = ";" if header.count(";") > header.count(",") else ","
    if delimiter not in (",", ";", "\t", "|"):
        raise ImportFailed([RowError(1, f"unsupported separator {delimiter!r}; use , or ;")])
    if decimal_comma is None:
        decimal_comma = delimiter == ";"
    if decimal_comma and delimiter == ",":
        raise ImportFailed(
            [RowError(1, "a file with a decimal comma cannot also use ',' between fields")]
        )
    return CsvDialect(delimiter, decimal_comma)


@dataclass(frozen=True)
class CsvTable:
    columns: tuple[str, ...]
    rows: list[Record]
    errors: list[RowError]  # rows of the wrong shape; the caller adds its own

    def has_column(self, column: str) -> bool:
        return column in self.columns


Source = Path | str | IO[str] | IO[bytes]


def read_text(source: Source) -> str:
    """The file's text: UTF-8, with or without a byte-order mark."""
    if isinstance(source, (str, Path)):
        data: str | bytes = Path(source).read_bytes()
    else:
        data = source.read()
    if isinstance(data, bytes):
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            line = data[: error.start].count(b"\n") + 1
            raise ImportFailed(
                [RowError(line, "the file is not UTF-8 text; save it as CSV UTF-8 and try again")]
            ) from None
    return data.removeprefix("\ufeff")


def read_table(
    text: str,
    *,
    required: Sequence[str],
    optional: Sequence[str] = (),
    numeric: Sequence[str] = (),
    dialect: CsvDialect = COMMA,
) -> CsvTable:
    """Split the text into records keyed by column name.

    A missing, duplicated or unknown column fails the whole file at once (line 1):
    no row can be trusted when the header is wrong. Rows holding nothing but separators
    and spaces are skipped like blank lines, and so are empty columns at the end of the
    header (spreadsheets write both). With a decimal comma, the `numeric` columns are
    rewritten with a '.' point, so that the importers read one notation.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, delimiter=dialect.delimiter)
    try:
        header = next(reader, None)
        while header is not None and _is_blank(header):
            header = next(reader, None)
    except csv.Error as error:
        raise ImportFailed([RowError(reader.line_num or 1, f"unreadable CSV: {error}")]) from None
    if header is None:
        raise ImportFailed([RowError(1, "the file is empty; a header row is required")])
    header_line = reader.line_num
    while len(header) > 1 and not header[-1].strip():
        header.pop()
    columns = tuple(cell.strip().lower() for cell in header)
    _check_header(columns, header_line, required, optional, dialect)

    rows: list[Record] = []
    errors: list[RowError] = []
    width = len(columns)
    to_convert = [column for column in numeric if column in columns]
    last_line = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            errors.append(RowError(last_line + 1, f"unreadable CSV: {error}"))
            last_line = reader.line_num
            continue
        line = last_line + 1
        last_line = reader.line_num
        if _is_blank(cells):
            continue
        if len(cells) > width and _is_blank(cells[width:]):
            cells = cells[:width]  # the empty columns a spreadsheet adds at the end
        if len(cells) != width:
            errors.append(
                RowError(line, f"expected {width} fields as in the header, found {len(cells)}")
            )
            continue
        values = {c: v.strip() for c, v in zip(columns, cells, strict=True)}
        if dialect.decimal_comma and not _convert_decimal_commas(values, to_convert, line, errors):
            continue
        rows.append(Record(line, values))
    return CsvTable(columns, rows, errors)


def _is_blank(cells: Sequence[str]) -> bool:
    return not any(cell.strip() for cell in cells)


_DECIMAL_COMMA_RE = re.compile(r"[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+)?(?:,\d*)?")


def decimal_comma_to_point(text: str) -> str:
    """`1.234,50` → `1234.50`: '.' may group thousands by three, ',' is the decimal mark."""
    if not text or not _DECIMAL_COMMA_RE.fullmatch(text) or not any(c.isdigit() for c in text):
        raise BadValue("is not a decimal number with a decimal comma (e.g. 1234,50 or 1.234,50)")
    return text.replace(".", "").replace(",", ".")


def _convert_decimal_commas(
    values: dict[str, str], columns: Sequence[str], line: int, errors: list[RowError]
) -> bool:
    ok = True
    for column in columns:
        value = values[column]
        if not value:
            continue
        try:
            values[column] = decimal_comma_to_point(value)
        except BadValue as problem:
            errors.append(RowError(line, f"{column} {quote(value)} {problem}"))
            ok = False
    return ok


def _check_header(
    columns: tuple[str, ...],
    line: int,
    required: Sequence[str],
    optional: Sequence[str],
    dialect: CsvDialect,
) -> None:
    errors: list[str] = []
    if (
        len(columns) == 1
        and dialect.delimiter not in columns[0]
        and (";" in columns[0] or "," in columns[0])
    ):
        other = ";" if dialect.delimiter == "," else ","
        raise ImportFailed(
            [
                RowError(
                    line,
                    f"the header has one column; the file seems to use {other!r} between "
                    f"fields (choose it with --delimiter {other!r})",
                )
            ]
        )
    known = (*required, *optional)
    if any(not column for column in columns):
        errors.append("the header has an empty column name")
    seen: set[str] = set()
    for column in columns:
        if column and column in seen:
            errors.append(f"column {column!r} appears twice in the header")
        seen.add(column)
    unknown = [column for column in columns if column and column not in known]
    if unknown:
        errors.append(
            f"unknown column{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(c) for c in unknown)}; the columns are {', '.join(known)}"
        )
    missing = [column for column in required if column not in seen]
    if missing:
        errors.append(
            f"missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)}"
        )
    if errors:
        raise ImportFailed([RowError(line, message) for message in errors])


# --- field parsers ----------------------------------------------------------------------

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_dates: dict[str, date] = {}


def parse_date(text: str) -> date:
    """An ISO date, YYYY-MM-DD."""
    cached = _dates.get(text)
    if cached is not None:
        return cached
    if not _DATE_RE.fullmatch(text):
        raise BadValue("is not a date in the form YYYY-MM-DD")
    try:
        value = date.fromisoformat(text)
    except ValueError:
        raise BadValue("is not a real date") from None
    if len(_dates) < 10_000:
        _dates[text] = value
    return value


def parse_decimal_text(text: str) -> Decimal:
    """A plain decimal number with a '.' point: no thousands separators, exponents or NaN."""
    if not _DECIMAL_RE.fullmatch(text):
        raise BadValue("is not a decimal number (use digits and a '.' point, e.g. 1234.50)")
    return Decimal(text)


def _bounded_amount(text: str) -> Decimal:
    value = parse_decimal_text(text)
    if abs(value) > MAX_MAJOR:
        raise BadValue(f"is too large (at most {MAX_MAJOR:,})")
    return value


def parse_amount(text: str) -> Decimal:
    """An amount in major units that is zero or more, at most 10**15 (money.MAX_MAJOR)."""
    value = _bounded_amount(text)
    if value < 0:
        raise BadValue("must not be negative")
    return value


def parse_positive_amount(text: str) -> Decimal:
    value = _bounded_amount(text)
    if value <= 0:
        raise BadValue("must be more than zero")
    return value


def parse_quantity_milli(text: str) -> int:
    """A quantity > 0 with at most three decimals, as thousandths of a unit."""
    value = parse_decimal_text(text)
    if value <= 0:
        raise BadValue("must be more than zero")
    milli = value.scaleb(QUANTITY_DECIMALS)
    if milli != milli.to_integral_value():
        raise BadValue(f"has more than {QUANTITY_DECIMALS} decimal places")
    if milli > MAX_DB_INT:
        raise BadValue("is too large")
    return int(milli)


def parse_line_number(text: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise BadValue("is not a whole number")
    value = int(text)
    if not 1 <= value <= MAX_LINE_NUMBER:
        raise BadValue(f"must be between 1 and {MAX_LINE_NUMBER}")
    return value


def parse_currency(text: str) -> str:
    try:
        return normalize_currency(text)
    except UnknownCurrency:
        raise BadValue("is not an ISO 4217 currency code (e.g. USD, EUR)") from None


def parse_email(text: str) -> str:
    if len(text) > 254:
        raise BadValue("is longer than 254 characters")
    try:
        validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        raise BadValue("is not a valid email address") from None
    return text


def parse_locale(text: str) -> str:
    value = text.lower()
    if value not in SUPPORTED_LOCALES:
        raise BadValue(f"is not a supported language; use one of {', '.join(SUPPORTED_LOCALES)}")
    return value


def parse_timezone(text: str) -> str:
    if len(text) > 64:
        raise BadValue("is not a time zone name")
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadValue("is not a time zone name (e.g. Europe/Paris)") from None
    return text


# --- identifiers that become part of a URL -------------------------------------------------
# An invoice number is the path of the customer's invoice page (`/invoices/<path:number>`,
# also `/pdf` and `/dispute` after it), an account number a segment of the staff desk's
# (`/desk/customers/<account_number>`). A number that a browser rewrites ("..", "a/./b")
# or a router reads differently ("x/pdf", a "/" in an account) gives a link that shows
# another page or none. So both are ASCII letters and digits with the separators ERPs
# use (`-`, `_`, `.`, `#`), each starting with a letter or digit; an invoice number may
# also hold "/" between such parts (Odoo's INV/2024/00001, FA/2024/001 in France, Spain
# or Poland), never at either end or twice in a row.
_IDENTIFIER_PART = r"[A-Za-z0-9][A-Za-z0-9._#-]*"
_ACCOUNT_NUMBER_RE = re.compile(_IDENTIFIER_PART)
_INVOICE_NUMBER_RE = re.compile(rf"{_IDENTIFIER_PART}(?:/{_IDENTIFIER_PART})*")
# What the portal's addresses put after an invoice number (`/invoices/<number>/pdf`): a
# number ending in "/pdf" would open another invoice's PDF (tests check the routes).
INVOICE_PATH_SUFFIXES = frozenset({"pdf", "dispute"})
_IDENTIFIER_CHARACTERS = "letters A-Z, digits and - _ . #"


def parse_account_number(text: str) -> str:
    """An account number, usable as one segment of a URL: ASCII letters, digits, `-`,
    `_`, `.` and `#`, starting with a letter or digit (so never "." or ".."). BadValue
    otherwise."""
    if not _ACCOUNT_NUMBER_RE.fullmatch(text):
        raise BadValue(
            f"is not an account number: use only {_IDENTIFIER_CHARACTERS}, "
            "starting with a letter or digit"
        )
    return text


def parse_invoice_number(text: str) -> str:
    """An invoice number, usable as the path of its page: parts as `parse_account_number`
    says, joined by single "/" (FA/2024/001), the last not a word the invoice's other
    addresses use after it (`INVOICE_PATH_SUFFIXES`). BadValue otherwise."""
    if not _INVOICE_NUMBER_RE.fullmatch(text):
        raise BadValue(
            f"is not an invoice number: use only {_IDENTIFIER_CHARACTERS} and /, each part "
            "between / starting with a letter or digit"
        )
    last = text.rpartition("/")[2]
    if "/" in text and last.lower() in INVOICE_PATH_SUFFIXES:
        raise BadValue(f"cannot end in /{last}: the invoice's address would open another page")
    return text


def parse_choice(choices: Sequence[str]) -> Callable[[str], str]:
    def parser(text: str) -> str:
        value = text.lower()
        if value not in choices:
            raise BadValue(f"must be one of {', '.join(choices)}")
        return value

    return parser
