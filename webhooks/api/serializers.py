"""Parsing and shaping for the webhook endpoints API (the render-side surface: camelCase, section 2 errors)."""

from rest_framework import serializers

from engagement_platform.clock import iso_ms
from engagement_platform.event_hooks import PublicEventType
from renders.api.serializers import StrictObjectSerializer
from webhooks.models import DESCRIPTION_MAX_LENGTH, URL_MAX_LENGTH, DeliveryStatus
from webhooks.services import destination_problem

EVENT_TYPES_TEXT = ", ".join(f'"{choice.value}"' for choice in PublicEventType)


class EventTypesField(serializers.ListField):
    child = serializers.ChoiceField(
        choices=PublicEventType.choices,
        error_messages={"invalid_choice": '"{input}" is not an event type: expected one of ' + EVENT_TYPES_TEXT + "."})

    def __init__(self, **kwargs):
        super().__init__(allow_empty=False, max_length=len(PublicEventType), **kwargs)

    def to_internal_value(self, data):
        values = super().to_internal_value(data)
        return sorted(set(values), key=[choice.value for choice in PublicEventType].index)


class EndpointUrlField(serializers.CharField):
    def __init__(self, **kwargs):
        super().__init__(max_length=URL_MAX_LENGTH, trim_whitespace=True, **kwargs)

    def to_internal_value(self, data):
        url = super().to_internal_value(data)
        problem = destination_problem(url)
        if problem is not None:
            raise serializers.ValidationError(problem)
        return url


class EndpointCreateSerializer(StrictObjectSerializer):
    url = EndpointUrlField()
    events = EventTypesField()
    description = serializers.CharField(max_length=DESCRIPTION_MAX_LENGTH, required=False, allow_blank=True,
                                        default="")
    includeMachine = serializers.BooleanField(required=False, default=False)


class EndpointUpdateSerializer(StrictObjectSerializer):
    url = EndpointUrlField(required=False)
    events = EventTypesField(required=False)
    description = serializers.CharField(max_length=DESCRIPTION_MAX_LENGTH, required=False, allow_blank=True)
    includeMachine = serializers.BooleanField(required=False)
    enabled = serializers.BooleanField(required=False)


UPDATE_FIELD_NAMES = {"url": "url", "events": "events", "description": "description",
                      "includeMachine": "include_machine", "enabled": "enabled"}


def endpoint_changes(body: dict) -> dict:
    return {UPDATE_FIELD_NAMES[name]: value for name, value in body.items()}


def endpoint_json(endpoint) -> dict:
    return {
        "id": str(endpoint.id),
        "url": endpoint.url,
        "events": list(endpoint.events),
        "description": endpoint.description,
        "includeMachine": endpoint.include_machine,
        "createdAt": iso_ms(endpoint.created_at),
        "disabledAt": iso_ms(endpoint.disabled_at),
    }


def delivery_json(delivery) -> dict:
    return {
        "id": str(delivery.id),
        "eventId": str(delivery.event_id),
        "eventType": delivery.event_type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "lastResponseStatus": delivery.last_response_status,
        "lastError": delivery.last_error,
        "lastDurationMs": delivery.last_duration_ms,
        "createdAt": iso_ms(delivery.created_at),
        "nextAttemptAt": iso_ms(delivery.next_attempt_at),
    }


# Response shapes, for the OpenAPI document ---------------------------------------------------

class EndpointOutSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.ChoiceField(choices=PublicEventType.choices))
    description = serializers.CharField()
    includeMachine = serializers.BooleanField()
    createdAt = serializers.DateTimeField()
    disabledAt = serializers.DateTimeField(allow_null=True)


class EndpointCreatedSerializer(EndpointOutSerializer):
    secret = serializers.CharField(help_text="`whsec_` + base64 of 32 random bytes; shown only in this answer.")


class EndpointListSerializer(serializers.Serializer):
    data = EndpointOutSerializer(many=True)


class SecretSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="The new secret; the previous one also signs for 24 hours.")


class DeliveryOutSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    eventId = serializers.UUIDField(help_text="The payload's `id`, sent as `webhook-id` on every attempt.")
    eventType = serializers.ChoiceField(choices=PublicEventType.choices)
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempts = serializers.IntegerField()
    lastResponseStatus = serializers.IntegerField(allow_null=True)
    lastError = serializers.CharField(allow_null=True)
    lastDurationMs = serializers.IntegerField(allow_null=True)
    createdAt = serializers.DateTimeField()
    nextAttemptAt = serializers.DateTimeField(allow_null=True)


class DeliveryPageSerializer(serializers.Serializer):
    data = DeliveryOutSerializer(many=True)
    nextCursor = serializers.CharField(allow_null=True)


class AcceptedSerializer(serializers.Serializer):
    deliveryId = serializers.UUIDField()
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
