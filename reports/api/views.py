"""Report-side HTTP surface: thin views over reports.services and reports.selectors."""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.response import Response

from apikeys.models import Scope
from apikeys.scoping import ProjectScopedAPIView
from engagement_platform.bodycache import asks_for_fresh
from engagement_platform.openapi import OpenApiResponse, keyed_operation
from engagement_platform.traffic import TrafficFilter
from reports.api.filters import parse_report_query
from reports.api.serializers import (
    EngagementReportSerializer,
    IngestResultSerializer,
    MessageEventBatchSerializer,
    parse_event_batch,
)
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
]


class MessageEventsView(ProjectScopedAPIView):
    required_scopes = {"POST": Scope.MESSAGES_WRITE}
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


class EngagementReportView(ProjectScopedAPIView):
    required_scopes = {"GET": Scope.REPORTS_VIEW}

    @keyed_operation(
        scope=Scope.REPORTS_VIEW, operation_id="getEngagementReport", summary="Engagement time series",
        description="UTC-aligned buckets of sent, delivered, opens and clicks with daily-distinct unique "
                    "opens and clicks (summed per day for week and month) and their rates over delivered. "
                    "Empty buckets are omitted; oldest first.",
        parameters=REPORT_PARAMETERS, responses={200: OpenApiResponse(EngagementReportSerializer)},
        errors=(422,), problem=True,
    )
    def get(self, request):
        query = parse_report_query(request.query_params)
        window = report_window(project=self.project, start=query.start, end=query.end)
        body = engagement_report_body(project=self.project, window=window, group_by=query.group_by,
                                      filters=query.filters, refresh=asks_for_fresh(request))
        return HttpResponse(body, content_type="application/json")  # already JSON: no serializer, no renderer
