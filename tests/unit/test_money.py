"""Money: integer minor units, half-up rounding at the edge, no mixed currencies."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.money import (
    CurrencyMismatch,
    InvalidAmount,
    Money,
    MoneyError,
    UnitPrice,
    UnknownCurrency,
    line_amount,
    minor_unit_exponent,
    normalize_currency,
    parse_decimal,
)

CURRENCIES = ["USD", "EUR", "JPY", "KWD", "GBP", "CHF"]
minor_amounts = st.integers(min_value=-(10**15), max_value=10**15)
currencies = st.sampled_from(CURRENCIES)


@pytest.mark.parametrize(("currency", "digits"), [("USD", 2), ("EUR", 2), ("JPY", 0), ("KWD", 3)])
def test_minor_unit_exponent_comes_from_iso_4217(currency, digits):
    assert minor_unit_exponent(currency) == digits


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12", "USD", 1200),
        ("12.3", "USD", 1230),
        ("12.345", "USD", 1235),  # half-up
        ("12.344", "USD", 1234),
        ("0.005", "USD", 1),
        ("-0.005", "USD", -1),  # halves round away from zero
        ("100.5", "JPY", 101),
        ("100.4", "JPY", 100),
        ("1.2345", "KWD", 1235),
        (" 7.10 ", "EUR", 710),
    ],
)
def test_from_decimal_rounds_half_up_to_minor_units(text, currency, minor):
    assert Money.from_decimal(text, currency) == Money(minor, currency)


@pytest.mark.parametrize("text", ["", "abc", "1,000.00", "1e3", "NaN", "Infinity", "12.3.4", "--1"])
def test_malformed_amounts_are_refused(text):
    with pytest.raises(InvalidAmount):
        Money.from_decimal(text, "USD")


@pytest.mark.parametrize("code", ["", "US", "XYZ", "usdd", "12$"])
def test_unknown_currencies_are_refused(code):
    with pytest.raises(UnknownCurrency):
        Money(1, code)


def test_currency_codes_are_normalized():
    assert normalize_currency(" usd ") == "USD"
    assert Money(1, "eur").currency == "EUR"


def test_floats_are_refused():
    with pytest.raises(InvalidAmount):
        Money(1.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(InvalidAmount):
        Money(True, "USD")  # type: ignore[arg-type]


def test_mixed_currencies_do_not_add_subtract_or_compare():
    usd, eur = Money(100, "USD"), Money(100, "EUR")
    with pytest.raises(CurrencyMismatch):
        _ = usd + eur
    with pytest.raises(CurrencyMismatch):
        _ = usd - eur
    with pytest.raises(CurrencyMismatch):
        _ = usd < eur
    with pytest.raises(TypeError):
        _ = usd + 1


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en", "$1,234.50"),
        ("es", "1.234,50\xa0US$"),
        ("fr", "1\u202f234,50\xa0$US"),
        ("de", "1.234,50\xa0$"),
    ],
)
def test_format_follows_the_locale(locale, expected):
    assert Money(123450, "USD").format(locale) == expected


def test_format_uses_the_currency_digits():
    assert Money(1234, "JPY").format("en") == "¥1,234"
    assert Money(1234, "KWD").format("en") == "KWD1.234"


def test_split_sums_exactly_and_differs_by_at_most_one_unit():
    parts = Money(1000, "USD").split(3)
    assert [p.minor for p in parts] == [334, 333, 333]


@given(minor_amounts, minor_amounts, currencies)
def test_addition_is_exact_and_reversible(a, b, currency):
    x, y = Money(a, currency), Money(b, currency)
    assert (x + y).minor == a + b
    assert (x + y) - y == x
    assert (-x).minor == -a


@given(minor_amounts, currencies)
def test_decimal_round_trip_is_lossless(minor, currency):
    money = Money(minor, currency)
    assert Money.from_decimal(money.to_decimal(), currency) == money
    assert Money.from_decimal(str(money.to_decimal()), currency) == money


@given(
    st.decimals(
        min_value=-(10**9), max_value=10**9, allow_nan=False, allow_infinity=False, places=6
    ),
    currencies,
)
def test_parsing_rounds_to_nearest_minor_unit(value, currency):
    money = Money.from_decimal(value, currency)
    scaled = value.scaleb(minor_unit_exponent(currency))
    assert abs(Decimal(money.minor) - scaled) <= Decimal("0.5")


@given(
    st.integers(min_value=0, max_value=10**12), st.integers(min_value=1, max_value=120), currencies
)
def test_split_always_sums_to_the_whole(minor, parts, currency):
    pieces = Money(minor, currency).split(parts)
    assert len(pieces) == parts
    assert Money.sum(pieces, currency) == Money(minor, currency)
    assert max(p.minor for p in pieces) - min(p.minor for p in pieces) <= 1


@given(minor_amounts, st.integers(min_value=1, max_value=10**6), currencies)
def test_times_rounds_half_up(minor, milli, currency):
    quantity = Decimal(milli) / 1000
    result = Money(minor, currency).times(quantity)
    exact = Decimal(minor) * quantity
    assert abs(Decimal(result.minor) - exact) <= Decimal("0.5")


# --- a line's amount: quantity x unit price, rounded half-up once ---------------------
@pytest.mark.parametrize(
    ("currency", "quantity", "unit_price", "expected"),
    [
        ("USD", "3", "0.335", "1.01"),  # 1.005 -> 1.01 (rounding the price first gave 1.02)
        ("USD", "1000", "0.004", "4.00"),  # the price rounded first would be 0.00
        ("USD", "10", "0.125", "1.25"),  # 0.13 x 10 = 1.30 when rounded first
        ("JPY", "3", "0.5", "2"),  # 1.5 -> 2 (1 x 3 = 3 when rounded first)
        ("USD", "1", "1.005", "1.01"),
        ("USD", "2.5", "10.01", "25.03"),  # 25.025 -> 25.03
        ("KWD", "7", "0.0015", "0.011"),  # 0.0105 -> 0.011
        ("USD", "0.333", "0.000001", "0.00"),
    ],
)
def test_line_amount_rounds_the_product_once(currency, quantity, unit_price, expected):
    price = UnitPrice.from_decimal(unit_price, currency)
    amount = line_amount(Decimal(quantity), price, Money.zero(currency))
    assert amount == Money.from_decimal(expected, currency)
    assert str(amount.to_decimal()) == expected


def test_line_amount_adds_the_tax_after_rounding():
    price = UnitPrice.from_decimal("0.335", "USD")
    assert line_amount(Decimal(3), price, Money(7, "USD")) == Money(108, "USD")


def test_line_amount_is_exact_for_huge_quantities_of_six_decimal_prices():
    price = UnitPrice.from_decimal("0.123457", "USD")
    amount = line_amount(Decimal("9999999999.999"), price, Money.zero("USD"))
    # 9,999,999,999.999 x 0.123457 = 1,234,569,999.999876543 -> 1,234,570,000.00
    assert amount == Money(123_457_000_000, "USD")


def test_line_amount_refuses_what_a_money_column_cannot_hold():
    price = UnitPrice.from_decimal("99999999999", "USD")
    with pytest.raises(InvalidAmount, match="too large"):
        line_amount(Decimal("999999999"), price, Money.zero("USD"))


@pytest.mark.parametrize(
    ("text", "units", "scale", "shown"),
    [
        ("0.3350", 3350, 4, "$0.3350"),
        ("0.004125", 4125, 6, "$0.004125"),
        ("12.5", 125, 1, "$12.50"),
        ("10", 10, 0, "$10.00"),
        ("1.25000000", 125, 2, "$1.25"),  # zeros past six places are not precision
    ],
)
def test_unit_prices_keep_the_precision_they_were_given(text, units, scale, shown):
    price = UnitPrice.from_decimal(text, "USD")
    assert (price.units, price.scale) == (units, scale)
    assert price.format("en") == shown


def test_unit_prices_are_shown_in_the_locale():
    assert UnitPrice.from_decimal("1234.3350", "EUR").format("de") == "1.234,3350\xa0€"


@pytest.mark.parametrize("text", ["0.0000001", "-1", "1e3"])
def test_unit_prices_beyond_six_decimals_or_negative_are_refused(text):
    with pytest.raises(InvalidAmount):
        UnitPrice.from_decimal(text, "USD")


def test_money_fits_a_bigint_column():
    assert Money(2**63 - 1, "USD").minor == 2**63 - 1
    with pytest.raises(InvalidAmount, match="64-bit"):
        Money(2**63, "USD")
    with pytest.raises(InvalidAmount, match="64-bit"):
        Money(-(2**63), "USD")


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        (lambda: parse_decimal("12x"), "'12x' is not a decimal number"),
        (lambda: parse_decimal("1e5"), "'1e5' is not a plain decimal number"),
        (lambda: parse_decimal("NaN"), "'NaN' is not a plain decimal number"),
        (
            lambda: parse_decimal("10000000000000000"),
            "'10000000000000000' is too large an amount (at most 1,000,000,000,000,000)",
        ),
        (
            lambda: Money.from_decimal(Decimal("1E+16"), "USD"),
            "10,000,000,000,000,000 is too large an amount (at most 1,000,000,000,000,000)",
        ),
        (
            lambda: Money.from_decimal(Decimal("-1E+16"), "USD"),
            "-10,000,000,000,000,000 is beyond any amount (at least -1,000,000,000,000,000)",
        ),
        (lambda: Money.from_decimal(Decimal("Infinity"), "USD"), "Infinity is not a finite"),
        (lambda: Money(2**63, "USD"), "the amount is too large for any money column"),
        (lambda: Money(1, "XYZ"), "unknown currency 'XYZ'"),
        (
            lambda: line_amount(
                Decimal("100000000"), UnitPrice.from_decimal("100000000", "USD"), Money(0, "USD")
            ),
            "quantity x unit price is 10,000,000,000,000,000, too large an amount",
        ),
        (
            lambda: UnitPrice.from_decimal("9999999999999.999999", "USD"),
            "the unit price has too many digits",
        ),
    ],
)
def test_every_money_error_reads_without_python_notation(attempt, expected):
    with pytest.raises(MoneyError) as failure:
        attempt()
    assert str(failure.value).startswith(expected)
    assert "Decimal(" not in str(failure.value)
    assert "E+" not in str(failure.value)
