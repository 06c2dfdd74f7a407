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
    # Where opening it leads, a path on this site ("/disputes/12"); None: the invoice if
    # there is one, else the account. Checked again when opened (`inputs.local_redirect_target`).
    target: Mapped[str | None] = mapped_column(String(200))
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
    CAPPED = "capped"  # matched, but every matching account had its links for the hour,
    # or one minutes ago (services.RECOVERY_LINK_INTERVAL)


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


class PrincipalKind(StrEnum):
    """Who a session belongs to. Each kind has its own cookie and limits (`sessions.RULES`)."""

    CUSTOMER = "customer"
    STAFF = "staff"


class SessionEnd(StrEnum):
    """Why a session ended (`principal_sessions.ended_reason`)."""

    SIGNED_OUT = "signed_out"
    IDLE = "idle"
    EXPIRED = "expired"  # its absolute lifetime (never longer than its link's) ran out
    LINK_REVOKED = "link_revoked"
    LINK_EXPIRED = "link_expired"
    REPLACED = "replaced"  # the same browser signed in again (rotation on entry)
    PRINCIPAL_DISABLED = "principal_disabled"  # staff deactivated, password or 2FA reset


class PrincipalSession(db.Model):
    """A signed-in browser, checked on every request (`access.sessions`).

    The cookie holds a random token; only its SHA-256 is stored, so a database dump
    opens no session. Ending a session is a write here: a copied cookie stops working
    at once (sign-out, idle limit, absolute lifetime, the link revoked or expired).
    Times are aware UTC datetimes.
    """

    __tablename__ = "principal_sessions"
    __table_args__ = (
        CheckConstraint("principal_kind IN ('customer', 'staff')", name="principal_kind_known"),
        # A customer session is always opened from a link, and belongs to its customer.
        CheckConstraint(
            "principal_kind <> 'customer' OR (customer_id IS NOT NULL AND link_id IS NOT NULL)",
            name="customer_session_has_customer_and_link",
        ),
        # A staff session belongs to a staff member, and to no customer or link.
        CheckConstraint(
            "principal_kind <> 'staff' OR (staff_id IS NOT NULL AND customer_id IS NULL"
            " AND link_id IS NULL)",
            name="staff_session_has_staff_member",
        ),
        CheckConstraint("expires_at > created_at", name="expires_after_created"),
        CheckConstraint("(ended_at IS NULL) = (ended_reason IS NULL)", name="ended_with_reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    principal_kind: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    link_id: Mapped[int | None] = mapped_column(
        ForeignKey("access_links.id", ondelete="CASCADE"), index=True
    )
    staff_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_members.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Written at most once a minute (`sessions.TOUCH_EVERY`), so idle is exact to a minute.
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())  # absolute end
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_reason: Mapped[str | None] = mapped_column(String(32))

    @property
    def is_ended(self) -> bool:
        return self.ended_at is not None
