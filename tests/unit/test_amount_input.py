"""`parse_amount_input`: amounts as people type them in en, es, fr and de, to the exact
minor unit, and every refusal with its reason (no float, no guess, no exception but
AmountInputError)."""

from __future__ import annotations

import pytest

from portal.inputs import (
    AmountInputError,
    AmountInputTooLarge,
    AmountProblem,
    amount_input_text,
    parse_amount_input,
)
from portal.money import AmountTooLarge, Money

NNBSP, NBSP = "\u202f", "\u00a0"


@pytest.mark.parametrize(
    ("text", "currency", "locale", "minor"),
    [
        # the reported inputs: the total as the page shows it, grouped
        ("1,000.50", "USD", "en", 100050),
        ("1.000,50", "EUR", "de", 100050),
        ("1.000,50", "EUR", "es", 100050),
        ("1 000,50", "EUR", "fr", 100050),
        (f"1{NBSP}000,50", "EUR", "fr", 100050),
        (f"1{NNBSP}000,50", "EUR", "fr", 100050),
        # and ungrouped, as before
        ("1000.50", "USD", "en", 100050),
        ("1000,50", "EUR", "de", 100050),
        ("1000,50", "EUR", "fr", 100050),
        ("12,34", "USD", "en", 1234),  # a decimal comma, even in English (no group of 3)
        ("1234.56", "EUR", "de", 123456),  # a decimal point, as a phone keypad gives it
        ("1 000.50", "EUR", "fr", 100050),  # spaces group: the point is the decimal mark
        (".50", "USD", "en", 50),
        ("12.", "USD", "en", 1200),
        ("0,500", "USD", "en", 50),  # "0" leads no group of three: a decimal comma
        # the locale's own decimal mark alone is a decimal mark
        ("1,5", "EUR", "de", 150),
        ("1,50", "EUR", "es", 150),
        ("1.50", "USD", "en", 150),
        ("1.000", "KWD", "en", 1000),  # three decimals are KWD's own
        ("\ufeff12", "USD", "en", 1200),  # a pasted byte-order mark, as trim() drops it
        ("12\u200b", "USD", "en", 1200),  # a zero-width space at the end
        ("\u200f 12,50 \u200e", "EUR", "de", 1250),  # direction marks around spaces
        # the other mark before three digits groups thousands when the currency has
        # fewer than three decimals
        ("1,000", "USD", "en", 100000),
        ("1.000", "EUR", "de", 100000),
        ("1.000", "EUR", "es", 100000),
        ("1.000", "EUR", "fr", 100000),  # French typists group with a point too
        ("1,000", "JPY", "en", 1000),
        ("1.000", "JPY", "de", 1000),
        ("1,234,567", "JPY", "en", 1234567),
        ("1.000.000", "EUR", "de", 100000000),
        (f"1{NNBSP}234{NNBSP}567", "JPY", "fr", 1234567),
        # both marks: the last is the decimal mark, in any locale
        ("1.234,567", "KWD", "de", 1234567),
        ("1,234.567", "KWD", "en", 1234567),
        ("1,234.567", "KWD", "de", 1234567),
        ("1.000,50", "USD", "en", 100050),
        ("1,000,000.25", "USD", "en", 100000025),
        # trailing zeros past the currency's decimals change nothing
        ("33.33", "USD", "en", 3333),
        ("12,0", "JPY", "de", 12),
        # a pasted total: surrounding spaces and this currency's own sign or code
        ("  1,062.75 ", "USD", "en", 106275),
        ("$1,062.75", "USD", "en", 106275),
        ("US$1,062.75", "USD", "en", 106275),
        ("1.062,75 €", "EUR", "de", 106275),
        (f"1.062,75{NBSP}€", "EUR", "de", 106275),
        ("1.062,75 US$", "USD", "es", 106275),
        (f"1{NNBSP}062,75{NBSP}$US", "USD", "fr", 106275),
        ("1 062,75 US$", "USD", "fr", 106275),
        ("USD 12", "USD", "en", 1200),
        ("12 usd", "USD", "en", 1200),
        ("¥1,000", "JPY", "en", 1000),
        ("1.234,567 KWD", "KWD", "de", 1234567),
        # the largest amount there is
        ("1" + "0" * 15, "KWD", "en", 10**18),
        ("1.000.000.000.000.000", "EUR", "de", 10**17),
    ],
)
def test_an_amount_is_read_as_the_locale_writes_it(text, currency, locale, minor):
    assert parse_amount_input(text, currency, locale) == Money(minor, currency)


@pytest.mark.parametrize(
    ("text", "currency", "locale", "problem"),
    [
        ("", "USD", "en", AmountProblem.REQUIRED),
        ("   ", "USD", "en", AmountProblem.REQUIRED),
        (None, "USD", "en", AmountProblem.REQUIRED),
        # one unit or a thousand, for a currency that writes three decimals
        ("1.000", "KWD", "de", AmountProblem.AMBIGUOUS),
        ("1,000", "KWD", "en", AmountProblem.AMBIGUOUS),
        ("1.500", "KWD", "fr", AmountProblem.AMBIGUOUS),
        # the locale's own decimal mark before three digits, for a currency with fewer
        # decimals: one unit, or a thousand as the other languages write it
        ("1.000", "USD", "en", AmountProblem.AMBIGUOUS),
        ("1.500", "USD", "en", AmountProblem.AMBIGUOUS),
        ("33.330", "USD", "en", AmountProblem.AMBIGUOUS),
        ("1,000", "EUR", "de", AmountProblem.AMBIGUOUS),
        ("1,000", "EUR", "es", AmountProblem.AMBIGUOUS),
        ("1,000", "EUR", "fr", AmountProblem.AMBIGUOUS),
        ("1,000", "JPY", "de", AmountProblem.AMBIGUOUS),
        ("1.005", "USD", "en", AmountProblem.TOO_MANY_DECIMALS),
        ("1,005", "EUR", "de", AmountProblem.TOO_MANY_DECIMALS),
        ("1,234", "EUR", "de", AmountProblem.TOO_MANY_DECIMALS),  # 1,234 €: never 1.234 €
        ("12,5", "JPY", "de", AmountProblem.TOO_MANY_DECIMALS),
        ("1.0005", "KWD", "en", AmountProblem.TOO_MANY_DECIMALS),
        # misplaced grouping (Babel's strict reading), two decimal marks, mixed grouping
        ("1,00,0", "USD", "en", AmountProblem.NOT_A_NUMBER),
        ("1,000,00", "USD", "en", AmountProblem.NOT_A_NUMBER),
        ("1.00.000", "EUR", "de", AmountProblem.NOT_A_NUMBER),
        ("10 00", "EUR", "fr", AmountProblem.NOT_A_NUMBER),
        ("1,000,000", "EUR", "de", AmountProblem.NOT_A_NUMBER),  # de's decimal mark twice
        ("1.000 000", "EUR", "fr", AmountProblem.NOT_A_NUMBER),
        ("1.000,000.5", "USD", "en", AmountProblem.NOT_A_NUMBER),
        ("1 000.000,50", "EUR", "fr", AmountProblem.NOT_A_NUMBER),
        ("0.001.000", "EUR", "de", AmountProblem.NOT_A_NUMBER),
        # no number
        ("abc", "USD", "en", AmountProblem.NOT_A_NUMBER),
        ("ten dollars", "USD", "en", AmountProblem.NOT_A_NUMBER),
        ("1e3", "USD", "en", AmountProblem.NOT_A_NUMBER),
        ("1E3", "EUR", "de", AmountProblem.NOT_A_NUMBER),
        ("NaN", "USD", "en", AmountProblem.NOT_A_NUMBER),
        ("Infinity", "USD", "en", AmountProblem.NOT_A_NUMBER),
        ("-Infinity", "USD", "en", AmountProblem.NOT_A_NUMBER),
        ("1_000", "USD", "en", AmountProblem.NOT_A_NUMBER),  # Python's Decimal takes it
        ("１２", "USD", "en", AmountProblem.NOT_A_NUMBER),  # fullwidth digits
        ("١٢", "USD", "en", AmountProblem.NOT_A_NUMBER),  # Arabic-Indic digits
        ("+5", "USD", "en", AmountProblem.NOT_A_NUMBER),
        ("5-", "USD", "en", AmountProblem.NOT_A_NUMBER),
        (".", "USD", "en", AmountProblem.NOT_A_NUMBER),
        (",", "EUR", "de", AmountProblem.NOT_A_NUMBER),
        ("$", "USD", "en", AmountProblem.NOT_A_NUMBER),
        ("12\t50", "USD", "en", AmountProblem.NOT_A_NUMBER),
        ("1" * 65, "USD", "en", AmountProblem.NOT_A_NUMBER),
        # another currency's sign or code: never converted, never dropped
        ("€12", "USD", "en", AmountProblem.OTHER_CURRENCY),
        ("12 EUR", "USD", "en", AmountProblem.OTHER_CURRENCY),
        ("$12", "EUR", "de", AmountProblem.OTHER_CURRENCY),
        ("12 £", "EUR", "fr", AmountProblem.OTHER_CURRENCY),
        ("$12", "CAD", "en", AmountProblem.OTHER_CURRENCY),  # CA$ is Canada's
        ("$$12", "USD", "en", AmountProblem.OTHER_CURRENCY),
        # signs and size
        ("-5", "USD", "en", AmountProblem.NEGATIVE),
        ("\u22125", "USD", "en", AmountProblem.NEGATIVE),
        ("-$5", "USD", "en", AmountProblem.NEGATIVE),
        ("$-5", "USD", "en", AmountProblem.NEGATIVE),
        ("-1.000,50 €", "EUR", "de", AmountProblem.NEGATIVE),
        ("0", "USD", "en", AmountProblem.ZERO),
        ("0,00", "EUR", "de", AmountProblem.ZERO),
        ("-0", "USD", "en", AmountProblem.ZERO),
        ("1" + "0" * 15 + ",01", "EUR", "de", AmountProblem.TOO_LARGE),
        ("9" * 32, "USD", "en", AmountProblem.TOO_LARGE),
        ("9.999.999.999.999.999.999", "EUR", "de", AmountProblem.TOO_LARGE),
        ("-" + "9" * 31, "USD", "en", AmountProblem.NOT_A_NUMBER),  # beyond any amount
    ],
)
def test_what_is_not_an_amount_is_refused_with_its_reason(text, currency, locale, problem):
    with pytest.raises(AmountInputError) as refused:
        parse_amount_input(text, currency, locale)
    assert refused.value.problem is problem
    assert refused.value.message  # a sentence to show next to the field


def test_zero_is_an_amount_where_the_form_allows_it_and_below_zero_never():
    assert parse_amount_input("0", "USD", "en", allow_zero=True) == Money(0, "USD")
    assert parse_amount_input("0,00", "EUR", "de", allow_zero=True) == Money(0, "EUR")
    with pytest.raises(AmountInputError) as refused:
        parse_amount_input("-1", "USD", "en", allow_zero=True)
    assert refused.value.problem is AmountProblem.NEGATIVE
    assert refused.value.message == "The amount cannot be below zero."


def test_too_large_is_an_amount_too_large_for_the_callers_that_say_at_most_what_is_owed():
    with pytest.raises(AmountTooLarge) as refused:
        parse_amount_input("9" * 20, "USD", "en")
    assert isinstance(refused.value, AmountInputTooLarge)


def test_the_messages_say_what_to_do():
    def message(text: str, currency: str, locale: str) -> str:
        with pytest.raises(AmountInputError) as refused:
            parse_amount_input(text, currency, locale)
        return refused.value.message

    assert message("1,000", "KWD", "en") == (
        "“1,000” could mean KWD1.000 or KWD1,000.000. Please write the amount with its decimals."
    )
    assert message("1.000", "USD", "en") == (
        "“1.000” could mean $1.00 or $1,000.00. Please write the amount with its decimals."
    )
    assert message("1.005", "USD", "en") == "Please enter the amount with at most 2 decimals."
    assert message("1,5", "JPY", "en") == "Please enter the amount without decimals."
    assert message("€5", "USD", "en") == (
        "This amount is in USD: please enter it without another currency."
    )
    assert message("abc", "USD", "en") == (
        "Please enter the amount as a number, for example 120.50."
    )


@pytest.mark.parametrize("locale", ["en", "es", "fr", "de"])
@pytest.mark.parametrize(
    "amount",
    [
        Money(106275, "USD"),
        Money(100000, "EUR"),
        Money(5, "USD"),
        Money(1000, "JPY"),
        Money(100000, "KWD"),  # 100.000 KWD: ambiguous if written with a point in de
        Money(1234567, "KWD"),
        Money(10**17, "EUR"),
    ],
)
def test_a_proposed_amount_reads_back_as_itself_in_every_language(amount, locale):
    text = amount_input_text(amount, locale)
    assert parse_amount_input(text, amount.currency, locale) == amount
    assert "e" not in text.lower()


def test_babel_formats_read_back_as_the_same_amount():
    """What the pages show (Babel's format), pasted into the field, is the same amount."""
    for locale in ("en", "es", "fr", "de"):
        for minor, currency in (
            (106275, "USD"),
            (123456789, "EUR"),
            (1234567, "JPY"),
            (1234567, "KWD"),
            (100000, "KWD"),
        ):
            shown = Money(minor, currency).format(locale)
            assert parse_amount_input(shown, currency, locale) == Money(minor, currency), shown
