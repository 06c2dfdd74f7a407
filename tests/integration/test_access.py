"""Emailed links: landing, session start, expiry, revocation, lost link, sign-out."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from portal.access.models import AccessLink, PrincipalSession
from portal.access.services import hash_token, revoke_link
from portal.audit.models import AuditEvent
from portal.db import utcnow
from portal.extensions import db
from tests.factories import (
    csrf_token_from,
    login_as,
    make_customer,
    make_invoice,
    make_link_token,
)


def test_get_of_link_shows_neutral_landing_without_account_data(client):
    # given
    customer = make_customer(name="Secretive Corp")
    make_invoice(customer, number="INV-SECRET", lines=[("Consulting", "1", "999.99")])
    token = make_link_token(customer)
    # when
    response = client.get(f"/l/{token}")
    # then
    assert response.status_code == 200
    assert "Continue to my account" in response.text
    assert "Secretive Corp" not in response.text
    assert "INV-SECRET" not in response.text
    assert "999.99" not in response.text
    link = db.session.scalar(select(AccessLink).where(AccessLink.token_hash == hash_token(token)))
    assert link.last_opened_at is None
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "link.opened")) is None


def test_head_of_link_does_not_open_it(client):
    customer = make_customer()
    token = make_link_token(customer)
    assert client.head(f"/l/{token}").status_code == 200
    assert client.get("/account").status_code == 401


def test_post_of_link_starts_session_and_records_opening(client):
    customer = make_customer(name="Ada Lovelace Ltd")
    response = login_as(client, customer)
    assert response.status_code == 302
    assert response.headers["Location"] == "/account"
    page = client.get("/account")
    assert page.status_code == 200
    assert "Ada Lovelace Ltd" in page.text
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "link.opened"))
    assert event.customer_id == customer.id


def test_post_without_csrf_token_does_not_open(client):
    customer = make_customer()
    token = make_link_token(customer)
    response = client.post(f"/l/{token}", data={})
    assert response.status_code == 400
    assert client.get("/account").status_code == 401


def test_invoice_bound_link_lands_on_the_invoice(client):
    customer = make_customer()
    invoice = make_invoice(customer, number="INV-BOUND")
    response = login_as(client, customer, invoice=invoice)
    assert response.headers["Location"] == "/invoices/INV-BOUND"


def test_expired_link_explains_itself_and_offers_new_link(client):
    customer = make_customer()
    token = make_link_token(customer, now=utcnow() - timedelta(days=31), ttl=timedelta(days=30))
    response = client.get(f"/l/{token}")
    assert response.status_code == 410
    assert "This link has expired" in response.text
    assert 'action="/link/new"' in response.text


def test_revoked_link_explains_itself_and_ends_its_sessions(client):
    # given a customer signed in from a link
    customer = make_customer()
    login_as(client, customer)
    link = db.session.scalar(select(AccessLink).where(AccessLink.customer_id == customer.id))
    # when staff revoke it
    revoke_link(link, now=utcnow(), actor="staff:1")
    db.session.flush()
    # then the session no longer opens the account, and the link explains itself
    assert client.get("/account").status_code == 401
    token = make_link_token(customer)
    other = db.session.scalar(select(AccessLink).where(AccessLink.token_hash == hash_token(token)))
    revoke_link(other, now=utcnow(), actor="staff:1")
    response = client.get(f"/l/{token}")
    assert response.status_code == 410
    assert "This link has been cancelled" in response.text


def test_unknown_token_is_not_found_with_lost_link_form(client):
    response = client.get("/l/not-a-real-token")
    assert response.status_code == 404
    assert 'action="/link/new"' in response.text


def test_account_requires_a_session(client):
    response = client.get("/account")
    assert response.status_code == 401
    assert "open the link from your email" in response.text


def test_session_rotates_on_entry(client):
    customer = make_customer()
    client.get("/")
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    login_as(client, customer)
    with client.session_transaction() as session:
        assert "planted" not in session


def test_idle_session_expires(client, app):
    customer = make_customer()
    login_as(client, customer)
    idle = timedelta(minutes=app.config["SESSION_IDLE_MINUTES"])
    row = db.session.scalar(select(PrincipalSession))
    row.last_seen_at = utcnow() - idle - timedelta(seconds=1)
    db.session.flush()
    response = client.get("/account")
    assert response.status_code == 302
    assert response.headers["Location"] == "/signed-out"
    assert client.get("/account").status_code == 401


def test_sign_out_ends_session(client):
    customer = make_customer()
    login_as(client, customer)
    page = client.get("/account")
    response = client.post("/sign-out", data={"csrf_token": csrf_token_from(page.text)})
    assert response.headers["Location"] == "/signed-out"
    assert client.get("/account").status_code == 401


def test_link_opening_is_rate_limited(client, app):
    # LINK_RATE_LIMIT: 20 a minute per address
    statuses = [client.get(f"/l/guess-{i}").status_code for i in range(25)]
    assert statuses == [404] * 20 + [429] * 5
