"""Reads of invoices and balances, always scoped to one customer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cached_property

from sqlalchemy import ColumnElement, cast, func, select
from sqlalchemy.orm import contains_eager, selectinload

from portal.customers.models import Customer
from portal.db import MinorUnits
from portal.extensions import db
from portal.invoices.models import CreditNote, Invoice, InvoiceStatus
from portal.money import Money
from portal.payments.models import Payment, PaymentAllocation, RefundAllocation
from portal.payments.policy import is_small_balance


def _sum_minor(column: ColumnElement[int]) -> ColumnElement[int]:
    """SUM of a money column as an integer: PostgreSQL sums BIGINT into NUMERIC, which
    the driver would hand back as a Decimal."""
    return cast(func.coalesce(func.sum(column), 0), MinorUnits)


def net_paid_subquery() -> ColumnElement[int]:
    """Payments applied to the invoice, less what refunds took back from it."""
    paid = (
        select(_sum_minor(PaymentAllocation.amount_minor))
        .where(PaymentAllocation.invoice_id == Invoice.id)
        .correlate(Invoice)
        .scalar_subquery()
    )
    refunded = (
        select(_sum_minor(RefundAllocation.amount_minor))
        .where(RefundAllocation.invoice_id == Invoice.id)
        .correlate(Invoice)
        .scalar_subquery()
    )
    return paid - refunded


def credited_subquery() -> ColumnElement[int]:
    return (
        select(_sum_minor(CreditNote.amount_minor))
        .where(CreditNote.invoice_id == Invoice.id)
        .correlate(Invoice)
        .scalar_subquery()
    )


@dataclass(frozen=True)
class InvoiceBalance:
    """An invoice with what was paid and credited against it, as of `today`.

    A snapshot: `balance`, `status` and `days_overdue` are worked out once (a page reads
    each several times per row)."""

    invoice: Invoice
    paid: Money
    credited: Money
    today: date

    @cached_property
    def balance(self) -> Money:
        return self.invoice.total - self.paid - self.credited

    @property
    def held(self) -> Money:
        """What open disputes and active plans keep out of collection (none yet)."""
        return Money.zero(self.invoice.currency)

    @property
    def payable(self) -> Money:
        """What may be paid, reminded or planned now: the balance less what is held."""
        remaining = self.balance - self.held
        return remaining if remaining.is_positive else Money.zero(self.invoice.currency)

    @cached_property
    def status(self) -> InvoiceStatus:
        if self.invoice.voided_at is not None:
            return InvoiceStatus.VOID
        if not self.balance.is_positive:
            return InvoiceStatus.PAID
        if self.paid.is_positive or self.credited.is_positive:
            return InvoiceStatus.PARTIALLY_PAID
        return InvoiceStatus.OPEN

    @property
    def is_open(self) -> bool:
        return self.status in (InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID)

    @cached_property
    def days_overdue(self) -> int:
        if not self.is_open:
            return 0
        return max(0, (self.today - self.invoice.due_date).days)

    @property
    def is_overdue(self) -> bool:
        return self.days_overdue > 0


@dataclass(frozen=True)
class AccountSummary:
    total_due: Money
    overdue: Money
    next_due_date: date | None
    open_count: int
    overdue_count: int


def invoice_balances_for(customer: Customer, today: date) -> list[InvoiceBalance]:
    """Every invoice of this customer with its balance, oldest due first. One query."""
    return invoice_balances_by_customer({customer.id: today}).get(customer.id, [])


def invoice_balances_by_customer(
    today_by_customer: Mapping[int, date],
) -> dict[int, list[InvoiceBalance]]:
    """`invoice_balances_for` for several customers (each with their own today), one query."""
    rows = db.session.execute(
        select(Invoice, net_paid_subquery(), credited_subquery())
        .where(Invoice.customer_id.in_(list(today_by_customer)))
        .order_by(Invoice.customer_id, Invoice.due_date, Invoice.number)
    ).all()
    balances: dict[int, list[InvoiceBalance]] = {}
    for invoice, paid, credited in rows:
        balances.setdefault(invoice.customer_id, []).append(
            InvoiceBalance(
                invoice,
                Money(paid, invoice.currency),
                Money(credited, invoice.currency),
                today_by_customer[invoice.customer_id],
            )
        )
    return balances


@dataclass(frozen=True)
class PayableInvoice:
    invoice: Invoice
    payable: Money


def payable_invoices() -> list[PayableInvoice]:
    """Every invoice, of every customer, with something payable; for the jobs runner.

    The payable rule is `InvoiceBalance.payable`, so what it leaves out (disputed or
    planned amounts) is never dunned; nor is a remainder no card can pay
    (`payments.policy.is_small_balance`: 0.49 USD, 0.005 KWD).
    """
    allocated, credited = net_paid_subquery(), credited_subquery()
    rows = db.session.execute(
        select(Invoice, allocated, credited)
        .where(Invoice.voided_at.is_(None), Invoice.total_minor - allocated - credited > 0)
        .options(selectinload(Invoice.customer))
        .order_by(Invoice.customer_id, Invoice.due_date, Invoice.id)
    ).all()
    result = []
    for invoice, paid, credit in rows:
        balance = InvoiceBalance(
            invoice, Money(paid, invoice.currency), Money(credit, invoice.currency), date.min
        )
        if balance.payable.is_positive and not is_small_balance(balance.payable):
            result.append(PayableInvoice(invoice, balance.payable))
    return result


def get_invoice_for(customer: Customer, number: str) -> Invoice | None:
    """The invoice if it is this customer's; None for anyone else's (the view answers 404)."""
    return db.session.scalar(
        select(Invoice)
        .where(Invoice.customer_id == customer.id, Invoice.number == number)
        .options(selectinload(Invoice.lines))
    )


def invoice_balance(invoice: Invoice, today: date) -> InvoiceBalance:
    paid, credited = db.session.execute(
        select(net_paid_subquery(), credited_subquery())
        .select_from(Invoice)
        .where(Invoice.id == invoice.id)
    ).one()
    return InvoiceBalance(
        invoice, Money(paid, invoice.currency), Money(credited, invoice.currency), today
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


def small_balance_candidates(currencies: Sequence[str]) -> list[InvoiceBalance]:
    """Open invoices in these currencies with a positive balance, for the write-off job
    (it decides, with `is_small_balance` and the tolerance, which to write off)."""
    if not currencies:
        return []
    allocated, credited = net_paid_subquery(), credited_subquery()
    rows = db.session.execute(
        select(Invoice, allocated, credited)
        .where(
            Invoice.voided_at.is_(None),
            Invoice.currency.in_(list(currencies)),
            Invoice.total_minor - allocated - credited > 0,
        )
        .order_by(Invoice.id)
    ).all()
    return [
        InvoiceBalance(
            invoice, Money(paid, invoice.currency), Money(credit, invoice.currency), date.min
        )
        for invoice, paid, credit in rows
    ]


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
