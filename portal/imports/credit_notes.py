"""Importing credit notes from the ERP: each is recorded once by its reference and reduces
the balance of the invoice it names (never below zero)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import func, insert, select

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
from portal.imports.parsing import (
    MAX_DB_INT,
    parse_currency,
    parse_date,
    parse_line_number,
    parse_positive_amount,
)
from portal.imports.records import ImportFailed, Record, RowError, RowReader
from portal.invoices.models import CreditNote, Invoice, InvoiceLine
from portal.money import Money

REQUIRED = (
    "account_number",
    "credit_note_reference",
    "invoice_number",
    "issued_on",
    "amount",
    "currency",
)
OPTIONAL = ("reason", "line_number")
NUMERIC = ("amount",)


@dataclass(frozen=True, slots=True)
class _NewCredit:
    reference: str
    customer_id: int
    invoice_id: int
    amount: Money
    issued_on: date
    reason: str
    invoice_line_id: int | None = None


@dataclass(frozen=True, slots=True)
class _ExistingCredit:
    customer_id: int
    invoice_number: str
    amount_minor: int
    currency: str
    issued_on: date
    reason: str
    line_number: int | None = None


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
    named: list[tuple[int, _NewCredit, int]] = []  # (CSV line, credit, line number)
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
        line_number = reader.parse("line_number", parse_line_number, required=False)

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
                customer.id,
                invoice_number,
                amount.minor,
                amount.currency,
                issued_on,
                reason,
                line_number,
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
            credit = _NewCredit(reference, customer.id, invoice_id, amount, issued_on, reason)
            if line_number is not None:
                named.append((record.line, credit, line_number))
            else:
                changes.new.append(credit)
    changes.new.extend(_with_lines(named, invoice_number_of=seen_numbers(records), errors=errors))
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
                        "invoice_line_id": c.invoice_line_id,
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
                        "invoice_line_id": credit.invoice_line_id,
                    },
                )
                for credit_id, credit in zip(ids, credits, strict=True)
            ],
        )
    return finish(changes.report, now=now, actor=actor)


def seen_numbers(records: Sequence[Record]) -> dict[int, str]:
    """CSV line -> the invoice number it names (for messages about a named line)."""
    return {record.line: record.values.get("invoice_number", "").strip() for record in records}


def _with_lines(
    named: Sequence[tuple[int, _NewCredit, int]],
    *,
    invoice_number_of: dict[int, str],
    errors: list[RowError],
) -> list[_NewCredit]:
    """The credits that name a line, with its id: the line must be on the invoice, and the
    credits naming it (earlier ones and the file's) never exceed its amount less what
    open disputes hold on it (`portal.invoices.balances.line_balances` then counts them
    against that line; a held amount is credited when staff accept the dispute, so an
    ERP credit of it would credit the line twice)."""
    from portal.disputes.queries import open_disputes_of_lines
    from portal.invoices.balances import held_by_line

    if not named:
        return []
    invoice_ids = sorted({credit.invoice_id for _, credit, _ in named})
    lines: dict[tuple[int, int], tuple[int, int]] = {}  # (invoice, number) -> (id, left)
    held: dict[int, int] = {}  # invoice line id -> held by open disputes
    for invoice_id in {credit.invoice_id for _, credit, number in named}:
        held.update(held_by_line(invoice_id))
    holding = open_disputes_of_lines(sorted(held))
    for batch in chunks(invoice_ids):
        credited = (
            select(func.coalesce(func.sum(CreditNote.amount_minor), 0))
            .where(CreditNote.invoice_line_id == InvoiceLine.id)
            .correlate(InvoiceLine)
            .scalar_subquery()
        )
        rows = db.session.execute(
            select(
                InvoiceLine.invoice_id,
                InvoiceLine.line_number,
                InvoiceLine.id,
                InvoiceLine.amount_minor - credited,
            ).where(InvoiceLine.invoice_id.in_(batch))
        )
        for invoice_id, number, line_id, left in rows:
            lines[(invoice_id, number)] = (line_id, int(left) - held.get(line_id, 0))
    found = []
    for csv_line, credit, number in named:
        invoice = invoice_number_of.get(csv_line, "")
        line = lines.get((credit.invoice_id, number))
        if line is None:
            errors.append(RowError(csv_line, f"line {number} is not on invoice {invoice!r}"))
            continue
        line_id, left = line
        if credit.amount.minor > left:
            if line_id in holding:
                errors.append(
                    RowError(
                        csv_line,
                        f"credit note of {credit.amount} is more than the "
                        f"{Money(max(left, 0), credit.amount.currency)} not yet credited or "
                        f"disputed on line {number} of invoice {invoice!r} "
                        f"(dispute {holding[line_id]} is open)",
                    )
                )
                continue
            errors.append(
                RowError(
                    csv_line,
                    f"credit note of {credit.amount} is more than the "
                    f"{Money(max(left, 0), credit.amount.currency)} not yet credited on "
                    f"line {number} of invoice {invoice!r}",
                )
            )
            continue
        lines[(credit.invoice_id, number)] = (line_id, left - credit.amount.minor)
        found.append(
            _NewCredit(
                credit.reference,
                credit.customer_id,
                credit.invoice_id,
                credit.amount,
                credit.issued_on,
                credit.reason,
                line_id,
            )
        )
    return found


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
                InvoiceLine.line_number,
            )
            .join(Invoice, CreditNote.invoice_id == Invoice.id)
            .outerjoin(InvoiceLine, InvoiceLine.id == CreditNote.invoice_line_id)
            .where(CreditNote.reference.in_(batch))
        )
        for reference, customer_id, number, amount_minor, currency, issued_on, reason, line in rows:
            found[reference] = _ExistingCredit(
                customer_id, number, amount_minor, currency, issued_on, reason, line
            )
    return found
