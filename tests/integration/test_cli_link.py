"""`portal link` prints a working link built from PORTAL_BASE_URL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from portal.access.models import AccessLink
from portal.access.services import check_link
from portal.cli import link_command
from portal.db import utcnow
from portal.extensions import db
from tests.factories import make_customer, make_invoice


def test_link_command_prints_a_link_that_opens(app, db_session):
    customer = make_customer(account_number="ACC-CLI")
    result = app.test_cli_runner().invoke(link_command, ["ACC-CLI"])
    assert result.exit_code == 0, result.output
    url = result.output.strip()
    assert url.startswith("https://portal.example.test/l/")
    link = check_link(url.rsplit("/", 1)[1], utcnow())
    assert link.customer_id == customer.id
    assert link.invoice_id is None


def test_link_command_binds_invoice_and_ttl(app, db_session):
    customer = make_customer(account_number="ACC-CLI2")
    invoice = make_invoice(customer, number="INV-CLI")
    result = app.test_cli_runner().invoke(
        link_command, ["ACC-CLI2", "--invoice", "INV-CLI", "--ttl-days", "3"]
    )
    assert result.exit_code == 0, result.output
    link = db.session.scalar(select(AccessLink).where(AccessLink.customer_id == customer.id))
    assert link.invoice_id == invoice.id
    assert link.expires_at - link.created_at == timedelta(days=3)


def test_link_command_refuses_unknown_account_and_foreign_invoice(app, db_session):
    make_customer(account_number="ACC-A")
    other = make_customer(account_number="ACC-B")
    make_invoice(other, number="INV-B")
    runner = app.test_cli_runner()
    unknown = runner.invoke(link_command, ["ACC-NOPE"])
    assert unknown.exit_code != 0
    assert "no customer" in unknown.output
    foreign = runner.invoke(link_command, ["ACC-A", "--invoice", "INV-B"])
    assert foreign.exit_code != 0
    assert "has no invoice" in foreign.output
    assert db.session.scalar(select(db.func.count(AccessLink.id))) == 0
