"""Card testing through Stripe.js's SetupIntent: each card declined while it is set up
reaches us only as Stripe's `setup_intent.setup_failed` event, which counts against the
customer's cap on failed card attempts; the failure that reaches the cap cancels the
customer's SetupIntent at Stripe, and the card pages hand out no new one.

localstripe differs from Stripe here: it moves a SetupIntent to `canceled` on a declined
card (Stripe puts it back to `requires_payment_method`, ready for another card:
https://docs.stripe.com/payments/setupintents/lifecycle) and sends no `setup_intent.*`
events at all. So the events are built by hand, in the shape Stripe documents
(https://docs.stripe.com/api/events/types#event_types-setup_intent.setup_failed: the
SetupIntent as `data.object`, its decline in `last_setup_error`), about SetupIntents that
the card page really created at localstripe and that are still open there.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from portal.audit.models import AuditEvent
from portal.customers.models import Customer
from portal.db import utcnow
from portal.extensions import db
from portal.invoices.models import Invoice
from portal.jobs.webhook_worker import apply_all_pending
from portal.payments.models import CardFailure, PaymentAccount, WebhookEvent
from portal.plans.models import PaymentPlan
from tests.factories import csrf_token_from, login_as, make_customer, make_invoice
from tests.stripe_journeys import event_body, outcome_of, signature

pytest_plugins = ["tests.stripe_server"]
pytestmark = pytest.mark.usefixtures("stripe_app")

URL = "/stripe/webhook"
SETUP_SECRET = re.compile(r'data-setup-secret="([^"]+)"')
PAUSED_ES = "los pagos con tarjeta de su cuenta están en pausa"


def _customer(locale: str = "en") -> tuple[Customer, Invoice]:
    customer = make_customer(timezone="UTC", locale=locale)
    today = utcnow().date()
    invoice = make_invoice(
        customer,
        issue_date=today - timedelta(days=40),
        due_date=today - timedelta(days=10),
        lines=[("Consulting", "1", "150.00")],
    )
    return customer, invoice


def _card_page_location(client: FlaskClient, invoice: Invoice) -> str:
    page = client.get("/pay")
    chosen = client.post(
        "/pay", data={"csrf_token": csrf_token_from(page.text), "invoices": [invoice.number]}
    )
    assert chosen.status_code == 302, chosen.text
    return str(chosen.headers["Location"])


def _setup_secret(client: FlaskClient, location: str) -> str:
    page = client.get(location)
    assert page.status_code == 200, page.text
    return SETUP_SECRET.search(page.text).group(1)  # type: ignore[union-attr]


def _account(customer: Customer) -> PaymentAccount:
    account = db.session.scalar(
        select(PaymentAccount)
        .where(PaymentAccount.customer_id == customer.id)
        .execution_options(populate_existing=True)
    )
    assert account is not None
    return account


def _on_card_page(client: FlaskClient, customer: Customer, invoice: Invoice) -> tuple[str, str]:
    """The customer opens the card page: its URL and the SetupIntent it handed out."""
    login_as(client, customer)
    location = _card_page_location(client, invoice)
    return location, _setup_secret(client, location).split("_secret_")[0]


def _plan_with_autopay(client: FlaskClient, customer: Customer, invoice: Invoice) -> PaymentPlan:
    """The customer agrees a plan with autopay: the next step is the plan's card step."""
    login_as(client, customer)
    page = client.get("/plans/new").text
    accepted = client.post(
        "/plans/new",
        data={
            "csrf_token": csrf_token_from(page),
            "invoices": invoice.number,
            "down_payment": "30.00",
            "frequency": "monthly",
            "installments": "3",
            "first_payment_date": (utcnow().date() + timedelta(days=20)).isoformat(),
            "accept": "1",
            "autopay": "y",
        },
    )
    plan = db.session.scalar(select(PaymentPlan).where(PaymentPlan.customer_id == customer.id))
    assert plan is not None
    assert accepted.headers["Location"] == f"/plans/{plan.id}/card"
    return plan


def _setup_failed(
    event_id: str,
    setup_intent_id: str,
    stripe_customer: str | None,
    *,
    decline_code: str = "insufficient_funds",
    metadata: dict[str, str] | None = None,
) -> str:
    """Stripe's `setup_intent.setup_failed`: the SetupIntent back in
    requires_payment_method, the decline (and the card tried) in `last_setup_error`."""
    setup: dict[str, Any] = {
        "id": setup_intent_id,
        "object": "setup_intent",
        "status": "requires_payment_method",
        "customer": stripe_customer,
        "usage": "off_session",
        "payment_method": None,
        "payment_method_types": ["card"],
        "metadata": metadata or {},
        "client_secret": f"{setup_intent_id}_secret_hidden",
        "last_setup_error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": decline_code,
            "message": "Your card has insufficient funds.",
            "doc_url": "https://docs.stripe.com/error-codes/card-declined",
            "payment_method": {
                "id": "pm_tried_0002",
                "object": "payment_method",
                "type": "card",
                "card": {"brand": "visa", "last4": "0002", "exp_month": 12, "exp_year": 2034},
            },
        },
    }
    return event_body(event_id, "setup_intent.setup_failed", setup)


def _post(client: FlaskClient, body: str) -> dict[str, str]:
    """Post as Stripe does (signed); the endpoint's answer."""
    response = client.post(
        URL,
        data=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": signature(body)},
    )
    assert response.status_code == 200, response.data
    return dict(response.json)  # type: ignore[arg-type]


def _deliver(client: FlaskClient, body: str) -> str:
    """Post, then let the worker apply what is pending (and call Stripe after its commit)."""
    _post(client, body)
    apply_all_pending(now=utcnow())
    return str(outcome_of(json.loads(body)["id"]))


def _failures(customer: Customer) -> list[str]:
    return list(
        db.session.scalars(
            select(CardFailure.code)
            .where(CardFailure.customer_id == customer.id)
            .order_by(CardFailure.id)
        )
    )


def _status_at_stripe(localstripe, setup_intent_id: str) -> str:  # type: ignore[no-untyped-def]
    return str(localstripe.get(f"/v1/setup_intents/{setup_intent_id}")["status"])


# --- counted -------------------------------------------------------------------------------
def test_a_card_declined_at_setup_counts_as_a_failed_attempt(client, localstripe) -> None:  # type: ignore[no-untyped-def]
    # given a customer on the card page
    customer, invoice = _customer()
    location, setup_id = _on_card_page(client, customer, invoice)
    stripe_customer = _account(customer).stripe_customer_id
    # when Stripe reports a card declined on its SetupIntent
    body = _setup_failed("evt_setup_1", setup_id, stripe_customer)
    assert _post(client, body) == {"received": "evt_setup_1", "status": "queued"}
    apply_all_pending(now=utcnow())
    # then it is one failed attempt, with the bank's decline code
    assert outcome_of("evt_setup_1") == "applied"
    assert _failures(customer) == ["insufficient_funds"]
    # below the cap, the SetupIntent stays open and the card page keeps offering it
    assert _status_at_stripe(localstripe, setup_id) == "requires_payment_method"
    assert _setup_secret(client, location).startswith(f"{setup_id}_secret_")
    # and of the card tried, nothing is kept (only the decline's codes)
    payload = db.session.scalar(
        select(WebhookEvent.payload).where(WebhookEvent.event_id == "evt_setup_1")
    )
    assert "0002" not in json.dumps(payload)
    assert "pm_tried_0002" not in json.dumps(payload)


def test_a_replayed_event_counts_once(client, localstripe) -> None:  # type: ignore[no-untyped-def]
    customer, invoice = _customer()
    _location, setup_id = _on_card_page(client, customer, invoice)
    body = _setup_failed("evt_setup_replayed", setup_id, _account(customer).stripe_customer_id)
    assert _deliver(client, body) == "applied"
    # Stripe delivers the same event again (it retries until it sees a 2xx, and may
    # deliver twice anyway): stored once, applied once
    assert _post(client, body)["status"] == "duplicate"
    assert _post(client, body)["status"] == "duplicate"
    apply_all_pending(now=utcnow())
    assert _failures(customer) == ["insufficient_funds"]
    assert db.session.scalar(select(func.count()).select_from(WebhookEvent)) == 1


def test_the_cap_cancels_the_setup_intent_and_the_card_pages_refuse(
    app, client, localstripe, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(app.config, "CARD_FAILURES_PER_DAY", 2)
    # given a Spanish-speaking customer on the card page
    customer, invoice = _customer(locale="es")
    location, setup_id = _on_card_page(client, customer, invoice)
    stripe_customer = _account(customer).stripe_customer_id
    assert _account(customer).open_setup_intent_id == setup_id
    # when one card after another is declined on the same SetupIntent
    assert _deliver(client, _setup_failed("evt_cap_1", setup_id, stripe_customer)) == "applied"
    assert _status_at_stripe(localstripe, setup_id) == "requires_payment_method"
    second = _setup_failed("evt_cap_2", setup_id, stripe_customer, decline_code="stolen_card")
    assert _deliver(client, second) == "applied"
    # then the failure that reaches the cap cancels it at Stripe: its secret is dead
    assert _failures(customer) == ["insufficient_funds", "stolen_card"]
    assert _status_at_stripe(localstripe, setup_id) == "canceled"
    assert _account(customer).open_setup_intent_id is None
    audit = db.session.scalar(
        select(AuditEvent).where(
            AuditEvent.customer_id == customer.id, AuditEvent.action == "card.setup_canceled"
        )
    )
    assert audit is not None
    assert audit.data["setup_intents"] == [setup_id]
    # and the card page hands out no new SetupIntent: it says why, in Spanish
    setups_before = len(localstripe.get("/v1/setup_intents")["data"])
    page = client.get(location)
    assert page.status_code == 429
    assert PAUSED_ES in page.text
    assert "data-setup-secret" not in page.text
    assert len(localstripe.get("/v1/setup_intents")["data"]) == setups_before
    assert _account(customer).open_setup_intent_id is None


def test_the_cap_also_closes_the_plan_card_step(app, client, localstripe, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(app.config, "CARD_FAILURES_PER_DAY", 1)
    # given a customer saving a card for a plan's autopay
    customer, invoice = _customer(locale="es")
    plan = _plan_with_autopay(client, customer, invoice)
    setup_id = _setup_secret(client, f"/plans/{plan.id}/card").split("_secret_")[0]
    # when a card is declined on the SetupIntent of that page
    body = _setup_failed("evt_plan_card", setup_id, _account(customer).stripe_customer_id)
    assert _deliver(client, body) == "applied"
    # then that SetupIntent is cancelled and the step hands out no other
    assert _status_at_stripe(localstripe, setup_id) == "canceled"
    refused = client.get(f"/plans/{plan.id}/card")
    assert refused.status_code == 429
    assert PAUSED_ES in refused.text
    assert "data-setup-secret" not in refused.text


def test_a_failure_once_over_the_cap_cancels_again(app, client, localstripe, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # a cancel Stripe did not take (an outage) is tried again on the next failure
    monkeypatch.setitem(app.config, "CARD_FAILURES_PER_DAY", 1)
    customer, invoice = _customer()
    _location, setup_id = _on_card_page(client, customer, invoice)
    stripe_customer = _account(customer).stripe_customer_id
    monkeypatch.setitem(app.config, "STRIPE_API_BASE", "http://127.0.0.1:9")  # closed port
    assert _deliver(client, _setup_failed("evt_lost_cancel", setup_id, stripe_customer)) == (
        "applied"
    )
    monkeypatch.setitem(app.config, "STRIPE_API_BASE", localstripe.url)
    assert _status_at_stripe(localstripe, setup_id) == "requires_payment_method"
    # (no longer the open one: Stripe's event carries the metadata that makes it ours)
    ours = {"portal_customer": str(customer.id)}
    next_failure = _setup_failed("evt_next", setup_id, stripe_customer, metadata=ours)
    assert _deliver(client, next_failure) == "applied"
    assert _status_at_stripe(localstripe, setup_id) == "canceled"
    assert len(_failures(customer)) == 2


def test_a_setup_intent_not_ours_counts_but_is_not_cancelled(
    app, client, localstripe, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A SetupIntent on the customer's Stripe Customer without our metadata (made in
    Stripe's dashboard, by another integration, or before the portal wrote metadata): a
    declined card on it is still a failed attempt, but at the cap only the customer's own
    open SetupIntent is cancelled, not this one (a reviewer saw it cancelled)."""
    monkeypatch.setitem(app.config, "CARD_FAILURES_PER_DAY", 1)
    customer, invoice = _customer()
    _location, open_id = _on_card_page(client, customer, invoice)
    stripe_customer = _account(customer).stripe_customer_id
    other = localstripe.post(
        "/v1/setup_intents", {"customer": stripe_customer, "metadata[source]": "other"}
    )["id"]
    assert _deliver(client, _setup_failed("evt_other", other, stripe_customer)) == "applied"
    assert _failures(customer) == ["insufficient_funds"]
    assert _status_at_stripe(localstripe, other) == "requires_payment_method"
    assert _status_at_stripe(localstripe, open_id) == "canceled"
    assert _account(customer).open_setup_intent_id is None


# --- not counted -----------------------------------------------------------------------------
def test_another_customers_failures_do_not_count_against_this_one(
    app, client, localstripe, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(app.config, "CARD_FAILURES_PER_DAY", 2)
    # given two customers on their card pages
    mine, my_invoice = _customer()
    my_location, my_setup = _on_card_page(client, mine, my_invoice)
    theirs, their_invoice = _customer()
    _their_location, their_setup = _on_card_page(client, theirs, their_invoice)
    their_stripe = _account(theirs).stripe_customer_id
    # when the other customer's cards are declined up to the cap
    for n in range(2):
        body = _setup_failed(f"evt_theirs_{n}", their_setup, their_stripe)
        assert _deliver(client, body) == "applied"
    # then they count against the other customer alone
    assert len(_failures(theirs)) == 2
    assert _failures(mine) == []
    assert _status_at_stripe(localstripe, their_setup) == "canceled"
    assert _status_at_stripe(localstripe, my_setup) == "requires_payment_method"
    login_as(client, mine)
    assert _setup_secret(client, my_location).startswith(f"{my_setup}_secret_")


def test_a_setup_intent_naming_another_customer_is_rejected(client, localstripe) -> None:  # type: ignore[no-untyped-def]
    mine, my_invoice = _customer()
    _location, my_setup = _on_card_page(client, mine, my_invoice)
    body = _setup_failed(
        "evt_named_other",
        my_setup,
        _account(mine).stripe_customer_id,
        metadata={"portal_customer": str(mine.id + 1000)},
    )
    assert _deliver(client, body) == "rejected"
    assert _failures(mine) == []


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param({"customer": "cus_not_ours"}, id="unknown-stripe-customer"),
        pytest.param({"customer": None}, id="no-customer"),
        pytest.param({"id": None}, id="no-id"),
        pytest.param({"object": "payment_method"}, id="not-a-setup-intent"),
    ],
)
def test_events_about_setup_intents_not_ours_are_acknowledged_without_effect(
    client, localstripe, setup
) -> None:  # type: ignore[no-untyped-def]
    # given a customer of ours, with a failure on record
    customer, invoice = _customer()
    _location, setup_id = _on_card_page(client, customer, invoice)
    failed = json.loads(_setup_failed("evt_stray", setup_id, "cus_placeholder"))
    failed["data"]["object"].update(setup)
    body = json.dumps(failed)
    # when Stripe reports a failure on a SetupIntent that is no customer's of ours
    answer = _post(client, body)
    apply_all_pending(now=utcnow())
    # then it is acknowledged (no retries from Stripe) and changes nothing
    assert answer["received"] == "evt_stray"
    assert outcome_of("evt_stray") == "ignored"
    assert db.session.scalar(select(func.count()).select_from(CardFailure)) == 0
    assert _status_at_stripe(localstripe, setup_id) == "requires_payment_method"


# --- the plan's card step guards its SetupIntent as the pay flow's card page does ----------
def test_the_plan_card_step_shares_the_card_pages_budget(
    app, client, localstripe, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(app.config, "CARD_RATE_LIMIT", "3 per minute")
    customer, invoice = _customer()
    plan = _plan_with_autopay(client, customer, invoice)
    statuses = [client.get(f"/plans/{plan.id}/card").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    # and the pay flow's card pages draw on the same budget
    assert client.get("/pay").status_code == 200
    page = client.post(
        "/pay",
        data={"csrf_token": csrf_token_from(client.get("/pay").text), "invoices": [invoice.number]},
    )
    assert page.status_code == 429


def test_a_forged_setup_intent_on_the_plan_card_step_counts_as_a_failure(
    client, localstripe
) -> None:  # type: ignore[no-untyped-def]
    customer, invoice = _customer()
    plan = _plan_with_autopay(client, customer, invoice)
    page = client.get(f"/plans/{plan.id}/card").text
    response = client.post(
        f"/plans/{plan.id}/card",
        data={"csrf_token": csrf_token_from(page), "setup_intent": "seti_not_theirs"},
    )
    assert response.headers["Location"] == f"/plans/{plan.id}/card"
    assert _failures(customer) == ["card_not_usable"]
