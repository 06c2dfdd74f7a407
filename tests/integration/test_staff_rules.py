"""Staff accounts' rules: lock-out, one-time codes, roles, what admins change, CSRF."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.access.models import PrincipalSession
from portal.audit.actors import Actor
from portal.db import utcnow
from portal.disputes.services import open_dispute
from portal.extensions import db
from portal.staff.models import StaffMember
from portal.staff.services import (
    MAX_FAILED_LOGINS,
    CodeRefused,
    LoginRefused,
    StaffInputError,
    check_password,
    create_staff,
    verify_code,
)
from tests.factories import (
    STAFF_PASSWORD,
    csrf_token_from,
    login_as,
    login_as_staff,
    make_customer,
    make_invoice,
    make_payment,
    make_staff,
    next_totp_code,
)

pytest_plugins = ["tests.stripe_server"]

GENERIC = "The email or password is not right"


def _post_login(client: FlaskClient, email: str, password: str):  # type: ignore[no-untyped-def]
    page = client.get("/staff/login")
    return client.post(
        "/staff/login",
        data={"csrf_token": csrf_token_from(page.text), "email": email, "password": password},
    )


# --- sign-in -------------------------------------------------------------------------------
def test_unknown_email_and_wrong_password_get_the_same_answer(client: FlaskClient) -> None:
    member = make_staff()
    unknown = _post_login(client, "nobody@northwind.example", STAFF_PASSWORD)
    wrong = _post_login(client, member.email, "not the password at all")
    assert unknown.status_code == wrong.status_code == 400
    assert GENERIC in unknown.text
    assert GENERIC in wrong.text
    assert _message(unknown.text) == _message(wrong.text)


def _message(html: str) -> str:
    found = re.search(r'class="field__error"[^>]*>([^<]*)<', html)
    assert found
    return found.group(1).strip()


def test_email_is_matched_whatever_its_case(client: FlaskClient) -> None:
    member = make_staff()
    response = _post_login(client, member.email.upper(), STAFF_PASSWORD)
    assert response.headers["Location"].endswith("/staff/login/code")


def test_ten_failures_lock_the_account_for_fifteen_minutes(db_session) -> None:
    member = make_staff()
    now = utcnow()
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(LoginRefused):
            check_password(member.email, "wrong password!", now=now)
    assert member.locked_until == now + timedelta(minutes=15)
    # The right password does not open a locked account, and says nothing more.
    with pytest.raises(LoginRefused):
        check_password(member.email, STAFF_PASSWORD, now=now + timedelta(minutes=14))
    assert check_password(member.email, STAFF_PASSWORD, now=now + timedelta(minutes=15)) is member


def test_nine_failures_do_not_lock(db_session) -> None:
    member = make_staff()
    now = utcnow()
    for _ in range(MAX_FAILED_LOGINS - 1):
        with pytest.raises(LoginRefused):
            check_password(member.email, "wrong password!", now=now)
    assert member.locked_until is None
    assert check_password(member.email, STAFF_PASSWORD, now=now) is member


def test_wrong_codes_count_toward_the_lock_out(db_session) -> None:
    member = make_staff()
    now = utcnow()
    for _ in range(MAX_FAILED_LOGINS):
        with pytest.raises(CodeRefused):
            verify_code(
                member, "000000" if next_totp_code(member) != "000000" else "111111", now=now
            )
    assert member.is_locked(now)
    with pytest.raises(CodeRefused):
        verify_code(member, next_totp_code(member), now=now)


def test_lock_out_over_http(client: FlaskClient) -> None:
    member = make_staff()
    for _ in range(MAX_FAILED_LOGINS):
        assert _post_login(client, member.email, "wrong password!").status_code == 400
    response = _post_login(client, member.email, STAFF_PASSWORD)
    assert response.status_code == 400
    assert GENERIC in response.text


def test_a_code_works_once(db_session) -> None:
    member = make_staff()
    now = utcnow()
    code = pyotp.TOTP(member.totp_secret).at(now)
    verify_code(member, code, now=now)
    with pytest.raises(CodeRefused):
        verify_code(member, code, now=now)
    # Nor an earlier one still inside the drift window.
    earlier = pyotp.TOTP(member.totp_secret).at(now - timedelta(seconds=30))
    with pytest.raises(CodeRefused):
        verify_code(member, earlier, now=now)


def test_a_code_from_too_long_ago_is_refused(db_session) -> None:
    member = make_staff()
    now = utcnow()
    with pytest.raises(CodeRefused):
        verify_code(member, pyotp.TOTP(member.totp_secret).at(now - timedelta(minutes=2)), now=now)


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "0" * 16])
def test_malformed_codes_are_refused(db_session, code: str) -> None:
    member = make_staff()
    with pytest.raises(CodeRefused):
        verify_code(member, code, now=utcnow())


def test_replayed_code_over_http_is_refused(client: FlaskClient) -> None:
    member = make_staff()
    assert login_as_staff(client, member).status_code == 302
    db.session.refresh(member)
    used = pyotp.TOTP(member.totp_secret).generate_otp(member.totp_last_step)
    client.post("/staff/logout", data={"csrf_token": csrf_token_from(client.get("/staff/").text)})
    _post_login(client, member.email, STAFF_PASSWORD)
    page = client.get("/staff/login/code")
    response = client.post(
        "/staff/login/code", data={"csrf_token": csrf_token_from(page.text), "code": used}
    )
    assert response.status_code == 400
    assert "already used" in response.text
    assert client.get("/staff/").status_code == 302


def test_code_page_without_a_password_first_goes_back_to_sign_in(client: FlaskClient) -> None:
    response = client.get("/staff/login/code")
    assert response.headers["Location"].endswith("/staff/login")
    response = client.get("/staff/login/enrol")
    assert response.headers["Location"].endswith("/staff/login")


def test_deactivated_member_cannot_sign_in(client: FlaskClient) -> None:
    member = make_staff(deactivated_at=utcnow())
    response = _post_login(client, member.email, STAFF_PASSWORD)
    assert response.status_code == 400
    assert GENERIC in response.text


def test_next_only_goes_to_staff_pages(client: FlaskClient) -> None:
    member = make_staff()
    page = client.get("/staff/login?next=https://evil.example/")
    client.post(
        "/staff/login",
        data={
            "csrf_token": csrf_token_from(page.text),
            "email": member.email,
            "password": STAFF_PASSWORD,
            "next": "//evil.example/",
        },
    )
    page = client.get("/staff/login/code")
    response = client.post(
        "/staff/login/code",
        data={"csrf_token": csrf_token_from(page.text), "code": next_totp_code(member)},
    )
    assert response.headers["Location"] == "/staff/"


# --- sessions and roles ----------------------------------------------------------------------
STAFF_GET_ROUTES = ["/staff/", "/staff/admin/staff", "/staff/admin/audit", "/staff/admin/audit.csv"]
ADMIN_GET_ROUTES = ["/staff/admin/staff", "/staff/admin/audit", "/staff/admin/audit.csv"]
ADMIN_POST_ROUTES = [
    "/staff/admin/staff",
    "/staff/admin/staff/{id}/deactivate",
    "/staff/admin/staff/{id}/reset-2fa",
    "/staff/admin/staff/{id}/reset-password",
]


PUBLIC_STAFF_ROUTES = ("/staff/login", "/staff/logout", "/staff/set-password/")


def _every_guarded_staff_url(app: Flask) -> list[tuple[str, str]]:
    """(method, url) for every rule under /staff but the sign-in pages, including those
    other areas add later; arguments filled with plausible values."""
    found = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if not rule.rule.startswith("/staff") or rule.rule.startswith(PUBLIC_STAFF_ROUTES):
                continue
            values: dict[str, object] = {}
            for name in rule.arguments:
                converter = rule._converters[name]
                items = getattr(converter, "items", None)
                numeric = getattr(converter, "num_convert", None) is int
                values[name] = sorted(items)[0] if items else (1 if numeric else "ACC-1")
            url = app.url_for(rule.endpoint, **values)
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                found.append((method, url))
    return found


def test_every_staff_route_refuses_anonymous_and_customer_sessions(
    app: Flask, client: FlaskClient
) -> None:
    routes = _every_guarded_staff_url(app)
    assert ("GET", "/staff/admin/audit") in routes
    for who in ("anonymous", "customer"):
        if who == "customer":
            login_as(client, make_customer())
        token = csrf_token_from(client.get("/staff/login").text)
        for method, url in routes:
            response = client.open(url, method=method, data={"csrf_token": token})
            assert response.status_code == 302, (who, method, url, response.status_code)
            assert "/staff/login" in response.headers["Location"], (who, method, url)


@pytest.mark.parametrize("path", STAFF_GET_ROUTES)
def test_anonymous_is_refused_every_staff_page(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert "/staff/login" in response.headers["Location"]


@pytest.mark.parametrize("path", STAFF_GET_ROUTES)
def test_customer_is_refused_every_staff_page(client: FlaskClient, path: str) -> None:
    login_as(client, make_customer())
    response = client.get(path)
    assert response.status_code == 302
    assert "/staff/login" in response.headers["Location"]


@pytest.mark.parametrize("path", ADMIN_GET_ROUTES)
def test_specialist_gets_403_on_admin_pages(staff_client: FlaskClient, path: str) -> None:
    assert staff_client.get(path).status_code == 403


@pytest.mark.parametrize("path", ADMIN_POST_ROUTES)
def test_specialist_gets_403_on_admin_actions(staff_client: FlaskClient, path: str) -> None:
    other = make_staff()
    token = csrf_token_from(staff_client.get("/staff/").text)
    response = staff_client.post(path.format(id=other.id), data={"csrf_token": token})
    assert response.status_code == 403
    db.session.refresh(other)
    assert other.is_active
    assert other.password_hash


@pytest.mark.parametrize("path", ADMIN_GET_ROUTES)
def test_admin_opens_admin_pages(admin_client: FlaskClient, path: str) -> None:
    assert admin_client.get(path).status_code == 200


@pytest.mark.parametrize("path", [*ADMIN_POST_ROUTES, "/staff/logout"])
def test_admin_posts_without_csrf_token_are_refused(admin_client: FlaskClient, path: str) -> None:
    other = make_staff()
    response = admin_client.post(path.format(id=other.id), data={"email": "x@y.example"})
    assert response.status_code == 400
    db.session.refresh(other)
    assert other.is_active
    assert other.password_hash
    assert admin_client.get("/staff/").status_code == 200  # logout without a token did nothing


def test_login_without_csrf_token_is_refused(client: FlaskClient) -> None:
    member = make_staff()
    response = client.post("/staff/login", data={"email": member.email, "password": STAFF_PASSWORD})
    assert response.status_code == 400
    assert "/staff/login/code" not in response.headers.get("Location", "")


def test_sign_out_ends_the_session_row(staff_client: FlaskClient) -> None:
    token = csrf_token_from(staff_client.get("/staff/").text)
    staff_client.post("/staff/logout", data={"csrf_token": token})
    assert staff_client.get("/staff/").status_code == 302
    member = staff_client.staff_member  # type: ignore[attr-defined]
    rows = db.session.scalars(
        select(PrincipalSession).where(PrincipalSession.staff_id == member.id)
    ).all()
    assert rows
    assert all(row.ended_reason == "signed_out" for row in rows)


# --- what admins change ------------------------------------------------------------------------
def _second_browser(app: Flask, member: StaffMember) -> FlaskClient:
    other = app.test_client()
    assert login_as_staff(other, member).status_code == 302
    assert other.get("/staff/").status_code == 200
    return other


@pytest.mark.parametrize("what", ["deactivate", "reset-2fa", "reset-password"])
def test_admin_action_ends_the_members_sessions_at_once(
    app: Flask, admin_client: FlaskClient, what: str
) -> None:
    member = make_staff()
    browser = _second_browser(app, member)
    token = csrf_token_from(admin_client.get("/staff/admin/staff").text)
    response = admin_client.post(
        f"/staff/admin/staff/{member.id}/{what}", data={"csrf_token": token}
    )
    assert response.status_code in (200, 302)
    assert browser.get("/staff/").status_code == 302
    db.session.refresh(member)
    if what == "deactivate":
        assert not member.is_active
    elif what == "reset-2fa":
        assert not member.mfa_enrolled
        assert member.totp_secret is None
    else:
        assert member.password_hash is None
        assert "/staff/set-password/" in response.text


def test_invite_then_set_password_then_enrol(app: Flask, admin_client: FlaskClient) -> None:
    page = admin_client.get("/staff/admin/staff")
    response = admin_client.post(
        "/staff/admin/staff",
        data={
            "csrf_token": csrf_token_from(page.text),
            "email": "New.Person@Northwind.example",
            "name": "New Person",
            "role": "specialist",
        },
    )
    assert response.status_code == 200
    link = re.search(r'id="password-link">[^<]*(/staff/set-password/[\w-]+)<', response.text)
    assert link
    member = db.session.scalar(select(StaffMember).where(StaffMember.name == "New Person"))
    assert member is not None
    assert member.email == "new.person@northwind.example"
    assert member.password_token_hash  # stored hashed: the token itself is nowhere
    assert link.group(1).rsplit("/", 1)[1] not in (member.password_token_hash or "")
    # The new member (another browser) sets a password through the link, once.
    browser = app.test_client()
    page = browser.get(link.group(1))
    assert page.status_code == 200
    new_password = "a long enough passphrase"
    done = browser.post(
        link.group(1),
        data={
            "csrf_token": csrf_token_from(page.text),
            "password": new_password,
            "confirm": new_password,
        },
    )
    assert done.headers["Location"].endswith("/staff/login")
    assert browser.get(link.group(1)).status_code == 410
    assert login_as_staff(browser, member, password=new_password).status_code == 302
    db.session.refresh(member)
    assert member.mfa_enrolled


def test_invite_with_an_existing_email_says_so(admin_client: FlaskClient) -> None:
    existing = make_staff()
    page = admin_client.get("/staff/admin/staff")
    response = admin_client.post(
        "/staff/admin/staff",
        data={
            "csrf_token": csrf_token_from(page.text),
            "email": existing.email.upper(),
            "name": "Someone",
            "role": "admin",
        },
    )
    assert response.status_code == 400
    assert "already exists" in response.text


def test_invite_with_an_unknown_role_is_refused(admin_client: FlaskClient) -> None:
    page = admin_client.get("/staff/admin/staff")
    response = admin_client.post(
        "/staff/admin/staff",
        data={
            "csrf_token": csrf_token_from(page.text),
            "email": "x@northwind.example",
            "name": "X",
            "role": "superuser",
        },
    )
    assert response.status_code == 400
    assert (
        db.session.scalar(select(StaffMember).where(StaffMember.email == "x@northwind.example"))
        is None
    )


def test_admin_cannot_deactivate_themselves(admin_client: FlaskClient) -> None:
    me = admin_client.staff_member  # type: ignore[attr-defined]
    token = csrf_token_from(admin_client.get("/staff/admin/staff").text)
    admin_client.post(f"/staff/admin/staff/{me.id}/deactivate", data={"csrf_token": token})
    db.session.refresh(me)
    assert me.is_active
    assert admin_client.get("/staff/").status_code == 200


def test_set_password_refuses_short_and_mismatched(client: FlaskClient, db_session) -> None:
    from portal.staff.services import issue_password_link

    member = make_staff(password=None)
    link = issue_password_link(member, now=utcnow())
    url = f"/staff/set-password/{link.token}"
    page = client.get(url)
    short = client.post(
        url,
        data={"csrf_token": csrf_token_from(page.text), "password": "short", "confirm": "short"},
    )
    assert short.status_code == 400
    assert "between 12 and 256" in short.text
    other = client.post(
        url,
        data={"csrf_token": csrf_token_from(page.text), "password": "x" * 20, "confirm": "y" * 20},
    )
    assert other.status_code == 400
    assert "not the same" in other.text
    db.session.refresh(member)
    assert member.password_hash is None
    assert client.get("/staff/set-password/not-a-token").status_code == 410


def test_create_staff_checks_its_input(db_session) -> None:
    actor, now = Actor("cli"), utcnow()
    with pytest.raises(StaffInputError, match="valid email"):
        create_staff(
            "not an email", name="A", role="admin", password="x" * 12, actor=actor, now=now
        )
    with pytest.raises(StaffInputError, match="at least 12"):
        create_staff("a@b.example", name="A", role="admin", password="short", actor=actor, now=now)
    with pytest.raises(StaffInputError, match="specialist or admin"):
        create_staff("a@b.example", name="A", role="root", password="x" * 12, actor=actor, now=now)
    with pytest.raises(StaffInputError, match="name"):
        create_staff(
            "a@b.example", name="  ", role="admin", password="x" * 12, actor=actor, now=now
        )
    member = create_staff(
        "A@B.example", name="A", role="admin", password="x" * 12, actor=actor, now=now
    )
    assert member.email == "a@b.example"
    assert member.password_hash
    assert member.password_hash.startswith("$argon2id$")


# Routes outside /staff that need no customer session: pages anyone may open, the ones a
# link or an email token opens, and the development mailbox. Every other route is a
# customer route; a new one is covered by the test below without being listed.
PUBLIC_CUSTOMER_SIDE_ENDPOINTS = {
    "static",
    "site.home",
    "site.accessibility",
    "site.choose_language",
    "access.landing",
    "access.enter",
    "access.request_link",
    "access.link_requested",
    "access.sign_out",
    "access.signed_out",
    "notifications.opt_out_page",
    "notifications.opt_out_confirm",
}
PUBLIC_CUSTOMER_SIDE_PREFIXES = ("mailbox.", "webhooks.", "health")


def _every_customer_url(app: Flask, values: dict[str, object]) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) for every rule outside /staff that is not public, its
    arguments filled from `values` (the customer's own invoice, payment, ...)."""
    found = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if (
                rule.rule.startswith("/staff")
                or rule.endpoint in PUBLIC_CUSTOMER_SIDE_ENDPOINTS
                or rule.endpoint.startswith(PUBLIC_CUSTOMER_SIDE_PREFIXES)
            ):
                continue
            url = app.url_for(rule.endpoint, **{name: values[name] for name in rule.arguments})
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                found.append((rule.endpoint, method, url))
    return found


@pytest.mark.usefixtures("stripe_app")  # card payments on: /pay and its steps are routed
def test_every_customer_route_refuses_a_staff_session(app: Flask, client: FlaskClient) -> None:
    # given: a customer with an invoice and a payment, and a client holding only a
    # signed-in staff member's cookie (an admin: the strongest staff role)
    customer = make_customer(name="Zebulon Quartermaine")
    invoice = make_invoice(customer, number="SECRET-INV-77")
    payment = make_payment(customer, [(invoice, "10.00")], reference="SECRET-PAY-77")
    dispute = open_dispute(
        customer, invoice, {1: None}, "damaged", "Broken.", [],
        actor=Actor.customer(customer), now=utcnow(),
    )  # fmt: skip
    routes = _every_customer_url(
        app,
        {
            "number": invoice.number,
            "payment_id": payment.id,
            "checkout_id": 1,
            "dispute_id": dispute.id,
            "file_id": 1,
            "plan_id": 1,
            "installment": 0,
        },
    )
    endpoints = {endpoint for endpoint, _, _ in routes}
    assert {"customers.account", "invoices.detail", "payments.receipt", "payments.start"} <= (
        endpoints
    )
    assert login_as_staff(client, make_staff("admin")).status_code == 302
    assert client.get("/staff/").status_code == 200
    token = csrf_token_from(client.get("/link/new").text)

    # when / then: each one refuses (401, or a redirect away), never showing the data
    for endpoint, method, url in routes:
        response = client.open(url, method=method, data={"csrf_token": token})
        where = (endpoint, method, url, response.status_code)
        assert response.status_code in (302, 303, 401), where
        if response.status_code != 401:
            location = response.headers["Location"]
            assert not location.startswith(("/account", "/invoices", "/pay")), where
        # (the page's own address is echoed in its language form: not the customer's data)
        body = response.get_data(as_text=True).replace(url, "")
        for secret in (customer.name, customer.account_number, "SECRET-INV-77", "SECRET-PAY-77"):
            assert secret not in body, where
        assert response.mimetype != "application/pdf", where
    # the staff session itself is untouched
    assert client.get("/staff/").status_code == 200


def test_the_same_customer_routes_open_for_the_customer(app: Flask, client: FlaskClient) -> None:
    """The control: the enumeration above does hold the customer's own pages."""
    customer = make_customer()
    invoice = make_invoice(customer, number="OWN-INV-1")
    login_as(client, customer)
    urls = {
        url
        for endpoint, method, url in _every_customer_url(
            app,
            {
                "number": invoice.number,
                "payment_id": 1,
                "checkout_id": 1,
                "dispute_id": 1,
                "file_id": 1,
                "plan_id": 1,
                "installment": 0,
            },
        )
        if method == "GET" and endpoint in ("customers.account", "invoices.detail")
    }
    assert urls == {"/account", "/invoices/OWN-INV-1"}
    for url in urls:
        assert client.get(url).status_code == 200, url
