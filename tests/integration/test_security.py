"""The security baseline every page carries."""

from __future__ import annotations

import re

import pytest

from portal import create_app
from portal.config import ConfigurationError
from tests.factories import login_as, make_customer


@pytest.mark.parametrize("path", ["/", "/accessibility", "/link/new", "/l/unknown", "/nowhere"])
def test_every_page_sends_security_headers(client, path):
    response = client.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp
    assert re.search(r"script-src 'self' 'nonce-[A-Za-z0-9_-]+'", csp)
    assert "https://" not in csp  # no third-party origin
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "Strict-Transport-Security" not in response.headers  # development and tests


def test_pages_have_no_inline_script_without_nonce(client):
    login_as(client, make_customer())
    for path in ("/account", "/", "/accessibility"):
        html = client.get(path).text
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "nonce=" in tag or "src=" in tag, tag
        assert not re.search(r"<[^>]+\son(click|load|error|submit)=", html)


def test_session_cookie_is_httponly_and_samesite(client):
    response = login_as(client, make_customer())
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_personal_pages_are_not_cached(client):
    login_as(client, make_customer())
    assert client.get("/account").headers["Cache-Control"] == "no-store"


def test_error_pages_are_localized_and_leak_nothing(client):
    response = client.get("/nowhere", headers={"Accept-Language": "de"})
    assert response.status_code == 404
    assert "Traceback" not in response.text
    assert '<html lang="de">' in response.text


def test_unexpected_error_is_a_calm_500(app, client, monkeypatch):
    import portal.site.views as site_views

    def explode():
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(site_views, "render_template", lambda *a, **k: explode())
    app.config["PROPAGATE_EXCEPTIONS"] = False
    try:
        response = client.get("/accessibility")
    finally:
        app.config["PROPAGATE_EXCEPTIONS"] = None
    assert response.status_code == 500
    assert "hunter2" not in response.text
    assert "Nothing was changed" in response.text


def test_production_refuses_to_start_without_secret_key(monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    from portal import config

    monkeypatch.setattr(config.ProductionConfig, "SECRET_KEY", None)
    with pytest.raises(ConfigurationError):
        create_app(env_name="production")


def test_production_requires_https_base_url(monkeypatch):
    from portal import config

    monkeypatch.setattr(config.ProductionConfig, "SECRET_KEY", "x" * 40)
    with pytest.raises(ConfigurationError):
        create_app({"PORTAL_BASE_URL": "http://pay.example.com"}, env_name="production")


def test_production_sends_hsts(monkeypatch, tmp_path):
    from portal import config

    monkeypatch.setattr(config.ProductionConfig, "SECRET_KEY", "x" * 40)
    app = create_app(
        {
            "PORTAL_BASE_URL": "https://pay.example.com",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'p.db'}",
        },
        env_name="production",
    )
    response = app.test_client().get("/accessibility", base_url="https://pay.example.com")
    assert "max-age=31536000" in response.headers["Strict-Transport-Security"]
    plain = app.test_client().get("/accessibility", base_url="http://pay.example.com")
    assert plain.status_code in (301, 302)
    assert plain.headers["Location"].startswith("https://")


def test_a_production_app_does_not_change_another_apps_headers(client, monkeypatch, tmp_path):
    from portal import config

    monkeypatch.setattr(config.ProductionConfig, "SECRET_KEY", "x" * 40)
    create_app(
        {
            "PORTAL_BASE_URL": "https://pay.example.com",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'p.db'}",
        },
        env_name="production",
    )
    response = client.get("/accessibility")
    assert response.status_code == 200
    assert "Strict-Transport-Security" not in response.headers


def test_unknown_environment_is_refused():
    with pytest.raises(ConfigurationError):
        create_app(env_name="staging")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_database_url_forms(given, expected):
    from portal.config import normalize_database_url

    assert normalize_database_url(given) == expected
