"""Property: no request a client can send gets a 5xx, and a refused one writes nothing.

Hypothesis drives every route of `app.url_map` (plus the Stripe webhook, mounted beside
it), with each method it answers, signed in and not, over http and https: generated path
values (ids beyond any column, text with any letter or control character, real ids and
numbers of this customer and of another), query strings, form fields (with a valid CSRF
token or a generated one) and the headers the portal parses (Referer, Accept-Language).
After each request: the status is below 500, and if it is 4xx no table changed.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from portal.db import utcnow
from portal.extensions import db, limiter
from portal.notifications.services import unsubscribe_token
from portal.payments.models import Checkout, CheckoutInvoice, CheckoutStatus
from portal.payments.webhooks import PATH as WEBHOOK_PATH
from tests.factories import (
    csrf_token_from,
    login_as,
    make_customer,
    make_invoice,
    make_link_token,
    make_payment,
    make_payment_account,
)

pytest_plugins = ["tests.stripe_server"]

HTTPS = "https://portal.example.test"
FIELDS = [
    "csrf_token",
    "invoices",
    "amount",
    "account_number",
    "email",
    "locale",
    "next",
    "card_choice",
    "setup_intent",
    "save_card",
    "checkout",
    "submit",
    "List-Unsubscribe",
    # the dispute forms (portal/disputes/forms.py)
    "line-1",
    "amount-1",
    "reason",
    "message",
    "confirm",
]
QUERY_KEYS = ["invoice", "overdue", "next", "amount", "page"]

# Text as people and attackers type it: any letter, digits, the characters that break
# parsers (CR, LF, NUL, quotes, slashes, %), and very long numbers.
nasty_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.sampled_from("0123456789.,-+eE /\\%\r\n\t\x00'\"<>?#&=:@é€ß"), max_size=40),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.sampled_from(
        [
            "9" * 32,
            "99999999999999999999999",
            str(2**31),
            str(2**63),
            "/account\r\nSet-Cookie: x=1",
            "//evil.example",
            "josé@exämple.com",
            "JOSÉ@EXAMPLE.COM",
            "a\x00b",
            "\x00",
            "NaN",
            "Infinity",
            "1e400",
            "",
        ]
    ),
)
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60
) | st.sampled_from(
    [
        "https://portal.example.test:abc/",
        "https://portal.example.test:99999999/",
        "https://[::1/",
        "http://portal.example.test/",
        f"{HTTPS}/",
    ]
)


def _table_digest() -> str:
    """A digest of every row of every table (session bookkeeping aside)."""
    digest = hashlib.sha256()
    for table in db.metadata.sorted_tables:
        if "session" in table.name:  # when a request was last seen is not a change
            continue
        rows = db.session.execute(select(table)).all()
        digest.update(table.name.encode())
        digest.update(repr(sorted(repr(tuple(row)) for row in rows)).encode())
    return digest.hexdigest()


class World:
    """What the generated requests aim at: two customers' real ids, numbers and tokens."""

    def __init__(self, app: Any) -> None:
        today = utcnow().date()
        self.me = make_customer(timezone="UTC", kind="consumer")
        other = make_customer(timezone="UTC")
        mine = make_invoice(
            self.me, number="FA/2024/001", issue_date=today, lines=[("A", "1", "150.00")]
        )
        make_invoice(self.me, number="INV-É-1", issue_date=today, lines=[("B", "1", "20.00")])
        theirs = make_invoice(other, number="THEIRS-1", issue_date=today)
        payment = make_payment(self.me, [(mine, "10.00")])
        make_payment_account(self.me)
        checkouts = []
        for customer, invoice in ((self.me, mine), (other, theirs)):
            checkout = Checkout(
                customer_id=customer.id,
                status=CheckoutStatus.OPEN,
                amount_minor=1000,
                currency="USD",
                attempt=0,
                created_at=utcnow(),
                updated_at=utcnow(),
                invoices=[CheckoutInvoice(invoice_id=invoice.id)],
            )
            db.session.add(checkout)
            checkouts.append(checkout)
        db.session.flush()
        with app.test_request_context():
            opt_out = unsubscribe_token(self.me)
        self.values = {
            "int": [str(c.id) for c in checkouts] + [str(payment.id), "0", "1"],
            "path": [mine.number, "INV-É-1", theirs.number, "FA%2F2024%2F001"],
            "token": [make_link_token(self.me), make_link_token(other), opt_out, "x" * 200],
            "invoices": [mine.number, "INV-É-1", theirs.number],
        }
        self.routes = sorted(
            {
                (rule.rule, method)
                for rule in app.url_map.iter_rules()
                if rule.endpoint != "static"
                for method in sorted(rule.methods & {"GET", "POST"})
            }
            | {(WEBHOOK_PATH, "POST")}
        )


@pytest.fixture
def world(app, db_session, stripe_app):
    return World(app)


def _path_value(draw: st.DrawFn, world: World, kind: str) -> str:
    known = world.values["token" if kind not in ("int", "path") else kind]
    value = draw(st.one_of(st.sampled_from(known), nasty_text))
    return value if value.startswith("FA%2F") else quote(value, safe="/" if kind == "path" else "")


@st.composite
def requests_(draw: st.DrawFn, world: World) -> dict[str, Any]:
    rule, method = draw(st.sampled_from(world.routes))
    event(f"{method} {rule}")
    path = rule
    while "<" in path:
        start, end = path.index("<"), path.index(">")
        spec = path[start + 1 : end]
        kind = spec.split(":")[0] if ":" in spec else "token"
        value = _path_value(draw, world, kind) or "x"
        path = path[:start] + value + path[end + 1 :]
    query = draw(
        st.lists(
            st.tuples(st.sampled_from(QUERY_KEYS) | st.text(max_size=8), nasty_text), max_size=4
        )
    )
    if query:
        path += "?" + urlencode(query)
    form = draw(
        st.lists(
            st.tuples(
                st.sampled_from(FIELDS),
                st.sampled_from(world.values["invoices"]) | nasty_text,
            ),
            max_size=8,
        )
    )
    headers = draw(
        st.fixed_dictionaries({}, optional={"Referer": header_text, "Accept-Language": header_text})
    )
    return {
        "method": method,
        "path": path,
        "form": form,
        "valid_csrf": draw(st.booleans()),
        "signed_in": draw(st.booleans()),
        "https": draw(st.booleans()),
        "headers": headers,
    }


@settings(
    max_examples=int(os.environ.get("NO_5XX_EXAMPLES", "300")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_request_gets_a_5xx_and_a_refused_one_writes_nothing(app, client, world, data):
    wanted = data.draw(requests_(world))
    limiter.reset()  # every example tries its route, not the limit (the limits have tests)
    base_url = HTTPS if wanted["https"] else "http://portal.example.test"
    signed_in = client.get_cookie("portal_customer") is not None
    if wanted["signed_in"] and not signed_in:
        login_as(client, world.me)
    elif not wanted["signed_in"] and signed_in:
        client.delete_cookie("portal_customer")
    form = list(wanted["form"])
    if wanted["method"] == "POST" and wanted["valid_csrf"]:
        token = csrf_token_from(client.get("/link/new", base_url=base_url).text)
        form = [(k, v) for k, v in form if k != "csrf_token"] + [("csrf_token", token)]
    headers = dict(wanted["headers"])
    if wanted["https"] and wanted["valid_csrf"] and "Referer" not in headers:
        headers["Referer"] = f"{HTTPS}/"
    before = _table_digest()
    response = client.open(
        wanted["path"],
        method=wanted["method"],
        base_url=base_url,
        data=MultiDict(form) if wanted["method"] == "POST" else None,
        headers=headers,
    )
    event(f"status {response.status_code}")
    assert response.status_code < 500, (wanted, response.status_code)
    if response.status_code >= 400:
        assert _table_digest() == before, (wanted, response.status_code)
