"""The per-request machinery's own rules: the connection ping, the CSP pieces, the
per-view security options."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from portal.db import ping_when_idle
from portal.security import ViewSecurity, compile_policy


def _counting_engine(monkeypatch: pytest.MonkeyPatch, *, fail_first: bool = False) -> Any:
    engine = sa.create_engine("sqlite://", poolclass=sa.pool.QueuePool, pool_size=1)
    pings: list[int] = []

    def do_ping(dbapi_connection: Any) -> bool:
        pings.append(id(dbapi_connection))
        if fail_first and len(pings) == 1:
            raise RuntimeError("server closed the connection unexpectedly")
        return True

    monkeypatch.setattr(engine.dialect, "do_ping", do_ping)
    return engine, pings


def test_a_connection_used_moments_ago_is_not_pinged(monkeypatch):
    engine, pings = _counting_engine(monkeypatch)
    ping_when_idle(engine, 10)
    for _ in range(3):
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    assert pings == []


def test_with_zero_seconds_every_checkout_is_pinged(monkeypatch):
    engine, pings = _counting_engine(monkeypatch)
    ping_when_idle(engine, 0)
    for _ in range(3):
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    assert len(pings) == 3


def test_a_connection_that_fails_its_ping_is_replaced(monkeypatch):
    # given a pooled connection whose ping fails (dropped while idle)
    engine, pings = _counting_engine(monkeypatch, fail_first=True)
    ping_when_idle(engine, 0)
    # when it is checked out, then the pool hands out a fresh one, and the query works
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT 1")).scalar() == 1
    assert len(pings) == 2
    assert pings[0] != pings[1]


def test_the_policy_splits_around_the_nonce_in_the_named_sections_only():
    pieces = compile_policy(
        {
            "default-src": "'self'",
            "script-src": ["'self'", "https://js.example"],
            "img-src": "data:",
        },
        ["script-src"],
    )
    assert "N".join(pieces) == (
        "default-src 'self'; script-src 'self' https://js.example 'nonce-N'; img-src data:"
    )
    assert compile_policy({"default-src": "'none'", "sandbox": ""}, []) == (
        "default-src 'none'; sandbox ",
    )


def test_a_view_security_option_not_supported_is_refused():
    with pytest.raises(TypeError):
        ViewSecurity()(force_https=True)
    view = ViewSecurity()(frame_options="SAMEORIGIN")(lambda: "")
    assert view.talisman_view_options == {"frame_options": "SAMEORIGIN"}


@pytest.mark.parametrize("payload", ["a" * 40, {"csrf_token": "b" * 40, "notes": "c" * 500}])
def test_our_signed_tokens_are_itsdangerous_tokens(payload):
    from itsdangerous import BadSignature, URLSafeTimedSerializer

    from portal.security import PortalSerializer

    ours = PortalSerializer("secret", salt="wtf-csrf-token")
    theirs = URLSafeTimedSerializer("secret", salt="wtf-csrf-token")
    assert theirs.loads(ours.dumps(payload)) == payload
    assert ours.loads(theirs.dumps(payload)) == payload
    with pytest.raises(BadSignature):
        URLSafeTimedSerializer("other", salt="wtf-csrf-token").loads(ours.dumps(payload))


def test_our_session_cookie_is_flasks_session_cookie():
    # given the same app signing its session with Flask's interface and with ours
    from flask import Flask
    from flask.sessions import SecureCookieSessionInterface

    from portal.security import PortalSessionInterface

    app = Flask(__name__)
    app.secret_key = "secret"
    ours = PortalSessionInterface().get_signing_serializer(app)
    theirs = SecureCookieSessionInterface().get_signing_serializer(app)
    data = {"csrf_token": "a" * 40, "locale": "de"}
    # then each reads the other's cookie, and both sign the same bytes (C HMAC or not)
    assert theirs.loads(ours.dumps(data)) == data
    assert ours.loads(theirs.dumps(data)) == data
    signer_ours, signer_theirs = ours.make_signer(), theirs.make_signer()
    assert signer_ours.get_signature(b"payload") == signer_theirs.get_signature(b"payload")


@pytest.mark.parametrize(
    ("data", "modified", "accessed", "permanent"),
    [
        ({}, False, False, False),
        ({}, False, True, False),  # read, though empty: Vary: Cookie
        ({}, True, True, False),  # emptied: the cookie is deleted
        ({"locale": "de"}, False, False, False),
        ({"locale": "de"}, False, True, False),
        ({"locale": "de"}, False, True, True),  # permanent: refreshed on each request
        ({"locale": "de"}, True, True, False),
    ],
)
def test_our_session_saving_sets_the_headers_flask_sets(data, modified, accessed, permanent):
    # given a session in each state, saved by Flask's interface and by ours
    from flask import Flask, Response
    from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

    from portal.security import PortalSessionInterface

    app = Flask(__name__)
    app.secret_key = "secret"
    responses = []
    for interface in (SecureCookieSessionInterface(), PortalSessionInterface()):
        session = SecureCookieSession(data)
        if permanent:  # (setting it at all stores a key: the session is no longer empty)
            session.permanent = True
        session.modified, session.accessed = modified, accessed
        response = Response()
        with app.test_request_context():
            interface.save_session(app, session, response)
        responses.append(response)
    # then both responses carry the same Vary and Set-Cookie (up to the signature's time)
    theirs, ours = responses
    assert ours.headers.get("Vary") == theirs.headers.get("Vary")
    assert [c.split("=", 1)[0] for c in ours.headers.getlist("Set-Cookie")] == [
        c.split("=", 1)[0] for c in theirs.headers.getlist("Set-Cookie")
    ]


def test_a_header_a_view_set_is_replaced_and_its_cache_control_kept():
    from flask import Flask, Response

    from portal.security import SecurityHeaders

    app = Flask(__name__)
    headers = SecurityHeaders(
        csp={"default-src": "'self'"},
        nonce_in=[],
        frame_options="DENY",
        referrer_policy="no-referrer",
        hsts_max_age=None,
    )
    app.after_request(headers.apply)

    @app.get("/own")
    def own() -> Response:
        return Response("x", headers={"X-Frame-Options": "SAMEORIGIN", "Cache-Control": "private"})

    response = app.test_client().get("/own")
    assert response.headers.getlist("X-Frame-Options") == ["DENY"]
    assert response.headers.getlist("Cache-Control") == ["private"]
    assert response.headers["Content-Security-Policy"] == "default-src 'self'"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_a_header_value_with_a_newline_is_refused():
    from portal.security import SecurityHeaders

    with pytest.raises(ValueError, match="newline"):
        SecurityHeaders(
            csp={"default-src": "'self'\r\nSet-Cookie: x=1"},
            nonce_in=[],
            frame_options="DENY",
            referrer_policy="no-referrer",
            hsts_max_age=None,
        )


def test_context_processors_run_once_each_app_ones_first(app):
    # given the app's processors and a blueprint's (Flask copies its default one into it)
    from flask import render_template_string

    with app.test_request_context("/accessibility"):
        from flask import request

        assert request.blueprints == ["site"]
        processors = app._processors_of((None, "site"))
        assert processors.count(processors[0]) == 1  # Flask's default: once
        assert processors[0].__name__ == "_default_template_ctx_processor"
        # then a template sees what they give, and what the view passes wins
        html = render_template_string("{{ signed_in }} {{ request.path }} {{ x }}", x="mine")
        assert html == "False /accessibility mine"


def test_a_template_context_has_every_global_and_its_own_over_them(app):
    with app.test_request_context("/"):
        template = app.jinja_env.from_string("{{ csrf_token is defined }} {{ range }}")
        assert template.render(range="mine") == "True mine"
        own = app.jinja_env.from_string("{{ extra }}", globals={"extra": "its own"})
        assert own.render() == "its own"
