"""`Authorization: Bearer <key>` → (project, key): a thin check over `apikeys.resolution`.

Resolving the key also decides the route's scope and the request's rate-limit count in one step
(`resolve_request`); the permission and throttle classes raise what it decided, in that order.
"""

from rest_framework.authentication import BaseAuthentication

from apikeys.permissions import required_scope_of_request
from apikeys.resolution import resolve_request


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        view = (getattr(request, "parser_context", None) or {}).get("view")
        scope = required_scope_of_request(view, request.method) if view is not None else None
        resolution = resolve_request(raw_key=bearer_token(request), scope=scope)
        request.resolution = resolution
        return (resolution.project, resolution.key)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


def bearer_token(request) -> str | None:
    header = request._request.META.get("HTTP_AUTHORIZATION", "")
    if not isinstance(header, str) or not header.isascii():  # not ASCII: not a key of ours
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
