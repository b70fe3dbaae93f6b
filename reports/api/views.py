"""Report-side HTTP surface: thin views over reports.services and reports.selectors."""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.response import Response

from apikeys.models import Scope
from apikeys.scoping import ProjectScopedAPIView
from engagement_platform.bodycache import asks_for_fresh
from engagement_platform.exports import CONTENT_TYPES, CSV, NDJSON, export_response, stream_export
from engagement_platform.openapi import OpenApiResponse, keyed_operation
from engagement_platform.traffic import TrafficFilter
from reports.api.filters import (
    MESSAGE_EXPORT_FORMATS,
    REPORT_FORMATS,
    parse_message_export_query,
    parse_report_query,
)
from reports.api.serializers import (
    EngagementReportSerializer,
    IngestResultSerializer,
    MessageEventBatchSerializer,
    parse_event_batch,
)
from reports.exports import MESSAGE_EVENT_LINE, engagement_report_csv, message_events_in_window
from reports.selectors import GroupBy, UniqueMode, engagement_report_body, report_window
from reports.services import ingest_message_events

# 1000 events with long URLs and user agents fit; larger bodies are refused before parsing.
EVENT_BATCH_MAX_BODY_BYTES = 4 * 1024 * 1024

REPORT_PARAMETERS = [
    OpenApiParameter("from", OpenApiTypes.DATETIME,
                     description="Window start, RFC 3339 with an offset or Z (inclusive). Default: the later of "
                                 "30 days before `to` and the start of the plan's retention."),
    OpenApiParameter("to", OpenApiTypes.DATETIME,
                     description="Window end, RFC 3339 with an offset or Z (exclusive). Default: now."),
    OpenApiParameter("group_by", str, enum=GroupBy.values,
                     description="UTC bucket: day (default), week (ISO, Monday) or month."),
    OpenApiParameter("channel", OpenApiTypes.UUID, description="Only this channel (UUID)."),
    OpenApiParameter("identity", str, description="Only this sending domain: an email address (its domain "
                     "counts) or a bare domain; case-insensitive."),
    OpenApiParameter("traffic", str, enum=TrafficFilter.values,
                     description="`all` (default), `human` or `machine` (contract section 6): opens, clicks, their "
                                 "uniques and rates count only that class; sent and delivered are not classified. "
                                 "A bucket whose figures are all 0 for the class is omitted."),
    OpenApiParameter("unique", str, enum=UniqueMode.values,
                     description="`daily` (default): a week or month bucket's unique opens and clicks are the sum "
                                 "of its days' (a recipient active on several days counts once per day). `exact`: "
                                 "each recipient counts once in the bucket (the part inside the window). Day "
                                 "buckets agree in both modes."),
    OpenApiParameter("Cache-Control", str, location=OpenApiParameter.HEADER, required=False,
                     description="`no-cache` builds the report afresh. Without it, a report asked for again "
                                 "(same window, bucket and filters) may be answered from a kept copy; every "
                                 "ingested event drops the project's kept copies, so the answer is the same."),
    OpenApiParameter("format", str, enum=list(REPORT_FORMATS),
                     description="`json` (default) or `csv` (the same buckets, a header row, as an attachment). "
                                 "Without it, `Accept: text/csv` asks for CSV. Anything else is a 422."),
]
MESSAGE_EXPORT_PARAMETERS = [
    *REPORT_PARAMETERS[:2],
    OpenApiParameter("format", str, enum=list(MESSAGE_EXPORT_FORMATS),
                     description="`ndjson` (default: one section-4 event a line, what `backfill_message_events` "
                                 "reads) or `csv` (a header row, the same keys as columns, empty cells for null). "
                                 "Anything else is a 422."),
]
MESSAGE_EVENT_EXPORT_DESCRIPTION = (
    "Every raw message event of the project in the window (`from <= occurredAt < to`, defaults and retention as "
    "the report's), oldest first, streamed as an attachment in the ingestion format: backfilling an export into "
    "another project with `backfill_message_events` gives it the same report. Keys (NDJSON) or columns (CSV): "
    + ", ".join(f"`{column.key}`" for column in MESSAGE_EVENT_LINE) + ".")


def wants_csv(request, requested_format: str | None) -> bool:
    """The report's format: `?format=` when given, else CSV only when `Accept` names `text/csv`."""
    if requested_format is not None:
        return requested_format == CSV
    return "text/csv" in request.META.get("HTTP_ACCEPT", "").lower()


class MessageEventsView(ProjectScopedAPIView):
    required_scopes = {"GET": Scope.REPORTS_VIEW, "POST": Scope.MESSAGES_WRITE}
    max_body_bytes = EVENT_BATCH_MAX_BODY_BYTES

    @keyed_operation(
        scope=Scope.MESSAGES_WRITE, operation_id="ingestMessageEvents", summary="Ingest message events",
        description="1 to 1000 events, all or nothing. An event whose `id` the project already has is a "
                    "duplicate and changes no figure, so retries never double-count.",
        request=MessageEventBatchSerializer, responses={200: IngestResultSerializer}, errors=(400, 413, 422),
        problem=True,
    )
    def post(self, request):
        events = parse_event_batch(request.data)
        result = ingest_message_events(project=self.project, events=events)
        return Response({"accepted": result.accepted, "duplicates": result.duplicates})

    @keyed_operation(
        scope=Scope.REPORTS_VIEW, operation_id="exportMessageEvents", summary="Export raw message events",
        description=MESSAGE_EVENT_EXPORT_DESCRIPTION, parameters=MESSAGE_EXPORT_PARAMETERS,
        responses={(200, CONTENT_TYPES[NDJSON]): OpenApiResponse(
                       OpenApiTypes.STR, description="One JSON event a line (NDJSON), as an attachment."),
                   (200, CONTENT_TYPES[CSV]): OpenApiResponse(
                       OpenApiTypes.STR, description="CSV with a header row, as an attachment.")},
        errors=(422,), problem=True,
    )
    def get(self, request):
        query = parse_message_export_query(request.query_params)
        window = report_window(project=self.project, start=query.start, end=query.end)
        return stream_export(message_events_in_window(project=self.project, window=window),
                             project=self.project, columns=MESSAGE_EVENT_LINE, export_format=query.format,
                             filename="message-events")


class EngagementReportView(ProjectScopedAPIView):
    required_scopes = {"GET": Scope.REPORTS_VIEW}

    @keyed_operation(
        scope=Scope.REPORTS_VIEW, operation_id="getEngagementReport", summary="Engagement time series",
        description="UTC-aligned buckets of sent, delivered, opens and clicks with daily-distinct unique "
                    "opens and clicks (summed per day for week and month) and their rates over delivered. "
                    "Empty buckets are omitted; oldest first.",
        parameters=REPORT_PARAMETERS,
        responses={(200, "application/json"): OpenApiResponse(EngagementReportSerializer),
                   (200, CONTENT_TYPES[CSV]): OpenApiResponse(
                       OpenApiTypes.STR, description="`format=csv` (or `Accept: text/csv`): a header row "
                       "`period,sent,delivered,opens,unique_opens,clicks,unique_clicks,open_rate,click_rate`, then "
                       "one row per bucket, as an attachment.")},
        errors=(422,), problem=True,
    )
    def get(self, request):
        query = parse_report_query(request.query_params)
        window = report_window(project=self.project, start=query.start, end=query.end)
        if wants_csv(request, query.format):
            body = engagement_report_csv(project=self.project, window=window, group_by=query.group_by,
                                         filters=query.filters)
            return export_response(body, export_format=CSV, filename="engagement-report")
        body = engagement_report_body(project=self.project, window=window, group_by=query.group_by,
                                      filters=query.filters, refresh=asks_for_fresh(request))
        return HttpResponse(body, content_type="application/json")  # already JSON: no serializer, no renderer
