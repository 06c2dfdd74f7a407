"""Property: no request to a staff page gets a 5xx, signed in as an admin or not, and a
refused one writes nothing (sign-in pages aside: a failed attempt is counted)."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from portal.extensions import limiter
from tests.factories import csrf_token_from, login_as_staff, make_staff
from tests.integration.test_no_server_errors import _table_digest, nasty_text

FIELDS = [
    "csrf_token", "email", "password", "confirm", "code", "name", "role", "next", "submit",
    "actor", "account_number", "action", "date_from", "date_to", "page",
]  # fmt: skip
COUNTED = ("/staff/login", "/staff/set-password/")


@st.composite
def staff_requests(
    draw: st.DrawFn, routes: list[tuple[str, str]], ids: list[str]
) -> dict[str, Any]:
    rule, method = draw(st.sampled_from(routes))
    event(f"{method} {rule}")
    path = rule
    while "<" in path:
        start, end = path.index("<"), path.index(">")
        spec = path[start + 1 : end]
        if spec.startswith("any("):
            value = draw(st.sampled_from(["deactivate", "reset-2fa", "reset-password", "x"]))
        elif spec.startswith("int:"):
            value = draw(st.sampled_from(ids) | nasty_text)
        else:
            value = draw(nasty_text)
        path = path[:start] + (quote(value, safe="") or "x") + path[end + 1 :]
    query = draw(st.lists(st.tuples(st.sampled_from(FIELDS), nasty_text), max_size=4))
    if query:
        path += "?" + urlencode(query)
    form = draw(st.lists(st.tuples(st.sampled_from(FIELDS), nasty_text), max_size=8))
    return {"method": method, "path": path, "form": form, "csrf": draw(st.booleans())}


@settings(
    max_examples=int(os.environ.get("NO_5XX_EXAMPLES", "200")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_staff_request_gets_a_5xx(app, admin_client, data):
    other = make_staff()
    routes = sorted(
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/staff")
        for method in sorted(rule.methods & {"GET", "POST"})
    )
    wanted = data.draw(staff_requests(routes, [str(other.id), "0", str(2**31)]))
    limiter.reset()
    if admin_client.get("/staff/").status_code != 200:
        # Signed out by an earlier example, or locked by its wrong codes: a new admin
        # (one member can sign in at most twice in 30 s: a code works once).
        admin_client.staff_member = make_staff("admin")
        assert login_as_staff(admin_client, admin_client.staff_member).status_code == 302
    form = list(wanted["form"])
    if wanted["method"] == "POST" and wanted["csrf"]:
        token = csrf_token_from(admin_client.get("/staff/").text)
        form = [(k, v) for k, v in form if k != "csrf_token"] + [("csrf_token", token)]
    before = _table_digest()
    response = admin_client.open(
        wanted["path"],
        method=wanted["method"],
        data=MultiDict(form) if wanted["method"] == "POST" else None,
    )
    event(f"status {response.status_code}")
    assert response.status_code < 500, (wanted, response.status_code)
    if response.status_code >= 400 and not wanted["path"].startswith(COUNTED):
        assert _table_digest() == before, (wanted, response.status_code)
