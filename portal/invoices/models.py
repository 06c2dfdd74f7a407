from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.customers.models import Customer
from portal.db import MinorUnits, UTCDateTime, utcnow
from portal.extensions import db
from portal.money import UNIT_PRICE_MAX_DECIMALS, Money, UnitPrice

QUANTITY_SCALE = 1000  # quantities are stored in thousandths: 2.5 units -> 2500


class InvoiceStatus(StrEnum):
    """What happened to an invoice, derived from its amounts (`balances.status_of`).

    "Paid" and "partially paid" mean that the customer paid (net of refunds); an invoice
    that only credit notes reduced is "credited" or "partially credited", so that nobody
    reads a payment into a credit. Open, partially paid and partially credited invoices
    are open (`OPEN_INVOICE_STATUSES`); the reports do not read these statuses (an
    invoice with balance 0 is closed for aging whatever settled it).
    """

    OPEN = "open"
    PARTIALLY_PAID = "partially_paid"
    PARTIALLY_CREDITED = "partially_credited"
    PAID = "paid"
    CREDITED = "credited"
    VOID = "void"

    @property
    def label(self) -> str:
        return str(STATUS_LABELS[self])

    @property
    def is_open(self) -> bool:
        """Something is left to pay (not paid, credited in full or void)."""
        return self in OPEN_INVOICE_STATUSES


OPEN_INVOICE_STATUSES = frozenset(
    {InvoiceStatus.OPEN, InvoiceStatus.PARTIALLY_PAID, InvoiceStatus.PARTIALLY_CREDITED}
)

STATUS_LABELS = {
    InvoiceStatus.OPEN: _l("Open"),
    InvoiceStatus.PARTIALLY_PAID: _l("Partially paid"),
    InvoiceStatus.PARTIALLY_CREDITED: _l("Partially credited"),
    InvoiceStatus.PAID: _l("Paid"),
    InvoiceStatus.CREDITED: _l("Credited"),
    InvoiceStatus.VOID: _l("Void"),
}


class Invoice(db.Model):
    __tablename__ = "invoices"
    __table_args__ = (
        CheckConstraint("total_minor >= 0", name="total_not_negative"),
        CheckConstraint("due_date >= issue_date", name="due_after_issue"),
        CheckConstraint("length(currency) = 3", name="currency_iso"),
        Index("ix_invoices_customer_due", "customer_id", "due_date"),
        # The reports' credit sales in a period and the currencies in use.
        Index("ix_invoices_currency_issue", "currency", "issue_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="RESTRICT"))
    number: Mapped[str] = mapped_column(String(64), unique=True)
    issue_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    # Sum of the lines (each line: quantity x unit price, rounded half-up, plus tax).
    total_minor: Mapped[int] = mapped_column(MinorUnits)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    customer: Mapped[Customer] = relationship()
    lines: Mapped[list[InvoiceLine]] = relationship(
        back_populates="invoice", order_by="InvoiceLine.line_number", cascade="all, delete-orphan"
    )

    @property
    def total(self) -> Money:
        return Money(self.total_minor, self.currency)

    def __repr__(self) -> str:
        return f"<Invoice {self.number}>"


class InvoiceLine(db.Model):
    __tablename__ = "invoice_lines"
    __table_args__ = (
        UniqueConstraint("invoice_id", "line_number", name="uq_invoice_lines_invoice_line"),
        CheckConstraint("line_number > 0", name="line_number_positive"),
        CheckConstraint("quantity_milli > 0", name="quantity_positive"),
        CheckConstraint("unit_price_units >= 0", name="unit_price_not_negative"),
        CheckConstraint(
            f"unit_price_scale BETWEEN 0 AND {UNIT_PRICE_MAX_DECIMALS}",
            name="unit_price_scale_known",
        ),
        CheckConstraint("tax_minor >= 0", name="tax_not_negative"),
        CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    line_number: Mapped[int]
    description: Mapped[str] = mapped_column(String(500))
    quantity_milli: Mapped[int] = mapped_column(MinorUnits)  # thousandths of a unit
    # The unit price exactly as given (money.UnitPrice): units x 10**-scale major units,
    # "0.3350" USD -> (3350, 4). Two integers: exact on SQLite, which has no decimal type.
    unit_price_units: Mapped[int] = mapped_column(MinorUnits)
    unit_price_scale: Mapped[int] = mapped_column(SmallInteger)
    tax_minor: Mapped[int] = mapped_column(MinorUnits, default=0)
    amount_minor: Mapped[int] = mapped_column(MinorUnits)  # money.line_amount()

    invoice: Mapped[Invoice] = relationship(back_populates="lines")

    @property
    def quantity(self) -> Decimal:
        return (Decimal(self.quantity_milli) / QUANTITY_SCALE).normalize()

    @property
    def unit_price(self) -> UnitPrice:
        return UnitPrice(self.unit_price_units, self.unit_price_scale, self.invoice.currency)

    @property
    def tax(self) -> Money:
        return Money(self.tax_minor, self.invoice.currency)

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.invoice.currency)


class CreditNoteKind(StrEnum):
    CREDIT = "credit"  # from the ERP, a dispute accepted, a goodwill credit
    # A remainder no card can pay, written off under SMALL_BALANCE_TOLERANCE.
    SMALL_BALANCE_WRITE_OFF = "small_balance_write_off"
    # A dispute accepted in full or in part: names the dispute and the line it credits.
    DISPUTE = "dispute"


class CreditNote(db.Model):
    """A reduction of an invoice's balance (a dispute accepted, a goodwill credit)."""

    __tablename__ = "credit_notes"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("length(currency) = 3", name="currency_iso"),
        CheckConstraint(
            "kind IN ('credit', 'small_balance_write_off', 'dispute')", name="kind_known"
        ),
        # A dispute's credit names its dispute and the line it credits.
        CheckConstraint(
            "kind <> 'dispute' OR (dispute_id IS NOT NULL AND invoice_line_id IS NOT NULL)",
            name="dispute_credit_names_line",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoices.id", ondelete="RESTRICT"), index=True
    )
    # The line it credits, if it credits one (a dispute's credit always does); the line's
    # undisputed amount is reduced by it (`portal.invoices.balances.line_balances`).
    invoice_line_id: Mapped[int | None] = mapped_column(
        ForeignKey("invoice_lines.id", ondelete="RESTRICT"), index=True
    )
    dispute_id: Mapped[int | None] = mapped_column(
        ForeignKey("disputes.id", ondelete="RESTRICT"), index=True
    )
    amount_minor: Mapped[int] = mapped_column(MinorUnits)
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(
        String(32), default=CreditNoteKind.CREDIT, server_default=CreditNoteKind.CREDIT.value
    )
    issued_on: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    invoice: Mapped[Invoice] = relationship()
    invoice_line: Mapped[InvoiceLine | None] = relationship()

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)
