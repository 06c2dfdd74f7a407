"""What every import front end hands to the importers: records, and why they are refused.

A record is a plain mapping of field name to text plus its position in the source (the
CSV line number, or an item's index in a JSON request), so that the "validate → apply"
step of each kind (`portal.imports.customers`, …) works the same for any front end.
Everything here is pure (no database).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from portal.errors import DomainError

T = TypeVar("T")


@dataclass(frozen=True, order=True)
class RowError:
    """One reason a record was refused: its position (CSV line, header = 1) and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ImportFailed(DomainError):
    """Some records are bad; nothing was written. `errors` lists every problem."""

    def __init__(self, errors: Iterable[RowError]) -> None:
        self.errors = sorted(errors)
        super().__init__(
            f"{self.bad_rows} bad row{'s' if self.bad_rows != 1 else ''} "
            f"({len(self.errors)} problem{'s' if len(self.errors) != 1 else ''}); "
            "nothing was imported"
        )

    @property
    def bad_rows(self) -> int:
        """How many rows are bad (one row may have several problems)."""
        return len({error.line for error in self.errors})


class BadValue(ValueError):
    """A field that cannot be read; the message completes "<column> '<value>' …"."""


@dataclass(frozen=True, slots=True)
class Record:
    """One item to import: `line` locates it in its source; `values` maps field → text."""

    line: int
    values: Mapping[str, str]


# What PostgreSQL cannot store in a text column (NUL; a lone surrogate is not encodable
# in UTF-8) and control characters no spreadsheet cell means to hold. Tab, line feed and
# carriage return (a Windows line break inside a quoted cell) are text.
_ALLOWED_CONTROLS = frozenset("\t\n\r")


def unstorable_character(text: str) -> str | None:
    """The first character of `text` a database would refuse or no cell holds, as U+0000."""
    for char in text:
        if char in _ALLOWED_CONTROLS:
            continue
        category = unicodedata.category(char)
        if category == "Cc" or category == "Cs":
            return f"U+{ord(char):04X}"
    return None


# A long number a spreadsheet displays (and then saves) in scientific notation.
_SCIENTIFIC = re.compile(r"[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+")


def looks_scientific(text: str) -> bool:
    return _SCIENTIFIC.fullmatch(text) is not None


class RowReader:
    """Reads the fields of one record, recording every problem instead of stopping at the
    first. Text a database would refuse is reported once per field when the reader is made."""

    __slots__ = ("errors", "line", "ok", "values")

    def __init__(self, record: Record, errors: list[RowError]) -> None:
        self.values = record.values
        self.line = record.line
        self.errors = errors
        self.ok = True
        for column, value in self.values.items():
            bad = unstorable_character(value)
            if bad is not None:
                self.error(
                    f"{column} contains the invisible character {bad}, which cannot be stored; "
                    "remove it and try again"
                )

    def error(self, message: str) -> None:
        self.errors.append(RowError(self.line, message))
        self.ok = False

    def _value(self, column: str) -> str:
        value = self.values.get(column, "")
        return "" if unstorable_character(value) else value

    def text(self, column: str, *, required: bool = False, max_length: int | None = None) -> str:
        value = self._value(column)
        if required and not value and not self.values.get(column):
            self.error(f"{column} is required")
        elif max_length is not None and len(value) > max_length:
            self.error(f"{column} is longer than {max_length} characters")
        return value

    def key(
        self,
        column: str,
        *,
        max_length: int,
        parser: Callable[[str], str] | None = None,
    ) -> str:
        """A required external reference (account, invoice or payment number), matched
        as it is on re-import: no space at either end and no tab or line break, which a
        reader cannot see (the CSV front end strips the ends; other front ends may not).
        `parser` checks the shape of a reference that becomes part of a URL
        (`parsing.parse_invoice_number`). "" (and an error) when it is bad."""
        value = self.text(column, required=True, max_length=max_length)
        if not value:
            return value
        if looks_scientific(value):
            self.error(
                f"{column} {quote(value)} looks like a number a spreadsheet shortened to "
                "scientific notation; format the column as text and export the file again"
            )
            return ""
        if value != value.strip() or any(char in _ALLOWED_CONTROLS for char in value):
            self.error(
                f"{column} {quote(value)} has a space at either end, a tab or a line break; "
                "remove it and try again"
            )
            return ""
        if parser is not None:
            try:
                return parser(value)
            except BadValue as problem:
                self.error(f"{column} {quote(value)} {problem}")
                return ""
        return value

    def parse(self, column: str, parser: Callable[[str], T], *, required: bool = True) -> T | None:
        raw = self.values.get(column, "")
        value = self._value(column)
        if not value:
            if required and not raw:
                self.error(f"{column} is required")
            return None
        try:
            return parser(value)
        except BadValue as problem:
            self.error(f"{column} {quote(value)} {problem}")
            return None


def quote(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")
