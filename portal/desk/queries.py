"""What the specialist's desk reads: the customer search and a customer's overview."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select, union

from portal.customers.models import Customer
from portal.extensions import db
from portal.invoices.models import Invoice
from portal.invoices.queries import AccountSummary, InvoiceBalance, invoice_balances_for, summarize
from portal.money import Money
from portal.notifications.models import OutboxMessage
from portal.payments.models import Payment, SavedCard
from portal.payments.queries import saved_card_for
from portal.promises.models import Promise
from portal.promises.queries import open_promises_for

SEARCH_PAGE_SIZE = 25
QUERY_MAX_LENGTH = 100


def _like_prefix(text: str) -> str:
    """`text` lowered, LIKE's wildcards escaped (with `\\`), then `%`: a prefix pattern."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


@dataclass(frozen=True)
class SearchPage:
    query: str
    customers: list[Customer]
    page: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.page > 1


def search_customers(query: str, *, page: int = 1, per_page: int = SEARCH_PAGE_SIZE) -> SearchPage:
    """Customers whose account number, name, email or one of whose invoice numbers
    starts with `query`, case-insensitively; by name, one page.

    Each branch of the UNION is `lower(column) LIKE 'prefix%'`, which the expression
    indexes of `portal.desk.models` answer on PostgreSQL (an index range scan each);
    an OR across the four would not use them as well."""
    query = query.strip()[:QUERY_MAX_LENGTH]
    page = max(1, page)
    if not query:
        return SearchPage(query, [], page, False)
    pattern = _like_prefix(query)
    matching = union(
        select(Customer.id).where(func.lower(Customer.account_number).like(pattern, escape="\\")),
        select(Customer.id).where(func.lower(Customer.name).like(pattern, escape="\\")),
        select(Customer.id).where(func.lower(Customer.email).like(pattern, escape="\\")),
        select(Invoice.customer_id).where(func.lower(Invoice.number).like(pattern, escape="\\")),
    ).subquery()
    customers = list(
        db.session.scalars(
            select(Customer)
            .where(Customer.id.in_(select(matching.c[0])))
            .order_by(Customer.name, Customer.id)
            .limit(per_page + 1)
            .offset((page - 1) * per_page)
        )
    )
    return SearchPage(query, customers[:per_page], page, len(customers) > per_page)


def get_customer(account_number: str) -> Customer | None:
    return db.session.scalar(
        select(Customer).where(Customer.account_number == account_number.strip())
    )


# Aging buckets of one customer's open balance, in days past due (the reports use the
# same edges: current, 1-30, 31-60, 61-90, 91-120, over 120).
AGING_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("current", 0, 0),
    ("1-30", 1, 30),
    ("31-60", 31, 60),
    ("61-90", 61, 90),
    ("91-120", 91, 120),
    ("120+", 121, None),
)


def aging_of(balances: Sequence[InvoiceBalance], currency: str) -> dict[str, Money]:
    """What is open in each bucket, by days past due as of the balances' today."""
    totals = {name: Money.zero(currency) for name, _, _ in AGING_BUCKETS}
    for balance in balances:
        if not balance.is_open or balance.invoice.currency != currency:
            continue
        days = balance.days_overdue
        for name, low, high in AGING_BUCKETS:
            if days >= low and (high is None or days <= high):
                totals[name] = totals[name] + balance.balance
                break
    return totals


@dataclass(frozen=True)
class CustomerOverview:
    customer: Customer
    balances: list[InvoiceBalance]
    summary: AccountSummary
    aging: dict[str, Money]
    saved_card: SavedCard | None
    open_promises: list[Promise]
    payments: list[Payment]


def customer_overview(customer: Customer, today: date) -> CustomerOverview:
    """The top of the customer page: balances, aging, saved card, open promises, and
    the payments (with their refunds) a specialist may refund. A fixed number of queries."""
    from sqlalchemy.orm import selectinload

    balances = invoice_balances_for(customer, today)
    payments = list(
        db.session.scalars(
            select(Payment)
            .where(Payment.customer_id == customer.id)
            .options(selectinload(Payment.refunds), selectinload(Payment.allocations))
            .order_by(Payment.paid_on.desc(), Payment.id.desc())
        )
    )
    return CustomerOverview(
        customer=customer,
        balances=balances,
        summary=summarize(balances, customer.currency),
        aging=aging_of(balances, customer.currency),
        saved_card=saved_card_for(customer),
        open_promises=open_promises_for(customer),
        payments=payments,
    )


@dataclass(frozen=True)
class OutboxPage:
    messages: list[OutboxMessage]
    page: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.page > 1


def outbox_page(
    *, customer_id: int | None = None, status: str | None = None, page: int = 1, per_page: int = 50
) -> OutboxPage:
    """Outbox messages, newest first, for one customer or all, optionally by status."""
    page = max(1, page)
    statement = select(OutboxMessage).order_by(OutboxMessage.id.desc())
    if customer_id is not None:
        statement = statement.where(OutboxMessage.customer_id == customer_id)
    if status:
        statement = statement.where(OutboxMessage.status == status)
    rows = list(db.session.scalars(statement.limit(per_page + 1).offset((page - 1) * per_page)))
    return OutboxPage(rows[:per_page], page, len(rows) > per_page)
