from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

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


@dataclass(frozen=True, slots=True)
class CustomerSnapshot:
    """A signed-in customer's columns as a page shows them, read-only: what the session
    check read with the session (no ORM object). Pages that write use the `Customer`."""

    id: int
    account_number: str
    name: str
    email: str
    currency: str  # ISO 4217, the account's
    locale: str | None  # stored language ("es_MX"), or None
    timezone: str | None  # IANA name, or None (the creditor's default)

    @classmethod
    def of(cls, source: Any, id_: int) -> CustomerSnapshot:
        """The snapshot of a Customer (or of a row with its columns by name), whose id is `id_`."""
        return cls(
            id_,
            source.account_number,
            source.name,
            source.email,
            source.currency,
            source.locale,
            source.timezone,
        )
