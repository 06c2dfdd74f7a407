from __future__ import annotations

from datetime import datetime
from typing import Any

from portal.audit.models import AuditEvent
from portal.extensions import db


def record_event(
    action: str,
    *,
    actor: str,
    now: datetime,
    customer_id: int | None = None,
    subject: Any = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an audit row in the caller's transaction."""
    event = AuditEvent(
        action=action,
        actor=actor,
        occurred_at=now,
        customer_id=customer_id,
        subject_type=getattr(subject, "__tablename__", None),
        subject_id=getattr(subject, "id", None),
        data=data or {},
    )
    db.session.add(event)
    return event
