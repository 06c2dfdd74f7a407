"""`portal import customers|invoices|payments FILE.csv [--dry-run]` through the CLI."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from portal.audit.models import AuditEvent
from portal.cli import import_group
from portal.customers.models import Customer
from portal.extensions import db
from portal.invoices.models import Invoice
from portal.payments.models import Payment

CUSTOMERS = (
    "account_number,name,email,locale\nA-1,Acme Ltd,ap@acme.example,en\n"
    "A-2,Beta GmbH,ap@beta.example,de\n"
)
INVOICES = (
    "account_number,invoice_number,issue_date,due_date,currency,line_number,description,"
    "quantity,unit_price,tax_amount\n"
    "A-1,INV-1,2026-01-05,2026-02-04,USD,1,Widgets,2,10.00,1.60\n"
    "A-1,INV-1,2026-01-05,2026-02-04,USD,2,Delivery,1,5.00,\n"
    "A-2,INV-2,2026-01-09,2026-02-08,USD,1,Consulting,3,100.00,\n"
)
PAYMENTS = (
    "account_number,payment_reference,paid_on,amount,currency,invoice_number\n"
    "A-1,P-1,2026-02-01,26.60,USD,\n"
    "A-2,P-2,2026-02-03,100.00,USD,INV-2\n"
)


def write(tmp_path: Path, name: str, text: str, *, bom: bool = False) -> str:
    path = tmp_path / name
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return str(path)


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_a_whole_ledger_imports_and_reimports_without_change(app, db_session, tmp_path):
    runner = app.test_cli_runner()
    files = [
        ("customers", write(tmp_path, "customers.csv", CUSTOMERS, bom=True), 2),
        ("invoices", write(tmp_path, "invoices.csv", INVOICES), 2),
        ("payments", write(tmp_path, "payments.csv", PAYMENTS), 2),
    ]
    for kind, path, created in files:
        result = runner.invoke(import_group, [kind, path])
        assert result.exit_code == 0, result.output
        assert result.output == f"{path}: imported ({created} created, 0 updated, 0 unchanged).\n"
    for kind, path, created in files:
        result = runner.invoke(import_group, [kind, path])
        assert result.exit_code == 0, result.output
        assert f"(0 created, 0 updated, {created} unchanged)" in result.output
    assert (count(Customer), count(Invoice), count(Payment)) == (2, 2, 2)
    # each import, each invoice created, each payment, each re-import
    assert count(AuditEvent) == 3 + 2 + 2 + 3


def test_dry_run_validates_and_writes_nothing(app, db_session, tmp_path):
    path = write(tmp_path, "customers.csv", CUSTOMERS)
    result = app.test_cli_runner().invoke(import_group, ["customers", path, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"{path}: valid (2 created, 0 updated, 0 unchanged); dry run, nothing written.\n"
    )
    assert count(Customer) == 0
    assert count(AuditEvent) == 0


def test_dry_run_of_a_bad_file_lists_the_bad_rows(app, db_session, tmp_path):
    path = write(tmp_path, "customers.csv", "account_number,name,email\nA-1,Acme,nope\n")
    result = app.test_cli_runner().invoke(import_group, ["customers", path, "--dry-run"])
    assert result.exit_code == 1
    assert "line 2: email 'nope' is not a valid email address" in result.stderr


def test_bad_rows_are_all_listed_and_nothing_is_imported(app, db_session, tmp_path):
    # given the customers exist
    runner = app.test_cli_runner()
    assert (
        runner.invoke(import_group, ["customers", write(tmp_path, "c.csv", CUSTOMERS)]).exit_code
        == 0
    )
    bad = INVOICES + (
        "X-9,INV-3,2026-01-05,2026-02-04,USD,1,Unknown account,1,1,\n"
        "A-1,INV-4,2026-01-05,2026-02-04,USD,1,Bad amount,1,1.2.3,\n"
    )
    path = write(tmp_path, "invoices.csv", bad)
    # when
    result = runner.invoke(import_group, ["invoices", path])
    # then
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}: 2 bad rows (2 problems); nothing was imported.",
        "  line 5: unknown account 'X-9'",
        "  line 6: unit_price '1.2.3' is not a decimal number (use digits and a '.' point, "
        "e.g. 1234.50)",
    ]
    assert count(Invoice) == 0
    assert count(Customer) == 2


def test_header_problems_are_reported_on_line_1(app, db_session, tmp_path):
    path = write(tmp_path, "payments.csv", "account_number,reference,amount\n")
    result = app.test_cli_runner().invoke(import_group, ["payments", path])
    assert result.exit_code == 1
    assert "  line 1: missing required columns 'payment_reference', 'paid_on', 'currency'" in (
        result.stderr
    )
    assert "  line 1: unknown column 'reference'" in result.stderr


def test_missing_file_is_a_usage_error(app, db_session, tmp_path):
    result = app.test_cli_runner().invoke(import_group, ["customers", str(tmp_path / "no.csv")])
    assert result.exit_code == 2
    assert "does not exist" in result.output
