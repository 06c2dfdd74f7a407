"""Invoice import: one row per line item, upsert by number, every bad row listed."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from portal.audit.models import AuditEvent
from portal.db import utcnow
from portal.extensions import db
from portal.imports.services import ImportFailed, import_file
from portal.invoices.models import Invoice, InvoiceLine
from tests.factories import make_credit, make_customer, make_invoice, make_payment

HEADER = (
    "account_number,invoice_number,issue_date,due_date,currency,line_number,"
    "description,quantity,unit_price,tax_amount\n"
)


def run(text: str, *, dry_run: bool = False):
    return import_file("invoices", io.StringIO(text), dry_run=dry_run, now=utcnow(), actor="test")


def errors_of(text: str) -> list[tuple[int, str]]:
    with pytest.raises(ImportFailed) as failure:
        run(text)
    return [(error.line, error.message) for error in failure.value.errors]


def invoice(number: str) -> Invoice:
    return db.session.scalar(select(Invoice).where(Invoice.number == number))


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def acme(db_session):
    return make_customer(account_number="A-1", currency="USD")


def test_lines_are_grouped_into_invoices_with_rounded_amounts(acme):
    # when
    report = run(
        HEADER
        + "A-1,INV-1,2026-01-05,2026-02-04,USD,1,Widgets,2.5,10.01,1.00\n"
        + "A-1,INV-2,2026-01-07,2026-02-06,usd,1,Consulting,1,100,\n"
        + "A-1,INV-1,2026-01-05,2026-02-04,USD,2,Bolts,0.333,0.15,\n"
    )
    # then
    assert report.summary() == "2 created, 0 updated, 0 unchanged"
    first = invoice("INV-1")
    assert first.customer_id == acme.id
    assert [
        (line.line_number, line.quantity_milli, str(line.unit_price.to_decimal()), line.tax_minor)
        for line in first.lines
    ] == [(1, 2500, "10.01", 100), (2, 333, "0.15", 0)]
    # 2.5 x 1001 = 2502.5 -> 2503, + 100 tax; 0.333 x 15 = 4.995 -> 5
    assert [line.amount_minor for line in first.lines] == [2603, 5]
    assert first.total_minor == 2608
    assert invoice("INV-2").total_minor == 10000
    [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "import.invoices"))
    assert event.data == {"rows": 3, "created": 2, "updated": 0, "unchanged": 0, "lines": 3}


def test_reimporting_the_same_file_changes_nothing(acme):
    text = (
        HEADER
        + "A-1,INV-1,2026-01-05,2026-02-04,USD,1,Widgets,2,10.00,0.80\n"
        + "A-1,INV-1,2026-01-05,2026-02-04,USD,2,Delivery,1,5.00,\n"
    )
    run(text)
    line_ids = [line.id for line in invoice("INV-1").lines]
    report = run(text)
    assert report.summary() == "0 created, 0 updated, 1 unchanged"
    assert [line.id for line in invoice("INV-1").lines] == line_ids
    assert count(Invoice) == 1
    assert count(InvoiceLine) == 2


def test_changed_lines_replace_the_old_ones_and_the_total_follows(acme):
    existing = make_invoice(
        acme,
        number="INV-1",
        lines=[("Widgets", "2", "10.00"), ("Delivery", "1", "5.00"), ("Old fee", "1", "3.00")],
    )
    kept_line_id = existing.lines[0].id
    report = run(
        HEADER
        + "A-1,INV-1,2026-10-01,2026-11-15,USD,1,Widgets,2,10.00,\n"
        + "A-1,INV-1,2026-10-01,2026-11-15,USD,2,Express delivery,1,9.50,\n"
        + "A-1,INV-1,2026-10-01,2026-11-15,USD,4,Gift wrap,3,1.00,0.25\n"
    )
    assert report.summary() == "0 created, 1 updated, 0 unchanged"
    changed = invoice("INV-1")
    assert [(line.line_number, line.description, line.amount_minor) for line in changed.lines] == [
        (1, "Widgets", 2000),
        (2, "Express delivery", 950),
        (4, "Gift wrap", 325),
    ]
    assert changed.lines[0].id == kept_line_id
    assert changed.total_minor == 3275
    assert str(changed.due_date) == "2026-11-15"


def test_each_kind_of_bad_row_is_reported_with_its_line(acme):
    make_customer(account_number="E-1", currency="EUR")
    other = make_customer(account_number="B-1")
    make_invoice(other, number="INV-OTHER")
    text = (
        HEADER
        + "A-1,INV-1,2026-01-05,2026-02-04,USD,1,Good line,1,10,\n"  # 2: fine
        + "X-9,INV-2,2026-01-05,2026-02-04,USD,1,Unknown account,1,10,\n"  # 3
        + "A-1,INV-3,2026-02-30,2026-03-04,USD,1,Bad date,1,10,\n"  # 4
        + "A-1,INV-4,2026-01-05,2026-02-04,USD,1,Negative price,1,-10,\n"  # 5
        + "A-1,INV-5,2026-01-05,2026-02-04,USD,1,Malformed price,1,10.0.0,\n"  # 6
        + "E-1,INV-6,2026-01-05,2026-02-04,USD,1,Wrong currency,1,10,\n"  # 7
        + "A-1,INV-1,2026-01-05,2026-02-04,USD,1,Duplicate line,1,10,\n"  # 8
        + "A-1,INV-7,2026-03-05,2026-02-04,USD,1,Due before issue,1,10,\n"  # 9
        + "A-1,INV-1,2026-01-06,2026-02-04,USD,2,Other issue date,1,10,\n"  # 10
        + "A-1,INV-8,2026-01-05,2026-02-04,USD,1,Too precise,1.2345,10,\n"  # 11
        + "A-1,INV-OTHER,2026-01-05,2026-02-04,USD,1,Someone else's,1,10,\n"  # 12
        + "A-1,INV-9,2026-01-05,2026-02-04,USD,1,Negative tax,1,10,-1\n"  # 13
        + "A-1,INV-10,2026-01-05,2026-02-04,USD,1,,1,10,\n"  # 14
    )
    assert errors_of(text) == [
        (3, "unknown account 'X-9'"),
        (4, "issue_date '2026-02-30' is not a real date"),
        (5, "unit_price '-10' must not be negative"),
        (
            6,
            "unit_price '10.0.0' is not a decimal number (use digits and a '.' point, "
            "e.g. 1234.50)",
        ),
        (7, "currency USD does not match account 'E-1''s currency EUR"),
        (8, "invoice 'INV-1' line 1 already appears on line 2"),
        (9, "due_date 2026-02-04 is before issue_date 2026-03-05"),
        (10, "invoice 'INV-1' has issue_date 2026-01-05 on line 2 but 2026-01-06 here"),
        (11, "quantity '1.2345' has more than 3 decimal places"),
        (12, "invoice 'INV-OTHER' already exists under another account"),
        (13, "tax_amount '-1' must not be negative"),
        (14, "description is required"),
    ]
    assert count(Invoice) == 1  # only INV-OTHER from the factory
    assert count(InvoiceLine) == 1
    assert count(AuditEvent) == 0


def test_missing_and_unknown_columns_fail_the_file(acme):
    errors = errors_of(
        "account_number,invoice_number,issue_date,due_date,currency,line_number,"
        "quantity,unit_price,colour\nA-1,INV-1,2026-01-05,2026-02-04,USD,1,1,10,red\n"
    )
    assert [line for line, _ in errors] == [1, 1]
    messages = [message for _, message in errors]
    assert messages[0] == "missing required column 'description'"
    assert messages[1].startswith("unknown column 'colour'; the columns are account_number,")


def test_tax_amount_column_is_optional(acme):
    run(
        "account_number,invoice_number,issue_date,due_date,currency,line_number,"
        "description,quantity,unit_price\nA-1,INV-1,2026-01-05,2026-02-04,USD,1,Fee,1,10\n"
    )
    assert invoice("INV-1").total_minor == 1000


def test_byte_order_mark_is_accepted(acme):
    data = ("\ufeff" + HEADER + "A-1,INV-1,2026-01-05,2026-02-04,USD,1,Fee,1,10,\n").encode()
    report = import_file("invoices", io.BytesIO(data), now=utcnow(), actor="test")
    assert report.created == 1


def test_yen_amounts_have_no_minor_digits(db_session):
    make_customer(account_number="J-1", currency="JPY")
    run(HEADER + "J-1,JP-1,2026-01-05,2026-02-04,JPY,1,Sencha,3,1250,375\n")
    [line] = invoice("JP-1").lines
    assert (str(line.unit_price.to_decimal()), line.tax_minor, line.amount_minor) == (
        "1250",
        375,
        4125,
    )
    assert invoice("JP-1").total_minor == 4125


def test_yen_fractions_round_half_up_once(db_session):
    make_customer(account_number="J-1", currency="JPY")
    run(HEADER + "J-1,JP-1,2026-01-05,2026-02-04,JPY,1,Sencha,1.5,99.5,\n")
    # 1.5 x 99.5 = 149.25 -> 149 yen: the product is rounded, never the price first
    [line] = invoice("JP-1").lines
    assert (str(line.unit_price.to_decimal()), line.amount_minor) == ("99.5", 149)


def test_lowering_a_paid_invoice_below_what_was_paid_is_refused(acme):
    existing = make_invoice(acme, number="INV-1", lines=[("Widgets", "1", "100.00")])
    make_payment(acme, [(existing, "60.00")])
    make_credit(existing, "30.00")
    errors = errors_of(HEADER + "A-1,INV-1,2026-10-01,2026-10-31,USD,1,Widgets,1,80.00,\n")
    assert errors == [
        (
            2,
            "invoice 'INV-1' would total 80.00 USD, less than the 90.00 USD already paid "
            "or credited on it",
        )
    ]
    assert invoice("INV-1").total_minor == 10000


def test_lowering_a_paid_invoice_to_what_was_paid_is_allowed(acme):
    existing = make_invoice(acme, number="INV-1", lines=[("Widgets", "1", "100.00")])
    make_payment(acme, [(existing, "90.00")])
    report = run(HEADER + "A-1,INV-1,2026-10-01,2026-10-31,USD,1,Widgets,1,90.00,\n")
    assert report.updated == 1
    assert invoice("INV-1").total_minor == 9000


def test_a_void_invoice_cannot_be_changed(acme):
    existing = make_invoice(acme, number="INV-1", lines=[("Widgets", "1", "100.00")])
    existing.voided_at = utcnow()
    db.session.flush()
    errors = errors_of(HEADER + "A-1,INV-1,2026-10-01,2026-10-31,USD,1,Widgets,1,99.00,\n")
    assert errors == [(2, "invoice 'INV-1' is void and cannot be changed")]


def test_dry_run_reports_but_writes_nothing(acme):
    report = run(HEADER + "A-1,INV-1,2026-01-05,2026-02-04,USD,1,Fee,1,10,\n", dry_run=True)
    assert report.summary() == "1 created, 0 updated, 0 unchanged"
    assert count(Invoice) == 0
    assert count(AuditEvent) == 0


def test_many_invoices_are_looked_up_in_chunks(acme):
    rows = "".join(
        f"A-1,BULK-{n:04d},2026-01-05,2026-02-04,USD,{line},Item,1,1.{n % 100:02d},\n"
        for n in range(1200)
        for line in (1, 2)
    )
    assert run(HEADER + rows).created == 1200
    report = run(HEADER + rows)
    assert report.summary() == "0 created, 0 updated, 1200 unchanged"
    assert count(InvoiceLine) == 2400


def test_an_overflowing_line_reads_like_the_other_errors(db_session):
    # 100,000,000 x 100,000,000 USD: the product is past any amount.
    make_customer(account_number="A-1", currency="USD")
    text = HEADER + "A-1,INV-1,2026-01-05,2026-02-04,USD,1,Huge,100000000,100000000,\n"
    ((line, message),) = errors_of(text)
    assert line == 2
    assert message == (
        "quantity x unit price is 10,000,000,000,000,000, too large an amount"
        " (at most 1,000,000,000,000,000)"
    )


def test_each_invoice_created_or_changed_gets_an_audit_row_with_what_changed(acme):
    # given: two invoices imported, audited one row each with the import's actor
    run(
        HEADER
        + "A-1,AUD-1,2026-01-05,2026-02-04,USD,1,Widgets,2,10.00,\n"
        + "A-1,AUD-1,2026-01-05,2026-02-04,USD,2,Bolts,1,5.00,\n"
        + "A-1,AUD-2,2026-01-07,2026-02-06,USD,1,Consulting,1,100,\n"
    )
    created = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "invoice.imported").order_by(AuditEvent.id)
    ).all()
    assert [(e.actor, e.customer_id, e.subject_type, e.data) for e in created] == [
        (
            "import:test",
            acme.id,
            "invoices",
            {
                "number": "AUD-1",
                "currency": "USD",
                "total_minor": 2500,
                "due_date": "2026-02-04",
                "lines": 2,
            },
        ),
        (
            "import:test",
            acme.id,
            "invoices",
            {
                "number": "AUD-2",
                "currency": "USD",
                "total_minor": 10000,
                "due_date": "2026-02-06",
                "lines": 1,
            },
        ),
    ]
    assert created[0].subject_id == invoice("AUD-1").id

    # when: AUD-1 re-imported with a later due date, line 1 changed, line 2 gone, line 3
    # new; AUD-2 unchanged
    run(
        HEADER
        + "A-1,AUD-1,2026-01-05,2026-03-01,USD,1,Widgets,3,10.00,\n"
        + "A-1,AUD-1,2026-01-05,2026-03-01,USD,3,Nuts,1,1.50,\n"
        + "A-1,AUD-2,2026-01-07,2026-02-06,USD,1,Consulting,1,100,\n"
    )

    # then: one "invoice.changed" row, for AUD-1 only, saying what changed
    changed = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "invoice.changed")
    ).all()
    assert [(e.subject_id, e.data) for e in changed] == [
        (
            invoice("AUD-1").id,
            {
                "number": "AUD-1",
                "currency": "USD",
                "total_minor": 3150,
                "due_date": "2026-03-01",
                "lines": 2,
                "total_before_minor": 2500,
                "due_date_before": "2026-02-04",
                "lines_added": 1,
                "lines_removed": 1,
                "lines_changed": 1,
            },
        )
    ]
    # and a dry run writes no audit rows
    run(HEADER + "A-1,AUD-1,2026-01-05,2026-03-01,USD,1,Widgets,4,10.00,\n", dry_run=True)
    assert (
        db.session.scalar(select(func.count()).where(AuditEvent.action.in_(["invoice.changed"])))
        == 1
    )


# --- invoice numbers that become the address of the invoice's page --------------------------
BAD_NUMBER = (
    "is not an invoice number: use only letters A-Z, digits and - _ . # and /, each part "
    "between / starting with a letter or digit"
)


def test_numbers_a_browser_or_the_router_would_misread_are_refused_per_row(acme):
    # given the numbers of the review, one per row, beside a good one
    rows = [
        "INV-1",  # 2: fine
        "..",  # 3: the browser goes up a level
        ".",  # 4
        "a/../b",  # 5
        "x//y",  # 6: an empty part
        "/x",  # 7
        "x/",  # 8
        "INV\x1f1",  # 9: a control character
        "INV 1",  # 10: a space
        "Ñ-1",  # 11: outside ASCII
        "A?1",  # 12
        "A%201",  # 13
        "x/pdf",  # 14: would open the PDF of invoice x
        "x/dispute",  # 15
    ]
    text = HEADER + "".join(
        f"A-1,{number},2026-01-05,2026-02-04,USD,1,Line,1,10,\n" for number in rows
    )
    # when / then: each bad number is its own line's error, and nothing is written
    expected = [
        (line, f"invoice_number {number!r} {BAD_NUMBER}")
        for line, number in [
            (3, ".."),
            (4, "."),
            (5, "a/../b"),
            (6, "x//y"),
            (7, "/x"),
            (8, "x/"),
            (10, "INV 1"),
            (11, "Ñ-1"),
            (12, "A?1"),
            (13, "A%201"),
        ]
    ]
    expected.append(
        (
            9,
            "invoice_number contains the invisible character U+001F, which cannot be stored; "
            "remove it and try again",
        )
    )
    expected += [
        (
            14,
            "invoice_number 'x/pdf' cannot end in /pdf: the invoice's address would open "
            "another page",
        ),
        (
            15,
            "invoice_number 'x/dispute' cannot end in /dispute: the invoice's address would "
            "open another page",
        ),
    ]
    assert errors_of(text) == sorted(expected)
    assert count(Invoice) == 0


@pytest.mark.parametrize(
    "number",
    ["280670965", "INV-000123", "FA/2024/001", "INV/2024/00001", "SI_2024.17", "A#17", "x/y"],
)
def test_real_world_numbers_import(acme, number):
    run(HEADER + f"A-1,{number},2026-01-05,2026-02-04,USD,1,Line,1,10,\n")
    assert invoice(number) is not None


def test_a_tab_or_line_break_in_a_quoted_number_is_refused(acme):
    text = HEADER + 'A-1,"INV\t1",2026-01-05,2026-02-04,USD,1,Line,1,10,\n'
    text += 'A-1,"INV\n2",2026-01-05,2026-02-04,USD,1,Line,1,10,\n'
    assert errors_of(text) == [
        (
            2,
            "invoice_number 'INV\\t1' has a space at either end, a tab or a line break; "
            "remove it and try again",
        ),
        (
            3,
            "invoice_number 'INV\\n2' has a space at either end, a tab or a line break; "
            "remove it and try again",
        ),
    ]
    assert count(Invoice) == 0
