"""The plan report: active plans, amount under plans, installments on time, kept vs
broken, by segment; as a page and as CSV."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from flask.testing import FlaskClient

from portal.audit.actors import Actor
from portal.money import Money
from portal.plans.schedule import Frequency
from portal.plans.services import break_plan, propose_plan, record_installment_payment
from portal.reports.plans import plans_by_segment
from portal.reports.queries import Period
from tests.factories import make_customer, make_invoice

NOW = datetime(2026, 11, 2, 15, tzinfo=UTC)
SYSTEM = Actor.system()


def plan_for(segment: str, amount: str = "600.00"):
    customer = make_customer(segment=segment, timezone="UTC")
    invoice = make_invoice(customer, lines=[("Services", "1", amount)])
    return propose_plan(
        customer,
        [invoice.number],
        Money.from_decimal("60.00", "USD"),
        Frequency.MONTHLY,
        3,
        date(2026, 12, 1),
        "",
        False,
        actor=Actor.customer(customer),
        now=NOW,
    )


def scenario():
    """standard: one active plan (down payment paid on time), one kept; vip: one broken."""
    active = plan_for("standard")
    record_installment_payment(active, Money(6_000, "USD"), actor=SYSTEM, now=NOW)
    kept = plan_for("standard", "300.00")
    record_installment_payment(kept, kept.total, actor=SYSTEM, now=NOW)
    broken = plan_for("vip")
    break_plan(broken, actor=SYSTEM, now=NOW + timedelta(days=40))
    return active, kept, broken


def test_plans_by_segment(db_session):
    scenario()
    rows = plans_by_segment(Period(date(2026, 11, 1), date(2026, 12, 31)), "USD")
    by = {r.segment: r for r in rows}
    standard, vip = by["standard"], by["vip"]
    assert (standard.active, standard.under_plans) == (1, Money(54_000, "USD"))
    # Down payments (2, both paid on 2 Nov) and 1 Dec installments (2, one paid early).
    assert (standard.installments_due, standard.paid_on_time) == (4, 3)
    assert (standard.kept, standard.broken) == (1, 0)
    assert (vip.active, vip.kept, vip.broken) == (0, 0, 1)
    assert vip.installments_due == 2
    assert standard.kept_rate == 1


def test_the_report_page_and_csv(staff_client: FlaskClient):
    scenario()
    query = "?start=2026-11-01&end=2026-12-31&currency=USD"
    page = staff_client.get("/staff/reports/plans" + query)
    assert page.status_code == 200
    assert "$540.00" in page.text
    csv = staff_client.get("/staff/reports/plans.csv" + query)
    assert csv.status_code == 200
    lines = csv.text.splitlines()
    assert lines[0].startswith("start,end,currency,segment,active_plans")
    assert "2026-11-01,2026-12-31,USD,standard,1,540.00,4,3,1,0" in lines


def test_bad_filters_are_refused(staff_client: FlaskClient):
    assert staff_client.get("/staff/reports/plans?start=nope").status_code == 400
