from __future__ import annotations

from datetime import datetime
from typing import Any

from portal.audit.actors import Actor
from portal.audit.models import AuditEvent
from portal.extensions import db


def record_event(
    action: str,
    *,
    actor: Actor | str,
    now: datetime,
    customer_id: int | None = None,
    subject: Any = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an audit row in the caller's transaction (there is no update or delete:
    the table's triggers refuse both)."""
    event = AuditEvent(
        action=action,
        actor=str(actor),
        occurred_at=now,
        customer_id=customer_id,
        subject_type=getattr(subject, "__tablename__", None),
        subject_id=getattr(subject, "id", None),
        data=data or {},
    )
    db.session.add(event)
    return event


def audit_row(
    action: str,
    *,
    actor: Actor | str,
    now: datetime,
    customer_id: int | None,
    subject: tuple[str, int] | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An audit row for a bulk insert (`insert(AuditEvent)` with a list of these);
    `subject` is (table name, id)."""
    subject_type, subject_id = subject if subject else (None, None)
    return {
        "action": action,
        "actor": str(actor),
        "occurred_at": now,
        "customer_id": customer_id,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "data": data or {},
    }
