"""Server-side sessions: a copied session cookie stops working as soon as the session ends."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from portal.access.models import AccessLink, PrincipalKind, PrincipalSession, SessionEnd
from portal.access.services import hash_token, revoke_link
from portal.access.sessions import new_session_token, rules_for
from portal.db import utcnow
from portal.extensions import db
from tests.factories import csrf_token_from, login_as, make_customer, make_invoice

COOKIE = "portal_customer"


def _signed_in(client: FlaskClient):  # type: ignore[no-untyped-def]
    customer = make_customer(name="Copied Cookie Ltd")
    make_invoice(customer, number="INV-COPY")
    login_as(client, customer)
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return customer, cookie.value


def _thief(app: Flask, token: str) -> FlaskClient:
    """Another browser holding a copy of the victim's session cookie."""
    other = app.test_client()
    other.set_cookie(COOKIE, token)
    return other


def _session_row() -> PrincipalSession:
    return db.session.scalar(select(PrincipalSession).order_by(PrincipalSession.id.desc()))


def _assert_refused(other: FlaskClient) -> None:
    for path in ("/account", "/account/statement.pdf", "/invoices/INV-COPY"):
        response = other.get(path)
        assert response.status_code in (302, 401), path
        assert "Copied Cookie Ltd" not in response.get_data(as_text=True)


def test_copied_cookie_works_while_the_session_lives(client, app):
    _customer, token = _signed_in(client)
    page = _thief(app, token).get("/account")
    assert page.status_code == 200
    assert "Copied Cookie Ltd" in page.text


def test_copied_cookie_is_refused_after_sign_out(client, app):
    # given a session whose cookie was copied
    _customer, token = _signed_in(client)
    # when its owner signs out
    page = client.get("/account")
    client.post("/sign-out", data={"csrf_token": csrf_token_from(page.text)})
    # then the copy opens nothing, and the row says why
    _assert_refused(_thief(app, token))
    row = _session_row()
    assert row.ended_reason == SessionEnd.SIGNED_OUT
    assert client.get_cookie(COOKIE) is None


def test_copied_cookie_is_refused_after_the_link_expires(client, app):
    _customer, token = _signed_in(client)
    link = db.session.get(AccessLink, _session_row().link_id)
    link.created_at = utcnow() - timedelta(days=30)
    link.expires_at = utcnow() - timedelta(seconds=1)
    db.session.flush()
    _assert_refused(_thief(app, token))
    assert _session_row().ended_reason == SessionEnd.LINK_EXPIRED


def test_copied_cookie_is_refused_after_the_link_is_revoked(client, app):
    _customer, token = _signed_in(client)
    link = db.session.get(AccessLink, _session_row().link_id)
    revoke_link(link, now=utcnow(), actor="staff:1")
    db.session.flush()
    _assert_refused(_thief(app, token))
    assert _session_row().ended_reason == SessionEnd.LINK_REVOKED


def test_copied_cookie_is_refused_after_the_idle_limit(client, app):
    _customer, token = _signed_in(client)
    row = _session_row()
    row.last_seen_at = utcnow() - timedelta(minutes=app.config["SESSION_IDLE_MINUTES"], seconds=1)
    db.session.flush()
    response = _thief(app, token).get("/account")
    assert response.status_code == 302
    assert response.headers["Location"] == "/signed-out"
    assert _session_row().ended_reason == SessionEnd.IDLE
    # the owner's own cookie is dead too
    assert client.get("/account").status_code == 401


def test_copied_cookie_is_refused_after_the_absolute_lifetime(client, app):
    _customer, token = _signed_in(client)
    row = _session_row()
    # Active all along (seen a second ago), but past its absolute end.
    row.created_at = utcnow() - timedelta(hours=app.config["CUSTOMER_SESSION_MAX_HOURS"], minutes=1)
    row.expires_at = utcnow() - timedelta(seconds=1)
    row.last_seen_at = utcnow() - timedelta(seconds=1)
    db.session.flush()
    _assert_refused(_thief(app, token))
    assert _session_row().ended_reason == SessionEnd.EXPIRED


def test_session_lives_no_longer_than_its_link(client, app):
    customer = make_customer()
    from tests.factories import make_link_token

    token = make_link_token(customer, ttl=timedelta(minutes=90))
    landing = client.get(f"/l/{token}")
    client.post(f"/l/{token}", data={"csrf_token": csrf_token_from(landing.text)})
    row = _session_row()
    link = db.session.scalar(select(AccessLink).where(AccessLink.token_hash == hash_token(token)))
    assert row.expires_at == link.expires_at
    # and a long-lived link gives the configured lifetime
    login_as(client, customer)
    row = _session_row()
    assert row.expires_at - row.created_at == timedelta(
        hours=app.config["CUSTOMER_SESSION_MAX_HOURS"]
    )


def test_signing_in_again_replaces_the_browsers_session(client, app):
    customer = make_customer()
    login_as(client, customer)
    first = client.get_cookie(COOKIE).value
    login_as(client, customer)
    assert client.get_cookie(COOKIE).value != first
    assert _thief(app, first).get("/account").status_code == 401
    ended = db.session.scalar(
        select(PrincipalSession).where(PrincipalSession.token_hash == hash_token(first))
    )
    assert ended.ended_reason == SessionEnd.REPLACED


def test_only_the_tokens_hash_is_stored(client):
    _customer, token = _signed_in(client)
    row = _session_row()
    assert row.token_hash == hash_token(token)
    assert token not in repr(vars(row))


def test_browsing_writes_last_seen_at_at_most_once_a_minute(client):
    _signed_in(client)
    row = _session_row()
    seen = utcnow() - timedelta(seconds=30)
    row.last_seen_at = seen
    db.session.flush()
    assert client.get("/account").status_code == 200
    db.session.refresh(row)
    assert row.last_seen_at == seen  # 30 s ago: no write
    row.last_seen_at = utcnow() - timedelta(minutes=2)
    db.session.flush()
    assert client.get("/account").status_code == 200
    db.session.refresh(row)
    assert utcnow() - row.last_seen_at < timedelta(seconds=10)


def test_a_staff_session_token_never_opens_the_customer_side(client, app):
    # given a live staff session whose token is put in the customer cookie
    from tests.factories import make_staff

    make_customer()
    token = new_session_token()
    now = utcnow()
    db.session.add(
        PrincipalSession(
            token_hash=hash_token(token),
            principal_kind=PrincipalKind.STAFF,
            staff_id=make_staff().id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(hours=1),
        )
    )
    db.session.flush()
    assert _thief(app, token).get("/account").status_code == 401


def test_a_staff_session_cannot_point_at_a_customer(db_session):
    # The database refuses a staff session tied to a customer or a link (staffauth).
    customer = make_customer()
    now = utcnow()
    row = PrincipalSession(
        token_hash=hash_token(new_session_token()),
        principal_kind=PrincipalKind.STAFF,
        customer_id=customer.id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(hours=1),
    )
    db.session.add(row)
    with pytest.raises(sa.exc.IntegrityError), db.session.begin_nested():
        db.session.flush()


def test_customer_and_staff_cookies_differ(app):
    with app.test_request_context():
        customer = rules_for(PrincipalKind.CUSTOMER)
        staff = rules_for(PrincipalKind.STAFF)
    assert customer.cookie_name != staff.cookie_name
    assert staff.cookie_path == "/staff"
    assert staff.idle != customer.idle


def test_session_cookie_flags(client):
    customer = make_customer()
    response = login_as(client, customer)
    header = next(
        value for value in response.headers.getlist("Set-Cookie") if value.startswith(COOKIE)
    )
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Path=/" in header


@pytest.mark.parametrize("value", ["", "x", "a" * 4000, "../../etc/passwd", "é"])
def test_garbage_cookie_is_anonymous_not_an_error(app, client, value):
    other = _thief(app, value)
    assert other.get("/account").status_code == 401
    assert other.get("/").status_code == 200
    assert db.session.scalar(select(func.count(PrincipalSession.id))) == 0


def test_old_session_rows_are_purged_and_live_ones_kept(client, app):
    """The jobs runner deletes rows that ended or expired over the retention; a live
    session, and one that ended yesterday, are untouched and the live one still works."""
    from portal.access.sessions import purge_old_sessions

    _customer, token = _signed_in(client)
    live = _session_row()
    now = utcnow()
    rules = rules_for(PrincipalKind.CUSTOMER)

    def old_row(**values: object) -> PrincipalSession:
        row = PrincipalSession(
            token_hash=hash_token(new_session_token()),
            principal_kind=PrincipalKind.CUSTOMER.value,
            customer_id=live.customer_id,
            link_id=live.link_id,
            **values,
        )
        db.session.add(row)
        return row

    long_ago = now - timedelta(days=45)
    ended_long_ago = old_row(
        created_at=long_ago,
        last_seen_at=long_ago,
        expires_at=long_ago + rules.lifetime,
        ended_at=long_ago + timedelta(minutes=5),
        ended_reason=SessionEnd.SIGNED_OUT.value,
    )
    expired_long_ago = old_row(
        created_at=long_ago, last_seen_at=long_ago, expires_at=long_ago + rules.lifetime
    )
    yesterday = now - timedelta(days=1)
    ended_yesterday = old_row(
        created_at=yesterday,
        last_seen_at=yesterday,
        expires_at=yesterday + rules.lifetime,
        ended_at=yesterday,
        ended_reason=SessionEnd.SIGNED_OUT.value,
    )
    db.session.commit()
    gone_ids = {ended_long_ago.id, expired_long_ago.id}
    kept_ids = {live.id, ended_yesterday.id}

    deleted = purge_old_sessions(now=now, keep=timedelta(days=30))
    db.session.commit()

    remaining = set(db.session.scalars(select(PrincipalSession.id)))
    assert deleted == 2
    assert gone_ids.isdisjoint(remaining)
    assert kept_ids <= remaining
    assert _thief(app, token).get("/account").status_code == 200
