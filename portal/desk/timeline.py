"""One customer's whole history, from every table that records something about them.

Each source is a function of the customer's id returning a SELECT of the same eight
columns (`COLUMNS`). The page is one statement: the sources' UNION ALL, sorted newest
first and cut to a page in SQL, so the number of statements never grows with the number
of events (and nothing is loaded per row). A capability that adds events (disputes,
plans) writes a source here and adds it to `SOURCES`, with the labels of its kinds in
`KIND_LABELS`; nothing else changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    Integer,
    Select,
    String,
    Text,
    bindparam,
    cast,
    func,
    literal,
    null,
    select,
    union_all,
)

from portal.audit.models import AuditEvent
from portal.db import MinorUnits
from portal.extensions import db
from portal.i18n import date_filter, money_filter
from portal.invoices.models import CreditNote, Invoice
from portal.money import Money
from portal.notifications.models import OUTBOX_STATUS_LABELS, OutboxMessage
from portal.payments.models import Payment, Refund
from portal.promises.models import (
    NOTE_KIND_LABELS,
    PROMISE_STATUS_LABELS,
    CustomerNote,
    Promise,
)

# Every source selects these, in this order.
COLUMNS = ("at", "kind", "subject_id", "reference", "amount_minor", "currency", "detail", "status")


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str  # a key of KIND_LABELS
    subject_id: int
    reference: str | None  # an invoice or payment number, an email's subject, who acted
    amount: Money | None
    detail: str | None  # an email's text as sent, a note, a refund's reason
    status: str | None

    @property
    def label(self) -> str:
        return str(KIND_LABELS.get(self.kind, self.kind))

    @property
    def status_label(self) -> str | None:
        """The status in words where it has a label (an email's, a promise's, a note's)."""
        if self.status is None:
            return None
        return str(STATUS_LABELS.get(self.status, self.status))


def _row(
    at: object,
    kind: str,
    subject_id: object,
    *,
    reference: object = None,
    amount: object = None,
    currency: object = None,
    detail: object = None,
    status: object = None,
) -> list[object]:
    """The eight columns, NULLs typed so that every dialect accepts the UNION."""
    return [
        at,
        literal(kind, String),
        subject_id,
        cast(reference, String) if reference is not None else cast(null(), String),
        amount if amount is not None else cast(null(), MinorUnits),
        currency if currency is not None else cast(null(), String),
        detail if detail is not None else cast(null(), Text),
        status if status is not None else cast(null(), String),
    ]


def _labelled(columns: list[object]) -> list[object]:
    return [column.label(name) for column, name in zip(columns, COLUMNS, strict=True)]  # type: ignore[attr-defined]


def invoices_imported(customer_id: int) -> Select[tuple[object, ...]]:
    return select(
        *_labelled(
            _row(
                Invoice.created_at,
                "invoice.imported",
                Invoice.id,
                reference=Invoice.number,
                amount=Invoice.total_minor,
                currency=Invoice.currency,
            )
        )
    ).where(Invoice.customer_id == customer_id)


def invoices_changed(customer_id: int) -> Select[tuple[object, ...]]:
    """Each re-import that changed an invoice (the importer's "invoice.changed" audit row,
    portal/imports/invoices.py `invoice_audit_data`): the new total, who imported it, and
    what changed (rendered by `describe_invoice_change`)."""
    data = AuditEvent.data
    return select(
        *_labelled(
            _row(
                AuditEvent.occurred_at,
                "invoice.changed",
                AuditEvent.id,
                reference=data["number"].as_string(),
                amount=cast(data["total_minor"].as_integer(), MinorUnits),
                currency=data["currency"].as_string(),
                detail=cast(data, Text),
                status=AuditEvent.actor,
            )
        )
    ).where(AuditEvent.customer_id == customer_id, AuditEvent.action == "invoice.changed")


def describe_invoice_change(data: dict[str, Any]) -> str:
    """ "Total was …; due date was … (now …); lines: 1 added, 0 removed, 2 changed", in
    the reader's language, from an "invoice.changed" audit row's data."""
    parts: list[str] = []
    currency = data.get("currency")
    before, after = data.get("total_before_minor"), data.get("total_minor")
    if currency and before is not None and before != after:
        parts.append(
            str(_("Total was %(amount)s", amount=money_filter(Money(int(before), currency))))
        )
    due_before, due = data.get("due_date_before"), data.get("due_date")
    if due_before and due and due_before != due:
        parts.append(
            str(
                _(
                    "Due date was %(before)s, now %(after)s",
                    before=date_filter(date.fromisoformat(due_before)),
                    after=date_filter(date.fromisoformat(due)),
                )
            )
        )
    added, removed, changed = (
        int(data.get(key) or 0) for key in ("lines_added", "lines_removed", "lines_changed")
    )
    if added or removed or changed:
        parts.append(
            str(
                _(
                    "Lines: %(added)d added, %(removed)d removed, %(changed)d changed",
                    added=added,
                    removed=removed,
                    changed=changed,
                )
            )
        )
    if not parts:  # only the issue date or a line's description changed in place
        parts.append(str(_("Invoice details changed")))
    return "; ".join(parts)


def _detail(kind: str, detail: str | None) -> str | None:
    if kind == "invoice.changed" and detail:
        try:
            data = json.loads(detail)
        except ValueError:
            return None
        return describe_invoice_change(data) if isinstance(data, dict) else None
    return detail


def emails_queued(customer_id: int) -> Select[tuple[object, ...]]:
    return select(
        *_labelled(
            _row(
                OutboxMessage.created_at,
                "email.queued",
                OutboxMessage.id,
                # An email rendered when sent has no subject until then: its kind instead.
                reference=func.coalesce(OutboxMessage.subject, OutboxMessage.kind),
                status=OutboxMessage.status,
            )
        )
    ).where(OutboxMessage.customer_id == customer_id)


def emails_sent(customer_id: int) -> Select[tuple[object, ...]]:
    """Each email delivered, with the text as it was sent (its link shown as a placeholder:
    the token itself is never stored)."""
    return select(
        *_labelled(
            _row(
                OutboxMessage.sent_at,
                "email.sent",
                OutboxMessage.id,
                reference=OutboxMessage.subject,
                detail=OutboxMessage.body_text,
                status=OutboxMessage.status,
            )
        )
    ).where(OutboxMessage.customer_id == customer_id, OutboxMessage.sent_at.is_not(None))


# Audit rows that are events of the account in their own right (links, opt-outs, staff
# actions on links); money and promises come from their own tables.
AUDITED_KINDS = (
    "link.issued",
    "link.opened",
    "link.revoked",
    "links.revoked_all",
    "email.opted_out",
    "email.opt_out_undone",
    "customer.locale_changed",
)


def audited_events(customer_id: int) -> Select[tuple[object, ...]]:
    return select(
        *_labelled(
            [
                AuditEvent.occurred_at,
                AuditEvent.action,
                AuditEvent.id,
                AuditEvent.actor,
                cast(null(), MinorUnits),
                cast(null(), String),
                cast(null(), Text),
                cast(null(), String),
            ]
        )
    ).where(AuditEvent.customer_id == customer_id, AuditEvent.action.in_(AUDITED_KINDS))


def payments(customer_id: int) -> Select[tuple[object, ...]]:
    return select(
        *_labelled(
            _row(
                Payment.created_at,
                "payment",
                Payment.id,
                reference=Payment.reference,
                amount=Payment.amount_minor,
                currency=Payment.currency,
                status=Payment.source,
            )
        )
    ).where(Payment.customer_id == customer_id)


def refunds(customer_id: int) -> Select[tuple[object, ...]]:
    return (
        select(
            *_labelled(
                _row(
                    Refund.created_at,
                    "refund",
                    Refund.id,
                    reference=Payment.reference,
                    amount=Refund.amount_minor,
                    currency=Refund.currency,
                    detail=Refund.reason,
                    status=Refund.actor,
                )
            )
        )
        .join(Payment, Payment.id == Refund.payment_id)
        .where(Payment.customer_id == customer_id)
    )


def credit_notes(customer_id: int) -> Select[tuple[object, ...]]:
    return (
        select(
            *_labelled(
                _row(
                    CreditNote.created_at,
                    "credit_note",
                    CreditNote.id,
                    reference=Invoice.number,
                    amount=CreditNote.amount_minor,
                    currency=CreditNote.currency,
                    detail=CreditNote.reason,
                    status=CreditNote.kind,
                )
            )
        )
        .join(Invoice, Invoice.id == CreditNote.invoice_id)
        .where(Invoice.customer_id == customer_id)
    )


def notes(customer_id: int) -> Select[tuple[object, ...]]:
    return select(
        *_labelled(
            _row(
                CustomerNote.created_at,
                "note",
                CustomerNote.id,
                reference=CustomerNote.author,
                detail=CustomerNote.body,
                status=CustomerNote.kind,
            )
        )
    ).where(CustomerNote.customer_id == customer_id)


def promises_made(customer_id: int) -> Select[tuple[object, ...]]:
    return select(
        *_labelled(
            _row(
                Promise.created_at,
                "promise.made",
                Promise.id,
                reference=Promise.promised_on,
                amount=Promise.amount_minor,
                currency=Promise.currency,
                detail=Promise.note,
                status=Promise.source,
            )
        )
    ).where(Promise.customer_id == customer_id)


def promises_decided(customer_id: int) -> Select[tuple[object, ...]]:
    return select(
        *_labelled(
            _row(
                Promise.resolved_at,
                "promise.decided",
                Promise.id,
                reference=Promise.promised_on,
                amount=Promise.paid_minor,
                currency=Promise.currency,
                status=Promise.status,
            )
        )
    ).where(Promise.customer_id == customer_id, Promise.resolved_at.is_not(None))


# Plan events, from their audit rows (portal/plans/services.py writes each with the plan's
# total, currency, status and the words a person gave).
PLAN_KINDS = (
    "plan.proposed",
    "plan.requested",
    "plan.activated",
    "plan.approved",
    "plan.countered",
    "plan.counter_accepted",
    "plan.counter_declined",
    "plan.declined",
    "plan.cancelled",
    "plan.completed",
    "plan.broken",
    "plan.payment_recorded",
    "plan.followed_up",
)


def plan_timeline(customer_id: int) -> Select[tuple[object, ...]]:
    """Each step of the customer's payment plans: proposed, reviewed, agreed, paid into,
    ended; the amount is the plan's total (for money received, what it recorded), the
    reference who acted, the detail the reason given."""
    data = AuditEvent.data
    return select(
        *_labelled(
            _row(
                AuditEvent.occurred_at,
                "plan",
                AuditEvent.id,
                reference=AuditEvent.actor,
                amount=cast(
                    func.coalesce(
                        data["amount_minor"].as_integer(), data["total_minor"].as_integer()
                    ),
                    MinorUnits,
                ),
                currency=data["currency"].as_string(),
                detail=cast(data["reason"].as_string(), Text),
                status=AuditEvent.action,
            )
        )
    ).where(AuditEvent.customer_id == customer_id, AuditEvent.action.in_(PLAN_KINDS))


# The audit rows of `portal.disputes.services`: one per step of a dispute.
DISPUTE_EVENTS = (
    "dispute.opened",
    "dispute.info_requested",
    "dispute.replied",
    "dispute.accepted",
    "dispute.partly_accepted",
    "dispute.rejected",
    "dispute.withdrawn",
    "dispute.flagged",
)


def dispute_steps(customer_id: int) -> Select[tuple[object, ...]]:
    """Each step of the customer's disputes (audited by `portal.disputes.services`): the
    invoice, the amount disputed, the reason given with a decision, and who acted."""
    data = AuditEvent.data
    columns = _row(
        AuditEvent.occurred_at,
        "dispute",
        AuditEvent.id,
        reference=data["invoice"].as_string(),
        amount=cast(data["amount_minor"].as_integer(), MinorUnits),
        currency=data["currency"].as_string(),
        detail=cast(data["reason"].as_string(), Text),
        status=AuditEvent.actor,
    )
    columns[1] = AuditEvent.action  # the kind: which step ("dispute.rejected")
    return select(*_labelled(columns)).where(
        AuditEvent.customer_id == customer_id, AuditEvent.action.in_(DISPUTE_EVENTS)
    )


# A source takes the customer's id: a bound parameter (`timeline_for`) or a plain int.
TimelineSource = Callable[[Any], Select[tuple[object, ...]]]

# The registry: every source of events on the customer page.
SOURCES: tuple[TimelineSource, ...] = (
    invoices_imported,
    invoices_changed,
    emails_queued,
    emails_sent,
    audited_events,
    payments,
    refunds,
    credit_notes,
    notes,
    promises_made,
    promises_decided,
    plan_timeline,
    dispute_steps,
)

KIND_LABELS = {
    "invoice.imported": _l("Invoice imported"),
    "invoice.changed": _l("Invoice changed"),
    "email.queued": _l("Email queued"),
    "email.sent": _l("Email sent"),
    "link.issued": _l("Link issued"),
    "link.opened": _l("Link opened"),
    "link.revoked": _l("Link revoked"),
    "links.revoked_all": _l("All links revoked"),
    "email.opted_out": _l("Opted out of collection email"),
    "email.opt_out_undone": _l("Collection email resumed"),
    "customer.locale_changed": _l("Language changed"),
    "payment": _l("Payment"),
    "refund": _l("Refund"),
    "credit_note": _l("Credit note"),
    "note": _l("Note"),
    "promise.made": _l("Promise to pay"),
    "promise.decided": _l("Promise decided"),
    "plan": _l("Payment plan"),
    "dispute.opened": _l("Dispute opened"),
    "dispute.info_requested": _l("Information requested"),
    "dispute.replied": _l("Customer replied"),
    "dispute.accepted": _l("Dispute accepted"),
    "dispute.partly_accepted": _l("Dispute partly accepted"),
    "dispute.rejected": _l("Dispute rejected"),
    "dispute.withdrawn": _l("Dispute withdrawn"),
    "dispute.flagged": _l("No reply in time: back with staff"),
}


PLAN_EVENT_LABELS = {
    "plan.proposed": _l("Proposed within policy"),
    "plan.requested": _l("Requested (outside policy)"),
    "plan.activated": _l("Active"),
    "plan.approved": _l("Approved"),
    "plan.countered": _l("Counter-offer sent"),
    "plan.counter_accepted": _l("Counter-offer accepted"),
    "plan.counter_declined": _l("Counter-offer declined"),
    "plan.declined": _l("Declined"),
    "plan.cancelled": _l("Cancelled"),
    "plan.completed": _l("Completed"),
    "plan.broken": _l("Broken"),
    "plan.payment_recorded": _l("Payment received"),
    "plan.followed_up": _l("Followed up"),
}

# Status values that read better in words; the others (a payment's channel, who refunded)
# are shown as stored.
STATUS_LABELS = {
    **{str(k): v for k, v in OUTBOX_STATUS_LABELS.items()},
    **{str(k): v for k, v in PROMISE_STATUS_LABELS.items()},
    **{str(k): v for k, v in NOTE_KIND_LABELS.items()},
    **PLAN_EVENT_LABELS,
}


@dataclass(frozen=True)
class TimelinePage:
    entries: list[TimelineEntry]
    page: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.page > 1


@lru_cache(maxsize=16)
def _timeline_statement(sources: tuple[TimelineSource, ...]) -> Select[tuple[object, ...]]:
    """The merged, sorted, paged SELECT of `sources`, built once per process: the customer,
    the limit and the offset are bound parameters (`customer_id`, `limit`, `offset`), so a
    page load neither rebuilds the eleven SELECTs nor recompiles them (building them cost
    about a fifth of the customer page's time)."""
    customer = bindparam("customer_id", type_=Integer)
    merged = union_all(*(source(customer) for source in sources)).subquery("timeline")
    return (
        select(merged)
        .order_by(merged.c.at.desc(), merged.c.kind, merged.c.subject_id.desc())
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )


def timeline_for(
    customer_id: int,
    *,
    page: int = 1,
    per_page: int = 50,
    sources: Sequence[TimelineSource] = SOURCES,
) -> TimelinePage:
    """One page of the customer's events, newest first, in one SQL statement."""
    page = max(1, page)
    rows = db.session.execute(
        _timeline_statement(tuple(sources)),
        {"customer_id": customer_id, "limit": per_page + 1, "offset": (page - 1) * per_page},
    ).all()
    entries = [
        TimelineEntry(
            at=row.at,
            kind=row.kind,
            subject_id=row.subject_id,
            reference=row.reference,
            amount=Money(int(row.amount_minor), row.currency)
            if row.amount_minor is not None and row.currency
            else None,
            detail=_detail(row.kind, row.detail),
            status=row.status,
        )
        for row in rows[:per_page]
    ]
    return TimelinePage(entries, page, has_next=len(rows) > per_page)
