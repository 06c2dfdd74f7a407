"""The dispute reports and the credit notes' export, on a known data set: every figure is
worked out by hand below; days are the creditor's (America/New_York in tests)."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from flask.testing import FlaskClient

from portal.disputes.models import DisputeStatus
from portal.extensions import db
from portal.invoices.models import CreditNote
from portal.money import Money
from portal.reports.queries import (
    Period,
    disputes_by_outcome,
    disputes_by_reason,
    time_to_resolve,
)
from tests.factories import login_as, make_customer, make_invoice
from tests.integration.test_dispute_desk import make_dispute

OCTOBER = Period(date(2026, 10, 1), date(2026, 10, 31))
ROUTES = [
    "/staff/reports/disputes",
    "/staff/reports/disputes-by-reason.csv",
    "/staff/reports/disputes-by-outcome.csv",
    "/staff/reports/time-to-resolve.csv",
    "/staff/reports/credit-notes.csv?from=2026-10-01&to=2026-10-31",
]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _resolve(dispute, status: DisputeStatus, at: str, credited: dict[int, int] | None = None):  # type: ignore[no-untyped-def]
    dispute.status = status.value
    dispute.resolved_at = _at(at)
    dispute.resolved_by = "staff:1"
    for line in dispute.lines:
        line.credited_minor = (credited or {}).get(line.line_number, 0)
    db.session.flush()
    return dispute


@pytest.fixture
def disputes(db_session):  # type: ignore[no-untyped-def]
    usd = make_customer(account_number="REP-USD", currency="USD")
    eur = make_customer(account_number="REP-EUR", currency="EUR")
    lines = [("A", "1", "80.00"), ("B", "1", "25.00"), ("C", "1", "60.00"), ("D", "1", "10.00")]
    inv = make_invoice(usd, number="REP-INV-1", lines=lines, issue_date=date(2026, 9, 1))
    inv_eur = make_invoice(eur, number="REP-INV-2", lines=lines, issue_date=date(2026, 9, 1))
    d1 = make_dispute(inv, {1: "80.00"}, opened_at=_at("2026-10-05T15:00"))
    _resolve(d1, DisputeStatus.ACCEPTED, "2026-10-07T15:00", {1: 8000})  # 2 days
    d2 = make_dispute(inv, {2: "25.00"}, opened_at=_at("2026-10-10T15:00"))
    _resolve(d2, DisputeStatus.REJECTED, "2026-10-14T15:00")  # 4 days
    d3 = make_dispute(inv_eur, {3: "60.00", 4: "10.00"}, reason="wrong_price")
    d3.opened_at = _at("2026-10-12T15:00")
    _resolve(d3, DisputeStatus.PARTLY_ACCEPTED, "2026-10-13T03:00", {3: 3000})  # half a day
    make_dispute(inv, {3: "12.00"}, reason="not_received", opened_at=_at("2026-10-20T12:00"))
    d5 = make_dispute(inv, {4: "7.00"}, reason="other", opened_at=_at("2026-09-20T12:00"))
    _resolve(d5, DisputeStatus.WITHDRAWN, "2026-10-02T12:00")
    # 23:00 on October 31 in New York: October's
    make_dispute(inv, {3: "5.00"}, opened_at=_at("2026-11-01T03:00"))
    # 23:00 on September 30 in New York: not October's
    make_dispute(inv, {3: "1.00"}, opened_at=_at("2026-10-01T03:00"))
    line_1 = next(line for line in inv.lines if line.line_number == 1)
    line_3_eur = next(line for line in inv_eur.lines if line.line_number == 3)
    for reference, invoice, amount, kind, issued, reason, dispute, line in (
        ("CN-D1", inv, 8000, "dispute", date(2026, 10, 7), "=cmd|' /C calc'!A0", d1, line_1),
        ("CN-D3", inv_eur, 3000, "dispute", date(2026, 10, 13), "in part", d3, line_3_eur),
        ("CN-ERP", inv_eur, 500, "credit", date(2026, 10, 20), 'goodwill, "late"', None, None),
        ("CN-NOV", inv, 100, "credit", date(2026, 11, 2), "later", None, None),
    ):
        db.session.add(
            CreditNote(
                reference=reference,
                invoice_id=invoice.id,
                amount_minor=amount,
                currency=invoice.currency,
                kind=kind,
                issued_on=issued,
                reason=reason,
                dispute_id=dispute.id if dispute else None,
                invoice_line_id=line.id if line else None,
            )
        )
    db.session.flush()
    return {"d1": d1, "d3": d3, "inv": inv}


def test_disputes_by_reason_counts_those_opened_in_the_period_per_currency(disputes) -> None:  # type: ignore[no-untyped-def]
    rows = {(g.key, g.currency): g for g in disputes_by_reason(OCTOBER)}
    assert set(rows) == {("damaged", "USD"), ("not_received", "USD"), ("wrong_price", "EUR")}
    damaged = rows["damaged", "USD"]
    assert (damaged.count, damaged.disputed, damaged.credited) == (
        3,
        Money(8000 + 2500 + 500, "USD"),
        Money(8000, "USD"),
    )
    assert (rows["not_received", "USD"].count, rows["not_received", "USD"].disputed) == (
        1,
        Money(1200, "USD"),
    )
    price = rows["wrong_price", "EUR"]
    assert (price.count, price.disputed, price.credited) == (
        1,
        Money(7000, "EUR"),
        Money(3000, "EUR"),
    )


def test_disputes_by_outcome_counts_those_closed_in_the_period(disputes) -> None:  # type: ignore[no-untyped-def]
    rows = {
        (g.key, g.currency): (g.count, g.disputed.minor, g.credited.minor)
        for g in disputes_by_outcome(OCTOBER)
    }
    assert rows == {
        ("accepted", "USD"): (1, 8000, 8000),
        ("rejected", "USD"): (1, 2500, 0),
        ("partly_accepted", "EUR"): (1, 7000, 3000),
        ("withdrawn", "USD"): (1, 700, 0),
    }


def test_time_to_resolve_averages_staff_decisions_only(disputes) -> None:  # type: ignore[no-untyped-def]
    times = time_to_resolve(OCTOBER)
    # 0.5, 2 and 4 days; the withdrawal is the customer's
    assert times.count == 3
    assert times.average_seconds == (43_200 + 172_800 + 345_600) // 3
    assert times.median_seconds == 172_800
    assert (times.average_days, times.median_days) == (Decimal("2.2"), Decimal("2.0"))
    empty = time_to_resolve(Period(date(2025, 1, 1), date(2025, 1, 31)))
    assert (empty.count, empty.average_days, empty.median_days) == (0, None, None)


def test_median_of_an_even_count_is_the_mean_of_the_middle_two(disputes) -> None:  # type: ignore[no-untyped-def]
    times = time_to_resolve(Period(date(2026, 10, 1), date(2026, 10, 13)))  # d1 and d3
    assert times.count == 2
    assert times.median_seconds == (43_200 + 172_800) // 2


@pytest.mark.parametrize("path", ROUTES)
def test_the_dispute_reports_are_for_staff_only(client: FlaskClient, disputes, path: str) -> None:  # type: ignore[no-untyped-def]
    assert "/staff/login" in client.get(path).headers["Location"]
    login_as(client, disputes["inv"].customer)
    assert "/staff/login" in client.get(path).headers["Location"]


def test_the_report_page_shows_each_table(staff_client: FlaskClient, disputes) -> None:  # type: ignore[no-untyped-def]
    response = staff_client.get("/staff/reports/disputes?start=2026-10-01&end=2026-10-31")
    assert response.status_code == 200
    page = response.text
    assert "<svg" in page
    assert (
        '<th scope="row">Damaged or defective</th>\n      <td>USD</td>\n'
        '      <td class="num">3</td>\n      <td class="num">$110.00</td>'
    ) in page
    assert '<th scope="row">Partly accepted</th>\n      <td>EUR</td>' in page
    assert "€70.00" in page
    assert "€30.00" in page
    assert "2.2 days" in page
    assert "2 days" in page
    assert 'href="/staff/reports/credit-notes.csv?from=2026-10-01&amp;to=2026-10-31"' in page
    assert (
        'href="/staff/reports/disputes-by-reason.csv?start=2026-10-01&amp;end=2026-10-31"' in page
    )


@pytest.mark.parametrize(
    "query",
    [
        "start=2026-10-31&end=2026-10-01",
        "start=yesterday&end=2026-10-01",
        "start=0001-01-01&end=2026-01-01",
    ],
)
def test_a_bad_period_is_a_clear_400(staff_client: FlaskClient, disputes, query: str) -> None:  # type: ignore[no-untyped-def]
    for path in ("/staff/reports/disputes", "/staff/reports/disputes-by-reason.csv"):
        response = staff_client.get(f"{path}?{query}")
        assert response.status_code == 400
        assert "Please enter a date" in response.text or "must not be before" in response.text


def test_dispute_csvs(staff_client: FlaskClient, disputes) -> None:  # type: ignore[no-untyped-def]
    query = "?start=2026-10-01&end=2026-10-31"
    reason = staff_client.get("/staff/reports/disputes-by-reason.csv" + query)
    assert reason.mimetype == "text/csv"
    assert (
        'filename="disputes-by-reason-2026-10-01-2026-10-31.csv"'
        in reason.headers["Content-Disposition"]
    )
    rows = list(csv.DictReader(reason.text.splitlines()))
    assert rows == [
        {"start": "2026-10-01", "end": "2026-10-31", "reason": "wrong_price", "currency": "EUR",
         "disputes": "1", "disputed": "70.00", "credited": "30.00"},
        {"start": "2026-10-01", "end": "2026-10-31", "reason": "damaged", "currency": "USD",
         "disputes": "3", "disputed": "110.00", "credited": "80.00"},
        {"start": "2026-10-01", "end": "2026-10-31", "reason": "not_received", "currency": "USD",
         "disputes": "1", "disputed": "12.00", "credited": "0.00"},
    ]  # fmt: skip
    outcome = list(
        csv.DictReader(
            staff_client.get("/staff/reports/disputes-by-outcome.csv" + query).text.splitlines()
        )
    )
    assert [(r["outcome"], r["currency"], r["disputed"], r["credited"]) for r in outcome] == [
        ("partly_accepted", "EUR", "70.00", "30.00"),
        ("accepted", "USD", "80.00", "80.00"),
        ("rejected", "USD", "25.00", "0.00"),
        ("withdrawn", "USD", "7.00", "0.00"),
    ]
    [times] = list(
        csv.DictReader(
            staff_client.get("/staff/reports/time-to-resolve.csv" + query).text.splitlines()
        )
    )
    assert times == {
        "start": "2026-10-01",
        "end": "2026-10-31",
        "decided": "3",
        "average_seconds": "187200",
        "median_seconds": "172800",
        "average_days": "2.2",
        "median_days": "2.0",
    }


@pytest.mark.parametrize("route", [r for r in ROUTES if ".csv" in r])
def test_csv_exports_are_never_cached(staff_client: FlaskClient, disputes, route) -> None:  # type: ignore[no-untyped-def]
    # a staff export holds customers' names and amounts, as the pages do
    response = staff_client.get(route)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"


def test_credit_notes_csv_for_the_erp(staff_client: FlaskClient, disputes) -> None:  # type: ignore[no-untyped-def]
    response = staff_client.get("/staff/reports/credit-notes.csv?from=2026-10-01&to=2026-10-31")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert (
        'filename="credit-notes-2026-10-01-2026-10-31.csv"'
        in response.headers["Content-Disposition"]
    )
    text = response.get_data(as_text=True)
    assert text.startswith(
        "reference,invoice_number,line_number,account_number,amount,currency,kind,issued_on,"
        "reason,dispute_id\r\n"
    )
    rows = list(csv.DictReader(text.splitlines()))
    assert rows == [
        {
            "reference": "CN-D1",
            "invoice_number": "REP-INV-1",
            "line_number": "1",
            "account_number": "REP-USD",
            "amount": "80.00",
            "currency": "USD",
            "kind": "dispute",
            "issued_on": "2026-10-07",
            "reason": "'=cmd|' /C calc'!A0",  # a formula made text
            "dispute_id": str(disputes["d1"].id),
        },
        {
            "reference": "CN-D3",
            "invoice_number": "REP-INV-2",
            "line_number": "3",
            "account_number": "REP-EUR",
            "amount": "30.00",
            "currency": "EUR",
            "kind": "dispute",
            "issued_on": "2026-10-13",
            "reason": "in part",
            "dispute_id": str(disputes["d3"].id),
        },
        {
            "reference": "CN-ERP",
            "invoice_number": "REP-INV-2",
            "line_number": "",
            "account_number": "REP-EUR",
            "amount": "5.00",
            "currency": "EUR",
            "kind": "credit",
            "issued_on": "2026-10-20",
            "reason": 'goodwill, "late"',
            "dispute_id": "",
        },
    ]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "Please enter a date as YYYY-MM-DD."),
        ("from=2026-10-01", "Please enter a date as YYYY-MM-DD."),
        ("from=2026-13-01&to=2026-12-01", "Please enter a date as YYYY-MM-DD."),
        ("from=2026-10-31&to=2026-10-01", "The end of the period must not be before its start."),
        ("from==1+1&to=2026-10-01", "Please enter a date as YYYY-MM-DD."),
    ],
)
def test_credit_notes_csv_refuses_bad_dates_in_plain_words(
    staff_client: FlaskClient, disputes, query: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    response = staff_client.get(f"/staff/reports/credit-notes.csv?{query}")
    assert response.status_code == 400
    assert response.mimetype == "text/plain"
    assert message in response.text
