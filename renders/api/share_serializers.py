"""Parsing and shaping for shares and render emails (camelCase, millisecond `Z` timestamps)."""

import re
from datetime import UTC, datetime

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from engagement_platform.clock import iso_ms, now
from renders.api.serializers import StrictObjectSerializer
from renders.emails import SUBJECT_MAX_LENGTH, address_problem, subject_problem
from renders.shares import SHARE_LABEL_MAX_LENGTH, share_link

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
EMAIL_MESSAGE_MAX_LENGTH = 10_000


def parse_rfc3339(value) -> datetime | None:
    """An aware UTC datetime from an RFC 3339 timestamp with `Z` or an offset; None for anything else."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        return None
    try:
        return datetime.fromisoformat(value.upper()).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: an offset that leaves the calendar
        return None


@extend_schema_field(OpenApiTypes.DATETIME)
class Rfc3339Field(serializers.Field):
    default_error_messages = {
        "invalid": "Must be an RFC 3339 timestamp with `Z` or an offset, e.g. 2026-05-03T10:20:00.000Z.",
    }

    def to_internal_value(self, data):
        parsed = parse_rfc3339(data)
        if parsed is None:
            self.fail("invalid")
        return parsed

    def to_representation(self, value):
        return iso_ms(value)


class StringField(serializers.CharField):
    """A CharField that takes only JSON strings (DRF's would turn 12 into "12")."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A BooleanField that takes only JSON true and false (DRF's would take "yes", 1, "on"...)."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if type(data) is not bool:
            self.fail("invalid")
        return data


class ShareCreateSerializer(StrictObjectSerializer):
    label = StringField(required=False, allow_blank=True, max_length=SHARE_LABEL_MAX_LENGTH, default="")
    expiresAt = Rfc3339Field(required=False, allow_null=True, default=None)
    requireEmail = StrictBooleanField(required=False, default=False,
                                      help_text="Ask the viewer's email address before showing the document.")

    def validate_expiresAt(self, value):
        if value is not None and value <= now():
            raise serializers.ValidationError("Must be in the future.")
        return value


def header_safe_subject(value: str) -> None:
    problem = subject_problem(value)
    if problem is not None:
        raise serializers.ValidationError(problem)


def routable_recipient(value: str) -> None:
    problem = address_problem(value, recipient=True)
    if problem is not None:
        raise serializers.ValidationError(problem)


def routable_sender(value: str) -> None:
    problem = address_problem(value, recipient=False)
    if problem is not None:
        raise serializers.ValidationError(problem)


class EmailSendSerializer(StrictObjectSerializer):
    to = serializers.EmailField(max_length=254, validators=[routable_recipient])
    subject = StringField(required=False, trim_whitespace=False, max_length=SUBJECT_MAX_LENGTH,
                          validators=[header_safe_subject])
    message = StringField(required=False, allow_blank=True, max_length=EMAIL_MESSAGE_MAX_LENGTH,
                                    trim_whitespace=False, default="")
    channel = serializers.UUIDField(required=False, allow_null=True, default=None)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.EmailField(required=False, allow_null=True, max_length=254, default=None,
                                                validators=[routable_sender])
        return fields


def share_json(share, request) -> dict:
    return {
        "id": str(share.id),
        "renderId": str(share.render_id),
        "url": share_link(share.token, request),
        "label": share.label or None,
        "createdAt": iso_ms(share.created_at),
        "expiresAt": iso_ms(share.expires_at),
        "revokedAt": iso_ms(share.revoked_at),
        "requireEmail": share.require_email,
    }


def email_json(email) -> dict:
    return {"emailId": str(email.id), "shareId": str(email.share_id), "messageId": email.message_id}


# Response shapes, for the OpenAPI document ---------------------------------------------------

class ShareOutSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    renderId = serializers.UUIDField()
    url = serializers.URLField(help_text="The public share page, /s/<token>.")
    label = serializers.CharField(allow_null=True)
    createdAt = serializers.DateTimeField()
    expiresAt = serializers.DateTimeField(allow_null=True)
    revokedAt = serializers.DateTimeField(allow_null=True)
    requireEmail = serializers.BooleanField(help_text="Whether the share page asks the viewer's email first.")


class ShareListSerializer(serializers.Serializer):
    data = ShareOutSerializer(many=True)
    nextCursor = serializers.CharField(allow_null=True, help_text="The next page's `cursor`; null on the last page.")


class EmailOutSerializer(serializers.Serializer):
    emailId = serializers.UUIDField()
    shareId = serializers.UUIDField()
    messageId = serializers.CharField()
