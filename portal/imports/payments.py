"""Importing offline (ERP) payments: each is recorded once by its reference and allocated
to the invoice it names, or to the customer's oldest due invoices first."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import insert, select

from portal.audit.actors import Actor
from portal.audit.models import AuditEvent
from portal.audit.services import audit_row
from portal.extensions import db
from portal.imports.common import (
    ImportReport,
    OpenBalances,
    chunks,
    customer_keys,
    find_customer,
    finish,
)
from portal.imports.parsing import MAX_DB_INT, parse_currency, parse_date, parse_positive_amount
from portal.imports.records import ImportFailed, Record, RowError, RowReader
from portal.money import Money
from portal.payments.models import Payment, PaymentAllocation, PaymentSource

REQUIRED = ("account_number", "payment_reference", "paid_on", "amount", "currency")
OPTIONAL = ("invoice_number",)
NUMERIC = ("amount",)


@dataclass(frozen=True, slots=True)
class _ExistingPayment:
    customer_id: int
    source: str
    amount_minor: int
    currency: str
    paid_on: date
    invoice_ids: frozenset[int]


@dataclass(frozen=True, slots=True)
class _NewPayment:
    reference: str
    customer_id: int
    amount: Money
    paid_on: date
    allocations: list[tuple[int, Money]]


@dataclass
class PaymentChanges:
    """What `apply` writes: checked, nothing left to refuse."""

    report: ImportReport
    new: list[_NewPayment] = field(default_factory=list)


def validate(records: Sequence[Record]) -> PaymentChanges:
    """Check every record against the others and the ledger; ImportFailed lists all."""
    errors: list[RowError] = []
    customers = customer_keys({record.values.get("account_number", "") for record in records})
    balances = OpenBalances.load({key.id for key in customers.values()})
    existing = _existing_payments(
        {record.values.get("payment_reference", "") for record in records}
    )
    seen: dict[str, int] = {}
    changes = PaymentChanges(ImportReport("payments", rows=len(records)))
    for record in records:
        reader = RowReader(record, errors)
        account = reader.key("account_number", max_length=64)
        reference = reader.key("payment_reference", max_length=128)
        paid_on = reader.parse("paid_on", parse_date)
        amount_text = reader.parse("amount", parse_positive_amount)
        currency = reader.parse("currency", parse_currency)
        invoice_number = reader.text("invoice_number", max_length=64) or None

        customer = find_customer(reader, customers, account, currency)
        amount = None
        if amount_text is not None and currency:
            amount = Money.from_decimal(amount_text, currency)
            if not amount.is_positive:
                reader.error(f"amount {amount_text} rounds to zero in {currency}")
            elif amount.minor > MAX_DB_INT:
                reader.error(f"amount {amount_text} is too large")
        if reference in seen:
            reader.error(f"payment {reference!r} already appears on line {seen[reference]}")
        elif reference:
            seen[reference] = record.line
        if not reader.ok or customer is None or amount is None or paid_on is None:
            continue

        previous = existing.get(reference)
        if previous is not None:
            if _same_payment(previous, customer.id, amount, paid_on, invoice_number, balances):
                changes.report.unchanged += 1
            else:
                reader.error(
                    f"payment {reference!r} was already imported with different details; "
                    "payments cannot be changed (import a new payment or a refund instead)"
                )
            continue
        allocations = balances.apply(reader, account, customer.id, amount, invoice_number)
        if allocations is not None:
            changes.new.append(_NewPayment(reference, customer.id, amount, paid_on, allocations))
    if errors:
        raise ImportFailed(errors)
    changes.report.created = len(changes.new)
    changes.report.details["allocations"] = sum(len(p.allocations) for p in changes.new)
    return changes


def apply(changes: PaymentChanges, *, now: datetime, actor: Actor) -> ImportReport:
    """Record the new payments, their allocations and one audit row each."""
    payments = changes.new
    if payments:
        ids = list(
            db.session.execute(
                insert(Payment).returning(Payment.id, sort_by_parameter_order=True),
                [
                    {
                        "customer_id": p.customer_id,
                        "reference": p.reference,
                        "source": PaymentSource.OFFLINE.value,
                        "amount_minor": p.amount.minor,
                        "currency": p.amount.currency,
                        "paid_on": p.paid_on,
                        "created_at": now,
                    }
                    for p in payments
                ],
            ).scalars()
        )
        allocations = [
            {"payment_id": payment_id, "invoice_id": invoice_id, "amount_minor": applied.minor}
            for payment_id, payment in zip(ids, payments, strict=True)
            for invoice_id, applied in payment.allocations
        ]
        db.session.execute(insert(PaymentAllocation), allocations)
        db.session.execute(
            insert(AuditEvent),
            [
                audit_row(
                    "payment.imported",
                    actor=str(actor),
                    now=now,
                    customer_id=payment.customer_id,
                    subject=(Payment.__tablename__, payment_id),
                    data={
                        "reference": payment.reference,
                        "amount_minor": payment.amount.minor,
                        "currency": payment.amount.currency,
                        "paid_on": payment.paid_on.isoformat(),
                        "invoice_ids": [invoice_id for invoice_id, _ in payment.allocations],
                    },
                )
                for payment_id, payment in zip(ids, payments, strict=True)
            ],
        )
    return finish(changes.report, now=now, actor=actor)


def _existing_payments(references: Iterable[str]) -> dict[str, _ExistingPayment]:
    rows: list[Any] = []
    allocated: dict[int, set[int]] = defaultdict(set)
    for batch in chunks(sorted(r for r in references if r)):
        found = db.session.execute(
            select(
                Payment.id,
                Payment.reference,
                Payment.customer_id,
                Payment.source,
                Payment.amount_minor,
                Payment.currency,
                Payment.paid_on,
            ).where(Payment.reference.in_(batch))
        ).all()
        rows.extend(found)
        if not found:
            continue
        for payment_id, invoice_id in db.session.execute(
            select(PaymentAllocation.payment_id, PaymentAllocation.invoice_id).where(
                PaymentAllocation.payment_id.in_([row.id for row in found])
            )
        ):
            allocated[payment_id].add(invoice_id)
    return {
        row.reference: _ExistingPayment(
            row.customer_id,
            row.source,
            row.amount_minor,
            row.currency,
            row.paid_on,
            frozenset(allocated[row.id]),
        )
        for row in rows
    }


def _same_payment(
    previous: _ExistingPayment,
    customer_id: int,
    amount: Money,
    paid_on: date,
    invoice_number: str | None,
    ledger: OpenBalances,
) -> bool:
    same = (
        previous.source == PaymentSource.OFFLINE
        and previous.customer_id == customer_id
        and previous.amount_minor == amount.minor
        and previous.currency == amount.currency
        and previous.paid_on == paid_on
    )
    if same and invoice_number:
        target = ledger.find(customer_id, invoice_number)
        same = target is not None and previous.invoice_ids == {target.id}
    return same
