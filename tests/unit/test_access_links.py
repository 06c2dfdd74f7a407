"""Link tokens: random, stored hashed, expiring, revocable, bound to one account."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.access.models import AccessLink
from portal.access.services import (
    LinkNotUsable,
    LinkProblem,
    build_link_url,
    check_link,
    hash_token,
    issue_link,
    open_link,
    revoke_link,
)
from portal.audit.models import AuditEvent
from portal.db import utcnow
from portal.errors import DomainError
from portal.extensions import db
from tests.factories import make_customer, make_invoice


def test_token_has_at_least_128_bits_and_only_its_hash_is_stored(db_session):
    customer = make_customer()
    issued = issue_link(customer, now=utcnow(), ttl=timedelta(days=30), actor="test")
    assert len(issued.token) >= 22  # 128 bits in URL-safe base64
    stored = db.session.scalar(select(AccessLink).where(AccessLink.id == issued.link.id))
    assert stored.token_hash == hash_token(issued.token)
    assert issued.token not in stored.token_hash


def test_tokens_are_unique(db_session):
    customer = make_customer()
    tokens = {
        issue_link(customer, now=utcnow(), ttl=timedelta(days=1), actor="test").token
        for _ in range(50)
    }
    assert len(tokens) == 50


def test_link_expires_after_its_ttl(db_session):
    customer = make_customer()
    now = utcnow()
    issued = issue_link(customer, now=now, ttl=timedelta(days=30), actor="test")
    assert check_link(issued.token, now + timedelta(days=29, hours=23)).id == issued.link.id
    with pytest.raises(LinkNotUsable) as error:
        check_link(issued.token, now + timedelta(days=30))
    assert error.value.problem == LinkProblem.EXPIRED


def test_revoked_link_is_refused(db_session):
    customer = make_customer()
    now = utcnow()
    issued = issue_link(customer, now=now, ttl=timedelta(days=30), actor="test")
    revoke_link(issued.link, now=now, actor="staff:1")
    with pytest.raises(LinkNotUsable) as error:
        check_link(issued.token, now)
    assert error.value.problem == LinkProblem.REVOKED


@pytest.mark.parametrize("token", ["", "x", "a" * 500])
def test_unknown_or_absurd_tokens_are_unknown(db_session, token):
    with pytest.raises(LinkNotUsable) as error:
        check_link(token, utcnow())
    assert error.value.problem == LinkProblem.UNKNOWN


def test_opening_records_time_and_audit_event(db_session):
    customer = make_customer()
    now = utcnow()
    issued = issue_link(customer, now=now, ttl=timedelta(days=30), actor="test")
    open_link(issued.token, now=now, ip_address="192.0.2.1")
    assert issued.link.last_opened_at == now
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "link.opened"))
    assert event.customer_id == customer.id
    assert event.data == {"ip": "192.0.2.1"}


def test_link_cannot_be_bound_to_another_customers_invoice(db_session):
    owner, other = make_customer(), make_customer()
    invoice = make_invoice(owner)
    with pytest.raises(DomainError):
        issue_link(other, now=utcnow(), ttl=timedelta(days=1), actor="test", invoice=invoice)


def test_link_needs_a_positive_lifetime(db_session):
    with pytest.raises(DomainError):
        issue_link(make_customer(), now=utcnow(), ttl=timedelta(0), actor="test")


def test_url_is_built_from_the_base_url():
    assert build_link_url("https://pay.example.com/", "tok") == "https://pay.example.com/l/tok"
