from django.contrib import admin

from renders.models import EngagementCounter, EngagementEvent, Render, Share
from renders.selectors import engagement_summary


class ShareInline(admin.TabularInline):
    model = Share
    extra = 0
    fields = ["id", "label", "recipient", "created_at", "expires_at", "revoked_at"]
    readonly_fields = ["id", "label", "recipient", "created_at", "expires_at", "revoked_at"]
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Render)
class RenderAdmin(admin.ModelAdmin):
    list_display = ["__str__", "project", "size_bytes", "created_at"]
    list_filter = ["project"]
    search_fields = ["name", "id"]
    list_select_related = ["project"]
    readonly_fields = ["id", "project", "status", "file", "size_bytes", "created_at", "engagement_counts"]
    fields = ["id", "project", "name", "status", "file", "size_bytes", "created_at", "engagement_counts"]
    inlines = [ShareInline]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False  # renders are uploaded through the API

    @admin.display(description="Engagement")
    def engagement_counts(self, obj):
        summary = engagement_summary(render=obj)
        parts = [f"{name}: {count}" for name, count in summary.counts.items()]
        return ", ".join(parts) + f"; link opens: {summary.link_opens}; total: {summary.total}"


@admin.register(EngagementEvent)
class EngagementEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "event_type", "actor_kind", "render", "share", "source_ip"]
    list_filter = ["event_type", "actor_kind", "project"]
    search_fields = ["render__id", "render__name", "source_ip"]
    list_select_related = ["render", "share"]
    date_hierarchy = "created_at"


@admin.register(Share)
class ShareAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "render", "created_at", "expires_at", "revoked_at"]
    list_filter = ["project", ("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["render"]
    exclude = ["token"]


admin.site.register(EngagementCounter, ReadOnlyAdmin)
admin.site.site_header = "Engagement platform"
admin.site.site_title = "Engagement platform admin"
