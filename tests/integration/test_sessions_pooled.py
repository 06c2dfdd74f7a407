"""The customer session check on a real pool (PostgreSQL): outside the tests' rolled-back
transaction the lookup (and the account page's one read) runs in autocommit through the
driver, one round trip, and a page that only reads opens no ORM session."""

from __future__ import annotations

from datetime import UTC, date
from zoneinfo import ZoneInfo

from babel.dates import format_date
from sqlalchemy import event

from portal.access.models import AccessLink
from portal.access.sessions import _CUSTOMER_LOOKUP, _run_on_driver
from portal.customers.models import Customer, CustomerSnapshot
from portal.customers.queries import account_snapshot
from portal.db import utcnow
from portal.disputes.models import Dispute, DisputeLine, DisputeStatus
from portal.extensions import db
from portal.notifications.models import EmailOptOut
from tests.factories import login_as, make_credit, make_customer, make_invoice, make_payment
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


def test_the_account_page_reads_the_same_rows_through_the_driver_and_opens_no_orm_session(
    app,
):
    with schema_app(app, "pooled_account", pool_size=1, max_overflow=0) as pooled:
        client = pooled.test_client()
        # given a customer with an invoice, a payment on it, a credit, an open dispute
        # and collection email stopped, signed in on a real pool
        with pooled.app_context():
            customer = make_customer(name="Ana Pérez", timezone="America/Mexico_City")
            invoice = make_invoice(customer, lines=[("Widgets", "2", "50.00")])
            make_payment(customer, [(invoice, "30.00")])
            make_credit(invoice, "5.00")
            dispute = Dispute(
                customer_id=customer.id,
                invoice_id=invoice.id,
                status=DisputeStatus.OPEN.value,
                reason="damaged",
                opened_at=utcnow(),
                updated_at=utcnow(),
            )
            dispute.lines.append(
                DisputeLine(invoice_line_id=invoice.lines[0].id, amount_minor=1000, currency="USD")
            )
            db.session.add_all([dispute, EmailOptOut(customer_id=customer.id, source="page")])
            db.session.commit()
            assert login_as(client, customer).status_code == 302
            customer_id, number, today = customer.id, invoice.number, date(2026, 11, 30)
            db.session.remove()
        # when the rows are read alone (driver, autocommit) and in a transaction
        with pooled.app_context():
            snapshot = CustomerSnapshot.of(db.session.get(Customer, customer_id), customer_id)
            db.session.remove()  # no ORM session: the driver path
            alone = account_snapshot(snapshot, today)
            assert not db.session.registry.has()
            db.session.connection()  # a transaction begun: SQLAlchemy's path
            in_transaction = account_snapshot(snapshot, today)
        # then they are the same values of the same types, UTC moments included
        assert alone == in_transaction
        assert alone.opted_out_at is not None
        assert alone.opted_out_at.tzinfo == UTC
        assert alone.disputes[0].opened_at.tzinfo == UTC
        assert [type(v) for v in vars_of(alone.payments[0])] == [
            type(v) for v in vars_of(in_transaction.payments[0])
        ]
        # and the page itself begins no transaction (no ORM session, no ROLLBACK)
        begun: list[object] = []

        def on_begin(connection: object) -> None:
            begun.append(connection)

        with pooled.app_context():
            event.listen(db.engine, "begin", on_begin)
            try:
                page = client.get("/account")
            finally:
                event.remove(db.engine, "begin", on_begin)
        assert page.status_code == 200
        assert "Hello, Ana Pérez" in page.text
        assert number in page.text
        stopped_on = alone.opted_out_at.astimezone(ZoneInfo("America/Mexico_City")).date()
        assert f"Stopped at your request on {format_date(stopped_on, 'medium', locale='en')}" in (
            " ".join(page.text.split())
        )
        assert begun == []


def vars_of(row: object) -> list[object]:
    return [getattr(row, name) for name in row.__slots__]  # type: ignore[attr-defined]
