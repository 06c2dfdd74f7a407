"""Customer-side glue between the plan pages and the plans domain (temporary shapes)."""

from __future__ import annotations

from datetime import date
from typing import Any

from portal.customers.models import Customer
from portal.plans.policy import PlanPolicy, default_policy


def policy_for(customer: Customer) -> PlanPolicy:
    return default_policy(customer.segment or "standard")


def cooling_off_until(customer: Customer, today: date) -> date | None:
    return None


def plans_waiting_for(customer: Customer) -> list[Any]:
    return []


def plans_for(customer: Customer) -> list[Any]:
    return []


def get_plan_for(customer: Customer, plan_id: int) -> Any:
    return None
