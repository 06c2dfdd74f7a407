"""Money received (the ledger), card checkouts in flight, webhook events and refunds.

`Payment` and `Refund` are the ledger: rows are only ever added, one `Payment` per
Stripe PaymentIntent (unique `reference`), one `Refund` per Stripe refund. A `Checkout`
is the customer's attempt to pay: what they chose, the amount, and where the card
charge stands; its status moves only through `services.move_checkout`.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.customers.models import Customer
from portal.db import MinorUnits, UTCDateTime, utcnow
from portal.extensions import db
from portal.invoices.models import Invoice
from portal.money import Money


class PaymentSource(StrEnum):
    OFFLINE = "offline"  # recorded in the creditor's ERP and imported
    CARD = "card"  # taken through the portal (Stripe)


class Payment(db.Model):
    """Money received. Append-only: a refund is a new record, never an edit."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("length(currency) = 3", name="currency_iso"),
        CheckConstraint("source IN ('offline', 'card')", name="source_known"),
        # The reports' collections per day and payments by channel in a period.
        Index("ix_payments_currency_paid_on", "currency", "paid_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), index=True
    )
    # The ERP's payment reference, or the Stripe PaymentIntent id: unique either way.
    reference: Mapped[str] = mapped_column(String(128), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(MinorUnits)
    currency: Mapped[str] = mapped_column(String(3))
    paid_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The portal checkout that took this card payment (None for offline payments).
    checkout_id: Mapped[int | None] = mapped_column(
        ForeignKey("checkouts.id", ondelete="RESTRICT"), index=True
    )

    customer: Mapped[Customer] = relationship()
    allocations: Mapped[list[PaymentAllocation]] = relationship(
        # Ledger rows are never deleted: no ORM cascade, and RESTRICT in the database.
        back_populates="payment",
        cascade="save-update, merge",
        passive_deletes="all",
    )
    refunds: Mapped[list[Refund]] = relationship(back_populates="payment", order_by="Refund.id")
    checkout: Mapped[Checkout | None] = relationship(viewonly=True)

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @property
    def allocated(self) -> Money:
        return Money.sum((a.amount for a in self.allocations), self.currency)

    @property
    def unapplied(self) -> Money:
        """Received but owed on no invoice (a customer paid twice): staff refund it."""
        return self.amount - self.allocated

    @property
    def refunded(self) -> Money:
        return Money.sum((r.amount for r in self.refunds), self.currency)

    @property
    def receipt_number(self) -> str:
        return f"R-{self.id:06d}"


class PaymentAllocation(db.Model):
    """The part of a payment applied to one invoice."""

    __tablename__ = "payment_allocations"
    __table_args__ = (
        UniqueConstraint("payment_id", "invoice_id", name="uq_payment_allocations_pair"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", ondelete="RESTRICT"))
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoices.id", ondelete="RESTRICT"), index=True
    )
    amount_minor: Mapped[int] = mapped_column(MinorUnits)

    payment: Mapped[Payment] = relationship(back_populates="allocations")
    invoice: Mapped[Invoice] = relationship()

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.payment.currency)


class Refund(db.Model):
    """Money given back on a card payment; reopens the balance of the invoices it names."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("length(currency) = 3", name="currency_iso"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(
        ForeignKey("payments.id", ondelete="RESTRICT"), index=True
    )
    reference: Mapped[str] = mapped_column(String(128), unique=True)  # the Stripe refund id
    amount_minor: Mapped[int] = mapped_column(MinorUnits)
    currency: Mapped[str] = mapped_column(String(3))
    refunded_on: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(500), default="")
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    payment: Mapped[Payment] = relationship(back_populates="refunds")
    allocations: Mapped[list[RefundAllocation]] = relationship(
        back_populates="refund", cascade="save-update, merge", passive_deletes="all"
    )

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)


class RefundAllocation(db.Model):
    """The part of a refund taken back from one invoice's payment."""

    __tablename__ = "refund_allocations"
    __table_args__ = (
        UniqueConstraint("refund_id", "invoice_id", name="uq_refund_allocations_pair"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    refund_id: Mapped[int] = mapped_column(ForeignKey("refunds.id", ondelete="RESTRICT"))
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoices.id", ondelete="RESTRICT"), index=True
    )
    amount_minor: Mapped[int] = mapped_column(MinorUnits)

    refund: Mapped[Refund] = relationship(back_populates="allocations")


class PaymentAccount(db.Model):
    """A customer's Stripe Customer, and the row that serializes their payments.

    Every service that charges, records or refunds a customer's card payment first
    locks this row (see `services.lock_account`): the lock order starts here.
    """

    __tablename__ = "payment_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), unique=True
    )
    stripe_customer_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The SetupIntent the card page last created, reused by every later visit while it can
    # still take a card: a page load is then not a new Stripe object (card testing).
    open_setup_intent_id: Mapped[str | None] = mapped_column(String(64))


class CardFailure(db.Model):
    """A card attempt that failed (declined, or not usable for this customer): what caps a
    customer's attempts per day (`payments.card_testing`). No card data, only Stripe's code."""

    __tablename__ = "card_failures"
    __table_args__ = (Index("ix_card_failures_customer_failed_at", "customer_id", "failed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    checkout_id: Mapped[int | None] = mapped_column(ForeignKey("checkouts.id", ondelete="SET NULL"))
    code: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SavedCard(db.Model):
    """The card a customer asked us to keep for next time: Stripe's id and what to show."""

    __tablename__ = "saved_cards"
    __table_args__ = (
        CheckConstraint("exp_month IS NULL OR exp_month BETWEEN 1 AND 12", name="exp_month_valid"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), unique=True
    )
    payment_method_id: Mapped[str] = mapped_column(String(64), unique=True)
    brand: Mapped[str] = mapped_column(String(20))
    last4: Mapped[str] = mapped_column(String(4))
    # Shown on the account page so the customer sees when the card stops working; None
    # for cards saved before it was recorded.
    exp_month: Mapped[int | None]
    exp_year: Mapped[int | None]
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CheckoutStatus(StrEnum):
    OPEN = "open"  # amount and invoices fixed; waiting for a card
    PROCESSING = "processing"  # a charge is being created at Stripe
    REQUIRES_ACTION = "requires_action"  # the bank asks the customer to authenticate (3-D Secure)
    SUCCEEDED = "succeeded"  # Stripe took the money; the payment is in the ledger
    CANCELED = "canceled"  # abandoned, or given up after an unfinished authentication

    @property
    def label(self) -> str:
        return str(CHECKOUT_STATUS_LABELS[self])

    @property
    def is_in_flight(self) -> bool:
        return self in IN_FLIGHT


CHECKOUT_STATUS_LABELS = {
    CheckoutStatus.OPEN: _l("Waiting for your card"),
    CheckoutStatus.PROCESSING: _l("Processing"),
    CheckoutStatus.REQUIRES_ACTION: _l("Waiting for your bank"),
    CheckoutStatus.SUCCEEDED: _l("Paid"),
    CheckoutStatus.CANCELED: _l("Cancelled"),
}

IN_FLIGHT = frozenset({CheckoutStatus.PROCESSING, CheckoutStatus.REQUIRES_ACTION})

# Which status may follow which; `services.move_checkout` is the only code that moves
# them. Nothing leaves SUCCEEDED: a late failure never undoes money Stripe took, and a
# late success (Stripe's word, by webhook or retrieve) may finish any other state.
CHECKOUT_TRANSITIONS: dict[CheckoutStatus, frozenset[CheckoutStatus]] = {
    CheckoutStatus.OPEN: frozenset(
        {CheckoutStatus.PROCESSING, CheckoutStatus.SUCCEEDED, CheckoutStatus.CANCELED}
    ),
    CheckoutStatus.PROCESSING: frozenset(
        {
            CheckoutStatus.OPEN,  # declined, or Stripe unreachable: try again
            CheckoutStatus.REQUIRES_ACTION,
            CheckoutStatus.SUCCEEDED,
            CheckoutStatus.CANCELED,  # interrupted and never heard of again
        }
    ),
    CheckoutStatus.REQUIRES_ACTION: frozenset(
        {CheckoutStatus.OPEN, CheckoutStatus.SUCCEEDED, CheckoutStatus.CANCELED}
    ),
    CheckoutStatus.SUCCEEDED: frozenset(),
    CheckoutStatus.CANCELED: frozenset({CheckoutStatus.SUCCEEDED}),
}


class Checkout(db.Model):
    """One customer's payment of chosen invoices: amount fixed on the server, card charged once."""

    __tablename__ = "checkouts"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("length(currency) = 3", name="currency_iso"),
        CheckConstraint(
            "status IN ('open', 'processing', 'requires_action', 'succeeded', 'canceled')",
            name="status_known",
        ),
        CheckConstraint("attempt >= 0", name="attempt_not_negative"),
        # A checkout holds its customer's single in-flight slot exactly while a charge is
        # in flight; the unique column below then admits one such checkout per customer.
        # (IS NOT NULL is needed: a comparison with NULL is unknown, and CHECK lets it pass.)
        CheckConstraint(
            "(status IN ('processing', 'requires_action') AND in_flight_customer_id IS NOT NULL"
            " AND in_flight_customer_id = customer_id)"
            " OR (status NOT IN ('processing', 'requires_action')"
            " AND in_flight_customer_id IS NULL)",
            name="in_flight_slot",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[str] = mapped_column(String(20), default=CheckoutStatus.OPEN)
    amount_minor: Mapped[int] = mapped_column(MinorUnits)
    currency: Mapped[str] = mapped_column(String(3))
    in_flight_customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), unique=True
    )
    # Attempts count charges with a definite outcome; the key is the current attempt's
    # Stripe idempotency key, kept after an outage so that a retry with the same card
    # cannot charge twice on Stripe's side.
    attempt: Mapped[int] = mapped_column(default=0)
    attempt_key: Mapped[str | None] = mapped_column(String(100))
    payment_intent_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    payment_method_id: Mapped[str | None] = mapped_column(String(64))
    save_card: Mapped[bool] = mapped_column(Boolean, default=False)
    card_brand: Mapped[str | None] = mapped_column(String(20))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    card_exp_month: Mapped[int | None]
    card_exp_year: Mapped[int | None]
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    # A payment of one installment of a payment plan (0: its down payment), by hand: the
    # amount is what the installment still asks for, and the ledger applies the money to
    # the plan's invoices and installments (`portal.plans.payments`), not to what is
    # payable outside plans.
    plan_installment_id: Mapped[int | None] = mapped_column(
        ForeignKey("plan_installments.id", ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    customer: Mapped[Customer] = relationship(foreign_keys=[customer_id])
    invoices: Mapped[list[CheckoutInvoice]] = relationship(
        back_populates="checkout", cascade="all, delete-orphan", order_by="CheckoutInvoice.id"
    )
    payments: Mapped[list[Payment]] = relationship(order_by="Payment.id", viewonly=True)

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.currency)

    @property
    def state(self) -> CheckoutStatus:
        return CheckoutStatus(self.status)

    @property
    def is_open(self) -> bool:
        return self.state == CheckoutStatus.OPEN

    @property
    def is_paid(self) -> bool:
        return self.state == CheckoutStatus.SUCCEEDED


class CheckoutInvoice(db.Model):
    """An invoice the customer chose to pay in a checkout."""

    __tablename__ = "checkout_invoices"
    __table_args__ = (
        UniqueConstraint("checkout_id", "invoice_id", name="uq_checkout_invoices_pair"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    checkout_id: Mapped[int] = mapped_column(ForeignKey("checkouts.id", ondelete="CASCADE"))
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoices.id", ondelete="RESTRICT"), index=True
    )

    checkout: Mapped[Checkout] = relationship(back_populates="invoices")
    invoice: Mapped[Invoice] = relationship()


class WebhookOutcome(StrEnum):
    PENDING = "pending"  # stored on receipt; the applier has not taken it yet
    APPLIED = "applied"  # changed our records
    IGNORED = "ignored"  # not ours, not a type we act on, or nothing new (already recorded)
    REJECTED = "rejected"  # ours, but its amount, currency or metadata disagree: staff look
    FAILED = "failed"  # applying it raised MAX_ATTEMPTS times: a bug for staff to look at
    # about a payment not recorded yet (Stripe does not promise order): kept, with what it
    # waits for in `last_error`, and pending again once that payment is recorded
    DEFERRED = "deferred"


class WebhookEvent(db.Model):
    """A Stripe event, stored by its id on receipt (once, ever), then applied in a
    transaction of its own that also records its outcome: the inbox of `payments.inbox`."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        CheckConstraint(
            "outcome IN ('pending', 'applied', 'ignored', 'rejected', 'failed', 'deferred')",
            name="outcome_known",
        ),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        # Pending (or deferred) until processed, carrying what applying it needs.
        CheckConstraint(
            "(outcome IN ('pending', 'deferred')) = (processed_at IS NULL)",
            name="pending_until_processed",
        ),
        CheckConstraint(
            "outcome NOT IN ('pending', 'deferred') OR payload IS NOT NULL",
            name="pending_has_payload",
        ),
        # The applier's queue: only the pending rows, oldest first.
        Index(
            "ix_webhook_events_pending",
            "id",
            postgresql_where=text("outcome = 'pending'"),
            sqlite_where=text("outcome = 'pending'"),
        ),
        # The events waiting for a payment, by the PaymentIntent they wait for.
        Index(
            "ix_webhook_events_deferred",
            "payment_intent_id",
            postgresql_where=text("outcome = 'deferred'"),
            sqlite_where=text("outcome = 'deferred'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100))
    payment_intent_id: Mapped[str | None] = mapped_column(String(64), index=True)
    checkout_id: Mapped[int | None] = mapped_column(ForeignKey("checkouts.id", ondelete="SET NULL"))
    outcome: Mapped[str] = mapped_column(String(16))
    # What applying needs of the event's PaymentIntent, never card data (`GatewayEvent.kept`).
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(String(200))  # or, deferred: what it waits for
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
