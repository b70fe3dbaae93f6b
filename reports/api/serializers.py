"""Bodies of the report-side API (snake_case, second-precision `Z` timestamps) and their OpenAPI shapes."""

from rest_framework import serializers

from engagement_platform.errors import ValidationFailed
from reports.models import EVENT_ID_MAX_LENGTH, MessageEventType
from reports.validation import parse_message_event

MAX_EVENTS_PER_BATCH = 1000


def parse_event_batch(data) -> list[dict]:
    """`{"events": [...]}` → validated events, all or nothing (errors named like `events[3].recipient`)."""
    if not isinstance(data, dict):
        raise ValidationFailed(form_errors=["Expected a JSON object: {\"events\": [...]}."])
    field_errors: dict[str, list[str]] = {name: ["Unknown field."] for name in sorted(set(data) - {"events"})}
    raw_events = data.get("events")
    if not isinstance(raw_events, list) or not 1 <= len(raw_events) <= MAX_EVENTS_PER_BATCH:
        field_errors["events"] = [f"Required: an array of 1 to {MAX_EVENTS_PER_BATCH} events."]
        raise ValidationFailed(field_errors=field_errors)
    events, bad = [], 0
    for index, raw in enumerate(raw_events):
        event, errors = parse_message_event(raw)
        bad += bool(errors)
        for name, reason in errors.items():
            field_errors[f"events[{index}].{name}" if name else f"events[{index}]"] = [reason]
        events.append(event)
    if field_errors:
        raise ValidationFailed(
            field_errors=field_errors,
            message=f"{bad} of {len(raw_events)} events failed validation; nothing was stored." if bad
            else "The request body has unknown fields; nothing was stored.",
        )
    return events


# OpenAPI shapes (documentation only; parsing is above) --------------------------------------


class MessageEventInSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=EVENT_ID_MAX_LENGTH, help_text="Your idempotency key for the event.")
    type = serializers.ChoiceField(choices=MessageEventType.choices)
    messageId = serializers.CharField()
    channel = serializers.UUIDField()
    recipient = serializers.EmailField()
    occurredAt = serializers.DateTimeField(help_text="RFC 3339 with an offset or Z.")
    url = serializers.CharField(required=False, allow_null=True, help_text="The clicked link (clicks).")
    userAgent = serializers.CharField(required=False, allow_null=True,
                                      help_text="The opener's or clicker's user agent: the traffic rules read it.")
    machine = serializers.BooleanField(
        required=False, allow_null=True,
        help_text="Your mail provider's own machine flag: true stores an `opened` or `clicked` as machine traffic "
                  "(reason `client`); false or absent leaves the platform's rules to decide.")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.EmailField(help_text="The sending address; its domain is the identity.")
        return fields


class MessageEventBatchSerializer(serializers.Serializer):
    events = MessageEventInSerializer(many=True, min_length=1, max_length=MAX_EVENTS_PER_BATCH)


class IngestResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()


class BucketSerializer(serializers.Serializer):
    period = serializers.DateTimeField()
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    opens = serializers.IntegerField()
    unique_opens = serializers.IntegerField()
    clicks = serializers.IntegerField()
    unique_clicks = serializers.IntegerField()
    open_rate = serializers.FloatField()
    click_rate = serializers.FloatField()


class EngagementReportSerializer(serializers.Serializer):
    data = BucketSerializer(many=True)
