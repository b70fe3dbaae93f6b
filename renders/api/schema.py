"""Response shapes of the render-side API, for the OpenAPI document."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from renders.models import ActorKind, EventType


class RenderOutSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["succeeded"])
    sizeBytes = serializers.IntegerField()
    createdAt = serializers.DateTimeField()
    downloadUrl = serializers.URLField()


class RenderPageSerializer(serializers.Serializer):
    data = RenderOutSerializer(many=True)
    nextCursor = serializers.CharField(allow_null=True)


RENDER_PAGE_PARAMETERS = [
    OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                     OpenApiParameter.QUERY, required=False, description="Renders per page, 1 to 100 (default 20)."),
    OpenApiParameter("cursor", OpenApiTypes.STR, OpenApiParameter.QUERY, required=False,
                     description="The `nextCursor` of the previous page; omit it for the first page."),
]


SUMMARY_PARAMETERS = [
    OpenApiParameter("Cache-Control", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
                     description="`no-cache` builds the summary afresh. Without it, a summary asked for again "
                                 "may be answered from a kept copy; every write that changes the summary (an event "
                                 "recorded or backfilled, the render's deletion) drops the render's kept "
                                 "copies, so the answer is the same."),
]


class RenderUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The PDF (must start with %PDF-).")
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


class EngagementSummarySerializer(serializers.Serializer):
    counts = CountsSerializer()
    linkOpens = serializers.IntegerField()
    total = serializers.IntegerField()
    recent = EventOutSerializer(many=True)


class RecordedSerializer(serializers.Serializer):
    recorded = serializers.BooleanField()
