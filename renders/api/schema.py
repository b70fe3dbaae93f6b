"""Response shapes of the render-side API, for the OpenAPI document."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from engagement_platform.cursors import CURSOR_MAX_LENGTH, LIMIT_DEFAULT, LIMIT_MAX
from engagement_platform.exports import CONTENT_TYPES, CSV, NDJSON
from engagement_platform.traffic import MachineReason, Traffic, TrafficFilter
from renders.api.serializers import EVENT_LOG_FORMATS, EVENT_LOG_LIMIT_DEFAULT, EVENT_LOG_PAGE
from renders.exports import RENDER_EVENT_COLUMNS
from renders.models import ActorKind, EventType


class RenderOutSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["succeeded"])
    sizeBytes = serializers.IntegerField()
    pageCount = serializers.IntegerField(allow_null=True, help_text="The PDF's number of pages, read at upload.")
    createdAt = serializers.DateTimeField()
    downloadUrl = serializers.URLField()


class RenderPageSerializer(serializers.Serializer):
    data = RenderOutSerializer(many=True)
    nextCursor = serializers.CharField(allow_null=True)


def page_parameters(items: str, default: int = LIMIT_DEFAULT) -> list[OpenApiParameter]:
    """`limit` and `cursor` of a cursor-paginated list (engagement_platform.cursors)."""
    return [
        OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX, "default": default},
                         OpenApiParameter.QUERY, required=False,
                         description=f"{items} per page, 1 to {LIMIT_MAX} (default {default})."),
        OpenApiParameter("cursor", {"type": "string", "maxLength": CURSOR_MAX_LENGTH}, OpenApiParameter.QUERY,
                         required=False,
                         description="The `nextCursor` of the previous page of this same list; omit it for the "
                                     "first page. A malformed cursor, or one another list returned, is a 400 "
                                     "`invalid_request` with `fieldErrors.cursor`."),
    ]


RENDER_PAGE_PARAMETERS = page_parameters("Renders")
SHARE_PAGE_PARAMETERS = page_parameters("Shares")


def traffic_parameter(what: str) -> OpenApiParameter:
    return OpenApiParameter(
        "traffic", {"type": "string", "enum": list(TrafficFilter.values), "default": TrafficFilter.ALL},
        OpenApiParameter.QUERY, required=False,
        description=f"`human` or `machine`: {what} only that traffic class (link previewers, crawlers, mail "
                    "privacy proxies, link scanners, prefetches are `machine`); `all` (the default) every "
                    "event. Anything else is a 400 `invalid_request` with `fieldErrors.traffic`.")


def choice_parameter(name: str, choices, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, {"type": "string", "enum": list(choices)}, OpenApiParameter.QUERY, required=False,
                            description=description + f" Anything else is a 400 with `fieldErrors.{name}`.")


EVENT_LOG_PARAMETERS = [
    *page_parameters("Events", default=EVENT_LOG_LIMIT_DEFAULT),
    traffic_parameter("the events of"),
    choice_parameter("eventType", EventType.values, "Only events of this type."),
    choice_parameter("actorKind", ActorKind.values, "Only events of this actor kind."),
    OpenApiParameter("shareId", OpenApiTypes.UUID, OpenApiParameter.QUERY, required=False,
                     description="Only the events of this share. Not a UUID: a 400 with `fieldErrors.shareId`."),
    OpenApiParameter(
        "format", {"type": "string", "enum": list(EVENT_LOG_FORMATS), "default": EVENT_LOG_PAGE},
        OpenApiParameter.QUERY, required=False,
        description="`json` (the default): one page of the log, newest first. `ndjson` or `csv`: an export of every "
                    "event matching the filters, oldest first, streamed as an attachment (`limit` and `cursor` are "
                    "not read), each event a `backfill_render_events` line with `id`, `traffic` and "
                    "`machineReason`: " + ", ".join(f"`{name}`" for name in RENDER_EVENT_COLUMNS) + " (CSV: a "
                    "header row, empty cells for null, `metadata` as JSON text). Anything else is a 400 with "
                    "`fieldErrors.format`."),
]
EVENT_EXPORT_RESPONSES = {
    (200, CONTENT_TYPES[NDJSON]): OpenApiResponse(
        OpenApiTypes.STR, description="`format=ndjson`: one event a line, as an attachment."),
    (200, CONTENT_TYPES[CSV]): OpenApiResponse(
        OpenApiTypes.STR, description="`format=csv`: a header row, then one event a row, as an attachment."),
}


VISIT_LIST_PARAMETERS = [
    *page_parameters("Visits"),
    traffic_parameter("the visits of"),
    OpenApiParameter("shareId", OpenApiTypes.UUID, OpenApiParameter.QUERY, required=False,
                     description="Only the visits of this share. Not a UUID: a 400 with `fieldErrors.shareId`."),
]
PAGES_PARAMETERS = [traffic_parameter("the figures cover the visits of")]


class VisitOutSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    shareId = serializers.UUIDField()
    viewerEmail = serializers.EmailField(allow_null=True, help_text="An emailed share's recipient, or the address "
                                                                    "given to a `requireEmail` share's form.")
    startedAt = serializers.DateTimeField()
    lastActivityAt = serializers.DateTimeField()
    durationMs = serializers.IntegerField(help_text="Summed reading time, never more than the wall-clock time "
                                                    "since the visit started plus 5 s.")
    pagesViewed = serializers.IntegerField(help_text="Pages read for at least 1 s.")
    pageCount = serializers.IntegerField()
    completion = serializers.FloatField(help_text="pagesViewed / pageCount, 0..1.")
    downloaded = serializers.BooleanField()
    printed = serializers.BooleanField()
    traffic = serializers.ChoiceField(choices=Traffic.choices)
    sourceIp = serializers.CharField(allow_null=True, help_text="Of the visit's first view.")
    userAgent = serializers.CharField(allow_null=True, help_text="Of the visit's first view.")


class VisitPageSerializer(serializers.Serializer):
    data = VisitOutSerializer(many=True)
    nextCursor = serializers.CharField(allow_null=True)


class PageFiguresSerializer(serializers.Serializer):
    page = serializers.IntegerField()
    visits = serializers.IntegerField(help_text="Visits that read the page for at least 1 s.")
    totalMs = serializers.IntegerField()
    averageMs = serializers.IntegerField(help_text="totalMs / visits; 0 without visits.")


class ReadingByPageSerializer(serializers.Serializer):
    pageCount = serializers.IntegerField()
    visits = serializers.IntegerField()
    averageDurationMs = serializers.IntegerField()
    completionRate = serializers.FloatField(help_text="The share of visits that read the last page for at least "
                                                      "1 s; 0 without visits.")
    data = PageFiguresSerializer(many=True)


SUMMARY_PARAMETERS = [
    traffic_parameter("`counts`, `linkOpens`, `total` and `recent` cover"),
    OpenApiParameter("Cache-Control", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
                     description="`no-cache` builds the summary afresh. Without it, a summary asked for again "
                                 "may be answered from a kept copy; every write that changes the summary (an event "
                                 "recorded or backfilled, the render's deletion) drops the render's kept "
                                 "copies, so the answer is the same."),
]


class RenderUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The PDF: must start with %PDF- and open as a PDF with at least one "
                                           "page (not corrupt, not password-protected).")
    name = serializers.CharField(required=False, max_length=255)


class CountsSerializer(serializers.Serializer):
    viewed = serializers.IntegerField()
    downloaded = serializers.IntegerField()
    printed = serializers.IntegerField()
    email_opened = serializers.IntegerField()
    email_sent = serializers.IntegerField()
    share_created = serializers.IntegerField()
    share_revoked = serializers.IntegerField()


class EventOutSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    eventType = serializers.ChoiceField(choices=EventType.choices)
    actorKind = serializers.ChoiceField(choices=ActorKind.choices)
    shareId = serializers.UUIDField(allow_null=True)
    sourceIp = serializers.CharField(allow_null=True)
    userAgent = serializers.CharField(allow_null=True)
    metadata = serializers.JSONField(allow_null=True)
    createdAt = serializers.DateTimeField()


class EventLogEventSerializer(EventOutSerializer):
    traffic = serializers.ChoiceField(choices=Traffic.choices)
    machineReason = serializers.ChoiceField(choices=MachineReason.choices, allow_null=True,
                                            help_text="Why the event is machine traffic; null for human.")


class EventLogPageSerializer(serializers.Serializer):
    data = EventLogEventSerializer(many=True)
    nextCursor = serializers.CharField(allow_null=True)


class EngagementSummarySerializer(serializers.Serializer):
    counts = CountsSerializer()
    linkOpens = serializers.IntegerField()
    total = serializers.IntegerField()
    recent = EventOutSerializer(many=True)


class RecordedSerializer(serializers.Serializer):
    recorded = serializers.BooleanField()
