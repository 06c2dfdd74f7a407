"""Run what is due, never twice at once.

Each job kind has a row in `job_schedules`. A runner takes a kind with one atomic,
conditional UPDATE (`… WHERE lease_until IS NULL OR lease_until < now`): on PostgreSQL
the row lock that UPDATE takes makes a concurrent runner's UPDATE wait and then match
nothing; on SQLite the database-wide write lock does the same. So two runners never
run the same kind at the same time, on any number of machines.

Email delivery additionally claims individual messages with `FOR UPDATE SKIP LOCKED`
on PostgreSQL (several runners send in parallel). SQLite has no row locks, so there
the whole runner is single: a runner first takes the `runner` lease, and a second
runner started meanwhile finds it held and exits without doing anything.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from portal.db import immediate_transactions, utcnow
from portal.extensions import db
from portal.jobs.models import JobRun, JobSchedule
from portal.jobs.registry import JOBS, Job

LEASE = timedelta(minutes=10)
SQLITE_RUNNER_LOCK = "runner"


def runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Outcome:
    kind: str
    outcome: str
    detail: str


def _ensure_schedule_rows(kinds: list[str], now: datetime) -> None:
    existing = set(db.session.scalars(select(JobSchedule.kind).where(JobSchedule.kind.in_(kinds))))
    for kind in kinds:
        if kind not in existing:
            try:
                with db.session.begin_nested():
                    db.session.add(JobSchedule(kind=kind, next_run_at=now))
            except IntegrityError:  # another runner created it first
                pass
    db.session.commit()


def _take(kind: str, runner: str, now: datetime, *, due_only: bool) -> bool:
    conditions = [
        JobSchedule.kind == kind,
        or_(JobSchedule.lease_until.is_(None), JobSchedule.lease_until < now),
    ]
    if due_only:
        conditions.append(JobSchedule.next_run_at <= now)
    result = db.session.execute(
        update(JobSchedule).where(*conditions).values(lease_holder=runner, lease_until=now + LEASE)
    )
    db.session.commit()
    return result.rowcount == 1  # type: ignore[attr-defined]


def _give_back(kind: str, runner: str, next_run_at: datetime | None) -> None:
    values: dict[str, object] = {"lease_holder": None, "lease_until": None}
    if next_run_at is not None:
        values["next_run_at"] = next_run_at
    db.session.execute(
        update(JobSchedule)
        .where(JobSchedule.kind == kind, JobSchedule.lease_holder == runner)
        .values(**values)
    )
    db.session.commit()


def _run_one(job: Job, runner: str, now: datetime) -> Outcome:
    log = JobRun(kind=job.kind, runner=runner, started_at=now, outcome="running")
    db.session.add(log)
    db.session.commit()
    log_id = log.id
    try:
        detail = job.run(now, runner)
        outcome = "ok"
    except Exception as error:  # the job log must record any failure, then go on
        db.session.rollback()
        detail, outcome = f"{type(error).__name__}: {error}"[:1000], "error"
    entry = db.session.get(JobRun, log_id)
    if entry is not None:
        entry.outcome, entry.detail = outcome, detail
        entry.finished_at = utcnow()
    db.session.commit()
    return Outcome(job.kind, outcome, detail)


def run_jobs(
    *, now: datetime, runner: str, only: str | None = None, force: bool = False
) -> list[Outcome]:
    """Run every due job (or every job, with `force`); skip what another runner holds."""
    # SQLite: every transaction of a pass takes the write lock as it begins, so that a
    # read-then-write never fails because a web request committed in between
    # (`portal.db.immediate_transactions`); each is short (email is sent outside them).
    with immediate_transactions():
        return _run_jobs(now=now, runner=runner, only=only, force=force)


def _run_jobs(*, now: datetime, runner: str, only: str | None, force: bool) -> list[Outcome]:
    kinds = [only] if only else list(JOBS)
    single_runner = db.engine.dialect.name == "sqlite"
    lock_kinds = [*kinds, SQLITE_RUNNER_LOCK] if single_runner else kinds
    _ensure_schedule_rows(lock_kinds, now)
    if single_runner and not _take(SQLITE_RUNNER_LOCK, runner, now, due_only=False):
        return [Outcome(SQLITE_RUNNER_LOCK, "skipped", "another runner holds the SQLite lock")]
    outcomes = []
    try:
        for kind in kinds:
            job = JOBS[kind]
            if not _take(kind, runner, now, due_only=not force):
                outcomes.append(Outcome(kind, "skipped", "not due, or held by another runner"))
                continue
            result = _run_one(job, runner, now)
            _give_back(kind, runner, now + job.every)
            outcomes.append(result)
    finally:
        if single_runner:
            _give_back(SQLITE_RUNNER_LOCK, runner, None)
    return outcomes
