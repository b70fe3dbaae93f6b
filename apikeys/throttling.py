"""The per-project rate limit: raises the decision that the request's key resolution made.

The window is counted by `apikeys.resolution` (fixed one-minute windows of
`engagement_platform.ratelimit`, in the shared cache); this class only applies it after the
scope check, in the contract's failure order.
"""

import logging

from rest_framework.throttling import BaseThrottle

logger = logging.getLogger("engagement_platform.ratelimit")


class ProjectRateLimit(BaseThrottle):
    def allow_request(self, request, view):
        resolution = getattr(request, "resolution", None)
        if request.user is None or resolution is None:  # views without a key (schema, docs) are not counted
            return True
        refusal = resolution.refusal
        if refusal is not None:
            raise refusal
        if resolution.rate is None:
            logger.warning("rate limit cache unavailable, failing open")
        return True
