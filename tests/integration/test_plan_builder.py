"""The customer's plan builder over HTTP: offers, the preview with real numbers, each
builder error in words, nothing written before `accept`."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from flask.testing import FlaskClient

from portal.customers.models import Customer
from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.extensions import db
from portal.invoices.models import Invoice
from tests.factories import csrf_token_from, login_as, make_customer, make_invoice


def _signed_in(client: FlaskClient, amount: str = "2100.00") -> tuple[Customer, Invoice, str]:
    customer = make_customer(timezone="UTC")
    invoice = make_invoice(customer, issue_date=date(2026, 9, 1), lines=[("Work", "1", amount)])
    db.session.commit()
    login_as(client, customer)
    page = client.get("/plans/new")
    assert page.status_code == 200
    return customer, invoice, page.text


def _today(customer: Customer) -> date:
    return customer_today(customer, utcnow())


def _builder(invoice: Invoice, token: str, **fields: object) -> dict[str, object]:
    data: dict[str, object] = {
        "csrf_token": token,
        "invoices": invoice.number,
        "down_payment": "225.00",
        "frequency": "monthly",
        "installments": "12",
        "preview": "1",
    }
    data.update(fields)
    return data


def test_preview_names_the_broken_limit_and_the_nearest_plan_within_policy(
    client: FlaskClient,
) -> None:
    customer, invoice, page = _signed_in(client)
    first = _today(customer) + timedelta(days=14)
    response = client.post(
        "/plans/new",
        data=_builder(invoice, csrf_token_from(page), first_payment_date=first.isoformat()),
    )
    assert response.status_code == 200
    text = response.text
    assert "12 installments is over the limit of 6." in text
    assert "This plan would be approved now: 6 monthly payments of $312.50." in text
    assert text.count("$156.25") == 12  # 1,875.00 in 12
    assert "$225.00" in text
    assert '<td data-label="Total" class="num amount" id="plan-total">$2,100.00</td>' in text


def test_the_offers_fit_the_policy_for_the_whole_balance(client: FlaskClient) -> None:
    _customer, _invoice, page = _signed_in(client)
    # 10 % down of 2,100.00 is 210.00; the 1,890.00 left in 3 or 6 monthly payments
    assert "3 monthly payments of $630.00" in page
    assert "6 monthly payments of $315.00" in page
    assert "3 weekly payments of $630.00" in page
    assert "$210.00 today, then the first payment on" in page
    assert page.count('name="accept"') >= 6  # one click each, and the builder's own button


def test_nothing_to_plan_says_so(client: FlaskClient) -> None:
    customer = make_customer(timezone="UTC")
    db.session.commit()
    login_as(client, customer)
    page = client.get("/plans/new")
    assert page.status_code == 200
    assert "You have nothing that can be put in a plan right now." in page.text
    assert 'id="plan-builder"' not in page.text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"invoices": []}, "Choose at least one invoice for the plan."),
        (
            {"invoices": "INV-NOT-MINE"},
            "Invoice INV-NOT-MINE has nothing that can be put in a plan now.",
        ),
        ({"down_payment": "abc"}, "Please enter the amount as a number, for example 120.50."),
        ({"down_payment": "-5"}, "The down payment cannot be below zero."),
        (
            {"down_payment": "2100"},
            "The down payment must be less than the plan&#39;s total of $2,100.00.",
        ),
        ({"frequency": "daily"}, "Please choose how often you will pay."),
        ({"installments": "twelve"}, "Please enter the number of payments as a whole number."),
        ({"installments": "0"}, "The number of payments must be between 1 and 120."),
        ({"installments": "121"}, "The number of payments must be between 1 and 120."),
        ({"first_payment_date": "2026-13-01"}, "Please enter a valid date."),
        ({"first_payment_date": "2020-01-01"}, "The first payment cannot be in the past."),
        ({"reason": "x" * 2001}, "Please keep the reason under 2000 characters."),
    ],
)
def test_each_builder_error_is_said_in_words_and_shows_no_schedule(
    client: FlaskClient, fields: dict[str, object], message: str
) -> None:
    customer, invoice, page = _signed_in(client)
    first = _today(customer) + timedelta(days=14)
    data = _builder(invoice, csrf_token_from(page), first_payment_date=first.isoformat())
    data.update(fields)
    response = client.post("/plans/new", data=data)
    assert response.status_code == 400
    assert message in response.text
    assert 'id="error-summary"' in response.text
    assert 'id="plan-schedule"' not in response.text


def test_accepting_a_plan_outside_policy_needs_a_reason(client: FlaskClient) -> None:
    customer, invoice, page = _signed_in(client)
    first = _today(customer) + timedelta(days=14)
    data = _builder(invoice, csrf_token_from(page), first_payment_date=first.isoformat())
    del data["preview"]
    data["accept"] = "1"
    response = client.post("/plans/new", data=data)
    assert response.status_code == 400
    assert "Tell us why you need this plan" in response.text
    assert 'id="plan-schedule"' in response.text  # the schedule stays in view


def test_the_builder_refuses_a_post_without_its_csrf_token(client: FlaskClient) -> None:
    customer, invoice, _page = _signed_in(client)
    first = _today(customer) + timedelta(days=14)
    data = _builder(invoice, "not-the-token", first_payment_date=first.isoformat())
    data["accept"] = "1"
    response = client.post("/plans/new", data=data)
    assert response.status_code == 400
    assert 'id="plan-schedule"' not in response.text


def test_the_live_preview_is_the_same_preview_without_the_page(client: FlaskClient) -> None:
    customer, invoice, page = _signed_in(client)
    first = _today(customer) + timedelta(days=14)
    response = client.post(
        "/plans/new?fragment=1",
        data=_builder(
            invoice,
            csrf_token_from(page),
            first_payment_date=first.isoformat(),
            installments="6",
            down_payment="300",
        ),
    )
    assert response.status_code == 200
    assert "<html" not in response.text
    assert "This plan is within our policy: it is agreed as soon as you accept it." in response.text
    assert response.text.count("$300.00") == 7  # the down payment, and 1,800.00 in 6


def test_the_builder_needs_a_signed_in_customer(client: FlaskClient) -> None:
    assert client.get("/plans/new").status_code in (302, 401)


@pytest.mark.parametrize("frequency", ["monthly", "biweekly", "weekly"])
def test_a_first_date_whose_schedule_passes_year_9999_is_refused_in_words(
    client: FlaskClient, frequency: str
) -> None:
    # review-plans: the preview built the schedule of 9999-12-20 + 1 month and answered 500
    _customer, invoice, page = _signed_in(client)
    data = _builder(
        invoice,
        csrf_token_from(page),
        frequency=frequency,
        installments="3",
        first_payment_date="9999-12-20",
    )
    for submit in ("preview", "accept"):
        data.pop("preview", None)
        response = client.post("/plans/new", data={**data, submit: "1", "reason": "Hardship"})
        assert response.status_code == 400
        assert "Please check the number of payments and the first date." in response.text
        assert 'id="plan-schedule"' not in response.text


def test_a_down_payment_with_a_decimal_comma_is_read_as_french_and_german_readers_type_it(
    client: FlaskClient,
) -> None:
    # review-plans: "225,00" was refused ("enter the amount as a number, for example
    # 120.50") although the dispute form reads a decimal comma
    customer, invoice, page = _signed_in(client)
    first = _today(customer) + timedelta(days=14)
    data = _builder(invoice, csrf_token_from(page), first_payment_date=first.isoformat())
    response = client.post("/plans/new", data={**data, "down_payment": "225,00"})
    assert response.status_code == 200
    assert 'id="plan-schedule"' in response.text
    assert response.text.count("$156.25") == 12  # 1,875.00 in 12, as with "225.00"
    # a thousands separator is not a decimal comma: still refused
    response = client.post("/plans/new", data={**data, "down_payment": "1,000,00"})
    assert response.status_code == 400
    assert "Please enter the amount as a number, for example 120.50." in response.text


@pytest.mark.parametrize(
    ("total", "said"),
    [
        ("100.00", "The first payment is $33.34."),  # 33.34 + 33.33 + 33.33
        ("100.01", "The first 2 payments are $33.34 each."),  # 33.34 + 33.34 + 33.33
        ("99.99", None),  # 33.33 three times: nothing to add
    ],
)
def test_the_details_say_which_first_payments_carry_the_cents_that_do_not_divide(
    app, db_session, total: str, said: str | None
) -> None:
    from decimal import Decimal

    from portal.money import Money
    from portal.plans.builder import plan_details, plan_summary
    from portal.plans.policy import Frequency, Proposal

    proposal = Proposal(
        total=Money.from_decimal(Decimal(total), "USD"),
        down_payment=Money.zero("USD"),
        frequency=Frequency.MONTHLY,
        installments=3,
        first_payment_date=date(2026, 12, 15),
        today=date(2026, 11, 30),
    )
    with app.test_request_context():
        details = plan_details(proposal)
        assert plan_summary(proposal) == "3 monthly payments of $33.33"
    assert details.startswith("No down payment; the first payment on Dec 15, 2026.")
    if said is None:
        assert details == "No down payment; the first payment on Dec 15, 2026."
    else:
        assert details.endswith(" " + said)
