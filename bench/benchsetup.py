"""The one set-up every benchmark shares: an up-to-date, empty schema."""

from __future__ import annotations

from flask_migrate import upgrade
from sqlalchemy import func, select

from portal.customers.models import Customer
from portal.extensions import db


def empty_schema(url: str, *, reset: bool) -> bool:
    """Migrate the current app's database; False (and say why) if it already holds data.

    With `reset`, every table is dropped first: the data in that database is destroyed.
    Needs an app context.
    """
    if reset:
        if db.engine.dialect.name == "postgresql":
            # The whole schema: the ledger's trigger functions outlive their tables, and
            # the migration that creates them fails when they are already there.
            with db.engine.begin() as connection:
                connection.exec_driver_sql("DROP SCHEMA public CASCADE")
                connection.exec_driver_sql("CREATE SCHEMA public")
        else:
            db.drop_all()
            with db.engine.begin() as connection:
                connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    upgrade()
    if db.session.scalar(select(func.count(Customer.id))):
        print(f"{url} already holds customers; use --reset (destroys the data).")
        return False
    return True
