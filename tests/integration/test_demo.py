"""The demo ledger: converted relative to `today`, imported through the CSV import, links work."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from portal.cli import demo_command
from portal.customers.models import Customer
from portal.demo.convert import LAST_INVOICE_DAYS_AGO, convert
from portal.demo.loader import load_demo
from portal.extensions import db
from portal.imports.services import import_file
from portal.invoices.models import Invoice
from portal.invoices.queries import invoice_balances_for
from portal.payments.models import Payment
from tests.factories import csrf_token_from

TODAY = date(2026, 5, 1)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    return convert(tmp_path_factory.mktemp("demo"), TODAY)


def test_ledger_ends_just_before_today_with_open_and_overdue_invoices(demo_files):
    invoices = rows(demo_files.invoices)
    payments = rows(demo_files.payments)
    issued = [date.fromisoformat(r["issue_date"]) for r in invoices]
    assert max(issued) == TODAY - timedelta(days=LAST_INVOICE_DAYS_AGO)
    assert all(date.fromisoformat(p["paid_on"]) <= TODAY for p in payments)
    paid = {p["invoice_number"] for p in payments}
    due = {r["invoice_number"]: date.fromisoformat(r["due_date"]) for r in invoices}
    open_overdue = [n for n, d in due.items() if n not in paid and d < TODAY]
    open_not_due = [n for n, d in due.items() if n not in paid and d >= TODAY]
    # the source's late payers leave a few invoices overdue, the featured accounts one each
    assert len([n for n in open_overdue if not n.startswith("NW-")]) >= 3
    assert len(open_overdue) >= 5
    assert len(open_not_due) >= 30
    # most of the ledger was settled
    assert len(paid) > 0.9 * len(due)


def test_customers_mix_languages_kinds_and_look_real(demo_files):
    customers = rows(demo_files.customers)
    assert len(customers) == 100
    assert {c["locale"] for c in customers} == {"en", "es", "fr", "de"}
    assert {c["kind"] for c in customers} == {"business", "consumer"}
    assert {c["currency"] for c in customers} == {"USD"}
    assert len({c["name"] for c in customers}) == 100
    businesses = [c for c in customers if c["kind"] == "business"]
    assert all(c["email"].startswith("ap@") for c in businesses)
    assert all(c["email"].endswith(".example") for c in customers)
    assert not any(c["name"].startswith("Customer") for c in customers)


def test_first_two_customers_have_multi_line_invoices(demo_files):
    first, second = demo_files.featured_accounts
    lines_per_invoice: dict[tuple[str, str], int] = {}
    for row in rows(demo_files.invoices):
        key = (row["account_number"], row["invoice_number"])
        lines_per_invoice[key] = lines_per_invoice.get(key, 0) + 1
    for account in (first, second):
        counts = [n for (a, _), n in lines_per_invoice.items() if a == account and n > 1]
        assert len(counts) == 3
        assert all(3 <= n <= 5 for n in counts)
    taxed = [r for r in rows(demo_files.invoices) if r["tax_amount"]]
    assert {r["account_number"] for r in taxed} == {first, second}


def test_conversion_is_deterministic_and_follows_today(tmp_path, demo_files):
    again = convert(tmp_path / "again", TODAY)
    for name in ("customers", "invoices", "payments"):
        assert getattr(again, name).read_bytes() == getattr(demo_files, name).read_bytes()
    later = convert(tmp_path / "later", TODAY + timedelta(days=10))
    shifted = max(date.fromisoformat(r["issue_date"]) for r in rows(later.invoices))
    assert shifted == TODAY + timedelta(days=10 - LAST_INVOICE_DAYS_AGO)


def test_converted_files_import_cleanly(db_session, demo_files):
    # when
    reports = [
        import_file(kind, getattr(demo_files, kind), now=_now(), actor="test")
        for kind in ("customers", "invoices", "payments")
    ]
    # then
    assert [r.created for r in reports] == [
        100,
        len({r["invoice_number"] for r in rows(demo_files.invoices)}),
        len(rows(demo_files.payments)),
    ]
    featured = db.session.scalar(
        select(Customer).where(Customer.account_number == demo_files.featured_accounts[0])
    )
    balances = invoice_balances_for(featured, TODAY)
    open_multi_line = [b for b in balances if b.is_open and len(b.invoice.lines) > 1]
    assert any(b.is_overdue for b in open_multi_line)
    assert any(not b.is_overdue for b in open_multi_line)
    # and a second import of the same files changes nothing
    for kind in ("customers", "invoices", "payments"):
        again = import_file(kind, getattr(demo_files, kind), now=_now(), actor="test")
        assert (again.created, again.updated) == (0, 0)


def test_demo_loads_once_and_prints_two_working_links(app, client):
    # when
    lines = load_demo(print_links=True, today=TODAY)
    # then
    assert lines[0].startswith("Loaded the demo ledger: 100 customers, ")
    links = lines[1:]
    assert len(links) == 2
    accounts = []
    for line in links:
        label, url = line.rsplit(": ", 1)
        assert url.startswith(app.config["PORTAL_BASE_URL"] + "/l/")
        account = label.rsplit("account ", 1)[1].rstrip(")")
        accounts.append(account)
        customer = db.session.scalar(select(Customer).where(Customer.account_number == account))
        path = url.removeprefix(app.config["PORTAL_BASE_URL"])
        landing = client.get(path)
        assert landing.status_code == 200
        opened = client.post(path, data={"csrf_token": csrf_token_from(landing.text)})
        assert opened.status_code == 302
        page = client.get("/account")
        assert page.status_code == 200
        assert customer.name in page.text
        assert any(b.is_open for b in invoice_balances_for(customer, TODAY))
    assert len(set(accounts)) == 2
    first = db.session.scalar(select(Customer).where(Customer.account_number == accounts[0]))
    assert any(b.is_open and len(b.invoice.lines) > 1 for b in invoice_balances_for(first, TODAY))
    # and loading again adds nothing
    counts = _counts()
    again = load_demo(print_links=False, today=TODAY)
    assert again == ["The database already has customers; the demo ledger was not loaded again."]
    assert _counts() == counts


def test_demo_command_runs(app, db_session):
    result = app.test_cli_runner().invoke(demo_command, ["--no-links"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Loaded the demo ledger: 100 customers")
    assert "/l/" not in result.output


def _counts() -> tuple[int, int, int]:
    return tuple(
        db.session.scalar(select(func.count()).select_from(model))
        for model in (Customer, Invoice, Payment)
    )


def _now():
    from portal.db import utcnow

    return utcnow()
