"""Four complete languages, chosen by switcher, stored locale, or Accept-Language."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from portal.config import SUPPORTED_LOCALES
from portal.extensions import db
from tests.factories import csrf_token_from, login_as, make_customer, make_invoice

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "portal" / "translations"


def _switch(client, locale, next_path="/"):
    page = client.get(next_path)
    return client.post(
        "/language",
        data={"csrf_token": csrf_token_from(page.text), "locale": locale, "next": next_path},
    )


@pytest.mark.parametrize(
    ("header", "lang", "phrase"),
    [
        ("es-ES,es;q=0.9", "es", "Declaración de accesibilidad"),
        ("fr-CA,fr;q=0.8", "fr", "Déclaration d’accessibilité"),
        ("de-DE", "de", "Erklärung zur Barrierefreiheit"),
        ("ja-JP", "en", "Accessibility statement"),
    ],
)
def test_accept_language_picks_the_language(client, header, lang, phrase):
    page = client.get("/", headers={"Accept-Language": header})
    assert f'<html lang="{lang}">' in page.text
    assert phrase in page.text


def test_stored_locale_wins_over_accept_language(client):
    login_as(client, make_customer(locale="fr"))
    page = client.get("/account", headers={"Accept-Language": "de"})
    assert '<html lang="fr">' in page.text


def test_switcher_wins_and_is_remembered_for_the_customer(client):
    customer = make_customer(locale="en")
    login_as(client, customer)
    response = _switch(client, "de", "/account")
    assert response.headers["Location"] == "/account"
    page = client.get("/account")
    assert '<html lang="de">' in page.text
    db.session.refresh(customer)
    assert customer.locale == "de"


def test_switcher_without_session_sets_only_the_session(client):
    _switch(client, "es")
    assert '<html lang="es">' in client.get("/").text


def test_switcher_refuses_unknown_language_and_open_redirects(client):
    response = _switch(client, "xx")
    assert response.headers["Location"] == "/"
    assert '<html lang="en">' in client.get("/", headers={"Accept-Language": "en"}).text
    page = client.get("/")
    evil = client.post(
        "/language",
        data={
            "csrf_token": csrf_token_from(page.text),
            "locale": "es",
            "next": "//evil.example/phish",
        },
    )
    assert evil.headers["Location"] == "/"


def test_money_and_dates_follow_the_locale(client):
    from datetime import date

    customer = make_customer(locale="de")
    make_invoice(
        customer,
        number="INV-DE",
        issue_date=date(2026, 3, 5),
        due_date=date(2026, 4, 4),
        lines=[("Beratung", "1", "1234.50")],
    )
    login_as(client, customer)
    page = client.get("/invoices/INV-DE")
    assert "1.234,50\xa0$" in page.text
    assert "05.03.2026" in page.text


def _catalog(locale):
    with (TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        return read_po(handle, locale=locale)


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_every_message_is_translated(locale):
    with (TRANSLATIONS / "messages.pot").open("rb") as handle:
        template = read_po(handle)
    catalog = _catalog(locale)
    missing = []
    for message in template:
        if not message.id:
            continue
        translated = catalog.get(message.id)
        strings = translated.string if translated else None
        values = strings if isinstance(strings, tuple) else (strings,)
        if translated is None or translated.fuzzy or not all(values):
            missing.append(message.id)
    assert not missing, f"{locale}: {len(missing)} untranslated, e.g. {missing[:5]}"


def test_catalog_is_not_stale(tmp_path):
    fresh = tmp_path / "messages.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "-q",
            "extract",
            "-F",
            "babel.cfg",
            "-k",
            "_l",
            "-k",
            "lazy_gettext",
            "--no-location",
            "--no-wrap",
            "--sort-output",
            "-o",
            str(fresh),
            ".",
        ],
        cwd=ROOT,
        check=True,
    )
    with fresh.open("rb") as handle:
        current = {m.id for m in read_po(handle) if m.id}
    with (TRANSLATIONS / "messages.pot").open("rb") as handle:
        committed = {m.id for m in read_po(handle) if m.id}
    assert current == committed, (
        f"messages.pot is stale: run `make translations-update`. "
        f"New: {sorted(map(str, current - committed))[:5]}; "
        f"gone: {sorted(map(str, committed - current))[:5]}"
    )


@pytest.mark.parametrize("locale", ["en", "es", "fr", "de"])
@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_the_cached_datetime_filter_writes_what_flask_babel_writes(app, locale, zone):
    """`datetimeformat` is cached per (moment, pattern, locale, zone): same text as
    Flask-Babel's own, in each language and time zone, twice over (the cache hit)."""
    from datetime import UTC, datetime

    import pytz
    from flask import current_app
    from flask_babel import _get_current_context, force_locale, format_datetime

    from portal.i18n import datetime_filter

    moments = [datetime(2026, 11, 29, 23, 30, tzinfo=UTC), datetime(2026, 3, 1, 4, 5, tzinfo=UTC)]
    with app.test_request_context(), force_locale(locale):
        _get_current_context().babel_tzinfo = pytz.timezone(zone)  # as a selector would
        for moment in moments:
            for fmt in (None, "short", "medium", "long", "yyyy-MM-dd HH:mm"):
                expected = format_datetime(moment, fmt)
                assert datetime_filter(moment, fmt) == expected
                assert datetime_filter(moment, fmt) == expected
        template = current_app.jinja_env.from_string("{{ m|datetimeformat('short') }}")
        rendered = template.render(m=moments[0])
        assert rendered == format_datetime(moments[0], "short")
        if zone != "UTC":  # the zone is part of the key: the same moment, another text
            _get_current_context().babel_tzinfo = pytz.timezone("UTC")
            assert datetime_filter(moments[0], "short") != rendered


def test_spanish_names_a_dispute_one_way_everywhere():
    """Review finding: the Spanish pages say "disputa" ("Disputar un cargo", "Su disputa")
    while the emails and some refusals said "reclamación": a customer reading "Su
    reclamación … no ha sido aceptada" could not tell it was the dispute they opened."""
    catalog = _catalog("es")
    other_word = [
        message.id
        for message in catalog
        if message.id and isinstance(message.string, str) and "reclamaci" in message.string
    ]
    assert other_word == []


@pytest.mark.parametrize("locale", ["es", "fr", "de"])
def test_money_keeps_the_request_locale_after_a_force_locale_block(app, locale):
    """An email rendered under `force_locale` before the request asked for its locale
    (a dispute opened on a POST) puts back "not chosen yet"; amounts formatted after it
    are in the request's language, not English."""
    from flask_babel import force_locale

    from portal.i18n import current_locale, money_filter
    from portal.money import Money

    headers = {"Accept-Language": locale}
    with app.test_request_context("/", headers=headers):
        with force_locale("en"):  # e.g. the email of a customer whose stored locale is en
            pass
        assert current_locale() == locale
        assert money_filter(Money(4000, "USD")) == Money(4000, "USD").format(locale)
