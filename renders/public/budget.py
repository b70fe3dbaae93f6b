"""The public routes' rate limit: one budget per share and client IP for every route behind the share's token.

The share page, its file, download and print routes, and the email's open pixel and tracked link all
spend from the same budget of `PUBLIC_RATE_LIMIT_PER_MINUTE` requests a minute, counted in the shared
cache (so across every server process, like the API's per-project limit). When the shared cache cannot
be reached, requests go through: a public page is never refused for a cache outage.
"""

import logging
import time

from django.conf import settings

from apikeys.keycache import count_request
from engagement_platform.ratelimit import (
    RateLimitUnavailable,
    WindowDecision,
    count_in_window,
    counter_key,
    decide,
    window_of,
)

logger = logging.getLogger("engagement_platform.public")


def budget_key(*, share_id, source_ip: str | None) -> str:
    return f"public:{share_id}:{source_ip or '-'}"


def public_budget_spend(*, share, source_ip: str | None) -> WindowDecision | None:
    """Count one request of `source_ip` on `share`'s routes: the refusal when past the budget, else None."""
    try:
        decision = count_in_window(key=budget_key(share_id=share.pk, source_ip=source_ip),
                                   limit=settings.PUBLIC_RATE_LIMIT_PER_MINUTE)
    except RateLimitUnavailable as exc:
        logger.warning("public rate limit unavailable, request let through", extra={"error": str(exc)})
        return None
    return None if decision.allowed else decision


def public_budget_spend_at_epoch(*, share, source_ip: str | None, epoch: int) -> tuple[bool, WindowDecision | None]:
    """Count one request on `share`'s budget in the round trip that checks the keys epoch is still `epoch`
    (a kept link, renders/public/kept_links.py): (whether it was, the refusal or None). Not counted when the
    epoch moved. Raises when the shared cache is unreachable."""
    at = time.time()
    window = window_of(at)
    _epoch, count = count_request(counter_key=counter_key(budget_key(share_id=share.pk, source_ip=source_ip), window),
                                  expected_epoch=epoch)
    if count is None:
        return False, None
    decision = decide(limit=settings.PUBLIC_RATE_LIMIT_PER_MINUTE, count=count, window=window, at=at)
    return True, None if decision.allowed else decision
