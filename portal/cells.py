"""What the customer's pages share to write their cells in Python once per request
(`customers.pages`, `invoices.pages`, `payments.pages`): the catalog's messages with the
templates' semantics, amounts and dates formatted for a locale already known (escaped once
for cells a template writes as they are), and links built once per process.

A cell prepared here and written in a template's `{% autoescape false %}` block must be
escaped here, exactly once: `html`, `day_html`, `money_html`, `Messages.label_html`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any
from urllib.parse import quote
from weakref import WeakKeyDictionary

from babel import Locale
from babel import dates as babel_dates
from babel.support import NullTranslations
from flask import url_for
from flask.globals import _cv_request
from markupsafe import Markup, escape

from portal.disputes.models import DisputeStatus
from portal.invoices.models import InvoiceStatus
from portal.money import Money
from portal.plans.models import PlanStatus

# What werkzeug's path converters leave unquoted (routing.converters.BaseConverter).
PATH_SAFE = "!$&'()*+,/:;=@"
NEEDS_NO_QUOTING = re.compile(r"[A-Za-z0-9_.~-]*")  # what quote() leaves as it is


class Messages:
    """`gettext`/`ngettext` as the templates have them (newstyle, autoescaped): the
    translation is markup, its placeholders are filled with escaped values.

    Given to the account page's templates as their `_`, `gettext` and `ngettext`: a
    message without placeholders is translated once per catalog (it is the same for
    everyone reading that language) instead of on each of its ~50 uses per page."""

    def __init__(self, translations: NullTranslations) -> None:
        self._translations = translations
        # Looked up before `setdefault`, which makes a weak reference on every call.
        self._plain = _PLAIN.get(translations) or _PLAIN.setdefault(translations, {})
        self._templates = _TEMPLATES.get(translations) or _TEMPLATES.setdefault(translations, {})
        self._labels = _LABELS.get(translations) or _LABELS.setdefault(translations, {})
        self._counted = _COUNTED.get(translations) or _COUNTED.setdefault(translations, {})

    def gettext(self, message: str, **variables: Any) -> Markup:
        if not variables:
            plain = self._plain.get(message)
            if plain is None:
                plain = self._plain[message] = self._markup(message) % {}
            return plain
        return self._markup(message) % variables

    def label(self, status: InvoiceStatus | DisputeStatus | PlanStatus) -> str:
        """A status's translated label (`status.label`), once per catalog."""
        key = (type(status).__name__, status.value)
        label = self._labels.get(key)
        if label is None:
            label = self._labels[key] = status.label
        return label

    def label_html(self, status: InvoiceStatus | DisputeStatus | PlanStatus) -> Markup:
        """`label(status)` escaped, once per catalog (for cells written unescaped)."""
        key = (type(status).__name__ + "/html", status.value)
        label = self._labels.get(key)
        if label is None:
            label = self._labels[key] = escape(self.label(status))
        return Markup(label)  # noqa: S704 (escaped above)

    def invoice_labels_html(self) -> dict[InvoiceStatus, str]:
        """Each invoice status's `label_html`, once per catalog."""
        labels = _INVOICE_LABELS_HTML.get(self._translations)
        if labels is None:
            labels = _INVOICE_LABELS_HTML[self._translations] = {
                status: str(self.label_html(status)) for status in InvoiceStatus
            }
        return labels

    def _markup(self, message: str) -> Markup:
        """The catalog's text, once per catalog: markup, as a template's own text is."""
        markup = self._templates.get(message)
        if markup is None:
            text = self._translations.ugettext(message)
            markup = self._templates[message] = Markup(text)  # noqa: S704 (not user input)
        return markup

    def ngettext(self, singular: str, plural: str, num: int, **variables: Any) -> Markup:
        if not variables:  # "%(num)d days overdue": the same for every reader of a language
            key = (singular, plural, num)
            counted = self._counted.get(key)
            if counted is None:
                counted = self._counted[key] = self._counted_markup(singular, plural, num, {})
            return counted
        return self._counted_markup(singular, plural, num, variables)

    def _counted_markup(
        self, singular: str, plural: str, num: int, variables: dict[str, Any]
    ) -> Markup:
        variables.setdefault("num", num)
        return Markup(self._translations.ungettext(singular, plural, num)) % variables  # noqa: S704


# Per catalog (one per language and process), its messages without placeholders, and
# the text of those with placeholders.
_PLAIN: WeakKeyDictionary[NullTranslations, dict[str, Markup]] = WeakKeyDictionary()
_TEMPLATES: WeakKeyDictionary[NullTranslations, dict[str, Markup]] = WeakKeyDictionary()
_LABELS: WeakKeyDictionary[NullTranslations, dict[tuple[str, str], str]] = WeakKeyDictionary()
_INVOICE_LABELS_HTML: WeakKeyDictionary[NullTranslations, dict[InvoiceStatus, str]] = (
    WeakKeyDictionary()
)
_COUNTED: WeakKeyDictionary[NullTranslations, dict[tuple[str, str, int], Markup]] = (
    WeakKeyDictionary()
)


@lru_cache(maxsize=16_384)
def day(value: date, locale: str) -> str:
    """A date as the `date` filter shows it ("medium": "Nov 29, 2026"), for a locale
    already known: the filter looks the request's locale up again for each date."""
    return str(babel_dates.format_date(value, "medium", locale=Locale.parse(locale)))


@lru_cache(maxsize=16_384)
def day_html(value: date, locale: str) -> Markup:
    """`day`, escaped once (for cells the template writes as they are)."""
    return escape(day(value, locale))


@lru_cache(maxsize=16_384)
def money_html(minor: int, currency: str, locale: str) -> str:
    """`Money.format_minor`, escaped once (for cells the template writes as they are)."""
    return str(escape(Money.format_minor(minor, currency, locale)))


@dataclass(slots=True)
class Format:
    """The `money` and `date` filters for the request's locale, looked up once."""

    locale: str

    def money(self, minor: int, currency: str) -> str:
        return Money.format_minor(minor, currency, self.locale)

    def money_html(self, minor: int, currency: str) -> str:
        return money_html(minor, currency, self.locale)

    def day(self, value: date) -> str:
        return day(value, self.locale)

    def day_html(self, value: date) -> Markup:
        return day_html(value, self.locale)


@lru_cache(maxsize=256)
def _known_url(script_root: str, endpoint: str, values: tuple[tuple[str, Any], ...]) -> str:
    return url_for(endpoint, **dict(values))


def page_url(endpoint: str, **values: Any) -> str:
    """`url_for(endpoint, **values)`, a path, built once per process (and mount point):
    the same for every customer, where building it costs more than a row of the page.
    The account page's templates have it as their `url_for`. Flask's own options
    (`_external`, `_scheme`…) are passed on to `url_for` each time."""
    if any(name.startswith("_") for name in values):
        return url_for(endpoint, **values)
    # The request's own object, not the `request` proxy: a page asks for a dozen URLs.
    script_root = _cv_request.get().request.root_path  # = request.script_root
    return _known_url(script_root, endpoint, tuple(sorted(values.items())))


def link(endpoint: str, **sample: str | int) -> Callable[[str | int], str]:
    """`url_for(endpoint, key=value)` for many values: the URL is built once with a
    sample value and the others are put in its place, quoted as werkzeug quotes them."""
    ((key, value),) = sample.items()
    head, _, tail = page_url(endpoint, **{key: value}).rpartition(str(value))

    def link(item: str | int) -> str:
        text = str(item)
        if not NEEDS_NO_QUOTING.fullmatch(text):
            text = quote(text, safe=PATH_SAFE)
        return f"{head}{text}{tail}"

    return link


def html(text: str) -> str:
    """`text` escaped for HTML, without making a Markup when there is nothing to escape."""
    return text if NEEDS_NO_QUOTING.fullmatch(text) else str(escape(text))
