"""Line-item disputes: a customer contests part of an invoice; staff decide.

While a dispute is open (`OPEN_STATUSES`) the amounts of its lines are held: not
payable, not reminded, not plannable (`portal.invoices.balances`). Its status moves
only along `TRANSITIONS`, through one service per move (`portal.disputes.services`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from flask_babel import lazy_gettext as _l
from flask_babel import lazy_pgettext
from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.customers.models import Customer
from portal.db import MinorUnits, UTCDateTime, utcnow
from portal.extensions import db
from portal.invoices.models import Invoice, InvoiceLine
from portal.money import Money

MESSAGE_MAX_LENGTH = 5000  # characters of a message or a question
RESOLUTION_MAX_LENGTH = 2000  # characters of the reason the customer reads
ORIGINAL_NAME_MAX_LENGTH = 200
EVIDENCE_CONTENT_TYPES = ("application/pdf", "image/png", "image/jpeg")


class DisputeStatus(StrEnum):
    OPEN = "open"  # with staff
    WAITING_ON_CUSTOMER = "waiting_on_customer"  # staff asked; the customer replies
    ACCEPTED = "accepted"  # credited in full
    PARTLY_ACCEPTED = "partly_accepted"  # credited in part; the rest payable again
    REJECTED = "rejected"  # payable again, reminded from the day of the decision
    WITHDRAWN = "withdrawn"  # by the customer; payable again

    @property
    def label(self) -> str:
        return str(STATUS_LABELS[self])

    @property
    def is_open(self) -> bool:
        return self in OPEN_STATUSES


STATUS_LABELS = {
    DisputeStatus.OPEN: lazy_pgettext("dispute status", "Open"),  # not an invoice's "to pay"
    DisputeStatus.WAITING_ON_CUSTOMER: _l("Waiting for your reply"),
    DisputeStatus.ACCEPTED: _l("Accepted"),
    DisputeStatus.PARTLY_ACCEPTED: _l("Partly accepted"),
    DisputeStatus.REJECTED: _l("Rejected"),
    DisputeStatus.WITHDRAWN: _l("Withdrawn"),
}

# These hold money (the disputed amounts are not payable while the dispute is in one).
OPEN_STATUSES: frozenset[DisputeStatus] = frozenset(
    {DisputeStatus.OPEN, DisputeStatus.WAITING_ON_CUSTOMER}
)

_DECIDED = frozenset(
    {
        DisputeStatus.ACCEPTED,
        DisputeStatus.PARTLY_ACCEPTED,
        DisputeStatus.REJECTED,
        DisputeStatus.WITHDRAWN,
    }
)

# The only moves a dispute makes; each has one service in `portal.disputes.services`,
# which refuses every other pair (DisputeTransitionRefused). A customer's reply to an
# open dispute keeps it open (a message, not a move).
TRANSITIONS: dict[DisputeStatus, frozenset[DisputeStatus]] = {
    DisputeStatus.OPEN: frozenset({DisputeStatus.WAITING_ON_CUSTOMER} | _DECIDED),
    DisputeStatus.WAITING_ON_CUSTOMER: frozenset({DisputeStatus.OPEN} | _DECIDED),
    DisputeStatus.ACCEPTED: frozenset(),
    DisputeStatus.PARTLY_ACCEPTED: frozenset(),
    DisputeStatus.REJECTED: frozenset(),
    DisputeStatus.WITHDRAWN: frozenset(),
}


def can_move(current: DisputeStatus, to: DisputeStatus) -> bool:
    return to in TRANSITIONS[current]


class DisputeReason(StrEnum):
    NOT_RECEIVED = "not_received"
    DAMAGED = "damaged"
    WRONG_PRICE = "wrong_price"
    DUPLICATE = "duplicate"
    NOT_ORDERED = "not_ordered"
    OTHER = "other"

    @property
    def label(self) -> str:
        return str(REASON_LABELS[self])


REASON_LABELS = {
    DisputeReason.NOT_RECEIVED: _l("Not received"),
    DisputeReason.DAMAGED: _l("Damaged or defective"),
    DisputeReason.WRONG_PRICE: _l("Wrong price or quantity"),
    DisputeReason.DUPLICATE: _l("Duplicate charge"),
    DisputeReason.NOT_ORDERED: _l("Not ordered"),
    DisputeReason.OTHER: _l("Other"),
}


class MessageKind(StrEnum):
    MESSAGE = "message"  # the customer's opening message or a reply; a staff note to them
    INFO_REQUEST = "info_request"  # staff ask for more information
    DECISION = "decision"  # the reason given with an acceptance in part or a rejection
    SYSTEM = "system"  # the portal's own (no reply in time)


def _sql_list(values: object) -> str:
    return ", ".join(f"'{value}'" for value in values)  # type: ignore[attr-defined]


class Dispute(db.Model):
    """A customer's dispute of one or more lines of one invoice.

    Times are aware UTC datetimes. `reply_due_at` is set while waiting on the customer;
    `resolved_at`/`resolved_by` once decided (or withdrawn); `flagged_at` when the jobs
    runner brought it back to staff because the customer did not reply in time.
    """

    __tablename__ = "disputes"
    __table_args__ = (
        CheckConstraint(f"status IN ({_sql_list(DisputeStatus)})", name="status_known"),
        CheckConstraint(f"reason IN ({_sql_list(DisputeReason)})", name="reason_known"),
        CheckConstraint(
            "(status IN ('open', 'waiting_on_customer')) = (resolved_at IS NULL)",
            name="resolved_unless_open",
        ),
        CheckConstraint(
            "status <> 'waiting_on_customer' OR reply_due_at IS NOT NULL",
            name="waiting_has_reply_due",
        ),
        # The customer's pages and the holds of their invoices.
        Index("ix_disputes_customer_status", "customer_id", "status"),
        Index("ix_disputes_invoice_status", "invoice_id", "status"),
        # The staff queue: open ones, oldest first.
        Index("ix_disputes_status_opened", "status", "opened_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="RESTRICT"))
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(String(24), default=DisputeStatus.OPEN)
    reason: Mapped[str] = mapped_column(String(24))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    reply_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What the customer reads with a rejection or an acceptance in part.
    resolution_reason: Mapped[str] = mapped_column(Text, default="")
    resolved_by: Mapped[str | None] = mapped_column(String(64))  # str(Actor)
    flagged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    customer: Mapped[Customer] = relationship()
    invoice: Mapped[Invoice] = relationship()
    lines: Mapped[list[DisputeLine]] = relationship(
        back_populates="dispute", cascade="all, delete-orphan", order_by="DisputeLine.id"
    )
    messages: Mapped[list[DisputeMessage]] = relationship(
        back_populates="dispute",
        cascade="all, delete-orphan",
        order_by="(DisputeMessage.created_at, DisputeMessage.id)",
    )
    files: Mapped[list[DisputeFile]] = relationship(
        back_populates="dispute", cascade="all, delete-orphan", order_by="DisputeFile.id"
    )

    @property
    def state(self) -> DisputeStatus:
        return DisputeStatus(self.status)

    @property
    def reason_enum(self) -> DisputeReason:
        return DisputeReason(self.reason)

    @property
    def is_open(self) -> bool:
        return self.state.is_open

    @property
    def currency(self) -> str:
        return self.invoice.currency

    @property
    def amount(self) -> Money:
        """What the dispute contests: the sum of its lines."""
        return Money.sum((line.amount for line in self.lines), self.currency)

    @property
    def credited(self) -> Money:
        """What its decision credited (zero until accepted, in full or in part)."""
        return Money.sum((line.credited for line in self.lines), self.currency)

    @property
    def is_flagged(self) -> bool:
        return self.flagged_at is not None

    def __repr__(self) -> str:
        return f"<Dispute {self.id} {self.status}>"


class DisputeLine(db.Model):
    """One disputed invoice line and how much of it (minor units of the invoice's
    currency); `credited_minor` is what the decision credited on it."""

    __tablename__ = "dispute_lines"
    __table_args__ = (
        UniqueConstraint("dispute_id", "invoice_line_id", name="uq_dispute_lines_dispute_line"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint(
            "credited_minor >= 0 AND credited_minor <= amount_minor", name="credited_within_amount"
        ),
        CheckConstraint("length(currency) = 3", name="currency_iso"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dispute_id: Mapped[int] = mapped_column(ForeignKey("disputes.id", ondelete="CASCADE"))
    # RESTRICT: a disputed line stays as it was (the import refuses to remove it).
    invoice_line_id: Mapped[int] = mapped_column(
        ForeignKey("invoice_lines.id", ondelete="RESTRICT"), index=True
    )
    amount_minor: Mapped[int] = mapped_column(MinorUnits)
    currency: Mapped[str] = mapped_column(String(3))
    credited_minor: Mapped[int] = mapped_column(MinorUnits, default=0)

    dispute: Mapped[Dispute] = relationship(back_populates="lines")
    invoice_line: Mapped[InvoiceLine] = relationship()

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @property
    def credited(self) -> Money:
        return Money(self.credited_minor, self.currency)

    @property
    def line_number(self) -> int:
        return self.invoice_line.line_number


class DisputeMessage(db.Model):
    """One entry of a dispute's thread. Never edited."""

    __tablename__ = "dispute_messages"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('message', 'info_request', 'decision', 'system')", name="kind_known"
        ),
        CheckConstraint(f"length(body) <= {MESSAGE_MAX_LENGTH}", name="body_not_too_long"),
        Index("ix_dispute_messages_dispute_time", "dispute_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dispute_id: Mapped[int] = mapped_column(ForeignKey("disputes.id", ondelete="CASCADE"))
    author: Mapped[str] = mapped_column(String(64))  # str(Actor): "customer:7", "staff:3", "system"
    body: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16), default=MessageKind.MESSAGE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    dispute: Mapped[Dispute] = relationship(back_populates="messages")
    files: Mapped[list[DisputeFile]] = relationship(
        back_populates="message", order_by="DisputeFile.id"
    )

    @property
    def kind_enum(self) -> MessageKind:
        return MessageKind(self.kind)

    @property
    def is_from_customer(self) -> bool:
        return self.author.startswith("customer:")

    @property
    def is_from_staff(self) -> bool:
        return self.author.startswith("staff:")


class DisputeFile(db.Model):
    """An evidence file, stored under `storage_name` in UPLOAD_DIR (never under static/);
    `original_name` is the sanitized name the customer gave it, shown, never used as a path."""

    __tablename__ = "dispute_files"
    __table_args__ = (
        CheckConstraint(
            f"content_type IN ({_sql_list(EVIDENCE_CONTENT_TYPES)})", name="content_type_known"
        ),
        CheckConstraint("size_bytes > 0", name="size_positive"),
        CheckConstraint("length(sha256) = 64", name="sha256_hex"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dispute_id: Mapped[int] = mapped_column(
        ForeignKey("disputes.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("dispute_messages.id", ondelete="SET NULL"), index=True
    )
    storage_name: Mapped[str] = mapped_column(String(64), unique=True)
    original_name: Mapped[str] = mapped_column(String(ORIGINAL_NAME_MAX_LENGTH))
    content_type: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(MinorUnits)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    dispute: Mapped[Dispute] = relationship(back_populates="files")
    message: Mapped[DisputeMessage | None] = relationship(back_populates="files")
