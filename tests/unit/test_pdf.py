"""Invoice and statement PDFs: what a customer reads in them, in each of our languages."""

from __future__ import annotations

import dataclasses
import io
from datetime import date, timedelta

import pytest
from pypdf import PdfReader

from portal.creditor import Creditor
from portal.customers.models import Customer
from portal.invoices import pdf as pdf_module
from portal.invoices.models import CreditNote, Invoice, InvoiceLine
from portal.invoices.pdf import RECENT_PAYMENTS, invoice_pdf, statement_pdf
from portal.invoices.queries import InvoiceBalance, summarize
from portal.money import Money
from portal.payments.models import Payment, PaymentAllocation

CREDITOR = Creditor(
    name="Northwind Supplies Ltd",
    email="billing@northwind.example",
    phone="+1 555 0100",
    address="1 Harbour Street\nSpringfield",
    timezone="UTC",
)
TODAY = date(2026, 4, 20)


@pytest.fixture
def request_context(app):
    with app.test_request_context():
        yield


def _customer() -> Customer:
    return Customer(
        account_number="ACC-00042", name="Müller & Søn GmbH", email="ap@example.com", currency="EUR"
    )


def _invoice(customer: Customer, number: str, *, issue_date: date, total_minor: int) -> Invoice:
    invoice = Invoice(
        customer=customer,
        number=number,
        issue_date=issue_date,
        due_date=issue_date + timedelta(days=30),
        currency="EUR",
        total_minor=total_minor,
    )
    invoice.lines = [
        InvoiceLine(
            line_number=1,
            description="Beratung: Straße, Çà, ñ",
            quantity_milli=2500,
            unit_price_units=40000,
            unit_price_scale=2,
            tax_minor=total_minor - 100000,
            amount_minor=total_minor,
        )
    ]
    return invoice


def _balance(invoice: Invoice, paid: int = 0, credited: int = 0) -> InvoiceBalance:
    return InvoiceBalance(invoice, Money(paid, "EUR"), Money(credited, "EUR"), TODAY)


def _payment(customer: Customer, reference: str, paid_on: date, amount_minor: int) -> Payment:
    return Payment(
        customer=customer,
        reference=reference,
        source="offline",
        amount_minor=amount_minor,
        currency="EUR",
        paid_on=paid_on,
    )


def _paid_invoice_pdf(locale: str) -> bytes:
    customer = _customer()
    invoice = _invoice(customer, "INV-0042", issue_date=date(2026, 3, 5), total_minor=123450)
    payment = _payment(customer, "PAY-7", date(2026, 4, 1), 20000)
    allocation = PaymentAllocation(payment=payment, invoice=invoice, amount_minor=20000)
    credit = CreditNote(
        reference="CN-1",
        invoice=invoice,
        amount_minor=3450,
        currency="EUR",
        issued_on=date(2026, 4, 2),
        reason="Damaged goods",
    )
    return invoice_pdf(
        _balance(invoice, paid=20000, credited=3450),
        [allocation],
        [credit],
        creditor=CREDITOR,
        locale=locale,
        portal_url="https://pay.northwind.example",
    )


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


@pytest.mark.usefixtures("request_context")
@pytest.mark.parametrize(
    ("locale", "balance_due", "issue_date"),
    [
        ("en", "€1,000.00", "Mar 5, 2026"),
        ("es", "1.000,00\xa0€", "5 mar 2026"),
        ("fr", "1\u202f000,00\xa0€", "5 mars 2026"),
        ("de", "1.000,00\xa0€", "05.03.2026"),
    ],
)
def test_invoice_pdf_shows_number_line_and_balance_in_the_locale(locale, balance_due, issue_date):
    pdf = _paid_invoice_pdf(locale)

    assert pdf.startswith(b"%PDF")
    text = _text(pdf)
    assert "INV-0042" in text
    assert "Beratung: Straße, Çà, ñ" in text
    assert balance_due in text
    assert issue_date in text
    assert "Müller & Søn GmbH" in text
    assert "ACC-00042" in text


@pytest.mark.usefixtures("request_context")
def test_invoice_pdf_lists_payments_and_credit_notes_applied():
    text = _text(_paid_invoice_pdf("en"))

    assert "PAY-7" in text
    assert "Apr 1, 2026" in text
    assert "CN-1" in text
    assert "Damaged goods" in text
    assert "Partially paid" in text


@pytest.mark.usefixtures("request_context")
def test_invoice_pdf_metadata_names_document_creditor_and_language():
    reader = PdfReader(io.BytesIO(_paid_invoice_pdf("fr")))

    assert "INV-0042" in reader.metadata.title
    assert reader.metadata.author == CREDITOR.name
    assert reader.trailer["/Root"]["/Lang"] == "fr"


@pytest.mark.usefixtures("request_context")
def test_same_invoice_renders_identical_bytes():
    assert _paid_invoice_pdf("de") == _paid_invoice_pdf("de")


@pytest.mark.usefixtures("request_context")
def test_statement_lists_open_invoices_summary_payments_and_how_to_pay():
    # given one overdue invoice, one paid invoice and a payment
    customer = _customer()
    overdue = _invoice(customer, "INV-OPEN", issue_date=date(2026, 2, 1), total_minor=123450)
    paid = _invoice(customer, "INV-PAID", issue_date=date(2026, 1, 2), total_minor=100000)
    balances = [_balance(overdue), _balance(paid, paid=100000)]
    payment = _payment(customer, "PAY-2026-001", date(2026, 2, 10), 100000)

    # when
    pdf = statement_pdf(
        customer,
        balances,
        summarize(balances, "EUR"),
        [payment],
        creditor=CREDITOR,
        locale="de",
        today=TODAY,
    )

    # then
    text = _text(pdf)
    assert "20.04.2026" in text
    assert "INV-OPEN" in text
    assert "INV-PAID" not in text
    assert "1.234,50\xa0€" in text  # total due
    assert "PAY-2026-001" in text
    assert CREDITOR.email in text
    assert CREDITOR.phone in text


@pytest.mark.usefixtures("request_context")
def test_statement_without_open_invoices_or_payments_says_so():
    customer = _customer()

    pdf = statement_pdf(
        customer,
        [],
        summarize([], "EUR"),
        [],
        creditor=CREDITOR,
        locale="en",
        today=TODAY,
    )

    text = _text(pdf)
    assert "You have no open invoices" in text
    assert "No payments received yet" in text


def test_statement_without_a_creditor_phone_says_only_where_to_write():
    creditor = dataclasses.replace(CREDITOR, phone="")
    pdf = statement_pdf(
        _customer(), [], summarize([], "EUR"), [], creditor=creditor, locale="en", today=TODAY
    )
    text = _text(pdf)
    assert f"Questions? Email {CREDITOR.email}." in text
    assert "or call" not in text


@pytest.mark.usefixtures("request_context")
def test_statement_lists_only_the_most_recent_payments():
    customer = _customer()
    payments = [
        _payment(customer, f"PAY-{n:02d}", date(2026, 1, 1) + timedelta(days=n), 1000)
        for n in range(RECENT_PAYMENTS + 2)
    ]

    pdf = statement_pdf(
        customer,
        [],
        summarize([], "EUR"),
        payments,
        creditor=CREDITOR,
        locale="en",
        today=TODAY,
    )

    text = _text(pdf)
    assert f"PAY-{RECENT_PAYMENTS + 1:02d}" in text
    assert "PAY-02" in text
    assert "PAY-01" not in text
    assert "PAY-00" not in text


@pytest.mark.usefixtures("request_context")
def test_long_statement_paginates_and_repeats_the_table_heading():
    customer = _customer()
    balances = [
        _balance(
            _invoice(
                customer,
                f"INV-{n:04d}",
                issue_date=date(2026, 1, 1) + timedelta(days=n % 90),
                total_minor=100000 + n,
            )
        )
        for n in range(200)
    ]

    pdf = statement_pdf(
        customer,
        balances,
        summarize(balances, "EUR"),
        [],
        creditor=CREDITOR,
        locale="en",  # the assertions below read English labels
        today=TODAY,
    )

    pages = [page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages]
    assert len(pages) > 1
    assert all("Issue date" in page for page in pages)  # the heading row of the table
    assert all(f"Page {n} of {len(pages)}" in page for n, page in enumerate(pages, start=1))
    text = "\n".join(pages)
    assert "INV-0000" in text
    assert "INV-0199" in text


@pytest.mark.usefixtures("request_context")
def test_a_statement_asked_for_again_unchanged_is_not_drawn_again_and_any_change_is_shown():
    customer = _customer()
    invoice = _invoice(customer, "INV-KEPT", issue_date=date(2026, 2, 1), total_minor=123450)
    first_payment = _payment(customer, "PAY-KEPT-1", date(2026, 2, 10), 10000)

    def statement(balances, payments, *, locale="en", today=TODAY):
        return statement_pdf(
            customer,
            balances,
            summarize(balances, "EUR"),
            payments,
            creditor=CREDITOR,
            locale=locale,
            today=today,
        )

    kept = pdf_module._kept_statements
    kept.clear()
    misses, hits = kept.misses, kept.hits
    drawn = statement([_balance(invoice, paid=10000)], [first_payment])
    again = statement([_balance(invoice, paid=10000)], [first_payment])

    assert again == drawn
    assert (kept.misses, kept.hits) == (misses + 1, hits + 1)  # drawn once

    # a second payment, the next day, another language: each is another document
    second_payment = _payment(customer, "PAY-KEPT-2", date(2026, 2, 11), 5000)
    paid_more = statement([_balance(invoice, paid=15000)], [first_payment, second_payment])
    assert "PAY-KEPT-2" in _text(paid_more)
    assert "1,084.50" in _text(paid_more)  # 1,234.50 - 150.00
    tomorrow = statement(
        [_balance(invoice, paid=10000)], [first_payment], today=TODAY + timedelta(days=1)
    )
    assert "Apr 21, 2026" in _text(tomorrow)
    in_french = statement([_balance(invoice, paid=10000)], [first_payment], locale="fr")
    assert "Relevé" in _text(in_french)
    assert len({drawn, paid_more, tomorrow, in_french}) == 4


def test_kept_documents_stay_within_their_bytes_dropping_the_least_recently_used():
    kept = pdf_module._KeptDocuments(limit=10)
    kept.put("a", b"1234")
    kept.put("b", b"1234")
    assert kept.get("a") == b"1234"  # now the most recently used
    kept.put("c", b"1234")  # 12 bytes: "b" goes
    kept.put("huge", b"x" * 11)  # larger than the whole limit: never kept

    assert kept.get("b") is None
    assert kept.get("huge") is None
    assert kept.get("a") == b"1234"
    assert kept.get("c") == b"1234"
