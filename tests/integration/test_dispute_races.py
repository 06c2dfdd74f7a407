"""Two disputes of one line submitted at the same moment, on PostgreSQL with real row
locks: together they never hold more than the line's disputable amount.

The portal runs against a schema of its own (`dispute_races`, dropped afterwards), so
committed rows never meet the other tests' rolled-back ones (as test_payment_races.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import func, select

from portal import create_app
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

pytestmark = pytest.mark.postgres_only

SCHEMA = "dispute_races"
ROUNDS = 4


@pytest.fixture(scope="module")
def race_app(app: Flask) -> Iterator[Flask]:
    with app.app_context():
        url = db.engine.url
    if url.get_backend_name() != "postgresql":
        pytest.skip("real concurrency and row locks are tested on PostgreSQL")
    admin = sa.create_engine(url)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        connection.exec_driver_sql(f"CREATE SCHEMA {SCHEMA}")
    race = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url.update_query_dict(
                {"options": f"-csearch_path={SCHEMA}"}
            ).render_as_string(hide_password=False),
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 10, "max_overflow": 5},
            "PORTAL_BASE_URL": "https://portal.example.test",
        },
        env_name="testing",
    )
    with race.app_context():
        upgrade()
    try:
        yield race
    finally:
        with race.app_context():
            db.session.remove()
            db.engine.dispose()
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        admin.dispose()


def _at_once(app: Flask, calls: list[Callable[[], Any]]) -> list[Any]:
    """Run each call in its own thread, app and session, released together; each commits
    what it did, or rolls back and returns the exception it raised."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        with app.test_request_context():
            try:
                barrier.wait(timeout=10)
                results[index] = call()
                db.session.commit()
            except Exception as error:  # the outcome under test
                db.session.rollback()
                results[index] = error
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


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
        results = _at_once(
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
        results = _at_once(
            race_app,
            [_dispute(race_app, customer_id, invoice_id, Money(6000, "USD")) for _ in range(2)],
        )
        # then only one holds (60.00); 120.00 could never be held on a 100.00 line
        assert sorted(type(r).__name__ for r in results) == ["DisputeRefused", "int"], results
        held, disputes = _held_on_line_1(race_app, invoice_id)
        assert (held, disputes) == (6000, 1)
