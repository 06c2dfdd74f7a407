"""Locale choice and the template filters that format money and dates with Babel."""

from __future__ import annotations

from datetime import date, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import flask_babel
from babel import Locale
from babel import dates as babel_dates
from babel.support import NullTranslations
from flask import Flask, current_app, g, has_request_context, request, session
from flask_babel import (
    Babel,
    format_date,
    format_datetime,
    format_decimal,
    get_locale,
    get_timezone,
    get_translations,
    gettext,
)

from portal.config import SUPPORTED_LOCALES
from portal.money import Money, UnitPrice

LANGUAGE_NAMES = {"en": "English", "es": "Español", "fr": "Français", "de": "Deutsch"}


def supported_locale(value: str | None) -> str | None:
    """A stored locale ("es_MX", "DE") as one of ours ("es", "de"), or None."""
    language = (value or "").split("_")[0].lower()
    return language if language in SUPPORTED_LOCALES else None


def select_locale() -> str:
    """The switcher's choice, else the customer's stored locale, else Accept-Language.

    Outside a request (the worker, the CLI) English, unless the caller forces a locale.
    """
    if not has_request_context():
        return "en"
    chosen = session.get("locale")
    if chosen in SUPPORTED_LOCALES:
        return str(chosen)
    from portal.access.sessions import signed_in_customer

    customer = signed_in_customer()
    if customer is not None:
        stored = supported_locale(customer.locale)
        if stored:
            return stored
    return request.accept_languages.best_match(SUPPORTED_LOCALES) or "en"


def current_locale() -> str:
    """The request's language ("en", "es"…); every amount and date on a page asks for it,
    so the locale Flask-Babel keeps in `g` is read directly once it has been chosen.

    Not chosen yet is either no attribute or None: a `force_locale` block (an email in
    the customer's language) run before anything on the request asked for the locale puts
    back None when it ends, and the request's locale is then still to be chosen (reading
    None as English wrote "$40.00" into a Spanish sentence)."""
    try:
        locale = g._flask_babel.babel_locale
    except (AttributeError, RuntimeError):  # not chosen yet; no app context
        locale = None
    if locale is None:  # also after force_locale restored a locale not yet chosen
        locale = get_locale()
    return _locale_name(locale) if locale is not None else "en"


@lru_cache(maxsize=64)
def _locale_name(locale: Locale) -> str:
    return str(locale) or "en"


def money_filter(value: Money | UnitPrice | None) -> str:
    if value is None:
        return ""
    return value.format(current_locale())


def date_filter(value: date | datetime | None, format: str = "medium") -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):  # shown in the request's time zone: Flask-Babel's rebase
        return str(format_date(value, format=format))
    return _format_day(value, format, current_locale())


@lru_cache(maxsize=16_384)
def _format_day(value: date, format: str, locale: str) -> str:
    """A calendar date as CLDR writes it in `locale` ("medium": "Nov 29, 2026",
    "29 nov. 2026"): a pure function of its arguments, so each distinct one is formatted
    once per process (the same few dates fill every table)."""
    return str(babel_dates.format_date(value, format, locale=_locale(locale)))


def datetime_filter(value: datetime | None, format: str | None = None) -> str:
    """Flask-Babel's `datetimeformat` (the moment in the request's time zone, in its
    locale; "short": "11/29/26, 11:30 PM"), with each distinct (moment, pattern, locale,
    zone) formatted once per process: the staff customer page shows 50 timestamps, and
    formatting each one through Babel cost more than a tenth of the page's time."""
    if value is None:
        return str(format_datetime(value, format))  # "now", as Flask-Babel does
    pattern = flask_babel._get_format("datetime", format)  # the app's date_formats
    return _format_moment(value, pattern, get_locale(), get_timezone())


def datetime_in_zone(value: datetime, zone: tzinfo, format: str | None = "short") -> str:
    """`datetime_filter` in a given time zone (a customer's own, not the request's):
    "11/29/26, 9:00 PM" for 02:00 UTC in New York."""
    pattern = flask_babel._get_format("datetime", format)
    return _format_moment(value, pattern, get_locale(), zone)


@lru_cache(maxsize=16_384)
def _format_moment(value: datetime, pattern: str | None, locale: Locale, zone: tzinfo) -> str:
    return str(babel_dates.format_datetime(value, pattern, tzinfo=zone, locale=locale))


@lru_cache(maxsize=64)
def _locale(identifier: str) -> Locale:
    return Locale.parse(identifier)


def request_translations() -> NullTranslations:
    """This request's catalog, looked up once per request and locale instead of on every
    message (Flask-Babel's `get_translations` walks its context and domain on each call;
    a page shows about a hundred messages). Keyed on the locale object, so a block under
    `force_locale` (a PDF or an email in the customer's language) gets its own catalog.

    The quick path reads the two attributes Flask-Babel and this function keep in `g`
    (`g._flask_babel.babel_locale`, set once the locale is chosen), not `get_locale()`,
    which goes through half a dozen context lookups per message."""
    try:
        locale, translations = g._portal_translations
        if locale is g._flask_babel.babel_locale:
            return translations  # type: ignore[no-any-return]
    except (AttributeError, RuntimeError):  # not cached yet; no app context
        pass
    if not has_request_context():
        return get_translations()
    locale = get_locale()
    translations = get_translations()
    g._portal_translations = (locale, translations)
    return translations


def number_filter(value: object) -> str:
    return str(format_decimal(value))


def card_brand_label(brand: str | None) -> str:
    """ "Visa", "Mastercard"; the translated word "Card" when the brand is not known."""
    if not brand or brand.lower() in ("card", "unknown"):
        return str(gettext("Card"))
    return brand.replace("_", " ").title()


def creditor_zone() -> ZoneInfo:
    return zone_or_default(None)


def zone_or_default(name: str | None) -> ZoneInfo:
    for candidate in (name, current_app.config["CREDITOR_TIMEZONE"], "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def init_i18n(app: Flask, babel: Babel) -> None:
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.filters["money"] = money_filter
    app.jinja_env.filters["date"] = date_filter
    app.jinja_env.filters["datetimeformat"] = datetime_filter
    app.jinja_env.filters["number"] = number_filter
    app.jinja_env.filters["card_brand"] = card_brand_label
    app.jinja_env.add_extension("jinja2.ext.i18n")
    # The templates' `_`, `gettext`, `ngettext`: Flask-Babel's own, with the catalog
    # found once per request (request_translations). Same newstyle semantics (escaping,
    # %(name)s placeholders).
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda s: request_translations().ugettext(s),
        ngettext=lambda s, p, n: request_translations().ungettext(s, p, n),
        newstyle=True,
        pgettext=lambda c, s: request_translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: request_translations().unpgettext(c, s, p, n),
    )

    @app.context_processor
    def inject_languages() -> dict[str, object]:
        return {
            "languages": [(code, LANGUAGE_NAMES[code]) for code in SUPPORTED_LOCALES],
            "current_locale": current_locale(),
        }
