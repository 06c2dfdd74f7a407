"""A large, consistent ledger for benchmarks, generated inside PostgreSQL in seconds.

    from dataset import ensure_dataset
    info = ensure_dataset("postgresql://postgres@127.0.0.1:5432/bench_x")
    info.sample_account  # a customer with the typical number of invoices

or from the shell (prints what it did):

    .venv/bin/python bench/dataset.py postgresql://postgres@127.0.0.1:5432/bench_x \
        [--customers 100000] [--invoices 1000000] [--reset]

Shared by the page benchmark (bench_pages.py) and the staff reports benchmark.

What is generated (all numbers deterministic, derived from the row number `g`):
- customers `BENCH-0000001`…: locale cycling en, es, fr, de; USD for English speakers,
  EUR for the others; business accounts.
- invoices `BENCH-INV-00000001`…, spread evenly over the customers (contiguous per
  customer), issued over two years up to 2026-11-01, due 30 days later; 1 or 2 lines each
  (quantity 1-5, unit price 10.00-509.99 with 2 decimals, tax 0 or 10 % of the amount);
  the total is the sum of the lines, as `money.line_amount` would compute it.
- offline payments: `g % 10 in (0, 1)` paid in full, `g % 10 == 2` half paid (one
  payment and one allocation each): 30 % of invoices.
- credit notes: `g % 20 == 5` get a credit of a tenth of the total (5 %).
So about 65 % of invoices are open, and some are overdue whatever "today" is.

How it stays fast (well under a minute for 1M invoices on two cores): one
`INSERT … SELECT generate_series` per table, with `session_replication_role = replica`
so that the ledger's row triggers and the foreign-key triggers do not fire once per row.
The data obey every rule those triggers check (same currency as the customer,
allocations within the payment and the invoice, credits within what is open); `check`
below verifies the sums once, in set form.

Idempotent: the generated sizes are recorded as a comment on the `customers` table;
when they match, the data set is reused as it is (only pending migrations are applied).
A database holding anything else is refused unless `reset=True` (which destroys it).
Needs a role allowed to set `session_replication_role` (a superuser, as `postgres` on
the development machine).
"""

# S608: the SQL is built from this module's own constant fragments and table names, never
# from input; the sizes are bound parameters.
# ruff: noqa: S608
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

from portal import create_app
from portal.config import normalize_database_url

ACCOUNT_PREFIX = "BENCH-"
MARKER = "bench dataset v1"
LAST_ISSUE_DATE = "2026-11-01"
ISSUE_SPREAD_DAYS = 730


class DatasetRefused(Exception):
    """The database holds data that is not a generated data set of the asked size."""


@dataclass(frozen=True)
class DatasetInfo:
    """What `ensure_dataset` left in the database.

    `sample_account`: account number of a customer in the middle of the range, with
    `invoices // customers` invoices (some paid, some open); `sample_invoice`: one of its
    open invoices, with nothing paid or credited (as 65 % of invoices are);
    `sample_paid_invoice`: one it has half paid (its page also lists the payment).
    `seconds`: time spent generating (0.0 when reused).
    """

    database_url: str
    customers: int
    invoices: int
    invoice_lines: int
    payments: int
    credit_notes: int
    sample_account: str
    sample_invoice: str
    sample_paid_invoice: str
    reused: bool
    seconds: float


def _marker(customers: int, invoices: int) -> str:
    return f"{MARKER} customers={customers} invoices={invoices}"


def _app(database_url: str) -> Any:
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": normalize_database_url(database_url),
            "PORTAL_BASE_URL": "https://portal.example.test",
        },
        "testing",
    )


# The invoice of row g belongs to customer (g - 1) / PER + 1 (integer division), so a
# customer's invoices are contiguous. Line l (1 or 2) of invoice g:
def _qty(line: str) -> str:
    return f"(1 + ((g + {line}) % 5))"  # whole units


def _price(line: str) -> str:
    return f"(1000 + ((g::bigint * 7919 + {line} * 104729) % 50000))"  # cents, scale 2


def _tax(line: str) -> str:
    net = f"({_qty(line)} * {_price(line)})"  # exact: whole quantity x cents
    return f"(CASE WHEN (g + {line}) % 3 = 0 THEN ({net} + 5) / 10 ELSE 0 END)"  # 10 %, half-up


def _line(line: str) -> str:
    return f"({_qty(line)} * {_price(line)} + {_tax(line)})"


def _line_sum() -> str:
    """SQL: the total of invoice g, the sum of its lines (1 + g % 2 of them)."""
    return f"({_line('1')} + CASE WHEN g % 2 = 1 THEN {_line('2')} ELSE 0 END)"


def _generate(connection: Connection, customers: int, invoices: int) -> None:
    per = max(invoices // customers, 1)
    params = {"customers": customers, "invoices": invoices, "per": per}
    run = connection.execute
    run(text("SET LOCAL session_replication_role = replica"))
    run(text("SET LOCAL synchronous_commit = off"))
    run(
        text(
            "INSERT INTO customers (id, account_number, name, email, phone, locale, currency,"
            " kind, segment, timezone, created_at, updated_at)"
            " SELECT c, 'BENCH-' || lpad(c::text, 7, '0'), 'Bench Customer ' || c,"
            " 'customer' || c || '@bench.example', NULL,"
            " (ARRAY['en','es','fr','de'])[1 + c % 4],"
            " CASE WHEN c % 4 = 0 THEN 'USD' ELSE 'EUR' END,"
            " 'business', 'standard', NULL, now(), now()"
            " FROM generate_series(1, :customers) AS c"
        ),
        params,
    )
    customer_of = "LEAST((g - 1) / :per + 1, :customers)"
    currency_of = f"CASE WHEN {customer_of} % 4 = 0 THEN 'USD' ELSE 'EUR' END"
    issue = f"(DATE '{LAST_ISSUE_DATE}' - ((g * 37) % {ISSUE_SPREAD_DAYS}))"
    run(
        text(
            "INSERT INTO invoices (id, customer_id, number, issue_date, due_date, currency,"
            " total_minor, voided_at, created_at)"
            f" SELECT g, {customer_of}, 'BENCH-INV-' || lpad(g::text, 8, '0'),"
            f" {issue}, {issue} + 30, {currency_of}, {_line_sum()}, NULL, now()"
            " FROM generate_series(1, :invoices) AS g"
        ),
        params,
    )
    run(
        text(
            "INSERT INTO invoice_lines (invoice_id, line_number, description, quantity_milli,"
            " unit_price_units, unit_price_scale, tax_minor, amount_minor)"
            " SELECT g, l, 'Bench item ' || ((g * 31 + l) % 997),"
            f" {_qty('l')} * 1000, {_price('l')}, 2, {_tax('l')}, {_line('l')}"
            " FROM generate_series(1, :invoices) AS g,"
            " LATERAL generate_series(1, 1 + g % 2) AS l"
        ),
        params,
    )
    # One payment per paid or half-paid invoice, id = its invoice's id (sparse ids).
    paid = f"CASE WHEN g % 10 = 2 THEN {_line_sum()} / 2 ELSE {_line_sum()} END"
    run(
        text(
            "INSERT INTO payments (id, customer_id, reference, source, amount_minor, currency,"
            " paid_on, created_at, checkout_id)"
            f" SELECT g, {customer_of}, 'BENCH-PAY-' || lpad(g::text, 8, '0'), 'offline',"
            f" {paid}, {currency_of}, {issue} + 20, now(), NULL"
            " FROM generate_series(1, :invoices) AS g WHERE g % 10 IN (0, 1, 2)"
        ),
        params,
    )
    run(
        text(
            "INSERT INTO payment_allocations (payment_id, invoice_id, amount_minor)"
            " SELECT id, id, amount_minor FROM payments WHERE reference LIKE 'BENCH-PAY-%'"
        )
    )
    run(
        text(
            "INSERT INTO credit_notes (reference, invoice_id, amount_minor, currency, kind,"
            " issued_on, reason, created_at)"
            " SELECT 'BENCH-CN-' || lpad(g::text, 8, '0'), g,"
            f" GREATEST({_line_sum()} / 10, 1), {currency_of}, 'credit', {issue} + 10,"
            " 'Bench credit', now()"
            " FROM generate_series(1, :invoices) AS g WHERE g % 20 = 5"
        ),
        params,
    )
    for table in (
        "customers",
        "invoices",
        "invoice_lines",
        "payments",
        "payment_allocations",
        "credit_notes",
    ):
        run(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT COALESCE(max(id), 0) + 1 FROM {table}), false)"
            )
        )
    run(text(f"COMMENT ON TABLE customers IS '{_marker(customers, invoices)}'"))


def check(connection: Connection) -> None:
    """Raise AssertionError if a generated invoice breaks a ledger rule the triggers guard."""
    broken = connection.scalar(
        text(
            "SELECT count(*) FROM invoices i"
            " LEFT JOIN (SELECT invoice_id, sum(amount_minor) AS s FROM invoice_lines"
            "   GROUP BY invoice_id) l ON l.invoice_id = i.id"
            " LEFT JOIN (SELECT invoice_id, sum(amount_minor) AS s FROM payment_allocations"
            "   GROUP BY invoice_id) a ON a.invoice_id = i.id"
            " LEFT JOIN (SELECT invoice_id, sum(amount_minor) AS s FROM credit_notes"
            "   GROUP BY invoice_id) c ON c.invoice_id = i.id"
            " JOIN customers cu ON cu.id = i.customer_id"
            " WHERE i.number LIKE 'BENCH-INV-%' AND (l.s IS DISTINCT FROM i.total_minor"
            "   OR COALESCE(a.s, 0) + COALESCE(c.s, 0) > i.total_minor"
            "   OR cu.currency <> i.currency)"
        )
    )
    assert broken == 0, f"{broken} generated invoices break a ledger rule"


def _holds(database_url: str, customers: int, invoices: int) -> bool:
    """Whether the database already holds the generated data set of this size."""
    engine = create_engine(normalize_database_url(database_url))
    try:
        with engine.connect() as connection:
            comment = connection.scalar(text("SELECT obj_description(to_regclass('customers'))"))
    finally:
        engine.dispose()
    return bool(comment == _marker(customers, invoices))


def _counts(connection: Connection) -> dict[str, int]:
    return {
        table: int(connection.scalar(text(f"SELECT count(*) FROM {table}")) or 0)
        for table in ("invoice_lines", "payments", "credit_notes")
    }


def _sample(connection: Connection, customers: int, invoices: int) -> tuple[str, str, str]:
    per = max(invoices // customers, 1)
    customer = customers // 2 + 1  # a USD (English) customer when customers is even
    while customer % 4:
        customer += 1
    first = (customer - 1) * per + 1
    open_invoice = next(g for g in range(first, first + per) if g % 10 not in (0, 1, 2))
    half_paid = next((g for g in range(first, first + per) if g % 10 == 2), open_invoice)
    return (
        f"{ACCOUNT_PREFIX}{customer:07d}",
        f"BENCH-INV-{open_invoice:08d}",
        f"BENCH-INV-{half_paid:08d}",
    )


def ensure_dataset(
    database_url: str,
    customers: int = 100_000,
    invoices: int = 1_000_000,
    *,
    reset: bool = False,
    replace: bool = False,
    verify: bool = False,
) -> DatasetInfo:
    """Make `database_url` (PostgreSQL) hold the generated data set of this size; say what it holds.

    Reuses a data set of the same size (seconds: 0.0). Otherwise generates one into an
    empty, migrated database: raises `DatasetRefused` if the database already holds other
    data, unless `reset` (every table dropped first: the data is destroyed) or `replace`
    (the same, but only when the database does not already hold this data set: for a
    benchmark database that another benchmark also fills, as `make bench` does). `verify`
    also runs `check` (a few seconds at 1M invoices).
    """
    if customers < 4 or invoices < customers:
        raise ValueError("need at least 4 customers and one invoice per customer")
    if not database_url.startswith(("postgres://", "postgresql")):
        raise ValueError("the generated data set needs PostgreSQL")
    from flask_migrate import upgrade

    from portal.extensions import db

    if replace and not reset:
        reset = not _holds(database_url, customers, invoices)
    app = _app(database_url)
    with app.app_context():
        if reset:
            # The whole schema: the ledger's trigger functions outlive their tables.
            with db.engine.begin() as connection:
                connection.exec_driver_sql("DROP SCHEMA public CASCADE")
                connection.exec_driver_sql("CREATE SCHEMA public")
        upgrade()
        db.session.remove()
        db.engine.dispose()
    engine = create_engine(normalize_database_url(database_url))
    try:
        with engine.begin() as connection:
            comment = connection.scalar(text("SELECT obj_description('customers'::regclass)"))
            reused = comment == _marker(customers, invoices)
            started = time.perf_counter()
            if not reused:
                held = connection.scalar(text("SELECT count(*) FROM customers"))
                if held:
                    raise DatasetRefused(
                        f"the database holds {held} customers and no data set of"
                        f" {customers} customers and {invoices} invoices; reset=True (--reset)"
                        " drops every table and generates it"
                    )
                _generate(connection, customers, invoices)
        seconds = 0.0 if reused else time.perf_counter() - started
        with engine.begin() as connection:
            if not reused:
                connection.execute(text("ANALYZE"))
            if verify:
                check(connection)
            counts = _counts(connection)
            account, invoice, paid_invoice = _sample(connection, customers, invoices)
    finally:
        engine.dispose()
    return DatasetInfo(
        database_url=database_url,
        customers=customers,
        invoices=invoices,
        invoice_lines=counts["invoice_lines"],
        payments=counts["payments"],
        credit_notes=counts["credit_notes"],
        sample_account=account,
        sample_invoice=invoice,
        sample_paid_invoice=paid_invoice,
        reused=reused,
        seconds=round(seconds, 1),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database_url")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--reset", action="store_true", help="drop every table first")
    parser.add_argument(
        "--replace", action="store_true", help="drop every table unless they hold this data set"
    )
    parser.add_argument("--verify", action="store_true", help="check the ledger sums")
    args = parser.parse_args(argv)
    try:
        info = ensure_dataset(
            args.database_url,
            args.customers,
            args.invoices,
            reset=args.reset,
            replace=args.replace,
            verify=args.verify,
        )
    except DatasetRefused as refused:
        print(f"dataset: {refused}", file=sys.stderr)
        return 2
    print(info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
