"""A charge whose answer was lost: the next one never charges the customer twice.

Against localstripe behind `tests.stripe_idempotency`, which keeps Stripe's promise about
idempotency keys (localstripe ignores them) and can lose an answer after the charge was
made, as a dropped network reply would.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from portal.db import utcnow
from portal.extensions import db
from portal.payments.errors import decline_message
from portal.payments.gateway import GatewayEvent
from portal.payments.models import Checkout, CheckoutStatus, Payment
from portal.payments.services import start_checkout
from tests.factories import make_customer, make_invoice
from tests.stripe_journeys import (
    CARD_DECLINED_AT_PAYMENT,
    CARD_OK,
    charge,
    deliver,
    set_up_card,
)

pytest_plugins = ["tests.stripe_server", "tests.stripe_idempotency"]
pytestmark = pytest.mark.usefixtures("stripe_app", "db_session", "request_context")

OTHER_CARD = "5555555555554444"


@pytest.fixture
def lossy(app, monkeypatch, idempotent_stripe):
    monkeypatch.setitem(app.config, "STRIPE_API_BASE", idempotent_stripe.url)
    return idempotent_stripe


def _first_charge_answer_lost(localstripe, lossy, card: str = CARD_OK):
    customer = make_customer()
    make_invoice(customer, number=f"INV-LOST-{customer.id}", lines=[("A", "1", "80.00")])
    checkout = start_checkout(customer, [f"INV-LOST-{customer.id}"], None, now=utcnow())
    setup = set_up_card(localstripe, customer, checkout, card)
    lossy.lose_next_answer("/v1/payment_intents")
    checkout = charge(customer, checkout, setup_intent_id=setup)
    assert (checkout.state, checkout.last_error_code) == (
        CheckoutStatus.OPEN,
        "gateway_unavailable",
    )
    return customer, checkout, setup


def _payments(customer) -> list[Payment]:
    return db.session.scalars(select(Payment).where(Payment.customer_id == customer.id)).all()


def test_retrying_with_the_same_card_gets_the_first_answer_not_a_second_charge(localstripe, lossy):
    # given a charge that went through at Stripe, though its answer never came back
    customer, checkout, setup = _first_charge_answer_lost(localstripe, lossy)
    assert len(localstripe.charged()) == 1
    # when the customer presses Pay again with the card they had entered
    checkout = charge(customer, checkout, setup_intent_id=setup)
    # then Stripe answers with the first charge: paid once
    assert checkout.state == CheckoutStatus.SUCCEEDED
    assert len(localstripe.charged()) == 1
    assert len(_payments(customer)) == 1


def test_retrying_with_another_card_is_refused_while_the_first_may_have_gone_through(
    localstripe, lossy
):
    # given a charge that went through at Stripe, though its answer never came back
    customer, checkout, _ = _first_charge_answer_lost(localstripe, lossy)
    first = localstripe.charged()[0]
    # when the customer enters a card again (a new card at Stripe, even with the same number)
    setup = set_up_card(localstripe, customer, checkout, OTHER_CARD)
    checkout = charge(customer, checkout, setup_intent_id=setup)
    # then nothing more is charged, and they are told why, in plain words
    assert (checkout.state, checkout.last_error_code) == (CheckoutStatus.OPEN, "attempt_in_doubt")
    assert len(localstripe.charged()) == 1
    assert "avoid charging you twice" in decline_message(checkout.last_error_code)
    # and when Stripe's event about the first charge arrives, it is recorded, once
    event = GatewayEvent("evt_lost_ok", "payment_intent.succeeded", int(time.time()), first)
    assert deliver(event) == "applied"
    assert db.session.get(Checkout, checkout.id).state == CheckoutStatus.SUCCEEDED
    assert [p.reference for p in _payments(customer)] == [first["id"]]


def test_once_the_doubtful_charge_is_known_to_have_failed_another_card_may_pay(localstripe, lossy):
    # given a charge that was declined at Stripe, though the answer never came back
    customer, checkout, _ = _first_charge_answer_lost(localstripe, lossy, CARD_DECLINED_AT_PAYMENT)
    [declined] = localstripe.payment_intents()
    # and another card refused meanwhile, as the first might have gone through
    setup = set_up_card(localstripe, customer, checkout, OTHER_CARD)
    assert charge(customer, checkout, setup_intent_id=setup).last_error_code == "attempt_in_doubt"
    # when Stripe's event says the first charge failed
    event = GatewayEvent("evt_lost_ko", "payment_intent.payment_failed", int(time.time()), declined)
    assert deliver(event) == "applied"
    # then the other card pays, as a new attempt
    setup = set_up_card(localstripe, customer, checkout, OTHER_CARD)
    checkout = charge(customer, checkout, setup_intent_id=setup)
    assert checkout.state == CheckoutStatus.SUCCEEDED
    assert len(localstripe.charged()) == 1
    assert len(_payments(customer)) == 1
