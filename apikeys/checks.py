from django.conf import settings
from django.core.checks import Warning, register


@register()
def rate_limit_cache_is_shared(app_configs, **kwargs):
    backend = settings.CACHES["default"]["BACKEND"]
    if not settings.DEBUG and backend.endswith(("LocMemCache", "DummyCache")):
        return [
            Warning(
                "The rate limit is counted in a per-process cache.",
                hint="Set CACHE_URL (or REDIS_URL) to a Redis URL so every worker shares one count.",
                id="apikeys.W001",
            )
        ]
    return []
