"""Reads of notes and promises, scoped to one customer or to the staff queues."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import selectinload

from portal.customers.models import Customer
from portal.extensions import db
from portal.invoices.queries import _sum_minor
from portal.payments.models import Payment, PaymentAllocation, Refund, RefundAllocation
from portal.promises.models import Promise, PromiseInvoice, PromiseStatus


def open_promises_for(customer: Customer) -> list[Promise]:
    """This customer's open promises, soonest first, with their invoices (two queries)."""
    return list(
        db.session.scalars(
            select(Promise)
            .where(Promise.customer_id == customer.id, Promise.status == PromiseStatus.OPEN)
            .options(selectinload(Promise.invoices).selectinload(PromiseInvoice.invoice))
            .order_by(Promise.promised_on, Promise.id)
        )
    )


def get_promise_for(customer: Customer, promise_id: int) -> Promise | None:
    """The promise if it is this customer's; None for anyone else's."""
    return db.session.scalar(
        select(Promise).where(Promise.id == promise_id, Promise.customer_id == customer.id)
    )


def paused_invoice_ids() -> Select[tuple[int]]:
    """The invoices an open promise covers: their reminders wait (a subquery, for the
    reminder scheduler). A promise is open until the jobs runner decides it, the day
    after its date, so a broken promise's invoices are dunned again from that day."""
    return (
        select(PromiseInvoice.invoice_id)
        .join(Promise, Promise.id == PromiseInvoice.promise_id)
        .where(Promise.status == PromiseStatus.OPEN)
    )


def open_promises_due(limit: int = 500) -> list[Promise]:
    """Open promises whose date has passed somewhere (the caller checks each customer's
    today), oldest first, with their customers."""
    return list(
        db.session.scalars(
            select(Promise)
            .where(Promise.status == PromiseStatus.OPEN)
            .options(selectinload(Promise.customer))
            .order_by(Promise.promised_on, Promise.id)
            .limit(limit)
        )
    )


def covered_amounts(promise_ids: Sequence[int]) -> dict[int, int]:
    """Per promise, in minor units: what payments made between the day it was made and
    its date (both inclusive) applied to its invoices, less what refunds dated by then
    took back of those payments from them. Two queries, whatever the number of promises."""
    if not promise_ids:
        return {}
    window = and_(Payment.paid_on >= Promise.made_on, Payment.paid_on <= Promise.promised_on)
    paid_rows = db.session.execute(
        select(PromiseInvoice.promise_id, _sum_minor(PaymentAllocation.amount_minor))
        .join(Promise, Promise.id == PromiseInvoice.promise_id)
        .join(PaymentAllocation, PaymentAllocation.invoice_id == PromiseInvoice.invoice_id)
        .join(Payment, Payment.id == PaymentAllocation.payment_id)
        .where(PromiseInvoice.promise_id.in_(promise_ids), window)
        .group_by(PromiseInvoice.promise_id)
    ).all()
    refunded_rows = db.session.execute(
        select(PromiseInvoice.promise_id, _sum_minor(RefundAllocation.amount_minor))
        .join(Promise, Promise.id == PromiseInvoice.promise_id)
        .join(RefundAllocation, RefundAllocation.invoice_id == PromiseInvoice.invoice_id)
        .join(Refund, Refund.id == RefundAllocation.refund_id)
        .join(Payment, Payment.id == Refund.payment_id)
        .where(
            PromiseInvoice.promise_id.in_(promise_ids),
            window,
            Refund.refunded_on <= Promise.promised_on,
        )
        .group_by(PromiseInvoice.promise_id)
    ).all()
    covered = {promise_id: int(total) for promise_id, total in paid_rows}
    for promise_id, total in refunded_rows:
        covered[promise_id] = covered.get(promise_id, 0) - int(total)
    return covered


def follow_up_queue(limit: int = 100) -> list[Promise]:
    """Broken promises nobody has followed up yet, oldest decision first."""
    return list(
        db.session.scalars(
            select(Promise)
            .where(Promise.status == PromiseStatus.BROKEN, Promise.followed_up_at.is_(None))
            .options(selectinload(Promise.customer))
            .order_by(Promise.resolved_at, Promise.id)
            .limit(limit)
        )
    )


def follow_up_count() -> int:
    return int(
        db.session.scalar(
            select(func.count())
            .select_from(Promise)
            .where(Promise.status == PromiseStatus.BROKEN, Promise.followed_up_at.is_(None))
        )
        or 0
    )
