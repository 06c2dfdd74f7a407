"""The ledger: card payments recorded once, and refunds that reopen what they paid.

Money is recorded here only on Stripe's word (the synchronous answer, a webhook event,
or a retrieve), once per PaymentIntent: the `payments.reference` column is unique and
`Ledger.record` first looks for the row. A refund takes back from the invoices a
payment paid, latest due first, after the money no invoice owed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import insert

from portal.audit.actors import Actor
from portal.audit.models import AuditEvent
from portal.audit.services import audit_row, record_event
from portal.customers.models import Customer
from portal.customers.queries import customer_today
from portal.extensions import db
from portal.money import Money
from portal.notifications.models import OutboxMessage
from portal.notifications.services import deferred_email_row, renders_later
from portal.payments.checkouts import current_gateway, customer_actor, move_checkout
from portal.payments.deferred import wake_deferred_events
from portal.payments.errors import (
    RefundAboveRemaining,
    RefundAmountNotPositive,
    RefundNotByCard,
    RefundRefused,
    decline_message,
)
from portal.payments.gateway import ChargeRefunds, GatewayError, IntentResult, RefundResult
from portal.payments.locks import lock_account
from portal.payments.models import (
    Checkout,
    CheckoutStatus,
    Payment,
    PaymentAllocation,
    PaymentSource,
    Refund,
    RefundAllocation,
    SavedCard,
)
from portal.payments.policy import Applied, Overpayment, allocate_received, take_back
from portal.payments.queries import (
    PayableItem,
    get_payment_for,
    payable_items,
    payable_items_by_customer,
    payment_by_reference,
    payment_references_of,
    saved_card_for_id,
    saved_cards_by_customer,
)
from portal.plans.payments import (
    apply_to_plan,
    checkout_installment,
    plan_allocation,
    take_back_from_plan,
)

log = logging.getLogger(__name__)


# --- the ledger -------------------------------------------------------------------------
@dataclass
class _Recorded:
    payment: dict[str, Any]  # the payments row
    customer: Customer
    checkout_id: int
    allocations: list[tuple[int, Money]]
    unapplied: Money
    actor: Actor


class Ledger:
    """Payments recorded in one transaction, their rows written together by `write`.

    One payment (a checkout, a return page) or a batch of webhook events go through the
    same code. For a batch, `prefetch` reads in three queries what each payment needs,
    and `write` inserts the payments, their allocations, audit rows, receipt links and
    receipts with one statement per table; receipts are rendered when sent.
    """

    def __init__(self, *, now: datetime) -> None:
        self.now = now
        self._payable: dict[int, list[PayableItem]] = {}
        self._references: set[str] = set()
        self._prefetched: set[int] = set()  # checkouts whose recorded references are known
        self._saved: dict[int, SavedCard | None] = {}
        self._recorded: list[_Recorded] = []

    def prefetch(self, checkouts: Sequence[Checkout]) -> None:
        if not checkouts:
            return
        ids = [c.id for c in checkouts]
        self._references |= payment_references_of(ids)
        self._prefetched.update(ids)
        customers = {c.customer_id: c.customer for c in checkouts}
        today = {cid: customer_today(customer, self.now) for cid, customer in customers.items()}
        self._payable |= {cid: [] for cid in customers} | payable_items_by_customer(today)
        keeping = [c.customer_id for c in checkouts if c.save_card]
        if keeping:
            saved = saved_cards_by_customer(keeping)
            self._saved |= {cid: saved.get(cid) for cid in keeping}

    def _is_recorded(self, checkout: Checkout, reference: str) -> bool:
        if reference in self._references:
            return True
        if checkout.id in self._prefetched:
            return False
        return payment_by_reference(reference) is not None

    def _payable_items(self, customer: Customer) -> list[PayableItem]:
        if customer.id not in self._payable:
            self._payable[customer.id] = payable_items(customer, customer_today(customer, self.now))
        return self._payable[customer.id]

    def _saved_card(self, customer_id: int) -> SavedCard | None:
        if customer_id not in self._saved:
            self._saved[customer_id] = saved_card_for_id(customer_id)
        return self._saved[customer_id]

    def saved_payment_method(self, customer_id: int) -> str | None:
        """The card the customer has saved now (prefetched for the checkouts keeping one)."""
        saved = self._saved_card(customer_id)
        return saved.payment_method_id if saved is not None else None

    def record(self, checkout: Checkout, intent: IntentResult, *, actor: Actor) -> bool:
        """Record money Stripe took, once per PaymentIntent. True if this call recorded it.

        Every payment of a checkout is recorded here, which leaves the checkout
        SUCCEEDED in the same transaction; so a checkout in any other state has no
        payment yet, and only a SUCCEEDED one needs the look-up (the unique reference
        backs this).
        """
        if checkout.state == CheckoutStatus.SUCCEEDED and self._is_recorded(checkout, intent.id):
            return False
        customer = checkout.customer
        installment = checkout_installment(checkout)
        if installment is not None:
            # A plan's installment: the money goes to the plan's invoices and installments.
            allocations, unapplied = plan_allocation(installment, intent.amount)
            apply_to_plan(installment, allocations, actor=actor, now=self.now)
        else:
            allocations, unapplied = self._allocate(checkout, intent.amount)
        self._references.add(intent.id)
        payment = {
            "customer_id": customer.id,
            "reference": intent.id,
            "source": PaymentSource.CARD,
            "amount_minor": intent.amount.minor,
            "currency": intent.amount.currency,
            "paid_on": customer_today(customer, self.now),
            "created_at": self.now,
            "checkout_id": checkout.id,
        }
        if checkout.payment_intent_id is None:
            checkout.payment_intent_id = intent.id
        if checkout.state != CheckoutStatus.SUCCEEDED:
            move_checkout(checkout, CheckoutStatus.SUCCEEDED, actor=actor, now=self.now)
        if checkout.save_card and checkout.payment_method_id == intent.payment_method_id:
            self._keep_card(checkout)
        self._recorded.append(
            _Recorded(payment, customer, checkout.id, allocations, unapplied, actor)
        )
        return True

    def _allocate(self, checkout: Checkout, amount: Money) -> tuple[list[tuple[int, Money]], Money]:
        """The chosen invoices first, then the oldest due (`allocate_received`)."""
        customer = checkout.customer
        items = self._payable_items(customer)
        chosen_ids = {ci.invoice_id for ci in checkout.invoices}
        allocations, unapplied = allocate_received(
            amount,
            [i.open_item for i in items if i.invoice.id in chosen_ids],
            [i.open_item for i in items if i.invoice.id not in chosen_ids],
        )
        # A later payment in the same batch sees what this one took.
        taken = dict(allocations)
        self._payable[customer.id] = [
            replace(item, payable=item.payable - taken[item.invoice.id])
            if item.invoice.id in taken
            else item
            for item in items
            if taken.get(item.invoice.id) != item.payable
        ]
        return allocations, unapplied

    def _keep_card(self, checkout: Checkout) -> None:
        """The customer's saved card becomes the one just used (one per customer)."""
        saved = self._saved_card(checkout.customer_id)
        if saved is not None and saved.payment_method_id == checkout.payment_method_id:
            return
        if saved is None:
            saved = SavedCard(customer_id=checkout.customer_id)
            db.session.add(saved)
            self._saved[checkout.customer_id] = saved
        saved.payment_method_id = str(checkout.payment_method_id)
        saved.brand = checkout.card_brand or "card"
        saved.last4 = checkout.card_last4 or ""
        saved.exp_month, saved.exp_year = checkout.card_exp_month, checkout.card_exp_year
        saved.saved_at = self.now
        record_event(
            "card.saved",
            actor=customer_actor(checkout.customer_id),
            now=self.now,
            customer_id=checkout.customer_id,
            data={"brand": checkout.card_brand, "last4": checkout.card_last4},
        )

    def write(self) -> None:
        """Insert what `record` recorded: payments, allocations, audit rows, receipts."""
        recorded, self._recorded = self._recorded, []
        if not recorded:
            return
        now = self.now
        db.session.flush()  # the checkouts' moves, which the payments rows reference
        payment_ids = db.session.scalars(
            insert(Payment).returning(Payment.id, sort_by_parameter_order=True),
            [entry.payment for entry in recorded],
        ).all()
        allocations = [
            {"payment_id": payment_id, "invoice_id": invoice_id, "amount_minor": amount.minor}
            for entry, payment_id in zip(recorded, payment_ids, strict=True)
            for invoice_id, amount in entry.allocations
        ]
        if allocations:
            db.session.execute(insert(PaymentAllocation), allocations)
        audits: list[dict[str, Any]] = []
        receipts = []
        for entry, payment_id in zip(recorded, payment_ids, strict=True):
            audits += self._audit_rows(entry, payment_id)
            # Its portal link is issued when it is sent: none waits in the outbox.
            receipts.append(
                deferred_email_row(
                    entry.customer,
                    kind="receipt",
                    template="receipt",
                    context={"payment_id": payment_id},
                    now=now,
                    dedupe_key=f"receipt:{payment_id}",
                    with_portal_link=True,
                )
            )
        db.session.execute(insert(AuditEvent), audits)
        db.session.execute(insert(OutboxMessage), receipts)
        # Stripe's events about these payments that came first (a refund, say) wait no more.
        wake_deferred_events([entry.payment["reference"] for entry in recorded])

    def _audit_rows(self, entry: _Recorded, payment_id: int) -> list[dict[str, Any]]:
        payment = entry.payment
        rows = [
            audit_row(
                "payment.received",
                actor=entry.actor,
                now=self.now,
                customer_id=entry.customer.id,
                subject=("payments", payment_id),
                data={
                    "reference": payment["reference"],
                    "amount_minor": payment["amount_minor"],
                    "currency": payment["currency"],
                    "checkout_id": entry.checkout_id,
                    "allocations": {str(i): m.minor for i, m in entry.allocations},
                },
            )
        ]
        if entry.unapplied.is_positive:
            log.warning(
                "payment %s: %s received that no invoice owes",
                payment["reference"],
                entry.unapplied,
            )
            rows.append(
                audit_row(
                    "payment.unapplied",
                    actor=entry.actor,
                    now=self.now,
                    customer_id=entry.customer.id,
                    subject=("payments", payment_id),
                    data={
                        "amount_minor": entry.unapplied.minor,
                        "currency": entry.unapplied.currency,
                    },
                )
            )
        return rows


@renders_later("receipt")
def _receipt_context(customer: Customer, context: Mapping[str, Any]) -> dict[str, Any]:
    """What the receipt email shows, read when it is sent (`Ledger.write` queues it)."""
    payment = get_payment_for(customer, context["payment_id"])
    if payment is None:
        raise LookupError(f"payment {context['payment_id']} is not this customer's")
    return {"payment": payment, "checkout": payment.checkout}


# --- refunds ----------------------------------------------------------------------------
def refund_payment(
    payment: Payment,
    amount: Money | None,
    *,
    actor: Actor,
    now: datetime,
    reason: str = "",
) -> Refund:
    """Give back all or part of a card payment; the invoices it paid reopen, latest due first."""
    if payment.source != PaymentSource.CARD:
        raise RefundNotByCard()
    gateway = current_gateway()
    lock_account(payment.customer_id)
    db.session.refresh(payment)
    amount = payment.amount - payment.refunded if amount is None else amount
    if not amount.is_positive:
        raise RefundAmountNotPositive()
    try:
        parts = _refund_parts(payment, amount)
    except Overpayment:
        raise RefundAboveRemaining() from None
    try:
        result = gateway.refund(
            payment_intent_id=payment.reference,
            amount=amount,
            idempotency_key=f"refund-{payment.id}-{len(payment.refunds) + 1}-{amount.minor}",
        )
    except GatewayError as error:
        raise RefundRefused(decline_message(error.code)) from error
    return _record_refund(
        payment, amount, parts, reference=result.id, actor=actor, reason=reason, now=now
    )


def record_stripe_refunds(payment: Payment, state: ChargeRefunds, *, now: datetime) -> bool:
    """Bring the ledger up to the refunds Stripe reports on the payment's charge (made in
    Stripe's dashboard, say). True if anything was recorded.

    The caller holds the customer's lock: `refund_payment` holds it across its own call
    to Stripe, so a refund made here is in the ledger before its event is applied.
    Refunds the event lists are recorded by their ids; without a list (newer API
    versions) what the ledger lacks of the charge's refunded total is recorded as one.
    """
    db.session.refresh(payment)
    known = {refund.reference for refund in payment.refunds}
    missing = [r for r in state.refunds if r.status == "succeeded" and r.id not in known]
    listed = Money.sum((r.amount for r in missing), payment.currency)
    rest = state.refunded - payment.refunded - listed
    if rest.is_positive:
        reference = f"{state.charge_id}:refunded-{state.refunded.minor}"
        missing.append(RefundResult(reference, "succeeded", rest))
    if not missing:
        return False
    for refund in missing:
        parts = _refund_parts(payment, refund.amount)  # Overpayment: not ours to guess
        _record_refund(
            payment,
            refund.amount,
            parts,
            reference=refund.id,
            actor=Actor.stripe(),
            reason="refunded at Stripe",
            now=now,
        )
    return True


def _refund_parts(payment: Payment, amount: Money) -> list[tuple[int, Money]]:
    """What a refund of `amount` takes back from each invoice; Overpayment if more than
    is left to refund."""
    if not amount.is_positive or amount > payment.amount - payment.refunded:
        raise Overpayment(f"{amount} is more than is left to refund")
    from_invoices = _refund_from_invoices(payment, amount)
    return take_back(from_invoices, _net_applied(payment)) if from_invoices else []


def _record_refund(
    payment: Payment,
    amount: Money,
    parts: list[tuple[int, Money]],
    *,
    reference: str,
    actor: Actor,
    reason: str,
    now: datetime,
) -> Refund:
    refund = Refund(
        payment=payment,
        reference=reference,
        amount_minor=amount.minor,
        currency=amount.currency,
        refunded_on=customer_today(payment.customer, now),
        reason=reason,
        actor=str(actor),
        created_at=now,
        allocations=[RefundAllocation(invoice_id=i, amount_minor=m.minor) for i, m in parts],
    )
    db.session.add(refund)
    db.session.flush()
    take_back_from_plan(payment, parts, actor=actor, now=now)
    record_event(
        "payment.refunded",
        actor=actor,
        now=now,
        customer_id=payment.customer_id,
        subject=refund,
        data={
            "payment": payment.reference,
            "refund": reference,
            "amount_minor": amount.minor,
            "currency": amount.currency,
            "reason": reason,
        },
    )
    return refund


def _refunded_from_invoices(payment: Payment) -> dict[int, int]:
    taken: dict[int, int] = {}
    for refund in payment.refunds:
        for part in refund.allocations:
            taken[part.invoice_id] = taken.get(part.invoice_id, 0) + part.amount_minor
    return taken


def _net_applied(payment: Payment) -> list[Applied]:
    """What the payment still covers on each invoice, after earlier refunds."""
    taken = _refunded_from_invoices(payment)
    return [
        Applied(
            a.invoice_id,
            a.invoice.due_date,
            a.invoice.number,
            a.amount - Money(taken.get(a.invoice_id, 0), payment.currency),
        )
        for a in payment.allocations
    ]


def _refund_from_invoices(payment: Payment, amount: Money) -> Money:
    """The part of a refund that reopens invoices. Money no invoice owed (the customer
    paid twice) goes back first, so a duplicate's refund reopens nothing."""
    taken = sum(_refunded_from_invoices(payment).values())
    unapplied_left = payment.unapplied.minor - (payment.refunded.minor - taken)
    return amount - Money(min(amount.minor, max(0, unapplied_left)), amount.currency)
