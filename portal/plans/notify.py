"""Emails about a plan's decisions, queued in the caller's transaction (sent after commit).

One function per event, called by `services`: `plan_activated` (agreed within policy, or
a counter-offer accepted), `plan_approved`, `plan_declined`, `plan_countered`,
`plan_broken`. Each renders `emails/plan_<event>.{subject.txt,txt,html}` in the
customer's language with a fresh portal link, and carries a dedupe key so that the same
event is never emailed twice. The link opens the plan's page, or the account
when the plan is over (declined, broken).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from portal.notifications.models import EmailCategory
from portal.plans.models import PaymentPlan


def _queue(
    plan: PaymentPlan,
    event: str,
    now: datetime,
    *,
    key: str,
    category: EmailCategory = EmailCategory.TRANSACTIONAL,
    to_plan: bool = True,
    **context: Any,
) -> None:
    from portal.notifications.services import queue_email

    queue_email(
        plan.customer,
        kind=f"plan_{event}",
        template=f"plan_{event}",
        context={
            "plan": plan,
            "installments": [i for i in plan.installments if not i.is_down_payment],
            **context,
        },
        now=now,
        category=category,
        dedupe_key=f"plan_{event}:{key}",
        with_portal_link=True,
        # The link opens the plan's page (the customer's `/plans/<id>`), else the account.
        link_target=plan_path(plan) if to_plan else None,
    )


def plan_path(plan: PaymentPlan) -> str:
    """The customer's page of this plan (opened from an email's link)."""
    return f"/plans/{plan.id}"


def plan_activated(plan: PaymentPlan, now: datetime) -> None:
    """The plan is active: its schedule, the down payment due today, the link."""
    _queue(plan, "activated", now, key=str(plan.id))


def plan_approved(plan: PaymentPlan, now: datetime) -> None:
    """A specialist approved the request: the plan is active, with its schedule."""
    _queue(plan, "approved", now, key=str(plan.id))


def plan_declined(plan: PaymentPlan, now: datetime) -> None:
    """A specialist declined the request: the reason, and that the invoices are due."""
    _queue(plan, "declined", now, key=str(plan.id), to_plan=False)


def plan_countered(plan: PaymentPlan, now: datetime) -> None:
    """A specialist offers other terms: the terms, and the link to accept or decline.
    A revised counter-offer is a new email (its key counts the offers made)."""
    from sqlalchemy import func, select

    from portal.extensions import db
    from portal.notifications.models import OutboxMessage
    from portal.plans.schedule import build_schedule

    earlier = db.session.scalar(
        select(func.count(OutboxMessage.id)).where(
            OutboxMessage.customer_id == plan.customer_id,
            OutboxMessage.dedupe_key.like(f"plan_countered:{plan.id}:%"),
        )
    )
    schedule = build_schedule(
        plan.total,
        plan.down_payment,
        plan.frequency_enum,
        plan.installment_count,
        plan.first_payment_date,
    )
    _queue(plan, "countered", now, key=f"{plan.id}:{int(earlier or 0) + 1}", schedule=schedule)


def plan_broken(plan: PaymentPlan, now: datetime) -> None:
    """The plan is broken: what is due again, and until when plans are refused."""
    from portal.money import Money

    remaining = Money(sum(c.amount_minor - c.paid_minor for c in plan.invoices), plan.currency)
    _queue(
        plan,
        "broken",
        now,
        key=str(plan.id),
        category=EmailCategory.COLLECTION,
        to_plan=False,
        remaining=remaining,
    )
