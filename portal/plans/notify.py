"""Emails about a plan's decisions, queued in the caller's transaction (sent after commit).

One function per event, called by `services`: `plan_activated` (agreed within policy, or
a counter-offer accepted), `plan_approved`, `plan_declined`, `plan_countered`,
`plan_broken`. Each renders `emails/plan_<event>.{subject.txt,txt,html}` in the
customer's language with a fresh portal link, and carries a dedupe key so that the same
event is never emailed twice. The link opens the plan's page, or the account
when the plan is over (declined, broken). The activation email carries the agreement PDF
(`agreement_attachment`), made when it is sent in the customer's language.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask_babel import force_locale
from flask_babel import gettext as _

from portal.customers.models import Customer
from portal.notifications.models import EmailCategory
from portal.notifications.services import Attachment, attaches
from portal.plans.models import PaymentPlan

AGREEMENT = "plan_agreement"  # the outbox's name of a plan's agreement: "plan_agreement:<id>"


def _queue(
    plan: PaymentPlan,
    event: str,
    now: datetime,
    *,
    key: str,
    category: EmailCategory = EmailCategory.TRANSACTIONAL,
    to_plan: bool = True,
    attachment: str | None = None,
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
        attachment=attachment,
    )


def plan_path(plan: PaymentPlan) -> str:
    """The customer's page of this plan (opened from an email's link)."""
    return f"/plans/{plan.id}"


def plan_activated(plan: PaymentPlan, now: datetime) -> None:
    """The plan is active: its schedule, the down payment due today, the link, and the
    agreement PDF attached (made when sent)."""
    _queue(plan, "activated", now, key=str(plan.id), attachment=f"{AGREEMENT}:{plan.id}")


@attaches(AGREEMENT)
def agreement_attachment(customer: Customer, plan_id: str, locale: str) -> Attachment:
    """The agreement PDF of the customer's plan `plan_id`, in `locale`, named
    "payment-plan-PP-12.pdf" in that language (issue 13: the activation email carries it).

    LookupError if the plan is not this customer's or was never agreed (no agreement);
    whatever `agreement_pdf` raises when it fails to render is passed on."""
    from portal.creditor import current_creditor
    from portal.plans.agreement import agreement_pdf
    from portal.plans.pages import agreement_terms, plan_reference
    from portal.plans.queries import get_plan_for

    plan = get_plan_for(customer, int(plan_id)) if plan_id.isdigit() else None
    if plan is None or plan.activated_on is None:
        raise LookupError(f"no agreed payment plan {plan_id!r} for customer {customer.id}")
    content = agreement_pdf(agreement_terms(plan), creditor=current_creditor(), locale=locale)
    with force_locale(locale):
        filename = _("payment-plan-%(reference)s.pdf", reference=plan_reference(plan))
    return Attachment(filename=filename, content=content, mimetype="application/pdf")


def plan_approved(plan: PaymentPlan, now: datetime) -> None:
    """A specialist approved the request: the plan is active, with its schedule and the
    agreement attached (made when sent, as for `plan_activated`)."""
    _queue(plan, "approved", now, key=str(plan.id), attachment=f"{AGREEMENT}:{plan.id}")


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
