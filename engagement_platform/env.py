"""Read configuration from the environment, one typed helper for every variable."""

import os

from django.core.exceptions import ImproperlyConfigured

_MISSING = object()
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _to_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def _to_list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


_CASTS = {bool: _to_bool, list: _to_list, int: int, float: float, str: str}


def get_from_env(name: str, default=_MISSING, *, cast=str):
    """Return the variable cast to `cast`; refuse a missing one without a default."""
    raw = os.environ.get(name)
    if raw is None:
        if default is _MISSING:
            raise ImproperlyConfigured(f"The environment variable {name} is required.")
        return default
    try:
        return _CASTS[cast](raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"The environment variable {name} is invalid: {exc}") from exc
