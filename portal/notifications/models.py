from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import UTCDateTime, utcnow
from portal.extensions import db


class OutboxStatus(StrEnum):
    QUEUED = "queued"  # waiting for its not_before time
    SENDING = "sending"  # claimed by a runner; reclaimed if the lease runs out
    SENT = "sent"
    FAILED = "failed"  # every attempt used; visible, never retried automatically
    SUPPRESSED = "suppressed"  # the customer opted out before it went

    @property
    def label(self) -> str:
        return str(OUTBOX_STATUS_LABELS[self])


OUTBOX_STATUS_LABELS = {
    OutboxStatus.QUEUED: _l("Queued"),
    OutboxStatus.SENDING: _l("Sending"),
    OutboxStatus.SENT: _l("Sent"),
    OutboxStatus.FAILED: _l("Failed"),
    OutboxStatus.SUPPRESSED: _l("Not sent (opted out)"),
}


class EmailCategory(StrEnum):
    COLLECTION = "collection"  # invoice notices and reminders: stop on opt-out
    TRANSACTIONAL = "transactional"  # links asked for, receipts, dispute updates


class OutboxMessage(db.Model):
    """An email, written in the business transaction and delivered by the jobs runner."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'failed', 'suppressed')",
            name="status_known",
        ),
        CheckConstraint("category IN ('collection', 'transactional')", name="category_known"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # Rendered when queued, or renderable when sent (`template` and its `context`).
        CheckConstraint(
            "(subject IS NOT NULL AND body_text IS NOT NULL) OR template IS NOT NULL",
            name="rendered_or_renderable",
        ),
        Index("ix_outbox_messages_status_due", "status", "not_before"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    invoice_id: Mapped[int | None] = mapped_column(
        ForeignKey("invoices.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(String(40))
    category: Mapped[str] = mapped_column(String(16), default=EmailCategory.TRANSACTIONAL)
    # At most one message per key (a reminder stage of one invoice): the database, not
    # the scheduler's memory, guarantees that a stage is queued once.
    dedupe_key: Mapped[str | None] = mapped_column(String(120), unique=True)
    # Stable across retries, so a receiver can drop a duplicate after a runner crash.
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    to_address: Mapped[str] = mapped_column(String(254))
    locale: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str | None] = mapped_column(String(300))
    body_text: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    unsubscribe_url: Mapped[str | None] = mapped_column(String(500))
    # An email that carries a portal link is stored without it: the runner issues the
    # link (purpose `link_purpose`, to `invoice_id` if set) as it sends, and puts it in
    # the copy it hands to the mail server only (`services.PORTAL_LINK_SLOT`). The link's
    # row is `access_link_id`; its token exists nowhere else (README, Security model).
    link_purpose: Mapped[str | None] = mapped_column(String(32))
    # Where that link leads when opened, a path on this site ("/disputes/12"); None: the
    # invoice if set, else the account (`access.models.AccessLink.target`).
    link_target: Mapped[str | None] = mapped_column(String(200))
    access_link_id: Mapped[int | None] = mapped_column(
        ForeignKey("access_links.id", ondelete="SET NULL")
    )
    # For an email rendered when sent (`services.deferred_email_row`): what to render.
    template: Mapped[str | None] = mapped_column(String(60))
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # What to attach, made when sent like the portal link (never a stored file): "<kind>:<id>",
    # e.g. "plan_agreement:12", built by the builder registered for the kind
    # (`services.attaches`) in the message's locale.
    attachment: Mapped[str | None] = mapped_column(String(60))
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(120))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class EmailOptOut(db.Model):
    """A customer who asked for no more collection emails (Regulation F §1006.6(e))."""

    __tablename__ = "email_opt_outs"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), unique=True
    )
    opted_out_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    source: Mapped[str] = mapped_column(String(32))  # "page" or "one-click"


class ReminderStep(db.Model):
    """One step of the dunning cadence, in days relative to the due date (−3 = before)."""

    __tablename__ = "reminder_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    offset_days: Mapped[int] = mapped_column(unique=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
