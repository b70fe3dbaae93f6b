from django.conf import settings
from django.core.checks import Warning, register


@register(deploy=True)
def rate_limit_cache_is_shared(app_configs, **kwargs):
    """A deployment check (`check --deploy`): local development runs on the per-process cache on purpose."""
    backend = settings.CACHES["default"]["BACKEND"]
    if backend.endswith(("LocMemCache", "DummyCache")):
        return [
            Warning(
                "The rate limit is counted in a per-process cache, so each worker process counts its own "
                "requests (and reads every key from the database).",
                hint="Set CACHE_URL (or REDIS_URL) to a Redis URL so every worker shares one count.",
                id="apikeys.W001",
            )
        ]
    return []
