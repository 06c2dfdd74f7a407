"""Customer import: upsert by account number, defaults, and every bad row listed."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from portal.audit.models import AuditEvent
from portal.customers.models import Customer
from portal.db import utcnow
from portal.extensions import db
from portal.imports.services import ImportFailed, Record, import_file, import_records
from tests.factories import make_customer, make_invoice

HEADER = "account_number,name,email,phone,locale,currency,kind,segment,timezone\n"


def run(text: str, *, dry_run: bool = False):
    return import_file("customers", io.StringIO(text), dry_run=dry_run, now=utcnow(), actor="test")


def errors_of(text: str) -> list[tuple[int, str]]:
    with pytest.raises(ImportFailed) as failure:
        run(text)
    return [(error.line, error.message) for error in failure.value.errors]


def customer(account: str) -> Customer:
    return db.session.scalar(select(Customer).where(Customer.account_number == account))


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_new_customers_get_defaults_and_one_audit_row(db_session, app):
    # when
    report = run(
        "account_number,name,email\nA-1,Acme Ltd,ap@acme.example\nA-2,Beta GmbH,ap@beta.example\n"
    )
    # then
    assert report.summary() == "2 created, 0 updated, 0 unchanged"
    acme = customer("A-1")
    assert (acme.name, acme.email, acme.kind, acme.segment) == (
        "Acme Ltd",
        "ap@acme.example",
        "business",
        "standard",
    )
    assert acme.currency == app.config["DEFAULT_CURRENCY"]
    assert (acme.phone, acme.locale, acme.timezone) == (None, None, None)
    [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "import.customers"))
    assert event.actor == "import:test"
    assert event.data == {"rows": 2, "created": 2, "updated": 0, "unchanged": 0}


def test_all_columns_are_stored(db_session):
    run(
        HEADER + "C-9,Camille Dubois,camille@mail.example,+33 1 55 55 0101,FR,eur,Consumer,"
        "vip,Europe/Paris\n"
    )
    camille = customer("C-9")
    assert (camille.phone, camille.locale, camille.currency) == ("+33 1 55 55 0101", "fr", "EUR")
    assert (camille.kind, camille.segment, camille.timezone) == ("consumer", "vip", "Europe/Paris")


def test_reimporting_the_same_file_changes_nothing(db_session):
    text = HEADER + "A-1,Acme,ap@acme.example,,en,USD,business,standard,America/New_York\n"
    run(text)
    before = customer("A-1").updated_at
    report = run(text)
    assert report.summary() == "0 created, 0 updated, 1 unchanged"
    assert customer("A-1").updated_at == before
    assert count(Customer) == 1


def test_changed_fields_update_the_customer(db_session):
    make_customer(account_number="A-1", name="Old name", email="old@acme.example", segment="vip")
    report = run("account_number,name,email,locale\nA-1,New name,new@acme.example,de\n")
    assert report.summary() == "0 created, 1 updated, 0 unchanged"
    updated = customer("A-1")
    assert (updated.name, updated.email, updated.locale) == ("New name", "new@acme.example", "de")
    # an absent column keeps what the customer had
    assert updated.segment == "vip"


def test_empty_optional_cell_keeps_the_existing_value(db_session):
    make_customer(account_number="A-1", name="Acme", email="ap@acme.example", currency="EUR")
    report = run("account_number,name,email,currency\nA-1,Acme,ap@acme.example,\n")
    assert report.unchanged == 1
    assert customer("A-1").currency == "EUR"


def test_every_bad_row_is_listed_and_nothing_is_written(db_session):
    text = (
        HEADER
        + "A-1,Good,ap@good.example,,,,,,\n"  # line 2: fine
        + "A-2,Bad email,not-an-email,,,,,,\n"  # 3
        + "A-3,Bad locale,ap@x.example,,it,,,,\n"  # 4
        + "A-4,Bad zone,ap@x.example,,,,,,Mars/Base\n"  # 5
        + "A-5,,ap@x.example,,,,,,\n"  # 6: no name
        + "A-1,Again,ap@again.example,,,,,,\n"  # 7: duplicate account
        + "A-6,Bad kind,ap@x.example,,,,partner,,\n"  # 8
        + "A-7,Bad currency,ap@x.example,,,US$,,,\n"  # 9
        + ",No account,ap@x.example,,,,,,\n"  # 10
        + "A-8,Short row\n"  # 11
    )
    errors = errors_of(text)
    assert [line for line, _ in errors] == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert errors == [
        (3, "email 'not-an-email' is not a valid email address"),
        (4, "locale 'it' is not a supported language; use one of en, es, fr, de"),
        (5, "timezone 'Mars/Base' is not a time zone name (e.g. Europe/Paris)"),
        (6, "name is required"),
        (7, "account 'A-1' already appears on line 2"),
        (8, "kind 'partner' must be one of business, consumer"),
        (9, "currency 'US$' is not an ISO 4217 currency code (e.g. USD, EUR)"),
        (10, "account_number is required"),
        (11, "expected 9 fields as in the header, found 2"),
    ]
    assert count(Customer) == 0
    assert count(AuditEvent) == 0


def test_several_problems_of_one_row_are_all_reported(db_session):
    errors = errors_of("account_number,name,email,locale\nA-1,,bad,xx\n")
    assert [line for line, _ in errors] == [2, 2, 2]


def test_too_long_values_are_refused(db_session):
    errors = errors_of(f"account_number,name,email\nA-1,{'x' * 201},ap@acme.example\n")
    assert errors == [(2, "name is longer than 200 characters")]


def test_currency_of_an_invoiced_customer_cannot_change(db_session):
    invoiced = make_customer(account_number="A-1", currency="USD")
    make_invoice(invoiced)
    make_customer(account_number="A-2", currency="USD")
    errors = errors_of(
        "account_number,name,email,currency\n"
        "A-2,Fresh,ap@fresh.example,EUR\n"
        "A-1,Invoiced,ap@invoiced.example,EUR\n"
    )
    assert errors == [
        (3, "account 'A-1' already has invoices in USD; its currency cannot change to EUR")
    ]
    assert customer("A-2").currency == "USD"


def test_currency_of_a_customer_without_invoices_may_change(db_session):
    make_customer(account_number="A-2", name="Fresh", email="ap@fresh.example", currency="USD")
    report = run("account_number,name,email,currency\nA-2,Fresh,ap@fresh.example,EUR\n")
    assert report.updated == 1
    assert customer("A-2").currency == "EUR"


def test_dry_run_reports_but_writes_nothing(db_session):
    make_customer(account_number="A-1", name="Old", email="ap@old.example")
    report = run(
        "account_number,name,email\nA-1,New,ap@old.example\nA-2,Beta,ap@beta.example\n",
        dry_run=True,
    )
    assert report.summary() == "1 created, 1 updated, 0 unchanged"
    assert count(Customer) == 1
    assert customer("A-1").name == "Old"
    assert count(AuditEvent) == 0


def test_unknown_kind_of_import_is_a_programming_error(db_session):
    with pytest.raises(ValueError, match="unknown import kind"):
        import_file("refunds", io.StringIO(""), now=utcnow(), actor="test")


# --- account numbers: a segment of the staff desk's addresses -------------------------------
BAD_ACCOUNT = (
    "is not an account number: use only letters A-Z, digits and - _ . #, starting with a "
    "letter or digit"
)


def test_account_numbers_a_browser_or_the_router_would_misread_are_refused(db_session):
    rows = ["3993-QUNVJ", "..", ".", "a/b", "A 1", "-", "Ñ1"]
    text = HEADER + "".join(f"{account},Acme,ap@acme.example,,,,,,\n" for account in rows)
    assert errors_of(text) == [
        (line, f"account_number {account!r} {BAD_ACCOUNT}")
        for line, account in [(3, ".."), (4, "."), (5, "a/b"), (6, "A 1"), (7, "-"), (8, "Ñ1")]
    ]
    assert count(Customer) == 0


def test_a_key_with_a_space_at_either_end_from_another_front_end_is_refused(db_session):
    # the CSV reader strips cells; records pushed another way arrive as they are
    records = [Record(1, {"account_number": " C-1", "name": "Acme", "email": "ap@acme.example"})]
    with pytest.raises(ImportFailed) as failure:
        import_records("customers", records, now=utcnow(), actor="api")
    assert [(e.line, e.message) for e in failure.value.errors] == [
        (
            1,
            "account_number ' C-1' has a space at either end, a tab or a line break; "
            "remove it and try again",
        )
    ]
