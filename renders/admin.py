from datetime import timedelta

from django.contrib import admin
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from engagement_platform.clock import now
from engagement_platform.db.replica import PRIMARY
from engagement_platform.svgchart import Series, bar_chart, line_chart
from engagement_platform.traffic import Traffic, TrafficFilter
from renders.models import EngagementCounter, EngagementEvent, EventType, Render, RenderEmail, Share, Visit
from renders.selectors import engagement_by_day, engagement_summary
from renders.services import render_delete, renders_delete
from renders.visits import reading_by_page, visit_list_page

CHART_DAYS = 30
RECENT_VISITS = 20


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
    readonly_fields = ["id", "project", "status", "pdf_link", "size_bytes", "page_count", "created_at",
                       "engagement_counts", "engagement_chart", "reading_chart", "recent_visits"]
    fields = ["id", "project", "name", "status", "pdf_link", "size_bytes", "page_count", "created_at",
              "engagement_counts", "engagement_chart", "reading_chart", "recent_visits"]
    inlines = [ShareInline]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False  # renders are uploaded through the API

    def get_urls(self):
        pdf = path("<path:object_id>/pdf/", self.admin_site.admin_view(self.pdf_view), name="renders_render_pdf")
        return [pdf, *super().get_urls()]

    def pdf_view(self, request, object_id):
        """The render's PDF, streamed inline to staff who may view the render (the file's storage URL
        is not served by the application)."""
        render = self.get_object(request, unquote(object_id))
        if render is None:
            raise Http404("No render with that id.")
        if not self.has_view_permission(request, render):
            raise PermissionDenied
        return FileResponse(render.file.open("rb"), content_type="application/pdf",
                            filename=f"{render.name or render.id}".removesuffix(".pdf") + ".pdf")

    @admin.display(description="File")
    def pdf_link(self, obj):
        if obj is None or obj.pk is None:
            return "-"
        return format_html('<a href="{}">Open the PDF</a>', reverse("admin:renders_render_pdf", args=[quote(obj.pk)]))

    def delete_model(self, request, obj):
        render_delete(render=obj)

    def delete_queryset(self, request, queryset):
        renders_delete(renders=queryset)

    @admin.display(description="Engagement")
    def engagement_counts(self, obj):
        lines = [format_html("{}: {}", traffic.label, engagement_line(engagement_summary(render=obj, traffic=traffic)))
                 for traffic in TrafficFilter]
        return mark_safe("<br>".join(lines))  # each line escaped by format_html

    @admin.display(description="Engagement over time")
    def engagement_chart(self, obj):
        return mark_safe(render_engagement_chart(obj))


    @admin.display(description="Reading time per page")
    def reading_chart(self, obj):
        return mark_safe(render_reading_chart(obj))

    @admin.display(description="Visits")
    def recent_visits(self, obj):
        return render_recent_visits(obj)


def render_reading_chart(render) -> str:
    """Seconds read on each page, people and machines side by side (the kept per-page figures)."""
    by_class = {traffic: reading_by_page(render=render, traffic=traffic, using=PRIMARY) for traffic in Traffic}
    labels = [str(number) for number in range(1, (render.page_count or 0) + 1)]
    series = [Series(traffic.label, [page.total_ms // 1000 for page in reading.pages])
              for traffic, reading in by_class.items()]
    visits = sum(reading.visits for reading in by_class.values())
    return bar_chart(title=f"Reading time per page (seconds), {visits} visit{'s' if visits != 1 else ''}",
                     labels=labels, series=series, unit="s")


def render_recent_visits(render):
    """The render's newest visits as a table (one read of a page of visits), and a link to all of them."""
    visits, more = visit_list_page(render=render, lookups={}, limit=RECENT_VISITS, after=None, using=PRIMARY)
    if not visits:
        return "No visits yet."
    rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} s</td><td>{}/{}</td><td>{}</td>"
                                "<td>{}</td></tr>",
                            ((f"{visit.started_at:%Y-%m-%d %H:%M}", visit.viewer_email or "-", visit.traffic,
                              visit.duration_ms // 1000, visit.pages_viewed, render.page_count or 0,
                              "yes" if visit.downloaded else "no", "yes" if visit.printed else "no")
                             for visit in visits))
    link = reverse("admin:renders_visit_changelist") + f"?render__id__exact={render.pk}"
    return format_html('<table><thead><tr><th>Started (UTC)</th><th>Viewer</th><th>Traffic</th><th>Read</th>'
                       '<th>Pages read</th><th>Downloaded</th><th>Printed</th></tr></thead><tbody>{}</tbody></table>'
                       '<p><a href="{}">{}</a></p>', rows, link,
                       "All visits" if more else "Open in the visits list")


def engagement_line(summary) -> str:
    parts = [f"{name}: {count}" for name, count in summary.counts.items()]
    return ", ".join(parts) + f"; link opens: {summary.link_opens}; total: {summary.total}"


def render_engagement_chart(render, days: int = CHART_DAYS) -> str:
    """Daily events of each type over the last `days` days, as SVG: one chart for people, one for machines."""
    until = now()
    first_day = (until - timedelta(days=days - 1)).date()
    day_list = [first_day + timedelta(days=i) for i in range(days)]
    since = until.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)
    counts = engagement_by_day(render=render, since=since, until=until)
    charts = []
    for traffic in Traffic:
        series = [Series(t.value, [counts.get((day, t.value, traffic.value), 0) for day in day_list])
                  for t in EventType]
        charts.append(line_chart(title=f"{traffic.label} engagement per day, last {days} days (UTC)",
                                 days=day_list, series=series))
    return "".join(charts)


@admin.register(EngagementEvent)
class EngagementEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "event_type", "actor_kind", "traffic", "machine_reason", "render", "share",
                    "source_ip"]
    list_filter = ["traffic", "machine_reason", "event_type", "actor_kind", "project"]
    search_fields = ["render__id", "render__name", "source_ip"]
    list_select_related = ["render", "share"]
    date_hierarchy = "created_at"


@admin.register(Share)
class ShareAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "render", "created_at", "expires_at", "revoked_at"]
    list_filter = ["project", ("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["render"]
    exclude = ["token"]


@admin.register(RenderEmail)
class RenderEmailAdmin(ReadOnlyAdmin):
    list_display = ["sent_at", "recipient", "subject", "render", "delivered_at", "failed_at"]
    list_filter = ["project", ("delivered_at", admin.EmptyFieldListFilter), ("failed_at", admin.EmptyFieldListFilter)]
    search_fields = ["recipient", "message_id", "render__name"]
    list_select_related = ["render"]
    date_hierarchy = "sent_at"


@admin.register(Visit)
class VisitAdmin(ReadOnlyAdmin):
    list_display = ["started_at", "render", "share", "viewer_email", "traffic", "duration_ms", "pages_viewed",
                    "downloaded", "printed", "last_activity_at", "ended_announced_at"]
    list_filter = ["traffic", "downloaded", "printed", "project", ("ended_announced_at", admin.EmptyFieldListFilter)]
    readonly_fields = ["ended_announced_at"]
    search_fields = ["render__id", "render__name", "viewer_email"]
    list_select_related = ["render", "share"]
    date_hierarchy = "started_at"
    exclude = ["viewer"]


admin.site.register(EngagementCounter, ReadOnlyAdmin)
admin.site.site_header = "Engagement platform"
admin.site.site_title = "Engagement platform admin"
