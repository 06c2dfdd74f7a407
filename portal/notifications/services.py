"""Queue customer email in the outbox, rendered in the customer's language."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from flask import current_app, render_template
from flask_babel import force_locale

from portal.config import SUPPORTED_LOCALES
from portal.customers.models import Customer
from portal.extensions import db
from portal.notifications.models import OutboxMessage


def new_message_id() -> str:
    """An RFC 5322 Message-ID fixed at queue time, so that retries reuse it."""
    domain = current_app.config["CREDITOR_EMAIL"].rpartition("@")[2] or "portal.invalid"
    return f"<{uuid.uuid4().hex}@{domain}>"


def locale_for(customer: Customer) -> str:
    stored = (customer.locale or "").split("_")[0].lower()
    return stored if stored in SUPPORTED_LOCALES else "en"


def queue_email(
    customer: Customer,
    *,
    kind: str,
    template: str,
    context: dict[str, Any],
    now: datetime,
) -> OutboxMessage:
    """Render `emails/<template>.{subject,txt,html}` in the customer's locale into the outbox."""
    locale = locale_for(customer)
    with force_locale(locale):
        context = {"customer": customer, "locale": locale, **context}
        subject = render_template(f"emails/{template}.subject.txt", **context).strip()
        text = render_template(f"emails/{template}.txt", **context)
        html = render_template(f"emails/{template}.html", **context)
    message = OutboxMessage(
        message_id=new_message_id(),
        customer_id=customer.id,
        kind=kind,
        to_address=customer.email,
        locale=locale,
        subject=subject,
        body_text=text,
        body_html=html,
        created_at=now,
        not_before=now,
    )
    db.session.add(message)
    return message
