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


class HasRequiredScope(BasePermission):
    def has_permission(self, request, view):
        if request.auth is None:
            raise Unauthorized()
        if request.method not in view.allowed_methods:
            return True  # the view answers 405 itself
        scope = required_scope_for(view, request.method)
        if not request.auth.has_scope(scope):
            raise InsufficientScope(scope)
        return True
