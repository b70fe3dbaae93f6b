"""`Authorization: Bearer <key>` → (project, key), in the contract's failure order.

The key is taken from the worker's verified keys (`apikeys.keycache`) when it holds it; the
request's rate-limit round trip then confirms that entry is current (`apikeys.throttling`).
A refusal (401, 403) is always confirmed by a database read first.
"""

from django.db.models import Q
from rest_framework.authentication import BaseAuthentication

from apikeys.keycache import VerifiedKey, local_keys
from apikeys.models import LAST_USED_WRITE_INTERVAL, ApiKey, hash_key, looks_like_key
from engagement_platform.clock import now
from engagement_platform.errors import ProjectDeleted, Unauthorized


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        raw_key = bearer_token(request)
        if not raw_key or not looks_like_key(raw_key):
            raise Unauthorized()
        digest = hash_key(raw_key)
        at = now()
        entry = local_keys.get(digest)
        if entry is None or entry.refuses(at):
            entry = local_keys.load(digest)
        if entry is None or not entry.key.matches(raw_key):
            raise Unauthorized()
        return admit(request, entry, at)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


def admit(request, entry: VerifiedKey, at=None) -> tuple:
    """Apply the key checks (401, then 403 for a deleted project) and attach `entry` to the request."""
    at = at or now()
    key = entry.key
    if not key.is_usable(at):
        raise Unauthorized()
    if key.project.is_deleted:
        raise ProjectDeleted()
    touch_last_used(key, at)
    request.verified_key = entry
    return (key.project, key)


def reverify(request, *, epoch=None, read_epoch: bool = True) -> VerifiedKey:
    """Read the request's key again from the database and answer from that (401, 403 deleted project).

    For an entry that may be stale: the shared epoch moved, a cached key lacked a scope, or the
    shared cache is unreachable. Replaces the request's project and key with the fresh ones.
    """
    entry = local_keys.load(request.verified_key.digest, epoch=epoch, read_epoch=read_epoch)
    if entry is None:
        raise Unauthorized()
    request.user, request.auth = admit(request, entry)
    return entry


def bearer_token(request) -> str | None:
    header = request._request.META.get("HTTP_AUTHORIZATION", "")
    if not isinstance(header, str) or not header.isascii():  # not ASCII: not a key of ours
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
    key.last_used_at = at  # first, so concurrent requests of this worker do not all write
    ApiKey.objects.filter(pk=key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=threshold)
    ).update(last_used_at=at)
