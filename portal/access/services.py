"""Emailed links: issue, open, revoke, and re-send on request."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select

from portal.access.models import AccessLink, SessionEnd
from portal.audit.services import audit_row, record_event
from portal.customers.models import Customer
from portal.customers.queries import get_customer_by_account
from portal.errors import DomainError
from portal.extensions import db
from portal.invoices.models import Invoice

TOKEN_BYTES = 32  # 256 bits of randomness; DESIGN.md asks for at least 128


class LinkProblem(StrEnum):
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"


class LinkNotUsable(DomainError):
    def __init__(self, problem: LinkProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


@dataclass(frozen=True)
class IssuedLink:
    link: AccessLink
    token: str  # shown once, never stored

    def url(self, base_url: str) -> str:
        return build_link_url(base_url, self.token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def build_link_url(base_url: str, token: str) -> str:
    """Links are built from the configured base URL, never from a request's Host header."""
    return f"{base_url.rstrip('/')}/l/{token}"


def issue_link(
    customer: Customer,
    *,
    now: datetime,
    ttl: timedelta,
    actor: str,
    invoice: Invoice | None = None,
    purpose: str = "manual",
) -> IssuedLink:
    """Create a link to this customer's account (or one of their invoices)."""
    if invoice is not None and invoice.customer_id != customer.id:
        raise DomainError("the invoice belongs to another customer")
    row, token = new_link_row(customer.id, now=now, ttl=ttl, purpose=purpose)
    link = AccessLink(**row, invoice_id=invoice.id if invoice else None)
    db.session.add(link)
    db.session.flush()
    record_event(
        "link.issued",
        actor=actor,
        now=now,
        customer_id=customer.id,
        subject=link,
        data={"purpose": purpose, "invoice": invoice.number if invoice else None},
    )
    return IssuedLink(link, token)


def new_link_row(
    customer_id: int, *, now: datetime, ttl: timedelta, purpose: str
) -> tuple[dict[str, Any], str]:
    """An account link's row, for a bulk insert, and its token (shown once, never stored).

    Whoever inserts it audits it with `link_issued_row`, as `issue_link` does."""
    if ttl <= timedelta(0):
        raise DomainError("a link must live for a positive time")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = {
        "customer_id": customer_id,
        "token_hash": hash_token(token),
        "purpose": purpose,
        "created_at": now,
        "expires_at": now + ttl,
    }
    return row, token


def link_issued_row(
    link_id: int, customer_id: int, *, purpose: str, actor: str, now: datetime
) -> dict[str, Any]:
    return audit_row(
        "link.issued",
        actor=actor,
        now=now,
        customer_id=customer_id,
        subject=("access_links", link_id),
        data={"purpose": purpose, "invoice": None},
    )


def find_link(token: str) -> AccessLink | None:
    if not token or len(token) > 128:
        return None
    return db.session.scalar(select(AccessLink).where(AccessLink.token_hash == hash_token(token)))


def check_link(token: str, now: datetime) -> AccessLink:
    """The usable link for this token, or LinkNotUsable saying why."""
    link = find_link(token)
    if link is None:
        raise LinkNotUsable(LinkProblem.UNKNOWN)
    if link.is_revoked:
        raise LinkNotUsable(LinkProblem.REVOKED)
    if link.is_expired(now):
        raise LinkNotUsable(LinkProblem.EXPIRED)
    return link


def open_link(token: str, *, now: datetime, ip_address: str | None) -> AccessLink:
    """Record that a person (not a mail scanner: this is the POST) opened the link."""
    link = check_link(token, now)
    link.last_opened_at = now
    record_event(
        "link.opened",
        actor=f"customer:{link.customer_id}",
        now=now,
        customer_id=link.customer_id,
        subject=link,
        data={"ip": ip_address},
    )
    return link


def revoke_link(link: AccessLink, *, now: datetime, actor: str) -> None:
    """Cancel the link and end, at once, every session opened from it."""
    from portal.access.sessions import end_sessions_of_link

    if link.revoked_at is None:
        link.revoked_at = now
        end_sessions_of_link(link.id, now=now, reason=SessionEnd.LINK_REVOKED)
        record_event(
            "link.revoked", actor=actor, now=now, customer_id=link.customer_id, subject=link
        )


def find_customer_for_recovery(account_number: str, email: str) -> Customer | None:
    account_number = account_number.strip()
    email = email.strip()
    if not account_number or not email:
        return None
    customer = get_customer_by_account(account_number)
    if customer is None:
        return None
    # Constant-time comparison of the normalized addresses.
    if not hmac.compare_digest(customer.email.strip().lower(), email.lower()):
        return None
    return customer


def count_recent_recoveries(customer: Customer, since: datetime) -> int:
    """Lost-link emails queued for this customer since `since` (sent or not)."""
    from portal.notifications.models import OutboxMessage

    return (
        db.session.scalar(
            select(func.count(OutboxMessage.id)).where(
                OutboxMessage.customer_id == customer.id,
                OutboxMessage.kind == "access_link",
                OutboxMessage.created_at >= since,
            )
        )
        or 0
    )


RECOVERY_LINKS_PER_HOUR = 3


def request_new_link(account_number: str, email: str, *, now: datetime, ttl: timedelta) -> None:
    """Mail a fresh link if the pair matches; say nothing either way (no enumeration).

    At most RECOVERY_LINKS_PER_HOUR links per account per hour, so that the form
    cannot be used to flood someone's mailbox.
    """
    from portal.notifications.services import queue_email

    customer = find_customer_for_recovery(account_number, email)
    if customer is None:
        return
    if count_recent_recoveries(customer, now - timedelta(hours=1)) >= RECOVERY_LINKS_PER_HOUR:
        return
    # The link itself is issued when the email is sent (nothing secret waits in the outbox).
    queue_email(
        customer,
        kind="access_link",
        template="access_link",
        context={"expires_at": now + ttl},
        now=now,
        with_portal_link=True,
    )
