"""A test's own corner of a Redis server: a key prefix of its own, and a cleanup that deletes only those keys.

The Redis server the tests use may be shared (other suites, other databases' runs): nothing here
flushes a database or the server's script cache.
"""

import uuid

import pytest


def redis_url_or_skip() -> str:
    from tests.test_secrets import _redis_url

    url = _redis_url()
    if url is None:
        pytest.skip("needs a Redis server (TEST_REDIS_URL or redis://127.0.0.1:6379/15)")
    return url


def redis_cache_settings(url: str, prefix: str | None = None) -> dict:
    """CACHES for a RedisCache on `url` whose keys all start with `prefix` (a fresh one when None)."""
    return {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url,
                        "KEY_PREFIX": prefix or f"test-{uuid.uuid4().hex}"}}


def clear_test_cache() -> None:
    """Empty the default cache between tests: a per-process one entirely, a Redis one only under its own
    prefix (a Redis cache without a prefix is left alone: its database may be someone else's too)."""
    from django.conf import settings
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    if not isinstance(caches["default"], RedisCache):
        caches["default"].clear()
    elif settings.CACHES["default"].get("KEY_PREFIX"):
        delete_own_keys(settings.CACHES)


def delete_own_keys(caches_setting: dict) -> int:
    """Delete the keys of a cache configured by `redis_cache_settings` (its prefix only)."""
    import redis

    config = caches_setting["default"]
    prefix = config.get("KEY_PREFIX")
    if not prefix:
        raise ValueError("a cache without a KEY_PREFIX shares its keys: refusing to delete them")
    client = redis.Redis.from_url(config["LOCATION"])
    try:
        names = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        return client.delete(*names) if names else 0
    finally:
        client.close()
