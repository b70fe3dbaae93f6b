"""Operators' view of webhook endpoints and their deliveries, with a retry action."""

from django.contrib import admin, messages

from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import delivery_retry


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ("url", "project", "events", "include_machine", "created_at", "disabled_at", "failing_since")
    list_filter = ("include_machine", ("disabled_at", admin.EmptyFieldListFilter))
    list_select_related = ("project",)
    search_fields = ("url", "description")
    readonly_fields = ("id", "created_at", "failing_since", "previous_secret_expires_at")
    exclude = ("secret", "previous_secret")  # never shown again after creation
    raw_id_fields = ("project",)


@admin.action(description="Send the selected deliveries again now (same webhook-id)")
def retry_deliveries(modeladmin, request, queryset):
    count = 0
    for delivery in queryset:
        delivery_retry(delivery=delivery)
        count += 1
    modeladmin.message_user(request, f"{count} deliveries queued again.", messages.SUCCESS)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("event_type", "endpoint", "status", "attempts", "last_response_status", "last_error",
                    "created_at", "next_attempt_at")
    list_filter = ("status", "event_type")
    list_select_related = ("endpoint",)
    search_fields = ("event_id",)
    readonly_fields = [field.name for field in WebhookDelivery._meta.fields]
    actions = [retry_deliveries]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).defer("payload") if request.resolver_match.url_name.endswith(
            "changelist") else super().get_queryset(request)


