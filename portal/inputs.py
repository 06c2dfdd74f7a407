"""Bounds on what a request may carry, checked where it enters, so that no input reaches
the database, a header or the arithmetic in a shape they cannot hold (a 500).

Each kind of input has one gate here:
- ids in URLs and forms: at most 2**31-1, the largest value of the INTEGER key columns
  on PostgreSQL (`RowIdConverter` replaces Flask's `int` converter for every route);
- redirect targets taken from a request: a path on this site, printable, no CR/LF
  (`local_redirect_target`);
- the Referer header, which Flask-WTF parses on HTTPS (`CSRFProtect` in `extensions`);
- NUL characters anywhere in the path, query or form: PostgreSQL's text cannot hold one
  (psycopg raises DataError), and no person types one (`refuse_nul_characters`);
- the size of a request body: MAX_CONTENT_LENGTH (1 MiB, any form), raised to
  UPLOAD_MAX_CONTENT_LENGTH only for the views marked `accepts_uploads` (dispute
  evidence), before anything reads the body (`allow_uploads_where_accepted`).
- amounts of money a person types (the pay page, dispute lines, a plan's down payment,
  the staff side's credits, refunds, promises and policy limits): one reader,
  `parse_amount_input`, for the way the person's language writes numbers. Machine input
  (CSV, the API, the environment) stays with `portal.money.parse_decimal`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from decimal import Decimal
from enum import StrEnum
from functools import cache
from typing import TypeVar
from urllib.parse import urlsplit

from babel.numbers import (
    NumberFormatError,
    get_currency_symbol,
    get_decimal_symbol,
    get_group_symbol,
    list_currencies,
)
from babel.numbers import parse_decimal as babel_parse_decimal
from flask import Flask, abort
from flask.globals import _cv_request
from flask_babel import gettext as _
from werkzeug.datastructures import MultiDict
from werkzeug.routing import IntegerConverter, Map

from portal.config import SUPPORTED_LOCALES
from portal.i18n import current_locale
from portal.money import (
    MAX_AMOUNT_TEXT,
    MAX_MAJOR,
    AmountTooLarge,
    InvalidAmount,
    Money,
    minor_unit_exponent,
    normalize_currency,
)

# Our keys are INTEGER columns: 32 bits on PostgreSQL (64 on SQLite). A larger id names
# no row, but the databases do not say "not found": PostgreSQL raises "integer out of
# range" on the bound parameter (SQLAlchemy casts it to the column's type), and SQLite's
# driver raises OverflowError beyond 64 bits. Either was a 500.
MAX_ROW_ID = 2**31 - 1
_MAX_ROW_ID_DIGITS = len(str(MAX_ROW_ID))


class RowIdConverter(IntegerConverter):
    """Flask's `<int:…>`, bounded to MAX_ROW_ID unless a route says less: a larger id is
    a 404, never a 500."""

    def __init__(
        self,
        map: Map,
        fixed_digits: int = 0,
        min: int | None = None,
        max: int | None = None,
        signed: bool = False,
    ) -> None:
        bound = MAX_ROW_ID if max is None else max
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=bound, signed=signed)


def row_id(value: object) -> int | None:
    """A form's id field as a usable row id, or None (absent, not a number, out of range)."""
    text = str(value or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_ROW_ID_DIGITS:
        return None
    number = int(text)
    return number if 1 <= number <= MAX_ROW_ID else None


def _has_control_characters(text: str) -> bool:
    return any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in text)


def local_redirect_target(target: str | None) -> str | None:
    """`target` if it is a path on this site that a Location header can carry, else None.

    Refused: another site ("https://…", "//host", "////host", "/\\host", which browsers
    read as a host), and anything with control characters: CR/LF would split the header
    (Werkzeug raises, a 500) and a tab or NUL is read differently by different browsers.
    """
    if not target or len(target) > 2048 or not target.startswith("/"):
        return None
    if target.startswith("//") or "\\" in target or _has_control_characters(target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def _holds_nul(pairs: MultiDict[str, str]) -> bool:
    return any("\x00" in key or "\x00" in value for key, value in pairs.items(multi=True))


def refuse_nul_characters() -> None:
    """400 for a request whose path, query or form holds a NUL, before any view reads it."""
    req = _cv_request.get().request  # as `request`, without the proxy on every read
    if "\x00" in req.path or (req.query_string and _holds_nul(req.args)):
        abort(400)
    if req.method in ("POST", "PUT", "PATCH") and _holds_nul(req.form):
        abort(400)


View = TypeVar("View", bound=Callable[..., object])


def accepts_uploads(view: View) -> View:
    """Mark a view whose form carries files: its request may be as large as
    UPLOAD_MAX_CONTENT_LENGTH; every other request stops at MAX_CONTENT_LENGTH (a 413).
    Put it right under the route decorator (the function the route registers)."""
    view.accepts_uploads = True  # type: ignore[attr-defined]
    return view


def allow_uploads_where_accepted() -> None:
    """Before anything reads the body (the NUL gate, CSRF, the view): raise this
    request's size limit when its view accepts uploads (Flask 3.1 per-request limit)."""
    ctx = _cv_request.get()  # `request` and `current_app`, without their proxies
    view = ctx.app.view_functions.get(ctx.request.endpoint or "")
    if view is not None and getattr(view, "accepts_uploads", False):
        ctx.request.max_content_length = ctx.app.config["UPLOAD_MAX_CONTENT_LENGTH"]


def check_inputs() -> None:
    """The request-wide gates, in one hook: the size limit first (before anything reads
    the body), then NUL characters."""
    allow_uploads_where_accepted()
    refuse_nul_characters()


def init_inputs(app: Flask) -> None:
    """Route ids bounded, and the request-wide gates run before anything else."""
    app.url_map.converters["int"] = RowIdConverter
    app.before_request(check_inputs)


# --- amounts typed by people ---------------------------------------------------------------
class AmountProblem(StrEnum):
    """Why a typed amount was refused (`AmountInputError.problem`)."""

    REQUIRED = "required"  # nothing typed
    NOT_A_NUMBER = "not_a_number"  # letters, 1e3, NaN, a misplaced separator, two decimal marks
    OTHER_CURRENCY = "other_currency"  # "€12" for a USD amount
    AMBIGUOUS = "ambiguous"  # "1.000" for KWD: one dinar or a thousand
    TOO_MANY_DECIMALS = "too_many_decimals"  # "1.005" USD
    NEGATIVE = "negative"
    ZERO = "zero"  # where zero is not allowed
    TOO_LARGE = "too_large"  # beyond MAX_MAJOR (`AmountTooLarge`)


class AmountInputError(InvalidAmount):
    """A typed amount refused: `problem` says why, `message` says it in the request's
    language (ready to show next to the field)."""

    def __init__(self, problem: AmountProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message


class AmountInputTooLarge(AmountInputError, AmountTooLarge):
    """A number, beyond any amount this portal handles (callers that say "at most what
    you owe" catch `AmountTooLarge`)."""


# A space is never a decimal mark: in every language it may group thousands (French
# writes a narrow no-break space, U+202F; older data and keyboards give U+00A0 or U+0020).
GROUPING_SPACES = " \u00a0\u202f"
_MINUS_SIGNS = "-\u2212"  # hyphen-minus, and the minus sign a pasted total may carry
# At the ends of a pasted amount, dropped with the spaces (as the browser's trim() does
# the first): a byte-order mark, zero-width spaces and joiners, direction marks.
_EDGES = re.compile(
    r"^[\s\ufeff\u200b\u200c\u200d\u200e\u200f\u2060]+|[\s\ufeff\u200b\u200c\u200d\u200e\u200f\u2060]+$"
)
_TYPED_NUMBER = re.compile(r"[0-9.,\u0020\u00a0\u202f]+")
_GROUPED = re.compile(r"[1-9][0-9]{0,2}(?:([.,]|[\u0020\u00a0\u202f])[0-9]{3})+")


@cache
def _marks(locale: str) -> tuple[str, str, str]:
    """(decimal mark, the other of "." and ",", Babel's grouping symbol) for `locale`."""
    decimal = str(get_decimal_symbol(locale))
    other = "," if decimal == "." else "."
    return decimal, other, str(get_group_symbol(locale))


@cache
def _currency_signs(currency: str, locale: str) -> tuple[str, ...]:
    """What a pasted total may carry for `currency` on a page in `locale`, longest first:
    its ISO code; its symbol as that language and English write it ("$", "A$", "€"); and
    that symbol's sign with the first one or two letters of the code before or after it
    (never the bare sign where it is not the symbol: "$" alone is not a CAD amount),
    as CLDR writes a country's dollar or pound in other languages ("US$" es, "$US" fr,
    "AU$" de, "£GB" fr). Derived, not read from every language: CLDR's data for a language
    is ~1 MB per worker, held only for the languages its pages are read in."""
    signs = {currency}
    for code in {locale, "en"}:
        symbol = str(get_currency_symbol(currency, code))
        signs.add(symbol)
        sign = "".join(char for char in symbol if not char.isalpha())  # "Kč", "CHF": none
        if sign:
            # not the bare sign unless it is the symbol: "$" alone is another currency's
            signs |= {currency[:1] + sign, currency[:2] + sign, sign + currency[:2]}
    return tuple(sorted(signs, key=len, reverse=True))


def _refuse(problem: AmountProblem, message: str) -> AmountInputError:
    if problem is AmountProblem.TOO_LARGE:
        return AmountInputTooLarge(problem, message)
    return AmountInputError(problem, message)


def _not_a_number() -> AmountInputError:
    return _refuse(
        AmountProblem.NOT_A_NUMBER, _("Please enter the amount as a number, for example 120.50.")
    )


def _without_currency(text: str, currency: str, locale: str) -> str:
    """`text` without one sign of `currency` (`_currency_signs`) at its start or end
    ("$1,062.75", "1.062,75 €", "1 062,75 $US"), else as given; AmountInputError when what
    is left still names a currency (another one: "€12" or "12 EUR" for USD)."""
    folded = text.casefold()
    for sign in _currency_signs(currency, locale):
        if folded.startswith(sign.casefold()):
            text = text[len(sign) :].strip()
            break
        if folded.endswith(sign.casefold()):
            text = text[: -len(sign)].strip()
            break
    if any(unicodedata.category(char) == "Sc" for char in text) or any(
        code.upper() in _KNOWN_CODES for code in _LETTER_TRIPLES.findall(text)
    ):
        raise _refuse(
            AmountProblem.OTHER_CURRENCY,
            _(
                "This amount is in %(currency)s: please enter it without another currency.",
                currency=currency,
            ),
        )
    return text


_LETTER_TRIPLES = re.compile(r"(?<![A-Za-z])[A-Za-z]{3}(?![A-Za-z])")
_KNOWN_CODES = frozenset(list_currencies())


def _ambiguous(body: str, lead: str, after: str, currency: str, locale: str) -> AmountInputError:
    small = Money.from_decimal(Decimal(f"{lead}.{after}"), currency)
    large = Money.from_decimal(Decimal(lead + after), currency)
    return _refuse(
        AmountProblem.AMBIGUOUS,
        _(
            "“%(text)s” could mean %(small)s or %(large)s. Please write the amount with "
            "its decimals.",
            text=body,
            small=small.format(locale),
            large=large.format(locale),
        ),
    )


def _split_marks(body: str, currency: str, locale: str) -> tuple[str, str]:
    """(integer part with its grouping marks, fraction digits) of `body` (ASCII digits,
    "." "," and spaces only), by the rule that `parse_amount_input` states."""
    decimal, other, _group = _marks(locale)
    has_space = any(char in GROUPING_SPACES for char in body)
    decimals, others = body.count(decimal), body.count(other)
    mark = ""  # the decimal mark; none: a whole number
    if decimals and others:  # both: the last one is the decimal mark, once
        mark = decimal if body.rindex(decimal) > body.rindex(other) else other
        if body.count(mark) != 1 or has_space:
            raise _not_a_number()
    elif decimals:  # the locale's own decimal mark never groups
        if decimals > 1:
            raise _not_a_number()
        lead, _sep, after = body.partition(decimal)
        exponent = minor_unit_exponent(currency)
        if (
            not has_space
            and len(after) == 3
            and _GROUPED.fullmatch(body)
            and exponent < 3
            and not after[exponent:].strip("0")  # "1.005" USD: not a dollar amount at all
        ):  # "1.000" en USD: one dollar, or a thousand as other languages write it
            raise _ambiguous(body, lead, after, currency, locale)
        mark = decimal
    elif others == 1:
        lead, _sep, after = body.partition(other)
        grouping = not has_space and len(after) == 3 and _GROUPED.fullmatch(body)
        if grouping and minor_unit_exponent(currency) >= 3:
            raise _ambiguous(body, lead, after, currency, locale)
        if not grouping:  # "1234.56", "12,5", "1 000.50": the other convention's mark
            mark = other
    integer, _sep, fraction = body.partition(mark) if mark else (body, "", "")
    if not any(char.isdigit() for char in integer + fraction):
        raise _not_a_number()
    if fraction and not fraction.isdigit():
        raise _not_a_number()
    if integer and not integer.isdigit():
        kinds = {char for char in integer if not char.isdigit()}
        if not _GROUPED.fullmatch(integer) or (
            len(kinds) > 1 and not kinds <= set(GROUPING_SPACES)
        ):
            raise _not_a_number()  # "1,00,0", "10 00", "1.000 000": not one mark, in threes
    return integer, fraction


def parse_amount_input(
    text: str | None, currency: str, locale: str, *, allow_zero: bool = False
) -> Money:
    """An amount a person typed in a form, in major units of `currency`, read the way
    `locale` ("en", "es", "fr", "de") writes numbers; returned as Money (minor units),
    never through a float and never rounded. Raises AmountInputError (a MoneyError) whose
    `problem` (AmountProblem) says why and `message` says it in the request's language;
    AmountInputTooLarge (also an AmountTooLarge) beyond 10**15 major units.

    The rule, for a locale whose decimal mark is D (en ".", es/fr/de ",") and whose other
    mark is O (en ",", es/fr/de "."):
    - Spaces (U+0020, no-break U+00A0, narrow no-break U+202F) only ever group thousands,
      in every locale; O groups thousands too (French typists write "1.000" as well).
    - D alone is always the decimal mark, at most once (digits past the currency's
      decimals may only be zeros: "1.50" en USD, "1,5" de EUR); but D followed by exactly
      three digits after one to three leading digits ("1.000" en USD, "1,500" de EUR) is
      refused as AMBIGUOUS for a currency with fewer than three decimals: the other
      languages write a thousand that way, and a guess would be 1000 times off.
    - With both marks, the last is the decimal mark and the other groups: "1,000.50" and
      "1.000,50" are 1000.50 in every locale.
    - O alone, once, followed by exactly three digits after one to three leading digits
      ("1,000" en, "1.000" de/fr/es) groups thousands when the currency has fewer than three
      decimals (USD, EUR, JPY: no one writes their amounts with three); for a currency with
      three (KWD) it is one unit or a thousand, and is refused as AMBIGUOUS rather than
      guessed. Anywhere else O alone once is a decimal mark, the plain way ("1234.56" in
      de, "12,50" in en).
    - Grouping must be in threes ("1,00,0" and "10 00" are refused) with one kind of mark.
    - Surrounding spaces and one sign of `currency` at the start or end, its ISO code or
      its symbol as `locale` or English writes it ("$1,062.75", "1.062,75 €",
      "1 062,75 $US" in fr, "USD 12") are dropped; another currency's sign or code is
      refused (OTHER_CURRENCY), never converted.
    - Refused: nothing typed (REQUIRED), letters, exponents ("1e3"), NaN, Infinity,
      digits other than 0-9, a "+" (NOT_A_NUMBER), a minus sign (NEGATIVE), zero unless
      `allow_zero` (ZERO), more decimals than the currency has (TOO_MANY_DECIMALS: "1.005"
      USD, "12,5" JPY), more than 64 characters (NOT_A_NUMBER), beyond 10**15 (TOO_LARGE).

    en USD "1,000.50" -> 100050; de EUR "1.000,50" -> 100050; fr EUR "1 000,50" -> 100050;
    de EUR "1,000" and en USD "1.000" -> AMBIGUOUS; en USD "1.50" -> 150; en JPY "1,000"
    -> 1000; de KWD "1.234,567" -> 1234567; de KWD "1.000" -> AMBIGUOUS; en KWD "1.000"
    -> 1000 (three decimals: the decimal mark).

    portal/static/js/portal.js (`readAmount`) reads the pay page's amount by the same rule
    for its live preview; change both together.
    """
    currency = normalize_currency(currency)
    cleaned = _EDGES.sub("", text or "")
    if not cleaned:
        raise _refuse(AmountProblem.REQUIRED, _("Please enter an amount."))
    if len(cleaned) > MAX_AMOUNT_TEXT:
        raise _refuse(AmountProblem.NOT_A_NUMBER, _("Please enter a valid amount."))
    negative = cleaned[0] in _MINUS_SIGNS
    body = _without_currency(cleaned[1:].strip() if negative else cleaned, currency, locale)
    if not negative and body[:1] in _MINUS_SIGNS:  # "$-5", "US$ −5"
        negative, body = True, body[1:].strip()
    if not body or not _TYPED_NUMBER.fullmatch(body):
        raise _not_a_number()
    exponent = minor_unit_exponent(currency)
    integer, fraction = _split_marks(body, currency, locale)
    decimal, _other, group = _marks(locale)
    # Written again as the locale writes it, and read by Babel's strict parser, which
    # checks the grouping once more against the locale's own formatting.
    digits = integer
    for char in "., " + GROUPING_SPACES:
        digits = digits.replace(char, group)
    digits = digits or "0"
    written = digits + (decimal + fraction if fraction else "")
    try:
        value = babel_parse_decimal(written, locale, strict=True)
    except NumberFormatError:
        raise _not_a_number() from None
    if not value.is_finite():
        raise _not_a_number()
    if value > MAX_MAJOR:
        if negative:
            raise _refuse(AmountProblem.NOT_A_NUMBER, _("Please enter a valid amount."))
        raise _refuse(AmountProblem.TOO_LARGE, _("This amount is too large."))
    if fraction[exponent:].strip("0"):
        if exponent == 0:
            raise _refuse(
                AmountProblem.TOO_MANY_DECIMALS, _("Please enter the amount without decimals.")
            )
        raise _refuse(
            AmountProblem.TOO_MANY_DECIMALS,
            _("Please enter the amount with at most %(digits)d decimals.", digits=exponent),
        )
    if negative and value:
        if allow_zero:
            raise _refuse(AmountProblem.NEGATIVE, _("The amount cannot be below zero."))
        raise _refuse(AmountProblem.NEGATIVE, _("Please enter an amount greater than zero."))
    if not value and not allow_zero:
        raise _refuse(AmountProblem.ZERO, _("Please enter an amount greater than zero."))
    return Money.from_decimal(value, currency)


# The hidden field every form with an amount carries: the language the form was shown in.
SHOWN_IN_FIELD = "shown_in"


def form_language() -> str:
    """The language the posted form was shown in (its hidden `shown_in` field, one of
    ours), else the request's: an amount is read as the page it was typed on writes
    numbers. The request's language may have changed in between, in another tab or on
    another device (the choice is stored on the customer): "1.000", previewed as $1.00 on
    an English page, was read as 1,000.00 after a switch to German. A forged value only
    changes how its sender's own amount is read, and the next step shows that amount."""
    request_ctx = _cv_request.get(None)
    if request_ctx is not None:
        shown_in = request_ctx.request.form.get(SHOWN_IN_FIELD)
        if shown_in in SUPPORTED_LOCALES:
            return str(shown_in)
    return current_locale()


@cache
def amount_reading(currency: str, locale: str) -> tuple[str, str]:
    """What the pay page's script needs to read an amount as `parse_amount_input` does:
    (the locale's decimal mark, the JSON list of `currency`'s signs a pasted total may
    carry), for the form's data-decimal and data-signs attributes."""
    decimal, _other, _group = _marks(locale)
    return decimal, json.dumps(list(_currency_signs(normalize_currency(currency), locale)))


def amount_input_text(amount: Money, locale: str) -> str:
    """`amount` as a form field proposes it: the locale's decimal mark, no grouping, all
    the currency's decimals ("1062.75" en, "1062,75" de, "1000" JPY, "100,000" KWD de):
    `parse_amount_input` reads it back in that locale as the same amount, never as
    ambiguous (the locale's own decimal mark alone is always decimal)."""
    text = str(amount.to_decimal())
    decimal, _other, _group = _marks(locale)
    return text.replace(".", decimal)
