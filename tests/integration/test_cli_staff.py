"""`portal staff create`: a member who can then sign in."""

from __future__ import annotations

from sqlalchemy import select

from portal.audit.models import AuditEvent
from portal.cli import staff_group
from portal.db import utcnow
from portal.extensions import db
from portal.staff.models import StaffMember
from portal.staff.services import check_password


def test_staff_create_reads_the_password_from_stdin(app, db_session):
    result = app.test_cli_runner().invoke(
        staff_group,
        [
            "create",
            "Ops.Lead@Northwind.example",
            "--name",
            "Ops Lead",
            "--role",
            "admin",
            "--password-stdin",
        ],
        input="a long enough passphrase\n",
    )
    assert result.exit_code == 0, result.output
    assert "created admin ops.lead@northwind.example" in result.output
    member = db.session.scalar(
        select(StaffMember).where(StaffMember.email == "ops.lead@northwind.example")
    )
    assert member is not None
    assert member.role == "admin"
    assert not member.mfa_enrolled
    assert (
        check_password("ops.lead@northwind.example", "a long enough passphrase", now=utcnow())
        is member
    )
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "staff.created"))
    assert event is not None
    assert event.actor == "cli"


def test_staff_create_prompts_twice(app, db_session):
    result = app.test_cli_runner().invoke(
        staff_group,
        ["create", "p@northwind.example", "--name", "P"],
        input="a long enough passphrase\na long enough passphrase\n",
    )
    assert result.exit_code == 0, result.output
    assert "created specialist p@northwind.example" in result.output


def test_staff_create_refuses_bad_input_with_one_line(app, db_session):
    runner = app.test_cli_runner()
    short = runner.invoke(
        staff_group,
        ["create", "s@northwind.example", "--name", "S", "--password-stdin"],
        input="short\n",
    )
    assert short.exit_code == 1
    assert "at least 12 characters" in short.output
    role = runner.invoke(
        staff_group,
        ["create", "s@northwind.example", "--name", "S", "--role", "root", "--password-stdin"],
        input="a long enough passphrase\n",
    )
    assert role.exit_code == 2
    runner.invoke(
        staff_group,
        ["create", "s@northwind.example", "--name", "S", "--password-stdin"],
        input="a long enough passphrase\n",
    )
    again = runner.invoke(
        staff_group,
        ["create", "S@northwind.example", "--name", "S", "--password-stdin"],
        input="a long enough passphrase\n",
    )
    assert again.exit_code == 1
    assert "already exists" in again.output
    assert db.session.scalars(select(StaffMember)).all().__len__() == 1
