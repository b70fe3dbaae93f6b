"""The URL configuration as data: every route, its methods and the scope each method declares.

The tenant matrix and the hostile-input corpus are generated from this walk, so a route added to
`urls.py` shows up in them (and fails them until it is described) without anyone remembering it.
"""

import re
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")
SCHEMA_ROUTE = "v1/schema"


@dataclass(frozen=True)
class Route:
    pattern: str  # e.g. "v1/renders/<str:render_id>/events"
    name: str | None
    view: object  # the view callable
    view_class: type | None

    @property
    def params(self) -> list[str]:
        return [match.group("name") for match in _PARAM.finditer(self.pattern)]

    @property
    def is_api(self) -> bool:
        return self.pattern.startswith("v1/") and self.pattern != SCHEMA_ROUTE

    @property
    def required_scopes(self) -> dict[str, str]:
        return dict(getattr(self.view_class, "required_scopes", None) or {})

    @property
    def methods(self) -> list[str]:
        """Methods the view implements (HEAD and OPTIONS follow GET and are not listed)."""
        if self.view_class is not None:
            return [m for m in HTTP_METHODS if hasattr(self.view_class, m.lower())]
        allowed = getattr(self.view, "allowed_methods", None)
        return [m for m in HTTP_METHODS if allowed is None or m in allowed]

    def path(self, **values) -> str:
        def substitute(match):
            return str(values[match.group("name")])

        return "/" + _PARAM.sub(substitute, self.pattern)


def _pattern_text(pattern) -> str:
    text = str(pattern.pattern)
    return text.lstrip("^").rstrip("$") if hasattr(pattern.pattern, "regex") and text.startswith("^") else text


def all_routes(resolver=None, prefix: str = "") -> list[Route]:
    resolver = resolver or get_resolver()
    routes = []
    for entry in resolver.url_patterns:
        text = prefix + _pattern_text(entry)
        if isinstance(entry, URLResolver):
            routes.extend(all_routes(entry, text))
        elif isinstance(entry, URLPattern):
            view = entry.callback
            view_class = getattr(view, "cls", None) or getattr(view, "view_class", None)
            routes.append(Route(pattern=text, name=entry.name, view=view, view_class=view_class))
    return routes


def api_routes() -> list[Route]:
    """Every keyed API route: under /v1/, except the public schema."""
    return [route for route in all_routes() if route.is_api]


def api_operations() -> list[tuple[Route, str]]:
    return [(route, method) for route in api_routes() for method in route.methods]


def token_routes() -> list[Route]:
    """Public routes whose credential is a token in the path (share page, its files, pixel, click)."""
    return [route for route in all_routes() if not route.pattern.startswith(("v1/", "admin/"))
            and "token" in route.params]
