"""Tenant scoping that views cannot bypass: every object a view touches is the key's project's."""

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import SAFE_METHODS
from rest_framework.views import APIView

from engagement_platform.db.replica import project_written
from engagement_platform.errors import NotFound
from engagement_platform.ids import parse_uuid
from engagement_platform.ratelimit import WindowDecision


class FirstRendererNegotiation(DefaultContentNegotiation):
    """API answers are JSON whatever `Accept` asks for: a browser's `text/html` is not a 406 (or a 500)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def rate_limit_headers(rate: WindowDecision) -> dict[str, str]:
    """Contract section 0: the project's limit, what is left in the current window, when it ends."""
    return {"X-RateLimit-Limit": str(rate.limit), "X-RateLimit-Remaining": str(rate.remaining),
            "X-RateLimit-Reset": str(rate.reset)}


class ProjectScopedAPIView(APIView):
    """Base for every keyed API view.

    Subclasses declare `required_scopes = {"GET": Scope.X, ...}` and reach objects only
    through `scoped()` / `get_scoped_or_404()`, which filter by the key's project, so a
    foreign id answers exactly like an id that does not exist.
    """

    required_scopes: dict[str, str] = {}
    content_negotiation_class = FirstRendererNegotiation

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise TypeError(f"{cls.__name__} must not override get_queryset; use scoped().")

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if request.method not in SAFE_METHODS and response.status_code < 400 and self.request.user is not None:
            project_written(self.request.user)  # its reads use the primary for the read-your-writes window
        resolution = getattr(request, "resolution", None)
        if resolution is not None and resolution.rate is not None:  # the key authenticated
            for name, value in rate_limit_headers(resolution.rate).items():
                response[name] = value
        return response

    @property
    def project(self):
        return self.request.user

    def scoped(self, queryset):
        return queryset.filter(project=self.project)

    def get_scoped_or_404(self, queryset, pk, resource: str):
        uid = parse_uuid(pk)
        found = self.scoped(queryset).filter(pk=uid).first() if uid is not None else None
        if found is None:
            raise NotFound(resource)
        return found
