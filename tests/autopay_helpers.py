"""Active plans and real saved cards (at localstripe) for the autopay tests.

Plain helpers, no fixtures. A plan is written as `services` leaves an agreed one:
active, its invoices covered, its installments scheduled; the card is a real
PaymentMethod set up and attached at localstripe, as the plan's card form leaves it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Protocol

from sqlalchemy import select

from portal.audit.actors import Actor
from portal.customers.models import Customer
from portal.db import utcnow
from portal.extensions import db
from portal.invoices.models import Invoice
from portal.money import Money
from portal.payments.checkouts import current_gateway
from portal.payments.models import SavedCard
from portal.payments.services import _ensure_stripe_customer
from portal.plans.models import (
    InstallmentStatus,
    PaymentPlan,
    PlanInstallment,
    PlanInvoice,
    PlanPolicyVersion,
    PlanStatus,
)
from tests.stripe_journeys import CARD_OK


class StripeServer(Protocol):
    def set_up_card(self, client_secret: str, number: str = ...) -> str: ...


def save_card(server: StripeServer, customer: Customer, number: str = CARD_OK) -> SavedCard:
    """The customer sets up `number` in the card form (a SetupIntent) and keeps it."""
    gateway = current_gateway()
    account = _ensure_stripe_customer(customer, gateway)
    stripe_customer = str(account.stripe_customer_id)
    setup = gateway.create_setup_intent(
        customer_id=stripe_customer, key=uuid.uuid4().hex, portal_id=customer.id
    )
    setup_id = server.set_up_card(setup.client_secret, number)
    method = gateway.retrieve_setup_intent(setup_id).payment_method_id
    assert method is not None
    card = gateway.attach_card(method, customer_id=stripe_customer)
    saved = db.session.scalar(select(SavedCard).where(SavedCard.customer_id == customer.id))
    if saved is None:
        saved = SavedCard(customer_id=customer.id)
        db.session.add(saved)
    saved.payment_method_id = card.payment_method_id
    saved.brand, saved.last4 = card.brand, card.last4
    saved.exp_month, saved.exp_year = card.exp_month, card.exp_year
    saved.saved_at = utcnow()
    db.session.flush()
    return saved


def make_active_plan(
    customer: Customer,
    invoices: Sequence[Invoice],
    schedule: Sequence[tuple[date, str]],
    *,
    card: SavedCard | None = None,
    autopay: bool = True,
    now: datetime | None = None,
) -> PaymentPlan:
    """An active plan over `invoices` (each covered in full, oldest first, up to the
    schedule's total), paying `schedule` [(due date, amount)] as installments 1..n."""
    now = now or utcnow()
    currency = customer.currency
    amounts = [Money.from_decimal(amount, currency) for _day, amount in schedule]
    total = Money.sum(amounts, currency)
    policy = db.session.scalar(
        select(PlanPolicyVersion)
        .where(PlanPolicyVersion.segment == "standard")
        .order_by(PlanPolicyVersion.version.desc())
    )
    assert policy is not None
    first = schedule[0][0]
    plan = PaymentPlan(
        customer_id=customer.id,
        status=PlanStatus.ACTIVE,
        source="customer",
        policy_version_id=policy.id,
        total_minor=total.minor,
        down_payment_minor=0,
        currency=currency,
        frequency="monthly",
        installment_count=len(schedule),
        first_payment_date=first,
        proposed_on=first - timedelta(days=10),
        autopay=autopay,
        saved_card_id=card.id if card is not None else None,
        created_by=str(Actor.customer(customer)),
        created_at=now,
        updated_at=now,
        activated_at=now,
        activated_on=first - timedelta(days=10),
    )
    db.session.add(plan)
    db.session.flush()
    left = total.minor
    for invoice in invoices:
        covered = min(invoice.total_minor, left)
        if covered <= 0:
            break
        db.session.add(
            PlanInvoice(
                plan_id=plan.id,
                invoice_id=invoice.id,
                amount_minor=covered,
                paid_minor=0,
                open_invoice_id=invoice.id,
            )
        )
        left -= covered
    for number, ((due, _text), amount) in enumerate(zip(schedule, amounts, strict=True), 1):
        db.session.add(
            PlanInstallment(
                plan_id=plan.id,
                number=number,
                due_date=due,
                amount_minor=amount.minor,
                paid_minor=0,
                status=InstallmentStatus.SCHEDULED,
            )
        )
    db.session.flush()
    db.session.refresh(plan)
    return plan
