from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import UTCDateTime, utcnow
from portal.extensions import db


class AuditEvent(db.Model):
    """One thing that happened. Rows are only ever inserted."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_customer_time", "customer_id", "occurred_at"),
        # The audit log page: newest first, by actor (staffauth).
        Index("ix_audit_events_time", "occurred_at"),
        Index("ix_audit_events_actor_time", "actor", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # "customer:42", "staff:7", "system", "cli": who did it.
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    # RESTRICT: the audit log outlives nothing it speaks of by losing its subject.
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="RESTRICT"))
    subject_type: Mapped[str | None] = mapped_column(String(32))
    subject_id: Mapped[int | None]
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
