"""Fixed one-minute rate-limit windows, counted in the shared cache.

The window math (which window a moment falls in, when it ends, how long to wait) and the count
itself are written here once. Every limiter uses them: the per-project API limit (through the
keys epoch script of `apikeys.resolution`, which applies the same math) and the per-share-and-IP
budget of the public share routes (`count_in_window`).

A count goes to the shared cache: on Redis one round trip on the cache's kept connection
(`engagement_platform.redis_kept`), an atomic INCR that sets the window's expiry on its first
count; on any other backend (the per-process cache of tests and local runs) the cache's own
`add` and `incr`. When the shared cache cannot be reached, `RateLimitUnavailable` is raised and
the caller decides whether to fail open or closed.
"""

import hashlib
import math
import time
from dataclasses import dataclass

from django.core.cache import caches

from engagement_platform.redis_kept import kept_connection

WINDOW_SECONDS = 60
# A window's counter outlives its window a little, so a count made at its last instant still expires.
COUNTER_TTL_SECONDS = WINDOW_SECONDS + 5

# KEYS: the window's counter. ARGV: its TTL. Returns the count including this request.
INCR_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return count
"""
INCR_SCRIPT_SHA = hashlib.sha1(INCR_SCRIPT.encode()).hexdigest()


class RateLimitUnavailable(Exception):
    """The shared cache that holds the counts cannot be reached."""


@dataclass(frozen=True)
class WindowDecision:
    limit: int
    remaining: int  # what is left in the current window after this request
    reset: int  # Unix seconds at which the current window ends
    retry_after: int | None  # seconds to wait; None: allowed

    @property
    def allowed(self) -> bool:
        return self.retry_after is None


def window_of(at: float) -> int:
    """The number of the window that moment `at` (Unix seconds) falls in."""
    return int(at // WINDOW_SECONDS)


def window_reset(window: int) -> int:
    """Unix seconds at which `window` ends."""
    return (window + 1) * WINDOW_SECONDS


def retry_after(window: int, at: float) -> int:
    """Whole seconds from `at` until `window` ends, at least 1."""
    return max(1, math.ceil(window_reset(window) - at))


def counter_key(key: str, window: int) -> str:
    """The cache key counting `key` (e.g. ``project:<id>``) in `window`."""
    return f"ratelimit:{key}:{window}"


def decide(*, limit: int, count: int, window: int, at: float) -> WindowDecision:
    """The decision for the `count`-th request of `window` (this request included) under `limit`."""
    return WindowDecision(
        limit=limit,
        remaining=max(0, limit - count),
        reset=window_reset(window),
        retry_after=retry_after(window, at) if count > limit else None,
    )


def not_counted(*, limit: int, count: int, window: int) -> WindowDecision:
    """What a request refused before it was counted reports: the window as it stands, allowed."""
    return WindowDecision(limit=limit, remaining=max(0, limit - count), reset=window_reset(window), retry_after=None)


def count_in_window(*, key: str, limit: int, at: float | None = None) -> WindowDecision:
    """Count one request for `key` in the current one-minute window and decide it against `limit`.

    Counted across every server process when the cache is shared (Redis). Raises
    `RateLimitUnavailable` when the shared cache cannot be reached.
    """
    at = time.time() if at is None else at
    window = window_of(at)
    try:
        count = _incr(counter_key(key, window))
    except Exception as exc:  # a down or unreachable cache server, whatever its client raises
        raise RateLimitUnavailable(type(exc).__name__) from exc
    return decide(limit=limit, count=count, window=window, at=at)


def window_state(*, key: str, limit: int, at: float | None = None) -> WindowDecision:
    """The current window of `key` as it stands, without counting a request (for one refused before
    it is counted). Raises `RateLimitUnavailable` when the shared cache cannot be reached."""
    at = time.time() if at is None else at
    window = window_of(at)
    try:
        count = _read(counter_key(key, window))
    except Exception as exc:
        raise RateLimitUnavailable(type(exc).__name__) from exc
    return not_counted(limit=limit, count=count, window=window)


def _read(name: str) -> int:
    backend = caches["default"]
    kept = kept_connection(backend)
    if kept is not None:
        return int(kept.execute("GET", backend.make_key(name)) or 0)
    return int(backend.get(name) or 0)


def _incr(name: str) -> int:
    backend = caches["default"]
    kept = kept_connection(backend)
    if kept is not None:
        keys = [backend.make_key(name)]
        return int(kept.execute("EVALSHA", INCR_SCRIPT_SHA, 1, *keys, COUNTER_TTL_SECONDS,
                                script=("EVAL", INCR_SCRIPT, 1, *keys, COUNTER_TTL_SECONDS)))
    # Not atomic across processes, which a per-process cache is not shared by anyway.
    backend.add(name, 0, timeout=COUNTER_TTL_SECONDS)
    try:
        return backend.incr(name)
    except ValueError:  # evicted between add and incr
        backend.add(name, 1, timeout=COUNTER_TTL_SECONDS)
        return 1
