"""A customer's plans over HTTP, with localstripe: agreed within policy and its down
payment paid through the pay flow, autopay's card saved, an installment paid early, a
request for review, a counter-offer answered, and nobody else's plan reachable."""

from __future__ import annotations

import io
import re
from datetime import date, timedelta

import pytest
from flask.testing import FlaskClient
from pypdf import PdfReader
from sqlalchemy import func, select

from portal.audit.actors import Actor
from portal.customers.models import Customer
from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.extensions import db
from portal.invoices.balances import invoice_balance
from portal.invoices.models import Invoice
from portal.money import Money
from portal.payments.models import Checkout, Payment
from portal.plans.models import InstallmentAttempt, PaymentPlan, PlanStatus
from portal.plans.services import cancel_plan, counter_offer
from tests.factories import csrf_token_from, login_as, make_customer, make_invoice, make_payment
from tests.stripe_journeys import CARD_OK

pytest_plugins = ["tests.stripe_server"]
pytestmark = pytest.mark.usefixtures("stripe_app")

SETUP_SECRET = re.compile(r'data-setup-secret="([^"]+)"')


def _count(model) -> int:  # type: ignore[no-untyped-def]
    return db.session.scalar(select(func.count()).select_from(model))


def _signed_in(client: FlaskClient) -> tuple[Customer, Invoice]:
    customer = make_customer(timezone="UTC")
    invoice = make_invoice(customer, issue_date=date(2026, 9, 1), lines=[("Work", "1", "2100.00")])
    db.session.commit()
    login_as(client, customer)
    return customer, invoice


def _today(customer: Customer) -> date:
    return customer_today(customer, utcnow())


def _accept(client: FlaskClient, invoice: Invoice, **fields: object):  # type: ignore[no-untyped-def]
    page = client.get("/plans/new").text
    data: dict[str, object] = {
        "csrf_token": csrf_token_from(page),
        "invoices": invoice.number,
        "down_payment": "300.00",
        "frequency": "monthly",
        "installments": "6",
        "first_payment_date": (utcnow().date() + timedelta(days=20)).isoformat(),
        "accept": "1",
    }
    data.update(fields)
    return client.post("/plans/new", data=data)


def _pay_on_card_page(client: FlaskClient, localstripe, location: str):  # type: ignore[no-untyped-def]
    page = client.get(location)
    assert page.status_code == 200, page.text
    setup = localstripe.set_up_card(SETUP_SECRET.search(page.text).group(1), CARD_OK)
    return client.post(
        f"{location}/confirm",
        data={
            "csrf_token": csrf_token_from(page.text),
            "setup_intent": setup,
            "card_choice": "new",
        },
    )


def _plan(customer: Customer) -> PaymentPlan:
    plan = db.session.scalar(select(PaymentPlan).where(PaymentPlan.customer_id == customer.id))
    assert plan is not None
    db.session.refresh(plan)
    return plan


def test_a_plan_within_policy_is_agreed_and_its_down_payment_paid_by_card(
    client: FlaskClient, localstripe
) -> None:
    # given
    customer, invoice = _signed_in(client)
    # when the customer accepts 300.00 down and 6 monthly payments of 300.00
    response = _accept(client, invoice)
    # then the plan is active and the pay flow opens for the down payment
    plan = _plan(customer)
    assert plan.status == PlanStatus.ACTIVE
    assert [(i.number, i.amount_minor) for i in plan.installments] == [(0, 30_000)] + [
        (n, 30_000) for n in range(1, 7)
    ]
    assert response.status_code == 302
    location = response.headers["Location"]
    checkout = db.session.scalar(select(Checkout).where(Checkout.customer_id == customer.id))
    assert location == f"/pay/{checkout.id}"
    assert (checkout.amount_minor, checkout.plan_installment_id) == (
        30_000,
        plan.installments[0].id,
    )
    card_page = client.get(location).text
    assert "Back to your plan" in card_page
    assert "$300.00" in card_page
    # when the card is charged
    done = _pay_on_card_page(client, localstripe, location)
    assert done.status_code == 302
    assert done.headers["Location"].endswith("/done")
    # then the money is on the invoice, through the plan
    plan = _plan(customer)
    down, first = plan.installments[0], plan.installments[1]
    assert (down.status, down.paid_minor) == ("paid", 30_000)
    assert (first.status, first.paid_minor) == ("scheduled", 0)
    assert plan.invoices[0].paid_minor == 30_000
    balance = invoice_balance(invoice, _today(customer))
    assert (balance.balance, balance.payable) == (Money(180_000, "USD"), Money(0, "USD"))
    payment = db.session.scalar(select(Payment).where(Payment.customer_id == customer.id))
    assert [(a.invoice_id, a.amount_minor) for a in payment.allocations] == [(invoice.id, 30_000)]
    page = client.get(f"/plans/{plan.id}").text
    assert 'id="plan-paid">$300.00<' in page
    assert 'id="plan-remaining">$1,800.00<' in page
    assert "Pay $300.00 now" in page  # installment 1, early


def test_an_installment_is_paid_early_from_the_plan_page(client: FlaskClient, localstripe) -> None:
    customer, invoice = _signed_in(client)
    _pay_on_card_page(client, localstripe, _accept(client, invoice).headers["Location"])
    plan = _plan(customer)
    page = client.get(f"/plans/{plan.id}").text
    response = client.post(
        f"/plans/{plan.id}/installments/1/pay", data={"csrf_token": csrf_token_from(page)}
    )
    assert response.status_code == 302
    _pay_on_card_page(client, localstripe, response.headers["Location"])
    plan = _plan(customer)
    assert [i.status for i in plan.installments[:3]] == ["paid", "paid", "scheduled"]
    assert plan.invoices[0].paid_minor == 60_000


def test_a_paid_installment_cannot_be_paid_again(client: FlaskClient, localstripe) -> None:
    customer, invoice = _signed_in(client)
    _pay_on_card_page(client, localstripe, _accept(client, invoice).headers["Location"])
    plan = _plan(customer)
    page = client.get(f"/plans/{plan.id}").text
    checkouts = _count(Checkout)
    response = client.post(
        f"/plans/{plan.id}/installments/0/pay", data={"csrf_token": csrf_token_from(page)}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == f"/plans/{plan.id}"
    assert _count(Checkout) == checkouts
    response = client.post(
        f"/plans/{plan.id}/installments/3/pay",
        data={"csrf_token": csrf_token_from(page)},
        follow_redirects=True,
    )
    assert "A plan is paid in order: please pay the next payment shown on your plan first." in (
        response.text
    )
    assert _count(Checkout) == checkouts


def test_autopay_saves_a_card_before_the_down_payment(client: FlaskClient, localstripe) -> None:
    customer, invoice = _signed_in(client)
    response = _accept(client, invoice, autopay="y")
    plan = _plan(customer)
    assert response.headers["Location"] == f"/plans/{plan.id}/card"
    page = client.get(f"/plans/{plan.id}/card")
    assert page.status_code == 200
    assert "Use this card for my installments" in page.text
    # and says that the down payment comes next, not that nothing is charged at all
    assert "Saving it charges nothing; next you pay your down payment of $300.00." in page.text
    assert "Nothing is charged now." not in page.text
    setup = localstripe.set_up_card(SETUP_SECRET.search(page.text).group(1), CARD_OK)
    saved = client.post(
        f"/plans/{plan.id}/card",
        data={
            "csrf_token": csrf_token_from(page.text),
            "setup_intent": setup,
            "card_choice": "new",
        },
    )
    checkout = db.session.scalar(select(Checkout).where(Checkout.customer_id == customer.id))
    assert saved.headers["Location"] == f"/pay/{checkout.id}"  # then the down payment
    plan = _plan(customer)
    assert plan.autopay
    assert plan.saved_card is not None
    assert plan.saved_card.last4 == CARD_OK[-4:]
    assert _count(Payment) == 0  # saving a card charges nothing
    assert (
        "Each installment is charged automatically on its due date to your"
        in client.get(f"/plans/{plan.id}").text
    )


def test_a_forged_setup_intent_saves_no_card(client: FlaskClient, localstripe) -> None:
    customer, invoice = _signed_in(client)
    _accept(client, invoice, autopay="y")
    plan = _plan(customer)
    page = client.get(f"/plans/{plan.id}/card").text
    response = client.post(
        f"/plans/{plan.id}/card",
        data={"csrf_token": csrf_token_from(page), "setup_intent": "seti_not_theirs"},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == f"/plans/{plan.id}/card"
    assert _plan(customer).saved_card_id is None


def test_a_plan_outside_policy_goes_for_review_with_its_reason(client: FlaskClient) -> None:
    customer, invoice = _signed_in(client)
    response = _accept(client, invoice, installments="12", reason="Hardship: I lost my job.")
    plan = _plan(customer)
    assert plan.status == PlanStatus.PENDING
    assert plan.reason == "Hardship: I lost my job."
    assert response.headers["Location"] == f"/plans/{plan.id}"
    assert _count(Checkout) == 0
    page = client.get(f"/plans/{plan.id}").text
    assert "Waiting for review" in page
    assert "Hardship: I lost my job." in page
    # its invoice is held from another plan meanwhile
    assert "You already have a proposal waiting for an answer." in client.get("/plans/new").text


def test_a_counter_offer_is_accepted_from_the_plan_page(client: FlaskClient, localstripe) -> None:
    customer, invoice = _signed_in(client)
    _accept(client, invoice, installments="12", reason="Hardship")
    plan = _plan(customer)
    counter_offer(
        plan,
        down_payment=Money(21_000, "USD"),
        frequency="monthly",
        installments=9,
        first_payment_date=_today(customer) + timedelta(days=25),
        note="We can do 9 months.",
        actor=Actor.system(),
        now=utcnow(),
    )
    db.session.commit()
    page = client.get(f"/plans/{plan.id}").text
    assert "A specialist proposes another plan" in page
    assert "We can do 9 months." in page
    assert "9 monthly payments of $210.00" in page
    response = client.post(
        f"/plans/{plan.id}/counter-offer",
        data={"csrf_token": csrf_token_from(page), "decision": "accept"},
    )
    plan = _plan(customer)
    assert plan.status == PlanStatus.ACTIVE
    assert len(plan.installments) == 10
    assert response.headers["Location"].startswith("/pay/")


def test_a_counter_offer_can_be_declined(client: FlaskClient) -> None:
    customer, invoice = _signed_in(client)
    _accept(client, invoice, installments="12", reason="Hardship")
    plan = _plan(customer)
    counter_offer(
        plan,
        down_payment=Money(21_000, "USD"),
        frequency="monthly",
        installments=9,
        first_payment_date=_today(customer) + timedelta(days=25),
        actor=Actor.system(),
        now=utcnow(),
    )
    db.session.commit()
    page = client.get(f"/plans/{plan.id}").text
    client.post(
        f"/plans/{plan.id}/counter-offer",
        data={"csrf_token": csrf_token_from(page), "decision": "decline"},
    )
    assert _plan(customer).status == PlanStatus.DECLINED
    assert invoice_balance(invoice, _today(customer)).payable == Money(210_000, "USD")


def test_a_pending_proposal_can_be_withdrawn(client: FlaskClient) -> None:
    customer, invoice = _signed_in(client)
    _accept(client, invoice, installments="12", reason="Hardship")
    plan = _plan(customer)
    page = client.get(f"/plans/{plan.id}").text
    client.post(f"/plans/{plan.id}/cancel", data={"csrf_token": csrf_token_from(page)})
    assert _plan(customer).status == PlanStatus.CANCELLED
    # its schedule is no longer shown as proposed: it was never agreed
    withdrawn = client.get(f"/plans/{plan.id}").text
    assert "Not agreed" in withdrawn
    assert "Proposed" not in withdrawn


def test_the_agreement_pdf_is_there_once_agreed(client: FlaskClient) -> None:
    customer, invoice = _signed_in(client)
    _accept(client, invoice)
    plan = _plan(customer)
    response = client.get(f"/plans/{plan.id}/agreement.pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    text = " ".join(
        " ".join(p.extract_text() for p in PdfReader(io.BytesIO(response.data)).pages).split()
    )
    assert f"Payment plan agreement PP-{plan.id}" in text
    assert invoice.number in text
    assert text.count("$300.00") >= 7


def test_the_account_page_links_the_plans(client: FlaskClient) -> None:
    customer, invoice = _signed_in(client)
    assert 'href="/plans/new"' in client.get("/account").text
    _accept(client, invoice)
    plan = _plan(customer)
    account = client.get("/account").text
    assert f'href="/plans/{plan.id}"' in account
    assert f"Payment plan PP-{plan.id}" in account


def test_another_customers_plan_is_not_found(client: FlaskClient) -> None:
    owner, invoice = _signed_in(client)
    _accept(client, invoice)
    plan = _plan(owner)
    token_page = client.get(f"/plans/{plan.id}").text
    stranger = make_customer(timezone="UTC")
    db.session.commit()
    login_as(client, stranger)
    token = csrf_token_from(client.get("/plans/new").text)
    assert token_page  # the owner could see it
    for path in (f"/plans/{plan.id}", f"/plans/{plan.id}/card", f"/plans/{plan.id}/agreement.pdf"):
        assert client.get(path).status_code == 404, path
    for path in (
        f"/plans/{plan.id}/installments/1/pay",
        f"/plans/{plan.id}/cancel",
        f"/plans/{plan.id}/counter-offer",
        f"/plans/{plan.id}/card",
    ):
        response = client.post(path, data={"csrf_token": token, "decision": "accept"})
        assert response.status_code == 404, path
    assert _plan(owner).status == PlanStatus.ACTIVE
    assert _count(Checkout) == 1  # the owner's down payment only


def test_posts_without_csrf_change_nothing(client: FlaskClient) -> None:
    customer, invoice = _signed_in(client)
    _accept(client, invoice, installments="12", reason="Hardship")
    plan = _plan(customer)
    assert client.post(f"/plans/{plan.id}/cancel").status_code == 400
    assert (
        client.post(f"/plans/{plan.id}/counter-offer", data={"decision": "accept"}).status_code
        == 400
    )
    assert _plan(customer).status == PlanStatus.PENDING


def test_an_installment_autopay_is_charging_cannot_be_paid_by_hand_meanwhile(
    client: FlaskClient, localstripe
) -> None:
    # given the down payment paid, and autopay charging installment 1 right now
    customer, invoice = _signed_in(client)
    _pay_on_card_page(client, localstripe, _accept(client, invoice).headers["Location"])
    plan = _plan(customer)
    first = plan.installments[1]
    db.session.add(
        InstallmentAttempt(
            installment_id=first.id,
            attempt=1,
            idempotency_key=f"installment-{first.id}-attempt-1",
            status="processing",
            amount_minor=first.amount_minor,
            currency="USD",
        )
    )
    db.session.commit()
    checkouts = _count(Checkout)
    # when the customer presses "Pay now" on it
    page = client.get(f"/plans/{plan.id}").text
    assert "Pay $300.00 now" not in page
    response = client.post(
        f"/plans/{plan.id}/installments/1/pay",
        data={"csrf_token": csrf_token_from(page)},
        follow_redirects=True,
    )
    # then nothing opens: it is never charged twice
    assert "already paid, or the plan is no longer active" in response.text
    assert _count(Checkout) == checkouts


def test_a_checkout_left_open_is_not_charged_once_the_plan_ended(
    client: FlaskClient, localstripe
) -> None:
    customer, invoice = _signed_in(client)
    location = _accept(client, invoice).headers["Location"]
    plan = _plan(customer)
    cancel_plan(plan, actor=Actor.system(), now=utcnow(), reason="test")
    db.session.commit()
    response = _pay_on_card_page(client, localstripe, location)
    assert response.status_code == 302
    assert _count(Payment) == 0
    mine = [
        c for c in localstripe.charged() if c["metadata"].get("portal_customer") == str(customer.id)
    ]
    assert mine == []  # refused before Stripe was asked to charge


def test_a_counter_offer_whose_invoice_changed_tells_the_customer_what_to_do(
    client: FlaskClient,
) -> None:
    # review-plans: the customer read the specialist's instruction "decline this plan and
    # ask the customer for a new one"
    customer, invoice = _signed_in(client)
    _accept(client, invoice, installments="12", reason="Hardship")
    plan = _plan(customer)
    counter_offer(
        plan,
        down_payment=Money(21_000, "USD"),
        frequency="monthly",
        installments=9,
        first_payment_date=_today(customer) + timedelta(days=25),
        actor=Actor.system(),
        now=utcnow(),
    )
    make_payment(customer, [(invoice, "100.00")])  # paid in part while the offer waits
    db.session.commit()
    page = client.get(f"/plans/{plan.id}").text
    response = client.post(
        f"/plans/{plan.id}/counter-offer",
        data={"csrf_token": csrf_token_from(page), "decision": "accept"},
        follow_redirects=True,
    )
    assert _plan(customer).status == PlanStatus.COUNTERED
    assert "ask the customer" not in response.text
    assert (
        f"Invoice {invoice.number} has changed since this offer was made (a payment, a credit"
        " or a dispute). Please decline it and set up a new plan, or contact us."
    ) in response.text


def test_after_a_credit_note_an_installment_asks_only_what_the_invoices_still_owe(
    client: FlaskClient, localstripe
) -> None:
    from tests.factories import make_credit

    # given a plan of 2,100.00 whose down payment (300.00) is paid
    customer, invoice = _signed_in(client)
    _pay_on_card_page(client, localstripe, _accept(client, invoice).headers["Location"])
    plan = _plan(customer)
    # when a credit note of 1,650.00 leaves 150.00 owed on the invoice
    make_credit(invoice, "1650.00")
    db.session.commit()
    # then the next installment asks 150.00, not 300.00
    page = client.get(f"/plans/{plan.id}").text
    assert "Pay $150.00 now" in page
    response = client.post(
        f"/plans/{plan.id}/installments/1/pay", data={"csrf_token": csrf_token_from(page)}
    )
    checkout = db.session.get(Checkout, int(response.headers["Location"].rsplit("/", 1)[1]))
    assert checkout.amount_minor == 15_000
    # and once paid the invoice is settled, never over-allocated, and the plan is done
    done = _pay_on_card_page(client, localstripe, response.headers["Location"])
    assert done.status_code == 302
    balance = invoice_balance(invoice, _today(customer))
    assert balance.balance == Money(0, "USD")
    payment = db.session.scalars(
        select(Payment).where(Payment.customer_id == customer.id).order_by(Payment.id.desc())
    ).first()
    assert [(a.invoice_id, a.amount_minor) for a in payment.allocations] == [(invoice.id, 15_000)]
    plan = _plan(customer)
    assert plan.status == PlanStatus.COMPLETED


def test_an_invoice_all_in_a_plan_says_so_where_it_cannot_be_disputed_or_promised(
    client: FlaskClient,
) -> None:
    # given an invoice whose whole balance an agreed plan covers
    customer, invoice = _signed_in(client)
    _accept(client, invoice)
    assert _plan(customer).status == PlanStatus.ACTIVE
    # then its dispute form says why nothing can be disputed (not "paid or credited")
    page = client.get(f"/invoices/{invoice.number}/dispute").text
    assert "what is left of it is in your payment plan" in page
    assert "it is paid, credited or already in dispute" not in page
    # and the account page offers no promise on it (it would be refused as $0.00)
    account = client.get("/account").text
    assert f'value="{invoice.number}"' not in account
    assert "$0.00" not in account
