"""Changes to invoices' balances that the portal makes itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from portal.audit.actors import Actor
from portal.audit.services import record_event
from portal.extensions import db
from portal.invoices.models import CreditNote, CreditNoteKind, Invoice
from portal.invoices.queries import invoice_balance, small_balance_candidates
from portal.money import Money
from portal.payments.policy import is_small_balance


@dataclass
class WriteOffReport:
    written_off: list[CreditNote] = field(default_factory=list)

    def summary(self) -> str:
        count = len(self.written_off)
        return f"{count} small balance{'s' if count != 1 else ''} written off"


def write_off_small_balances(
    tolerances: Mapping[str, Money], *, now: datetime, actor: Actor | None = None
) -> WriteOffReport:
    """Write off every open remainder that no card can pay and that is within the
    creditor's tolerance for its currency (SMALL_BALANCE_TOLERANCE), one credit note of
    kind `small_balance_write_off` and one audit row each. Flushes, never commits.

    Rule (DESIGN, "Data and money"): a remainder is small when one card charge cannot
    take even part of it (`payments.policy.is_small_balance`: 0.49 USD, 0.005 KWD); a
    larger remainder is left to be paid, however small the tolerance says it may be.
    Only a balance with nothing held (disputes, plans) is written off, whole.
    """
    report = WriteOffReport()
    for candidate in small_balance_candidates(sorted(tolerances)):
        invoice = candidate.invoice
        # PostgreSQL: lock the invoice, as a payment's allocation does (its trigger takes
        # FOR NO KEY UPDATE), then read the balance again: a payment that lands meanwhile
        # is either seen here or waits for this write-off.
        if db.engine.dialect.name == "postgresql":
            db.session.execute(select(Invoice.id).where(Invoice.id == invoice.id).with_for_update())
        balance = invoice_balance(invoice, candidate.today)
        remainder = balance.balance
        if (
            not is_small_balance(remainder)
            or balance.held.is_positive
            or remainder > tolerances[invoice.currency]
        ):
            continue
        note = CreditNote(
            reference=_write_off_reference(invoice),
            invoice_id=invoice.id,
            amount_minor=remainder.minor,
            currency=remainder.currency,
            kind=CreditNoteKind.SMALL_BALANCE_WRITE_OFF,
            issued_on=now.date(),
            reason="Small balance written off: no card can pay it",
            created_at=now,
        )
        db.session.add(note)
        db.session.flush()
        record_event(
            "credit_note.small_balance_written_off",
            actor=actor or Actor.system(),
            now=now,
            customer_id=invoice.customer_id,
            subject=note,
            data={
                "invoice": invoice.number,
                "amount_minor": remainder.minor,
                "currency": remainder.currency,
                "tolerance_minor": tolerances[invoice.currency].minor,
            },
        )
        report.written_off.append(note)
    db.session.flush()
    return report


def _write_off_reference(invoice: Invoice) -> str:
    earlier = db.session.scalar(
        select(func.count())
        .select_from(CreditNote)
        .where(
            CreditNote.invoice_id == invoice.id,
            CreditNote.kind == CreditNoteKind.SMALL_BALANCE_WRITE_OFF,
        )
    )
    return f"WO-{invoice.id}-{(earlier or 0) + 1}"
