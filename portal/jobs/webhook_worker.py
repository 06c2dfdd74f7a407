"""The webhook worker: applies Stripe's stored events as they arrive, committing each batch.

`portal.payments.inbox` stores and applies events in the caller's transaction; this
module is that caller for the worker (`flask jobs run --loop`) and for the
`apply_webhooks` job: it commits after each batch, and detaches the cards of the
charges a batch settled, and cancels the SetupIntents of customers who reached the cap
on failed card attempts and the failed PaymentIntents a browser could confirm again with
another card, once that batch is committed (calls to Stripe, no lock held).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
from flask import current_app
from sqlalchemy import URL

from portal.db import utcnow
from portal.extensions import db
from portal.payments.card_testing import cancel_setup_intents
from portal.payments.checkouts import cancel_payments, detach_cards
from portal.payments.deferred import NOTIFY_CHANNEL, any_deferred_event_awake, wake_deferred_events
from portal.payments.gateway import gateway_from_config, is_enabled
from portal.payments.inbox import apply_pending_events, has_pending_events
from portal.payments.locks import take_writer_lock

log = logging.getLogger(__name__)


def apply_all_pending(*, now: datetime, max_batches: int = 50) -> int:
    """Apply pending events batch after batch, committing each, until none is left (or
    `max_batches` were applied, so that a steady stream does not starve the other jobs)."""
    anything = _wake_deferred() or has_pending_events()
    # End the read before claiming: on SQLite a read transaction that then writes can be
    # refused at once ("database is locked") when a web process is committing.
    db.session.commit()
    if not anything:
        return 0  # and on SQLite, no writer lock taken for nothing
    total = 0
    for _ in range(max_batches):
        batch = apply_pending_events(now=now)
        db.session.commit()
        if not batch.claimed:
            break
        total += batch.claimed
        # An event this batch deferred may wait for a payment that another worker
        # committed meanwhile, unseen by this batch (or the other way round): of the
        # two commits, the later one's worker sees both here, and applies the event next.
        _wake_deferred()
        if batch.detach and is_enabled(current_app.config):
            detach_cards(gateway_from_config(current_app.config), batch.detach)
        if (batch.cancel_setups or batch.cancel_payments) and is_enabled(current_app.config):
            gateway = gateway_from_config(current_app.config)
            cancel_setup_intents(gateway, batch.cancel_setups)
            cancel_payments(gateway, batch.cancel_payments)
    return total


def _wake_deferred() -> bool:
    """Make pending again the deferred events whose payment is recorded now; True if any.

    Read first, and on SQLite take the writer lock before writing (`apply_all_pending`
    says why); the common case, nothing to wake, only reads.
    """
    awake = any_deferred_event_awake()
    db.session.commit()
    if not awake:
        return False
    take_writer_lock()
    woken = wake_deferred_events()
    db.session.commit()
    return woken > 0


def apply_as_they_arrive(
    keep_going: Callable[[], float],
    *,
    poll_seconds: float,
    report: Callable[[int], None] = lambda applied: None,
) -> None:
    """The worker's loop between its timed jobs: wait for events, apply them, repeat.

    `keep_going()` gives the seconds left (0 or less stops the loop). Needs an app context.
    """
    waiter = EventWaiter(db.engine.url, poll_seconds=poll_seconds)
    try:
        while (left := keep_going()) > 0:
            waiter.wait(left)
            try:
                applied = apply_all_pending(now=utcnow())
            except Exception:  # the database went away, say: log, and try again later
                log.exception("applying webhook events failed; retrying")
                db.session.rollback()
                time.sleep(min(poll_seconds, left))
                continue
            if applied:
                report(applied)
    finally:
        waiter.close()
        db.session.remove()


class EventWaiter:
    """Lets the worker sleep until an event is stored (PostgreSQL LISTEN), or poll (SQLite).

    A lost LISTEN connection (PostgreSQL restarted, say) is opened again; until it is,
    the waiter polls. After each reconnection it returns at once: events may have been
    stored while nobody was listening.
    """

    def __init__(self, database_url: URL, *, poll_seconds: float) -> None:
        self.poll_seconds = poll_seconds
        self._connection: psycopg.Connection[Any] | None = None
        self._conninfo: str | None = None
        if database_url.get_backend_name() == "postgresql":
            self._conninfo = database_url.set(drivername="postgresql").render_as_string(
                hide_password=False
            )
            self._listen()

    def _listen(self) -> None:
        try:
            connection = psycopg.connect(str(self._conninfo), autocommit=True, connect_timeout=5)
            connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except psycopg.OperationalError:
            log.warning("cannot LISTEN for webhook events yet; polling meanwhile")
            self._connection = None
            return
        self._connection = connection

    def wait(self, seconds: float) -> None:
        """Return when an event may be pending, or after `seconds` at most."""
        if self._conninfo is None:
            time.sleep(min(seconds, self.poll_seconds))
            return
        if self._connection is None or self._connection.closed:
            self._listen()
            if self._connection is None:
                time.sleep(min(seconds, self.poll_seconds))
            return
        try:
            for _ in self._connection.notifies(timeout=seconds, stop_after=1):
                pass
            # Several events may have committed meanwhile: one pass applies them all.
            for _ in self._connection.notifies(timeout=0):
                pass
        except psycopg.OperationalError:
            log.warning("lost the LISTEN connection for webhook events; listening again")
            self._connection.close()
            self._connection = None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
