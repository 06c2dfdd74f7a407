"""Races with real concurrency on PostgreSQL: threads, committed data, real row locks.

Each scenario starts its requests together at a barrier and repeats a few times. The
portal runs against a schema of its own (`pay_races`, dropped afterwards) in the test
database, so committed rows never meet the other tests' rolled-back ones.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from portal.customers.models import Customer
from portal.db import utcnow
from portal.extensions import db
from portal.invoices.models import Invoice
from portal.invoices.queries import invoice_balance
from portal.jobs.webhook_worker import apply_all_pending
from portal.money import Money
from portal.notifications.models import OutboxMessage
from portal.payments import inbox
from portal.payments.inbox import apply_pending_events, receive_event
from portal.payments.models import (
    Checkout,
    CheckoutStatus,
    Payment,
    WebhookEvent,
)
from portal.payments.queries import account_for
from tests.factories import (
    csrf_token_from,
    login_as,
    make_checkout_in_flight,
    make_customer,
    make_invoice,
)
from tests.races import run_together, schema_app
from tests.stripe_journeys import CARD_3DS, event_body, pay, signature, succeeded_event

pytest_plugins = ["tests.stripe_server"]

SCHEMA = "pay_races"
ROUNDS = 4
SETUP_SECRET = re.compile(r'data-setup-secret="([^"]+)"')


@pytest.fixture(scope="module")
def race_app(app: Flask, localstripe) -> Iterator[Flask]:
    config = {
        "LINK_RATE_LIMIT": "10000 per minute",
        # races, not card-testing limits, are under test here (test_card_testing)
        "CARD_RATE_LIMIT": "10000 per minute",
        "CARD_RATE_LIMIT_PER_IP": "10000 per minute",
        **localstripe.config(),
    }
    with schema_app(app, SCHEMA, config, pool_size=20, max_overflow=10) as race:
        yield race


@dataclass
class Crowd:
    """Several browsers of one signed-in customer, firing requests at the same moment."""

    app: Flask
    cookie: str  # Flask's signed cookie: the CSRF secret
    customer_cookie: str = ""  # the customer session's token
    responses: list[Any] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def client(self) -> FlaskClient:
        client = self.app.test_client()
        if self.cookie:
            client.set_cookie("portal_session", self.cookie)
        client.set_cookie("portal_customer", self.customer_cookie)
        return client

    def at_once(self, requests: list[Callable[[FlaskClient], Any]]) -> list[Any]:
        clients = [self.client() for _ in requests]
        calls = [lambda r=r, c=c: r(c) for r, c in zip(requests, clients, strict=True)]
        results, errors = run_together(calls)
        self.errors.extend(errors)
        assert self.errors == []
        responses = [r for r in results if not isinstance(r, int)]  # ints: worker passes
        assert all(r is not None and r.status_code < 500 for r in responses), [
            r.status_code for r in responses
        ]
        return results


def _customer(race_app: Flask, invoices: int = 1) -> tuple[Crowd, int, list[str]]:
    with race_app.app_context():
        customer = make_customer(timezone="UTC")
        numbers = [
            make_invoice(customer, lines=[("Work", "1", "100.00")]).number for _ in range(invoices)
        ]
        db.session.commit()
        client = race_app.test_client()
        login_as(client, customer)
        db.session.commit()
        flask_cookie = client.get_cookie("portal_session")  # none until a form is shown
        customer_cookie = client.get_cookie("portal_customer").value
        crowd = Crowd(race_app, flask_cookie.value if flask_cookie else "", customer_cookie)
        return crowd, customer.id, numbers


def _open_checkout(crowd: Crowd, numbers: list[str], localstripe, card: str | None = None):
    client = crowd.client()
    page = client.get("/pay")
    started = client.post(
        "/pay", data={"csrf_token": csrf_token_from(page.text), "invoices": numbers}
    )
    location = started.headers["Location"]
    card_page = client.get(location)
    setup = localstripe.set_up_card(
        SETUP_SECRET.search(card_page.text).group(1), card or "4242424242424242"
    )
    form = {
        "csrf_token": csrf_token_from(card_page.text),
        "setup_intent": setup,
        "card_choice": "new",
    }
    crowd.cookie = client.get_cookie("portal_session").value  # now holds the CSRF secret
    return location, form


def _charges(race_app: Flask, localstripe, customer_id: int) -> list[dict]:
    with race_app.app_context():
        stripe_customer = account_for(customer_id).stripe_customer_id
    return [pi for pi in localstripe.charged() if pi["customer"] == stripe_customer]


def _ledger(race_app: Flask, customer_id: int) -> tuple[int, int]:
    """(payments, total allocated in minor units) for this customer."""
    with race_app.app_context():
        payments = db.session.scalars(
            select(Payment).where(Payment.customer_id == customer_id)
        ).all()
        allocated = sum(a.amount_minor for p in payments for a in p.allocations)
        return len(payments), allocated


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_double_clicking_pay_charges_once(race_app, localstripe, round_):
    # given one checkout, and six clicks on Pay at the same moment
    crowd, customer_id, numbers = _customer(race_app)
    location, form = _open_checkout(crowd, numbers, localstripe)
    # when
    results = crowd.at_once([lambda c: c.post(f"{location}/confirm", data=form)] * 6)
    # then one charge, one payment, the invoice paid once
    assert {r.headers["Location"] for r in results} == {f"{location}/done"}
    assert len(_charges(race_app, localstripe, customer_id)) == 1
    assert _ledger(race_app, customer_id) == (1, 10000)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_several_tabs_paying_the_same_invoice_charge_once(race_app, localstripe, round_):
    # given four tabs, each with a checkout for the same invoice and a card ready
    crowd, customer_id, numbers = _customer(race_app)
    tabs = [_open_checkout(crowd, numbers, localstripe) for _ in range(4)]
    # when all press Pay at once
    crowd.at_once(
        [lambda c, loc=loc, form=form: c.post(f"{loc}/confirm", data=form) for loc, form in tabs]
    )
    # then exactly one charge went through, and the invoice was credited once
    assert len(_charges(race_app, localstripe, customer_id)) == 1
    assert _ledger(race_app, customer_id) == (1, 10000)
    with race_app.app_context():
        invoice_id = (
            db.session.scalar(select(Checkout).where(Checkout.customer_id == customer_id))
            .invoices[0]
            .invoice
        )
        balance = invoice_balance(invoice_id, invoice_id.due_date)
        assert balance.balance == Money(0, "USD")
        assert (
            db.session.scalar(
                select(func.count()).where(Checkout.in_flight_customer_id.is_not(None))
            )
            == 0
        )


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_the_webhook_and_the_return_page_racing_record_once(race_app, localstripe, round_):
    # given a 3-D Secure payment the bank approved, which the portal has not heard of yet
    crowd, customer_id, numbers = _customer(race_app)
    location, form = _open_checkout(crowd, numbers, localstripe, CARD_3DS)
    crowd.client().post(f"{location}/confirm", data=form)
    with race_app.app_context():
        checkout = db.session.scalar(select(Checkout).where(Checkout.customer_id == customer_id))
        assert checkout.state == CheckoutStatus.REQUIRES_ACTION
        intent_id = checkout.payment_intent_id
    localstripe.authenticate(intent_id, success=True)
    intent = localstripe.get(f"/v1/payment_intents/{intent_id}")
    same = event_body(f"evt_same_{round_}_{customer_id}", "payment_intent.succeeded", intent)
    other = event_body(f"evt_other_{round_}_{customer_id}", "payment_intent.succeeded", intent)

    def webhook(body: str) -> Callable[[FlaskClient], Any]:
        headers = {"Stripe-Signature": signature(body), "Content-Type": "application/json"}
        return lambda c: c.post("/stripe/webhook", data=body, headers=headers)

    def worker(_client: FlaskClient) -> int:
        """A worker applying events as they come in, for as long as the crowd lasts."""
        applied = 0
        with race_app.app_context():
            for _ in range(25):
                applied += apply_all_pending(now=utcnow())
                time.sleep(0.01)
            db.session.remove()
        return applied

    check_form = {"csrf_token": form["csrf_token"]}
    # when the return page (twice), the confirmation page (twice), four webhook
    # deliveries (three of one event, one of another) and two workers applying the
    # events all arrive together
    crowd.at_once(
        [
            lambda c: c.post(f"{location}/check", data=check_form),
            lambda c: c.post(f"{location}/check", data=check_form),
            lambda c: c.get(f"{location}/done"),
            lambda c: c.get(f"{location}/done"),
            webhook(same),
            webhook(same),
            webhook(same),
            webhook(other),
            worker,
            worker,
        ]
    )
    with race_app.app_context():
        apply_all_pending(now=utcnow())  # the worker's next pass
        outcomes = db.session.scalars(
            select(WebhookEvent.outcome).where(WebhookEvent.payment_intent_id == intent_id)
        ).all()
        assert sorted(outcomes) in (["applied", "ignored"], ["ignored", "ignored"])
    # then the payment is recorded once, receipted once, and each event stored once
    assert _ledger(race_app, customer_id) == (1, 10000)
    with race_app.app_context():
        receipts = db.session.scalar(
            select(func.count()).where(
                OutboxMessage.kind == "receipt", OutboxMessage.customer_id == customer_id
            )
        )
        assert receipts == 1
        events = db.session.scalars(
            select(WebhookEvent.event_id).where(WebhookEvent.payment_intent_id == intent_id)
        ).all()
        assert sorted(events) == sorted(
            {f"evt_same_{round_}_{customer_id}", f"evt_other_{round_}_{customer_id}"}
        )
        assert db.session.get(Customer, customer_id) is not None


def test_several_workers_apply_each_event_exactly_once(race_app):
    # given 120 checkouts awaiting Stripe's word, each with its success delivered twice
    # (two event ids), all stored by the webhook
    with race_app.app_context():
        now = utcnow()
        checkouts = []
        for _ in range(120):
            customer = make_customer(timezone="UTC")
            invoice = make_invoice(customer, lines=[("Work", "1", "100.00")])
            checkouts.append(make_checkout_in_flight(customer, [invoice], 10000))
        for checkout in checkouts:
            for copy in ("a", "b"):
                event = succeeded_event(
                    checkout, f"evt_w{copy}_{checkout.id}", f"pi_w_{checkout.id}"
                )
                receive_event(event, now=now)
        db.session.commit()
        ids = [c.id for c in checkouts]

    # when four workers apply them at once, in small batches
    def worker(_client: FlaskClient) -> int:
        with race_app.app_context():
            applied = 0
            while batch := apply_pending_events(now=utcnow(), limit=7).claimed:
                db.session.commit()
                applied += batch
            db.session.commit()
            db.session.remove()
            return applied

    crowd = Crowd(race_app, cookie="")
    claimed = crowd.at_once([worker] * 4)

    # then every event was claimed once, and each checkout was paid once
    assert sum(claimed) == 240
    with race_app.app_context():
        outcomes = db.session.execute(
            select(WebhookEvent.outcome, func.count())
            .where(WebhookEvent.checkout_id.in_(ids))
            .group_by(WebhookEvent.outcome)
        ).all()
        assert dict(outcomes) == {"applied": 120, "ignored": 120}
        payments = db.session.scalars(select(Payment).where(Payment.checkout_id.in_(ids))).all()
        assert len(payments) == 120
        assert sorted(p.checkout_id for p in payments) == sorted(ids)
        receipts = db.session.scalar(
            select(func.count()).where(
                OutboxMessage.kind == "receipt",
                OutboxMessage.customer_id.in_({p.customer_id for p in payments}),
            )
        )
        assert receipts == 120


# --- Stripe's events out of order, two workers ----------------------------------------------
@dataclass(frozen=True)
class _Unheard:
    customer_id: int
    invoice_id: int
    succeeded: str  # the signed bodies Stripe would send
    refunded: str


def _charged_and_refunded_unheard(race_app: Flask, localstripe, count: int) -> list[_Unheard]:
    """`count` customers, each with a 3-D Secure charge of 100.00 approved at the bank and
    then refunded in full at Stripe; the portal has heard of neither yet."""
    made = []
    with race_app.test_request_context():
        for index in range(count):
            customer = make_customer(timezone="UTC")
            invoice = make_invoice(customer, lines=[("Work", "1", "100.00")])
            checkout = pay(localstripe, customer, [invoice.number], card=CARD_3DS)
            db.session.commit()
            assert checkout.state == CheckoutStatus.REQUIRES_ACTION
            intent_id = str(checkout.payment_intent_id)
            localstripe.authenticate(intent_id, success=True)
            localstripe.post("/v1/refunds", {"payment_intent": intent_id})
            intent = localstripe.get(f"/v1/payment_intents/{intent_id}")
            charge_id = intent["latest_charge"]
            charge_id = charge_id if isinstance(charge_id, str) else charge_id["id"]
            charge = localstripe.get(f"/v1/charges/{charge_id}") | {"payment_intent": intent_id}
            tag = f"{customer.id}_{index}"
            made.append(
                _Unheard(
                    customer.id,
                    invoice.id,
                    event_body(f"evt_paid_{tag}", "payment_intent.succeeded", intent),
                    event_body(f"evt_refunded_{tag}", "charge.refunded", charge),
                )
            )
        db.session.remove()
    return made


def _post_signed(client: FlaskClient, body: str) -> Any:
    headers = {"Stripe-Signature": signature(body), "Content-Type": "application/json"}
    response = client.post("/stripe/webhook", data=body, headers=headers)
    assert response.status_code == 200, response.data
    return response


def _refunds_of(race_app: Flask, customer_id: int) -> tuple[int, int, Money]:
    """(payments, refunded in minor units, the invoice's balance) of one customer."""
    with race_app.app_context():
        payments = db.session.scalars(
            select(Payment).where(Payment.customer_id == customer_id)
        ).all()
        refunded = sum(r.amount_minor for p in payments for r in p.refunds)
        invoice = db.session.scalar(select(Invoice).where(Invoice.customer_id == customer_id))
        balance = invoice_balance(invoice, invoice.due_date).balance
        db.session.remove()
        return len(payments), refunded, balance


def test_a_refund_claimed_while_its_payment_is_uncommitted_is_applied(race_app, localstripe):
    # given the payment's event, then its refund's, stored by the webhook in that order
    [unheard] = _charged_and_refunded_unheard(race_app, localstripe, 1)
    client = race_app.test_client()
    _post_signed(client, unheard.succeeded)
    _post_signed(client, unheard.refunded)
    refund_id = json.loads(unheard.refunded)["id"]
    with race_app.app_context():  # worker A: claims the payment's event, records it
        assert apply_pending_events(now=utcnow(), limit=1).claimed == 1
        with race_app.app_context():  # worker B, on a connection of its own, meanwhile
            # when B claims the refund (SKIP LOCKED passes A's row) before A commits
            assert apply_pending_events(now=utcnow(), limit=1).claimed == 1
            db.session.commit()
            refund_event = db.session.scalar(
                select(WebhookEvent).where(WebhookEvent.event_id == refund_id)
            )
            # then B cannot see the payment: it keeps the refund, saying what it waits for
            assert refund_event.outcome == "deferred"
            assert refund_event.last_error.startswith("waiting for payment pi_")
        db.session.commit()  # A commits
        # and A's worker loop, looking again after its commit, applies it
        assert apply_all_pending(now=utcnow()) == 1
        db.session.remove()
    assert _refunds_of(race_app, unheard.customer_id) == (1, 10000, Money(10000, "USD"))


def test_two_workers_lose_no_refund_in_a_storm_of_shuffled_deliveries(race_app, localstripe):
    # given 16 charges approved at the bank and refunded in full at Stripe, unheard of, and
    # Stripe's 32 events, each delivered twice, in a shuffled order
    unheard = _charged_and_refunded_unheard(race_app, localstripe, 16)
    deliveries = [body for u in unheard for body in (u.succeeded, u.refunded)] * 2
    random.Random(8).shuffle(deliveries)
    posted = threading.Event()
    share = [deliveries[i::3] for i in range(3)]
    left = [len(part) for part in share]
    deadline = time.monotonic() + 90

    def poster(part: int) -> Callable[[FlaskClient], int]:
        def post(client: FlaskClient) -> int:
            for body in share[part]:
                _post_signed(client, body)
                left[part] -= 1
                time.sleep(0.002)
            if not any(left):
                posted.set()
            return len(share[part])

        return post

    def worker(_client: FlaskClient) -> int:
        """`jobs run --loop` in short: apply, look again, until the storm is over."""
        applied = 0
        with race_app.app_context():
            quiet = 0
            while quiet < 3 and time.monotonic() < deadline:
                done = apply_all_pending(now=utcnow())
                applied += done
                quiet = quiet + 1 if posted.is_set() and not done else 0
                time.sleep(0.005)
            db.session.remove()
        return applied

    # when three webhook deliverers and two workers run at once
    crowd = Crowd(race_app, cookie="")
    crowd.at_once([poster(0), poster(1), poster(2), worker, worker])
    # then every payment and every refund is in the ledger, once, and each invoice is owed
    # again; no event is left ignored, deferred or pending
    for u in unheard:
        assert _refunds_of(race_app, u.customer_id) == (1, 10000, Money(10000, "USD"))
    with race_app.app_context():
        ids = [json.loads(b)["id"] for u in unheard for b in (u.succeeded, u.refunded)]
        outcomes = db.session.execute(
            select(WebhookEvent.outcome, func.count())
            .where(WebhookEvent.event_id.in_(ids))
            .group_by(WebhookEvent.outcome)
        ).all()
        db.session.remove()
    assert dict(outcomes) == {"applied": 32}


def test_a_payment_committed_while_a_refund_batch_runs_is_not_refunded_unlocked(
    race_app, localstripe, monkeypatch
):
    # given the payment's event, then its refund's, stored by the webhook
    [unheard] = _charged_and_refunded_unheard(race_app, localstripe, 1)
    client = race_app.test_client()
    _post_signed(client, unheard.succeeded)
    _post_signed(client, unheard.refunded)
    refund_id = json.loads(unheard.refunded)["id"]
    claimed, commit, committed = threading.Event(), threading.Event(), threading.Event()

    def worker_a() -> None:
        with race_app.app_context():
            apply_pending_events(now=utcnow(), limit=1)  # records the payment
            claimed.set()
            commit.wait(timeout=20)
            db.session.commit()
            committed.set()
            db.session.remove()

    real_lock_checkouts = inbox.lock_checkouts

    def lock_checkouts_once_a_commits(checkout_ids):
        # worker B is between its first read of the payments (none) and its second
        commit.set()
        assert committed.wait(timeout=20)
        return real_lock_checkouts(checkout_ids)

    a = threading.Thread(target=worker_a)
    a.start()
    assert claimed.wait(timeout=20)
    # when worker B's batch, with the refund, sees the payment appear half way through
    monkeypatch.setattr(inbox, "lock_checkouts", lock_checkouts_once_a_commits)
    with race_app.app_context():
        assert apply_pending_events(now=utcnow(), limit=1).claimed == 1
        db.session.commit()
        monkeypatch.undo()
        a.join(timeout=20)
        # then B does not refund it without its customer's lock: the refund waits
        event = db.session.scalar(select(WebhookEvent).where(WebhookEvent.event_id == refund_id))
        assert event.outcome == "deferred"
        # and B's loop, looking again after its commit, applies it under the lock
        assert apply_all_pending(now=utcnow()) == 1
        db.session.remove()
    assert _refunds_of(race_app, unheard.customer_id) == (1, 10000, Money(10000, "USD"))
