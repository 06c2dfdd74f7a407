"""Staff pages of payment plans over HTTP: the requests queue and a request (approve,
counter-offer with preview, decline), the policies (admins only); roles, CSRF, bad input."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from portal.audit.actors import Actor
from portal.audit.models import AuditEvent
from portal.db import utcnow
from portal.extensions import db
from portal.money import Money
from portal.plans.models import PaymentPlan, PlanPolicyVersion, PlanStatus
from portal.plans.queries import policy_for_segment
from portal.plans.schedule import Frequency
from portal.plans.services import propose_plan
from tests.factories import csrf_token_from, login_as, make_customer, make_invoice


def request_plan(customer=None) -> PaymentPlan:
    """A request outside policy: 12 monthly payments of a 1,000.00 invoice."""
    customer = customer or make_customer(timezone="UTC", name="Ada Plans")
    invoice = make_invoice(customer, lines=[("Services", "1", "1000.00")])
    today = utcnow().date()
    plan = propose_plan(
        customer,
        [invoice.number],
        Money(10_000, "USD"),
        Frequency.MONTHLY,
        12,
        today + timedelta(days=20),
        "Hardship: my shop was flooded",
        False,
        actor=Actor.customer(customer),
        now=utcnow(),
    )
    db.session.commit()  # as the customer's request did (a view's rollback keeps it)
    return plan


GET_ROUTES = ["/staff/plans", "/staff/plans/{id}", "/staff/policies", "/staff/policies/standard"]
POST_ROUTES = [
    "/staff/plans/{id}/approve",
    "/staff/plans/{id}/counter",
    "/staff/plans/{id}/decline",
    "/staff/plans/{id}/follow-up",
    "/staff/policies/standard",
]


@pytest.mark.parametrize("route", GET_ROUTES + POST_ROUTES)
def test_anonymous_and_customer_sessions_are_refused(client: FlaskClient, route: str) -> None:
    plan = request_plan()
    url = route.format(id=plan.id)
    method = client.post if route in POST_ROUTES else client.get
    for _who in ("anonymous", "customer"):
        response = method(url)
        assert response.status_code in (302, 400)
        if response.status_code == 302:
            assert "/staff/login" in response.headers["Location"]
        login_as(client, plan.customer)
    assert plan.state is PlanStatus.PENDING


@pytest.mark.parametrize("route", ["/staff/policies", "/staff/policies/standard"])
def test_policies_are_for_admins_only(staff_client: FlaskClient, route: str) -> None:
    assert staff_client.get(route).status_code == 403


def test_the_queue_lists_requests_oldest_first_and_the_home_counts_them(
    staff_client: FlaskClient,
) -> None:
    first = request_plan(make_customer(name="First Customer", timezone="UTC"))
    request_plan(make_customer(name="Second Customer", timezone="UTC"))
    page = staff_client.get("/staff/plans")
    assert page.status_code == 200
    assert page.text.index("First Customer") < page.text.index("Second Customer")
    assert f"/staff/plans/{first.id}" in page.text
    assert page.text.count("12 installments is over the limit of 6.") == 2
    home = staff_client.get("/staff/")
    assert "2 plan requests wait for review" in home.text


def test_the_queue_counts_days_waiting_on_the_creditors_calendar(
    staff_client: FlaskClient,
) -> None:
    # One request sent a minute before the creditor's midnight (New York), one a minute
    # after: 1 day and 0 days waiting, at any hour. Counted in UTC, one of the two is wrong
    # at every hour of the day (the first after 05:00 UTC, the second before).
    zone = ZoneInfo(staff_client.application.config["CREDITOR_TIMEZONE"])
    midnight = datetime.combine(utcnow().astimezone(zone).date(), time(0), tzinfo=zone)
    before, after = request_plan(), request_plan()
    before.created_at = midnight - timedelta(minutes=1)
    after.created_at = min(midnight + timedelta(minutes=1), utcnow())
    db.session.commit()
    cells = staff_client.get("/staff/plans").text
    assert ">1 day</td>" in cells
    assert ">0 days</td>" in cells


def test_a_request_shows_the_limits_it_breaks_in_words_and_the_history(
    staff_client: FlaskClient,
) -> None:
    plan = request_plan()
    page = staff_client.get(f"/staff/plans/{plan.id}")
    assert page.status_code == 200
    assert "12 installments is over the limit of 6." in page.text
    assert "The plan runs longer than 6 months after its first payment." in page.text
    assert "Hardship: my shop was flooded" in page.text
    assert f"/staff/customers/{plan.customer.account_number}" in page.text
    assert "$75.00" in page.text  # 1,000.00 - 100.00 down in 12 payments


def test_approve(staff_client: FlaskClient) -> None:
    plan = request_plan()
    page = staff_client.get(f"/staff/plans/{plan.id}")
    response = staff_client.post(
        f"/staff/plans/{plan.id}/approve", data={"csrf_token": csrf_token_from(page.text)}
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/staff/plans")
    db.session.refresh(plan)
    assert plan.state is PlanStatus.ACTIVE
    assert plan.decided_by == f"staff:{staff_client.staff_member.id}"
    assert len(plan.installments) == 13


def test_a_post_without_csrf_is_refused(staff_client: FlaskClient) -> None:
    plan = request_plan()
    response = staff_client.post(f"/staff/plans/{plan.id}/approve")
    assert response.status_code == 400
    db.session.refresh(plan)
    assert plan.state is PlanStatus.PENDING


def test_an_unknown_plan_is_404(staff_client: FlaskClient) -> None:
    assert staff_client.get("/staff/plans/999999").status_code == 404


def _counter(staff_client, plan, **data):
    page = staff_client.get(f"/staff/plans/{plan.id}")
    form = {
        "csrf_token": csrf_token_from(page.text),
        "down_payment": "200.00",
        "frequency": "monthly",
        "installments": "4",
        "first_payment_date": (utcnow().date() + timedelta(days=14)).isoformat(),
        "note": "Four payments work for us.",
    }
    form.update(data)
    return staff_client.post(f"/staff/plans/{plan.id}/counter", data=form)


def test_counter_offer_preview_shows_the_schedule_and_writes_nothing(
    staff_client: FlaskClient,
) -> None:
    plan = request_plan()
    response = _counter(staff_client, plan, preview="1")
    assert response.status_code == 200
    assert "Preview of the counter-offer" in response.text
    assert response.text.count("$200.00") >= 4  # the down payment and 4 x 200.00
    db.session.refresh(plan)
    assert plan.state is PlanStatus.PENDING


def test_counter_offer_is_sent(staff_client: FlaskClient) -> None:
    plan = request_plan()
    response = _counter(staff_client, plan, send="1")
    assert response.status_code == 302
    db.session.refresh(plan)
    assert plan.state is PlanStatus.COUNTERED
    assert (plan.installment_count, plan.down_payment_minor) == (4, 20_000)
    assert plan.decision_reason == "Four payments work for us."


@pytest.mark.parametrize(
    ("locale", "typed"), [("en", "$200.00"), ("de", "200,00"), ("fr", "200,00 $US")]
)
def test_a_counter_offer_down_payment_is_read_in_the_specialists_language(
    staff_client: FlaskClient, locale: str, typed: str
) -> None:
    with staff_client.session_transaction() as session:
        session["locale"] = locale
    plan = request_plan()
    assert _counter(staff_client, plan, send="1", down_payment=typed).status_code == 302
    db.session.refresh(plan)
    assert (plan.state, plan.down_payment_minor) == (PlanStatus.COUNTERED, 20_000)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"down_payment": "abc"}, "Please enter the amount as a number"),
        ({"down_payment": "1,000"}, "below the total"),  # a thousand dollars
        ({"down_payment": "-5"}, "The amount cannot be below zero."),
        ({"down_payment": "20.005"}, "with at most 2 decimals"),
        ({"down_payment": "1000.00"}, "below the total"),
        ({"installments": "0"}, "Enter a whole number from 1 to 120."),
        ({"installments": "many"}, "Please enter a whole number."),
        ({"first_payment_date": "31/12/2026"}, "Please enter a valid date."),
        ({"first_payment_date": "2020-01-01"}, "The first payment must be after today."),
        ({"frequency": "daily"}, "Not a valid choice"),
    ],
)
def test_a_bad_counter_offer_is_refused_with_a_message(
    staff_client: FlaskClient, data: dict[str, str], message: str
) -> None:
    plan = request_plan()
    response = _counter(staff_client, plan, send="1", **data)
    assert response.status_code == 422
    assert message in response.text
    db.session.refresh(plan)
    assert plan.state is PlanStatus.PENDING


def test_decline_needs_a_reason(staff_client: FlaskClient) -> None:
    plan = request_plan()
    page = staff_client.get(f"/staff/plans/{plan.id}")
    token = csrf_token_from(page.text)
    empty = staff_client.post(
        f"/staff/plans/{plan.id}/decline", data={"csrf_token": token, "reason": " "}
    )
    assert empty.status_code == 422
    assert "Give the customer a reason for declining." in empty.text
    done = staff_client.post(
        f"/staff/plans/{plan.id}/decline",
        data={"csrf_token": token, "reason": "The balance is too recent."},
    )
    assert done.status_code == 302
    db.session.refresh(plan)
    assert plan.state is PlanStatus.DECLINED
    assert plan.decision_reason == "The balance is too recent."


def test_answering_a_decided_plan_is_refused_with_a_message(staff_client: FlaskClient) -> None:
    plan = request_plan()
    page = staff_client.get(f"/staff/plans/{plan.id}")
    token = csrf_token_from(page.text)
    staff_client.post(f"/staff/plans/{plan.id}/approve", data={"csrf_token": token})
    again = staff_client.post(
        f"/staff/plans/{plan.id}/approve", data={"csrf_token": token}, follow_redirects=True
    )
    assert again.status_code == 200
    assert "already been decided" in again.text


# --- policies -------------------------------------------------------------------------------
def _policy_form(admin_client, **data):
    page = admin_client.get("/staff/policies/standard")
    assert page.status_code == 200
    form = {
        "csrf_token": csrf_token_from(page.text),
        "max_installments": "12",
        "frequencies": ["monthly", "biweekly"],
        "max_duration_months": "12",
        "min_installment": "25.00",
        "min_down_payment_percent": "5",
        "max_first_payment_days": "45",
        "max_total": "20000.00",
        "autopay_required": "y",
        "cooling_off_days": "60",
    }
    form.update(data)
    return admin_client.post("/staff/policies/standard", data=form)


def test_admins_see_the_segments_and_their_limits(admin_client: FlaskClient) -> None:
    make_customer(segment="vip")
    page = admin_client.get("/staff/policies")
    assert page.status_code == 200
    assert "standard" in page.text
    assert "vip" in page.text
    assert "10,000.00" in page.text or "10000.00" in page.text


def test_saving_a_policy_is_a_new_audited_version(admin_client: FlaskClient) -> None:
    before = db.session.scalar(select(func.max(PlanPolicyVersion.version)))
    response = _policy_form(admin_client)
    assert response.status_code == 302
    policy = policy_for_segment("standard")
    assert policy.version == before + 1
    assert policy.max_installments == 12
    assert policy.frequencies == {Frequency.MONTHLY, Frequency.BIWEEKLY}
    assert policy.min_installment_for("USD") == Money(2_500, "USD")
    assert policy.min_installment_for("JPY") == Money(2_500, "JPY")
    assert policy.min_installment_for("KWD") == Money(25_000, "KWD")
    assert policy.max_total_for("USD") == Money(2_000_000, "USD")
    assert policy.autopay_required is True
    assert policy.cooling_off_days == 60
    assert (
        db.session.scalar(select(AuditEvent).where(AuditEvent.action == "plan_policy.saved")).actor
        == f"staff:{admin_client.staff_member.id}"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"max_installments": "0"}, "Enter a whole number from 1 to 120."),
        ({"frequencies": []}, "Allow at least one frequency."),
        ({"min_installment": "twenty"}, "Please enter the amount as a number"),
        ({"min_installment": "0"}, "The minimum installment must be more than zero."),
        ({"max_total": "10.00"}, "The maximum total must not be below the minimum installment."),
        ({"min_down_payment_percent": "100"}, "Enter a whole number from 0 to 99."),
        ({"cooling_off_days": "-1"}, "Enter a whole number from 0 to 3650."),
    ],
)
def test_a_bad_policy_is_refused_and_nothing_saved(
    admin_client: FlaskClient, data: dict[str, object], message: str
) -> None:
    before = db.session.scalar(select(func.count(PlanPolicyVersion.id)))
    response = _policy_form(admin_client, **data)
    assert response.status_code == 422
    assert message in response.text
    assert db.session.scalar(select(func.count(PlanPolicyVersion.id))) == before


def test_an_unknown_segment_is_404(admin_client: FlaskClient) -> None:
    assert admin_client.get("/staff/policies/nobody").status_code == 404


def test_the_policy_pages_are_translated(admin_client: FlaskClient) -> None:
    page = admin_client.get("/staff/policies", headers={"Accept-Language": "de"})
    assert page.status_code == 200
    assert "Plan policies" not in page.text


def test_a_plan_keeps_its_policy_version_after_an_edit(admin_client: FlaskClient) -> None:
    plan = request_plan()
    first = plan.policy_version_id
    _policy_form(admin_client)
    db.session.refresh(plan)
    assert plan.policy_version_id == first
    # while the edit made a new version, which later plans take
    newest = db.session.scalar(select(func.max(PlanPolicyVersion.id)))
    assert newest is not None
    assert newest > first


def test_the_customer_page_lists_the_plans(staff_client: FlaskClient) -> None:
    plan = request_plan()
    page = staff_client.get(f"/staff/customers/{plan.customer.account_number}")
    assert page.status_code == 200
    assert f"/staff/plans/{plan.id}" in page.text
    assert "Waiting for review" in page.text
