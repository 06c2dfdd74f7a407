"""Stripe events a person has to look at: what the webhook inbox could not apply.

The inbox (`payments.inbox`) applies every Stripe event by itself, except:

* `rejected`: the event is about one of our payments, but its amount, currency or
  metadata disagree with ours (someone changed it at Stripe, or a bug): nothing was
  written, a person decides;
* `failed`: applying it raised `MAX_ATTEMPTS` times (a bug): nothing was written;
* `deferred` for longer than `DEFERRED_ATTENTION_AFTER`: it is about a payment the
  portal has not recorded (a refund in Stripe's dashboard of a charge the portal never
  heard of, say). A deferral normally lasts milliseconds (`payments.deferred`); after a
  day the payment it waits for is not coming by itself.

This is the admins' list of them (`/staff/admin/stripe-events`), oldest first, with the
PaymentIntent to look up in Stripe's dashboard. Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select

from portal.extensions import db
from portal.money import Money, MoneyError
from portal.payments.gateway import GatewayError, from_stripe_amount
from portal.payments.models import WebhookEvent, WebhookOutcome

DEFERRED_ATTENTION_AFTER = timedelta(hours=24)
ATTENTION_PAGE_SIZE = 100


@dataclass(frozen=True)
class EventToReview:
    """One Stripe event the inbox left for a person. `amount` is the event's amount as
    Stripe stated it (a charge's refunded total, a PaymentIntent's amount), if any."""

    id: int
    event_id: str
    type: str
    outcome: str
    payment_intent_id: str | None
    reason: str | None
    attempts: int
    received_at: datetime
    amount: Money | None


def _needs_attention(now: datetime):  # type: ignore[no-untyped-def]
    return or_(
        WebhookEvent.outcome.in_([WebhookOutcome.REJECTED, WebhookOutcome.FAILED]),
        and_(
            WebhookEvent.outcome == WebhookOutcome.DEFERRED,
            WebhookEvent.received_at <= now - DEFERRED_ATTENTION_AFTER,
        ),
    )


def _amount(payload: dict[str, object] | None) -> Money | None:
    if not payload or not isinstance(payload.get("currency"), str):
        return None
    value = payload.get("amount_refunded", payload.get("amount"))
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        return from_stripe_amount(value, str(payload["currency"]).upper())
    except (MoneyError, GatewayError):
        return None


def events_to_review(now: datetime, limit: int = ATTENTION_PAGE_SIZE) -> list[EventToReview]:
    """The events a person has to look at as of `now` (aware UTC), oldest first, at most
    `limit`."""
    rows = db.session.execute(
        select(
            WebhookEvent.id,
            WebhookEvent.event_id,
            WebhookEvent.type,
            WebhookEvent.outcome,
            WebhookEvent.payment_intent_id,
            WebhookEvent.last_error,
            WebhookEvent.attempts,
            WebhookEvent.received_at,
            WebhookEvent.payload,
        )
        .where(_needs_attention(now))
        .order_by(WebhookEvent.received_at, WebhookEvent.id)
        .limit(limit)
    )
    return [
        EventToReview(
            id=row.id,
            event_id=row.event_id,
            type=row.type,
            outcome=row.outcome,
            payment_intent_id=row.payment_intent_id,
            reason=row.last_error,
            attempts=row.attempts,
            received_at=row.received_at,
            amount=_amount(row.payload),
        )
        for row in rows
    ]


def events_to_review_count(now: datetime) -> int:
    """How many events a person has to look at as of `now` (aware UTC)."""
    return int(
        db.session.scalar(
            select(func.count()).select_from(WebhookEvent).where(_needs_attention(now))
        )
        or 0
    )
