"""Reading the audit log: filtered, newest first, a page at a time or as CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import g, has_request_context
from sqlalchemy import Select, select

from portal.audit.models import AuditEvent
from portal.customers.models import Customer
from portal.extensions import db
from portal.staff.models import StaffMember

PAGE_SIZE = 50
# A cell starting with one of these is read as a formula by spreadsheets (OWASP "CSV
# Injection"): such a cell is written with a leading apostrophe. Tab and CR too.
FORMULA_LEADERS = ("=", "+", "-", "@", "\t", "\r")


def actor_label(actor: object) -> object:
    """An actor string as staff read it: "staff:7" → "Ana Ortiz (staff:7)"; anything
    else ("system", "customer:42", "import:cli", or a value that is no actor) unchanged.

    The staff table is small: its names are read once per request (`g`), however many
    rows of a timeline or the audit log name a staff member.
    """
    if not isinstance(actor, str) or not actor.startswith("staff:"):
        return actor
    ident = actor.removeprefix("staff:")
    if not ident.isdigit():
        return actor
    names: dict[int, str] | None = g.get("staff_names") if has_request_context() else None
    if names is None:
        names = {
            row.id: row.name for row in db.session.execute(select(StaffMember.id, StaffMember.name))
        }
        if has_request_context():
            g.staff_names = names
    name = names.get(int(ident))
    return f"{name} ({actor})" if name else actor


@dataclass(frozen=True)
class AuditFilter:
    """What to show: `actor` exactly ("staff:7", "system") or a kind ("staff"), a
    customer's account number, an action ("staff.signed_in") or its prefix ("staff."),
    and a date range in UTC, both ends included."""

    actor: str = ""
    account_number: str = ""
    action: str = ""
    date_from: date | None = None
    date_to: date | None = None


def _filtered(f: AuditFilter) -> Select[Any]:
    query = select(AuditEvent, Customer.account_number).outerjoin(
        Customer, Customer.id == AuditEvent.customer_id
    )
    if f.actor:
        if ":" in f.actor:
            query = query.where(AuditEvent.actor == f.actor)
        else:
            query = query.where(
                (AuditEvent.actor == f.actor) | AuditEvent.actor.startswith(f"{f.actor}:")
            )
    if f.account_number:
        query = query.where(Customer.account_number == f.account_number)
    if f.action:
        if f.action.endswith("."):
            query = query.where(AuditEvent.action.startswith(f.action))
        else:
            query = query.where(AuditEvent.action == f.action)
    if f.date_from:
        query = query.where(
            AuditEvent.occurred_at >= datetime.combine(f.date_from, time(), tzinfo=UTC)
        )
    if f.date_to:
        end = datetime.combine(f.date_to + timedelta(days=1), time(), tzinfo=UTC)
        query = query.where(AuditEvent.occurred_at < end)
    return query.order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())


def audit_page(f: AuditFilter, page: int) -> tuple[list[tuple[AuditEvent, str | None]], bool]:
    """Page `page` (from 1) of the matching rows, and whether another page follows."""
    rows = db.session.execute(
        _filtered(f).limit(PAGE_SIZE + 1).offset((max(page, 1) - 1) * PAGE_SIZE)
    ).all()
    return [(row[0], row[1]) for row in rows[:PAGE_SIZE]], len(rows) > PAGE_SIZE


def action_names() -> list[str]:
    return list(
        db.session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action))
    )


def safe_cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_LEADERS) else text


CSV_HEADER = ("id", "occurred_at", "actor", "action", "account_number", "subject", "data")


def audit_csv(f: AuditFilter) -> Iterator[str]:
    """Every matching row as CSV lines (header first), streamed 500 rows at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_HEADER)
    yield flush()
    result = db.session.execute(_filtered(f).execution_options(yield_per=500))
    for event, account_number in result:
        subject = f"{event.subject_type}:{event.subject_id}" if event.subject_type else ""
        writer.writerow(
            safe_cell(value)
            for value in (
                event.id,
                event.occurred_at.isoformat(),
                event.actor,
                event.action,
                account_number,
                subject,
                json.dumps(event.data, sort_keys=True, ensure_ascii=False),
            )
        )
        yield flush()
