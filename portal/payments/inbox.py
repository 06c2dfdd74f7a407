"""Stripe's events: stored on receipt, applied in batches. The webhook inbox.

Receiving (`receive_event`, from the webhook view): the view has checked the signature
on the raw body; the event is inserted by its Stripe id (INSERT … ON CONFLICT DO
NOTHING) with what applying it needs, and Stripe gets its 200 as soon as that commits.
A duplicate delivery inserts nothing and changes nothing. This is Stripe's advice:
answer 2xx before any complex logic (https://docs.stripe.com/webhooks, "Quickly return
a 2xx response").

Applying (`apply_pending_events`, from the worker; on PostgreSQL a NOTIFY wakes it the
moment an event commits): pending rows are claimed oldest first with FOR UPDATE SKIP
LOCKED, so appliers take disjoint batches. A batch is applied in one transaction that
also records each event's outcome, so an event is applied and marked together or not
at all, and never twice. The batch takes the customers' payment-account locks in
ascending order, then the checkouts' in ascending order: the order of a single payment
(see `portal.payments.locks`), so no lock cycle is possible. What applying an event
means is unchanged from a single payment: `checkouts.apply_intent`, which never moves a
checkout backwards, and `ledger.Ledger`, which records a PaymentIntent once.

A `setup_intent.setup_failed` event (a card declined while Stripe.js set it up, which
our server never sees otherwise) counts a failed card attempt against the customer whose
Stripe Customer the SetupIntent belongs to, under that customer's payment-account lock
(`_apply_setup_failure`); the failure that reaches the cap clears the customer's open
SetupIntent, and the caller cancels it at Stripe once the batch is committed
(`card_testing.cancel_setup_intents`). Likewise a failed PaymentIntent of ours, which
the browser could confirm again with another card, is cancelled after the commit
(`checkouts.is_open_to_another_card`).

A batch that raises is retried one event at a time, each in a savepoint, so one bad
event cannot hold the others back; an event that raises MAX_ATTEMPTS times is marked
FAILED and logged for staff.

On SQLite (development) the claim first takes the database's single writer lock. The
worker's loop, which commits each batch, is `portal.jobs.webhook_worker`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from portal.audit.actors import Actor
from portal.audit.services import record_event
from portal.extensions import db
from portal.payments.card_testing import attempts_exhausted, record_card_failure
from portal.payments.checkouts import (
    METADATA_CHECKOUT,
    METADATA_CUSTOMER,
    apply_intent,
    cards_to_detach,
    is_open_to_another_card,
)
from portal.payments.deferred import NOTIFY_CHANNEL, waiting_for_payment
from portal.payments.gateway import (
    SETUP_FAILED,
    ChargeRefunds,
    GatewayEvent,
    IntentResult,
    SetupFailure,
)
from portal.payments.ledger import Ledger, record_stripe_refunds
from portal.payments.locks import has_row_locks, lock_accounts, lock_checkouts, take_writer_lock
from portal.payments.models import (
    Checkout,
    CheckoutStatus,
    Payment,
    PaymentAccount,
    PaymentSource,
    WebhookEvent,
    WebhookOutcome,
)
from portal.payments.policy import Overpayment

log = logging.getLogger(__name__)

RELEVANT_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.canceled",
        "payment_intent.requires_action",
        "payment_intent.processing",
        "charge.refunded",  # a refund made at Stripe (its dashboard), or by us
        SETUP_FAILED,  # a card declined while Stripe.js set it up (card testing)
    }
)
BATCH_SIZE = 200
MAX_ATTEMPTS = 5


class Receipt(StrEnum):
    QUEUED = "queued"  # stored, to be applied
    IGNORED = "ignored"  # stored, but not a type the portal acts on
    DUPLICATE = "duplicate"  # this event id was stored before: nothing written


def receive_event(event: GatewayEvent, *, now: datetime) -> Receipt:
    """Store a verified event once, in the caller's transaction (commit, then answer 200)."""
    intent, refunds, setup = event.intent(), event.charge_refunds(), event.setup_failure()
    relevant = event.type in RELEVANT_EVENTS and (intent or refunds or setup) is not None
    dialect = db.session.get_bind().dialect.name
    statement = _STORE_AND_NOTIFY if dialect == "postgresql" and relevant else _STORE[dialect]
    # On the session's connection: no ORM object is involved in this hot path.
    stored = db.session.connection().scalar(
        statement,
        {
            "event_id": event.id,
            "type": event.type[:100],
            "payment_intent_id": intent.id if intent else refunds and refunds.payment_intent_id,
            "outcome": WebhookOutcome.PENDING if relevant else WebhookOutcome.IGNORED,
            "payload": {"created": event.created, "data": event.kept()} if relevant else None,
            "received_at": now,
            "processed_at": None if relevant else now,
        },
    )
    if stored is None:
        return Receipt.DUPLICATE
    return Receipt.QUEUED if relevant else Receipt.IGNORED


# Built once and run on the table: receiving is the hot path, and no WebhookEvent object
# is ever loaded for the ORM to keep in step.
_events = WebhookEvent.__table__
_STORE = {
    name: insert(_events)
    .on_conflict_do_nothing(index_elements=[_events.c.event_id])
    .returning(_events.c.id)
    for name, insert in (("postgresql", postgresql_insert), ("sqlite", sqlite_insert))
}
# PostgreSQL: the insert and the NOTIFY that wakes the worker (delivered on commit, and
# only if a row was stored) in one round trip.
_STORED_COLUMNS = (
    "event_id", "type", "payment_intent_id", "outcome", "payload", "received_at", "processed_at"
)  # fmt: skip
_stored = (
    postgresql_insert(_events)
    .values({name: bindparam(name, type_=_events.c[name].type) for name in _STORED_COLUMNS})
    .on_conflict_do_nothing(index_elements=[_events.c.event_id])
    .returning(_events.c.id)
    .cte("stored")
)
_STORE_AND_NOTIFY = select(_stored.c.id).where(func.pg_notify(NOTIFY_CHANNEL, "").is_not(None))
_PENDING = (
    select(_events.c.id, _events.c.event_id, _events.c.type, _events.c.payload, _events.c.attempts)
    .where(_events.c.outcome == WebhookOutcome.PENDING)
    .order_by(_events.c.id)
    .limit(bindparam("limit"))
)
_ANY_PENDING = select(_events.c.id).where(_events.c.outcome == WebhookOutcome.PENDING).limit(1)


def has_pending_events() -> bool:
    """Whether any stored event waits to be applied (one indexed read, no lock)."""
    return db.session.scalar(_ANY_PENDING) is not None


_CLAIM_SKIP_LOCKED = _PENDING.with_for_update(skip_locked=True)
_FINISH = (
    update(_events)
    .where(_events.c.id == bindparam("row"))
    .values(
        outcome=bindparam("outcome"),
        checkout_id=bindparam("checkout"),
        attempts=bindparam("tries"),
        last_error=bindparam("error"),
        processed_at=bindparam("done"),
    )
)


# --- applying -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Pending:
    row: int
    event_id: str
    type: str
    attempts: int
    intent: IntentResult | None
    refunds: ChargeRefunds | None = None
    setup: SetupFailure | None = None


@dataclass(frozen=True)
class _Result:
    outcome: WebhookOutcome
    checkout_id: int | None = None
    error: str | None = None
    detach: tuple[str, ...] = ()  # cards to detach once the batch is committed
    waits_for: str | None = None  # DEFERRED: what the event waits for
    # to cancel once the batch is committed: SetupIntents of a customer at the cap, and
    # failed PaymentIntents (`checkouts.is_open_to_another_card`)
    cancel_setups: tuple[str, ...] = ()
    cancel_payments: tuple[str, ...] = ()


@dataclass(frozen=True)
class Batch:
    """What `apply_pending_events` did: events claimed, the cards of the charges it
    settled that were not to be kept, the SetupIntents of customers who reached the cap
    on failed card attempts, and the failed PaymentIntents that a browser could confirm
    again with another card, which the caller detaches and cancels once the batch is
    committed (calls to Stripe, made with no lock held)."""

    claimed: int
    detach: list[str]
    cancel_setups: list[str] = field(default_factory=list)
    cancel_payments: list[str] = field(default_factory=list)


def apply_pending_events(*, now: datetime, limit: int = BATCH_SIZE) -> Batch:
    """Claim and apply up to `limit` pending events in the caller's transaction, which
    the caller commits; nothing claimed means nothing is left to do."""
    take_writer_lock()
    claim = _CLAIM_SKIP_LOCKED if has_row_locks() else _PENDING
    rows = db.session.execute(claim, {"limit": limit}).all()
    if not rows:
        return Batch(0, [])
    pending = [_pending(*row) for row in rows]
    try:
        with db.session.begin_nested():
            results = _apply_batch(pending, now=now)
    except Exception:  # a bug or a broken event: find which, one by one
        log.exception("a batch of %d webhook events failed; applying them one by one", len(rows))
        results = {event.row: _apply_alone(event, now=now) for event in pending}
    db.session.execute(
        _FINISH,
        [_finish_parameters(event, results[event.row], now=now) for event in pending],
    )
    return Batch(
        len(pending),
        [card for result in results.values() for card in result.detach],
        [setup for result in results.values() for setup in result.cancel_setups],
        [intent for result in results.values() for intent in result.cancel_payments],
    )


def _pending(row: int, event_id: str, type_: str, payload: Any, attempts: int) -> _Pending:
    data = (payload or {}).get("data") or {}
    created = int((payload or {}).get("created") or 0)
    event = GatewayEvent(event_id, type_, created, data)
    return _Pending(
        row,
        event_id,
        type_,
        attempts,
        event.intent(),
        event.charge_refunds(),
        event.setup_failure(),
    )


def _finish_parameters(event: _Pending, result: _Result, *, now: datetime) -> dict[str, Any]:
    if result.outcome == WebhookOutcome.DEFERRED:  # kept, not tried: no attempt counted
        return {
            "row": event.row,
            "outcome": WebhookOutcome.DEFERRED,
            "checkout": None,
            "tries": event.attempts,
            "error": result.waits_for,
            "done": None,
        }
    if result.error is None:
        return {
            "row": event.row,
            "outcome": result.outcome,
            "checkout": result.checkout_id,
            "tries": event.attempts + 1,
            "error": None,
            "done": now,
        }
    tries = event.attempts + 1
    gave_up = tries >= MAX_ATTEMPTS
    if gave_up:
        log.error("webhook event %s failed %d times; left for staff", event.event_id, tries)
    return {
        "row": event.row,
        "outcome": WebhookOutcome.FAILED if gave_up else WebhookOutcome.PENDING,
        "checkout": None,
        "tries": tries,
        "error": result.error[:200],
        "done": now if gave_up else None,
    }


def _apply_alone(event: _Pending, *, now: datetime) -> _Result:
    try:
        with db.session.begin_nested():
            return _apply_batch([event], now=now)[event.row]
    except Exception as error:
        log.exception("webhook event %s could not be applied", event.event_id)
        return _Result(WebhookOutcome.PENDING, error=f"{type(error).__name__}: {error}")


def _apply_batch(events: Sequence[_Pending], *, now: datetime) -> dict[int, _Result]:
    """Lock what the events touch, in the one lock order, then apply them in turn."""
    wanted = {event.row: _checkout_id_for(event.intent) for event in events}
    refunded = _refunded_payments(events)
    setup_owners = _setup_owners(events)
    locked = (
        _claimed_customers(events)
        | {p.customer_id for p in refunded.values()}
        | set(setup_owners.values())
    )
    accounts = lock_accounts(locked)
    checkouts = lock_checkouts({c for c in wanted.values() if c is not None})
    ledger = Ledger(now=now)
    ledger.prefetch(
        [
            checkouts[checkout_id]
            for event in events
            if (checkout_id := wanted[event.row]) in checkouts
            and event.intent is not None
            and event.intent.is_succeeded
        ]
    )
    results = {}
    for event in events:
        if event.intent is not None:
            checkout = checkouts.get(wanted[event.row])  # type: ignore[arg-type]
            results[event.row] = _apply_one(event, checkout, accounts, ledger, now=now)
        elif event.setup is not None:
            owner = setup_owners.get(event.setup.customer_id)
            account = accounts.get(owner) if owner is not None else None
            results[event.row] = _apply_setup_failure(event, event.setup, account, now=now)
    ledger.write()
    # Refunds last, and read again: one may be of a payment this batch has just recorded
    # (its customer's lock is held: the payment's own event named them).
    refunded = _refunded_payments(events)
    for event in events:
        if event.refunds is not None:
            payment = refunded.get(event.refunds.payment_intent_id or "")
            if payment is not None and payment.customer_id not in locked:
                # Committed by another worker since the first read: its customer is not
                # locked, and locking now would break the lock order. Kept; the worker
                # wakes it once this batch is committed (`deferred.wake_deferred_events`).
                waits_for = waiting_for_payment(payment.reference)
                results[event.row] = _Result(WebhookOutcome.DEFERRED, waits_for=waits_for)
                continue
            results[event.row] = _apply_refunds(event.refunds, payment, now=now)
        elif event.intent is None and event.setup is None:
            results[event.row] = _Result(WebhookOutcome.IGNORED)
    return results


def _setup_owners(events: Iterable[_Pending]) -> dict[str, int]:
    """Our customers whose Stripe Customers own the batch's failed SetupIntents, by
    Stripe customer id (a SetupIntent of a Stripe Customer that is not ours is absent)."""
    stripe_ids = sorted({e.setup.customer_id for e in events if e.setup is not None})
    if not stripe_ids:
        return {}
    rows = db.session.execute(
        select(PaymentAccount.stripe_customer_id, PaymentAccount.customer_id).where(
            PaymentAccount.stripe_customer_id.in_(stripe_ids)
        )
    )
    return {str(stripe_id): customer_id for stripe_id, customer_id in rows}


def _apply_setup_failure(
    event: _Pending, setup: SetupFailure, account: PaymentAccount | None, *, now: datetime
) -> _Result:
    """A card declined while Stripe.js set it up on one of our SetupIntents: a failed card
    attempt of the customer whose Stripe Customer the SetupIntent belongs to (Stripe's
    `setup_intent.setup_failed`; the account is locked). On real Stripe the SetupIntent is
    back in `requires_payment_method` and its client secret can try another card at once
    (https://docs.stripe.com/payments/setupintents/lifecycle), so the failure that reaches
    the cap clears the customer's open SetupIntent and asks the caller to cancel it, and
    this one, at Stripe. Applied once: the event is stored once by its id."""
    if account is None:
        return _Result(WebhookOutcome.IGNORED)  # not a Stripe Customer of ours
    named = setup.metadata.get(METADATA_CUSTOMER)
    if named is not None and named != str(account.customer_id):
        log.error(
            "event %s: SetupIntent %s names customer %s, its Stripe Customer is %s's",
            event.event_id,
            setup.id,
            named,
            account.customer_id,
        )
        record_event(
            "card.setup_mismatch",
            actor=Actor.stripe(),
            now=now,
            customer_id=account.customer_id,
            data={"event": event.event_id, "setup_intent": setup.id, "named": named},
        )
        return _Result(WebhookOutcome.REJECTED)
    code = setup.error_code or "card_declined"
    record_card_failure(account.customer_id, code, now=now)
    db.session.flush()
    if not attempts_exhausted(account.customer_id, now=now):
        return _Result(WebhookOutcome.APPLIED)
    # Cancelled at Stripe: the customer's open SetupIntent, and this one only if it is
    # ours (our metadata names this customer, or it is the open one). One without our
    # metadata on the same Stripe Customer (made in Stripe's dashboard, or before the
    # portal wrote metadata) still counts as a failed attempt, but is not ours to cancel.
    ours = named is not None or setup.id == account.open_setup_intent_id
    cancel = sorted({account.open_setup_intent_id or "", setup.id if ours else ""} - {""})
    account.open_setup_intent_id = None
    if not cancel:
        return _Result(WebhookOutcome.APPLIED)
    record_event(
        "card.setup_canceled",
        actor=Actor.stripe(),
        now=now,
        customer_id=account.customer_id,
        data={"event": event.event_id, "setup_intents": cancel, "code": code},
    )
    return _Result(WebhookOutcome.APPLIED, cancel_setups=tuple(cancel))


def _refunded_payments(events: Iterable[_Pending]) -> dict[str, Payment]:
    """Our card payments that the batch's `charge.refunded` events are about, by reference."""
    references = {e.refunds.payment_intent_id for e in events if e.refunds is not None}
    references.discard(None)
    if not references:
        return {}
    payments = db.session.scalars(
        select(Payment).where(
            Payment.reference.in_(sorted(r for r in references if r)),
            Payment.source == PaymentSource.CARD,
        )
    )
    return {payment.reference: payment for payment in payments}


def _apply_refunds(state: ChargeRefunds, payment: Payment | None, *, now: datetime) -> _Result:
    """A charge was refunded at Stripe: the ledger records what it does not know yet.

    A refund of a payment not recorded (yet) is deferred, never dropped: the payment's
    own event may come later, or be in a batch another worker has not committed
    (`portal.payments.deferred`). A charge without a PaymentIntent is not ours.
    """
    if payment is None:
        if not state.payment_intent_id:
            return _Result(WebhookOutcome.IGNORED)
        log.info("refund of %s kept until its payment is recorded", state.payment_intent_id)
        return _Result(
            WebhookOutcome.DEFERRED, waits_for=waiting_for_payment(state.payment_intent_id)
        )
    if state.refunded.currency != payment.currency:
        log.error("refunds of %s are in %s", payment.reference, state.refunded.currency)
        return _Result(WebhookOutcome.REJECTED, payment.checkout_id)
    try:
        with db.session.begin_nested():  # all of the event's refunds, or none
            changed = record_stripe_refunds(payment, state, now=now)
    except Overpayment:
        log.error("Stripe refunded more of %s than the ledger holds", payment.reference)
        record_event(
            "payment.refund_mismatch",
            actor=Actor.stripe(),
            now=now,
            customer_id=payment.customer_id,
            subject=payment,
            data={"charge": state.charge_id, "refunded_minor": state.refunded.minor},
        )
        return _Result(WebhookOutcome.REJECTED, payment.checkout_id)
    return _Result(
        WebhookOutcome.APPLIED if changed else WebhookOutcome.IGNORED, payment.checkout_id
    )


def _apply_one(
    event: _Pending,
    checkout: Checkout | None,
    accounts: dict[int, PaymentAccount],
    ledger: Ledger,
    *,
    now: datetime,
) -> _Result:
    intent = event.intent
    if intent is None or checkout is None:
        return _Result(WebhookOutcome.IGNORED)
    account = accounts.get(checkout.customer_id)
    if account is None or not _intent_matches(checkout, account, intent):
        log.error(
            "event %s: PaymentIntent %s disagrees with checkout %s",
            event.event_id,
            intent.id,
            checkout.id,
        )
        record_event(
            "payment.mismatch",
            actor=Actor.stripe(),
            now=now,
            customer_id=checkout.customer_id,
            subject=checkout,
            data={
                "event": event.event_id,
                "payment_intent": intent.id,
                "amount_minor": intent.amount.minor,
                "currency": intent.amount.currency,
            },
        )
        return _Result(WebhookOutcome.REJECTED, checkout.id)
    was_in_flight = checkout.state.is_in_flight
    # Read before applying, which may replace it with the card just used.
    saved = ledger.saved_payment_method(checkout.customer_id) if checkout.save_card else None
    changed = apply_intent(checkout, intent, actor=Actor.stripe(), ledger=ledger)
    # Ours and failed: cancelled, even when nothing changed here (a failure after the
    # first one is a card tried from the browser on the same client secret).
    cancel = (intent.id,) if is_open_to_another_card(intent) else ()
    if not changed:
        return _Result(WebhookOutcome.IGNORED, checkout.id, cancel_payments=cancel)
    # The webhook settled the charge (the customer left during 3-D Secure, say): its
    # card goes as it would on the customer's own pages (`checkouts.cards_to_detach`).
    settled = was_in_flight and not checkout.state.is_in_flight
    succeeded = checkout.state == CheckoutStatus.SUCCEEDED
    detach = cards_to_detach(checkout, saved, succeeded=succeeded) if settled else []
    return _Result(
        WebhookOutcome.APPLIED, checkout.id, detach=tuple(detach), cancel_payments=cancel
    )


def _claimed_customers(events: Iterable[_Pending]) -> set[int]:
    """The customers the events name in our metadata (checked against the checkout later)."""
    claimed = (e.intent.metadata.get(METADATA_CUSTOMER, "") for e in events if e.intent)
    return {int(c) for c in claimed if c.isdigit()}


def _checkout_id_for(intent: IntentResult | None) -> int | None:
    """Our checkout for a PaymentIntent: by our metadata (set before Stripe answered us)."""
    if intent is None:
        return None
    raw = intent.metadata.get(METADATA_CHECKOUT, "")
    if raw.isdigit():
        return int(raw)
    return db.session.scalar(select(Checkout.id).where(Checkout.payment_intent_id == intent.id))


def _intent_matches(checkout: Checkout, account: PaymentAccount, intent: IntentResult) -> bool:
    """Credit nothing that is not exactly what we asked for, from whom we asked it."""
    return (
        intent.amount == checkout.amount
        and account.customer_id == checkout.customer_id
        and intent.metadata.get(METADATA_CUSTOMER) == str(checkout.customer_id)
        and intent.customer_id == account.stripe_customer_id
    )
