"""Files as real spreadsheets write them: stray separators, European CSV, text a database
refuses, numbers shortened to scientific notation; and what each import records."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import func, select

from portal.audit.models import AuditEvent
from portal.cli import import_group
from portal.customers.models import Customer
from portal.db import utcnow
from portal.extensions import db
from portal.imports.services import ImportFailed, Record, import_file, import_records
from portal.invoices.models import CreditNote, Invoice
from portal.invoices.queries import credited_subquery
from portal.payments.models import Payment
from tests.factories import make_customer, make_invoice

INVOICE_HEADER = (
    "account_number,invoice_number,issue_date,due_date,currency,line_number,description,"
    "quantity,unit_price,tax_amount"
)


def run(kind: str, text: str, **options):
    options.setdefault("now", utcnow())
    options.setdefault("actor", "test")
    return import_file(kind, io.StringIO(text), **options)


def problems(kind: str, text: str, **options) -> list[tuple[int, str]]:
    with pytest.raises(ImportFailed) as failure:
        run(kind, text, **options)
    return [(error.line, error.message) for error in failure.value.errors]


def write(tmp_path: Path, text: str, name: str = "file.csv") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


# --- separators and blank rows ------------------------------------------------------------


def test_rows_of_separators_or_spaces_are_skipped_and_a_trailing_empty_header_column_is_accepted(
    db_session,
):
    text = (
        "account_number,name,email,\n"
        ",,,\n"
        "A-1,Acme Ltd,ap@acme.example,\n"
        "   \n"
        " , , , \n"
        "A-2,Beta GmbH,ap@beta.example\n"
        ",,,,,,\n"
    )
    report = run("customers", text)
    assert (report.rows, report.created) == (2, 2)
    assert sorted(db.session.scalars(select(Customer.account_number))) == ["A-1", "A-2"]


def test_european_rows_of_semicolons_are_skipped_too(db_session):
    report = run("customers", "account_number;name;email;;\n;;;;\nA-1;Acme;ap@acme.example;;\n")
    assert report.created == 1


# --- European files ---------------------------------------------------------------------------


EUROPEAN_INVOICES = (
    INVOICE_HEADER.replace(",", ";") + "\n"
    "A-1;INV-1;2026-01-05;2026-02-04;EUR;1;Widgets;2,5;1.234,50;\n"
    'A-1;INV-1;2026-01-05;2026-02-04;EUR;2;"Delivery; express";1;10;0,19\n'
)


def test_a_european_file_is_detected_from_its_header_and_imports_the_right_amounts(db_session):
    make_customer(account_number="A-1", currency="EUR")
    report = run("invoices", EUROPEAN_INVOICES)
    assert report.dialect == "separator ';', decimal comma"
    invoice = db.session.scalar(select(Invoice).where(Invoice.number == "INV-1"))
    # 2.5 × 1,234.50 = 3,086.25; 1 × 10 + 0.19 tax = 10.19
    assert sorted((line.line_number, line.amount_minor) for line in invoice.lines) == [
        (1, 308_625),
        (2, 1_019),
    ]
    assert invoice.total_minor == 309_644
    assert [line.description for line in sorted(invoice.lines, key=lambda x: x.line_number)][
        1
    ] == "Delivery; express"


def test_a_european_payment_amount_with_thousands_separators(db_session):
    customer = make_customer(account_number="A-1", currency="EUR")
    make_invoice(customer, number="INV-1", lines=[("Work", "1", "5000.00")])
    run(
        "payments",
        "account_number;payment_reference;paid_on;amount;currency;invoice_number\n"
        "A-1;P-1;2026-02-01;1.234,50;EUR;INV-1\n",
    )
    assert db.session.scalar(select(Payment.amount_minor)) == 123_450


def test_the_dialect_can_be_chosen_and_the_cli_says_which_it_used(app, db_session, tmp_path):
    make_customer(account_number="A-1", currency="EUR")
    path = write(tmp_path, EUROPEAN_INVOICES)
    result = app.test_cli_runner().invoke(
        import_group, ["invoices", path, "--delimiter", ";", "--decimal-comma", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{path}: read with separator ';', decimal comma.",
        f"{path}: valid (1 created, 0 updated, 0 unchanged); dry run, nothing written.",
    ]


def test_a_point_decimal_in_a_decimal_comma_file_is_a_line_numbered_error(db_session):
    make_customer(account_number="A-1", currency="EUR")
    text = (
        INVOICE_HEADER.replace(",", ";") + "\nA-1;INV-1;2026-01-05;2026-02-04;EUR;1;W;1;1234.50;\n"
    )
    assert problems("invoices", text) == [
        (
            2,
            "unit_price '1234.50' is not a decimal number with a decimal comma "
            "(e.g. 1234,50 or 1.234,50)",
        )
    ]


def test_a_comma_file_read_as_semicolons_explains_the_separator(db_session):
    assert problems("customers", "account_number,name,email\n", delimiter=";") == [
        (
            1,
            "the header has one column; the file seems to use ',' between fields "
            "(choose it with --delimiter ',')",
        )
    ]


# --- text a database refuses --------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "code"),
    [("Acme\x00Ltd", "U+0000"), ("Acme\ud800", "U+D800"), ("Acme\x07", "U+0007")],
    ids=["nul", "lone-surrogate", "bell"],
)
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "real-run"])
def test_text_a_database_refuses_is_a_line_numbered_error(db_session, cell, code, dry_run):
    text = f"account_number,name,email\nA-1,Acme,ap@acme.example\nA-2,{cell},ap@b.example\n"
    assert problems("customers", text, dry_run=dry_run) == [
        (
            3,
            f"name contains the invisible character {code}, which cannot be stored; remove it "
            "and try again",
        )
    ]
    assert count(Customer) == 0


def test_tabs_and_line_breaks_inside_a_quoted_cell_are_text(db_session):
    make_customer(account_number="A-1")
    text = (
        f'{INVOICE_HEADER}\nA-1,INV-1,2026-01-05,2026-02-04,USD,1,"Two\r\nlines\tand a tab",1,5,\n'
    )
    assert run("invoices", text).created == 1


def test_encoded_surrogates_are_not_utf8(db_session):
    data = b"account_number,name,email\nA-1,Acme \xed\xa0\x80,ap@acme.example\n"
    with pytest.raises(ImportFailed) as failure:
        import_file("customers", io.BytesIO(data), now=utcnow(), actor="test")
    assert [(e.line, e.message) for e in failure.value.errors] == [
        (2, "the file is not UTF-8 text; save it as CSV UTF-8 and try again")
    ]


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["real-run", "dry-run"])
def test_the_cli_reports_a_nul_byte_without_a_traceback(app, db_session, tmp_path, dry_run):
    path = write(tmp_path, "account_number,name,email\nA-1,Ac\x00me,ap@acme.example\n")
    result = app.test_cli_runner().invoke(import_group, ["customers", path, *dry_run])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.splitlines() == [
        f"{path}: 1 bad row (1 problem); nothing was imported.",
        "  line 2: name contains the invisible character U+0000, which cannot be stored; "
        "remove it and try again",
    ]
    assert count(Customer) == 0


# --- scientific notation ------------------------------------------------------------------


def test_a_key_in_scientific_notation_is_refused_with_a_hint(db_session):
    customer = make_customer(account_number="A-1")
    make_invoice(customer, number="INV-1")
    assert problems("customers", "account_number,name,email\n7.01E+08,Acme,ap@acme.example\n") == [
        (
            2,
            "account_number '7.01E+08' looks like a number a spreadsheet shortened to "
            "scientific notation; format the column as text and export the file again",
        )
    ]
    [(line, message)] = problems(
        "payments",
        "account_number,payment_reference,paid_on,amount,currency\nA-1,1.2345E+11,2026-02-01,5,USD\n",
    )
    assert line == 2
    assert message.startswith("payment_reference '1.2345E+11' looks like a number")
    assert message.endswith("format the column as text and export the file again")


def test_a_key_that_only_contains_an_e_is_a_key(db_session):
    assert run("customers", "account_number,name,email\nE12,Acme,ap@acme.example\n").created == 1


# --- the summary ----------------------------------------------------------------------------


def test_the_summary_counts_bad_rows_and_problems(app, db_session, tmp_path):
    # given two rows with nine problems each
    bad_row = "X-1,,2026-13-01,soon,EURO,0,,-1,abc,"
    path = write(tmp_path, f"{INVOICE_HEADER}\n{bad_row}\n{bad_row.replace('X-1', 'X-2')}\n")
    # when
    result = app.test_cli_runner().invoke(import_group, ["invoices", path])
    # then
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"{path}: 2 bad rows (18 problems); nothing was imported."
    assert len(lines) == 1 + 18
    assert {line.split(":")[0] for line in lines[1:]} == {"  line 2", "  line 3"}


# --- audit and credit notes -----------------------------------------------------------------


def test_each_imported_payment_has_its_own_audit_row_by_the_import(app, db_session, tmp_path):
    customer = make_customer(account_number="A-1")
    make_invoice(customer, number="INV-1", lines=[("Work", "1", "100.00")])
    path = write(
        tmp_path,
        "account_number,payment_reference,paid_on,amount,currency,invoice_number\n"
        "A-1,P-1,2026-02-01,30.00,USD,INV-1\nA-1,P-2,2026-02-02,20.00,USD,\n",
    )
    result = app.test_cli_runner().invoke(import_group, ["payments", path])
    assert result.exit_code == 0, result.output
    payments = {p.reference: p.id for p in db.session.scalars(select(Payment))}
    events = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "payment.imported")
    ).all()
    assert sorted((e.subject_type, e.subject_id, e.data["amount_minor"]) for e in events) == [
        ("payments", payments["P-1"], 3000),
        ("payments", payments["P-2"], 2000),
    ]
    assert {(e.actor, e.customer_id) for e in events} == {("import:cli", customer.id)}


CREDIT_HEADER = (
    "account_number,credit_note_reference,invoice_number,issued_on,amount,currency,reason"
)


def test_credit_notes_import_once_each_with_an_audit_row_and_reduce_the_balance(app, db_session):
    customer = make_customer(account_number="A-1")
    invoice = make_invoice(customer, number="INV-1", lines=[("Work", "1", "100.00")])
    text = f"{CREDIT_HEADER}\nA-1,CN-1,INV-1,2026-02-01,25.50,USD,Damaged goods\n"
    assert run("credit-notes", text).created == 1
    assert run("credit-notes", text).unchanged == 1
    credit = db.session.scalar(select(CreditNote))
    assert (credit.amount_minor, credit.invoice_id, credit.reason) == (
        2550,
        invoice.id,
        "Damaged goods",
    )
    [event] = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "credit_note.imported")
    )
    assert (event.subject_type, event.subject_id, event.actor) == (
        "credit_notes",
        credit.id,
        "import:test",
    )
    credited = db.session.scalar(select(credited_subquery()).where(Invoice.id == invoice.id))
    assert credited == 2550


def test_a_credit_note_above_the_open_balance_or_changed_is_refused(db_session):
    customer = make_customer(account_number="A-1")
    make_invoice(customer, number="INV-1", lines=[("Work", "1", "100.00")])
    run("credit-notes", f"{CREDIT_HEADER}\nA-1,CN-1,INV-1,2026-02-01,60.00,USD,\n")
    assert problems(
        "credit-notes",
        f"{CREDIT_HEADER}\nA-1,CN-1,INV-1,2026-02-01,61.00,USD,\n"
        "A-1,CN-2,INV-1,2026-02-01,40.01,USD,\n",
    ) == [
        (
            2,
            "credit note 'CN-1' was already imported with different details; credit notes "
            "cannot be changed (import a new one instead)",
        ),
        (3, "credit note of 40.01 USD is more than the 40.00 USD still open on invoice 'INV-1'"),
    ]
    assert count(CreditNote) == 1


# --- records from any front end --------------------------------------------------------------


def test_records_from_another_front_end_go_through_the_same_checks(db_session):
    records = [
        Record(1, {"account_number": "A-1", "name": "Acme", "email": "ap@acme.example"}),
        Record(2, {"account_number": "7E5", "name": "Bad\x00", "email": "ap@b.example"}),
    ]
    with pytest.raises(ImportFailed) as failure:
        import_records("customers", records, now=utcnow(), actor="api")
    assert [error.line for error in failure.value.errors] == [2, 2]
    assert failure.value.bad_rows == 1
    report = import_records("customers", records[:1], now=utcnow(), actor="api")
    assert report.created == 1
    [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "import.customers"))
    assert event.actor == "import:api"


# --- email addresses ------------------------------------------------------------------------


def test_a_non_ascii_local_part_is_imported_with_a_warning(app, db_session, tmp_path):
    path = write(
        tmp_path,
        "account_number,name,email\nA-1,Jürgen,jürgen@müller.example\nA-2,Anna,anna@bücher.example\n",
    )
    result = app.test_cli_runner().invoke(import_group, ["customers", path])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "  line 2: warning: email 'jürgen@müller.example' has letters outside ASCII before "
        "the @; it can only be delivered through a mail server that supports SMTPUTF8"
    ]
    assert count(Customer) == 2


def test_the_cli_imports_credit_notes(app, db_session, tmp_path):
    customer = make_customer(account_number="A-1", currency="EUR")
    make_invoice(customer, number="INV-1", lines=[("Work", "1", "2000.00")])
    path = write(
        tmp_path,
        "account_number;credit_note_reference;invoice_number;issued_on;amount;currency;reason\n"
        "A-1;CN-1;INV-1;2026-02-01;1.234,56;EUR;Rabatt\n",
    )
    result = app.test_cli_runner().invoke(import_group, ["credit-notes", path])
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.splitlines()[-1] == f"{path}: imported (1 created, 0 updated, 0 unchanged)."
    )
    assert db.session.scalar(select(CreditNote.amount_minor)) == 123_456
