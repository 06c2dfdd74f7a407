"""Staff sign-in: password then TOTP, sessions of their own, roles."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import select

from portal.access.models import PrincipalSession
from portal.extensions import db
from tests.factories import login_as, login_as_staff, make_customer, make_staff


def test_specialist_signs_in_with_password_and_totp(client: FlaskClient) -> None:
    member = make_staff("specialist")
    response = login_as_staff(client, member)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/staff/")
    page = client.get("/staff/")
    assert page.status_code == 200
    assert member.name in page.text
    row = db.session.scalar(select(PrincipalSession).where(PrincipalSession.staff_id == member.id))
    assert row is not None
    assert row.principal_kind == "staff"
    cookie = client.get_cookie("portal_staff", path="/staff")
    assert cookie is not None
    assert cookie.http_only


def test_first_sign_in_enrols_totp(client: FlaskClient) -> None:
    member = make_staff("admin", enrolled=False)
    response = login_as_staff(client, member)
    assert response.status_code == 302
    db.session.refresh(member)
    assert member.mfa_enrolled
    assert member.totp_secret
    assert client.get("/staff/").status_code == 200


def test_anonymous_is_sent_to_sign_in(client: FlaskClient) -> None:
    response = client.get("/staff/")
    assert response.status_code == 302
    assert "/staff/login" in response.headers["Location"]


def test_customer_session_does_not_open_staff_pages(client: FlaskClient) -> None:
    login_as(client, make_customer())
    assert client.get("/account").status_code == 200
    response = client.get("/staff/")
    assert response.status_code == 302
    assert "/staff/login" in response.headers["Location"]


def test_staff_session_does_not_open_customer_pages(staff_client: FlaskClient) -> None:
    assert staff_client.get("/staff/").status_code == 200
    assert staff_client.get("/account").status_code == 401


def test_staff_errors_use_the_staff_layout_and_words(staff_client: FlaskClient) -> None:
    """A missing page under /staff says so in the staff layout (its nav, its sign-out),
    not the customer's "open the link from your email"; a specialist on an admin page is
    told it is their role."""
    missing = staff_client.get("/staff/no-such-page")
    assert missing.status_code == 404
    assert 'class="staff"' in missing.text
    assert "The page or record you asked for does not exist." in missing.text
    assert "Email me a new link" not in missing.text
    assert "Go to the staff dashboard" in missing.text

    admin_only = staff_client.get("/staff/admin/staff")
    assert admin_only.status_code == 403
    assert "Your role does not include this page" in admin_only.text


def test_customer_errors_keep_the_customer_layout(client: FlaskClient) -> None:
    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    assert 'class="staff"' not in missing.text
    assert "Email me a new link" in missing.text
