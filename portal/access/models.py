from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.customers.models import Customer
from portal.db import UTCDateTime, utcnow
from portal.extensions import db
from portal.invoices.models import Invoice


class AccessLink(db.Model):
    """A link mailed to a customer. Only the SHA-256 of its token is stored."""

    __tablename__ = "access_links"
    __table_args__ = (CheckConstraint("expires_at > created_at", name="expires_after_created"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(32), default="manual")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    customer: Mapped[Customer] = relationship()
    invoice: Mapped[Invoice | None] = relationship()

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


class LinkRequestOutcome(StrEnum):
    """What the worker did with a lost-link request (the person who asked never learns it)."""

    SENT = "sent"  # at least one link mailed
    NO_MATCH = "no_match"  # no customer has that address (and account number)
    CAPPED = "capped"  # matched, but every matching account had its links for the hour


class LinkRequest(db.Model):
    """A lost-link request, stored and answered at once; the worker matches it and mails.

    The form's answer and its cost are then the same whether or not anything matches
    (no enumeration by content or by timing). Both values are kept normalized, as the
    worker compares them: `email` stripped, NFC, lower case; `account_key` upper case
    without spaces or dashes (None: the customer asked by email address alone).
    """

    __tablename__ = "link_requests"
    __table_args__ = (
        CheckConstraint(
            "outcome IS NULL OR outcome IN ('sent', 'no_match', 'capped')", name="outcome_known"
        ),
        CheckConstraint("(processed_at IS NULL) = (outcome IS NULL)", name="processed_has_outcome"),
        Index("ix_link_requests_pending", "processed_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    account_key: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(String(16))
    links_sent: Mapped[int] = mapped_column(default=0)
