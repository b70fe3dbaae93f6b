from django.contrib import admin
from django.utils.safestring import mark_safe

from apikeys.admin import ProjectAdmin
from apikeys.models import Project
from reports.charts import project_traffic_chart
from reports.models import Channel, DailyRollup, Message, MessageEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    """Raw traffic is written by ingestion only; operators read it."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    list_display = ["__str__", "external_id", "project", "is_default", "created_at"]
    list_filter = ["project", "is_default"]
    search_fields = ["name", "external_id"]
    list_select_related = ["project"]
    fields = ["name", "external_id", "id", "project", "is_default", "created_at"]
    readonly_fields = ["external_id", "id", "project", "is_default", "created_at"]

    def has_add_permission(self, request):
        return False  # channels are created by their first message

    def has_delete_permission(self, request, obj=None):
        return False  # messages keep pointing at their channel


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ["client_message_id", "recipient", "from_address", "channel", "project", "created_at"]
    list_filter = ["project", "from_domain"]
    search_fields = ["client_message_id", "recipient", "from_address"]
    list_select_related = ["project", "channel"]
    date_hierarchy = "created_at"


@admin.register(MessageEvent)
class MessageEventAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "type", "traffic", "machine_reason", "recipient", "message", "channel",
                    "client_event_id", "project"]
    list_filter = ["type", "traffic", "machine_reason", "project"]
    search_fields = ["client_event_id", "message__client_message_id", "message__recipient"]
    list_select_related = ["project", "message", "message__channel"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False  # the table grows with traffic; skip the extra COUNT(*)

    @admin.display(ordering="message__recipient")
    def recipient(self, obj):
        return obj.message.recipient

    @admin.display(ordering="message__channel")
    def channel(self, obj):
        return obj.message.channel


@admin.register(DailyRollup)
class DailyRollupAdmin(ReadOnlyAdmin):
    list_display = ["day", "grain", "channel_key", "domain", "sent", "delivered", "opens", "unique_opens",
                    "clicks", "unique_clicks", "project"]
    list_filter = ["grain", "project"]
    list_select_related = ["project"]
    date_hierarchy = "day"


# The project's page shows its message traffic: a report, so it is added here, on the reports side.
admin.site.unregister(Project)


@admin.register(Project)
class ProjectWithTrafficAdmin(ProjectAdmin):
    readonly_fields = [*ProjectAdmin.readonly_fields, "traffic_chart"]

    def get_fields(self, request, obj=None):
        fields = [f for f in super().get_fields(request, obj) if f != "traffic_chart"]
        return fields + ["traffic_chart"] if obj is not None else fields

    @admin.display(description="Message traffic")
    def traffic_chart(self, obj):
        return mark_safe(project_traffic_chart(project=obj))  # built from numbers and escaped text only
