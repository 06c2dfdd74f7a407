"""Plain factory functions for test data; each flushes and returns the object."""

from __future__ import annotations

import itertools
import re
from datetime import date, datetime, timedelta
from decimal import Decimal

import pyotp
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
from portal.staff.models import StaffMember
from portal.staff.services import hash_password

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


# --- staff ---------------------------------------------------------------------------------
STAFF_PASSWORD = "correct horse battery staple"


def make_staff(
    role: str = "specialist",
    *,
    password: str | None = STAFF_PASSWORD,
    enrolled: bool = True,
    **fields: object,
) -> StaffMember:
    """A staff member with `password` and, if `enrolled`, a TOTP secret already enrolled."""
    n = next(_sequence)
    values: dict[str, object] = {
        "email": f"staff{n}@northwind.example",
        "name": f"Staff Member {n}",
        "role": role,
        "password_hash": hash_password(password) if password else None,
        "totp_secret": pyotp.random_base32() if enrolled else None,
        "mfa_enrolled": enrolled,
        "failed_logins": 0,
    }
    values.update(fields)
    member = StaffMember(**values)
    db.session.add(member)
    db.session.flush()
    return member


def next_totp_code(member: StaffMember, now: datetime | None = None) -> str:
    """A code the portal accepts now: the current step's, or the next one's when the
    current step was used already (a code works once; one step of drift is allowed)."""
    db.session.refresh(member)
    assert member.totp_secret
    step = int((now or utcnow()).timestamp()) // 30
    if member.totp_last_step is not None and member.totp_last_step >= step:
        step = member.totp_last_step + 1
    return pyotp.TOTP(member.totp_secret).generate_otp(step)


def login_as_staff(client: FlaskClient, member: StaffMember, *, password: str = STAFF_PASSWORD):  # type: ignore[no-untyped-def]
    """Sign `member` in through the real pages: password, then the TOTP code (or, for a
    member not enrolled yet, the enrolment page with the secret it shows). Returns the
    last response (a redirect to the dashboard when it worked)."""
    page = client.get("/staff/login")
    response = client.post(
        "/staff/login",
        data={
            "csrf_token": csrf_token_from(page.text),
            "email": member.email,
            "password": password,
        },
    )
    location = response.headers.get("Location", "")
    if location.endswith("/staff/login/code"):
        page = client.get("/staff/login/code")
        return client.post(
            "/staff/login/code",
            data={"csrf_token": csrf_token_from(page.text), "code": next_totp_code(member)},
        )
    if location.endswith("/staff/login/enrol"):
        page = client.get("/staff/login/enrol")
        secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page.text)
        assert secret, "no TOTP secret on the enrolment page"
        code = pyotp.TOTP(secret.group(1).replace(" ", "")).now()
        return client.post(
            "/staff/login/enrol", data={"csrf_token": csrf_token_from(page.text), "code": code}
        )
    return response
