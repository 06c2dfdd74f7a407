"""Paying a plan by card through the pay flow: the down payment and installments by hand.

A plan's invoices are not payable outside the plan while it is active (`planned` in
`portal.invoices.balances`), so a checkout for a plan names the installment it pays
(`Checkout.plan_installment_id`, number 0 for the down payment) and the pay flow asks
this module, not `payable_items`:

* `installment_owed` is what the checkout may still charge: what the installment still
  asks for while the plan is active and the installment scheduled, else zero (the
  charge is then refused before Stripe is called, `AmountNoLongerPayable`).
* `plan_allocation` is where the money goes when Stripe took it: the plan's invoices,
  oldest due first, each up to what the plan still covers on it and what the invoice
  still owes; anything beyond comes back as unapplied (refunded by staff, as for any
  payment).
* `apply_to_plan` records it on the plan: `PlanInvoice.paid_minor` per invoice, and
  the installments from the one paid (then the later ones, in order) up to their
  amounts; the plan completes when every installment is paid.

Called under the customer's lock (lock 1, `portal.payments.locks`) by the ledger, in the
transaction that records the payment, so the plan and the ledger never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from portal.audit.actors import Actor
from portal.audit.services import record_event
from portal.errors import DomainError
from portal.extensions import db
from portal.invoices.balances import invoice_balance
from portal.money import Money
from portal.payments.models import Checkout, SavedCard
from portal.payments.policy import OpenItem, allocate_received
from portal.plans.models import (
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
    and it is scheduled; zero otherwise (minor units of the plan's currency)."""
    plan = installment.plan
    if plan.status != PlanStatus.ACTIVE or installment.status != InstallmentStatus.SCHEDULED:
        return Money.zero(plan.currency)
    return installment.due


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


def plan_items(plan: PaymentPlan, today: date) -> list[OpenItem]:
    """The plan's invoices as open items: each with what the plan still covers on it,
    never more than the invoice still owes (a credit note may have lowered it)."""
    items = []
    for covered in plan.invoices:
        owed = invoice_balance(covered.invoice, today).balance
        left = Money(covered.amount_minor - covered.paid_minor, plan.currency)
        items.append(
            OpenItem(
                covered.invoice_id,
                covered.invoice.due_date,
                covered.invoice.number,
                max(Money.zero(plan.currency), min(left, owed)),
            )
        )
    return items


def plan_allocation(
    installment: PlanInstallment, amount: Money, today: date
) -> tuple[list[tuple[int, Money]], Money]:
    """Where `amount`, received for `installment`, goes: (invoice id, amount) pairs on the
    plan's invoices, oldest due first, and what none of them owes (`unapplied`)."""
    return allocate_received(amount, plan_items(installment.plan, today), [])


def apply_to_plan(
    installment: PlanInstallment,
    allocations: Sequence[tuple[int, Money]],
    *,
    actor: Actor,
    now: datetime,
) -> None:
    """Record on the plan what a payment for `installment` put on its invoices: the
    invoices' `paid_minor`, then the installments (this one first, then the later ones)
    up to their amounts; the plan completes when nothing is left to pay. Audited."""
    plan = installment.plan
    applied = Money.sum((amount for _, amount in allocations), plan.currency)
    by_invoice = {covered.invoice_id: covered for covered in plan.invoices}
    for invoice_id, amount in allocations:
        covered = by_invoice[invoice_id]
        covered.paid_minor += amount.minor
    left = applied.minor
    order = [installment] + [
        i for i in plan.installments if i.id != installment.id and i.number > installment.number
    ]
    order += [i for i in plan.installments if i not in order]
    for each in order:
        if left <= 0:
            break
        if each.status != InstallmentStatus.SCHEDULED:
            continue
        take = min(left, each.amount_minor - each.paid_minor)
        each.paid_minor += take
        left -= take
        if each.paid_minor == each.amount_minor:
            each.status = InstallmentStatus.PAID
            each.paid_at = now
    record_event(
        "plan.installment_paid",
        actor=actor,
        now=now,
        customer_id=plan.customer_id,
        subject=plan,
        data={
            "installment": installment.number,
            "amount_minor": applied.minor,
            "currency": plan.currency,
            "allocations": {str(i): m.minor for i, m in allocations},
        },
    )
    if plan.status == PlanStatus.ACTIVE and all(
        i.status == InstallmentStatus.PAID for i in plan.installments
    ):
        _complete(plan, actor=actor, now=now)
    db.session.flush()


def _complete(plan: PaymentPlan, *, actor: Actor, now: datetime) -> None:
    """Every installment paid: the plan is completed (PLAN_TRANSITIONS: active -> completed)."""
    plan.status = PlanStatus.COMPLETED
    plan.ended_at = now
    plan.updated_at = now
    for covered in plan.invoices:
        covered.open_invoice_id = None
    record_event(
        "plan.completed",
        actor=actor,
        now=now,
        customer_id=plan.customer_id,
        subject=plan,
        data={"total_minor": plan.total_minor, "currency": plan.currency},
    )


def open_checkout_for(installment: PlanInstallment) -> Checkout | None:
    """An open checkout already started for this installment, at its current amount (a
    second press of "Pay" reuses it rather than opening another)."""
    return db.session.scalar(
        select(Checkout)
        .where(
            Checkout.plan_installment_id == installment.id,
            Checkout.status == "open",
            Checkout.amount_minor == installment.amount_minor - installment.paid_minor,
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
