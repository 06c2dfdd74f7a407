"""Reads for card payments, always scoped to one customer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select
from sqlalchemy.orm import selectinload

from portal.access.sessions import run_read
from portal.customers.models import Customer
from portal.extensions import db
from portal.i18n import zone_or_default
from portal.invoices.balances import (
    InvoiceBalance,
    balance_columns,
    balance_from_amounts,
    balance_minor,
    days_overdue_of,
    invoices_with_balance,
    open_balance_of,
    payable_minor,
    status_of,
)
from portal.invoices.models import OPEN_INVOICE_STATUSES, Invoice
from portal.invoices.queries import invoice_balances_by_customer
from portal.money import Money
from portal.payments.models import (
    Checkout,
    CheckoutInvoice,
    Payment,
    PaymentAccount,
    PaymentAllocation,
    SavedCard,
)
from portal.payments.policy import OpenItem


@dataclass(frozen=True)
class PayableItem:
    """An invoice with something to pay now. `payable` is `InvoiceBalance.payable`:
    the balance less what disputes and plans hold, the one rule for what may be paid."""

    invoice: Invoice
    payable: Money
    balance: Money
    is_overdue: bool
    days_overdue: int

    @property
    def open_item(self) -> OpenItem:
        return OpenItem(self.invoice.id, self.invoice.due_date, self.invoice.number, self.payable)


def payable_items(customer: Customer, today: date) -> list[PayableItem]:
    """Every invoice of this customer with a payable amount, oldest due first (the order
    of `invoice_balances_for`). One statement, built once per process."""
    rows = db.session.execute(_customer_balances_statement(), {"customer_id": customer.id})
    return _payable(balance_from_amounts(invoice, amounts, today) for invoice, *amounts in rows)


class PayableNow(NamedTuple):
    """An invoice with something to pay now, as step 1 of paying shows it: plain values
    from one statement's row (the page reads ten of them per request, and making an
    `Invoice` and an `InvoiceBalance` of each cost more than the statement; a tuple is
    made in a third of a frozen dataclass's time).
    `payable_minor` (minor units of `currency`, > 0) is `InvoiceBalance.payable` by the
    same rule (`invoices.balances`); `days_overdue` is 0 when not yet due."""

    id: int
    number: str
    due_date: date
    currency: str
    payable_minor: int
    days_overdue: int

    @property
    def is_overdue(self) -> bool:
        return self.days_overdue > 0

    @property
    def payable(self) -> Money:
        return Money(self.payable_minor, self.currency)

    @property
    def open_item(self) -> OpenItem:
        return OpenItem(self.id, self.due_date, self.number, self.payable)


def payable_now(customer_id: int, now: datetime) -> list[PayableNow]:
    """What `payable_items` lists, for the pay page, as of `now` read as the customer's
    date (as `customers.queries.customer_today` does): oldest due first, no Customer
    loaded (its time zone comes with the rows)."""
    # Plain rows, read as the session lookup is (`sessions.run_read`): on PostgreSQL one
    # round trip in autocommit when the request has not begun a transaction.
    rows = run_read(_customer_rows_statement(), {"customer_id": customer_id})
    if not rows:
        return []
    today = now.astimezone(zone_or_default(rows[0][-1])).date()
    items = []
    for invoice_id, number, due, currency, total, voided_at, *amounts, _zone in rows:
        allocated, refunded, credited, held, planned = map(int, amounts)
        is_void = voided_at is not None
        net_paid = allocated - refunded
        balance = balance_minor(int(total), net_paid, credited)
        if status_of(balance, net_paid, credited, is_void=is_void) not in OPEN_INVOICE_STATUSES:
            continue
        payable = payable_minor(balance, held, planned, is_void=is_void)
        if payable > 0:
            days = days_overdue_of(due, today, is_open=True)
            items.append(PayableNow(invoice_id, number, due, currency, payable, days))
    return items


@cache
def _customer_rows_statement() -> Any:
    """The pay page's statement: the customer's open invoices (oldest due first), each
    with `balance_columns()` and the customer's time zone last; its one parameter is
    `customer_id`.

    The balance subqueries run once per invoice: the invoices are read with them in
    `balances.invoices_with_balance` (a subquery PostgreSQL runs as written: merged into
    this statement, they would run again in the filter), and the open-balance filter
    (`balances.open_balance_of`) reads its columns."""
    invoices = Invoice.__table__
    read = invoices_with_balance(
        (
            invoices.c.id,
            invoices.c.number,
            invoices.c.due_date,
            invoices.c.currency,
            invoices.c.total_minor,
            invoices.c.voided_at,
        ),
        invoices.c.customer_id == bindparam("customer_id"),
        invoices.c.voided_at.is_(None),
    )
    return (
        select(*read.c)
        # Open invoices only (`InvoiceBalance.is_open`, said in SQL by balances): a
        # paid invoice is never payable, and the page need not build its balance.
        .where(open_balance_of(read.c.total_minor, read.c.a, read.c.r, read.c.c) > 0)
        .order_by(read.c.due_date, read.c.number)
    )


@cache
def _customer_balances_statement() -> Any:
    return (
        select(Invoice, *balance_columns())
        .where(Invoice.customer_id == bindparam("customer_id"))
        .order_by(Invoice.due_date, Invoice.number)
    )


def _payable(balances: Iterable[InvoiceBalance]) -> list[PayableItem]:
    return [
        PayableItem(b.invoice, b.payable, b.balance, b.is_overdue, b.days_overdue)
        for b in balances
        if b.is_open and b.payable.is_positive
    ]


def payable_items_by_customer(
    today_by_customer: Mapping[int, date],
) -> dict[int, list[PayableItem]]:
    """`payable_items` of several customers (each with their own today), in one query."""
    return {
        customer_id: _payable(balances)
        for customer_id, balances in invoice_balances_by_customer(today_by_customer).items()
    }


def get_checkout_for(customer: Customer, checkout_id: int) -> Checkout | None:
    """The checkout if it is this customer's; None for anyone else's."""
    return db.session.scalar(
        select(Checkout)
        .where(Checkout.id == checkout_id, Checkout.customer_id == customer.id)
        .options(selectinload(Checkout.invoices).selectinload(CheckoutInvoice.invoice))
    )


def account_for(customer_id: int) -> PaymentAccount | None:
    return db.session.scalar(
        select(PaymentAccount).where(PaymentAccount.customer_id == customer_id)
    )


def saved_card_for(customer: Customer) -> SavedCard | None:
    return saved_card_for_id(customer.id)


def saved_card_for_id(customer_id: int) -> SavedCard | None:
    return db.session.scalar(select(SavedCard).where(SavedCard.customer_id == customer_id))


def saved_cards_by_customer(customer_ids: Sequence[int]) -> dict[int, SavedCard]:
    cards = db.session.scalars(select(SavedCard).where(SavedCard.customer_id.in_(customer_ids)))
    return {card.customer_id: card for card in cards}


def payment_by_reference(reference: str) -> Payment | None:
    return db.session.scalar(select(Payment).where(Payment.reference == reference))


def payment_references_of(checkout_ids: Sequence[int]) -> set[str]:
    """The PaymentIntent ids already recorded for these checkouts."""
    return set(
        db.session.scalars(select(Payment.reference).where(Payment.checkout_id.in_(checkout_ids)))
    )


def get_payment_for(customer: Customer, payment_id: int) -> Payment | None:
    """A card payment of this customer, with its allocations; None for anyone else's."""
    return db.session.scalar(
        select(Payment)
        .where(Payment.id == payment_id, Payment.customer_id == customer.id)
        .options(selectinload(Payment.allocations).selectinload(PaymentAllocation.invoice))
    )


def in_flight_checkout(customer_id: int) -> Checkout | None:
    return db.session.scalar(
        select(Checkout)
        .where(Checkout.in_flight_customer_id == customer_id)
        .execution_options(populate_existing=True)
    )


def payment_history_for(customer: Customer) -> list[Payment]:
    """Every payment of this customer, newest first, with what each paid (allocations and
    their invoices) and gave back (refunds) loaded: three statements, however many
    payments and invoices the customer has (an allocation's invoice comes joined to it)."""
    return list(
        db.session.scalars(
            select(Payment)
            .where(Payment.customer_id == customer.id)
            .order_by(Payment.paid_on.desc(), Payment.id.desc())
            .options(
                selectinload(Payment.allocations).joinedload(
                    PaymentAllocation.invoice, innerjoin=True
                ),
                selectinload(Payment.refunds),
            )
        )
    )
