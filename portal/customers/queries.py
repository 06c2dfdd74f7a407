from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select

from portal.customers.models import Customer
from portal.extensions import db
from portal.i18n import zone_or_default


def customer_today(customer: Customer, now: datetime) -> date:
    """Today's date where the customer lives: what 'overdue' means to them."""
    return now.astimezone(zone_or_default(customer.timezone)).date()


def get_customer_by_account(account_number: str) -> Customer | None:
    return db.session.scalar(select(Customer).where(Customer.account_number == account_number))
