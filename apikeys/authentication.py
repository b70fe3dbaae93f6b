"""`Authorization: Bearer <key>` → (project, key), in the contract's failure order."""

from django.db.models import Q
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from apikeys.models import LAST_USED_WRITE_INTERVAL, ApiKey, looks_like_key
from apikeys.selectors import apikey_for_raw_key
from engagement_platform.clock import now
from engagement_platform.errors import ProjectDeleted, Unauthorized


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        raw_key = bearer_token(request)
        key = apikey_for_raw_key(raw_key) if raw_key and looks_like_key(raw_key) else None
        at = now()
        if key is None or not key.matches(raw_key) or not key.is_usable(at):
            raise Unauthorized()
        if key.project.is_deleted:
            raise ProjectDeleted()
        touch_last_used(key, at)
        return (key.project, key)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


def bearer_token(request) -> str | None:
    try:
        header = get_authorization_header(request).decode("ascii")
    except UnicodeError:  # not Latin-1 (encoding) or not ASCII (decoding): not a key of ours
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def touch_last_used(key: ApiKey, at) -> None:
    """Write `last_used_at` at most once per interval, not on every request."""
    if key.last_used_at is not None and at - key.last_used_at < LAST_USED_WRITE_INTERVAL:
        return
    threshold = at - LAST_USED_WRITE_INTERVAL
    ApiKey.objects.filter(pk=key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=threshold)
    ).update(last_used_at=at)
    key.last_used_at = at
