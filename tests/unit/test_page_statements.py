"""The pay and invoice pages' statements (payments.queries, invoices.detail) as the
PostgreSQL driver sees them: each balance subquery is written once, so it runs once per
invoice (not again in the pay page's filter, nor once per invoice line)."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects.postgresql import psycopg

from portal.invoices.detail import _invoice_statement
from portal.payments.queries import _customer_rows_statement

BALANCE_TABLES = (
    "payment_allocations",
    "refund_allocations",
    "credit_notes",
    "dispute_lines",
    "plan_invoices",
)


@pytest.mark.parametrize("statement", [_customer_rows_statement, _invoice_statement])
def test_each_balance_subquery_is_written_once(statement):
    sql = str(statement().compile(dialect=psycopg.dialect()))
    for table in BALANCE_TABLES:
        assert sql.count(f"FROM {table}") == 1, (table, sql)


@pytest.mark.parametrize("statement", [_customer_rows_statement, _invoice_statement])
def test_the_invoice_and_its_balance_are_read_before_the_rest(statement):
    # OFFSET 0 keeps PostgreSQL from merging the subquery into the statement (which would
    # run its subqueries again wherever the statement names their columns).
    sql = str(statement().compile(dialect=psycopg.dialect()))
    assert "OFFSET 0) AS o" in sql
