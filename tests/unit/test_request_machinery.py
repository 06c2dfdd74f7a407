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
