"""Two proposals of one invoice at the same moment, on PostgreSQL with real row locks:
one plan takes it, the other is refused with a message (never a second plan, never an
error). The portal runs in a schema of its own, as test_dispute_races.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select

from portal.audit.actors import Actor
from portal.customers.models import Customer
from portal.db import utcnow
from portal.extensions import db
from portal.money import Money
from portal.plans.models import PaymentPlan, PlanInvoice
from portal.plans.schedule import Frequency
from portal.plans.services import PlanRefused, propose_plan
from tests.factories import make_customer, make_invoice
from tests.races import at_once, schema_app

pytestmark = pytest.mark.postgres_only
SCHEMA = "plan_races"
ROUNDS = 4


@pytest.fixture(scope="module")
def race_app(app: Flask) -> Iterator[Flask]:
    with schema_app(app, SCHEMA) as race:
        yield race


def _setup(app):  # type: ignore[no-untyped-def]
    with app.test_request_context():
        customer = make_customer(timezone="UTC")
        invoice = make_invoice(customer, lines=[("Services", "1", "600.00")])
        db.session.commit()
        ids = (customer.id, invoice.number)
        db.session.remove()
    return ids


def _propose(customer_id: int, number: str, installments: int):  # type: ignore[no-untyped-def]
    def call() -> int:
        customer = db.session.get(Customer, customer_id)
        assert customer is not None
        plan = propose_plan(
            customer,
            [number],
            Money(6_000, "USD"),
            Frequency.MONTHLY,
            installments,
            utcnow().date() + timedelta(days=20),
            "hardship",
            False,
            actor=Actor.customer(customer),
            now=utcnow(),
        )
        return plan.id

    return call


@pytest.mark.parametrize("installments", [3, 12], ids=["within-policy", "for-review"])
def test_two_proposals_of_one_invoice_at_once_make_one_plan(race_app, installments):
    for _round in range(ROUNDS):
        customer_id, number = _setup(race_app)
        results = at_once(race_app, [_propose(customer_id, number, installments) for _ in range(2)])
        made = [r for r in results if isinstance(r, int)]
        refused = [r for r in results if isinstance(r, PlanRefused)]
        assert (len(made), len(refused)) == (1, 1), results
        assert "already in a payment plan" in refused[0].message
        with race_app.app_context():
            plans = db.session.scalar(
                select(func.count(PaymentPlan.id)).where(PaymentPlan.customer_id == customer_id)
            )
            covered = db.session.scalar(
                select(func.count(PlanInvoice.id)).where(PlanInvoice.plan_id == made[0])
            )
            db.session.remove()
        assert (plans, covered) == (1, 1)
