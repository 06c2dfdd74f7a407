"""The customer timeline: every source merged newest first, paged in SQL, open to new
sources (disputes, plans) without a change to the merge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import String, cast, literal, null, select

from portal.audit.actors import Actor
from portal.audit.models import AuditEvent
from portal.audit.services import record_event
from portal.db import MinorUnits
from portal.desk.timeline import COLUMNS, SOURCES, dispute_steps, timeline_for
from portal.extensions import db
from portal.money import Money
from portal.promises.models import NoteKind
from portal.promises.services import add_note
from tests.factories import make_customer, make_invoice

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_events_of_every_kind_come_newest_first_and_only_the_customers(db_session):
    customer, other = make_customer(), make_customer()
    make_invoice(customer, number="TLX-1").created_at = T0
    make_invoice(other, number="TLX-OTHER").created_at = T0
    record_event(
        "link.opened", actor="customer:1", now=T0 + timedelta(hours=1), customer_id=customer.id
    )
    record_event("checkout.opened", actor="x", now=T0 + timedelta(hours=2), customer_id=customer.id)
    add_note(
        customer,
        kind=NoteKind.NOTE,
        body="later",
        actor=Actor("staff", "3"),
        now=T0 + timedelta(hours=3),
    )
    db.session.flush()
    page = timeline_for(customer.id)
    assert [(e.kind, e.reference) for e in page.entries] == [
        ("note", "staff:3"),
        ("link.opened", "customer:1"),  # an audited kind; checkout.opened is not one
        ("invoice.imported", "TLX-1"),
    ]
    assert [e.label for e in page.entries] == ["Note", "Link opened", "Invoice imported"]
    assert not page.has_next


def test_the_timeline_is_paged(db_session):
    customer = make_customer()
    for n in range(7):
        add_note(
            customer,
            kind=NoteKind.CALL,
            body=f"call {n}",
            actor=Actor("system"),
            now=T0 + timedelta(minutes=n),
        )
    first = timeline_for(customer.id, page=1, per_page=3)
    third = timeline_for(customer.id, page=3, per_page=3)
    assert [e.detail for e in first.entries] == ["call 6", "call 5", "call 4"]
    assert first.has_next
    assert not first.has_previous
    assert [e.detail for e in third.entries] == ["call 0"]
    assert not third.has_next
    assert third.has_previous


def test_a_new_source_joins_the_merge_unchanged(db_session):
    """What the disputes issue will do: a function returning the eight columns."""

    def disputes(customer_id: int):  # type: ignore[no-untyped-def]
        return select(
            *[
                column.label(name)
                for column, name in zip(
                    [
                        AuditEvent.occurred_at,
                        literal("dispute.opened", String),
                        AuditEvent.id,
                        cast(null(), String),
                        literal(1234, MinorUnits),
                        literal("USD", String),
                        literal("wrong quantity", String),
                        literal("open", String),
                    ],
                    COLUMNS,
                    strict=True,
                )
            ]
        ).where(AuditEvent.customer_id == customer_id, AuditEvent.action == "dispute.opened")

    customer = make_customer()
    record_event("dispute.opened", actor="customer:1", now=T0, customer_id=customer.id)
    make_invoice(customer).created_at = T0 - timedelta(days=1)
    db.session.flush()
    # (the registry's own dispute source is left out: this one stands in for a new capability)
    others = tuple(source for source in SOURCES if source is not dispute_steps)
    page = timeline_for(customer.id, sources=(*others, disputes))
    assert [e.kind for e in page.entries] == ["dispute.opened", "invoice.imported"]
    assert page.entries[0].amount.minor == 1234
    assert page.entries[0].detail == "wrong quantity"


def test_an_invoice_changed_by_a_reimport_shows_what_changed(db_session):
    import io

    from portal.imports.services import import_file

    customer = make_customer(account_number="TLC-1", currency="USD")
    header = (
        "account_number,invoice_number,issue_date,due_date,currency,line_number,"
        "description,quantity,unit_price,tax_amount\n"
    )
    import_file(
        "invoices",
        io.StringIO(header + "TLC-1,TLC-INV,2026-01-05,2026-02-04,USD,1,Widgets,2,10.00,\n"),
        now=T0,
        actor="cli",
    )
    import_file(
        "invoices",
        io.StringIO(header + "TLC-1,TLC-INV,2026-01-05,2026-03-01,USD,1,Widgets,3,10.00,\n"),
        now=T0 + timedelta(days=1),
        actor="cli",
    )
    db.session.flush()
    entries = timeline_for(customer.id).entries
    assert [(e.kind, e.reference, e.amount, e.status) for e in entries] == [
        ("invoice.changed", "TLC-INV", Money(3000, "USD"), "import:cli"),
        ("invoice.imported", "TLC-INV", Money(3000, "USD"), None),
    ]
    assert entries[0].label == "Invoice changed"
    assert entries[0].detail == (
        "Total was $20.00; Due date was Feb 4, 2026, now Mar 1, 2026; "
        "Lines: 0 added, 0 removed, 1 changed"
    )
