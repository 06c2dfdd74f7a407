"""Locale choice and the template filters that format money and dates with Babel."""

from __future__ import annotations

from datetime import date, datetime, tzinfo
from functools import lru_cache
from weakref import WeakKeyDictionary
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import flask_babel
from babel import Locale
from babel import dates as babel_dates
from babel.support import NullTranslations
from flask import Flask, current_app, g, has_request_context, request
from flask.globals import _cv_app, _cv_request
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
from jinja2 import pass_eval_context
from jinja2.nodes import EvalContext
from markupsafe import Markup

from portal.config import SUPPORTED_LOCALES
from portal.money import Money, UnitPrice

LANGUAGE_NAMES = {"en": "English", "es": "Español", "fr": "Français", "de": "Deutsch"}
# The language switcher's buttons: (code, name in its own language).
LANGUAGES = tuple((code, LANGUAGE_NAMES[code]) for code in SUPPORTED_LOCALES)


def supported_locale(value: str | None) -> str | None:
    """A stored locale ("es_MX", "DE") as one of ours ("es", "de"), or None."""
    language = (value or "").split("_")[0].lower()
    return language if language in SUPPORTED_LOCALES else None


def select_locale() -> Locale:
    """The switcher's choice, else the customer's stored locale, else Accept-Language.

    Outside a request (the worker, the CLI) English, unless the caller forces a locale.
    Flask-Babel's locale selector: it gives back a `Locale`, made once per language
    (Flask-Babel passes a string through `Locale.parse`, a few microseconds of CLDR
    lookups per request, and a Locale as it is).
    """
    return _locale(_selected_language())


def _selected_language() -> str:
    request_ctx = _cv_request.get(None)  # `session` and `request` without their proxies
    if request_ctx is None:
        return "en"
    chosen = request_ctx.session.get("locale")
    if chosen in SUPPORTED_LOCALES:
        return str(chosen)
    from portal.access.sessions import signed_in_customer_locale

    stored = supported_locale(signed_in_customer_locale())
    if stored:
        return stored
    return request_ctx.request.accept_languages.best_match(SUPPORTED_LOCALES) or "en"


def current_locale() -> str:
    """The request's language ("en", "es"…); every amount and date on a page asks for it,
    so the locale Flask-Babel keeps in `g` is read directly once it has been chosen.

    Not chosen yet is either no attribute or None: a `force_locale` block (an email in
    the customer's language) run before anything on the request asked for the locale puts
    back None when it ends, and the request's locale is then still to be chosen (reading
    None as English wrote "$40.00" into a Spanish sentence)."""
    app_ctx = _cv_app.get(None)
    locale = None
    if app_ctx is not None:
        known_attributes = app_ctx.g.__dict__  # `g`'s own: no exceptions on a miss
        babel_state = known_attributes.get("_flask_babel")
        locale = getattr(babel_state, "babel_locale", None)
        if locale is not None:
            known = known_attributes.get("_portal_locale_name")
            if known is not None and known[0] is locale:
                return known[1]  # type: ignore[no-any-return]
            name = _locale_name(locale)
            known_attributes["_portal_locale_name"] = (locale, name)
            return name
    locale = get_locale()  # not chosen yet (also after force_locale restored that)
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

    The quick path reads the two attributes Flask-Babel and this function keep in the
    app context's `g` (`_flask_babel.babel_locale`, set once the locale is chosen)
    straight from the context, not through the `g` proxy or `get_locale()`, which goes
    through half a dozen context lookups per message."""
    app_ctx = _cv_app.get(None)
    if app_ctx is not None:
        request_globals = app_ctx.g
        try:
            locale, translations = request_globals._portal_translations
            if locale is request_globals._flask_babel.babel_locale:
                return translations  # type: ignore[no-any-return]
        except AttributeError:  # not cached yet
            pass
    if app_ctx is None or not has_request_context():
        return get_translations()
    locale = get_locale()
    catalogs = _CATALOGS.get(app_ctx.app)
    if catalogs is None:
        catalogs = _CATALOGS[app_ctx.app] = {}
    name = _locale_name(locale) if locale is not None else ""
    translations = catalogs.get(name)
    if translations is None:
        translations = catalogs[name] = get_translations()
    g._portal_translations = (locale, translations)
    return translations


# Per app, each locale's catalog as Flask-Babel's `get_translations` gives it (its domain
# keeps them per locale for the life of the process): a request's first message would
# otherwise spend ~15 µs finding the domain and its cache again.
_CATALOGS: WeakKeyDictionary[Flask, dict[str, NullTranslations]] = WeakKeyDictionary()


def catalog_of(locale: str) -> NullTranslations:
    """The catalog of `locale` ("de") as Flask-Babel gives it to a request in that
    language (every translation directory of the app). Needs an app context."""
    with flask_babel.force_locale(locale):
        return get_translations()


@pass_eval_context
def template_gettext(eval_ctx: EvalContext, message: str, **variables: object) -> str:
    """The templates' `_` and `gettext`: Jinja's newstyle gettext (the result marked safe
    in autoescaped templates, `%(name)s` placeholders filled with escaped values), in one
    call instead of three nested context calls per message."""
    text = request_translations().ugettext(message)
    if not variables and "%" not in text:  # nothing to fill in: the same text
        return Markup(text) if eval_ctx.autoescape else text  # noqa: S704  (our catalogs)
    if eval_ctx.autoescape:
        return Markup(text) % variables  # noqa: S704  (our own catalogs; values escaped by %)
    return text % variables


@pass_eval_context
def template_ngettext(
    eval_ctx: EvalContext, singular: str, plural: str, num: int, **variables: object
) -> str:
    """The templates' `ngettext` (newstyle: `num` fills `%(num)s` too)."""
    variables.setdefault("num", num)
    text = request_translations().ungettext(singular, plural, num)
    if eval_ctx.autoescape:
        return Markup(text) % variables  # noqa: S704  (our own catalogs; values escaped by %)
    return text % variables


@pass_eval_context
def template_pgettext(
    eval_ctx: EvalContext, context: str, message: str, **variables: object
) -> str:
    """The templates' `pgettext` (newstyle)."""
    text = request_translations().upgettext(context, message)
    if eval_ctx.autoescape:
        return Markup(text) % variables  # noqa: S704  (our own catalogs; values escaped by %)
    return text % variables


@pass_eval_context
def template_npgettext(
    eval_ctx: EvalContext,
    context: str,
    singular: str,
    plural: str,
    num: int,
    **variables: object,
) -> str:
    """The templates' `npgettext` (newstyle: `num` fills `%(num)s` too)."""
    variables.setdefault("num", num)
    text = request_translations().unpgettext(context, singular, plural, num)
    if eval_ctx.autoescape:
        return Markup(text) % variables  # noqa: S704  (our own catalogs; values escaped by %)
    return text % variables


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


def select_timezone() -> str:
    """The time zone moments are shown in (`datetimeformat`, `date` of a datetime): the
    creditor's on the staff side, where the specialists work and count days (their
    layout says which zone); a signed-in customer's own; else the creditor's."""
    if has_request_context() and not request.path.startswith("/staff"):
        from portal.access.sessions import customer_session

        customer = customer_session().snapshot  # read by the session check: no query
        if customer is not None:
            return zone_or_default(customer.timezone).key
    return zone_or_default(None).key


def init_i18n(app: Flask, babel: Babel) -> None:
    babel.init_app(app, locale_selector=select_locale, timezone_selector=select_timezone)
    app.jinja_env.filters["money"] = money_filter
    app.jinja_env.filters["date"] = date_filter
    app.jinja_env.filters["datetimeformat"] = datetime_filter
    app.jinja_env.filters["number"] = number_filter
    app.jinja_env.filters["card_brand"] = card_brand_label
    app.jinja_env.add_extension("jinja2.ext.i18n")
    # The templates' `_`, `gettext`, `ngettext`…: Flask-Babel's catalogs, found once per
    # request (request_translations), with Jinja's newstyle semantics (escaping,
    # %(name)s placeholders) in a single call each.
    app.jinja_env.globals.update(
        _=template_gettext,
        gettext=template_gettext,
        ngettext=template_ngettext,
        pgettext=template_pgettext,
        npgettext=template_npgettext,
    )
    app.jinja_env.newstyle_gettext = True  # type: ignore[attr-defined]

    @app.context_processor
    def inject_languages() -> dict[str, object]:
        return {"languages": LANGUAGES, "current_locale": current_locale()}
