"""Rate limits shared through Redis, as several app processes would need them."""

from __future__ import annotations

import os
import uuid

import pytest
import redis

from tests.conftest import build_test_app

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except redis.exceptions.RedisError:
        return False


@pytest.mark.skipif(not _redis_available(), reason=f"no Redis at {REDIS_URL}")
def test_link_rate_limit_is_shared_between_app_instances(tmp_path):
    # given two app processes' worth of apps on one Redis, with a small limit
    prefix = f"portal-test-{uuid.uuid4().hex}"
    settings = {
        "RATELIMIT_STORAGE_URI": REDIS_URL,
        "RATELIMIT_KEY_PREFIX": prefix,
        "LINK_RATE_LIMIT": "3 per minute",
    }
    # One `limiter` object serves every app in this process and each `init_app` gives it
    # a new storage, so the second app is built only after the first has counted: its
    # guesses can then be refused only by counts the first app left in Redis.
    first = build_test_app(f"sqlite:///{tmp_path / 'a.db'}", **settings)
    try:
        # when one client spends its guesses on the first process
        statuses = [first.test_client().get(f"/l/guess-{i}").status_code for i in range(3)]
        # and goes on with a second process
        second = build_test_app(f"sqlite:///{tmp_path / 'b.db'}", **settings)
        statuses += [second.test_client().get(f"/l/guess-{i}").status_code for i in range(3, 6)]
        # then the second refuses it: the three guesses the first counted are shared
        assert statuses == [404, 404, 404, 429, 429, 429]
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"*{prefix}*"):  # limits writes LIMITS:LIMITER/<prefix>/…
            client.delete(key)
        client.close()
