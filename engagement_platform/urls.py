from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from engagement_platform import health, home, openapi  # noqa: F401  (openapi registers the auth scheme)
from engagement_platform.errors import unknown_api_path

handler400 = "engagement_platform.errors.handler400"
handler404 = "engagement_platform.errors.handler404"
handler500 = "engagement_platform.errors.handler500"

urlpatterns = [
    path("", home.home, name="home"),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("v1/schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("v1/", include("renders.api.urls")),
    path("v1/", include("reports.api.urls")),
    path("v1/", include("webhooks.api.urls")),
    # Last of /v1: any other path under it (a trailing-slash typo included) is the surface's 404, whatever DEBUG.
    re_path(r"^v1(?:/.*)?$", unknown_api_path, name="unknown-api-path"),
    path("", include("renders.public.urls")),
]

if settings.BENCH_FLOOR_VIEWS:  # the benchmark's floor views; off in every normal deployment
    urlpatterns.append(path("bench/", include("bench.floor")))
