"""The per-project rate limit: a fixed one-minute window counted in the shared cache."""

import logging
import math
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from engagement_platform.errors import RateLimited, ServiceUnavailable

logger = logging.getLogger("engagement_platform.ratelimit")
WINDOW_SECONDS = 60


def rate_limit_hit(*, project_id, limit: int, at: float | None = None) -> int | None:
    """Count one request; return seconds to wait when over the limit, else None."""
    at = time.time() if at is None else at
    window = int(at // WINDOW_SECONDS)
    key = f"ratelimit:{project_id}:{window}"
    cache.add(key, 0, timeout=WINDOW_SECONDS + 5)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.add(key, 1, timeout=WINDOW_SECONDS + 5)
        count = 1
    if count > limit:
        return max(1, math.ceil((window + 1) * WINDOW_SECONDS - at))
    return None


class ProjectRateLimit(BaseThrottle):
    def allow_request(self, request, view):
        project = request.user
        if project is None:  # views without a key (schema, docs) are not counted per project
            return True
        try:
            wait = rate_limit_hit(project_id=project.pk, limit=project.rate_limit_per_minute)
        except Exception as exc:  # the cache server is down or unreachable
            if settings.RATE_LIMIT_FAIL_OPEN:
                logger.warning("rate limit cache unavailable, failing open: %s", type(exc).__name__)
                return True
            raise ServiceUnavailable("The rate limiter is unavailable; retry shortly.") from exc
        if wait is not None:
            raise RateLimited(wait)
        return True
