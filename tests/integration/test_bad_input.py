"""No input is a 500: each kind of hostile or mistyped input has one gate (portal.inputs,
portal.money.parse_decimal, the CSRF check), and each input that once crashed is here."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.db import utcnow
from portal.extensions import db
from portal.inputs import MAX_ROW_ID, local_redirect_target, row_id
from portal.money import InvalidAmount, Money, parse_decimal
from portal.payments.models import Checkout
from tests.factories import csrf_token_from, login_as, make_customer, make_invoice

pytest_plugins = ["tests.stripe_server"]


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


# --- ids in URLs: bounded to the key columns (32 bits on PostgreSQL) -----------------------
@pytest.mark.parametrize(
    "path",
    [
        "/pay/99999999999999999999999",
        f"/pay/{MAX_ROW_ID + 1}",
        "/pay/99999999999999999999999/done",
        "/payments/99999999999999999999999/receipt.pdf",
        f"/payments/{MAX_ROW_ID + 1}/receipt.pdf",
        "/payments/" + "9" * 5000 + "/receipt.pdf",
        "/dev/mailbox/99999999999999999999999",
        f"/dev/mailbox/{2**31}",
        f"/pay/{2**63}",
    ],
)
def test_an_id_beyond_the_key_columns_is_not_found(client, stripe_app, path):
    login_as(client, make_customer())
    assert client.get(path).status_code == 404


def test_the_largest_key_is_looked_up_and_not_found(client, stripe_app):
    login_as(client, make_customer())
    assert client.get(f"/pay/{MAX_ROW_ID}").status_code == 404
    assert client.get(f"/payments/{MAX_ROW_ID}/receipt.pdf").status_code == 404


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12", 12),
        (" 7 ", 7),
        ("", None),
        (None, None),
        ("-3", None),
        ("0", None),
        ("1e3", None),
        ("٣", None),
        (str(MAX_ROW_ID), MAX_ROW_ID),
        (str(MAX_ROW_ID + 1), None),
    ],
)
def test_row_id_accepts_only_a_positive_key(value, expected):
    assert row_id(value) == expected


def test_removing_a_card_with_an_overflowing_checkout_id_goes_to_the_pay_page(client, stripe_app):
    login_as(client, make_customer())
    page = client.get("/pay")
    response = client.post(
        "/pay/card/remove",
        data={"csrf_token": csrf_token_from(page.text), "checkout": "9" * 40},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/pay"


# --- amounts: a length and magnitude bound ---------------------------------------------------
@pytest.mark.parametrize(
    "text", ["9" * 32, "1" + "0" * 15 + ".01", "-" + "9" * 20, "0." + "0" * 70 + "1", "9" * 64]
)
def test_an_amount_beyond_the_bound_is_refused_as_an_amount(text):
    with pytest.raises(InvalidAmount):
        parse_decimal(text)
    with pytest.raises(InvalidAmount):
        Money.from_decimal(text, "KWD")


def test_the_largest_amount_fits_a_64_bit_column_in_every_currency():
    assert Money.from_decimal("1" + "0" * 15, "KWD").minor == 10**18
    assert Money.from_decimal("-" + "9" * 15 + ".999", "KWD").minor == -(10**18 - 1)
    with pytest.raises(InvalidAmount):
        Money(2**63, "USD")


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("9" * 32, "You can pay at most $150.00."),
        ("-" + "9" * 31, "Please enter a valid amount."),
        ("9" * 32 + ".99", "Please enter a valid amount."),  # longer than the field takes
        ("1" * 33, "Please enter a valid amount."),
    ],
)
def test_a_32_digit_amount_on_the_pay_form_is_explained_and_writes_nothing(
    client, stripe_app, amount, message
):
    customer = make_customer(timezone="UTC")
    invoice = make_invoice(
        customer, issue_date=utcnow().date() - timedelta(days=40), lines=[("A", "1", "150.00")]
    )
    login_as(client, customer)
    page = client.get("/pay")
    response = client.post(
        "/pay",
        data={
            "csrf_token": csrf_token_from(page.text),
            "invoices": [invoice.number],
            "amount": amount,
        },
    )
    assert response.status_code == 400
    assert message in response.text
    assert _count(Checkout) == 0


# --- redirect targets: a printable path on this site ------------------------------------------
@pytest.mark.parametrize(
    "target",
    [
        "/account\r\nSet-Cookie: x=1",
        "/account\nX: y",
        "/a\rb",
        "/a\x01b",
        "/a\tb",
        "/a\u2028b",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "account",
    ],
)
def test_a_next_that_is_not_a_printable_local_path_goes_home(client, target):
    page = client.get("/")
    response = client.post(
        "/language",
        data={"csrf_token": csrf_token_from(page.text), "locale": "es", "next": target},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert "x=1" not in response.headers.get("Set-Cookie", "")
    assert local_redirect_target(target) is None


def test_a_local_next_is_kept(client):
    page = client.get("/")
    response = client.post(
        "/language",
        data={"csrf_token": csrf_token_from(page.text), "locale": "es", "next": "/link/new?x=é"},
    )
    assert response.headers["Location"].startswith("/link/new?x=")


# --- the Referer on HTTPS, which Flask-WTF parses ---------------------------------------------
@pytest.mark.parametrize(
    "referer",
    [
        "https://portal.example.test:abc/",
        "https://portal.example.test:99999999/",
        "https://[::1/",
        "https://portal.example.test:-1/",
    ],
)
def test_a_referer_that_does_not_parse_is_a_refused_form_not_a_500(client, referer):
    https = "https://portal.example.test"
    page = client.get("/", base_url=https)
    response = client.post(
        "/language",
        base_url=https,
        data={"csrf_token": csrf_token_from(page.text), "locale": "de", "next": "/"},
        headers={"Referer": referer},
    )
    assert response.status_code == 400
    assert "Your session has expired" in response.text


def test_a_good_referer_on_https_still_passes(client):
    https = "https://portal.example.test"
    page = client.get("/", base_url=https)
    response = client.post(
        "/language",
        base_url=https,
        data={"csrf_token": csrf_token_from(page.text), "locale": "de", "next": "/"},
        headers={"Referer": f"{https}/"},
    )
    assert response.status_code == 302


def test_a_host_with_a_non_numeric_port_on_https_is_a_refused_form(client):
    # Flask-WTF builds the expected origin from the Host (or X-Forwarded-Host behind
    # PROXY_FIX) and parses it the same way: the same kind of input as the Referer.
    https = "https://portal.example.test"
    page = client.get("/", base_url=https)
    response = client.post(
        "/language",
        base_url=https,
        data={"csrf_token": csrf_token_from(page.text), "locale": "de", "next": "/"},
        headers={"Referer": f"{https}/", "Host": "portal.example.test:abc"},
    )
    assert response.status_code == 400


# --- NUL characters: PostgreSQL text cannot hold one ---------------------------------------------
@pytest.mark.parametrize(
    "path", ["/invoices/%00", "/invoices/a%00b/pdf", "/l/%00", "/account?x=%00", "/?%00=1"]
)
def test_a_nul_in_the_path_or_query_is_a_bad_request(client, path):
    login_as(client, make_customer())
    assert client.get(path).status_code == 400


def test_a_nul_in_a_form_field_is_a_bad_request_and_writes_nothing(client):
    from portal.access.models import LinkRequest

    page = client.get("/link/new")
    response = client.post(
        "/link/new",
        data={
            "csrf_token": csrf_token_from(page.text),
            "account_number": "ACC\x001",
            "email": "a@example.com",
        },
    )
    assert response.status_code == 400
    assert "This request could not be understood" in response.text
    assert _count(LinkRequest) == 0


def test_a_redirect_target_with_a_nul_is_refused():
    assert local_redirect_target("/a\x00b") is None
