"""The scripts of the card page, inventoried (PCI DSS v4.0, requirement 6.4.3).

A payment page may run only scripts that are listed here with the reason they are
needed and how their integrity is assured. The card page renders its `<script>` tags
from this list and nothing else, its Content-Security-Policy admits only our origin
(with a per-response nonce) and the configured Stripe.js origin, and a test fails when
the page carries or loads a script that is not in this inventory.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from flask import current_app, url_for

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


@dataclass(frozen=True)
class InventoriedScript:
    name: str
    purpose: str
    integrity_method: str


CARD_PAGE_SCRIPTS = (
    InventoriedScript(
        name="stripe-js",
        purpose="Stripe.js draws the card fields in Stripe's own frames, so that card "
        "numbers go to Stripe and never to us; it also runs 3-D Secure.",
        integrity_method="Loaded only from STRIPE_JS_URL, whose origin alone the CSP admits; "
        "Stripe updates it in place, so it carries no Subresource Integrity hash.",
    ),
    InventoriedScript(
        name="portal-card-form",
        purpose="Our card form: mounts the card field, confirms the card with Stripe.js "
        "and submits the form; runs the bank's check when asked.",
        integrity_method="Served from our origin with a Subresource Integrity hash (sha384) "
        "computed from the file we ship.",
    ),
)


@dataclass(frozen=True)
class ScriptTag:
    name: str
    src: str
    integrity: str | None


@cache
def _sri(relative: str) -> str:
    digest = hashlib.sha384((STATIC_DIR / relative).read_bytes()).digest()
    return "sha384-" + base64.b64encode(digest).decode()


def card_page_script_tags() -> list[ScriptTag]:
    """The `<script>` tags of the card page, in order: Stripe.js first, then ours."""
    tags = {
        "stripe-js": ScriptTag("stripe-js", current_app.config["STRIPE_JS_URL"], None),
        "portal-card-form": ScriptTag(
            "portal-card-form", url_for("static", filename="js/pay.js"), _sri("js/pay.js")
        ),
    }
    return [tags[script.name] for script in CARD_PAGE_SCRIPTS]
