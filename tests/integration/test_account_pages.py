"""What a signed-in customer sees, and what they never see."""

from __future__ import annotations

import io
from datetime import date, timedelta

import pytest
from pypdf import PdfReader

from portal.db import utcnow
from tests.factories import login_as, make_credit, make_customer, make_invoice, make_payment


@pytest.fixture
def today():
    return utcnow().date()


def test_account_page_shows_summary_open_and_paid_invoices(client, today):
    # given
    customer = make_customer(name="Globex", timezone="UTC")
    overdue = make_invoice(
        customer,
        number="INV-OVERDUE",
        issue_date=today - timedelta(days=40),
        due_date=today - timedelta(days=10),
        lines=[("Service", "1", "1200.50")],
    )
    make_invoice(
        customer,
        number="INV-UPCOMING",
        issue_date=today,
        due_date=today + timedelta(days=30),
        lines=[("Service", "1", "99.50")],
    )
    paid = make_invoice(
        customer, number="INV-PAID", issue_date=date(2026, 1, 1), due_date=date(2026, 1, 31)
    )
    make_payment(customer, [(paid, "100.00"), (overdue, "200.50")])
    login_as(client, customer)
    # when
    page = client.get("/account")
    # then
    assert page.status_code == 200
    text = page.text
    assert "Total due" in text
    assert "$1,099.50" in text  # 1000.00 + 99.50
    assert "$1,000.00" in text  # overdue
    assert "INV-OVERDUE" in text
    assert "10 days overdue" in text
    assert "Partially paid" in text
    assert "INV-UPCOMING" in text
    paid_section = text[text.index("Closed invoices") :]
    assert "INV-PAID" in paid_section


def test_invoice_detail_shows_lines_and_payments(client):
    customer = make_customer()
    invoice = make_invoice(
        customer,
        number="INV-LINES",
        lines=[("Consulting hours", "2.5", "80.00", "20.00"), ("Travel", "1", "45.10")],
    )
    make_payment(customer, [(invoice, "50.00")], reference="BANK-77")
    make_credit(invoice, "10.00")
    login_as(client, customer)
    page = client.get("/invoices/INV-LINES")
    assert page.status_code == 200
    for expected in (
        "Consulting hours",
        "2.5",
        "$80.00",
        "$20.00",
        "$220.00",
        "Travel",
        "$265.10",
        "BANK-77",
        "$205.10",
    ):
        assert expected in page.text


def test_another_customers_invoice_is_not_found(client):
    me, them = make_customer(), make_customer()
    make_invoice(them, number="INV-THEIRS")
    login_as(client, me)
    assert client.get("/invoices/INV-THEIRS").status_code == 404
    assert client.get("/invoices/INV-THEIRS/pdf").status_code == 404
    assert client.get("/invoices/INV-DOES-NOT-EXIST").status_code == 404


def test_invoice_pages_need_a_session(client):
    customer = make_customer()
    make_invoice(customer, number="INV-PRIVATE")
    assert client.get("/invoices/INV-PRIVATE").status_code == 401
    assert client.get("/account/statement.pdf").status_code == 401


def test_invoice_pdf_downloads(client):
    customer = make_customer()
    make_invoice(customer, number="INV-PDF")
    login_as(client, customer)
    response = client.get("/invoices/INV-PDF/pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF")
    assert 'filename="invoice-INV-PDF.pdf"' in response.headers["Content-Disposition"]
    # and it says how to pay: the portal's configured address and the invoice's number
    text = " ".join(
        "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.data)).pages).split()
    )
    assert "Pay online at https://portal.example.test" in text
    assert "then pay invoice INV-PDF." in text


def test_statement_pdf_downloads(client):
    customer = make_customer(account_number="ACC-STMT")
    make_invoice(customer)
    login_as(client, customer)
    response = client.get("/account/statement.pdf")
    assert response.status_code == 200
    assert response.data.startswith(b"%PDF")
    assert "statement-ACC-STMT" in response.headers["Content-Disposition"]


def test_customer_with_nothing_open_is_thanked(client):
    login_as(client, make_customer())
    assert "You have no open invoices" in client.get("/account").text


def test_home_redirects_a_signed_in_customer_to_the_account(client):
    login_as(client, make_customer())
    assert client.get("/").headers["Location"] == "/account"


def test_an_erp_number_with_slashes_and_accents_opens_and_downloads(client):
    customer = make_customer()
    make_invoice(customer, number="FA/2024/É-001")
    login_as(client, customer)
    page = client.get("/account")
    assert "/invoices/FA/2024/%C3%89-001" in page.text
    assert client.get("/invoices/FA/2024/%C3%89-001").status_code == 200
    response = client.get("/invoices/FA/2024/%C3%89-001/pdf")
    assert response.status_code == 200
    disposition = response.headers["Content-Disposition"]
    disposition.encode("latin-1")  # what a WSGI server must be able to send
    assert 'filename="invoice-FA_2024_?-001.pdf"' in disposition
    assert "filename*=UTF-8''invoice-FA%2F2024%2F%C3%89-001.pdf" in disposition


def test_an_invoice_number_with_markup_characters_is_shown_escaped(client):
    # given an ERP number with characters that mean something in HTML, paid in part by a
    # payment and credited by a credit note whose references have such characters too
    customer = make_customer()
    invoice = make_invoice(customer, number="A&B<1>'x\"")
    make_payment(customer, [(invoice, "10.00")], reference="PAY<&>'\"1")
    credit = make_credit(invoice, "1.00")
    credit.reference = "CN<&>'\"2"
    login_as(client, customer)
    # when the account page lists it, then its text and its links are escaped (once) in
    # the open invoices, the promise form, the payment's allocation and the credit note
    page = client.get("/account").text
    assert "<1>" not in page
    assert "<&>" not in page
    assert "&amp;amp;" not in page
    number, url = "A&amp;B&lt;1&gt;&#39;x&#34;", "/invoices/A&amp;B%3C1%3E&#39;x%22"
    assert page.count(f'<a href="{url}">{number}</a>') == 3  # open, applied to, credited
    assert f'value="{number}"' in page
    assert "Payment PAY&lt;&amp;&gt;&#39;&#34;1</th>" in page
    assert ">CN&lt;&amp;&gt;&#39;&#34;2</th>" in page


def test_invoices_reduced_only_by_credit_notes_never_read_as_paid(client, today):
    # given one invoice credited in part and one credited in full, and no payment
    customer = make_customer(timezone="UTC")
    part = make_invoice(
        customer,
        number="INV-PART-CREDIT",
        issue_date=today - timedelta(days=40),
        due_date=today - timedelta(days=10),
        lines=[("Service", "1", "100.00")],
    )
    full = make_invoice(
        customer,
        number="INV-FULL-CREDIT",
        issue_date=today - timedelta(days=40),
        due_date=today - timedelta(days=10),
        lines=[("Service", "1", "100.00")],
    )
    make_credit(part, "40.00")
    make_credit(full, "100.00")
    login_as(client, customer)
    # when / then: the account page labels each by what happened
    account = client.get("/account").text
    assert '<span class="badge badge--partially_credited">Partially credited</span>' in account
    assert '<span class="badge badge--credited">Credited</span>' in account
    assert "Partially paid" not in account
    assert "badge--paid" not in account
    # the invoice pages too
    page = client.get("/invoices/INV-PART-CREDIT").text
    assert '<span class="badge badge--partially_credited">Partially credited</span>' in page
    page = client.get("/invoices/INV-FULL-CREDIT").text
    assert '<span class="badge badge--credited">Credited</span>' in page
    assert ">Paid<" not in page
    # and its PDF says the same
    pdf = client.get("/invoices/INV-FULL-CREDIT/pdf")
    text = " ".join(
        "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.data)).pages).split()
    )
    assert "Status Credited" in text
    assert "Paid $0.00 Credited -$100.00 Balance due $0.00" in text


def test_credit_note_statuses_are_translated(client, today):
    customer = make_customer(timezone="UTC", locale="es")
    invoice = make_invoice(customer, number="INV-ES-CREDIT", lines=[("Servicio", "1", "100.00")])
    make_credit(invoice, "40.00")
    login_as(client, customer)
    page = client.get("/invoices/INV-ES-CREDIT").text
    assert '<span class="badge badge--partially_credited">Acreditado parcialmente</span>' in page
