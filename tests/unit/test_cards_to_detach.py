"""Which cards go after a charge settles: `services.cards_to_detach`, on every path."""

from __future__ import annotations

import pytest

from portal.payments.checkouts import cards_to_detach
from portal.payments.models import Checkout


@pytest.mark.parametrize(
    ("used", "save_card", "saved_before", "succeeded", "detached"),
    [
        ("pm_new", False, None, True, ["pm_new"]),  # paid, not to be kept
        ("pm_new", False, None, False, ["pm_new"]),  # declined, not to be kept
        ("pm_new", True, None, True, []),  # paid and kept
        ("pm_new", True, "pm_old", True, ["pm_old"]),  # kept: replaces the card saved before
        ("pm_new", True, None, False, ["pm_new"]),  # to be kept, but the charge failed
        ("pm_old", True, "pm_old", True, []),  # paid with the saved card
        ("pm_old", True, "pm_old", False, []),  # the saved card was declined: it stays saved
        (None, False, None, True, []),  # interrupted before a card was chosen
    ],
)
def test_cards_to_detach(used, save_card, saved_before, succeeded, detached):
    checkout = Checkout(payment_method_id=used, save_card=save_card)
    assert cards_to_detach(checkout, saved_before, succeeded=succeeded) == detached
