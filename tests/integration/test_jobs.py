"""The jobs runner: due jobs only, a log of every run, one runner per job at a time."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select, update

from portal.customers.models import Customer
from portal.db import utcnow
from portal.extensions import db
from portal.jobs.models import JobRun, JobSchedule
from portal.jobs.registry import JOBS
from portal.jobs.runner import SQLITE_RUNNER_LOCK, run_jobs
from portal.notifications.models import OutboxMessage
from portal.notifications.sender import SmtpSender, SmtpSettings
from portal.notifications.services import deliver_due_messages
from tests.factories import csrf_token_from, make_customer

NOON = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)


def test_run_logs_every_job_and_reschedules_it(db_session):
    outcomes = run_jobs(now=NOON, runner="r1")
    # Every registered job, in the registry's order (the order its comments explain).
    kinds = list(JOBS)
    assert kinds[:3] == ["write_off_small_balances", "match_link_requests", "decide_promises"]
    assert kinds.index("schedule_emails") < kinds.index("deliver_email")
    assert [(o.kind, o.outcome) for o in outcomes] == [(kind, "ok") for kind in kinds]
    runs = db.session.scalars(select(JobRun).order_by(JobRun.id)).all()
    assert [(r.kind, r.outcome, r.runner) for r in runs] == [(kind, "ok", "r1") for kind in kinds]
    assert all(r.finished_at is not None for r in runs)
    schedule = db.session.get(JobSchedule, "deliver_email")
    assert schedule.next_run_at == NOON + timedelta(minutes=1)
    assert schedule.lease_holder is None


def test_jobs_that_are_not_due_are_skipped_unless_forced(db_session):
    run_jobs(now=NOON, runner="r1")
    again = run_jobs(now=NOON + timedelta(seconds=10), runner="r1")
    assert {o.outcome for o in again} == {"skipped"}
    forced = run_jobs(now=NOON + timedelta(seconds=10), runner="r1", force=True)
    assert {o.outcome for o in forced} == {"ok"}


def test_only_runs_one_kind(db_session):
    outcomes = run_jobs(now=NOON, runner="r1", only="deliver_email")
    assert [o.kind for o in outcomes] == ["deliver_email"]


def test_job_held_by_a_live_runner_is_not_run_again(db_session):
    run_jobs(now=NOON, runner="r1", force=True)
    db.session.execute(
        update(JobSchedule)
        .where(JobSchedule.kind.in_(["deliver_email", SQLITE_RUNNER_LOCK]))
        .values(lease_holder="r2", lease_until=NOON + timedelta(hours=1))
    )
    outcomes = run_jobs(now=NOON + timedelta(minutes=5), runner="r1", force=True)
    by_kind = {o.kind: o.outcome for o in outcomes}
    if db.engine.dialect.name == "sqlite":
        assert by_kind == {SQLITE_RUNNER_LOCK: "skipped"}  # the single-runner lock
    else:
        assert by_kind == {
            "write_off_small_balances": "ok",
            "match_link_requests": "ok",
            "decide_promises": "ok",
            "schedule_emails": "ok",
            "deliver_email": "skipped",
            "apply_webhooks": "ok",
        }
    # once the lease runs out, the job is free again
    outcomes = run_jobs(now=NOON + timedelta(hours=2), runner="r1", force=True)
    assert {o.kind: o.outcome for o in outcomes}["deliver_email"] == "ok"


def test_a_failing_job_is_logged_and_the_runner_goes_on(db_session, app, monkeypatch):
    from portal.jobs import registry

    def broken(now, runner):
        raise RuntimeError("boom")

    monkeypatch.setitem(
        registry.JOBS,
        "schedule_emails",
        registry.Job("schedule_emails", timedelta(minutes=15), broken, "broken"),
    )
    outcomes = run_jobs(now=NOON, runner="r1")
    assert [(o.kind, o.outcome) for o in outcomes] == [
        (kind, "error" if kind == "schedule_emails" else "ok") for kind in registry.JOBS
    ]
    assert "RuntimeError: boom" in {o.kind: o for o in outcomes}["schedule_emails"].detail


def test_concurrent_runners_send_each_email_exactly_once_on_postgres(app, smtp_server):
    """Several runners at once over a few hundred due emails: each is sent exactly once."""
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("row locks (FOR UPDATE SKIP LOCKED) are a PostgreSQL feature")
        # given 300 due emails, committed so that every runner's connection sees them
        customer = Customer(
            account_number="ACC-CONC",
            name="Concurrent",
            email="c@example.com",
            currency="USD",
            kind="business",
            segment="standard",
            timezone="UTC",
        )
        db.session.add(customer)
        db.session.flush()
        for n in range(300):
            db.session.add(
                OutboxMessage(
                    customer_id=customer.id,
                    kind="test",
                    category="transactional",
                    message_id=f"<conc-{n}@example.com>",
                    to_address="c@example.com",
                    locale="en",
                    subject=f"message {n}",
                    body_text="hello",
                    status="queued",
                    not_before=NOON,
                )
            )
        db.session.commit()
        customer_id = customer.id
    try:
        # when six runners deliver at the same time, in small batches
        barrier = threading.Barrier(6)
        errors: list[BaseException] = []

        def runner(name: str) -> None:
            try:
                with app.app_context():
                    sender = SmtpSender(SmtpSettings.from_url(smtp_server.url))
                    barrier.wait()
                    while deliver_due_messages(sender, now=NOON, runner=name, limit=10).sent:
                        pass
                    sender.close()
                    db.session.remove()
            except BaseException as error:  # surfaced in the main thread below
                errors.append(error)

        threads = [threading.Thread(target=runner, args=(f"runner-{i}",)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        # then every message arrived exactly once
        assert errors == []
        subjects = [email["Subject"] for email in smtp_server.received]
        assert len(subjects) == 300
        assert len(set(subjects)) == 300
        with app.app_context():
            statuses = set(
                db.session.scalars(
                    select(OutboxMessage.status).where(OutboxMessage.customer_id == customer_id)
                )
            )
            assert statuses == {"sent"}
    finally:
        with app.app_context():
            db.session.execute(
                delete(OutboxMessage).where(OutboxMessage.customer_id == customer_id)
            )
            db.session.execute(delete(Customer).where(Customer.id == customer_id))
            db.session.commit()


def test_mailbox_lists_and_shows_messages_in_development_only(app, client):
    from portal.notifications.services import queue_email

    customer = make_customer()
    message = queue_email(
        customer,
        kind="access_link",
        template="access_link",
        context={"expires_at": utcnow()},
        now=utcnow(),
        with_portal_link=True,
    )
    db.session.flush()
    assert client.get("/dev/mailbox/").status_code == 404
    app.config["DEV_MAILBOX"] = True
    try:
        listing = client.get("/dev/mailbox/")
        assert message.subject in listing.text
        detail = client.get(f"/dev/mailbox/{message.id}")
        # the stored copy holds the placeholder: its link is issued when it is sent
        assert "https://portal.example.test/l/link-issued-when-sent" in detail.text
        # development opens the portal as the recipient with a fresh link instead
        opened = client.post(
            f"/dev/mailbox/{message.id}/open",
            data={"csrf_token": csrf_token_from(detail.text)},
        )
        assert opened.status_code == 302
        assert opened.headers["Location"].startswith("/l/")
        assert client.get(opened.headers["Location"]).status_code == 200
        html = client.get(f"/dev/mailbox/{message.id}/html")
        assert "frame-ancestors 'self'" in html.headers["Content-Security-Policy"]
        assert "sandbox" in html.headers["Content-Security-Policy"]
    finally:
        app.config["DEV_MAILBOX"] = False
