"""The audit log: append-only in the database, filtered and exported by admins."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.audit.actors import Actor
from portal.audit.models import AuditEvent
from portal.audit.queries import safe_cell
from portal.audit.services import record_event
from portal.db import utcnow
from portal.extensions import db
from tests.factories import make_customer


def _refused(sql: str, **params: object) -> str:
    with pytest.raises(sa.exc.DBAPIError) as caught, db.session.begin_nested():
        db.session.execute(sa.text(sql), params)
    return str(caught.value)


def test_audit_rows_cannot_be_updated_or_deleted(db_session) -> None:
    event = record_event("test.happened", actor=Actor.system(), now=utcnow())
    db.session.flush()
    assert "append-only" in _refused(
        "UPDATE audit_events SET actor = 'x' WHERE id = :id", id=event.id
    )
    assert "append-only" in _refused("DELETE FROM audit_events WHERE id = :id", id=event.id)
    assert "append-only" in _refused("DELETE FROM audit_events")
    db.session.expire_all()
    kept = db.session.get(AuditEvent, event.id)
    assert kept is not None
    assert kept.actor == "system"


def test_append_only_triggers_are_in_place_at_head(db_session) -> None:
    # A later SQLite batch migration that rebuilds audit_events drops its triggers.
    if db.engine.dialect.name == "sqlite":
        query = (
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_events'"
        )
        expected = {"trg_audit_events_append_only_update", "trg_audit_events_append_only_delete"}
    else:
        query = (
            "SELECT DISTINCT trigger_name FROM information_schema.triggers"
            " WHERE event_object_table = 'audit_events'"
        )
        expected = {"trg_audit_events_append_only"}
    assert expected <= set(db.session.scalars(sa.text(query)))


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("plain", "plain"),
        (None, ""),
        (42, "42"),
    ],
)
def test_csv_cells_never_start_a_formula(value: object, written: str) -> None:
    assert safe_cell(value) == written


def test_admin_filters_the_audit_log(admin_client: FlaskClient) -> None:
    customer = make_customer(account_number="ACC-AUDIT-1")
    now = utcnow()
    record_event("note.added", actor=Actor.staff(7), now=now, customer_id=customer.id)
    record_event("payment.recorded", actor=Actor.system(), now=now - timedelta(days=3))
    db.session.flush()
    page = admin_client.get("/staff/admin/audit?account_number=ACC-AUDIT-1")
    assert page.status_code == 200
    assert "note.added" in page.text
    assert "payment.recorded" not in page.text
    page = admin_client.get("/staff/admin/audit?actor=system&action=payment.")
    assert "payment.recorded" in page.text
    assert "note.added" not in page.text
    day = (now - timedelta(days=3)).date().isoformat()
    page = admin_client.get(f"/staff/admin/audit?date_from={day}&date_to={day}")
    assert "payment.recorded" in page.text
    assert "note.added" not in page.text


def test_bad_filter_is_a_message_not_an_error(admin_client: FlaskClient) -> None:
    page = admin_client.get("/staff/admin/audit?date_from=2026-13-45")
    assert page.status_code == 400
    assert "Please check the form" in page.text
    page = admin_client.get("/staff/admin/audit?date_from=2026-05-02&date_to=2026-05-01")
    assert page.status_code == 400
    assert "The end date is before the start date." in page.text


def test_audit_log_pages(admin_client: FlaskClient) -> None:
    now = utcnow()
    for n in range(60):
        record_event("bulk.row", actor=Actor.system(), now=now, data={"n": n})
    db.session.flush()
    first = admin_client.get("/staff/admin/audit?action=bulk.row")
    assert first.text.count("bulk.row</td>") == 50
    assert "Older events" in first.text
    second = admin_client.get("/staff/admin/audit?action=bulk.row&page=2")
    assert second.text.count("bulk.row</td>") == 10
    assert "Newer events" in second.text
    assert "Older events" not in second.text


def test_csv_export_escapes_formulas_and_is_audited(admin_client: FlaskClient) -> None:
    record_event("evil.row", actor=Actor.system(), now=utcnow(), data={"note": "=1+1"})
    db.session.flush()
    response = admin_client.get("/staff/admin/audit.csv?action=evil.row")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:4] == ["id", "occurred_at", "actor", "action"]
    assert len(rows) == 2
    assert rows[1][3] == "evil.row"
    assert all(not cell.startswith(("=", "+", "-", "@")) for cell in rows[1])
    exported = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "audit.exported"))
    assert exported is not None
    assert exported.actor == f"staff:{admin_client.staff_member.id}"  # type: ignore[attr-defined]


def test_audit_log_names_the_staff_member(admin_client: FlaskClient) -> None:
    """A staff actor reads as the member's name beside its id, not a bare "staff:7"."""
    member = admin_client.staff_member  # type: ignore[attr-defined]
    page = admin_client.get(f"/staff/admin/audit?actor=staff:{member.id}")
    assert page.status_code == 200
    assert f"{member.name} (staff:{member.id})" in page.text
