"""Two disputes of one line submitted at the same moment, on PostgreSQL with real row
locks: together they never hold more than the line's disputable amount.

The portal runs against a schema of its own (`dispute_races`, dropped afterwards), so
committed rows never meet the other tests' rolled-back ones (as test_payment_races.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import func, select

from portal.audit.actors import Actor
from portal.customers.models import Customer
from portal.db import utcnow
from portal.disputes.models import Dispute
from portal.disputes.services import DisputeRefused, open_dispute
from portal.extensions import db
from portal.invoices.balances import invoice_balance, line_balances
from portal.invoices.models import Invoice
from portal.money import Money
from portal.payments.models import PaymentAccount
from tests.factories import make_customer, make_invoice
from tests.races import at_once, schema_app

pytestmark = pytest.mark.postgres_only

SCHEMA = "dispute_races"
ROUNDS = 4


@pytest.fixture(scope="module")
def race_app(app: Flask) -> Iterator[Flask]:
    with schema_app(app, SCHEMA) as race:
        yield race


def _setup(app: Flask, *, with_account: bool) -> tuple[int, int]:
    with app.test_request_context():
        customer = make_customer()
        invoice = make_invoice(customer, lines=[("Widgets", "1", "100.00"), ("Fee", "1", "20.00")])
        if with_account:
            db.session.add(PaymentAccount(customer_id=customer.id))
        db.session.commit()
        ids = (customer.id, invoice.id)
        db.session.remove()
    return ids


def _dispute(app: Flask, customer_id: int, invoice_id: int, amount: Money | None):
    def call() -> int:
        customer = db.session.get(Customer, customer_id)
        invoice = db.session.get(Invoice, invoice_id)
        assert customer is not None
        assert invoice is not None
        dispute = open_dispute(
            customer,
            invoice,
            {1: amount},
            "wrong_price",
            "",
            (),
            actor=Actor.customer(customer),
            now=utcnow(),
        )
        return dispute.id

    return call


def _held_on_line_1(app: Flask, invoice_id: int) -> tuple[int, int]:
    with app.test_request_context():
        invoice = db.session.get(Invoice, invoice_id)
        assert invoice is not None
        held = line_balances(invoice)[0].held.minor
        disputes = db.session.scalar(
            select(func.count(Dispute.id)).where(Dispute.invoice_id == invoice_id)
        )
        payable = invoice_balance(invoice, utcnow().date()).payable.minor
        db.session.remove()
    assert payable == 12000 - held
    return held, int(disputes or 0)


@pytest.mark.parametrize("with_account", [True, False], ids=["paid-before", "never-paid"])
def test_two_whole_line_disputes_at_once_hold_the_line_once(race_app, with_account):
    for _round in range(ROUNDS):
        customer_id, invoice_id = _setup(race_app, with_account=with_account)
        # when two browsers dispute all of line 1 (100.00) at the same moment
        results = at_once(
            race_app, [_dispute(race_app, customer_id, invoice_id, None) for _ in range(2)]
        )
        # then one dispute holds it, the other is refused with a message
        opened = [r for r in results if isinstance(r, int)]
        refused = [r for r in results if isinstance(r, DisputeRefused)]
        assert (len(opened), len(refused)) == (1, 1), results
        assert "nothing left to dispute" in refused[0].message
        assert _held_on_line_1(race_app, invoice_id) == (10000, 1)


def test_two_partial_disputes_at_once_never_hold_more_than_the_line(race_app):
    for _round in range(ROUNDS):
        customer_id, invoice_id = _setup(race_app, with_account=True)
        # when two disputes of 60.00 each of the 100.00 line arrive together
        results = at_once(
            race_app,
            [_dispute(race_app, customer_id, invoice_id, Money(6000, "USD")) for _ in range(2)],
        )
        # then only one holds (60.00); 120.00 could never be held on a 100.00 line
        assert sorted(type(r).__name__ for r in results) == ["DisputeRefused", "int"], results
        held, disputes = _held_on_line_1(race_app, invoice_id)
        assert (held, disputes) == (6000, 1)
