"""OpenAPI: the bearer scheme, both error shapes, and one decorator that documents a keyed operation."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers

from engagement_platform.errors import PROBLEM_CONTENT_TYPE


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
                    problem: bool = False, request=None, parameters=None, description: str = "", tags=None):
    """extend_schema for a keyed route: its scope, its own responses, and every error in its surface's shape."""
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
        tags=tags,
        **kwargs,
    )


RESPONSE_HEADERS = {
    "X-Request-Id": {"description": "The request's id: the caller's own well-formed `X-Request-Id` (at most "
                                    "128 characters) or a generated one. Error bodies repeat it.",
                     "required": True, "schema": {"type": "string", "maxLength": 128}},
}
RETRY_HEADERS = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "required": True,
                    "schema": {"type": "integer", "minimum": 0}},
}
RETRY_STATUSES = ("429", "503")


def document_response_headers(result, generator, request, public):
    """Schema post-processing: `X-Request-Id` on every response, `Retry-After` on 429 and 503."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                headers = response.setdefault("headers", {})
                headers.update(RESPONSE_HEADERS)
                if status in RETRY_STATUSES:
                    headers.update(RETRY_HEADERS)
    return result


__all__ = ["keyed_operation", "error_responses", "inline_serializer", "OpenApiResponse", "extend_schema"]
