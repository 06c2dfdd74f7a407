"""The schema the tests run on comes from migrations; the models must agree with it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from portal.extensions import db
from tests.factories import make_customer, make_invoice


# SQLite cannot reflect expression indexes (the staff search's, PostgreSQL-only by design:
# portal/desk/models.py); on PostgreSQL they are compared like every other index.
@pytest.mark.filterwarnings(
    "ignore:autogenerate skipping metadata-specified expression-based index:UserWarning"
)
def test_models_and_migrations_agree(app):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == [], f"run `portal db migrate`: {differences}"


def test_database_refuses_negative_amounts(db_session):
    invoice = make_invoice(make_customer())
    with pytest.raises(sa.exc.IntegrityError), db.session.begin_nested():
        db.session.execute(
            sa.text("UPDATE invoices SET total_minor = -1 WHERE id = :id"), {"id": invoice.id}
        )


def test_database_refuses_duplicate_invoice_numbers(db_session):
    customer = make_customer()
    make_invoice(customer, number="INV-DUP")
    with pytest.raises(sa.exc.IntegrityError), db.session.begin_nested():
        make_invoice(customer, number="INV-DUP")


def test_database_enforces_foreign_keys(db_session):
    with pytest.raises(sa.exc.IntegrityError), db.session.begin_nested():
        db.session.execute(
            sa.text(
                "INSERT INTO invoice_lines (invoice_id, line_number, description, quantity_milli,"
                " unit_price_units, unit_price_scale, tax_minor, amount_minor)"
                " VALUES (999999, 1, 'x', 1000, 1, 2, 0, 1)"
            )
        )
