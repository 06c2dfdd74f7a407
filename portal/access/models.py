from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
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
