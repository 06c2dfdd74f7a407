"""The admins' list of Stripe events the inbox could not apply: rejected, failed, and
deferred for more than a day (about a payment the portal has no record of)."""

from __future__ import annotations

from datetime import timedelta

from flask.testing import FlaskClient

from portal.db import utcnow
from portal.extensions import db
from portal.money import Money
from portal.payments.attention import events_to_review, events_to_review_count
from portal.payments.models import WebhookEvent, WebhookOutcome


def _event(outcome: str, *, age: timedelta, **fields: object) -> WebhookEvent:
    now = utcnow()
    waiting = outcome in (WebhookOutcome.PENDING, WebhookOutcome.DEFERRED)
    event = WebhookEvent(
        event_id=f"evt_{outcome}_{int(age.total_seconds())}_{id(fields)}",
        type=str(fields.pop("type", "charge.refunded")),
        outcome=outcome,
        received_at=now - age,
        processed_at=None if waiting else now,
        payload=fields.pop("payload", {"object": "charge"}),
        **fields,
    )
    db.session.add(event)
    db.session.flush()
    return event


def test_events_a_person_must_look_at_oldest_first(db_session) -> None:  # type: ignore[no-untyped-def]
    old_deferred = _event(
        WebhookOutcome.DEFERRED,
        age=timedelta(days=3),
        payment_intent_id="pi_unknown",
        last_error="waiting for payment pi_unknown",
        payload={"object": "charge", "currency": "usd", "amount_refunded": 2500},
    )
    rejected = _event(WebhookOutcome.REJECTED, age=timedelta(hours=2), last_error="amount")
    failed = _event(WebhookOutcome.FAILED, age=timedelta(hours=1), attempts=5)
    _event(WebhookOutcome.DEFERRED, age=timedelta(minutes=5))  # its payment may still come
    _event(WebhookOutcome.APPLIED, age=timedelta(days=9))
    _event(WebhookOutcome.IGNORED, age=timedelta(days=9))
    now = utcnow()
    events = events_to_review(now)
    assert [e.id for e in events] == [old_deferred.id, rejected.id, failed.id]
    assert events[0].amount == Money(2500, "USD")
    assert events_to_review_count(now) == 3


def test_admins_see_them_and_the_dashboard_counts_them(admin_client: FlaskClient) -> None:
    _event(
        WebhookOutcome.DEFERRED,
        age=timedelta(days=2),
        payment_intent_id="pi_lost_one",
        payload={"object": "charge", "currency": "usd", "amount_refunded": 2500},
    )
    page = admin_client.get("/staff/admin/stripe-events")
    assert page.status_code == 200
    assert "pi_lost_one" in page.text
    assert "$25.00" in page.text
    assert "About a payment the portal has no record of." in page.text
    assert "1 Stripe event to review" in admin_client.get("/staff/").text


def test_nothing_to_review_says_so(admin_client: FlaskClient) -> None:
    page = admin_client.get("/staff/admin/stripe-events")
    assert "Nothing to review" in page.text
    assert "Stripe event to review" not in admin_client.get("/staff/").text


def test_specialists_are_refused(staff_client: FlaskClient) -> None:
    # (anonymous visitors and customers: test_staff_rules, for every staff route)
    assert staff_client.get("/staff/admin/stripe-events").status_code == 403
    assert "Stripe event" not in staff_client.get("/staff/").text
