"""Reads of disputes: scoped to one customer for their pages; the staff queue."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from portal.customers.models import Customer
from portal.disputes.models import (
    OPEN_STATUSES,
    Dispute,
    DisputeLine,
    DisputeMessage,
    DisputeReason,
    DisputeStatus,
)
from portal.extensions import db

_OPEN = sorted(str(status) for status in OPEN_STATUSES)


def _with_details() -> list[object]:
    return [
        selectinload(Dispute.invoice),
        selectinload(Dispute.lines).selectinload(DisputeLine.invoice_line),
    ]


def disputes_for(customer: Customer, *, open_only: bool = False) -> list[Dispute]:
    """This customer's disputes, newest first, with their invoice and lines (three queries)."""
    query = select(Dispute).where(Dispute.customer_id == customer.id)
    if open_only:
        query = query.where(Dispute.status.in_(_OPEN))
    return list(
        db.session.scalars(
            query.options(*_with_details()).order_by(Dispute.opened_at.desc(), Dispute.id.desc())  # type: ignore[arg-type]
        )
    )


def get_dispute_for(customer: Customer, dispute_id: int) -> Dispute | None:
    """The dispute if it is this customer's; None for anyone else's (the view answers 404).
    Loaded with its invoice, lines, thread and files."""
    return db.session.scalar(
        select(Dispute)
        .where(Dispute.id == dispute_id, Dispute.customer_id == customer.id)
        .options(
            *_with_details(),  # type: ignore[arg-type]
            selectinload(Dispute.messages).selectinload(DisputeMessage.files),
            selectinload(Dispute.files),
        )
    )


def get_dispute(dispute_id: int) -> Dispute | None:
    """Any dispute, for staff (the staff views check the role), with everything it shows."""
    return db.session.scalar(
        select(Dispute)
        .where(Dispute.id == dispute_id)
        .options(
            *_with_details(),  # type: ignore[arg-type]
            selectinload(Dispute.customer),
            selectinload(Dispute.messages).selectinload(DisputeMessage.files),
            selectinload(Dispute.files),
        )
    )


@dataclass(frozen=True)
class QueueFilters:
    """The staff queue's filters: a reason and a status (None: any reason; open ones,
    i.e. `open` and `waiting_on_customer`). Unknown values are ignored."""

    reason: str | None = None
    status: str | None = None


def dispute_queue(filters: QueueFilters | None = None, *, limit: int = 200) -> list[Dispute]:
    """Disputes for staff, oldest first (the queue), with customer, invoice and lines."""
    filters = filters or QueueFilters()
    query = select(Dispute)
    if filters.status in set(DisputeStatus):
        query = query.where(Dispute.status == filters.status)
    else:
        query = query.where(Dispute.status.in_(_OPEN))
    if filters.reason in set(DisputeReason):
        query = query.where(Dispute.reason == filters.reason)
    return list(
        db.session.scalars(
            query.options(*_with_details(), selectinload(Dispute.customer))  # type: ignore[arg-type]
            .order_by(Dispute.opened_at, Dispute.id)
            .limit(limit)
        )
    )


def open_dispute_count() -> int:
    """How many disputes wait for staff or a customer (the count on the staff home)."""
    return int(
        db.session.scalar(select(func.count(Dispute.id)).where(Dispute.status.in_(_OPEN))) or 0
    )


def open_disputes_of_lines(invoice_line_ids: Sequence[int]) -> dict[int, int]:
    """Invoice line id -> id of an open dispute holding it (for the import's refusal)."""
    found: dict[int, int] = {}
    ids = list(invoice_line_ids)
    for start in range(0, len(ids), 500):
        rows = db.session.execute(
            select(DisputeLine.invoice_line_id, func.min(Dispute.id))
            .join(Dispute, Dispute.id == DisputeLine.dispute_id)
            .where(
                DisputeLine.invoice_line_id.in_(ids[start : start + 500]),
                Dispute.status.in_(_OPEN),
            )
            .group_by(DisputeLine.invoice_line_id)
        )
        found.update({int(line_id): int(dispute_id) for line_id, dispute_id in rows})
    return found


def lines_with_records(invoice_line_ids: Sequence[int]) -> dict[int, str]:
    """Invoice line id -> what names it for good (a dispute, open or decided, or a credit
    note on that line): such a line cannot be removed by an import."""
    from portal.invoices.models import CreditNote

    found: dict[int, str] = {}
    ids = list(invoice_line_ids)
    for start in range(0, len(ids), 500):
        batch = ids[start : start + 500]
        for line_id, dispute_id in db.session.execute(
            select(DisputeLine.invoice_line_id, func.min(DisputeLine.dispute_id))
            .where(DisputeLine.invoice_line_id.in_(batch))
            .group_by(DisputeLine.invoice_line_id)
        ):
            found[int(line_id)] = f"dispute {dispute_id}"
        for credited_line, reference in db.session.execute(
            select(CreditNote.invoice_line_id, func.min(CreditNote.reference))
            .where(CreditNote.invoice_line_id.in_(batch))
            .group_by(CreditNote.invoice_line_id)
        ):
            if credited_line is not None:
                found.setdefault(int(credited_line), f"credit note {reference}")
    return found


def hold_windows(invoice_ids: Iterable[int]) -> dict[int, list[tuple[datetime, datetime]]]:
    """Per invoice, when decided disputes held part of it: (opened_at, resolved_at), UTC.

    The reminder scheduler skips a step whose date fell inside one (reminders resume from
    the decision, never retroactively). Open disputes are not listed: what they hold is
    simply not payable meanwhile."""
    windows: dict[int, list[tuple[datetime, datetime]]] = {}
    ids = list(invoice_ids)
    for start in range(0, len(ids), 500):
        rows = db.session.execute(
            select(Dispute.invoice_id, Dispute.opened_at, Dispute.resolved_at).where(
                Dispute.invoice_id.in_(ids[start : start + 500]),
                Dispute.resolved_at.is_not(None),
            )
        )
        for invoice_id, opened_at, resolved_at in rows:
            if resolved_at is not None:
                windows.setdefault(invoice_id, []).append((opened_at, resolved_at))
    return windows
