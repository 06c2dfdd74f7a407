"""Money: integer minor units plus an ISO 4217 currency code.

Amounts enter as decimal strings (CSV, forms) and are rounded half-up once, at that
edge, to the currency's minor unit. The number of minor units comes from ISO 4217 as
Babel's CLDR data knows it (JPY 0, USD 2, KWD 3). Nothing here ever uses a float.
"""

from __future__ import annotations

from collections.abc import Iterable
from copy import copy
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from functools import cache, lru_cache

from babel import Locale
from babel.numbers import (
    NumberPattern,
    format_currency,
    get_currency_precision,
    list_currencies,
)


class MoneyError(ValueError):
    """Base class for every refusal of this module."""


class UnknownCurrency(MoneyError):
    pass


class InvalidAmount(MoneyError):
    pass


class AmountTooLarge(InvalidAmount):
    """A number, but beyond any amount this portal handles (MAX_MAJOR)."""


class CurrencyMismatch(MoneyError):
    pass


# Money columns are BIGINT (64-bit signed) on every database: the largest amount in minor
# units that a column can hold (92,233,720,368,547,758.07 USD).
MAX_MINOR = 2**63 - 1
# ERP price lists give unit prices with up to six decimals (0.004125 USD per unit).
UNIT_PRICE_MAX_DECIMALS = 6


@cache
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


_KNOWN_CURRENCIES = _known_currencies()  # upper-case ISO 4217 codes


def normalize_currency(code: str) -> str:
    """Return the upper-case ISO 4217 code, or raise UnknownCurrency."""
    normalized = (code or "").strip().upper()
    if len(normalized) != 3 or normalized not in _known_currencies():
        raise UnknownCurrency(f"unknown currency {shown_amount(str(code or ''))}")
    return normalized


@cache
def minor_unit_exponent(currency: str) -> int:
    """Digits after the decimal point for this currency (USD 2, JPY 0, KWD 3)."""
    return int(get_currency_precision(normalize_currency(currency)))


# The largest amount anything here accepts: 10**15 major units (a quadrillion). Times
# 1000 (three-decimal currencies) it still fits a 64-bit minor-unit column, and every
# step of the arithmetic stays within Decimal's default 28 digits, so a 32-digit amount
# typed into a form is refused as an amount, not a crash (an InvalidOperation).
MAX_MAJOR_DIGITS = 15
MAX_MAJOR = Decimal(10) ** MAX_MAJOR_DIGITS
MAX_AMOUNT_TEXT = 64  # characters: longer text is not an amount anyone typed


def shown_amount(value: Decimal | str) -> str:
    """A value as an error message shows it: text as given, quoted like the importer's
    other messages ('abc'); a number with thousands separators (10,000,000), never
    Python's notation (Decimal('1E+16')). At most 40 characters."""
    if isinstance(value, Decimal):
        text = f"{value:,f}" if value.is_finite() else str(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _check_magnitude(value: Decimal, shown: Decimal | str) -> None:
    if not value.is_finite():
        raise InvalidAmount(f"{shown_amount(shown)} is not a finite number")
    if value > MAX_MAJOR:
        raise AmountTooLarge(
            f"{shown_amount(shown)} is too large an amount (at most {MAX_MAJOR:,})"
        )
    if value < -MAX_MAJOR:
        raise InvalidAmount(f"{shown_amount(shown)} is beyond any amount (at least {-MAX_MAJOR:,})")


def parse_decimal(text: str) -> Decimal:
    """Parse a plain decimal string ("12", "12.5", "-3.25"); no floats, exponents or NaN,
    nothing beyond ±10**15 (MAX_MAJOR) and no more than 64 characters."""
    cleaned = (text or "").strip()
    if not cleaned:
        raise InvalidAmount("an amount is required")
    if len(cleaned) > MAX_AMOUNT_TEXT:
        raise InvalidAmount("the amount is too long")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise InvalidAmount(f"{shown_amount(cleaned)} is not a decimal number") from None
    if not value.is_finite() or "e" in cleaned.lower():
        raise InvalidAmount(f"{shown_amount(cleaned)} is not a plain decimal number")
    _check_magnitude(value, text)
    return value


def round_half_up(value: Decimal) -> int:
    """Round a decimal number of minor units to an integer, halves away from zero."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True, order=False)
class Money:
    """An amount in a currency's minor units (cents for USD, yen for JPY)."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        minor = self.minor
        if type(minor) is not int and (isinstance(minor, bool) or not isinstance(minor, int)):
            raise InvalidAmount("minor units must be an int")
        if not -MAX_MINOR <= minor <= MAX_MINOR:
            raise AmountTooLarge("the amount is too large for any money column (64-bit)")
        # A page makes a few hundred of these, nearly all from a code already normalized.
        if self.currency not in _KNOWN_CURRENCIES:
            object.__setattr__(self, "currency", normalize_currency(self.currency))

    # --- construction -------------------------------------------------------------
    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def from_decimal(cls, amount: Decimal | str, currency: str) -> Money:
        """From major units ("12.345" USD -> 1235 cents), rounded half-up once."""
        value = parse_decimal(amount) if isinstance(amount, str) else amount
        _check_magnitude(value, amount)
        exponent = minor_unit_exponent(currency)
        return cls(round_half_up(value.scaleb(exponent)), currency)

    @classmethod
    def sum(cls, amounts: Iterable[Money], currency: str) -> Money:
        total = cls.zero(currency)
        for amount in amounts:
            total = total + amount
        return total

    # --- conversion ----------------------------------------------------------------
    @property
    def exponent(self) -> int:
        return minor_unit_exponent(self.currency)

    def to_decimal(self) -> Decimal:
        """Major units as an exact Decimal with the currency's number of places."""
        return (
            Decimal(self.minor).scaleb(-self.exponent).quantize(Decimal(1).scaleb(-self.exponent))
        )

    def format(self, locale: str = "en") -> str:
        """Localized display: `$1,234.50`, `1.234,50 €`, `1 234,50 $US`."""
        return _format_money(self.minor, self.currency, locale)

    @staticmethod
    def format_minor(minor: int, currency: str, locale: str) -> str:
        """`Money(minor, currency).format(locale)` without making the Money: a page that
        formats a few dozen amounts it already holds as integers (cached, as `format`).
        The currency must be a normalized ISO 4217 code; others are checked as Money
        checks them."""
        if currency not in _KNOWN_CURRENCIES:
            currency = normalize_currency(currency)
        return _format_money(minor, currency, locale)

    def __str__(self) -> str:
        return f"{self.to_decimal()} {self.currency}"

    # --- arithmetic -------------------------------------------------------------------
    def _check(self, other: object) -> Money:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(f"{self.currency} and {other.currency} do not mix")
        return other

    def __add__(self, other: object) -> Money:
        return Money(self.minor + self._check(other).minor, self.currency)

    def __sub__(self, other: object) -> Money:
        return Money(self.minor - self._check(other).minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def __lt__(self, other: object) -> bool:
        return self.minor < self._check(other).minor

    def __le__(self, other: object) -> bool:
        return self.minor <= self._check(other).minor

    def __gt__(self, other: object) -> bool:
        return self.minor > self._check(other).minor

    def __ge__(self, other: object) -> bool:
        return self.minor >= self._check(other).minor

    def __bool__(self) -> bool:
        return self.minor != 0

    @property
    def is_positive(self) -> bool:
        return self.minor > 0

    @property
    def is_negative(self) -> bool:
        return self.minor < 0

    def times(self, quantity: Decimal) -> Money:
        """Multiply by a decimal quantity, rounding half-up to a whole minor unit."""
        return Money(round_half_up(Decimal(self.minor) * quantity), self.currency)

    def split(self, parts: int) -> list[Money]:
        """Split into `parts` amounts that differ by at most one minor unit and sum exactly."""
        if parts < 1:
            raise InvalidAmount("split needs at least one part")
        base, remainder = divmod(self.minor, parts)
        return [Money(base + (1 if i < remainder else 0), self.currency) for i in range(parts)]


@dataclass(frozen=True, slots=True)
class UnitPrice:
    """A price per unit exactly as given: `units` x 10**-`scale` major units.

    "0.3350" USD is (3350, 4): the digits the price list gave, trailing zeros included,
    so that it is stored (two integer columns, exact on SQLite and PostgreSQL alike) and
    shown as written. It is never rounded: only a line's amount is (`line_amount`).
    """

    units: int
    scale: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.units, bool) or not isinstance(self.units, int) or self.units < 0:
            raise InvalidAmount("a unit price is a whole number of units, zero or more")
        if not 0 <= self.scale <= UNIT_PRICE_MAX_DECIMALS:
            raise InvalidAmount(
                f"a unit price has at most {UNIT_PRICE_MAX_DECIMALS} decimal places"
            )
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    @classmethod
    def from_decimal(cls, amount: Decimal | str, currency: str) -> UnitPrice:
        """From major units as given ("0.335" -> (335, 3)); refuses negatives and
        more than UNIT_PRICE_MAX_DECIMALS significant decimal places."""
        value = parse_decimal(amount) if isinstance(amount, str) else amount
        if not value.is_finite():
            raise InvalidAmount("a unit price must be finite")
        if value < 0:
            raise InvalidAmount("a unit price must not be negative")
        exponent = int(value.as_tuple().exponent)
        if -exponent > UNIT_PRICE_MAX_DECIMALS:
            # "1.2500000" is 1.25 written long; "0.0000001" is a price we cannot keep.
            value = value.normalize()
            exponent = int(value.as_tuple().exponent)
            if -exponent > UNIT_PRICE_MAX_DECIMALS:
                raise InvalidAmount(
                    f"a unit price has at most {UNIT_PRICE_MAX_DECIMALS} decimal places"
                )
        scale = max(0, -exponent)
        units = int(value.scaleb(scale))
        if units > MAX_MINOR:
            raise AmountTooLarge(
                "the unit price has too many digits (at most 18 in all, decimals included)"
            )
        return cls(units, scale, currency)

    def to_decimal(self) -> Decimal:
        """Major units, with the decimal places it was given ("0.3350")."""
        return Decimal(self.units).scaleb(-self.scale)

    def format(self, locale: str = "en") -> str:
        """Localized, with the decimals given (at least the currency's): `$0.3350`,
        `$12.50`, `0,004125 €`. Babel's own options drop trailing zeros, so the locale's
        currency pattern is applied with that many fraction digits."""
        digits = max(self.scale, minor_unit_exponent(self.currency))
        parsed, pattern = _unit_price_pattern(locale, digits)
        return str(
            pattern.apply(self.to_decimal(), parsed, currency=self.currency, currency_digits=False)
        )

    def __str__(self) -> str:
        return f"{self.to_decimal()} {self.currency}"


# Formatting is a pure function of (amount, currency, locale), and a page shows the same
# few amounts in a few locales over and over: Babel's work (parsing the locale, reading
# its currency pattern, rounding with Decimal) is done once per distinct amount and kept
# for the life of the process. The sizes bound the memory (strings of ~20 characters).
@lru_cache(maxsize=16_384)
def _format_money(minor: int, currency: str, locale: str) -> str:
    amount = Money(minor, currency).to_decimal()
    return str(format_currency(amount, currency, locale=locale, currency_digits=True))


@lru_cache(maxsize=64)
def _unit_price_pattern(locale: str, digits: int) -> tuple[Locale, NumberPattern]:
    """The locale and its currency pattern showing exactly `digits` decimals; cached per
    process (parsing the locale reads CLDR data from disk on every call otherwise)."""
    parsed = Locale.parse(locale)
    pattern = copy(parsed.currency_formats["standard"])
    pattern.frac_prec = (digits, digits)
    return parsed, pattern


def line_amount(quantity: Decimal, unit_price: UnitPrice, tax: Money) -> Money:
    """A line's amount: quantity x unit price, rounded half-up ONCE to the currency's
    minor unit, plus tax (the README's rule; the price is never rounded first).

    USD 3 x 0.335 = 1.005 -> 1.01; 1000 x 0.004 = 4.00; JPY 3 x 0.5 = 1.5 -> 2.
    Raises CurrencyMismatch if the tax is in another currency and InvalidAmount if the
    result does not fit a money column.
    """
    if tax.currency != unit_price.currency:
        raise CurrencyMismatch(f"{unit_price.currency} and {tax.currency} do not mix")
    if quantity <= 0:
        raise InvalidAmount("a quantity must be more than zero")
    # Exact: the product of two decimals needs the sum of their digits, more than the
    # default context's 28 for a large quantity of a six-decimal price.
    with localcontext() as context:
        context.prec = 80
        exact = quantity * unit_price.to_decimal()
        try:
            line = Money.from_decimal(exact, unit_price.currency)
        except AmountTooLarge:
            raise AmountTooLarge(
                f"quantity x unit price is {shown_amount(exact)}, too large an amount"
                f" (at most {MAX_MAJOR:,})"
            ) from None
        return line + tax
