from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from flask_babel import lazy_gettext as _l
from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.customers.models import Customer
from portal.db import MinorUnits, UTCDateTime, utcnow
from portal.extensions import db
from portal.invoices.models import Invoice
from portal.money import Money


class NoteKind(StrEnum):
    CALL = "call"
    NOTE = "note"

    @property
    def label(self) -> str:
        return str(NOTE_KIND_LABELS[self])


NOTE_KIND_LABELS = {NoteKind.CALL: _l("Call"), NoteKind.NOTE: _l("Note")}


class CustomerNote(db.Model):
    """What a specialist wrote down about a call or the account. Never edited."""

    __tablename__ = "customer_notes"
    __table_args__ = (
        CheckConstraint("kind IN ('call', 'note')", name="kind_known"),
        CheckConstraint("length(body) > 0", name="body_not_empty"),
        Index("ix_customer_notes_customer_time", "customer_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(64))  # str(Actor): "staff:7"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PromiseStatus(StrEnum):
    OPEN = "open"  # waiting for its date; reminders for its invoices are paused
    KEPT = "kept"  # payments covering the amount arrived by the date
    BROKEN = "broken"  # they did not (in full): reminders resume, a specialist follows up
    CANCELLED = "cancelled"  # withdrawn by a specialist before its date

    @property
    def label(self) -> str:
        return str(PROMISE_STATUS_LABELS[self])


PROMISE_STATUS_LABELS = {
    PromiseStatus.OPEN: _l("Promised"),
    PromiseStatus.KEPT: _l("Kept"),
    PromiseStatus.BROKEN: _l("Broken"),
    PromiseStatus.CANCELLED: _l("Cancelled"),
}

# The only moves a promise makes; `services.move_promise` refuses every other pair.
TRANSITIONS: dict[PromiseStatus, frozenset[PromiseStatus]] = {
    PromiseStatus.OPEN: frozenset(
        {PromiseStatus.KEPT, PromiseStatus.BROKEN, PromiseStatus.CANCELLED}
    ),
    PromiseStatus.KEPT: frozenset(),
    PromiseStatus.BROKEN: frozenset(),
    PromiseStatus.CANCELLED: frozenset(),
}


def can_move(current: PromiseStatus, to: PromiseStatus) -> bool:
    return to in TRANSITIONS[current]


class Promise(db.Model):
    """A promise to pay `amount` on the covered invoices by `promised_on` (a date in the
    customer's time zone, inclusive)."""

    __tablename__ = "promises"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("paid_minor >= 0", name="paid_not_negative"),
        CheckConstraint("length(currency) = 3", name="currency_iso"),
        CheckConstraint("promised_on >= made_on", name="promised_after_made"),
        CheckConstraint("status IN ('open', 'kept', 'broken', 'cancelled')", name="status_known"),
        CheckConstraint("source IN ('staff', 'customer')", name="source_known"),
        CheckConstraint("(status = 'open') = (resolved_at IS NULL)", name="resolved_unless_open"),
        Index("ix_promises_customer_status", "customer_id", "status"),
        Index("ix_promises_status_date", "status", "promised_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="RESTRICT"))
    amount_minor: Mapped[int] = mapped_column(MinorUnits)
    currency: Mapped[str] = mapped_column(String(3))
    made_on: Mapped[date] = mapped_column(Date)  # the customer's today when promised
    promised_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default=PromiseStatus.OPEN)
    source: Mapped[str] = mapped_column(
        String(16)
    )  # who promised: "staff" (on a call) or "customer"
    created_by: Mapped[str] = mapped_column(String(64))  # str(Actor)
    note: Mapped[str] = mapped_column(String(500), default="")
    # What the covering payments came to when it was decided (minor units).
    paid_minor: Mapped[int] = mapped_column(MinorUnits, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A broken promise waits in the follow-up queue until a specialist closes it.
    followed_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    customer: Mapped[Customer] = relationship()
    invoices: Mapped[list[PromiseInvoice]] = relationship(
        back_populates="promise", cascade="all, delete-orphan", order_by="PromiseInvoice.id"
    )

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @property
    def paid(self) -> Money:
        return Money(self.paid_minor, self.currency)

    @property
    def status_enum(self) -> PromiseStatus:
        return PromiseStatus(self.status)

    @property
    def is_open(self) -> bool:
        return self.status == PromiseStatus.OPEN


class PromiseInvoice(db.Model):
    """An invoice a promise covers: its reminders wait while the promise is open."""

    __tablename__ = "promise_invoices"
    __table_args__ = (
        UniqueConstraint("promise_id", "invoice_id", name="uq_promise_invoices_pair"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    promise_id: Mapped[int] = mapped_column(ForeignKey("promises.id", ondelete="CASCADE"))
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoices.id", ondelete="RESTRICT"), index=True
    )

    promise: Mapped[Promise] = relationship(back_populates="invoices")
    invoice: Mapped[Invoice] = relationship()
