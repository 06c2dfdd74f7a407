"""The account page's one statement (customers.queries) as the PostgreSQL driver sees it."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import psycopg

from portal.customers.queries import _account_statement

# psycopg converts a statement's placeholders once and keeps the result only for
# statements of at most 4096 characters (psycopg._queries.MAX_CACHED_STATEMENT_LENGTH);
# a longer one is converted again on every execution, on every account page.
PSYCOPG_CACHED_LENGTH = 4096


def test_account_statement_is_short_enough_for_the_driver_to_cache():
    sql = str(_account_statement().compile(dialect=psycopg.dialect()))
    assert len(sql) <= PSYCOPG_CACHED_LENGTH, len(sql)


def test_account_statement_expands_no_list_on_each_execution():
    # An IN list of parameters is rewritten into the SQL at every execution.
    compiled = _account_statement().compile(dialect=psycopg.dialect())
    assert "customer_id" in compiled.params
    assert "POSTCOMPILE" not in str(compiled)


def test_account_statement_orders_its_rows_without_numbering_them():
    # A window function per part (row_number() OVER ...) made PostgreSQL sort each part
    # and start two more plan nodes for it on every execution; one ORDER BY does it.
    sql = str(_account_statement().compile(dialect=psycopg.dialect()))
    assert " OVER " not in sql
    assert sql.count("ORDER BY") == 1
