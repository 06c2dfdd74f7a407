"""Importing credit notes from the ERP: each is recorded once by its reference and reduces
the balance of the invoice it names (never below zero)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

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
from portal.invoices.models import CreditNote, Invoice
from portal.money import Money

REQUIRED = (
    "account_number",
    "credit_note_reference",
    "invoice_number",
    "issued_on",
    "amount",
    "currency",
)
OPTIONAL = ("reason",)
NUMERIC = ("amount",)


@dataclass(frozen=True, slots=True)
class _NewCredit:
    reference: str
    customer_id: int
    invoice_id: int
    amount: Money
    issued_on: date
    reason: str


@dataclass(frozen=True, slots=True)
class _ExistingCredit:
    customer_id: int
    invoice_number: str
    amount_minor: int
    currency: str
    issued_on: date
    reason: str


@dataclass
class CreditNoteChanges:
    """What `apply` writes: checked, nothing left to refuse."""

    report: ImportReport
    new: list[_NewCredit] = field(default_factory=list)


def validate(records: Sequence[Record]) -> CreditNoteChanges:
    """Check every record against the others and the ledger; ImportFailed lists all."""
    errors: list[RowError] = []
    customers = customer_keys({record.values.get("account_number", "") for record in records})
    balances = OpenBalances.load({key.id for key in customers.values()})
    existing = _existing_credits(
        {record.values.get("credit_note_reference", "") for record in records}
    )
    seen: dict[str, int] = {}
    changes = CreditNoteChanges(ImportReport("credit-notes", rows=len(records)))
    for record in records:
        reader = RowReader(record, errors)
        account = reader.key("account_number", max_length=64)
        reference = reader.key("credit_note_reference", max_length=64)
        invoice_number = reader.key("invoice_number", max_length=64)
        issued_on = reader.parse("issued_on", parse_date)
        amount_text = reader.parse("amount", parse_positive_amount)
        currency = reader.parse("currency", parse_currency)
        reason = reader.text("reason", max_length=500)

        customer = find_customer(reader, customers, account, currency)
        amount = None
        if amount_text is not None and currency:
            amount = Money.from_decimal(amount_text, currency)
            if not amount.is_positive:
                reader.error(f"amount {amount_text} rounds to zero in {currency}")
            elif amount.minor > MAX_DB_INT:
                reader.error(f"amount {amount_text} is too large")
        if reference in seen:
            reader.error(f"credit note {reference!r} already appears on line {seen[reference]}")
        elif reference:
            seen[reference] = record.line
        if not reader.ok or customer is None or amount is None or issued_on is None:
            continue

        previous = existing.get(reference)
        if previous is not None:
            if previous == _ExistingCredit(
                customer.id, invoice_number, amount.minor, amount.currency, issued_on, reason
            ):
                changes.report.unchanged += 1
            else:
                reader.error(
                    f"credit note {reference!r} was already imported with different details; "
                    "credit notes cannot be changed (import a new one instead)"
                )
            continue
        applied = balances.apply(
            reader, account, customer.id, amount, invoice_number, what="credit note"
        )
        if applied is not None:
            ((invoice_id, _),) = applied
            changes.new.append(
                _NewCredit(reference, customer.id, invoice_id, amount, issued_on, reason)
            )
    if errors:
        raise ImportFailed(errors)
    changes.report.created = len(changes.new)
    return changes


def apply(changes: CreditNoteChanges, *, now: datetime, actor: Actor) -> ImportReport:
    """Record the new credit notes and one audit row each."""
    credits = changes.new
    if credits:
        ids = list(
            db.session.execute(
                insert(CreditNote).returning(CreditNote.id, sort_by_parameter_order=True),
                [
                    {
                        "reference": c.reference,
                        "invoice_id": c.invoice_id,
                        "amount_minor": c.amount.minor,
                        "currency": c.amount.currency,
                        "issued_on": c.issued_on,
                        "reason": c.reason,
                        "created_at": now,
                    }
                    for c in credits
                ],
            ).scalars()
        )
        db.session.execute(
            insert(AuditEvent),
            [
                audit_row(
                    "credit_note.imported",
                    actor=str(actor),
                    now=now,
                    customer_id=credit.customer_id,
                    subject=(CreditNote.__tablename__, credit_id),
                    data={
                        "reference": credit.reference,
                        "invoice_id": credit.invoice_id,
                        "amount_minor": credit.amount.minor,
                        "currency": credit.amount.currency,
                        "issued_on": credit.issued_on.isoformat(),
                    },
                )
                for credit_id, credit in zip(ids, credits, strict=True)
            ],
        )
    return finish(changes.report, now=now, actor=actor)


def _existing_credits(references: Iterable[str]) -> dict[str, _ExistingCredit]:
    found: dict[str, _ExistingCredit] = {}
    for batch in chunks(sorted(r for r in references if r)):
        rows = db.session.execute(
            select(
                CreditNote.reference,
                Invoice.customer_id,
                Invoice.number,
                CreditNote.amount_minor,
                CreditNote.currency,
                CreditNote.issued_on,
                CreditNote.reason,
            )
            .join(Invoice, CreditNote.invoice_id == Invoice.id)
            .where(CreditNote.reference.in_(batch))
        )
        for reference, customer_id, number, amount_minor, currency, issued_on, reason in rows:
            found[reference] = _ExistingCredit(
                customer_id, number, amount_minor, currency, issued_on, reason
            )
    return found
