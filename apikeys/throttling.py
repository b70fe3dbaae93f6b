"""The per-project rate limit: a fixed one-minute window counted in the shared cache.

The count is also the request's check that its key, when it came from the worker's cache, is
still current (`apikeys.keycache`): one round trip counts the request only if the keys epoch
did not move. When it moved, the key is read again from the database, the key and scope checks
are applied again in their order, and only a request that passes them is counted.
"""

import logging
import math
import time

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from apikeys.authentication import reverify
from apikeys.keycache import count_request
from apikeys.permissions import check_scope
from engagement_platform.errors import RateLimited, ServiceUnavailable

logger = logging.getLogger("engagement_platform.ratelimit")
WINDOW_SECONDS = 60
COUNTER_TTL_SECONDS = WINDOW_SECONDS + 5


def window_of(at: float) -> int:
    return int(at // WINDOW_SECONDS)


def counter_key(project_id, window: int) -> str:
    return f"ratelimit:{project_id}:{window}"


def retry_after(window: int, at: float) -> int:
    return max(1, math.ceil((window + 1) * WINDOW_SECONDS - at))


def rate_limit_hit(*, project_id, limit: int, at: float | None = None) -> int | None:
    """Count one request; return seconds to wait when over the limit, else None."""
    at = time.time() if at is None else at
    window = window_of(at)
    _, count = count_request(counter_key=counter_key(project_id, window), ttl=COUNTER_TTL_SECONDS,
                             expected_epoch=None)
    return retry_after(window, at) if count > limit else None


class ProjectRateLimit(BaseThrottle):
    def allow_request(self, request, view):
        entry = getattr(request, "verified_key", None)
        if request.user is None or entry is None:  # views without a key (schema, docs) are not counted
            return True
        at = time.time()
        window = window_of(at)
        try:
            epoch, count = count_request(counter_key=counter_key(request.user.pk, window), ttl=COUNTER_TTL_SECONDS,
                                         expected_epoch=entry.epoch)
        except Exception as exc:  # the cache server is down or unreachable
            return self.cache_unavailable(request, view, entry, exc)
        if count is None:  # the key may have changed since this worker cached it: not counted yet
            entry = reverify(request, epoch=epoch)
            check_scope(request, view)
            try:
                _, count = count_request(counter_key=counter_key(request.user.pk, window),
                                         ttl=COUNTER_TTL_SECONDS, expected_epoch=None)
            except Exception as exc:
                return self.cache_unavailable(request, view, entry, exc)
        if count > request.user.rate_limit_per_minute:
            raise RateLimited(retry_after(window, at))
        return True

    def cache_unavailable(self, request, view, entry, exc) -> bool:
        if not entry.fresh:  # nothing confirms the cached key: the database answers
            reverify(request, read_epoch=False)
            check_scope(request, view)
        if settings.RATE_LIMIT_FAIL_OPEN:
            logger.warning("rate limit cache unavailable, failing open: %s", type(exc).__name__)
            return True
        raise ServiceUnavailable("The rate limiter is unavailable; retry shortly.") from exc
