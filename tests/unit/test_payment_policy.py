"""Pure payment rules: amounts a customer may pay, allocation, refunds, Stripe units, settings."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.money import Money
from portal.payments.gateway import (
    AmountNotRepresentable,
    from_stripe_amount,
    settings_problems,
    to_stripe_amount,
)
from portal.payments.policy import (
    AmountProblem,
    Applied,
    OpenItem,
    Overpayment,
    allocate_received,
    check_amount,
    minimum_payment,
    take_back,
)


def usd(text: str) -> Money:
    return Money.from_decimal(text, "USD")


def item(invoice_id: int, due: str, amount: str, currency: str = "USD") -> OpenItem:
    return OpenItem(
        invoice_id,
        date.fromisoformat(due),
        f"INV-{invoice_id}",
        Money.from_decimal(amount, currency),
    )


# --- what may be paid -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("amount", "payable", "expected"),
    [
        ("100.00", "100.00", None),
        ("5.00", "100.00", None),  # exactly the minimum
        ("4.99", "100.00", AmountProblem.BELOW_MINIMUM),
        ("100.01", "100.00", AmountProblem.ABOVE_PAYABLE),
        ("0.00", "100.00", AmountProblem.NOT_POSITIVE),
        ("-1.00", "100.00", AmountProblem.NOT_POSITIVE),
        ("3.00", "3.00", None),  # paying everything is allowed below the minimum
        ("2.00", "3.00", AmountProblem.BELOW_MINIMUM),
    ],
)
def test_check_amount(amount, payable, expected):
    assert check_amount(usd(amount), usd(payable), usd("5.00")) == expected


def test_minimum_is_in_the_currency_with_overrides():
    assert minimum_payment("USD", "1.00") == Money(100, "USD")
    assert minimum_payment("JPY", "1.00", "JPY=100,KWD=0.5") == Money(100, "JPY")
    assert minimum_payment("KWD", "1.00", "JPY=100, kwd=0.5") == Money(500, "KWD")
    assert minimum_payment("EUR", "2", "JPY=100") == Money(200, "EUR")


# --- allocation of money received ---------------------------------------------------------
def test_chosen_invoices_are_paid_oldest_due_first():
    chosen = [item(2, "2026-03-01", "50.00"), item(1, "2026-01-01", "30.00")]
    others = [item(3, "2025-12-01", "80.00")]
    allocations, unapplied = allocate_received(usd("60.00"), chosen, others)
    assert allocations == [(1, usd("30.00")), (2, usd("30.00"))]
    assert unapplied == usd("0.00")


def test_money_beyond_the_chosen_invoices_goes_to_the_oldest_other_invoice():
    chosen = [item(1, "2026-01-01", "30.00")]
    others = [item(3, "2026-02-01", "80.00"), item(2, "2025-12-01", "10.00")]
    allocations, unapplied = allocate_received(usd("45.00"), chosen, others)
    assert allocations == [(1, usd("30.00")), (2, usd("10.00")), (3, usd("5.00"))]
    assert not unapplied


def test_money_no_invoice_owes_is_unapplied_not_refused():
    allocations, unapplied = allocate_received(usd("45.00"), [item(1, "2026-01-01", "30.00")], [])
    assert allocations == [(1, usd("30.00"))]
    assert unapplied == usd("15.00")
    assert allocate_received(usd("9.00"), [], []) == ([], usd("9.00"))


@given(
    st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=6),
    st.integers(min_value=1, max_value=80_000),
)
def test_allocation_never_loses_or_invents_a_minor_unit(balances, paid):
    items = [
        OpenItem(i, date(2026, 1, 1 + i), f"N{i}", Money(b, "JPY")) for i, b in enumerate(balances)
    ]
    allocations, unapplied = allocate_received(Money(paid, "JPY"), items[:2], items[2:])
    assert sum(m.minor for _, m in allocations) + unapplied.minor == paid
    assert all(m.minor > 0 for _, m in allocations)
    for invoice_id, money in allocations:
        assert money.minor <= balances[invoice_id]


# --- refunds ------------------------------------------------------------------------------
def test_refund_reopens_the_latest_due_invoice_first():
    applied = [
        Applied(1, date(2026, 1, 1), "INV-1", usd("30.00")),
        Applied(2, date(2026, 3, 1), "INV-2", usd("20.00")),
    ]
    assert take_back(usd("25.00"), applied) == [(2, usd("20.00")), (1, usd("5.00"))]


def test_refund_larger_than_the_payment_covers_is_refused():
    with pytest.raises(Overpayment):
        take_back(usd("25.00"), [Applied(1, date(2026, 1, 1), "INV-1", usd("20.00"))])


# --- Stripe's units -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("money", "stripe_amount"),
    [
        (Money(123456, "USD"), 123456),  # two decimals: cents
        (Money(1234, "JPY"), 1234),  # zero-decimal: yen
        (Money(5, "ISK"), 500),  # ISO says 0 decimals; Stripe wants two, ending in 00
        (Money(1230, "KWD"), 1230),  # three decimals, ending in 0
        (Money(99, "EUR"), 99),
    ],
)
def test_amounts_cross_to_stripe_and_back_exactly(money, stripe_amount):
    assert to_stripe_amount(money) == stripe_amount
    assert from_stripe_amount(stripe_amount, money.currency.lower()) == money


def test_amounts_stripe_cannot_charge_exactly_are_refused():
    with pytest.raises(AmountNotRepresentable):
        to_stripe_amount(Money(1235, "KWD"))
    with pytest.raises(AmountNotRepresentable):
        from_stripe_amount(550, "ISK")


@given(
    st.integers(min_value=1, max_value=10**12), st.sampled_from(["USD", "JPY", "EUR", "KRW", "ISK"])
)
def test_round_trip_for_any_amount(minor, currency):
    money = Money(minor, currency)
    assert from_stripe_amount(to_stripe_amount(money), currency) == money


# --- settings ---------------------------------------------------------------------------------
BASE = {
    "STRIPE_PUBLISHABLE_KEY": "pk_test_x",
    "STRIPE_WEBHOOK_SECRET": "whsec_x",
    "STRIPE_API_BASE": "https://api.stripe.com",
    "STRIPE_JS_URL": "https://js.stripe.com/v3/",
}


def test_no_secret_key_means_no_card_payments_and_no_problem():
    assert settings_problems({"STRIPE_SECRET_KEY": None}) == []


def test_test_keys_may_point_at_localstripe_on_loopback():
    config = BASE | {
        "STRIPE_SECRET_KEY": "sk_test_x",
        "STRIPE_API_BASE": "http://127.0.0.1:8420",
        "STRIPE_JS_URL": "http://127.0.0.1:8420/js.stripe.com/v3/",
    }
    assert settings_problems(config) == []


def test_live_key_with_a_fake_api_base_is_refused():
    config = BASE | {
        "STRIPE_SECRET_KEY": "sk_live_x",
        "STRIPE_PUBLISHABLE_KEY": "pk_live_x",
        "STRIPE_API_BASE": "http://127.0.0.1:8420",
    }
    assert any("live Stripe key" in p for p in settings_problems(config))


def test_live_key_with_a_fake_stripe_js_is_refused():
    config = BASE | {
        "STRIPE_SECRET_KEY": "rk_live_x",
        "STRIPE_PUBLISHABLE_KEY": "pk_live_x",
        "STRIPE_JS_URL": "http://127.0.0.1:8420/js.stripe.com/v3/",
    }
    assert any("Stripe.js" in p for p in settings_problems(config))


@pytest.mark.parametrize(
    "change",
    [
        {"STRIPE_WEBHOOK_SECRET": ""},
        {"STRIPE_PUBLISHABLE_KEY": ""},
        {"STRIPE_PUBLISHABLE_KEY": "pk_live_x"},  # mixed modes
        {"STRIPE_API_BASE": "http://stripe.example.com"},  # plain http off loopback
    ],
)
def test_incomplete_or_unsafe_settings_are_refused(change):
    assert settings_problems(BASE | {"STRIPE_SECRET_KEY": "sk_test_x"} | change)
