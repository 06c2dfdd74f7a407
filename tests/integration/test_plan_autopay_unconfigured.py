"""review-plans: `portal jobs run --once` without card payments configured (a shell
without make run's STRIPE_* variables) said "0 installments charged" as if nothing were
due; it now says why nothing was charged."""

from __future__ import annotations

from datetime import UTC, datetime

from portal.plans.autopay import charge_due_installments


def test_without_card_payments_the_job_says_nothing_can_be_charged(db_session) -> None:  # type: ignore[no-untyped-def]
    report = charge_due_installments(now=datetime(2026, 12, 1, 12, tzinfo=UTC), runner="test")
    assert report.summary() == (
        "card payments are not configured (STRIPE_SECRET_KEY): no installment charged"
    )
