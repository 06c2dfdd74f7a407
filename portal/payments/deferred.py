"""Stripe events that arrive before the payment they are about: kept, then woken.

Stripe does not promise the order of its events (https://docs.stripe.com/webhooks,
"Event ordering"): a `charge.refunded` can come before the `payment_intent.succeeded`
that records its payment, for instance when our answer from Stripe was lost, or when
the payment's event is in a batch another worker has not committed yet. Such an event
is never dropped: the inbox stores it as DEFERRED, with what it waits for, and it is
pending again as soon as the payment is recorded:

* by `Ledger.write`, in the transaction that records the payment (the common case);
* by the worker after each batch it commits (`wake_deferred_events()` with no
  argument): a deferral and the payment it waits for, committed at the same moment by
  two transactions that could not see each other, are both visible to whichever of the
  two commits last, and its worker's next look finds the pair.

Events about a checkout (`payment_intent.*`) never wait: a checkout is committed before
Stripe first hears of its PaymentIntent, so its events always come after it.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, select, update

from portal.extensions import db
from portal.payments.locks import has_row_locks
from portal.payments.models import Payment, PaymentSource, WebhookEvent, WebhookOutcome

# The worker LISTENs here; a NOTIFY is delivered when the notifying transaction commits.
NOTIFY_CHANNEL = "portal_webhook_events"


def waiting_for_payment(payment_intent_id: str) -> str:
    """What a deferred event waits for, as kept in `webhook_events.last_error`."""
    return f"waiting for payment {payment_intent_id}"[:200]


_DEFERRED = WebhookEvent.outcome == WebhookOutcome.DEFERRED
_RECORDED = WebhookEvent.payment_intent_id.in_(
    select(Payment.reference).where(Payment.source == PaymentSource.CARD)
)


def any_deferred_event_awake() -> bool:
    """Whether a deferred event's payment is recorded now (a read on the deferred rows)."""
    return (
        db.session.scalar(select(WebhookEvent.id).where(_DEFERRED, _RECORDED).limit(1)) is not None
    )


def wake_deferred_events(references: Collection[str] | None = None) -> int:
    """Make pending again the deferred events about payments now recorded, in the
    caller's (writing) transaction; how many. `references`: the PaymentIntents just
    recorded, or None for every recorded card payment."""
    if references is not None and not references:
        return 0
    about = (
        _RECORDED if references is None else WebhookEvent.payment_intent_id.in_(sorted(references))
    )
    waiting = db.session.scalars(select(WebhookEvent.id).where(_DEFERRED, about)).all()
    if not waiting:
        return 0
    db.session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id.in_(waiting), _DEFERRED)
        .values(outcome=WebhookOutcome.PENDING, last_error=None)
        .execution_options(synchronize_session=False)
    )
    if has_row_locks():  # PostgreSQL: wake a worker when this commits
        db.session.execute(select(func.pg_notify(NOTIFY_CHANNEL, "")))
    return len(waiting)
