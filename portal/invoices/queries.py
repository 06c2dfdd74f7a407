"""Reads of invoices, always scoped to one customer.

Balances live in `portal.invoices.balances` (the one balance rule); the names below are
re-exported from there so that older imports keep working.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import contains_eager, selectinload

from portal.customers.models import Customer
from portal.extensions import db
from portal.invoices.balances import (
    InvoiceBalance,
    LineBalance,
    PayableInvoice,
    _sum_minor,
    credited_subquery,
    held_subquery,
    invoice_balance,
    invoice_balances_by_customer,
    invoice_balances_for,
    line_balances,
    net_paid_subquery,
    open_balance_column,
    payable_invoices,
    planned_subquery,
    small_balance_candidates,
)
from portal.invoices.models import CreditNote, Invoice
from portal.money import Money
from portal.payments.models import Payment, PaymentAllocation

__all__ = [
    "AccountSummary",
    "InvoiceBalance",
    "LineBalance",
    "PayableInvoice",
    "_sum_minor",
    "allocations_for_invoice",
    "credit_notes_for",
    "credited_subquery",
    "credits_for_invoice",
    "get_invoice_for",
    "held_subquery",
    "invoice_balance",
    "invoice_balances_by_customer",
    "invoice_balances_for",
    "line_balances",
    "net_paid_subquery",
    "open_balance_column",
    "payable_invoices",
    "planned_subquery",
    "recent_payments_for",
    "small_balance_candidates",
    "summarize",
]


@dataclass(frozen=True)
class AccountSummary:
    total_due: Money
    overdue: Money
    next_due_date: date | None
    open_count: int
    overdue_count: int
    # Of `total_due`: what may be paid now, and what open disputes hold (not payable).
    payable: Money | None = None
    held: Money | None = None


def get_invoice_for(customer: Customer, number: str) -> Invoice | None:
    """The invoice if it is this customer's; None for anyone else's (the view answers 404)."""
    return db.session.scalar(
        select(Invoice)
        .where(Invoice.customer_id == customer.id, Invoice.number == number)
        .options(selectinload(Invoice.lines))
    )


def summarize(balances: Sequence[InvoiceBalance], currency: str) -> AccountSummary:
    open_ = [b for b in balances if b.is_open]
    overdue = [b for b in open_ if b.is_overdue]
    upcoming = [b.invoice.due_date for b in open_ if not b.is_overdue]
    return AccountSummary(
        total_due=Money.sum((b.balance for b in open_), currency),
        overdue=Money.sum((b.balance for b in overdue), currency),
        next_due_date=min(upcoming) if upcoming else None,
        open_count=len(open_),
        overdue_count=len(overdue),
        payable=Money.sum((b.payable for b in open_), currency),
        held=Money.sum((b.held for b in open_), currency),
    )


def recent_payments_for(customer: Customer, limit: int) -> list[Payment]:
    """The customer's latest payments (their date, reference and amount), newest first."""
    return list(
        db.session.scalars(
            select(Payment)
            .where(Payment.customer_id == customer.id)
            .order_by(Payment.paid_on.desc(), Payment.id.desc())
            .limit(limit)
        )
    )


def allocations_for_invoice(invoice: Invoice) -> list[PaymentAllocation]:
    return list(
        db.session.scalars(
            select(PaymentAllocation)
            .join(Payment)
            .where(PaymentAllocation.invoice_id == invoice.id)
            .options(selectinload(PaymentAllocation.payment))
            .order_by(Payment.paid_on, Payment.id)
        )
    )


def credits_for_invoice(invoice: Invoice) -> list[CreditNote]:
    return list(
        db.session.scalars(
            select(CreditNote)
            .where(CreditNote.invoice_id == invoice.id)
            .order_by(CreditNote.issued_on, CreditNote.id)
        )
    )


def credit_notes_for(customer: Customer) -> list[CreditNote]:
    """Every credit note on this customer's invoices, newest first, with its invoice."""
    return list(
        db.session.scalars(
            select(CreditNote)
            .join(Invoice, Invoice.id == CreditNote.invoice_id)
            .where(Invoice.customer_id == customer.id)
            .options(contains_eager(CreditNote.invoice))
            .order_by(CreditNote.issued_on.desc(), CreditNote.id.desc())
        )
    )
