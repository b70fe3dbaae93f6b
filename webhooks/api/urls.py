from django.urls import path

from webhooks.api import views

urlpatterns = [
    path("webhooks", views.WebhookEndpointsView.as_view(), name="webhook-list"),
    path("webhooks/<str:webhook_id>", views.WebhookEndpointDetailView.as_view(), name="webhook-detail"),
    path("webhooks/<str:webhook_id>/rotate-secret", views.WebhookRotateSecretView.as_view(),
         name="webhook-rotate-secret"),
    path("webhooks/<str:webhook_id>/test", views.WebhookTestView.as_view(), name="webhook-test"),
    path("webhooks/<str:webhook_id>/deliveries", views.WebhookDeliveriesView.as_view(), name="webhook-deliveries"),
    path("webhooks/<str:webhook_id>/deliveries/<str:delivery_id>/retry", views.WebhookDeliveryRetryView.as_view(),
         name="webhook-delivery-retry"),
]
