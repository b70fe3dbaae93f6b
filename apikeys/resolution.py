"""Key resolution: a request's bearer key → its principal (project, key) and its rate-limit decision.

The one place that decides who a keyed request is and whether it may go on, in the contract's
failure order: no, malformed, unknown, revoked or expired key → 401 (`Unauthorized`); the key's
project soft-deleted → 403 (`ProjectDeleted`), both raised here; the key lacks the route's scope
→ 403, then over the project's rate limit → 429, both returned in the `Resolution` for the
permission and throttle checks to raise (`apikeys.permissions`, `apikeys.throttling`), so the
response still carries the window's `X-RateLimit-*` headers.

Where the cache is shared (Redis), a key verified by this worker is taken from its kept keys
(`apikeys.keycache`) and one round trip both confirms the keys epoch did not move and counts the
request; a moved epoch sends the key back to the database. Without a shared epoch every request
reads the key from the database (one indexed join), so a change made in any process applies from
the next request. A request refused before it is counted (401, 403) does not count.
"""

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q

from apikeys.keycache import count_request, current_epoch, local_keys, shared_epoch_available
from apikeys.models import LAST_USED_WRITE_INTERVAL, ApiKey, Project, hash_key, looks_like_key
from apikeys.selectors import apikey_with_project_by_hash
from engagement_platform import ratelimit
from engagement_platform.clock import now
from engagement_platform.errors import (
    ApiError,
    InsufficientScope,
    ProjectDeleted,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
)
from engagement_platform.ratelimit import RateLimitUnavailable, WindowDecision

logger = logging.getLogger("engagement_platform.ratelimit")


@dataclass(frozen=True)
class Resolution:
    project: Project
    key: ApiKey
    missing_scope: str | None  # the route's scope that the key lacks (403, not counted)
    rate: WindowDecision | None  # the project's window after this request; None: the shared cache is unreachable

    @property
    def refusal(self) -> ApiError | None:
        """Why the request may not go on past its key checks (scope, then rate limit), or None."""
        if self.missing_scope is not None:
            return InsufficientScope(self.missing_scope)
        if self.rate is None:
            if settings.RATE_LIMIT_FAIL_OPEN:
                return None
            return ServiceUnavailable("The rate limiter is unavailable; retry shortly.")
        if not self.rate.allowed:
            return RateLimited(self.rate.retry_after)
        return None


def rate_limit_key(project: Project) -> str:
    """The per-project window's name in `engagement_platform.ratelimit`."""
    return f"project:{project.pk}"


def resolve_request(*, raw_key: str | None, scope: str | None) -> Resolution:
    """Resolve `raw_key` for a route that requires `scope` (None: no scope check, e.g. a 405 to come).

    Raises `Unauthorized` (401) and `ProjectDeleted` (403). Counts the request in its project's
    window unless the key lacks `scope`.
    """
    if not raw_key or not looks_like_key(raw_key):
        raise Unauthorized()
    digest = hash_key(raw_key)
    at = now()
    moment = at.timestamp()
    window = ratelimit.window_of(moment)
    shared = shared_epoch_available()
    epoch = None
    cache_down = False
    if shared:
        entry = local_keys.get(digest)
        # A kept key answers only a request it lets through: a refusal is confirmed in the database.
        if entry is not None and entry.value.matches(raw_key) and _passes(entry.value, at, scope):
            key = entry.value
            try:
                epoch, count = count_request(
                    counter_key=ratelimit.counter_key(rate_limit_key(key.project), window),
                    expected_epoch=entry.epoch)
            except Exception as exc:  # Redis is down or unreachable: nothing kept can be trusted
                logger.warning("keys epoch unavailable: %s", type(exc).__name__)
                local_keys.clear()
                shared, cache_down = False, True
            else:
                if count is not None:  # the epoch did not move: the kept key is the database's truth
                    return _admitted(key, at, scope, ratelimit.decide(
                        limit=key.project.rate_limit_per_minute, count=count, window=window, at=moment))
                # The epoch moved: not counted; read the key again below, tagged with the new epoch.
    if shared and epoch is None:
        # Read before the database: a change committed after this read moves the epoch again.
        try:
            epoch = current_epoch()
        except Exception as exc:  # unreachable: answer from the database, keep nothing
            logger.warning("keys epoch unavailable: %s", type(exc).__name__)
            local_keys.clear()
            shared, cache_down = False, True
    key = apikey_with_project_by_hash(digest)
    if key is None or not key.matches(raw_key):
        local_keys.drop(digest)
        raise Unauthorized()
    if shared:
        local_keys.keep(digest, key, epoch=epoch)
    # With the cache known to be unreachable, no second attempt to count: the rate is unknown.
    return _admitted(key, at, scope, None, moment=None if cache_down else moment)


def _passes(key: ApiKey, at, scope: str | None) -> bool:
    return key.is_usable(at) and not key.project.is_deleted and (scope is None or key.has_scope(scope))


def _admitted(key: ApiKey, at, scope: str | None, rate: WindowDecision | None, *,
              moment: float | None = None) -> Resolution:
    """Apply the key checks in order and decide the rate: `rate` when given, else measured at `moment`
    (counted unless the scope is missing); neither: the shared cache is known to be unreachable."""
    if not key.is_usable(at):
        raise Unauthorized()
    if key.project.is_deleted:
        raise ProjectDeleted()
    missing_scope = scope if scope is not None and not key.has_scope(scope) else None
    if rate is None and moment is not None:
        rate = _decide_rate(key.project, counted=missing_scope is None, at=moment)
    touch_last_used(key, at)
    return Resolution(project=key.project, key=key, missing_scope=missing_scope, rate=rate)


def _decide_rate(project: Project, *, counted: bool, at: float) -> WindowDecision | None:
    measure = ratelimit.count_in_window if counted else ratelimit.window_state
    try:
        return measure(key=rate_limit_key(project), limit=project.rate_limit_per_minute, at=at)
    except RateLimitUnavailable as exc:
        logger.warning("rate limit cache unavailable: %s", exc)
        return None


def touch_last_used(key: ApiKey, at) -> None:
    """Write `last_used_at` at most once per interval, not on every request."""
    if key.last_used_at is not None and at - key.last_used_at < LAST_USED_WRITE_INTERVAL:
        return
    threshold = at - LAST_USED_WRITE_INTERVAL
    key.last_used_at = at  # first, so concurrent requests of this worker do not all write
    ApiKey.objects.filter(pk=key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=threshold)
    ).update(last_used_at=at)
