"""Templates compiled per language (portal.site.localized) write what translating at render
time writes, in every language, on the customer's pages and a staff page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import Flask, render_template_string
from flask.testing import FlaskClient
from flask_babel import force_locale

from portal.config import SUPPORTED_LOCALES
from portal.db import utcnow
from portal.extensions import db
from tests.factories import (
    login_as,
    login_as_staff,
    make_credit,
    make_customer,
    make_invoice,
    make_payment,
    make_staff,
)

pytest_plugins = ["tests.stripe_server"]

# What differs between two responses of the same page: the CSP nonce and the CSRF token
# (signed with a timestamp: itsdangerous' three dotted parts).
_NONCE = re.compile(r'nonce="[^"]*"')
_SIGNED_TOKEN = re.compile(r'value="[\w-]+\.[\w-]+\.[\w-]+"')


def _same_page(html: str) -> str:
    return _SIGNED_TOKEN.sub('value="…"', _NONCE.sub('nonce="…"', html))


def _both_ways(
    app: Flask, client: FlaskClient, path: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str]:
    compiled = client.get(path)
    monkeypatch.setitem(app.config, "TEMPLATES_TRANSLATED_AT_COMPILE", False)
    rendered = client.get(path)
    monkeypatch.setitem(app.config, "TEMPLATES_TRANSLATED_AT_COMPILE", True)
    assert compiled.status_code == rendered.status_code == 200, path
    return _same_page(compiled.text), _same_page(rendered.text)


@pytest.mark.usefixtures("stripe_app")  # the pay page is there
@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_customer_pages_are_the_same_compiled_per_language(
    app: Flask, client: FlaskClient, locale: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a customer with open, partly paid, credited and paid invoices, reading `locale`
    today = utcnow().date()
    customer = make_customer(name="Zoë & <Sons>", locale=locale, timezone="UTC")
    overdue = make_invoice(
        customer,
        number="INV-<1>&'\"",
        issue_date=today - timedelta(days=40),
        due_date=today - timedelta(days=10),
        lines=[("Repair <b>pump</b> & 'valve'", "2", "150.25"), ("Travel 100%", "1", "80.00")],
    )
    upcoming = make_invoice(
        customer, number="INV-2", issue_date=today, due_date=today + timedelta(days=30)
    )
    paid = make_invoice(customer, number="INV-3", issue_date=today - timedelta(days=90))
    make_payment(customer, [(paid, "100.00"), (overdue, "50.00")])
    make_credit(upcoming, "10.00")
    db.session.flush()
    login_as(client, customer)
    for path in (
        "/account",
        "/invoices/INV-%3C1%3E&'%22",
        "/invoices/INV-2",
        "/invoices/INV-3",
        "/pay",
        "/pay?overdue=1",
        "/invoices/INV-2/dispute",
        "/accessibility",
    ):
        # when the page is rendered from templates compiled for the language, and again
        # translating each message as it is rendered
        compiled, rendered = _both_ways(app, client, path, monkeypatch)
        # then the two are the same page, in the customer's language
        assert compiled == rendered, path
        assert f'<html lang="{locale}">' in compiled


def test_a_staff_page_is_the_same_compiled(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = make_staff()
    customer = make_customer(name="O'Brien <Ltd>")
    make_invoice(customer, number="INV-S1")
    login_as_staff(client, member)
    for path in (
        "/staff/",
        f"/staff/customers/{customer.account_number}",
        "/staff/customers?q=Brien",
    ):
        compiled, rendered = _both_ways(app, client, path, monkeypatch)
        assert compiled == rendered, path


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_constant_messages_are_translated_escaped_and_formatted_as_at_render_time(
    app: Flask, locale: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = (
        '{{ _("Total due") }}|{% trans name=who %}Hello, {{ name }}{% endtrans %}|'
        '{{ gettext("Account number %(number)s", number=who) }}|{{ _(dynamic) }}|'
        '{% autoescape false %}{{ _("Total due") }}{% endautoescape %}'
    )
    values = {"who": "<Zoë & Co>", "dynamic": "Total due"}
    with app.test_request_context("/"), force_locale(locale):
        compiled = render_template_string(source, **values)
        monkeypatch.setitem(app.config, "TEMPLATES_TRANSLATED_AT_COMPILE", False)
        rendered = render_template_string(source, **values)
    assert compiled == rendered
    assert "&lt;Zoë &amp; Co&gt;" in compiled
    assert "<Zoë" not in compiled


def test_each_language_has_its_own_compiled_templates(app: Flask) -> None:
    with app.test_request_context("/"):
        environments = {}
        for locale in SUPPORTED_LOCALES:
            with force_locale(locale):
                environments[locale] = app.jinja_env
                heading = app.jinja_env.from_string('{{ _("Total due") }}').render()
            environments[locale + "/text"] = heading
    assert len({id(environments[locale]) for locale in SUPPORTED_LOCALES}) == 4
    assert environments["en/text"] == "Total due"
    assert environments["de/text"] != "Total due"
    # outside an app context: the app's own environment, translating at render time
    assert app.jinja_env.folded_translations is None  # type: ignore[attr-defined]
