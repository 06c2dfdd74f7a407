"""The aging report as CSV rows and as the JSON document of `portal report aging`.

Amounts are decimal strings in major units (`Money.to_decimal`), never floats. Cells that
a spreadsheet would read as a formula are neutralised (`safe_cell`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from portal.reports.queries import BUCKET_KEYS, Aging, AgingRow

# OWASP "CSV Injection": a cell starting with one of these is run as a formula by Excel,
# LibreOffice and Google Sheets; a leading apostrophe makes it text.
# https://owasp.org/www-community/attacks/CSV_Injection
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """The cell as text, prefixed with `'` when it would start a formula.

    Amounts are written by `amount()` and never pass here, so a negative number stays a
    number; anything else (a customer name, a reference) is defended.
    """
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """CSV text (RFC 4180, CRLF line ends). Cells that are `str` are made safe."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(c) if isinstance(c, str) else str(c) for c in row])
    return out.getvalue()


def _amounts(row: AgingRow) -> list[Any]:
    return [row.buckets[key].to_decimal() for key in BUCKET_KEYS] + [row.total.to_decimal()]


def aging_totals_csv(report: Aging, currencies: Sequence[str]) -> str:
    """One row per currency of `currencies` (ISO 4217 codes, a zero row for one with
    nothing open, as `aging_json` gives): as_of, currency, each bucket, total."""
    return to_csv(
        ["as_of", "currency", *BUCKET_KEYS, "total"],
        (
            [report.as_of.isoformat(), code, *_amounts(report.total_for(code))]
            for code in currencies
        ),
    )


def aging_customers_csv(report: Aging) -> str:
    """One row per customer and currency, then the currency's totals (account "TOTAL")."""
    rows: list[list[Any]] = [
        [
            report.as_of.isoformat(),
            row.currency,
            row.account_number or "",
            row.name or "",
            *_amounts(row),
        ]
        for row in report.customers
    ]
    rows += [
        [report.as_of.isoformat(), row.currency, "TOTAL", "", *_amounts(row)]
        for row in report.totals
    ]
    return to_csv(["as_of", "currency", "account_number", "name", *BUCKET_KEYS, "total"], rows)


def aging_json(report: Aging, currency: str) -> dict[str, Any]:
    """`{"as_of", "currency", "buckets": {key: "major units"}, "total"}` for one currency."""
    row = report.total_for(currency)
    return {
        "as_of": report.as_of.isoformat(),
        "currency": currency,
        "buckets": {key: str(row.buckets[key].to_decimal()) for key in BUCKET_KEYS},
        "total": str(row.total.to_decimal()),
    }
