"""Refunds: a new record in the ledger, money back at Stripe, the balance reopened."""

from __future__ import annotations

import time
from datetime import date

import pytest
from sqlalchemy import select

from portal.audit.models import AuditEvent
from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.extensions import db
from portal.invoices.models import InvoiceStatus
from portal.invoices.queries import invoice_balance
from portal.money import Money
from portal.payments.checkouts import current_gateway
from portal.payments.errors import RefundRefused
from portal.payments.gateway import GatewayEvent
from portal.payments.ledger import refund_payment
from portal.payments.models import Payment, Refund, WebhookOutcome
from portal.payments.queries import account_for
from tests.factories import make_customer, make_invoice, make_payment
from tests.stripe_journeys import deliver, pay

pytest_plugins = ["tests.stripe_server"]
pytestmark = pytest.mark.usefixtures("stripe_app", "request_context")


def _balance(invoice):
    return invoice_balance(invoice, customer_today(invoice.customer, utcnow()))


def _payment(customer) -> Payment:
    return db.session.scalar(select(Payment).where(Payment.customer_id == customer.id))


def _two_invoices_paid(localstripe):
    customer = make_customer()
    older = make_invoice(
        customer,
        issue_date=date(2026, 1, 1),
        due_date=date(2026, 2, 1),
        lines=[("A", "1", "40.00")],
    )
    newer = make_invoice(
        customer,
        issue_date=date(2026, 1, 1),
        due_date=date(2026, 3, 1),
        lines=[("B", "1", "60.00")],
    )
    pay(localstripe, customer, [older.number, newer.number])
    return customer, older, newer


def test_a_full_refund_reopens_every_invoice_it_paid(localstripe):
    # given
    customer, older, newer = _two_invoices_paid(localstripe)
    payment = _payment(customer)
    assert _balance(older).status == _balance(newer).status == InvoiceStatus.PAID
    # when
    refund = refund_payment(payment, None, actor="staff:1", now=utcnow(), reason="goodwill")
    # then the money went back at Stripe, and the ledger has a new record
    [at_stripe] = localstripe.get(f"/v1/refunds?payment_intent={payment.reference}")["data"]
    assert (at_stripe["id"], at_stripe["amount"]) == (refund.reference, 10000)
    assert refund.amount == Money(10000, "USD")
    assert payment.amount_minor == 10000  # the payment itself is never edited
    # and both invoices owe again
    assert _balance(older).balance == Money(4000, "USD")
    assert _balance(newer).balance == Money(6000, "USD")
    assert _balance(newer).status == InvoiceStatus.OPEN
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "payment.refunded"))
    assert (audit.actor, audit.data["amount_minor"]) == ("staff:1", 10000)


def test_a_partial_refund_reopens_the_latest_due_invoice_first(localstripe):
    customer, older, newer = _two_invoices_paid(localstripe)
    payment = _payment(customer)
    refund_payment(payment, Money(7000, "USD"), actor="staff:1", now=utcnow())
    assert _balance(newer).balance == Money(6000, "USD")
    assert _balance(older).balance == Money(1000, "USD")
    assert _balance(older).status == InvoiceStatus.PARTIALLY_PAID


def test_refunds_never_exceed_the_payment(localstripe):
    customer, _older, _newer = _two_invoices_paid(localstripe)
    payment = _payment(customer)
    refund_payment(payment, Money(9000, "USD"), actor="staff:1", now=utcnow())
    with pytest.raises(RefundRefused):
        refund_payment(payment, Money(1001, "USD"), actor="staff:1", now=utcnow())
    refund_payment(payment, Money(1000, "USD"), actor="staff:1", now=utcnow())
    with pytest.raises(RefundRefused):
        refund_payment(payment, None, actor="staff:1", now=utcnow())
    with pytest.raises(RefundRefused):
        refund_payment(payment, Money(0, "USD"), actor="staff:1", now=utcnow())
    assert len(db.session.scalars(select(Refund)).all()) == 2
    assert len(localstripe.get(f"/v1/refunds?payment_intent={payment.reference}")["data"]) == 2


def test_an_offline_payment_is_not_refunded_here():
    customer = make_customer()
    invoice = make_invoice(customer)
    payment = make_payment(customer, [(invoice, "100.00")])
    with pytest.raises(RefundRefused):
        refund_payment(payment, None, actor="staff:1", now=utcnow())


def test_a_second_charge_is_recorded_unapplied_and_refunded_without_reopening(localstripe):
    # given a paid invoice, and a second charge for the same checkout (say, an ambiguous
    # retry that went through twice at Stripe), reported by its webhook
    customer = make_customer()
    invoice = make_invoice(customer, number="INV-TWICE", lines=[("A", "1", "30.00")])
    checkout = pay(localstripe, customer, ["INV-TWICE"], save_card=True)
    intent = current_gateway().create_payment(
        amount=checkout.amount,
        customer_id=account_for(customer.id).stripe_customer_id,
        payment_method_id=checkout.payment_method_id,
        metadata={"portal_checkout": str(checkout.id), "portal_customer": str(customer.id)},
        idempotency_key="a-second-charge",
    )
    raw = localstripe.get(f"/v1/payment_intents/{intent.id}")
    event = GatewayEvent("evt_second", "payment_intent.succeeded", int(time.time()), raw)
    assert deliver(event) == WebhookOutcome.APPLIED
    # then the money is in the ledger, applied to nothing, and flagged for staff
    second = db.session.scalar(select(Payment).where(Payment.reference == intent.id))
    assert second.allocations == []
    assert second.unapplied == Money(3000, "USD")
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "payment.unapplied"))
    assert _balance(invoice).status == InvoiceStatus.PAID
    # when staff refund it
    refund = refund_payment(second, None, actor="staff:1", now=utcnow())
    # then no invoice reopens
    assert refund.allocations == []
    assert _balance(invoice).status == InvoiceStatus.PAID


# --- refunds made at Stripe (its dashboard), reported by charge.refunded ------------------
def _charge_refunded(localstripe, payment: Payment, event_id: str, *, listed: bool = True):
    """The signed event Stripe sends after a refund: the charge as Stripe has it now."""
    intent = localstripe.get(f"/v1/payment_intents/{payment.reference}")
    charge_id = intent["latest_charge"]
    charge_id = charge_id if isinstance(charge_id, str) else charge_id["id"]
    charge = localstripe.get(f"/v1/charges/{charge_id}") | {"payment_intent": payment.reference}
    if not listed:  # API versions from 2022-11-15 leave the refunds out
        charge.pop("refunds", None)
    return GatewayEvent(event_id, "charge.refunded", int(time.time()), charge)


def _refund_at_stripe(localstripe, payment: Payment, amount_minor: int) -> str:
    return localstripe.post(
        "/v1/refunds", {"payment_intent": payment.reference, "amount": amount_minor}
    )["id"]


def test_a_refund_made_in_stripes_dashboard_reaches_the_ledger(localstripe):
    # given two invoices paid by card, and 25.00 refunded in Stripe's dashboard
    customer, older, newer = _two_invoices_paid(localstripe)
    payment = _payment(customer)
    refund_id = _refund_at_stripe(localstripe, payment, 2500)
    # when Stripe's charge.refunded event is applied
    event = _charge_refunded(localstripe, payment, "evt_dash_1")
    assert deliver(event) == WebhookOutcome.APPLIED
    # then the ledger knows the refund by Stripe's id, and the latest due invoice reopens
    [refund] = db.session.scalars(select(Refund).where(Refund.payment_id == payment.id)).all()
    assert (refund.reference, refund.amount, refund.actor) == (
        refund_id,
        Money(2500, "USD"),
        "stripe",
    )
    assert _balance(newer).balance == Money(2500, "USD")
    assert _balance(older).status == InvoiceStatus.PAID
    audit = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "payment.refunded"))
    assert audit.data["refund"] == refund_id
    # and the same state reported again changes nothing
    assert deliver(_charge_refunded(localstripe, payment, "evt_dash_2")) == WebhookOutcome.IGNORED
    assert len(payment.refunds) == 1


def test_without_the_list_the_refunded_total_tells_what_is_missing(localstripe):
    customer, _, newer = _two_invoices_paid(localstripe)
    payment = _payment(customer)
    _refund_at_stripe(localstripe, payment, 1000)
    event = _charge_refunded(localstripe, payment, "evt_total_1", listed=False)
    assert deliver(event) == WebhookOutcome.APPLIED
    _refund_at_stripe(localstripe, payment, 500)
    event = _charge_refunded(localstripe, payment, "evt_total_2", listed=False)
    assert deliver(event) == WebhookOutcome.APPLIED
    refunds = db.session.scalars(select(Refund).where(Refund.payment_id == payment.id)).all()
    assert [r.amount_minor for r in refunds] == [1000, 500]
    assert _balance(newer).balance == Money(1500, "USD")


def test_our_own_refund_is_not_recorded_twice_by_its_event(localstripe):
    customer, _, _ = _two_invoices_paid(localstripe)
    payment = _payment(customer)
    refund_payment(payment, Money(4000, "USD"), actor="staff:1", now=utcnow())
    assert deliver(_charge_refunded(localstripe, payment, "evt_ours")) == WebhookOutcome.IGNORED
    assert len(db.session.scalars(select(Refund)).all()) == 1


def test_stripe_reporting_more_refunded_than_was_paid_is_rejected_for_staff(localstripe):
    customer, _, _ = _two_invoices_paid(localstripe)
    payment = _payment(customer)
    event = _charge_refunded(localstripe, payment, "evt_more", listed=False)
    forged = GatewayEvent(
        event.id, event.type, event.created, event.data | {"amount_refunded": 99999}
    )
    assert deliver(forged) == WebhookOutcome.REJECTED
    assert db.session.scalars(select(Refund)).all() == []
    assert db.session.scalar(
        select(AuditEvent).where(AuditEvent.action == "payment.refund_mismatch")
    )


def test_what_is_kept_of_a_refunded_charge_holds_no_card_details(localstripe):
    customer, _, _ = _two_invoices_paid(localstripe)
    payment = _payment(customer)
    _refund_at_stripe(localstripe, payment, 100)
    kept = _charge_refunded(localstripe, payment, "evt_kept_charge").kept()
    assert set(kept) == {"object", "id", "currency", "amount_refunded", "payment_intent", "refunds"}
    assert "payment_method" not in str(kept)
    assert "last4" not in str(kept)
