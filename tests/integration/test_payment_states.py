"""A checkout's status moves only along CHECKOUT_TRANSITIONS, and every move is audited."""

from __future__ import annotations

import itertools

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from portal.audit.models import AuditEvent
from portal.db import utcnow
from portal.extensions import db
from portal.payments.checkouts import move_checkout
from portal.payments.errors import CheckoutTransitionRefused
from portal.payments.models import CHECKOUT_TRANSITIONS, IN_FLIGHT, Checkout, CheckoutStatus
from tests.factories import make_customer

PAIRS = list(itertools.product(CheckoutStatus, CheckoutStatus))


def _checkout(status: CheckoutStatus) -> Checkout:
    customer = make_customer()
    checkout = Checkout(
        customer_id=customer.id,
        status=status,
        amount_minor=1000,
        currency="USD",
        in_flight_customer_id=customer.id if status in IN_FLIGHT else None,
    )
    db.session.add(checkout)
    db.session.flush()
    return checkout


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_every_move_is_allowed_or_refused_by_the_table(db_session, source, target):
    checkout = _checkout(source)
    if target in CHECKOUT_TRANSITIONS[source]:
        move_checkout(checkout, target, actor="test", now=utcnow(), reason="because")
        db.session.flush()  # the database agrees (in-flight slot constraint)
        assert checkout.state == target
        assert (checkout.in_flight_customer_id is not None) == (target in IN_FLIGHT)
        event = db.session.scalar(
            select(AuditEvent)
            .where(AuditEvent.subject_id == checkout.id)
            .order_by(AuditEvent.id.desc())
        )
        assert event.action == f"checkout.{target.value}"
        assert event.data["from"] == source.value
        assert event.data["reason"] == "because"
    else:
        with pytest.raises(CheckoutTransitionRefused):
            move_checkout(checkout, target, actor="test", now=utcnow())
        assert checkout.state == source


def test_nothing_leaves_succeeded():
    assert CHECKOUT_TRANSITIONS[CheckoutStatus.SUCCEEDED] == frozenset()


def test_a_customer_has_one_checkout_in_flight_at_most(db_session):
    first = _checkout(CheckoutStatus.PROCESSING)
    second = Checkout(
        customer_id=first.customer_id,
        status=CheckoutStatus.REQUIRES_ACTION,
        amount_minor=500,
        currency="USD",
        in_flight_customer_id=first.customer_id,
    )
    with pytest.raises(sa.exc.IntegrityError), db.session.begin_nested():
        db.session.add(second)


def test_the_database_refuses_an_in_flight_status_without_the_slot(db_session):
    checkout = _checkout(CheckoutStatus.OPEN)
    with pytest.raises(sa.exc.IntegrityError), db.session.begin_nested():
        db.session.execute(
            sa.text("UPDATE checkouts SET status = 'processing' WHERE id = :id"),
            {"id": checkout.id},
        )
