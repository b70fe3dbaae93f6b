from django.urls import path

from renders.api import share_views, views

urlpatterns = [
    path("renders", views.RenderCollectionView.as_view(), name="render-list"),
    path("renders/<str:render_id>", views.RenderDetailView.as_view(), name="render-detail"),
    path("renders/<str:render_id>/download", views.RenderDownloadView.as_view(), name="render-download"),
    path("renders/<str:render_id>/engagement", views.RenderEngagementView.as_view(), name="render-engagement"),
    path("renders/<str:render_id>/events", views.RenderEventsView.as_view(), name="render-events"),
    path("renders/<str:render_id>/visits", views.RenderVisitsView.as_view(), name="render-visits"),
    path("renders/<str:render_id>/pages", views.RenderPagesView.as_view(), name="render-pages"),
    path("renders/<str:render_id>/shares", share_views.RenderSharesView.as_view(), name="render-shares"),
    path("renders/<str:render_id>/shares/<str:share_id>", share_views.RenderShareDetailView.as_view(),
         name="render-share-detail"),
    path("renders/<str:render_id>/emails", share_views.RenderEmailsView.as_view(), name="render-emails"),
]
