"""Benchmark: import 1,000 customers, 100,000 invoice lines (20,000 invoices x 5 lines), payments.

    .venv/bin/python bench/bench_import.py                      # a fresh SQLite file
    .venv/bin/python bench/bench_import.py --database-url postgresql://postgres@127.0.0.1/bench

The database must be empty (the benchmark creates the schema with the migrations and
refuses to write into a database that already holds customers), unless --reset is given,
which drops every table of the database first.
Exits 1 when the invoice import takes longer than the budget (15 s by default).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from benchsetup import empty_schema

from portal import create_app
from portal.config import normalize_database_url
from portal.db import utcnow
from portal.extensions import db
from portal.imports.services import INVOICE_COLUMNS, import_file

LINES_PER_INVOICE = 5
PRODUCTS = [
    ("Copier paper A4, box of 5 reams", "24.90"),
    ("Toner cartridge, black", "89.00"),
    ("Delivery and handling", "12.50"),
    ("Installation labour (hours)", "65.00"),
    ("Desk lamp, LED", "39.95"),
    ("Stapler, heavy duty", "18.40"),
]


def write_files(directory: Path, customers: int, lines: int) -> tuple[Path, Path, Path]:
    customers_csv = directory / "customers.csv"
    invoices_csv = directory / "invoices.csv"
    payments_csv = directory / "payments.csv"
    with customers_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["account_number", "name", "email", "locale", "currency", "kind"])
        for n in range(customers):
            writer.writerow(
                [
                    f"B-{n:06d}",
                    f"Bench Customer {n}",
                    f"ap{n}@bench.example",
                    ("en", "es", "fr", "de")[n % 4],
                    "USD",
                    "consumer" if n % 10 == 0 else "business",
                ]
            )
    start = date(2025, 1, 1)
    with invoices_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(INVOICE_COLUMNS)
        for n in range(lines // LINES_PER_INVOICE):
            issued = start + timedelta(days=n % 365)
            head = [
                f"B-{n % customers:06d}",
                f"BI-{n:08d}",
                issued.isoformat(),
                (issued + timedelta(days=30)).isoformat(),
                "USD",
            ]
            for line in range(1, LINES_PER_INVOICE + 1):
                description, price = PRODUCTS[(n + line) % len(PRODUCTS)]
                quantity = f"{1 + (n * line) % 12}.{(n + line) % 4 * 25}"
                writer.writerow([*head, line, description, quantity, price, f"{line}.00"])
    with payments_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        handle.write("account_number,payment_reference,paid_on,amount,currency,invoice_number\n")
        # One small payment per invoice; every other one left for oldest-first allocation.
        for n in range(lines // LINES_PER_INVOICE):
            invoice_number = f"BI-{n:08d}" if n % 2 else ""
            account = f"B-{n % customers:06d}"
            writer.writerow([account, f"BP-{n:08d}", "2025-12-31", "1.00", "USD", invoice_number])
    return customers_csv, invoices_csv, payments_csv


def timed_import(kind: str, path: Path, rows: int) -> float:
    started = time.perf_counter()
    report = import_file(kind, path, now=utcnow(), actor="bench")
    db.session.commit()
    seconds = time.perf_counter() - started
    print(
        f"{kind:>10}: {rows:>7,} rows in {seconds:6.2f} s  "
        f"({rows / seconds:>9,.0f} rows/s)  {report.summary()}"
    )
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temp dir")
    parser.add_argument(
        "--reset", action="store_true", help="drop every table first (destroys the data!)"
    )
    parser.add_argument("--customers", type=int, default=1_000)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--budget", type=float, default=15.0, help="seconds for the invoices")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        directory = Path(tmp)
        url = args.database_url or f"sqlite:///{directory / 'bench.sqlite3'}"
        customers_csv, invoices_csv, payments_csv = write_files(
            directory, args.customers, args.lines
        )
        app = create_app({"SQLALCHEMY_DATABASE_URI": normalize_database_url(url)}, "testing")
        with app.app_context():
            if not empty_schema(url, reset=args.reset):
                return 2
            print(f"database: {db.engine.dialect.name}; files in {directory}")
            timed_import("customers", customers_csv, args.customers)
            seconds = timed_import("invoices", invoices_csv, args.lines)
            again = timed_import("invoices", invoices_csv, args.lines)
            print(f"re-import of the same invoices (all unchanged): {again:.2f} s")
            timed_import("payments", payments_csv, args.lines // LINES_PER_INVOICE)
            db.engine.dispose()
    if seconds > args.budget:
        print(f"FAIL: invoices took {seconds:.2f} s, over the {args.budget:.0f} s budget")
        return 1
    print(f"OK: invoices within the {args.budget:.0f} s budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
