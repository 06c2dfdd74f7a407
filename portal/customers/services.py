from __future__ import annotations

from datetime import datetime

from portal.audit.actors import Actor
from portal.audit.services import record_event
from portal.config import SUPPORTED_LOCALES
from portal.customers.models import Customer
from portal.errors import DomainError


def set_customer_locale(customer: Customer, locale: str, *, now: datetime, actor: Actor) -> None:
    """Remember the language a customer chose: emails will use it too."""
    if locale not in SUPPORTED_LOCALES:
        raise DomainError("unsupported language")
    if customer.locale != locale:
        record_event(
            "customer.locale_changed",
            actor=actor,
            now=now,
            customer_id=customer.id,
            subject=customer,
            data={"from": customer.locale, "to": locale},
        )
        customer.locale = locale
