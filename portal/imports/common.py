"""What the importers of every kind share: the report, batched lookups, open balances."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TypeVar

from sqlalchemy import select

from portal.audit.actors import Actor
from portal.audit.services import record_event
from portal.customers.models import Customer
from portal.extensions import db
from portal.imports.records import RowError, RowReader
from portal.invoices.balances import open_balance_column
from portal.invoices.models import Invoice
from portal.money import Money
from portal.payments.policy import OpenItem, Overpayment, allocate

CHUNK = 500  # keys per IN (...) lookup: well under SQLite's bound-parameter limit

K = TypeVar("K")


@dataclass
class ImportReport:
    """What an import did (or, in a dry run, would do); `warnings` did not stop it."""

    kind: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    dry_run: bool = False
    details: dict[str, int] = field(default_factory=dict)
    warnings: list[RowError] = field(default_factory=list)
    dialect: str | None = None  # how a CSV file was read, e.g. "separator ';', decimal comma"

    def summary(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged"

    def counts(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            **self.details,
        }


def chunks(keys: Iterable[K], size: int = CHUNK) -> Iterator[list[K]]:
    batch: list[K] = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def finish(report: ImportReport, *, now: datetime, actor: Actor) -> ImportReport:
    """The import's own audit row, then make the session see the bulk writes."""
    record_event(f"import.{report.kind}", actor=str(actor), now=now, data=report.counts())
    db.session.flush()
    # The bulk statements bypass the identity map; objects loaded before must reload.
    db.session.expire_all()
    return report


@dataclass(frozen=True, slots=True)
class CustomerKey:
    id: int
    currency: str


def customer_keys(accounts: Iterable[str]) -> dict[str, CustomerKey]:
    found: dict[str, CustomerKey] = {}
    for batch in chunks(sorted(a for a in accounts if a)):
        rows = db.session.execute(
            select(Customer.account_number, Customer.id, Customer.currency).where(
                Customer.account_number.in_(batch)
            )
        )
        for account, customer_id, currency in rows:
            found[account] = CustomerKey(customer_id, currency)
    return found


def find_customer(
    reader: RowReader, customers: dict[str, CustomerKey], account: str, currency: str | None
) -> CustomerKey | None:
    """The record's customer; an error if unknown or if `currency` is not theirs."""
    customer = customers.get(account) if account else None
    if account and customer is None:
        reader.error(f"unknown account {account!r}")
    if customer and currency and currency != customer.currency:
        reader.error(
            f"currency {currency} does not match account {account!r}'s currency {customer.currency}"
        )
    return customer


def settled_by_invoice(invoice_ids: Sequence[int]) -> dict[int, int]:
    """Net payments plus credits per invoice: total − the open balance of
    `portal.invoices.balances` (the one balance rule)."""
    rows = db.session.execute(
        select(Invoice.id, Invoice.total_minor - open_balance_column()).where(
            Invoice.id.in_(invoice_ids)
        )
    )
    return {invoice_id: int(settled) for invoice_id, settled in rows}


@dataclass(slots=True)
class OpenInvoice:
    id: int
    number: str
    due_date: date
    balance_minor: int
    is_void: bool


class OpenBalances:
    """Open balances of the records' customers, reduced as the records' payments and
    credit notes are applied, so that two records cannot both settle the same amount."""

    def __init__(self, by_customer: dict[int, list[OpenInvoice]]) -> None:
        self.by_customer = by_customer
        self.by_number = {
            (customer_id, invoice.number): invoice
            for customer_id, invoices in by_customer.items()
            for invoice in invoices
        }

    @classmethod
    def load(cls, customer_ids: Iterable[int]) -> OpenBalances:
        by_customer: dict[int, list[OpenInvoice]] = defaultdict(list)
        for batch in chunks(sorted(customer_ids)):
            invoices = db.session.execute(
                select(
                    Invoice.customer_id,
                    Invoice.id,
                    Invoice.number,
                    Invoice.due_date,
                    Invoice.total_minor,
                    Invoice.voided_at,
                ).where(Invoice.customer_id.in_(batch))
            ).all()
            ids = [row.id for row in invoices]
            settled: dict[int, int] = {}
            for id_batch in chunks(ids):
                settled.update(settled_by_invoice(id_batch))
            for customer_id, id_, number, due_date, total, voided_at in invoices:
                by_customer[customer_id].append(
                    OpenInvoice(
                        id_, number, due_date, total - settled.get(id_, 0), voided_at is not None
                    )
                )
        return cls(by_customer)

    def find(self, customer_id: int, number: str) -> OpenInvoice | None:
        return self.by_number.get((customer_id, number))

    def invoice_of(
        self, reader: RowReader, account: str, customer_id: int, invoice_number: str
    ) -> OpenInvoice | None:
        """The customer's invoice `invoice_number`, not void; None (and an error) if not."""
        invoice = self.find(customer_id, invoice_number)
        if invoice is None:
            owner = db.session.scalar(
                select(Invoice.customer_id).where(Invoice.number == invoice_number)
            )
            reader.error(
                f"invoice {invoice_number!r} belongs to another account"
                if owner is not None
                else f"unknown invoice {invoice_number!r} for account {account!r}"
            )
            return None
        if invoice.is_void:
            reader.error(f"invoice {invoice_number!r} is void")
            return None
        return invoice

    def apply(
        self,
        reader: RowReader,
        account: str,
        customer_id: int,
        amount: Money,
        invoice_number: str | None,
        *,
        what: str = "payment",
    ) -> list[tuple[int, Money]] | None:
        """Allocate `amount` and reduce the balances; None (and an error) if it cannot be."""
        if invoice_number:
            invoice = self.invoice_of(reader, account, customer_id, invoice_number)
            if invoice is None:
                return None
            candidates = [invoice]
        else:
            candidates = [i for i in self.by_customer.get(customer_id, []) if not i.is_void]
        items = [
            OpenItem(i.id, i.due_date, i.number, Money(max(i.balance_minor, 0), amount.currency))
            for i in candidates
        ]
        try:
            allocations = allocate(amount, items)
        except Overpayment:
            open_total = Money(sum(item.balance.minor for item in items), amount.currency)
            where = (
                f"on invoice {invoice_number!r}"
                if invoice_number
                else f"on account {account!r} (all its invoices)"
            )
            reader.error(f"{what} of {amount} is more than the {open_total} still open {where}")
            return None
        balances = {invoice.id: invoice for invoice in candidates}
        for invoice_id, applied in allocations:
            balances[invoice_id].balance_minor -= applied.minor
        return allocations
