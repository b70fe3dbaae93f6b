"""OpenAPI: the bearer scheme, both error shapes, and one decorator that documents a keyed operation."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers

from engagement_platform.errors import PROBLEM_CONTENT_TYPE
from engagement_platform.exports import CONTENT_TYPES


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "apikeys.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "ck_live_<random>",
            "description": "A project API key. Each operation names the scope it needs in `x-required-scope`: "
                           "renders.read, renders.write, messages.write or reports.view.",
        }


class ErrorIssuesSerializer(serializers.Serializer):
    formErrors = serializers.ListField(child=serializers.CharField())
    fieldErrors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=[
        "invalid_json", "invalid_request", "unauthorized", "forbidden", "not_found", "method_not_allowed",
        "payload_too_large", "rate_limited", "email_failed", "internal_error", "service_unavailable"])
    message = serializers.CharField()
    requestId = serializers.CharField()
    issues = ErrorIssuesSerializer(required=False)
    retryAfter = serializers.IntegerField(required=False)


class ErrorEnvelopeSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class ProblemFieldErrorSerializer(serializers.Serializer):
    field = serializers.CharField()
    reason = serializers.CharField()


class ProblemSerializer(serializers.Serializer):
    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.ChoiceField(choices=[
        "invalid_key", "insufficient_scope", "retention_exceeded", "project_deleted", "not_found",
        "method_not_allowed", "invalid_json", "payload_too_large", "validation_failed", "rate_limited",
        "internal_error", "service_unavailable"])
    request_id = serializers.CharField()
    retry_after = serializers.IntegerField(required=False)
    retention_days = serializers.IntegerField(required=False)
    scope = serializers.CharField(required=False)
    errors = ProblemFieldErrorSerializer(many=True, required=False)


ERROR_DESCRIPTIONS = {
    400: "Invalid JSON or a request that failed validation.",
    401: "Missing, malformed, unknown, revoked or expired API key.",
    403: "The key's project is deleted, the key lacks the scope, or a plan limit is exceeded.",
    404: "No such object in this key's project.",
    405: "Method not allowed on this route.",
    410: "The share was revoked or has expired.",
    413: "The body is larger than the route accepts.",
    422: "Validation failed; `errors` names each bad field.",
    429: "The project's rate limit is exhausted; see Retry-After.",
    500: "Unexpected failure; quote the request id to support.",
    502: "The mail server refused the message.",
    503: "A backing service is unavailable; nothing was written.",
}
KEYED_ERRORS = (401, 403, 405, 429, 500, 503)


def error_responses(statuses, *, problem: bool) -> dict:
    media = PROBLEM_CONTENT_TYPE if problem else "application/json"
    schema = ProblemSerializer if problem else ErrorEnvelopeSerializer
    return {(status, media): OpenApiResponse(schema, description=ERROR_DESCRIPTIONS[status]) for status in statuses}


def keyed_operation(*, operation_id: str, scope: str, summary: str, responses: dict, errors=(),
                    problem: bool = False, request=None, parameters=None, description: str = ""):
    """extend_schema for a keyed route: its scope, its own responses, and every error in its surface's shape.

    Its tag (the resource it belongs to) comes from its path, in `document_operations`."""
    all_responses = dict(responses)
    all_responses.update(error_responses(sorted(set(KEYED_ERRORS) | set(errors)), problem=problem))
    kwargs = {}
    if request is not None:
        kwargs["request"] = request
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        description=(description + "\n\n" if description else "") + f"Requires scope `{scope}`.",
        responses=all_responses,
        parameters=parameters,
        extensions={"x-required-scope": scope},
        **kwargs,
    )


# Tags: one per resource, in this order. A path is tagged by the last of its literal segments that
# names a resource of its own (`/v1/renders/{id}/shares` is `shares`), else by its first segment
# after `/v1/` (`/v1/renders/{id}/engagement` is `renders`).
RESOURCE_TAGS = {
    "renders": "Uploaded PDFs: upload, list, read, download, delete; their engagement summary and "
               "partner-side events.",
    "shares": "Public links to a render (`/s/<token>`): mint, list, revoke.",
    "emails": "Email a render: a tracked link and an open pixel, counted on both surfaces.",
    "reports": "The engagement report: a time series of message events (RFC 9457 errors).",
    "messages": "Ingest message events from your own mail pipeline (RFC 9457 errors).",
    "webhooks": "Webhook endpoints: signed deliveries of events (Standard Webhooks), their delivery log, "
                "retries and tests.",
}
API_PREFIX = "/v1/"


def resource_tag(path: str) -> str:
    literals = [segment for segment in path.removeprefix(API_PREFIX).split("/")
                if segment and not segment.startswith("{")]
    for segment in reversed(literals[1:]):
        if segment in RESOURCE_TAGS:
            return segment
    return literals[0] if literals else "api"


RESPONSE_HEADERS = {
    "X-Request-Id": {"description": "The request's id: the caller's own well-formed `X-Request-Id` (at most "
                                    "128 characters) or a generated one. Error bodies repeat it.",
                     "required": True, "schema": {"type": "string", "maxLength": 128}},
}
RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": {"description": "The project's requests per minute.",
                          "schema": {"type": "integer", "minimum": 0}},
    "X-RateLimit-Remaining": {"description": "Requests left in the current one-minute window (a request "
                                             "refused before it is counted does not count).",
                              "schema": {"type": "integer", "minimum": 0}},
    "X-RateLimit-Reset": {"description": "Unix seconds at which the current window ends.",
                          "schema": {"type": "integer", "minimum": 0}},
}
# Answered before the key authenticated (401), or when what counts requests is out of reach (5xx):
# those responses may lack the rate-limit headers; every other response of a keyed operation has them.
RATE_LIMIT_UNCOUNTED = ("401",)
RATE_LIMIT_OPTIONAL_PREFIX = "5"
RETRY_HEADERS = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "required": True,
                    "schema": {"type": "integer", "minimum": 0}},
}
RETRY_STATUSES = ("429", "503")
ATTACHMENT_HEADERS = {
    "Content-Disposition": {"description": "`attachment` with the file name.", "required": True,
                            "schema": {"type": "string"}},
}
BINARY_MEDIA_TYPES = ("application/pdf",)
# Exports (contract section 9) answer as attachments too; a response that may also be JSON has the header
# only for its export formats (`required` false).
EXPORT_MEDIA_TYPES = tuple(CONTENT_TYPES.values())


def is_keyed(operation: dict) -> bool:
    return any("ApiKey" in requirement for requirement in operation.get("security", []))


def document_operations(result, generator, request, public):
    """Schema post-processing: each operation tagged by its resource; `X-Request-Id` on every response,
    the rate-limit headers on every response of a keyed operation, `Retry-After` on 429 and 503,
    `Content-Disposition` on file downloads and exports."""
    used_tags = set()
    for path, path_item in result.get("paths", {}).items():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            tag = resource_tag(path)
            operation["tags"] = [tag]
            used_tags.add(tag)
            for status, response in operation["responses"].items():
                headers = response.setdefault("headers", {})
                headers.update(RESPONSE_HEADERS)
                if is_keyed(operation) and status not in RATE_LIMIT_UNCOUNTED:
                    required = not status.startswith(RATE_LIMIT_OPTIONAL_PREFIX)
                    headers.update({name: {**header, "required": required}
                                    for name, header in RATE_LIMIT_HEADERS.items()})
                if status in RETRY_STATUSES:
                    headers.update(RETRY_HEADERS)
                media_types = set(response.get("content", {}))
                if media_types and media_types <= set(BINARY_MEDIA_TYPES + EXPORT_MEDIA_TYPES):
                    headers.update(ATTACHMENT_HEADERS)
                elif media_types & set(EXPORT_MEDIA_TYPES):
                    headers.update({name: {**header, "required": False,
                                           "description": header["description"] + " Exports only (NDJSON, CSV)."}
                                    for name, header in ATTACHMENT_HEADERS.items()})
    ordered = [name for name in RESOURCE_TAGS if name in used_tags] + sorted(used_tags - set(RESOURCE_TAGS))
    result["tags"] = [{"name": name, **({"description": RESOURCE_TAGS[name]} if name in RESOURCE_TAGS else {})}
                      for name in ordered]
    return result


__all__ = ["keyed_operation", "error_responses", "inline_serializer", "OpenApiResponse", "extend_schema"]
