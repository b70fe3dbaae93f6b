"""Scope checks. A view must declare its scopes: one that does not is refused, not opened."""

from django.core.exceptions import ImproperlyConfigured
from rest_framework.permissions import BasePermission

from apikeys.authentication import reverify
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


def check_scope(request, view) -> None:
    """403 unless the request's key holds the scope the view declares for this method."""
    if request.method not in view.allowed_methods:
        return  # the view answers 405 itself
    scope = required_scope_for(view, request.method)
    if not request.auth.has_scope(scope):
        raise InsufficientScope(scope)


class HasRequiredScope(BasePermission):
    def has_permission(self, request, view):
        if request.auth is None:
            raise Unauthorized()
        try:
            check_scope(request, view)
        except InsufficientScope:
            if not getattr(request, "verified_key", None) or request.verified_key.fresh:
                raise
            # The key came from the worker's cache: refuse only what the database confirms.
            reverify(request)
            check_scope(request, view)
        return True
