"""The reports on the real demo ledger, against a computation from the raw CSV in plain Python.

The ledger is converted with `today` chosen so that its dates are not shifted (the
newest invoice three days before today), imported through the CSV import, and every
figure is recomputed here from `shared/data/ibm-late-payment-histories.csv` alone:
an invoice exists from its InvoiceDate, is paid on its SettledDate (if that is on or
before today), and is open on a day D when issued by D and not yet settled by D.
"""

from __future__ import annotations

import csv
import json
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from portal.cli import report_group
from portal.db import utcnow
from portal.demo.convert import LAST_INVOICE_DAYS_AGO, SOURCE_CSV, convert
from portal.imports.services import import_file
from portal.reports.queries import BUCKET_KEYS, Period, aging, effectiveness

# The ledger as published in shared/data when it is there (the development machine),
# else the repository's unchanged copy of it (portal/demo/README.md).
SHARED = Path("/work/shared/data/ibm-late-payment-histories.csv")
RAW = SHARED if SHARED.exists() else SOURCE_CSV

AS_OF_DATES = [date(2012, 3, 31), date(2012, 9, 30), date(2013, 1, 15), date(2013, 6, 30)]
PERIODS = [
    Period(date(2012, 4, 1), date(2012, 6, 30)),
    Period(date(2012, 7, 1), date(2012, 12, 31)),
    Period(date(2013, 3, 1), date(2013, 3, 31)),
]


def _day(text: str) -> date:
    return datetime.strptime(text, "%d/%m/%Y").date()  # noqa: DTZ007 (a date, not a time)


def _cents(text: str) -> int:
    return int((Decimal(text) * 100).quantize(Decimal(1), ROUND_HALF_UP))


def raw_ledger() -> tuple[list[dict[str, object]], date]:
    """(invoices from the raw file, the `today` that leaves their dates unshifted)."""
    with RAW.open(newline="", encoding="utf-8-sig") as handle:
        rows = [
            {
                "issued": _day(r["InvoiceDate"]),
                "due": _day(r["DueDate"]),
                "cents": _cents(r["InvoiceAmount"]),
                "settled": _day(r["SettledDate"]),
            }
            for r in csv.DictReader(handle)
        ]
    today = max(r["issued"] for r in rows) + timedelta(days=LAST_INVOICE_DAYS_AGO)
    return rows, today


def expected_buckets(rows, today: date, as_of: date) -> dict[str, int]:
    buckets = dict.fromkeys(BUCKET_KEYS, 0)
    for r in rows:
        paid = r["settled"] <= today and r["settled"] <= as_of
        if r["issued"] > as_of or paid:
            continue
        late = (as_of - r["due"]).days
        if late <= 0:
            key = "current"
        elif late > 120:
            key = "120+"
        else:
            key = BUCKET_KEYS[(late - 1) // 30 + 1]
        buckets[key] += r["cents"]
    return buckets


@pytest.fixture
def demo_ledger(db_session, tmp_path):
    rows, today = raw_ledger()
    files = convert(tmp_path, today, source=RAW)
    for kind, path in (
        ("customers", files.customers),
        ("invoices", files.invoices),
        ("payments", files.payments),
    ):
        import_file(kind, path, now=utcnow(), actor="test")
    db_session.flush()
    # The featured accounts' extra invoices are dated relative to `today`, after every
    # day checked here, so the raw file alone predicts every figure below.
    with files.invoices.open(newline="", encoding="utf-8") as handle:
        extra = [r for r in csv.DictReader(handle) if r["invoice_number"].startswith("NW-")]
    assert extra
    assert min(date.fromisoformat(r["issue_date"]) for r in extra) > max(
        [*AS_OF_DATES, *(p.end for p in PERIODS)]
    )
    return rows, today


@pytest.mark.parametrize("as_of", AS_OF_DATES, ids=str)
def test_aging_matches_the_raw_ledger(demo_ledger, as_of):
    rows, today = demo_ledger
    expected = expected_buckets(rows, today, as_of)
    report = aging(as_of, customer_limit=None)
    row = report.total_for("USD")
    assert [r.currency for r in report.totals] == ["USD"]
    assert {k: v.minor for k, v in row.buckets.items()} == expected
    assert sum(expected.values()) > 0
    # the per-customer rows add up to the totals, bucket by bucket
    for key in BUCKET_KEYS:
        assert sum(c.buckets[key].minor for c in report.customers) == expected[key]


def test_several_buckets_are_filled_on_the_dates_checked(demo_ledger):
    rows, today = demo_ledger
    filled = set()
    for as_of in AS_OF_DATES:
        filled |= {k for k, v in expected_buckets(rows, today, as_of).items() if v}
    # Every invoice of the source was settled within 60 days of its due date, so the
    # older buckets are empty on every day (the hand-made cases cover them): the
    # comparison above is not vacuous for the buckets this ledger can fill.
    assert max((r["settled"] - r["due"]).days for r in rows) <= 60
    assert filled == {"current", "1-30", "31-60"}


@pytest.mark.parametrize("period", PERIODS, ids=lambda p: f"{p.start}..{p.end}")
def test_dso_and_cei_match_the_raw_ledger(demo_ledger, period):
    rows, today = demo_ledger
    beginning = sum(expected_buckets(rows, today, period.start - timedelta(days=1)).values())
    end = expected_buckets(rows, today, period.end)
    ending, ending_current = sum(end.values()), end["current"]
    sales = sum(r["cents"] for r in rows if period.start <= r["issued"] <= period.end)
    days = (period.end - period.start).days + 1
    dso = (Decimal(ending) * days / Decimal(sales)).quantize(Decimal("0.1"), ROUND_HALF_UP)
    cei = (
        Decimal(beginning + sales - ending) * 100 / Decimal(beginning + sales - ending_current)
    ).quantize(Decimal("0.1"), ROUND_HALF_UP)

    result = effectiveness(period, "USD")

    assert (result.beginning.minor, result.sales.minor) == (beginning, sales)
    assert (result.ending.minor, result.ending_current.minor) == (ending, ending_current)
    assert (result.dso, result.cei) == (dso, cei)
    assert Decimal(0) < cei <= Decimal(100)


def test_cli_json_prints_the_same_numbers(app, demo_ledger):
    rows, today = demo_ledger
    expected = expected_buckets(rows, today, date(2012, 9, 30))
    result = app.test_cli_runner().invoke(
        report_group, ["aging", "--as-of", "2012-09-30", "--currency", "usd", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "as_of": "2012-09-30",
        "currency": "USD",
        "buckets": {k: f"{Decimal(v) / 100:.2f}" for k, v in expected.items()},
        "total": f"{Decimal(sum(expected.values())) / 100:.2f}",
    }


def test_cli_csv_prints_the_same_numbers(app, demo_ledger):
    rows, today = demo_ledger
    expected = expected_buckets(rows, today, date(2013, 1, 15))
    result = app.test_cli_runner().invoke(
        report_group, ["aging", "--as-of", "2013-01-15", "--format", "csv"]
    )
    assert result.exit_code == 0, result.output
    parsed = list(csv.DictReader(result.output.splitlines()))
    assert parsed == [
        {
            "as_of": "2013-01-15",
            "currency": "USD",
            **{k: f"{Decimal(v) / 100:.2f}" for k, v in expected.items()},
            "total": f"{Decimal(sum(expected.values())) / 100:.2f}",
        }
    ]


@pytest.mark.parametrize("output", ["csv", "json"])
def test_cli_prints_a_zero_line_for_a_currency_with_nothing_open(app, db_session, output):
    """Every format names the same currencies: nothing open in EUR is a line of zeros."""
    result = app.test_cli_runner().invoke(
        report_group, ["aging", "--as-of", "2026-01-31", "--currency", "EUR", "--format", output]
    )
    assert result.exit_code == 0, result.output
    if output == "json":
        line = json.loads(result.output)
        assert (line["currency"], line["total"], set(line["buckets"].values())) == (
            "EUR",
            "0.00",
            {"0.00"},
        )
    else:
        parsed = list(csv.DictReader(result.output.splitlines()))
        assert len(parsed) == 1
        assert parsed[0]["currency"] == "EUR"
        assert {v for k, v in parsed[0].items() if k not in ("as_of", "currency")} == {"0.00"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--as-of", "2012-13-01"], "2012-13-01 is not a date; use YYYY-MM-DD."),
        (["--as-of", "yesterday"], "yesterday is not a date; use YYYY-MM-DD."),
        (["--as-of", "2012-09-30", "--currency", "XYZ"], "XYZ is not an ISO 4217 currency"),
        (["--as-of", "2012-09-30", "--format", "xml"], "'xml' is not one of 'csv', 'json'"),
    ],
)
def test_cli_refuses_bad_input_with_a_clear_message(app, db_session, args, message):
    result = app.test_cli_runner().invoke(report_group, ["aging", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
