"""Paying a plan by card through the pay flow: the down payment and installments by hand.

A plan's invoices are not payable outside the plan while it is active (`planned` in
`portal.invoices.balances`), so a checkout for a plan names the installment it pays
(`Checkout.plan_installment_id`, number 0 for the down payment) and the pay flow asks
this module, not `payable_items`:

* `installment_owed` is what the checkout may still charge: what the installment still
  asks for while the plan is active and the installment scheduled, else zero (the
  charge is then refused before Stripe is called, `AmountNoLongerPayable`).
* `plan_allocation` is where the money goes when Stripe took it: the plan's invoices
  (`services.plan_allocation`), and what none of them still takes comes back as
  unapplied (refunded by staff, as for any payment).
* `apply_to_plan` records it on the plan (`services.record_installment_payment`):
  `PlanInvoice.paid_minor` per invoice, then the installments in number order; the plan
  completes when every installment is paid. A customer pays the next installment only
  (`payable_installment`), so what is paid is what the page said.

Called under the customer's lock (lock 1, `portal.payments.locks`) by the ledger, in the
transaction that records the payment, so the plan and the ledger never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from portal.audit.actors import Actor
from portal.audit.services import record_event
from portal.errors import DomainError
from portal.extensions import db
from portal.money import Money
from portal.payments.models import Checkout, Payment, SavedCard
from portal.plans import services
from portal.plans.models import (
    AttemptStatus,
    InstallmentAttempt,
    InstallmentStatus,
    PaymentPlan,
    PlanInstallment,
    PlanStatus,
)


class InstallmentNotPayable(DomainError):
    message = _l("This payment of your plan is already paid, or the plan is no longer active.")


def checkout_installment(checkout: Checkout) -> PlanInstallment | None:
    """The installment a checkout pays; None for an ordinary payment."""
    if checkout.plan_installment_id is None:
        return None
    return db.session.get(PlanInstallment, checkout.plan_installment_id)


def installment_owed(installment: PlanInstallment) -> Money:
    """What may be charged for `installment` now: its unpaid part while its plan is active
    and it is scheduled, at most what the plan's invoices still owe through it
    (`services.plan_still_owed`); zero otherwise (minor units of the plan's currency)."""
    plan = installment.plan
    if plan.status != PlanStatus.ACTIVE or installment.status != InstallmentStatus.SCHEDULED:
        return Money.zero(plan.currency)
    if _autopay_in_flight(installment):
        return Money.zero(plan.currency)  # autopay is charging it now: never twice
    # Never more than the plan's invoices still owe through it (a credit note since).
    return min(installment.due, services.plan_still_owed(plan))


def _autopay_in_flight(installment: PlanInstallment) -> bool:
    """An off-session charge of this installment is under way (plans-autopay)."""
    return (
        db.session.scalar(
            select(InstallmentAttempt.id)
            .where(
                InstallmentAttempt.installment_id == installment.id,
                InstallmentAttempt.status == AttemptStatus.PROCESSING,
            )
            .limit(1)
        )
        is not None
    )


def checkout_in_flight(installment: PlanInstallment) -> Checkout | None:
    """A card payment of this installment by the customer that is being charged now
    (processing, or waiting for the bank's check): autopay must not charge it meanwhile."""
    return db.session.scalar(
        select(Checkout)
        .where(
            Checkout.plan_installment_id == installment.id,
            Checkout.status.in_(["processing", "requires_action"]),
        )
        .limit(1)
    )


class InstallmentNotNext(InstallmentNotPayable):
    message = _l("A plan is paid in order: please pay the next payment shown on your plan first.")


def payable_installment(plan: PaymentPlan, number: int) -> PlanInstallment:
    """Installment `number` of `plan` (0: the down payment) if something may be paid on it
    now: it is the first one still scheduled (money received goes to the installments in
    order, `services.record_installment_payment`). InstallmentNotPayable otherwise
    (InstallmentNotNext when an earlier one is still to pay)."""
    installment = next((i for i in plan.installments if i.number == number), None)
    if installment is None or not installment_owed(installment).is_positive:
        raise InstallmentNotPayable()
    first = next(i for i in plan.installments if i.status == InstallmentStatus.SCHEDULED)
    if first.id != installment.id:
        raise InstallmentNotNext()
    return installment


def plan_allocation(
    installment: PlanInstallment, amount: Money
) -> tuple[list[tuple[int, Money]], Money]:
    """Where `amount`, received for `installment`, goes: (invoice id, amount) pairs on the
    plan's invoices (`services.plan_allocation`: oldest due first, each up to what the
    plan still covers on it), and what none of them takes (`unapplied`)."""
    parts = services.plan_allocation(installment.plan, amount)
    applied = Money.sum((part for _invoice, part in parts), amount.currency)
    return [(invoice.id, part) for invoice, part in parts], amount - applied


def installment_paid_by(payment: Payment) -> PlanInstallment | None:
    """The installment a card payment was taken for: by the customer through a checkout
    for the installment, or by autopay (an attempt with the payment's PaymentIntent).
    None for any other payment (ordinary checkouts, imported bank payments), which a plan
    never counted (`services.record_installment_payment` is called for these two only)."""
    if payment.reference is None:
        return None
    installment_id = db.session.scalar(
        select(Checkout.plan_installment_id).where(
            Checkout.payment_intent_id == payment.reference,
            Checkout.plan_installment_id.is_not(None),
        )
    )
    if installment_id is None:
        installment_id = db.session.scalar(
            select(InstallmentAttempt.installment_id).where(
                InstallmentAttempt.payment_intent_id == payment.reference
            )
        )
    return db.session.get(PlanInstallment, installment_id) if installment_id else None


def take_back_from_plan(
    payment: Payment,
    parts: Sequence[tuple[int, Money]],
    *,
    actor: Actor,
    now: datetime,
) -> None:
    """A refund of `payment` took `parts` (invoice id, amount) back from its invoices: if
    the payment paid a plan's installment, the plan gives it back too
    (`services.take_back_installment_payment`). Called by the ledger under the customer's
    lock, in the transaction that records the refund."""
    installment = installment_paid_by(payment)
    if installment is not None and parts:
        services.take_back_installment_payment(installment.plan, parts, actor=actor, now=now)


def apply_to_plan(
    installment: PlanInstallment,
    allocations: Sequence[tuple[int, Money]],
    *,
    actor: Actor,
    now: datetime,
) -> None:
    """Record on the plan what the ledger put on its invoices for `installment`
    (`services.record_installment_payment`: the invoices' `paid_minor`, then the
    installments in number order; the plan completes when all are paid)."""
    plan = installment.plan
    applied = Money.sum((amount for _, amount in allocations), plan.currency)
    if applied.is_positive:
        services.record_installment_payment(plan, applied, actor=actor, now=now)


def open_checkout_for(installment: PlanInstallment, owed: Money) -> Checkout | None:
    """An open checkout already started for this installment at `owed`, what it asks now
    (`installment_owed`, which the caller has just read: a second press of "Pay" reuses
    the checkout rather than opening another)."""
    return db.session.scalar(
        select(Checkout)
        .where(
            Checkout.plan_installment_id == installment.id,
            Checkout.status == "open",
            Checkout.amount_minor == owed.minor,
        )
        .order_by(Checkout.id.desc())
        .limit(1)
    )


def use_card_for_plan(plan: PaymentPlan, card: SavedCard, *, actor: Actor, now: datetime) -> None:
    """The plan's installments are charged to `card` (the customer's saved card) from now
    on: autopay on. Audited (`plan.card_changed`)."""
    previous = plan.saved_card_id
    plan.saved_card_id = card.id
    plan.autopay = True
    plan.updated_at = now
    record_event(
        "plan.card_changed",
        actor=actor,
        now=now,
        customer_id=plan.customer_id,
        subject=plan,
        data={"brand": card.brand, "last4": card.last4, "had_card": previous is not None},
    )
    db.session.flush()
