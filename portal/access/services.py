"""Emailed links: issue, open, revoke, and re-send on request."""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, select

from portal.access.models import AccessLink, LinkRequest, LinkRequestOutcome, SessionEnd
from portal.audit.actors import Actor
from portal.audit.services import audit_row, record_event
from portal.customers.models import Customer
from portal.errors import DomainError
from portal.extensions import db
from portal.inputs import local_redirect_target
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
    actor: Actor,
    invoice: Invoice | None = None,
    purpose: str = "manual",
    target: str | None = None,
) -> IssuedLink:
    """Create a link to this customer's account (or one of their invoices).

    `target`, a path on this site ("/disputes/12"), is where opening the link leads
    (checked again when it is opened: `link_destination`); DomainError if it is not a
    local path (`inputs.local_redirect_target`) or is longer than 200 characters."""
    if invoice is not None and invoice.customer_id != customer.id:
        raise DomainError("the invoice belongs to another customer")
    if target is not None and (len(target) > 200 or local_redirect_target(target) is None):
        raise DomainError("a link's target must be a path on this site")
    row, token = new_link_row(customer.id, now=now, ttl=ttl, purpose=purpose)
    link = AccessLink(**row, invoice_id=invoice.id if invoice else None, target=target)
    db.session.add(link)
    db.session.flush()
    record_event(
        "link.issued",
        actor=actor,
        now=now,
        customer_id=customer.id,
        subject=link,
        data={
            "purpose": purpose,
            "invoice": invoice.number if invoice else None,
            "target": target,
        },
    )
    return IssuedLink(link, token)


def link_destination(link: AccessLink) -> str | None:
    """The path opening `link` leads to: its target if it is (still) a local path
    (`inputs.local_redirect_target`, the rule for any redirect taken from stored or sent
    data); None for the default (its invoice, else the account)."""
    if link.target is None:
        return None
    return local_redirect_target(link.target)


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
    link_id: int, customer_id: int, *, purpose: str, actor: Actor, now: datetime
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
        actor=Actor.customer(link.customer_id),
        now=now,
        customer_id=link.customer_id,
        subject=link,
        data={"ip": ip_address},
    )
    return link


def revoke_link(link: AccessLink, *, now: datetime, actor: Actor) -> None:
    """Cancel the link and end, at once, every session opened from it."""
    from portal.access.sessions import end_sessions_of_link

    if link.revoked_at is None:
        link.revoked_at = now
        end_sessions_of_link(link.id, now=now, reason=SessionEnd.LINK_REVOKED)
        record_event(
            "link.revoked", actor=actor, now=now, customer_id=link.customer_id, subject=link
        )


# --- lost links ----------------------------------------------------------------------------
RECOVERY_LINKS_PER_HOUR = 3  # per account: the form must not flood anyone's mailbox
# Per account, at most one lost-link email in this interval: three presses of the form in
# a few seconds (a double click, an impatient reload) send one link, not three.
RECOVERY_LINK_INTERVAL = timedelta(minutes=5)
RECOVERY_ACCOUNTS_PER_REQUEST = 10  # an address shared by many accounts gets this many links
RECOVERY_BATCH = 200  # requests matched per pass of the worker
# What people typed into the form (addresses of customers or not) is kept this long after
# it was answered, for support questions, then deleted with the next pass.
RECOVERY_REQUESTS_KEPT = timedelta(days=30)
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2212\ufe63\uff0d"


def normalize_email(email: str) -> str:
    """An address as the lost-link matching compares it: stripped, NFC, lower case.

    Unicode letters are kept as they are (an address may hold them: RFC 6531), so that
    such customers can recover their link like any other.
    """
    return unicodedata.normalize("NFC", email.strip()).lower()


def normalize_account_number(account_number: str) -> str:
    """`acc 000-12` and `ACC00012` are the same account: no case, spaces or dashes."""
    text = unicodedata.normalize("NFKC", account_number)
    return "".join(c for c in text if not c.isspace() and c not in _DASHES).upper()


def record_link_request(account_number: str | None, email: str, *, now: datetime) -> LinkRequest:
    """Store a lost-link request for the worker (`match_link_requests`); look nothing up.

    The form answers the same, in the same time, whatever was asked: one insert, whether
    or not the address or account exists. An empty account number asks by address alone.
    """
    account_key = normalize_account_number(account_number or "") or None
    asked = LinkRequest(
        email=normalize_email(email)[:254],
        account_key=account_key[:64] if account_key else None,
        created_at=now,
    )
    db.session.add(asked)
    db.session.flush()
    return asked


def customers_for_request(asked: LinkRequest) -> list[Customer]:
    """The customers this request names: same address and, if it gives one, same account."""
    key = asked.email
    stored = func.lower(func.trim(Customer.email))
    # SQLite's lower() folds ASCII only: an address with other letters is found by its
    # length and compared here, where Python folds every letter.
    if key.isascii():
        condition = stored == key
    else:
        condition = func.length(func.trim(Customer.email)) == len(key)
    candidates = db.session.scalars(select(Customer).where(condition).order_by(Customer.id)).all()
    return [
        customer
        for customer in candidates
        if normalize_email(customer.email) == key
        and (
            asked.account_key is None
            or normalize_account_number(customer.account_number) == asked.account_key
        )
    ][:RECOVERY_ACCOUNTS_PER_REQUEST]


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


def answer_link_request(asked: LinkRequest, *, now: datetime, ttl: timedelta) -> LinkRequestOutcome:
    """Mail a fresh link to every customer the request names: at most one per
    RECOVERY_LINK_INTERVAL (repeats of a request already answered are CAPPED) and
    RECOVERY_LINKS_PER_HOUR per account."""
    from portal.notifications.services import queue_email

    customers = customers_for_request(asked)
    sent = 0
    for customer in customers:
        if count_recent_recoveries(customer, now - timedelta(hours=1)) >= RECOVERY_LINKS_PER_HOUR:
            continue
        if count_recent_recoveries(customer, now - RECOVERY_LINK_INTERVAL):
            continue  # the link mailed minutes ago answers this request too
        # The link itself is issued when the email is sent (nothing secret waits in the outbox).
        queue_email(
            customer,
            kind="access_link",
            template="access_link",
            context={"expires_at": now + ttl},
            now=now,
            with_portal_link=True,
        )
        sent += 1
    if sent:
        outcome = LinkRequestOutcome.SENT
    elif customers:
        outcome = LinkRequestOutcome.CAPPED
    else:
        outcome = LinkRequestOutcome.NO_MATCH
    asked.processed_at, asked.outcome, asked.links_sent = now, outcome, sent
    return outcome


def match_link_requests(
    *, now: datetime, ttl: timedelta, limit: int = RECOVERY_BATCH
) -> dict[LinkRequestOutcome, int]:
    """The worker's job: answer the oldest pending requests, `limit` at most, and forget
    those answered more than RECOVERY_REQUESTS_KEPT ago; flushes."""
    pending = db.session.scalars(
        select(LinkRequest)
        .where(LinkRequest.processed_at.is_(None))
        .order_by(LinkRequest.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    counts = dict.fromkeys(LinkRequestOutcome, 0)
    for asked in pending:
        counts[answer_link_request(asked, now=now, ttl=ttl)] += 1
        db.session.flush()
    db.session.execute(
        delete(LinkRequest).where(LinkRequest.processed_at < now - RECOVERY_REQUESTS_KEPT)
    )
    return counts
