"""Stripe's webhook endpoint: verify the signature on the raw body, store the event once.

The worker applies it (`portal.payments.inbox`)."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, request

from portal.db import utcnow
from portal.extensions import csrf, db, limiter
from portal.payments.gateway import BadSignature, gateway_from_config, is_enabled
from portal.payments.inbox import receive_event

log = logging.getLogger(__name__)

bp = Blueprint("stripe_webhooks", __name__)


@bp.post("/stripe/webhook")
@csrf.exempt  # Stripe signs the body instead; there is no session to forge
@limiter.exempt  # Stripe's retries come in bursts; a refused delivery is only retried later
def receive():  # type: ignore[no-untyped-def]
    if not is_enabled(current_app.config):
        return "", 404
    gateway = gateway_from_config(current_app.config)
    try:
        event = gateway.verify_event(request.get_data(), request.headers.get("Stripe-Signature"))
    except BadSignature:
        log.warning("webhook refused: bad or stale signature")
        return "", 400  # nothing written
    receipt = receive_event(event, now=utcnow())
    db.session.commit()
    # 200 for duplicates and for events we ignore, or Stripe would keep retrying them.
    return {"received": event.id, "status": receipt.value}, 200
