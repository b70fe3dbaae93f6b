"""Render-side HTTP surface: thin views over renders.services and renders.selectors."""

from django.conf import settings
from django.http import FileResponse, HttpResponse
from drf_spectacular.types import OpenApiTypes
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from apikeys.models import Scope
from apikeys.scoping import ProjectScopedAPIView
from engagement_platform.bodycache import asks_for_fresh
from engagement_platform.cursors import encode_cursor, list_tag, parse_page_params
from engagement_platform.errors import InvalidJson, NotFound, PayloadTooLarge, ValidationFailed
from engagement_platform.exports import stream_export
from engagement_platform.jsonio import dumps
from engagement_platform.openapi import OpenApiResponse, keyed_operation
from engagement_platform.traffic import request_purpose
from renders.api.schema import (
    EVENT_EXPORT_RESPONSES,
    EVENT_LOG_PARAMETERS,
    PAGES_PARAMETERS,
    RENDER_PAGE_PARAMETERS,
    SUMMARY_PARAMETERS,
    VISIT_LIST_PARAMETERS,
    EngagementSummarySerializer,
    EventLogPageSerializer,
    ReadingByPageSerializer,
    RecordedSerializer,
    RenderOutSerializer,
    RenderPageSerializer,
    RenderUploadSerializer,
    VisitPageSerializer,
)
from renders.api.serializers import (
    PartnerEventSerializer,
    event_log_json,
    parse_event_log_query,
    parse_partner_event,
    parse_traffic,
    parse_upload_name,
    parse_visit_query,
    render_json,
    summary_body,
)
from renders.exports import RENDER_EVENT_LINE, render_events_matching
from renders.models import ActorKind, Render
from renders.selectors import engagement_summary_body, render_event_page, render_in_project, render_page
from renders.services import client_ip, render_create, render_delete, render_event_record
from renders.visits import reading_by_page, reading_json, visit_json, visit_list_page

MULTIPART_OVERHEAD_BYTES = 64 * 1024
EVENT_BODY_MAX_BYTES = 64 * 1024
RECORDED_BODIES = {recorded: dumps({"recorded": recorded}) for recorded in (True, False)}


def next_cursor(items: list, has_more: bool, *, tag: str, field: str = "created_at") -> str | None:
    """The `nextCursor` of a page: the position (`field`, id) of its last item, or None on the last page."""
    if not has_more:
        return None
    return encode_cursor(tag=tag, created_at=getattr(items[-1], field), item_id=items[-1].id)


def require_body(request) -> None:
    """An empty body is not JSON (DRF would read it as `{}`)."""
    if request.META.get("CONTENT_LENGTH") in (None, "", "0") and "HTTP_TRANSFER_ENCODING" not in request.META:
        raise InvalidJson("The request body is empty; send a JSON object.")


class RenderCollectionView(ProjectScopedAPIView):
    required_scopes = {"GET": Scope.RENDERS_READ, "POST": Scope.RENDERS_WRITE}
    parser_classes = [MultiPartParser]
    accepts_json_body = False

    @keyed_operation(scope=Scope.RENDERS_READ, operation_id="listRenders", summary="List renders, newest first",
                     responses={200: RenderPageSerializer}, errors=[400], parameters=RENDER_PAGE_PARAMETERS)
    def get(self, request):
        tag = list_tag("renders", self.project.pk)
        page = parse_page_params(request.query_params, tag=tag)
        renders, has_more = render_page(project=self.project, limit=page.limit, after=page.after)
        return Response({
            "data": [render_json(render, request) for render in renders],
            "nextCursor": next_cursor(renders, has_more, tag=tag),
        })

    @keyed_operation(scope=Scope.RENDERS_WRITE, operation_id="createRender", summary="Upload a PDF as a render",
                     request={"multipart/form-data": RenderUploadSerializer},
                     responses={201: RenderOutSerializer}, errors=[400, 413])
    def post(self, request):
        declared = request.META.get("CONTENT_LENGTH") or "0"
        declared_bytes = int(declared) if declared.isascii() and declared.isdigit() else 0
        if declared_bytes > settings.RENDER_MAX_BYTES + MULTIPART_OVERHEAD_BYTES:
            raise PayloadTooLarge(settings.RENDER_MAX_BYTES)
        uploaded = request.FILES.get("file")
        if uploaded is None:
            raise ValidationFailed(field_errors={"file": ["Required: the PDF as a multipart file field."]})
        name = parse_upload_name(request.data, uploaded)
        render = render_create(project=self.project, uploaded_file=uploaded, name=name)
        return Response(render_json(render, request), status=201)


class RenderDetailView(ProjectScopedAPIView):
    required_scopes = {"GET": Scope.RENDERS_READ, "DELETE": Scope.RENDERS_WRITE}

    @keyed_operation(scope=Scope.RENDERS_READ, operation_id="getRender", summary="Get a render",
                     responses={200: RenderOutSerializer}, errors=[404])
    def get(self, request, render_id):
        render = self.get_scoped_or_404(Render.objects.all(), render_id, "render")
        return Response(render_json(render, request))

    @keyed_operation(scope=Scope.RENDERS_WRITE, operation_id="deleteRender", summary="Delete a render",
                     description="Deletes the render, its file and page images, its shares (their links then "
                                 "answer 404), events, counters, visits and per-page reading figures. Report-side "
                                 "message events of its emails stay.",
                     responses={204: OpenApiResponse(description="Deleted.")}, errors=[404])
    def delete(self, request, render_id):
        render = self.get_scoped_or_404(Render.objects.all(), render_id, "render")
        render_delete(render=render)
        return HttpResponse(status=204)


class RenderDownloadView(ProjectScopedAPIView):
    required_scopes = {"GET": Scope.RENDERS_READ}

    @keyed_operation(scope=Scope.RENDERS_READ, operation_id="downloadRender", summary="Download a render's PDF",
                     responses={(200, "application/pdf"): OpenApiResponse(
                         OpenApiTypes.BINARY, description="The PDF, streamed as an attachment.")},
                     errors=[404])
    def get(self, request, render_id):
        render = self.get_scoped_or_404(Render.objects.all(), render_id, "render")
        return FileResponse(render.file.open("rb"), content_type="application/pdf", as_attachment=True,
                            filename=f"{render.name or render.id}".removesuffix(".pdf") + ".pdf")


class RenderEngagementView(ProjectScopedAPIView):
    required_scopes = {"GET": Scope.RENDERS_READ}

    @keyed_operation(scope=Scope.RENDERS_READ, operation_id="getRenderEngagement",
                     summary="Engagement summary of a render", parameters=SUMMARY_PARAMETERS,
                     responses={200: EngagementSummarySerializer}, errors=[400, 404])
    def get(self, request, render_id):
        traffic = parse_traffic(request.query_params)
        body = engagement_summary_body(project=self.project, render_id=render_id, encode=summary_body,
                                       refresh=asks_for_fresh(request), traffic=traffic)
        if body is None:
            raise NotFound("render")
        return HttpResponse(body, content_type="application/json")


class RenderEventsView(ProjectScopedAPIView):
    required_scopes = {"GET": Scope.RENDERS_READ, "POST": Scope.RENDERS_WRITE}
    max_body_bytes = EVENT_BODY_MAX_BYTES

    @keyed_operation(scope=Scope.RENDERS_READ, operation_id="listRenderEvents",
                     summary="A render's events, newest first",
                     description="Every event of the render with its traffic class (`human` or `machine`, and "
                                 "for `machine` the reason), newest first (ties by id), cursor-paginated, "
                                 "optionally filtered; `format=ndjson` or `csv` exports every matching event, "
                                 "oldest first.",
                     parameters=EVENT_LOG_PARAMETERS,
                     responses={(200, "application/json"): EventLogPageSerializer, **EVENT_EXPORT_RESPONSES},
                     errors=[400, 404])
    def get(self, request, render_id):
        render = self.get_scoped_or_404(Render.objects.all(), render_id, "render")
        tag = list_tag("render-events", render.pk)
        page, lookups, export_format = parse_event_log_query(request.query_params, tag=tag)
        if export_format is not None:
            return stream_export(render_events_matching(render=render, lookups=lookups),
                                 project=render.project_id, columns=RENDER_EVENT_LINE, export_format=export_format,
                                 filename=f"render-{render.pk}-events")
        events, has_more = render_event_page(render=render, lookups=lookups, limit=page.limit, after=page.after)
        return Response({
            "data": [event_log_json(event) for event in events],
            "nextCursor": next_cursor(events, has_more, tag=tag),
        })

    @keyed_operation(scope=Scope.RENDERS_WRITE, operation_id="recordRenderEvent", summary="Record a partner-side event",
                     request=PartnerEventSerializer, responses={200: RecordedSerializer}, errors=[400, 404, 413])
    def post(self, request, render_id):
        try:
            require_body(request)
            body = parse_partner_event(request.data)
        except Exception:
            # An unknown render is answered before a bad body; valid bodies look the render up while recording.
            if render_in_project(project=self.project, render_id=render_id) is None:
                raise NotFound("render") from None
            raise
        result = render_event_record(
            project=self.project,
            render_id=render_id,
            event_type=body["eventType"],
            actor_kind=ActorKind.PARTNER,
            source_ip=client_ip(request.META),
            user_agent=request.META.get("HTTP_USER_AGENT"),
            metadata=body.get("metadata"),
            request_purpose=request_purpose(request.method, request.META),
        )
        if result is None:
            raise NotFound("render")
        return HttpResponse(RECORDED_BODIES[result.recorded], content_type="application/json")


class RenderVisitsView(ProjectScopedAPIView):
    required_scopes = {"GET": Scope.RENDERS_READ}

    @keyed_operation(scope=Scope.RENDERS_READ, operation_id="listRenderVisits",
                     summary="A render's visits, newest first",
                     description="Each visit is one viewer's continuous reading of one share (activity less than "
                                 "`VISIT_IDLE_MINUTES` apart), newest first (ties by id), cursor-paginated, "
                                 "optionally filtered by share and traffic class.",
                     parameters=VISIT_LIST_PARAMETERS, responses={200: VisitPageSerializer}, errors=[400, 404])
    def get(self, request, render_id):
        render = self.get_scoped_or_404(Render.objects.all(), render_id, "render")
        tag = list_tag("render-visits", render.pk)
        page, lookups = parse_visit_query(request.query_params, tag=tag)
        visits, has_more = visit_list_page(render=render, lookups=lookups, limit=page.limit, after=page.after)
        return Response({
            "data": [visit_json(visit, render.page_count) for visit in visits],
            "nextCursor": next_cursor(visits, has_more, tag=tag, field="started_at"),
        })


class RenderPagesView(ProjectScopedAPIView):
    required_scopes = {"GET": Scope.RENDERS_READ}

    @keyed_operation(scope=Scope.RENDERS_READ, operation_id="getRenderPages",
                     summary="Reading time per page of a render",
                     description="One item per page 1..pageCount (zero-filled) with its reading time and the "
                                 "visits that read it for at least 1 s, and the visits' averages. Read from "
                                 "figures kept as reports arrive: its cost does not grow with the visits.",
                     parameters=PAGES_PARAMETERS, responses={200: ReadingByPageSerializer}, errors=[400, 404])
    def get(self, request, render_id):
        render = self.get_scoped_or_404(Render.objects.all(), render_id, "render")
        traffic = parse_traffic(request.query_params)
        return Response(reading_json(reading_by_page(render=render, traffic=traffic)))
