"""Every kind of job, in one place: what it does and how often it runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app

from portal.config import ConfigurationError


@dataclass(frozen=True)
class Job:
    kind: str
    every: timedelta
    run: Callable[[datetime, str], str]  # (now, runner id) -> a one-line outcome
    description: str


def _deliver_email(now: datetime, runner: str) -> str:
    from portal.notifications.services import deliver_due_messages

    sender = sender_from_config()
    try:
        return deliver_due_messages(sender, now=now, runner=runner).summary()
    finally:
        sender.close()


def _schedule_collection_emails(now: datetime, runner: str) -> str:
    from portal.extensions import db
    from portal.notifications.services import schedule_collection_emails

    report = schedule_collection_emails(now=now)
    db.session.commit()
    return report.summary()


def _match_link_requests(now: datetime, runner: str) -> str:
    from portal.access.services import match_link_requests
    from portal.extensions import db

    counts = match_link_requests(
        now=now,
        ttl=timedelta(days=current_app.config["ACCESS_LINK_TTL_DAYS"]),
    )
    db.session.commit()
    return ", ".join(f"{count} {outcome}" for outcome, count in counts.items())


def _apply_webhooks(now: datetime, runner: str) -> str:
    from portal.jobs.webhook_worker import apply_all_pending

    return f"{apply_all_pending(now=now)} webhook events applied"


def _write_off_small_balances(now: datetime, runner: str) -> str:
    from portal.config import small_balance_tolerances
    from portal.extensions import db
    from portal.invoices.services import write_off_small_balances

    tolerances = small_balance_tolerances(current_app.config.get("SMALL_BALANCE_TOLERANCE", ""))
    report = write_off_small_balances(tolerances, now=now)
    db.session.commit()
    return report.summary()


def _decide_promises(now: datetime, runner: str) -> str:
    from portal.extensions import db
    from portal.promises.services import decide_due_promises

    report = decide_due_promises(now=now)
    db.session.commit()
    return report.summary()


def _flag_dispute_replies(now: datetime, runner: str) -> str:
    from portal.disputes.services import flag_overdue_replies
    from portal.extensions import db

    flagged = flag_overdue_replies(now=now)
    db.session.commit()
    return f"{flagged} disputes flagged back to staff (no reply in time)"


def _purge_old_sessions(now: datetime, runner: str) -> str:
    from portal.access.sessions import purge_old_sessions
    from portal.extensions import db

    keep = timedelta(days=current_app.config["SESSION_RETENTION_DAYS"])
    deleted = purge_old_sessions(now=now, keep=keep)
    db.session.commit()
    return f"{deleted} old sessions deleted"


def sender_from_config():  # type: ignore[no-untyped-def]
    from portal.notifications.sender import ConsoleSender, SmtpSender, SmtpSettings

    url = current_app.config.get("SMTP_URL")
    if url:
        return SmtpSender(SmtpSettings.from_url(url))
    if current_app.config["ENV_NAME"] == "production":
        raise ConfigurationError("SMTP_URL must be set in production to deliver email.")
    return ConsoleSender()


JOBS: dict[str, Job] = {
    job.kind: job
    for job in (
        # Before the reminders: a remainder written off is not dunned (nor would it be).
        Job(
            "write_off_small_balances",
            timedelta(minutes=15),
            _write_off_small_balances,
            "write off remainders no card can pay, up to SMALL_BALANCE_TOLERANCE",
        ),
        # Before delivery, so that one pass answers a lost-link request.
        Job(
            "match_link_requests",
            timedelta(minutes=1),
            _match_link_requests,
            "match lost-link requests to customers and queue their links",
        ),
        # Before the reminders: a broken promise's invoices are dunned again at once.
        Job(
            "decide_promises",
            timedelta(minutes=15),
            _decide_promises,
            "decide promises to pay whose date has passed: kept or broken",
        ),
        Job(
            "flag_dispute_replies",
            timedelta(minutes=15),
            _flag_dispute_replies,
            "hand disputes back to staff when the customer did not reply by DISPUTE_REPLY_DAYS",
        ),
        Job(
            "schedule_emails",
            timedelta(minutes=15),
            _schedule_collection_emails,
            "queue invoice notices and reminders that are due",
        ),
        Job(
            "deliver_email", timedelta(minutes=1), _deliver_email, "send due email from the outbox"
        ),
        Job(
            "purge_old_sessions",
            timedelta(hours=6),
            _purge_old_sessions,
            "delete session rows ended or expired over SESSION_RETENTION_DAYS ago",
        ),
        # `jobs run --loop` applies events as they arrive; this pass is for cron set-ups.
        Job(
            "apply_webhooks",
            timedelta(minutes=1),
            _apply_webhooks,
            "apply the Stripe events the webhook stored",
        ),
    )
}
