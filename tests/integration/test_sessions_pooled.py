"""The customer session check on a real pool (PostgreSQL): outside the tests' rolled-back
transaction the lookup runs in autocommit through the driver, one round trip."""

from __future__ import annotations

from portal.access.models import AccessLink
from portal.access.sessions import _CUSTOMER_LOOKUP, _run_on_driver
from portal.db import utcnow
from portal.extensions import db
from tests.factories import login_as, make_customer
from tests.races import schema_app


def test_a_signed_in_page_and_a_revoked_link_on_a_real_pool(app):
    with schema_app(app, "pooled_sessions", pool_size=1, max_overflow=0) as pooled:
        client = pooled.test_client()
        # given a customer signed in through a link, on a pool of one connection
        with pooled.app_context():
            customer = make_customer(locale="es")
            db.session.commit()
            assert login_as(client, customer).status_code == 302
        # when they open a page, then the check found them (their stored language, the
        # sign-out button) and left the connection usable by the view's own transaction
        page = client.get("/accessibility")
        assert page.status_code == 200
        assert '<html lang="es">' in page.text
        assert 'action="/sign-out"' in page.text
        with pooled.app_context():
            assert db.session.connection().connection.driver_connection.autocommit is False
            db.session.remove()
        # and when the link is revoked, the next request ends the session (401)
        with pooled.app_context():
            link = db.session.scalars(db.select(AccessLink)).one()
            link.revoked_at = utcnow()  # what the check reads (revoke_link also ends sessions)
            db.session.commit()
        assert client.get("/account").status_code == 401


def test_the_driver_lookup_finds_nothing_for_an_unknown_token(app):
    with (
        schema_app(app, "pooled_unknown", pool_size=1, max_overflow=0) as pooled,
        pooled.app_context(),
    ):
        assert _run_on_driver(db.engine, _CUSTOMER_LOOKUP, {"token_hash": "0" * 64}) is None
