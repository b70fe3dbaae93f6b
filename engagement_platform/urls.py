from django.contrib import admin
from django.urls import include, path

from engagement_platform import health

handler404 = "engagement_platform.errors.handler404"
handler500 = "engagement_platform.errors.handler500"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("v1/", include("renders.api.urls")),
]
