"""The report pages over HTTP: who may see them, what they show, their CSV, bad filters."""

from __future__ import annotations

import csv
from datetime import date

import pytest

from tests.factories import login_as, make_customer, make_invoice, make_payment

DUE = date(2026, 3, 31)
PAGES = [
    "/staff/reports/aging",
    "/staff/reports/aging.csv",
    "/staff/reports/dso-cei",
    "/staff/reports/dso-cei.csv",
    "/staff/reports/collections",
    "/staff/reports/collections.csv",
    "/staff/reports/channels.csv",
]


@pytest.fixture
def ledger(db_session):
    customer = make_customer(name='=HYPERLINK("http://evil.example")')
    overdue = make_invoice(
        customer, issue_date=date(2026, 3, 1), due_date=DUE, lines=[("x", "1", "120.00")]
    )
    make_invoice(
        customer,
        issue_date=date(2026, 4, 1),
        due_date=date(2026, 5, 1),
        lines=[("x", "1", "80.00")],
    )
    make_payment(customer, [(overdue, "20.00")], paid_on=date(2026, 4, 10))
    return customer


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitors_are_sent_to_the_staff_sign_in(client, db_session, path):
    response = client.get(path)
    assert response.status_code == 302
    assert "/staff/login" in response.headers["Location"]


@pytest.mark.parametrize("path", PAGES)
def test_a_customer_session_is_not_a_staff_session(client, db_session, path):
    customer = make_customer()
    login_as(client, customer)
    response = client.get(path)
    assert response.status_code == 302
    assert "/staff/login" in response.headers["Location"]


def test_aging_page_shows_the_buckets_as_chart_and_table(staff_client, ledger):
    response = staff_client.get("/staff/reports/aging?as_of=2026-04-20&currency=USD")
    assert response.status_code == 200
    page = response.text
    assert "<svg" in page
    assert 'aria-hidden="true"' in page
    # 100.00 left of the overdue invoice, 20 days past due; 80.00 not yet due
    assert '<th scope="row">1–30 days</th><td class="num">$100.00</td>' in page
    assert '<th scope="row">Current</th><td class="num">$80.00</td>' in page
    assert "$180.00" in page
    assert ledger.account_number in page
    assert 'href="/staff/reports/aging.csv?currency=USD&amp;as_of=2026-04-20"' in page


def test_aging_csv_lists_every_customer_and_neutralises_formulas(staff_client, ledger):
    response = staff_client.get("/staff/reports/aging.csv?as_of=2026-04-20&currency=USD")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert 'filename="aging-2026-04-20-USD.csv"' in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(response.text.splitlines()))
    assert rows[0]["account_number"] == ledger.account_number
    assert rows[0]["name"] == '\'=HYPERLINK("http://evil.example")'
    assert (rows[0]["current"], rows[0]["1-30"], rows[0]["total"]) == ("80.00", "100.00", "180.00")
    assert rows[-1]["account_number"] == "TOTAL"
    assert rows[-1]["total"] == "180.00"


def test_dso_and_cei_page_states_the_formulas_and_the_figures(staff_client, ledger):
    response = staff_client.get(
        "/staff/reports/dso-cei?start=2026-04-01&end=2026-04-30&currency=USD"
    )
    assert response.status_code == 200
    page = response.text
    assert "period-end method" in page
    # beginning 120, sales 80, ending 180 (current 80): DSO 180/80 × 30 = 67.5;
    # CEI (200 − 180) / (200 − 80) × 100 = 16.7
    assert "67.5 days" in page
    assert "16.7 %" in page
    rows = list(
        csv.DictReader(
            staff_client.get(
                "/staff/reports/dso-cei.csv?start=2026-04-01&end=2026-04-30&currency=USD"
            ).text.splitlines()
        )
    )
    assert (rows[0]["dso_days"], rows[0]["cei_percent"]) == ("67.5", "16.7")


def test_collections_page_and_csvs(staff_client, ledger):
    query = "start=2026-04-01&end=2026-04-30&currency=USD"
    page = staff_client.get(f"/staff/reports/collections?{query}")
    assert page.status_code == 200
    assert "$20.00" in page.text
    days = list(
        csv.DictReader(
            staff_client.get(f"/staff/reports/collections.csv?{query}").text.splitlines()
        )
    )
    assert days == [
        {
            "day": "2026-04-10",
            "currency": "USD",
            "payments": "1",
            "received": "20.00",
            "refunded": "0.00",
            "net": "20.00",
        }
    ]
    channels = list(
        csv.DictReader(staff_client.get(f"/staff/reports/channels.csv?{query}").text.splitlines())
    )
    assert [(c["channel"], c["payments"], c["amount"]) for c in channels] == [
        ("card", "0", "0.00"),
        ("offline", "1", "20.00"),
    ]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/staff/reports/aging?as_of=2026-02-30", "Please enter a date as YYYY-MM-DD."),
        ("/staff/reports/aging?as_of=31/12/2026", "Please enter a date as YYYY-MM-DD."),
        ("/staff/reports/aging.csv?as_of=0001-01-01", "Please enter a date between 1900 and 9999."),
        (
            "/staff/reports/aging?as_of=2026-04-01&currency=XXX",
            "Please choose one of the currencies listed.",
        ),
        (
            "/staff/reports/dso-cei?start=2026-05-01&end=2026-04-01",
            "The end of the period must not be before its start.",
        ),
        (
            "/staff/reports/collections?start=2020-01-01&end=2026-04-01",
            "A period covers at most 366 days.",
        ),
        (
            "/staff/reports/channels.csv?start=x&end=2026-04-01",
            "Please enter a date as YYYY-MM-DD.",
        ),
    ],
)
def test_bad_filters_get_a_clear_message_and_a_400(staff_client, ledger, path, message):
    response = staff_client.get(path)
    assert response.status_code == 400
    assert message in response.text
    assert response.mimetype == "text/html"


def test_the_page_speaks_the_staff_members_language(staff_client, ledger):
    response = staff_client.get(
        "/staff/reports/aging?as_of=2026-04-20&currency=USD",
        headers={"Accept-Language": "de"},
    )
    assert response.status_code == 200
    assert "Altersstruktur" in response.text or "Fälligkeit" in response.text


def test_promises_kept_and_broken_in_the_period(staff_client, ledger):
    from portal.db import utcnow
    from portal.extensions import db
    from portal.promises.models import Promise

    def promise(status: str, on: date, amount: int, paid: int) -> None:
        db.session.add(
            Promise(
                customer_id=ledger.id,
                amount_minor=amount,
                currency="USD",
                made_on=date(2026, 3, 1),
                promised_on=on,
                status=status,
                source="staff",
                created_by="staff:1",
                paid_minor=paid,
                resolved_at=None if status == "open" else utcnow(),
            )
        )

    promise("kept", date(2026, 4, 5), 5000, 5000)
    promise("kept", date(2026, 4, 9), 2000, 2500)
    promise("broken", date(2026, 4, 12), 9000, 1000)
    promise("broken", date(2026, 3, 12), 9000, 0)  # outside the period
    db.session.flush()
    query = "start=2026-04-01&end=2026-04-30&currency=USD"
    page = staff_client.get(f"/staff/reports/collections?{query}")
    assert page.status_code == 200
    assert "2 promises" in page.text
    assert "1 promise" in page.text
    rows = list(
        csv.DictReader(staff_client.get(f"/staff/reports/promises.csv?{query}").text.splitlines())
    )
    assert [(r["status"], r["promises"], r["promised"], r["paid"]) for r in rows] == [
        ("kept", "2", "70.00", "75.00"),
        ("broken", "1", "90.00", "10.00"),
        ("open", "0", "0.00", "0.00"),
        ("cancelled", "0", "0.00", "0.00"),
    ]
