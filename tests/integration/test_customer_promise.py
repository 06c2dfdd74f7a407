"""A customer promises from the account page: within PROMISE_MAX_DAYS, reminders wait.
A refused promise shows the account page again with the form saying why, beside each
field and in a summary at the form's top, and keeping what the customer entered."""

from __future__ import annotations

import re
from datetime import date, timedelta

from flask.testing import FlaskClient
from sqlalchemy import func, select

from portal.customers.queries import customer_today
from portal.db import utcnow
from portal.extensions import db
from portal.promises.models import Promise
from tests.factories import csrf_token_from, login_as, make_customer, make_invoice


def _promise_form(page: str) -> str:
    """The promise form's markup (what the customer sees where they pressed the button)."""
    start = page.index('<form method="post" action="/account/promise')
    return page[start : page.index("</form>", start)]


def _before_the_form(page: str) -> str:
    return page[: page.index('<form method="post" action="/account/promise')]


def _setup(client: FlaskClient):  # type: ignore[no-untyped-def]
    customer = make_customer(timezone="UTC")
    invoice = make_invoice(customer, issue_date=date(2026, 9, 1), lines=[("A", "1", "75.00")])
    db.session.commit()
    login_as(client, customer)
    page = client.get("/account")
    assert page.status_code == 200
    return customer, invoice, page.text


def test_a_customer_promises_to_pay_by_a_date(client: FlaskClient) -> None:
    customer, invoice, page = _setup(client)
    assert "I will pay by (at most 14 days from today)" in page
    by = customer_today(customer, utcnow()) + timedelta(days=14)
    response = client.post(
        "/account/promise",
        data={
            "csrf_token": csrf_token_from(page),
            "invoices": invoice.number,
            "promised_on": by.isoformat(),
        },
    )
    assert response.status_code == 302
    promise = db.session.scalar(select(Promise).where(Promise.customer_id == customer.id))
    assert (promise.amount_minor, promise.source, promise.promised_on) == (7500, "customer", by)
    assert promise.created_by == f"customer:{customer.id}"
    after = client.get("/account").text
    assert "We will not send reminders for these invoices until" in after
    assert "You promised to pay $75.00 by" in after


def test_a_promise_beyond_the_limit_is_refused(client: FlaskClient) -> None:
    customer, invoice, page = _setup(client)
    by = customer_today(customer, utcnow()) + timedelta(days=15)
    response = client.post(
        "/account/promise",
        data={
            "csrf_token": csrf_token_from(page),
            "invoices": invoice.number,
            "promised_on": by.isoformat(),
        },
    )
    # the account page again, the service's refusal beside the date it is about
    assert response.status_code == 400
    form = _promise_form(response.text)
    assert '<p class="field__error" id="promised_on-error">A promise can be at most 14 days' in form
    assert 'aria-describedby="promised_on-error" aria-invalid="true"' in form
    assert f'value="{by.isoformat()}"' in form  # the date is kept
    assert "A promise can be at most 14 days ahead." not in _before_the_form(response.text)
    assert db.session.scalar(select(Promise)) is None


def test_a_bad_date_or_a_foreign_invoice_is_refused(client: FlaskClient) -> None:
    customer, invoice, page = _setup(client)
    other = make_invoice(make_customer(), issue_date=date(2026, 9, 1))
    db.session.commit()
    token = csrf_token_from(page)
    refused = client.post(
        "/account/promise",
        data={"csrf_token": token, "invoices": invoice.number, "promised_on": "31/12/2026"},
    )
    assert refused.status_code == 400
    assert 'id="promised_on-error">Please enter a valid date.' in _promise_form(refused.text)
    assert 'value="31/12/2026"' in _promise_form(refused.text)  # kept as typed
    by = customer_today(customer, utcnow()) + timedelta(days=3)
    refused = client.post(
        "/account/promise",
        data={"csrf_token": token, "invoices": other.number, "promised_on": by.isoformat()},
    )
    assert refused.status_code == 400
    form = _promise_form(refused.text)
    assert "Choose at least one invoice that is still open." in form
    assert other.number not in refused.text  # never shown, not even as what was sent
    assert db.session.scalar(select(Promise)) is None


def test_anonymous_and_staff_cannot_promise(client: FlaskClient, staff_client: FlaskClient) -> None:
    response = staff_client.post("/account/promise", data={})
    assert response.status_code in (400, 401)
    assert db.session.scalar(select(Promise)) is None


def test_the_only_invoice_is_written_out_with_no_checkbox_to_untick(client: FlaskClient) -> None:
    # given a customer with one open invoice
    customer, invoice, page = _setup(client)
    form = _promise_form(page)
    # then it is named, sent by a hidden input, and there is no checkbox that a tap unticks
    assert "I will pay this invoice in full:" in form
    assert f'<p class="promise-only__invoice">{invoice.number} ($75.00)</p>' in form
    assert f'<input type="hidden" name="invoices" value="{invoice.number}">' in form
    assert 'type="checkbox"' not in form
    # and giving a date is all a promise takes
    by = customer_today(customer, utcnow()) + timedelta(days=2)
    response = client.post(
        "/account/promise",
        data={"csrf_token": csrf_token_from(page), "invoices": invoice.number, "promised_on": by},
    )
    assert response.status_code == 302
    assert db.session.scalar(select(Promise.promised_on)) == by


def test_of_two_invoices_neither_is_ticked_before_the_customer_ticks(client: FlaskClient) -> None:
    customer, invoice, _page = _setup(client)
    second = make_invoice(customer, lines=[("B", "1", "10.00")])
    db.session.commit()
    form = _promise_form(client.get("/account").text)
    assert "I will pay these invoices in full:" in form
    assert f'value="{invoice.number}">' in form
    assert f'value="{second.number}">' in form
    assert " checked" not in form
    assert 'type="hidden" name="invoices"' not in form


def test_nothing_ticked_is_said_in_the_form_beside_the_invoices_and_the_date_is_kept(
    client: FlaskClient,
) -> None:
    # given a customer with two open invoices
    customer, invoice, page = _setup(client)
    second = make_invoice(customer, lines=[("B", "1", "10.00")])
    db.session.commit()
    by = customer_today(customer, utcnow()) + timedelta(days=5)
    # when they pick a date but tick nothing
    response = client.post(
        "/account/promise",
        data={"csrf_token": csrf_token_from(page), "promised_on": by.isoformat()},
    )
    # then the account page comes back with the error inside the form, not at the top
    assert response.status_code == 400
    form = _promise_form(response.text)
    message = "Choose at least one invoice that is still open."
    assert message not in _before_the_form(response.text)
    assert response.text.count(message) == 2  # in the summary, and beside the invoices
    # a summary opens the form, takes the focus and links to the field
    assert form.index('id="error-summary"') < form.index('id="promise-invoices"')
    assert re.search(
        r'<div class="error-summary" id="error-summary" role="alert" tabindex="-1"'
        r"[^>]* autofocus>",
        form,
    )
    assert f'<a href="#promise-invoices">{message}</a>' in form
    # the invoices' fieldset is described by its error
    assert 'id="promise-invoices" tabindex="-1" aria-describedby="promise-invoices-error">' in form
    assert f'<p class="field__error" id="promise-invoices-error">{message}' in form
    # the date is kept and is not in error; the invoices are still there, unticked
    assert f'value="{by.isoformat()}">' in form
    assert "promised_on-error" not in form
    assert f'value="{invoice.number}">' in form
    assert f'value="{second.number}">' in form
    assert db.session.scalar(select(Promise)) is None


def test_a_refused_date_keeps_the_ticked_invoices_ticked(client: FlaskClient) -> None:
    customer, invoice, page = _setup(client)
    second = make_invoice(customer, lines=[("B", "1", "10.00")])
    third = make_invoice(customer, lines=[("C", "1", "20.00")])
    db.session.commit()
    response = client.post(
        "/account/promise",
        data={"csrf_token": csrf_token_from(page), "invoices": [invoice.number, third.number]},
    )
    assert response.status_code == 400
    form = _promise_form(response.text)
    assert f'value="{invoice.number}" checked>' in form
    assert f'value="{second.number}">' in form
    assert f'value="{third.number}" checked>' in form
    assert '<a href="#promised_on">Please enter a valid date.</a>' in form
    assert 'aria-describedby="promised_on-error" aria-invalid="true"' in form
    assert "promise-invoices-error" not in form
    # the next plain visit of the page carries nothing of it
    again = _promise_form(client.get("/account").text)
    assert 'id="error-summary"' not in again
    assert " checked" not in again


def test_the_form_posts_to_its_error_summary_and_success_returns_to_the_section(
    client: FlaskClient,
) -> None:
    # the browser keeps the action's fragment on the page it gets back (a refusal opens
    # at the summary); a redirect's own fragment replaces it (a promise made)
    customer, invoice, page = _setup(client)
    assert '<form method="post" action="/account/promise#error-summary"' in page
    by = customer_today(customer, utcnow()) + timedelta(days=1)
    response = client.post(
        "/account/promise",
        data={"csrf_token": csrf_token_from(page), "invoices": invoice.number, "promised_on": by},
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/account#promise-title")
    # the refused form's address, opened again, is the account page's promise section
    again = client.get("/account/promise#error-summary")
    assert again.status_code == 302
    assert again.headers["Location"].endswith("/account#promise-title")


def test_the_button_says_what_it_does_in_every_language(client: FlaskClient) -> None:
    # the heading names the section, the button the action (they were the same words)
    labels = {
        "en": ("Promise to pay", "Send my promise", "Choose at least one invoice that is"),
        "es": ("Promesa de pago", "Enviar mi promesa de pago", "Elija al menos una factura"),
        "fr": ("Promesse de paiement", "Envoyer ma promesse de paiement", "Choisissez au moins"),
        "de": ("Zahlungsversprechen", "Zahlungsversprechen senden", "Wählen Sie mindestens"),
    }
    for locale, (heading, button, nothing_ticked) in labels.items():
        customer = make_customer(timezone="UTC", locale=locale)
        make_invoice(customer, lines=[("A", "1", "75.00")])
        make_invoice(customer, lines=[("B", "1", "5.00")])
        db.session.commit()
        login_as(client, customer)
        page = client.get("/account", headers={"Accept-Language": locale}).text
        assert f'<h2 id="promise-title" class="section-title">{heading}</h2>' in page
        assert f'<button type="submit" class="button button--primary">{button}</button>' in page
        refused = client.post("/account/promise", data={"csrf_token": csrf_token_from(page)})
        assert refused.status_code == 400
        assert f'<p class="field__error" id="promise-invoices-error">{nothing_ticked}' in (
            _promise_form(refused.text)
        )


def test_a_second_promise_from_a_stale_page_says_why_where_the_form_was(
    client: FlaskClient,
) -> None:
    # given a promise made for the only invoice, from one tab
    customer, invoice, page = _setup(client)
    by = customer_today(customer, utcnow()) + timedelta(days=3)
    data = {"csrf_token": csrf_token_from(page), "invoices": invoice.number, "promised_on": by}
    assert client.post("/account/promise", data=data).status_code == 302
    # when the same promise is sent again from the other tab, still showing the form
    response = client.post("/account/promise", data=data)
    # then there is no form left to correct: the section says why, with no link to a field
    assert response.status_code == 400
    section = response.text[response.text.index('<section aria-labelledby="promise-title">') :]
    section = section[: section.index("</section>")]
    assert "You promised to pay $75.00 by" in section
    assert "/account/promise" not in section
    assert "<li>An open promise already covers one of these invoices.</li>" in section
    assert 'id="error-summary"' in section
    assert db.session.scalar(select(func.count()).select_from(Promise)) == 1
