"""The payment-plan agreement PDF: what the customer reads in it, in each language."""

from __future__ import annotations

import io
from datetime import date

import pytest
from pypdf import PdfReader

from portal.creditor import Creditor
from portal.customers.models import Customer
from portal.money import Money
from portal.plans.agreement import AgreementLine, AgreementTerms, agreement_pdf
from portal.plans.schedule import Frequency, build_schedule

CREDITOR = Creditor(
    name="Northwind Supplies Ltd",
    email="billing@northwind.example",
    phone="+1 555 0100",
    address="1 Harbour Street\nSpringfield",
    timezone="UTC",
)


@pytest.fixture
def request_context(app):
    with app.test_request_context():
        yield


def _terms(*, autopay_card: str | None = "Visa ending in 4242") -> AgreementTerms:
    total = Money(210_000, "USD")
    down = Money(22_500, "USD")
    schedule = build_schedule(total, down, Frequency.MONTHLY, 6, date(2027, 1, 31))
    return AgreementTerms(
        reference="PP-7",
        customer=Customer(
            account_number="ACC-00042", name="Globex Corporation", email="ap@x.example"
        ),
        agreed_on=date(2027, 1, 10),
        invoices=[("INV-1001", Money(150_000, "USD")), ("INV-1002", Money(60_000, "USD"))],
        total=total,
        down_payment=down,
        frequency="monthly",
        lines=[AgreementLine(0, date(2027, 1, 10), down)]
        + [AgreementLine(i.number, i.due_date, i.amount) for i in schedule],
        autopay_card=autopay_card,
        grace_days=7,
        cooling_off_days=90,
        policy_version="standard v1",
    )


def _text(document: bytes) -> str:
    reader = PdfReader(io.BytesIO(document))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_the_agreement_states_terms_schedule_and_what_a_missed_installment_does(
    request_context,
) -> None:
    text = " ".join(_text(agreement_pdf(_terms(), creditor=CREDITOR, locale="en")).split())
    assert "Payment plan agreement PP-7" in text
    assert "Globex Corporation" in text
    assert "ACC-00042" in text
    assert "INV-1001" in text
    assert "$1,500.00" in text
    assert "$600.00" in text
    # 1,875.00 in 6 monthly payments from 31 January: the end of each month
    assert text.count("$312.50") == 6
    for day in ("Jan 31, 2027", "Feb 28, 2027", "Mar 31, 2027", "Apr 30, 2027", "Jun 30, 2027"):
        assert day in text
    assert "You agree to pay $2,100.00 for the invoices above: $225.00 as a down payment" in text
    assert "charged on its due date to your Visa ending in 4242" in text
    assert "you can still pay it within 7 days" in text
    assert "the plan ends: what remains of these invoices is due again at once" in text
    assert "for 90 days" in text


def test_without_autopay_the_agreement_says_the_customer_pays_by_hand(request_context) -> None:
    text = " ".join(
        _text(agreement_pdf(_terms(autopay_card=None), creditor=CREDITOR, locale="en")).split()
    )
    assert "You pay each installment yourself, by its due date" in text
    assert "Visa" not in text


@pytest.mark.parametrize(
    ("locale", "title", "amount"),
    [
        ("es", "Acuerdo de plan de pagos PP-7", "312,50"),
        ("fr", "Accord de plan de paiement PP-7", "312,50"),
        ("de", "Ratenplanvereinbarung PP-7", "312,50"),
    ],
)
def test_the_agreement_is_translated(request_context, locale: str, title: str, amount: str) -> None:
    text = " ".join(_text(agreement_pdf(_terms(), creditor=CREDITOR, locale=locale)).split())
    assert title in text
    assert text.count(amount) >= 6
    assert "If an installment is missed" not in text
