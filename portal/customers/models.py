from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.db import UTCDateTime, utcnow
from portal.extensions import db


class CustomerKind(StrEnum):
    BUSINESS = "business"
    CONSUMER = "consumer"


class Customer(db.Model):
    """A debtor account. Logged in through an emailed link, never with a password."""

    __tablename__ = "customers"
    __table_args__ = (
        CheckConstraint("kind IN ('business', 'consumer')", name="kind_known"),
        CheckConstraint("length(currency) = 3", name="currency_iso"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_number: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(40))
    locale: Mapped[str | None] = mapped_column(String(8))
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(16), default=CustomerKind.BUSINESS)
    segment: Mapped[str] = mapped_column(String(40), default="standard")
    timezone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    def get_id(self) -> str:
        # Namespaced so that staff principals (a later capability) never collide with customers.
        return f"customer:{self.id}"

    @property
    def is_consumer(self) -> bool:
        return self.kind == CustomerKind.CONSUMER

    def __repr__(self) -> str:
        return f"<Customer {self.account_number}>"
