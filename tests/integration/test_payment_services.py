"""Card payments through the services, against localstripe through the real gateway."""

from __future__ import annotations

import re
import time
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from portal.audit.models import AuditEvent
from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.extensions import db
from portal.invoices.models import Invoice, InvoiceStatus
from portal.invoices.queries import invoice_balance
from portal.money import Money
from portal.notifications.models import OutboxMessage
from portal.notifications.sender import SmtpSender, SmtpSettings
from portal.notifications.services import deliver_due_messages, render_deferred
from portal.payments.errors import (
    AmountNoLongerPayable,
    CardNotUsable,
    CheckoutNotOpen,
    InvalidPaymentAmount,
    NothingToPay,
    PaymentInProgress,
    PaymentsUnavailable,
)
from portal.payments.gateway import GatewayEvent
from portal.payments.models import (
    CardFailure,
    Checkout,
    CheckoutStatus,
    Payment,
    PaymentAccount,
    SavedCard,
)
from portal.payments.services import (
    finish_charge,
    remove_saved_card,
    start_checkout,
    sync_checkout,
)
from tests.factories import csrf_token_from, make_customer, make_invoice, make_payment
from tests.stripe_journeys import (
    CARD_3DS,
    CARD_DECLINED_AT_PAYMENT,
    CARD_DECLINED_AT_SETUP,
    charge,
    claim,
    deliver,
    pay,
    set_up_card,
)

pytest_plugins = ["tests.stripe_server"]
pytestmark = pytest.mark.usefixtures("stripe_app", "db_session", "request_context")


def _balance(invoice):
    return invoice_balance(invoice, customer_today(invoice.customer, utcnow()))


def _payments(customer):
    return list(db.session.scalars(select(Payment).where(Payment.customer_id == customer.id)))


def _checkouts():
    return db.session.scalar(select(func.count()).select_from(Checkout))


# --- paying ---------------------------------------------------------------------------------
def test_full_payment_is_charged_once_recorded_once_and_receipted(localstripe):
    # given
    customer = make_customer()
    invoice = make_invoice(customer, number="INV-FULL", lines=[("Consulting", "2", "60.00")])
    # when
    checkout = pay(localstripe, customer, ["INV-FULL"])
    # then Stripe took exactly the balance, once
    [charged] = localstripe.charged()
    assert (charged["amount"], charged["currency"]) == (12000, "usd")
    assert charged["metadata"]["portal_checkout"] == str(checkout.id)
    # and the ledger says so, once
    assert checkout.state == CheckoutStatus.SUCCEEDED
    [payment] = _payments(customer)
    assert (payment.reference, payment.amount, payment.source) == (
        charged["id"],
        Money(12000, "USD"),
        "card",
    )
    assert [(a.invoice_id, a.amount_minor) for a in payment.allocations] == [(invoice.id, 12000)]
    assert _balance(invoice).status == InvoiceStatus.PAID
    # and a receipt waits in the outbox
    receipt = db.session.scalar(select(OutboxMessage).where(OutboxMessage.kind == "receipt"))
    assert receipt.to_address == customer.email
    assert receipt.category == "transactional"
    assert (receipt.template, receipt.context["payment_id"]) == ("receipt", payment.id)
    assert receipt.subject is None  # written when sent (see the delivery test below)
    render_deferred(receipt, customer)
    assert payment.receipt_number in receipt.subject
    assert "$120.00" in receipt.body_text
    assert "INV-FULL" in receipt.body_text
    assert "/l/" in receipt.body_text  # a fresh portal link
    actions = set(db.session.scalars(select(AuditEvent.action)))
    assert {
        "checkout.opened",
        "checkout.processing",
        "checkout.succeeded",
        "payment.received",
    } <= actions


def test_several_invoices_are_each_paid_in_full(localstripe):
    customer = make_customer()
    first = make_invoice(
        customer,
        issue_date=date(2025, 12, 1),
        due_date=date(2026, 1, 10),
        lines=[("A", "1", "10.00")],
    )
    second = make_invoice(
        customer,
        issue_date=date(2025, 12, 1),
        due_date=date(2026, 2, 10),
        lines=[("B", "1", "25.50")],
    )
    pay(localstripe, customer, [first.number, second.number])
    [payment] = _payments(customer)
    assert payment.amount == Money(3550, "USD")
    assert sorted((a.invoice_id, a.amount_minor) for a in payment.allocations) == [
        (first.id, 1000),
        (second.id, 2550),
    ]


def test_partial_payment_goes_to_the_oldest_chosen_invoice_first(localstripe):
    # given three invoices, of which the customer chooses the two later ones
    customer = make_customer()
    oldest = make_invoice(
        customer,
        issue_date=date(2025, 12, 1),
        due_date=date(2026, 1, 1),
        lines=[("A", "1", "40.00")],
    )
    middle = make_invoice(
        customer,
        issue_date=date(2025, 12, 1),
        due_date=date(2026, 2, 1),
        lines=[("B", "1", "30.00")],
    )
    latest = make_invoice(
        customer,
        issue_date=date(2025, 12, 1),
        due_date=date(2026, 3, 1),
        lines=[("C", "1", "50.00")],
    )
    # when they pay part of those two
    pay(localstripe, customer, [latest.number, middle.number], amount="45.00")
    # then the older chosen one is paid in full, the later one in part, the unchosen not at all
    assert localstripe.charged()[0]["amount"] == 4500
    assert _balance(middle).status == InvoiceStatus.PAID
    assert _balance(latest).balance == Money(3500, "USD")
    assert _balance(latest).status == InvoiceStatus.PARTIALLY_PAID
    assert _balance(oldest).status == InvoiceStatus.OPEN


def test_an_amount_with_more_decimals_than_the_currency_has_is_refused_not_rounded():
    """A typed amount is charged as typed or not at all: "33.335" USD was rounded to
    $33.34; now the customer is asked to write it in cents (as the dispute form asks)."""
    customer = make_customer()
    make_invoice(customer, number="INV-ROUND", lines=[("A", "1", "100.00")])
    with pytest.raises(InvalidPaymentAmount) as refused:
        start_checkout(customer, ["INV-ROUND"], "33.335", now=utcnow())
    assert refused.value.message == "Please enter the amount with at most 2 decimals."
    assert _checkouts() == 0
    # "33.330" could be $33,330.00 as other languages write it: asked, not guessed
    with pytest.raises(InvalidPaymentAmount) as asked:
        start_checkout(customer, ["INV-ROUND"], "33.330", now=utcnow())
    assert "could mean $33.33 or $33,330.00" in asked.value.message
    assert _checkouts() == 0
    # other trailing zeros change nothing: "33.3300" is $33.33
    assert start_checkout(customer, ["INV-ROUND"], "33.3300", now=utcnow()).amount == Money(
        3333, "USD"
    )


def test_a_zero_decimal_currency_is_charged_in_whole_yen(localstripe, app, monkeypatch):
    monkeypatch.setitem(app.config, "PAYMENT_MINIMUMS", "JPY=100")
    customer = make_customer(currency="JPY")
    invoice = make_invoice(customer, number="INV-JPY", lines=[("Widget", "3", "4115")])
    checkout = pay(localstripe, customer, ["INV-JPY"], amount="5000")
    [charged] = localstripe.charged()
    assert (charged["amount"], charged["currency"]) == (5000, "jpy")
    assert checkout.amount == Money(5000, "JPY")
    assert _balance(invoice).balance == Money(12345 - 5000, "JPY")


# --- what may not be paid -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("0.50", "The smallest amount you can pay is $5.00."),
        ("100.01", "You can pay at most $100.00."),
        ("0", "Please enter an amount greater than zero."),
        ("1e3", "Please enter a valid amount."),
        ("ten dollars", "Please enter a valid amount."),
    ],
)
def test_a_bad_amount_is_refused_and_nothing_is_written(app, monkeypatch, amount, message):
    monkeypatch.setitem(app.config, "PAYMENT_MINIMUM", "5.00")
    customer = make_customer()
    make_invoice(customer, number="INV-AMT", lines=[("A", "1", "100.00")])
    with pytest.raises(InvalidPaymentAmount) as refused:
        start_checkout(customer, ["INV-AMT"], amount, now=utcnow())
    assert refused.value.message == message
    assert _checkouts() == 0


def test_someone_elses_invoice_cannot_be_chosen():
    mine, theirs = make_customer(), make_customer()
    make_invoice(theirs, number="INV-THEIRS")
    with pytest.raises(NothingToPay):
        start_checkout(mine, ["INV-THEIRS"], None, now=utcnow())


def test_a_paid_invoice_cannot_be_chosen():
    customer = make_customer()
    invoice = make_invoice(customer, number="INV-PAID", lines=[("A", "1", "10.00")])
    make_payment(customer, [(invoice, "10.00")])
    with pytest.raises(NothingToPay):
        start_checkout(customer, ["INV-PAID"], None, now=utcnow())


def test_a_customer_never_has_invoices_in_two_currencies():
    # The database refuses the state that MixedCurrencies would guard against.
    customer = make_customer()
    make_invoice(customer, number="INV-USD")
    euro = make_invoice(customer, number="INV-EUR")
    to_euros = update(Invoice).where(Invoice.id == euro.id).values(currency="EUR")
    with pytest.raises(IntegrityError, match="currency"), db.session.begin_nested():
        db.session.execute(to_euros)
    checkout = start_checkout(customer, ["INV-USD", "INV-EUR"], None, now=utcnow())
    assert checkout.amount.currency == "USD"


# --- cards that do not work ---------------------------------------------------------------
def test_a_declined_card_records_nothing_and_another_card_pays(localstripe):
    # given
    customer = make_customer()
    invoice = make_invoice(customer, number="INV-DECL", lines=[("A", "1", "80.00")])
    checkout = start_checkout(customer, ["INV-DECL"], None, now=utcnow())
    # when the first card is declined at payment
    declined = set_up_card(localstripe, customer, checkout, CARD_DECLINED_AT_PAYMENT)
    checkout = charge(customer, checkout, setup_intent_id=declined)
    # then nothing is paid and the customer learns why
    assert checkout.state == CheckoutStatus.OPEN
    assert checkout.last_error_code == "card_declined"
    assert _payments(customer) == []
    assert localstripe.charged() == []
    # when another card is used on the same checkout
    good = set_up_card(localstripe, customer, checkout)
    checkout = charge(customer, checkout, setup_intent_id=good)
    # then it pays, once
    assert checkout.state == CheckoutStatus.SUCCEEDED
    assert checkout.attempt == 2
    assert len(localstripe.charged()) == 1
    assert _balance(invoice).status == InvoiceStatus.PAID


def test_a_card_declined_at_setup_never_reaches_a_charge(localstripe):
    customer = make_customer()
    make_invoice(customer, number="INV-SETUP")
    checkout = start_checkout(customer, ["INV-SETUP"], None, now=utcnow())
    from portal.payments.services import prepare_card_form

    secret = prepare_card_form(customer, checkout, now=utcnow()).setup_client_secret
    response = localstripe.confirm_setup(secret, CARD_DECLINED_AT_SETUP)
    assert response.status_code == 402
    setup_id = secret.split("_secret_")[0]
    with pytest.raises(CardNotUsable):
        claim(customer, checkout, setup_id)
    assert checkout.state == CheckoutStatus.OPEN
    assert localstripe.payment_intents() == []


def test_a_setup_intent_of_another_customer_is_refused(localstripe):
    alice, mallory = make_customer(), make_customer()
    make_invoice(alice, number="INV-ALICE")
    make_invoice(mallory, number="INV-MALLORY")
    alices = start_checkout(alice, ["INV-ALICE"], None, now=utcnow())
    alices_card = set_up_card(localstripe, alice, alices)
    mallorys = start_checkout(mallory, ["INV-MALLORY"], None, now=utcnow())
    with pytest.raises(CardNotUsable):
        charge(mallory, mallorys, setup_intent_id=alices_card)
    assert localstripe.payment_intents() == []


# --- 3-D Secure ---------------------------------------------------------------------------------
@pytest.mark.parametrize("approved", [True, False])
def test_three_d_secure_pays_only_when_the_bank_approves(localstripe, approved):
    # given a card that asks for 3-D Secure
    customer = make_customer()
    invoice = make_invoice(customer, number="INV-3DS", lines=[("A", "1", "70.00")])
    checkout = pay(localstripe, customer, ["INV-3DS"], card=CARD_3DS)
    assert checkout.state == CheckoutStatus.REQUIRES_ACTION
    assert _payments(customer) == []
    # when the customer completes (or fails) the bank's check and comes back
    localstripe.authenticate(checkout.payment_intent_id, success=approved)
    checkout = sync_checkout(customer, checkout, now=utcnow())
    # then
    if approved:
        assert checkout.state == CheckoutStatus.SUCCEEDED
        assert _balance(invoice).status == InvoiceStatus.PAID
    else:
        assert checkout.state == CheckoutStatus.OPEN
        assert checkout.last_error_code == "payment_intent_authentication_failure"
        assert _payments(customer) == []
        assert _balance(invoice).status == InvoiceStatus.OPEN
        # and its PaymentIntent, whose client secret the browser holds, takes no other card
        intent = localstripe.get(f"/v1/payment_intents/{checkout.payment_intent_id}")
        assert intent["status"] == "canceled"


def test_after_a_failed_three_d_secure_the_next_charge_can_ask_for_it_again(localstripe):
    # given a charge whose bank check failed
    customer = make_customer()
    invoice = make_invoice(customer, number="INV-3DS-AGAIN", lines=[("A", "1", "70.00")])
    checkout = pay(localstripe, customer, ["INV-3DS-AGAIN"], card=CARD_3DS)
    failed = checkout.payment_intent_id
    localstripe.authenticate(failed, success=False)
    checkout = sync_checkout(customer, checkout, now=utcnow())
    assert checkout.state == CheckoutStatus.OPEN
    # when the customer tries again with a card that asks for 3-D Secure too
    setup = set_up_card(localstripe, customer, checkout, CARD_3DS)
    checkout = charge(customer, checkout, setup_intent_id=setup)
    # then the bank's check is asked for the new PaymentIntent (not left "processing"
    # under the failed one's id), and approving it pays
    assert checkout.state == CheckoutStatus.REQUIRES_ACTION
    assert checkout.payment_intent_id not in (None, failed)
    localstripe.authenticate(checkout.payment_intent_id, success=True)
    checkout = sync_checkout(customer, checkout, now=utcnow())
    assert checkout.state == CheckoutStatus.SUCCEEDED
    assert _balance(invoice).status == InvoiceStatus.PAID


def test_a_late_failure_of_the_last_attempt_leaves_the_next_one_in_flight(localstripe):
    # given a failed bank check, then a second charge claimed, Stripe not answered yet
    customer = make_customer()
    make_invoice(customer, number="INV-3DS-LATE", lines=[("A", "1", "70.00")])
    checkout = pay(localstripe, customer, ["INV-3DS-LATE"], card=CARD_3DS)
    first = checkout.payment_intent_id
    localstripe.authenticate(first, success=False)
    checkout = sync_checkout(customer, checkout, now=utcnow())
    setup = set_up_card(localstripe, customer, checkout, CARD_3DS)
    claimed = claim(customer, checkout, setup)
    failures = db.session.scalar(select(func.count()).select_from(CardFailure))
    # when Stripe's event about the first PaymentIntent's failure arrives only now
    late = localstripe.get(f"/v1/payment_intents/{first}")
    event = GatewayEvent("evt_late_3ds", "payment_intent.payment_failed", int(time.time()), late)
    assert deliver(event) == "ignored"
    # then the second charge stays in flight, nothing more is counted, and it goes on
    db.session.refresh(checkout)
    assert checkout.state == CheckoutStatus.PROCESSING
    assert db.session.scalar(select(func.count()).select_from(CardFailure)) == failures
    checkout = finish_charge(claimed, now=utcnow())
    assert checkout.state == CheckoutStatus.REQUIRES_ACTION
    assert checkout.payment_intent_id != first


# --- Stripe down -----------------------------------------------------------------------------
def test_stripe_unreachable_when_starting_writes_nothing(app, monkeypatch, unreachable_stripe):
    monkeypatch.setitem(app.config, "STRIPE_API_BASE", unreachable_stripe)
    customer = make_customer()
    make_invoice(customer, number="INV-DOWN")
    with pytest.raises(PaymentsUnavailable):
        start_checkout(customer, ["INV-DOWN"], None, now=utcnow())
    assert _checkouts() == 0
    assert db.session.scalar(select(func.count()).select_from(PaymentAccount)) == 0


def test_stripe_failing_during_the_charge_leaves_it_open_and_a_retry_pays_once(
    app, localstripe, failing_stripe, monkeypatch
):
    # given a claimed charge
    customer = make_customer()
    invoice = make_invoice(customer, number="INV-500", lines=[("A", "1", "30.00")])
    checkout = start_checkout(customer, ["INV-500"], None, now=utcnow())
    card = set_up_card(localstripe, customer, checkout)
    claimed = claim(customer, checkout, card)
    # when Stripe answers 500
    monkeypatch.setitem(app.config, "STRIPE_API_BASE", failing_stripe)
    checkout = finish_charge(claimed, now=utcnow())
    # then nothing is recorded, the customer may retry, and the same card keeps its key
    assert checkout.state == CheckoutStatus.OPEN
    assert checkout.last_error_code == "gateway_unavailable"
    assert _payments(customer) == []
    first_key = checkout.attempt_key
    monkeypatch.setitem(app.config, "STRIPE_API_BASE", localstripe.url)
    retry = claim(customer, checkout, card)
    assert retry.idempotency_key == first_key
    checkout = finish_charge(retry, now=utcnow())
    assert checkout.state == CheckoutStatus.SUCCEEDED
    assert len(_payments(customer)) == 1
    assert _balance(invoice).status == InvoiceStatus.PAID


# --- one charge in flight ---------------------------------------------------------------------
def test_a_second_charge_waits_while_one_is_in_flight(localstripe):
    customer = make_customer()
    make_invoice(customer, number="INV-TABS", lines=[("A", "1", "50.00")])
    tab_one = start_checkout(customer, ["INV-TABS"], None, now=utcnow())
    tab_two = start_checkout(customer, ["INV-TABS"], None, now=utcnow())
    card_one = set_up_card(localstripe, customer, tab_one)
    card_two = set_up_card(localstripe, customer, tab_two)
    claimed = claim(customer, tab_one, card_one)
    # the same checkout twice (a double click), and the other tab, are both refused
    with pytest.raises(CheckoutNotOpen):
        claim(customer, tab_one, card_one)
    with pytest.raises(PaymentInProgress):
        claim(customer, tab_two, card_two)
    finish_charge(claimed, now=utcnow())
    # once paid, the other tab finds nothing left to pay
    with pytest.raises(AmountNoLongerPayable):
        claim(customer, tab_two, card_two)
    assert len(localstripe.charged()) == 1


def test_a_charge_is_refused_when_the_balance_dropped_meanwhile(localstripe):
    customer = make_customer()
    invoice = make_invoice(customer, number="INV-DROP", lines=[("A", "1", "100.00")])
    checkout = start_checkout(customer, ["INV-DROP"], None, now=utcnow())
    card = set_up_card(localstripe, customer, checkout)
    make_payment(customer, [(invoice, "60.00")])  # an ERP import arrives meanwhile
    with pytest.raises(AmountNoLongerPayable):
        charge(customer, checkout, setup_intent_id=card)
    assert localstripe.payment_intents() == []


def test_a_checkout_abandoned_in_three_d_secure_is_settled_before_the_next_charge(localstripe):
    # given a 3-D Secure charge left hanging twenty minutes ago
    customer = make_customer()
    make_invoice(customer, number="INV-OLD", lines=[("A", "1", "20.00")])
    make_invoice(customer, number="INV-NEW", lines=[("B", "1", "30.00")])
    abandoned = pay(localstripe, customer, ["INV-OLD"], card=CARD_3DS)
    assert abandoned.state == CheckoutStatus.REQUIRES_ACTION
    abandoned.updated_at = utcnow() - timedelta(minutes=20)
    db.session.flush()
    # when the customer pays again
    fresh = pay(localstripe, customer, ["INV-NEW"])
    # then the old attempt was cancelled at Stripe, and the new one paid
    assert abandoned.state == CheckoutStatus.CANCELED
    assert (
        localstripe.get(f"/v1/payment_intents/{abandoned.payment_intent_id}")["status"]
        == "canceled"
    )
    assert fresh.state == CheckoutStatus.SUCCEEDED


def test_a_stale_checkout_whose_three_d_secure_failed_is_cancelled_at_stripe_too(localstripe):
    # given a 3-D Secure charge whose challenge failed twenty minutes ago, its webhook lost:
    # Stripe holds the intent in requires_payment_method, which another card could still pay
    customer = make_customer()
    make_invoice(customer, number="INV-OLD", lines=[("A", "1", "20.00")])
    make_invoice(customer, number="INV-NEW", lines=[("B", "1", "30.00")])
    abandoned = pay(localstripe, customer, ["INV-OLD"], card=CARD_3DS)
    localstripe.authenticate(abandoned.payment_intent_id, success=False)
    intent_path = f"/v1/payment_intents/{abandoned.payment_intent_id}"
    assert localstripe.get(intent_path)["status"] == "requires_payment_method"
    abandoned.updated_at = utcnow() - timedelta(minutes=20)
    db.session.flush()
    # when the customer pays again
    fresh = pay(localstripe, customer, ["INV-NEW"])
    # then the old intent can no longer be paid from the old tab, and the new one paid
    assert abandoned.state == CheckoutStatus.CANCELED
    assert localstripe.get(intent_path)["status"] == "canceled"
    assert fresh.state == CheckoutStatus.SUCCEEDED


# --- cards kept and not kept -------------------------------------------------------------------
def test_a_card_is_kept_only_when_asked_and_can_be_reused_and_removed(localstripe):
    customer = make_customer()
    make_invoice(customer, number="INV-K1", lines=[("A", "1", "10.00")])
    make_invoice(customer, number="INV-K2", lines=[("B", "1", "20.00")])
    first = pay(localstripe, customer, ["INV-K1"], save_card=True)
    saved = db.session.scalar(select(SavedCard).where(SavedCard.customer_id == customer.id))
    assert (saved.brand, saved.last4) == ("visa", "4242")
    assert saved.payment_method_id == first.payment_method_id
    # reused without typing the card again
    second = start_checkout(customer, ["INV-K2"], None, now=utcnow())
    second = charge(customer, second, use_saved_card=True)
    assert second.state == CheckoutStatus.SUCCEEDED
    assert second.payment_method_id == saved.payment_method_id
    # removed here and at Stripe
    assert remove_saved_card(customer, now=utcnow())
    assert db.session.scalar(select(SavedCard).where(SavedCard.customer_id == customer.id)) is None
    assert localstripe.get(f"/v1/payment_methods/{first.payment_method_id}")["customer"] is None


def test_a_card_not_kept_is_detached_after_the_payment(localstripe):
    customer = make_customer()
    make_invoice(customer, number="INV-NK")
    checkout = pay(localstripe, customer, ["INV-NK"], save_card=False)
    assert checkout.state == CheckoutStatus.SUCCEEDED
    assert localstripe.get(f"/v1/payment_methods/{checkout.payment_method_id}")["customer"] is None
    assert db.session.scalar(select(SavedCard)) is None
    make_invoice(customer, number="INV-NK2")
    later = start_checkout(customer, ["INV-NK2"], None, now=utcnow())
    with pytest.raises(CardNotUsable):
        charge(customer, later, use_saved_card=True)


def test_the_receipt_is_written_when_sent_in_the_customers_language(
    localstripe, smtp_server, client
):
    # given a French customer who paid two invoices by card
    customer = make_customer(name="Léa Martin", locale="fr", email="lea@example.com")
    make_invoice(customer, number="INV-FR-1", lines=[("Conseil", "1", "1000.00")])
    make_invoice(customer, number="INV-FR-2", lines=[("Conseil", "1", "234.50")])
    checkout = pay(localstripe, customer, ["INV-FR-1", "INV-FR-2"])
    [payment] = _payments(customer)
    # when the runner delivers the receipt over SMTP, once the customer's email hours
    # allow it (08:00-21:00 in their zone: at night it waits until the morning)
    queued = db.session.scalar(select(OutboxMessage).where(OutboxMessage.kind == "receipt"))
    when = max(utcnow(), queued.not_before)
    sender = SmtpSender(SmtpSettings.from_url(smtp_server.url))
    try:
        report = deliver_due_messages(sender, now=when, runner="test-runner")
    finally:
        sender.close()
    # then it arrives once, in French, with what was paid, how it was allocated and the card
    assert report.sent == 1
    (received,) = smtp_server.received
    assert received["To"] == "lea@example.com"
    assert payment.receipt_number in received["Subject"]
    text = received.get_body(("plain",)).get_content()
    assert "1 234,50" in text.replace("\u202f", " ").replace("\xa0", " ")
    assert "INV-FR-1" in text
    assert "INV-FR-2" in text
    assert checkout.card_last4 in text
    assert "Bonjour" in text
    # and the outbox keeps what was sent
    receipt = db.session.scalar(select(OutboxMessage).where(OutboxMessage.kind == "receipt"))
    assert receipt.subject == received["Subject"]
    # and its link opens the customer's account
    url = re.search(r"https?://\S+/l/\S+", text).group(0)
    path = "/l/" + url.split("/l/", 1)[1]
    landing = client.get(path)
    entered = client.post(path, data={"csrf_token": csrf_token_from(landing.text)})
    assert entered.status_code == 302
    assert entered.headers["Location"] == "/account"
