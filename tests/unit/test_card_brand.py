"""Card brands as customers read them, in their language."""

from __future__ import annotations

import pytest

from portal.i18n import card_brand_label


@pytest.mark.parametrize(
    ("brand", "locale", "label"),
    [
        ("visa", "en", "Visa"),
        ("american_express", "en", "American Express"),
        (None, "en", "Card"),
        ("unknown", "es", "Tarjeta"),
        ("card", "de", "Karte"),
    ],
)
def test_unknown_brand_reads_as_the_word_card_in_the_page_language(app, brand, locale, label):
    with app.test_request_context(headers={"Accept-Language": locale}):
        assert card_brand_label(brand) == label
