"""What a specialist changes from the desk: links, refunds. Each takes the acting staff
member as an `Actor` and leaves an audit row; none commits."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from portal.access.models import AccessLink, SessionEnd
from portal.access.services import revoke_link
from portal.access.sessions import end_sessions_of_customer
from portal.audit.actors import Actor
from portal.audit.services import record_event
from portal.customers.models import Customer
from portal.errors import DomainError
from portal.extensions import db
from portal.money import Money
from portal.notifications.models import OutboxMessage
from portal.notifications.services import queue_email
from portal.payments.ledger import refund_payment
from portal.payments.locks import lock_account
from portal.payments.models import Payment, Refund
from portal.payments.queries import get_payment_for

REFUND_REASON_MAX = 500


class RefundFormStale(DomainError):
    message = _l(
        "This payment was refunded since the page was opened; nothing more was refunded. "
        "Check the payment below and try again if needed."
    )


class RefundReasonMissing(DomainError):
    message = _l("Give the reason for the refund.")


class PaymentNotFound(DomainError):
    message = _l("This payment is not this customer's.")


def send_fresh_link(customer: Customer, *, actor: Actor, now: datetime) -> OutboxMessage:
    """Email the customer a new link to their account (issued when the email is sent)."""
    ttl = timedelta(days=current_app.config["ACCESS_LINK_TTL_DAYS"])
    message = queue_email(
        customer,
        kind="account_link",
        template="account_link",
        context={"expires_at": now + ttl},
        now=now,
        with_portal_link=True,
    )
    if message is None:  # only collection email is ever held back; this is transactional
        raise DomainError()
    db.session.flush()
    record_event(
        "link.sent_by_staff",
        actor=actor,
        now=now,
        customer_id=customer.id,
        subject=message,
    )
    return message


def revoke_all_links(customer: Customer, *, actor: Actor, now: datetime) -> int:
    """Revoke every live link of the customer and end all their sessions at once.

    Returns how many links were revoked (0 if none were live: sessions end anyway)."""
    links = db.session.scalars(
        select(AccessLink).where(
            AccessLink.customer_id == customer.id, AccessLink.revoked_at.is_(None)
        )
    ).all()
    for link in links:
        revoke_link(link, now=now, actor=actor)
    end_sessions_of_customer(customer.id, now=now, reason=SessionEnd.LINK_REVOKED)
    record_event(
        "links.revoked_all",
        actor=actor,
        now=now,
        customer_id=customer.id,
        subject=customer,
        data={"links": len(links)},
    )
    return len(links)


def refund_from_desk(
    customer: Customer,
    payment_id: int,
    amount: Money | None,
    *,
    reason: str,
    refunds_seen: int,
    actor: Actor,
    now: datetime,
) -> Refund:
    """Refund all (`amount` None) or part of one of the customer's card payments through
    the ledger's `refund_payment` (Stripe, with an idempotency key), and email the
    customer.

    Double-submit safe: the form carries how many refunds the payment had when the page
    was drawn (`refunds_seen`); a second submission finds one more and is refused
    (RefundFormStale) before Stripe is called. RefundRefused for a payment not by card or
    an amount above what is left; PaymentNotFound for another customer's payment."""
    reason = reason.strip()
    if not reason or len(reason) > REFUND_REASON_MAX:
        raise RefundReasonMissing()
    payment: Payment | None = get_payment_for(customer, payment_id)
    if payment is None:
        raise PaymentNotFound()
    # Under the customer's lock (the one `refund_payment` takes again: re-entrant in a
    # transaction), so that two submissions at once count the same refunds.
    lock_account(customer.id)
    db.session.refresh(payment, ["refunds"])
    if len(payment.refunds) != refunds_seen:
        raise RefundFormStale()
    refund = refund_payment(payment, amount, actor=actor, now=now, reason=reason)
    queue_email(
        customer,
        kind="refund_notice",
        template="refund_notice",
        context={"refund": refund, "payment": payment},
        now=now,
    )
    return refund
