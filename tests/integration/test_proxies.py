"""Behind reverse proxies: the client address comes from X-Forwarded-For as far as
PROXY_FIX_X_FOR trusted proxies wrote it; the https redirect goes to PORTAL_BASE_URL;
logs never hold a link's token."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from portal import create_app
from portal.extensions import limiter
from portal.security import redact_links

pytestmark = pytest.mark.usefixtures("db_session")


def _app(tmp_path, env_name: str = "testing", **config: object) -> Flask:
    settings: dict[str, object] = {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'proxy.db'}",
        "PORTAL_BASE_URL": "https://pay.example.com",
        "LINK_RATE_LIMIT": "3 per minute",
        **config,
    }
    return create_app(settings, env_name=env_name)


def _open_links(app: Flask, forwarded_for: str, times: int = 1) -> list[int]:
    """GET unknown links (404, each counted by the per-IP limit) through a proxy that
    appends the address it saw to the header the client sent."""
    client = app.test_client()
    return [
        client.get(
            f"/l/guess-{i}",
            headers={"X-Forwarded-For": forwarded_for},
            environ_base={"REMOTE_ADDR": "10.0.0.2"},  # the proxy itself
        ).status_code
        for i in range(times)
    ]


def test_rate_limit_keys_on_the_client_the_trusted_proxy_saw(tmp_path):
    # given one trusted proxy that appends the client's address
    app = _app(tmp_path, PROXY_FIX_X_FOR=1)
    limiter.reset()
    # when a client exhausts its limit while forging the header's first entries
    statuses = [
        *_open_links(app, "198.51.100.1, 203.0.113.7"),
        *_open_links(app, "198.51.100.2, 203.0.113.7"),
        *_open_links(app, "203.0.113.7"),
        *_open_links(app, "1.2.3.4, 203.0.113.7"),
    ]
    # then forging changes nothing: it is one client, 203.0.113.7
    assert statuses == [404, 404, 404, 429]
    # and another client behind the same proxy is not limited with it
    assert _open_links(app, "192.0.2.50") == [404]
    limiter.reset()


def test_without_proxy_fix_the_forwarded_header_is_ignored(tmp_path):
    # Direct exposure (PROXY_FIX_X_FOR=0): a client cannot choose its address by header.
    app = _app(tmp_path, PROXY_FIX_X_FOR=0)
    limiter.reset()
    statuses = [
        status
        for n in range(4)
        for status in _open_links(app, f"198.51.100.{n}")  # a new forged address each time
    ]
    assert statuses == [404, 404, 404, 429]  # all counted against the proxy's own address
    limiter.reset()


def test_https_redirect_goes_to_the_base_url_never_the_host_header(tmp_path, monkeypatch):
    from portal import config

    monkeypatch.setattr(config.ProductionConfig, "SECRET_KEY", "x" * 40)
    app = _app(tmp_path, env_name="production", PROXY_FIX_X_FOR=1)
    client = app.test_client()
    # a plain-http request with a forged Host (and forwarded host)
    response = client.get(
        "/accessibility?x=1",
        base_url="http://evil.example",
        headers={"X-Forwarded-Proto": "http", "X-Forwarded-Host": "evil.example"},
    )
    assert response.status_code == 301
    assert response.headers["Location"] == "https://pay.example.com/accessibility?x=1"
    # and what the proxy says arrived over https is served
    secure = client.get(
        "/accessibility", base_url="http://pay.example.com", headers={"X-Forwarded-Proto": "https"}
    )
    assert secure.status_code == 200


def test_logs_never_hold_a_links_token(app, caplog):
    token = "Xy7_" + "a" * 39
    caplog.set_level(logging.INFO)
    for name in ("werkzeug", "gunicorn.access", "portal.jobs"):
        logging.getLogger(name).info('"GET /l/%s HTTP/1.1" 200', token)
    app.logger.error("Exception on /l/%s [POST]", token)
    assert token not in caplog.text
    assert caplog.text.count("/l/[redacted]") == 4
    assert redact_links("https://x.test/l/" + token + "?a") == "https://x.test/l/[redacted]?a"


def test_logs_never_hold_an_opt_out_token(app, caplog):
    from portal.customers.models import Customer
    from portal.notifications.services import unsubscribe_token

    with app.test_request_context():
        token = unsubscribe_token(Customer(id=7, account_number="A", name="N", email="e@x.y"))
        assert "." in token  # itsdangerous: payload.timestamp.signature
        caplog.set_level(logging.INFO)
        for name in ("werkzeug", "gunicorn.access", "portal.jobs"):
            logging.getLogger(name).info('"POST /email/opt-out/%s HTTP/1.1" 204', token)
        assert token not in caplog.text
        assert caplog.text.count("/email/opt-out/[redacted]") == 3
