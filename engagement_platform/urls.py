from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from engagement_platform import health, openapi  # noqa: F401  (openapi registers the auth scheme)

handler400 = "engagement_platform.errors.handler400"
handler404 = "engagement_platform.errors.handler404"
handler500 = "engagement_platform.errors.handler500"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("v1/schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("v1/", include("renders.api.urls")),
    path("v1/", include("reports.api.urls")),
    path("", include("renders.public.urls")),
]

if settings.BENCH_FLOOR_VIEWS:  # the benchmark's floor views; off in every normal deployment
    urlpatterns.append(path("bench/", include("bench.floor")))
