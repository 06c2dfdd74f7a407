"""Plain factory functions for test data; each flushes and returns the object."""

from __future__ import annotations

import itertools
import re
from datetime import date, datetime, timedelta
from decimal import Decimal

from flask.testing import FlaskClient
from sqlalchemy import select

from portal.access.services import issue_link
from portal.customers.models import Customer
from portal.db import utcnow
from portal.extensions import db
from portal.invoices.models import QUANTITY_SCALE, CreditNote, Invoice, InvoiceLine
from portal.money import Money, UnitPrice, line_amount
from portal.payments.models import (
    Checkout,
    CheckoutInvoice,
    CheckoutStatus,
    Payment,
    PaymentAccount,
    PaymentAllocation,
)

_sequence = itertools.count(1)


def make_customer(**fields: object) -> Customer:
    n = next(_sequence)
    values: dict[str, object] = {
        "account_number": f"ACC-{n:05d}",
        "name": f"Customer {n}",
        "email": f"customer{n}@example.com",
        "currency": "USD",
        "locale": "en",
        "kind": "business",
        "segment": "standard",
    }
    values.update(fields)
    customer = Customer(**values)
    db.session.add(customer)
    db.session.flush()
    return customer


def make_invoice(
    customer: Customer,
    *,
    lines: list[tuple[str, str, str] | tuple[str, str, str, str]] | None = None,
    number: str | None = None,
    issue_date: date | None = None,
    due_date: date | None = None,
) -> Invoice:
    """`lines` are (description, quantity, unit price[, tax]) as decimal strings."""
    issue_date = issue_date or date(2026, 10, 1)
    invoice = Invoice(
        customer_id=customer.id,
        number=number or f"INV-{next(_sequence):06d}",
        issue_date=issue_date,
        due_date=due_date or issue_date + timedelta(days=30),
        currency=customer.currency,
        total_minor=0,
    )
    for position, line in enumerate(lines or [("Services", "1", "100.00")], start=1):
        description, quantity, unit_price = line[:3]
        tax = Money.from_decimal(line[3] if len(line) > 3 else "0", customer.currency)
        price = UnitPrice.from_decimal(unit_price, customer.currency)
        qty = Decimal(quantity)
        amount = line_amount(qty, price, tax)
        invoice.lines.append(
            InvoiceLine(
                line_number=position,
                description=description,
                quantity_milli=int(qty * QUANTITY_SCALE),
                unit_price_units=price.units,
                unit_price_scale=price.scale,
                tax_minor=tax.minor,
                amount_minor=amount.minor,
            )
        )
        invoice.total_minor += amount.minor
    db.session.add(invoice)
    db.session.flush()
    return invoice


def make_payment(
    customer: Customer,
    allocations: list[tuple[Invoice, str]],
    *,
    reference: str | None = None,
    paid_on: date | None = None,
) -> Payment:
    """A payment of the sum of `allocations` ((invoice, amount) pairs)."""
    amounts = [(inv, Money.from_decimal(a, customer.currency)) for inv, a in allocations]
    payment = Payment(
        customer_id=customer.id,
        reference=reference or f"PAY-{next(_sequence):06d}",
        source="offline",
        amount_minor=sum(m.minor for _, m in amounts),
        currency=customer.currency,
        paid_on=paid_on or date(2026, 10, 15),
    )
    for invoice, money in amounts:
        payment.allocations.append(
            PaymentAllocation(invoice_id=invoice.id, amount_minor=money.minor)
        )
    db.session.add(payment)
    db.session.flush()
    return payment


def make_credit(invoice: Invoice, amount: str, *, reason: str = "goodwill") -> CreditNote:
    credit = CreditNote(
        reference=f"CN-{next(_sequence):06d}",
        invoice_id=invoice.id,
        amount_minor=Money.from_decimal(amount, invoice.currency).minor,
        currency=invoice.currency,
        issued_on=date(2026, 10, 20),
        reason=reason,
    )
    db.session.add(credit)
    db.session.flush()
    return credit


def make_link_token(
    customer: Customer,
    *,
    invoice: Invoice | None = None,
    now: datetime | None = None,
    ttl: timedelta = timedelta(days=30),
) -> str:
    issued = issue_link(customer, now=now or utcnow(), ttl=ttl, actor="test", invoice=invoice)
    db.session.flush()
    return issued.token


CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def login_as(client: FlaskClient, customer: Customer, *, invoice: Invoice | None = None):  # type: ignore[no-untyped-def]
    """Open a fresh link the way a person does: GET the landing page, press Continue."""
    token = make_link_token(customer, invoice=invoice)
    landing = client.get(f"/l/{token}")
    assert landing.status_code == 200
    return client.post(f"/l/{token}", data={"csrf_token": csrf_token_from(landing.text)})


def make_payment_account(customer: Customer) -> PaymentAccount:
    """The customer's Stripe Customer, as `start_checkout` makes it (id `cus_<our id>`)."""
    account = PaymentAccount(customer_id=customer.id, stripe_customer_id=f"cus_{customer.id}")
    db.session.add(account)
    db.session.flush()
    return account


def make_checkout_in_flight(
    customer: Customer, invoices: list[Invoice], amount_minor: int, **fields: object
) -> Checkout:
    """A checkout as `begin_charge` leaves it: PROCESSING, holding the in-flight slot, for
    a customer with a Stripe Customer (made here if they have none)."""
    if (
        db.session.scalar(select(PaymentAccount).where(PaymentAccount.customer_id == customer.id))
        is None
    ):
        make_payment_account(customer)
    values: dict[str, object] = {
        "customer_id": customer.id,
        "status": CheckoutStatus.PROCESSING,
        "amount_minor": amount_minor,
        "currency": customer.currency,
        "in_flight_customer_id": customer.id,
        "attempt": 1,
        "payment_method_id": f"pm_{customer.id}_{next(_sequence)}",
        "save_card": False,
    }
    values.update(fields)
    checkout = Checkout(**values)
    checkout.invoices = [CheckoutInvoice(invoice_id=invoice.id) for invoice in invoices]
    db.session.add(checkout)
    db.session.flush()
    return checkout
