"""The invoice page: what it writes of customer-controlled text, its links, and the
payments, credit notes and disputes it lists (read in one plain statement)."""

from __future__ import annotations

from datetime import date, timedelta
from urllib.parse import quote

import pytest
from flask import Flask, request, url_for
from markupsafe import escape

from portal.audit.actors import Actor
from portal.db import utcnow
from portal.disputes import services
from portal.extensions import db
from portal.invoices.pages import _links
from portal.money import Money
from tests.factories import login_as, make_credit, make_customer, make_invoice, make_payment

NUMBER = "A&B<1>'x\""
DESCRIPTION = "Fish & <chips> 'n' \"peas\""


def test_markup_characters_in_number_and_description_are_escaped_once(app, client):
    # given an ERP number and a line description with characters that mean something in HTML
    app.config["STRIPE_SECRET_KEY"] = "sk_test_escaping"  # so that the page offers to pay
    try:
        customer = make_customer()
        make_invoice(customer, number=NUMBER, lines=[(DESCRIPTION, "1", "10.00")])
        login_as(client, customer)
        # when the customer opens the invoice
        page = client.get("/invoices/" + quote(NUMBER)).text
    finally:
        app.config["STRIPE_SECRET_KEY"] = None
    # then each is escaped exactly once: in the title, the heading and the line
    shown = "A&amp;B&lt;1&gt;&#39;x&#34;"
    assert f"<title>Invoice {shown} · " in page
    assert f"<h1>Invoice {shown}</h1>" in page
    assert (
        '<span class="cell-value">Fish &amp; &lt;chips&gt; &#39;n&#39; &#34;peas&#34;</span>'
        in page
    )
    # and in the links, quoted as werkzeug quotes them, then escaped once
    assert 'href="/pay?invoice=A%26B%3C1%3E&#39;x%22"' in page
    assert 'href="/invoices/A&amp;B%3C1%3E&#39;x%22/dispute"' in page
    assert 'href="/invoices/A&amp;B%3C1%3E&#39;x%22/pdf" download' in page
    for raw in ("<1>", "<chips>", "&amp;amp;", "&amp;lt;", "&amp;#39;", "&amp;#34;"):
        assert raw not in page


@pytest.mark.parametrize(
    "number", ["INV-1", "FA/2024/É-001", "A&B<1>'x\"", "a b+c", "50%#?=;", "x~y_z.-"]
)
def test_the_pay_link_is_the_one_url_for_builds(app: Flask, number: str) -> None:
    with app.test_request_context():
        assert _links(request.script_root).pay(number) == escape(
            url_for("payments.choose", invoice=number)
        )


def _dispute(customer, invoice, lines):  # type: ignore[no-untyped-def]
    dispute = services.open_dispute(
        customer,
        invoice,
        lines,
        "damaged",
        "Opened in a test.",
        [],
        actor=Actor.customer(customer),
        now=utcnow(),
    )
    db.session.flush()
    return dispute


def test_payments_and_credit_notes_are_listed_in_date_order(client):
    # given an invoice paid twice (the later payment recorded first) and credited twice
    customer = make_customer()
    invoice = make_invoice(customer, number="INV-HISTORY", lines=[("Service", "1", "500.00")])
    make_payment(customer, [(invoice, "30.00")], reference="PAY-LATER", paid_on=date(2026, 10, 20))
    make_payment(customer, [(invoice, "20.00")], reference="PAY-EARLIER", paid_on=date(2026, 10, 5))
    first, second = make_credit(invoice, "7.00"), make_credit(invoice, "3.00")
    login_as(client, customer)
    # when the customer opens it
    page = client.get("/invoices/INV-HISTORY").text
    # then the payments come by date, then the credit notes by date, each with its amount
    history = page[page.index('id="history-title"') :]
    positions = [
        history.index(text)
        for text in (
            "Payment PAY-EARLIER",
            "Payment PAY-LATER",
            f"Credit note {first.reference} on Oct 20, 2026",
            f"Credit note {second.reference} on Oct 20, 2026",
        )
    ]
    assert positions == sorted(positions)
    assert '<span class="amount">$20.00</span>' in history
    assert '<span class="amount">$7.00</span>' in history
    # and the totals: 500 − 50 paid − 10 credited
    assert '<td class="num" data-label="Paid">−$50.00</td>' in page
    assert '<td class="num" data-label="Credited">−$10.00</td>' in page
    assert '<td class="num amount" data-label="Balance due">$440.00</td>' in page


def test_open_disputes_are_linked_newest_first_and_hold_their_lines(client):
    # given two open disputes of one invoice, on different lines
    customer = make_customer()
    invoice = make_invoice(
        customer,
        number="INV-HELD",
        issue_date=utcnow().date() - timedelta(days=5),
        lines=[("Hours", "2", "80.00"), ("Travel", "1", "45.10")],
    )
    older = _dispute(customer, invoice, {1: None})
    newer = _dispute(customer, invoice, {2: Money.from_decimal("5.00", "USD")})
    login_as(client, customer)
    # when the customer opens it
    page = client.get("/invoices/INV-HELD").text
    # then the notice links both, the newer first, each with what it contests
    notice = page[page.index('id="dispute-notice"') :]
    assert notice.index(f'href="/disputes/{newer.id}">See your dispute of $5.00 (Open)') < (
        notice.index(f'href="/disputes/{older.id}">See your dispute of $160.00 (Open)')
    )
    # and each line links the dispute that holds it, with the amount held on it
    assert f'href="/disputes/{older.id}">In dispute: $160.00</a>' in page
    assert f'href="/disputes/{newer.id}">In dispute: $5.00</a>' in page
    # and what is payable leaves out what the disputes hold
    assert '<dd class="amount">$40.10</dd>' in page  # payable now: 205.10 − 165.00
    assert '<dd class="amount">$165.00</dd>' in page  # in dispute
