"""Scope checks. A view must declare its scopes: one that does not is refused, not opened."""

from django.core.exceptions import ImproperlyConfigured
from rest_framework.permissions import BasePermission

from engagement_platform.errors import InsufficientScope, Unauthorized


def required_scope_for(view, method: str) -> str:
    scopes = getattr(view, "required_scopes", None)
    if not scopes:
        raise ImproperlyConfigured(f"{type(view).__name__} declares no required_scopes.")
    if method == "HEAD":
        method = "GET"
    if method == "OPTIONS":  # describes the route: any scope the route declares will do, GET's first
        scope = scopes.get("GET") or next(iter(scopes.values()))
    else:
        scope = scopes.get(method)
    if scope is None:
        raise ImproperlyConfigured(f"{type(view).__name__} declares no scope for {method}.")
    return scope


def required_scope_of_request(view, method: str) -> str | None:
    """The scope a request needs; None for a method the view does not allow (it answers 405 itself)."""
    if method not in view.allowed_methods:
        return None
    return str(required_scope_for(view, method))


class HasRequiredScope(BasePermission):
    """Raises the scope refusal that the request's key resolution found (`apikeys.resolution`)."""

    def has_permission(self, request, view):
        resolution = getattr(request, "resolution", None)
        if request.auth is None or resolution is None:
            raise Unauthorized()
        if resolution.missing_scope is not None:
            raise InsufficientScope(resolution.missing_scope)
        return True
