"""Parsing and shaping for the render-side API (camelCase, millisecond `Z` timestamps)."""

import json

from django.urls import reverse
from rest_framework import serializers

from engagement_platform.clock import iso_ms
from engagement_platform.cursors import PageParams, parse_page_params
from engagement_platform.errors import ValidationFailed, validation_failed_from_drf
from engagement_platform.exports import CSV, NDJSON
from engagement_platform.ids import parse_uuid
from engagement_platform.jsonio import dumps
from engagement_platform.traffic import TrafficFilter
from renders.models import PARTNER_EVENT_TYPES, ActorKind, EventType
from renders.services import METADATA_MAX_BYTES, contains_nul, metadata_size_bytes

NOT_AN_OBJECT = "Expected a JSON object."


class StrictObjectSerializer(serializers.Serializer):
    """Accepts a JSON object with only the declared keys."""

    def run_validation(self, data=serializers.empty):
        if data is None and not self.allow_null:  # a JSON `null` body: answered like any other non-object
            raise serializers.ValidationError({"non_field_errors": [NOT_AN_OBJECT]})
        return super().run_validation(data)

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": [NOT_AN_OBJECT]})
        errors = {key: ["Unknown field."] for key in sorted(set(data) - set(self.fields))}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors.update(exc.detail)
        if errors:
            raise serializers.ValidationError(errors)
        return value


PARTNER_EVENT_TYPES_TEXT = "one of " + ", ".join(f'"{t.value}"' for t in PARTNER_EVENT_TYPES)


class PartnerEventSerializer(StrictObjectSerializer):
    eventType = serializers.ChoiceField(
        choices=[t.value for t in PARTNER_EVENT_TYPES],
        error_messages={
            "invalid_choice": '"{input}" is not a valid choice: expected ' + PARTNER_EVENT_TYPES_TEXT + ".",
            "null": "May not be null: expected " + PARTNER_EVENT_TYPES_TEXT + ".",
            "required": "This field is required: " + PARTNER_EVENT_TYPES_TEXT + ".",
        },
    )
    metadata = serializers.JSONField(required=False, allow_null=True, default=None)

    def validate_metadata(self, value):
        problem = metadata_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


PARTNER_EVENT_FIELDS = frozenset(PartnerEventSerializer._declared_fields)
PARTNER_EVENT_TYPE_VALUES = frozenset(t.value for t in PARTNER_EVENT_TYPES)


def metadata_problem(value) -> str | None:
    if value is not None and not isinstance(value, dict):
        return "Must be a JSON object or null."
    if value is not None and metadata_size_bytes(value) > METADATA_MAX_BYTES:
        return f"Must be at most {METADATA_MAX_BYTES} bytes serialized."
    if value is not None and contains_nul(value):
        return "Must not contain the character U+0000."
    return None


def parse_partner_event(data) -> dict:
    """A partner event body: valid ones checked directly, anything else through the serializer for its errors."""
    if type(data) is dict and data.keys() <= PARTNER_EVENT_FIELDS:
        event_type, metadata = data.get("eventType"), data.get("metadata")
        if type(event_type) is str and event_type in PARTNER_EVENT_TYPE_VALUES and _plain_metadata(metadata):
            return {"eventType": event_type, "metadata": metadata}
    return parse_or_raise(PartnerEventSerializer, data)


def _plain_metadata(value) -> bool:
    """Null, or an object the serializer would accept as it is (finite numbers, size, no U+0000)."""
    if value is None:
        return True
    if type(value) is not dict:
        return False
    try:
        encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except ValueError:  # NaN or an infinity: the serializer's JSON check refuses it
        return False
    return len(encoded) <= METADATA_MAX_BYTES and not contains_nul(value)


def parse_or_raise(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    if not serializer.is_valid():
        raise validation_failed_from_drf(serializer.errors)
    return serializer.validated_data


RENDER_NAME_MAX_LENGTH = 255


def parse_upload_name(data, uploaded) -> str:
    """The optional multipart `name` field, defaulting to the uploaded file's name."""
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise ValidationFailed(field_errors={"name": ["Must be a text field, not a file."]})
    name = name or uploaded.name or ""
    if len(name) > RENDER_NAME_MAX_LENGTH:
        raise ValidationFailed(field_errors={"name": [f"Must be at most {RENDER_NAME_MAX_LENGTH} characters."]})
    if "\x00" in name:
        raise ValidationFailed(field_errors={"name": ["Must not contain the character U+0000."]})
    return name


def render_json(render, request) -> dict:
    return {
        "id": str(render.id),
        "name": render.name,
        "status": render.status,
        "sizeBytes": render.size_bytes,
        "pageCount": render.page_count,
        "createdAt": iso_ms(render.created_at),
        "downloadUrl": request.build_absolute_uri(reverse("render-download", args=[render.id])),
    }


def event_json(event) -> dict:
    return {
        "id": str(event.id),
        "eventType": event.event_type,
        "actorKind": event.actor_kind,
        "shareId": str(event.share_id) if event.share_id else None,
        "sourceIp": event.source_ip,
        "userAgent": event.user_agent,
        "metadata": event.metadata,
        "createdAt": iso_ms(event.created_at),
    }


def event_log_json(event) -> dict:
    """An event of the event log: the summary's event object plus its traffic class."""
    return {**event_json(event), "traffic": event.traffic, "machineReason": event.machine_reason}


def summary_body(summary) -> bytes:
    """The summary as response bytes; its `recent` array may come already encoded by the database."""
    head = dumps({"counts": summary.counts, "linkOpens": summary.link_opens, "total": summary.total})
    recent = summary.recent_json if summary.recent_json is not None else dumps(
        [event_json(event) for event in summary.recent])
    return head[:-1] + b',"recent":' + recent + b"}"


# Query parameters of the summary and the event log ----------------------------------------------------------

EVENT_LOG_LIMIT_DEFAULT = 50


def one_of(choices) -> str:
    return "Must be one of " + ", ".join(f'"{choice}"' for choice in choices) + "."


def _choice(query, name: str, choices, errors: dict) -> str | None:
    """`?name=` when it is one of `choices`; None when absent; a bad value is added to `errors`."""
    value = query.get(name)
    if value is None:
        return None
    if value not in choices:
        errors[name] = [one_of(choices)]
        return None
    return value


def parse_traffic(query) -> str:
    """`?traffic=all|human|machine` (default all)."""
    errors: dict = {}
    traffic = _choice(query, "traffic", TrafficFilter.values, errors)
    if errors:
        raise ValidationFailed(field_errors=errors)
    return traffic or TrafficFilter.ALL


def parse_visit_query(query, *, tag: str) -> tuple[PageParams, dict]:
    """The visit list's page (`limit` 1..100, default 20, `cursor`) and filters as visit field lookups
    (`traffic`, `shareId`); every bad parameter named in one 400."""
    errors: dict = {}
    page = None
    try:
        page = parse_page_params(query, tag=tag)
    except ValidationFailed as exc:
        errors.update(exc.field_errors)
    lookups = _traffic_and_share_lookups(query, errors)
    if errors:
        raise ValidationFailed(field_errors=errors)
    return page, lookups


def _traffic_and_share_lookups(query, errors: dict) -> dict:
    """The `traffic` and `shareId` filters shared by the event log and the visit list, as field lookups."""
    lookups = {}
    traffic = _choice(query, "traffic", TrafficFilter.values, errors)
    if traffic not in (None, TrafficFilter.ALL):
        lookups["traffic"] = traffic
    raw_share = query.get("shareId")
    if raw_share is not None:
        share_id = parse_uuid(raw_share)
        if share_id is None:
            errors["shareId"] = ["Must be a share id (a UUID)."]
        else:
            lookups["share_id"] = share_id
    return lookups


EVENT_LOG_PAGE = "json"
EVENT_LOG_FORMATS = (EVENT_LOG_PAGE, NDJSON, CSV)


def parse_event_log_query(query, *, tag: str) -> tuple[PageParams | None, dict, str | None]:
    """The event log's page (`limit` 1..100, default 50, `cursor`), its filters as event field lookups
    (`traffic`, `eventType`, `shareId`, `actorKind`) and its export format (`ndjson`, `csv`; None for the
    page, `format` absent or `json`: an export has no page, so `limit` and `cursor` are not read then);
    every bad parameter named in one 400."""
    errors: dict = {}
    export_format = _choice(query, "format", EVENT_LOG_FORMATS, errors)
    if export_format == EVENT_LOG_PAGE:
        export_format = None
    page = None
    if export_format is None:
        try:
            page = parse_page_params(query, tag=tag, default=EVENT_LOG_LIMIT_DEFAULT)
        except ValidationFailed as exc:
            errors.update(exc.field_errors)
    lookups = _traffic_and_share_lookups(query, errors)
    event_type = _choice(query, "eventType", EventType.values, errors)
    if event_type is not None:
        lookups["event_type"] = event_type
    actor_kind = _choice(query, "actorKind", ActorKind.values, errors)
    if actor_kind is not None:
        lookups["actor_kind"] = actor_kind
    if errors:
        raise ValidationFailed(field_errors=errors)
    return page, lookups, export_format
