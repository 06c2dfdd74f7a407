"""The account page's shortcuts (customers.pages) give what the rules they stand for give."""

from __future__ import annotations

import pytest

from portal.customers.pages import _card_payable_now
from portal.money import Money
from portal.payments.policy import STRIPE_MINIMUMS, card_maximum, card_payable_now


@pytest.mark.parametrize("currency", sorted({"USD", "EUR", "JPY", "KWD", "HUF", *STRIPE_MINIMUMS}))
def test_card_payability_is_the_policys(currency: str) -> None:
    most = card_maximum(currency).minor
    amounts = [*range(0, 2_000, 7), *range(most - 50, most + 50), most * 3 + 1]
    for minor in amounts:
        amount = Money(minor, currency)
        assert _card_payable_now(amount) == card_payable_now(amount), (currency, minor)
