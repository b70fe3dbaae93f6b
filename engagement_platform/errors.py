"""Every API failure, and the one place that renders it for each API surface.

The render side (`/v1/renders/...`, keys) answers with the envelope
`{"error": {"code", "message", "requestId", "issues"?}}`; the report side
(`/v1/reports/*`, `/v1/messages/*`) with RFC 9457 problem details.
"""

import logging
import sys

from django.conf import settings
from django.core.exceptions import BadRequest, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpResponse
from django.http.multipartparser import MultiPartParserError
from rest_framework import exceptions as drf
from rest_framework.response import Response

from engagement_platform.jsonio import dumps
from engagement_platform.logging import loggable_path

logger = logging.getLogger("engagement_platform.errors")

PROBLEM_SURFACE_PREFIXES = ("/v1/reports/", "/v1/messages/")
PROBLEM_CONTENT_TYPE = "application/problem+json"


class ApiError(drf.APIException):
    """A failure with a status and a code for each surface, plus extra fields."""

    status = 500
    code = "internal_error"
    problem_status: int | None = None  # defaults to `status`
    problem_code: str | None = None  # defaults to `code`
    title = "Internal server error"
    default_message = "Something went wrong on our side. Quote the request id to support."

    def __init__(self, message: str | None = None):
        self.message = message or self.default_message
        super().__init__(detail=self.message)
        self.status_code = self.status

    def envelope_extra(self) -> dict:
        return {}

    def problem_extra(self) -> dict:
        return {}

    def headers(self) -> dict:
        return {}


class InvalidJson(ApiError):
    status, code, title = 400, "invalid_json", "Invalid JSON"
    default_message = "The request body is not valid JSON."


class ValidationFailed(ApiError):
    """Bad input: 400 `invalid_request` on the render side, 422 `validation_failed` on reports."""

    status, code, title = 400, "invalid_request", "Validation failed"
    problem_status, problem_code = 422, "validation_failed"
    default_message = "The request did not pass validation."

    def __init__(self, field_errors: dict[str, list[str]] | None = None, form_errors: list[str] | None = None,
                 message: str | None = None):
        self.field_errors = field_errors or {}
        self.form_errors = form_errors or []
        super().__init__(message or self._summary())

    def _summary(self) -> str:
        if self.field_errors:
            return "Invalid value for: " + ", ".join(self.field_errors) + "."
        if self.form_errors:
            return self.form_errors[0]
        return self.default_message

    def envelope_extra(self) -> dict:
        return {"issues": {"formErrors": self.form_errors, "fieldErrors": self.field_errors}}

    def problem_extra(self) -> dict:
        errors = [{"field": field, "reason": reason}
                  for field, reasons in self.field_errors.items() for reason in reasons]
        errors += [{"field": "body", "reason": reason} for reason in self.form_errors]
        return {"errors": errors}


class Unauthorized(ApiError):
    status, code, title = 401, "unauthorized", "Invalid API key"
    problem_code = "invalid_key"
    default_message = "Missing, malformed, unknown, revoked or expired API key. Send Authorization: Bearer <key>."

    def headers(self) -> dict:
        return {"WWW-Authenticate": 'Bearer realm="api"'}


class Forbidden(ApiError):
    status, code, title = 403, "forbidden", "Forbidden"
    default_message = "This key may not do that."


class ProjectDeleted(Forbidden):
    problem_code, title = "project_deleted", "Project deleted"
    default_message = "This key's project has been deleted."


class InsufficientScope(Forbidden):
    problem_code, title = "insufficient_scope", "Insufficient scope"

    def __init__(self, scope: str):
        self.scope = str(scope)  # a Scope member's value, never its enum repr
        super().__init__(f"This key lacks the scope '{self.scope}' that this route requires.")

    def problem_extra(self) -> dict:
        return {"scope": self.scope}


class RetentionExceeded(Forbidden):
    problem_code, title = "retention_exceeded", "Retention exceeded"

    def __init__(self, retention_days: int):
        self.retention_days = retention_days
        super().__init__(
            f"`from` is earlier than this project's plan retention of {retention_days} days allows."
        )

    def problem_extra(self) -> dict:
        return {"retention_days": self.retention_days}


class NotFound(ApiError):
    status, code, title = 404, "not_found", "Not found"
    default_message = "No such resource."

    def __init__(self, resource: str | None = None):
        super().__init__(f"No {resource} with that id in this project." if resource else None)


class MethodNotAllowed(ApiError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"

    def __init__(self, method: str, allowed: list[str] | None = None):
        self.allowed = allowed or []
        super().__init__(f"Method {method} is not allowed on this route.")

    def headers(self) -> dict:
        return {"Allow": ", ".join(self.allowed)} if self.allowed else {}


class PayloadTooLarge(ApiError):
    status, code, title = 413, "payload_too_large", "Payload too large"

    def __init__(self, limit_bytes: int | None = None):
        super().__init__(f"The request body exceeds the limit of {limit_bytes} bytes." if limit_bytes else
                         "The request body is too large.")


class LengthRequired(ApiError):
    """A body whose length the server cannot know (chunked, and the server does not delimit it)."""

    status, code, title = 411, "length_required", "Length required"
    default_message = "Send the request body with a Content-Length header (this server cannot read a chunked body)."


class RateLimited(ApiError):
    status, code, title = 429, "rate_limited", "Rate limit exceeded"

    def __init__(self, retry_after: int):
        self.retry_after = max(1, int(retry_after))
        super().__init__(f"This project's rate limit is exhausted. Retry in {self.retry_after} seconds.")

    def envelope_extra(self) -> dict:
        return {"retryAfter": self.retry_after}

    def problem_extra(self) -> dict:
        return {"retry_after": self.retry_after}

    def headers(self) -> dict:
        return {"Retry-After": str(self.retry_after)}


class ServiceUnavailable(ApiError):
    status, code, title = 503, "service_unavailable", "Service unavailable"
    default_message = "A backing service is unavailable. Retry shortly; nothing was written."

    def headers(self) -> dict:
        return {"Retry-After": "5"}


class EmailFailed(ApiError):
    status, code, title = 502, "email_failed", "Email not sent"
    default_message = "The mail server did not accept the message, so nothing was delivered. Retry later."


class InternalError(ApiError):
    pass


def is_api_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def is_problem_surface(path: str) -> bool:
    return path.startswith(PROBLEM_SURFACE_PREFIXES)


def to_api_error(exc: BaseException, view=None) -> ApiError:
    """Translate DRF's, Django's and unexpected exceptions into the platform's own."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, (drf.NotAuthenticated, drf.AuthenticationFailed)):
        return Unauthorized()
    if isinstance(exc, (drf.PermissionDenied, DjangoPermissionDenied)):
        return Forbidden()
    if isinstance(exc, (drf.NotFound, Http404)):
        return NotFound()
    if isinstance(exc, drf.MethodNotAllowed):
        allowed = list(view.allowed_methods) if view is not None else []
        return MethodNotAllowed(view.request.method if view is not None else "", allowed)
    if isinstance(exc, drf.UnsupportedMediaType):
        if view is not None and getattr(view, "accepts_json_body", True):
            return InvalidJson("Send the body as JSON with Content-Type: application/json.")
        return ValidationFailed(form_errors=["Send the body as multipart/form-data."])
    if isinstance(exc, drf.ParseError):
        return InvalidJson(str(exc.detail))
    if isinstance(exc, drf.ValidationError):
        return validation_failed_from_drf(exc.detail)
    if isinstance(exc, drf.Throttled):
        return RateLimited(int(exc.wait or 1))
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge()
    if isinstance(exc, SuspiciousOperation):  # too many form fields or files, a disallowed host...
        return ValidationFailed(form_errors=["The request is malformed or has too many fields or files."])
    if isinstance(exc, (BadRequest, MultiPartParserError)):
        return ValidationFailed(form_errors=["The request is malformed."])
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("database unavailable: %s", type(exc).__name__)
        return ServiceUnavailable()
    if isinstance(exc, DatabaseError):
        return InternalError()
    return InternalError()


def validation_failed_from_drf(detail) -> ValidationFailed:
    if isinstance(detail, dict):
        field_errors, form_errors = {}, []
        for field, messages in _flatten(detail):
            if field in ("non_field_errors", ""):
                form_errors.extend(messages)
            else:
                field_errors.setdefault(field, []).extend(messages)
        return ValidationFailed(field_errors=field_errors, form_errors=form_errors)
    return ValidationFailed(form_errors=[str(item) for item in (detail if isinstance(detail, list) else [detail])])


def _flatten(detail, prefix: str = ""):
    """Yield (dotted field path, [messages]) from DRF's nested error structure."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "non_field_errors" and not prefix:
                name = "non_field_errors"
            yield from _flatten(value, name)
    elif isinstance(detail, list) and detail and all(not isinstance(item, (dict, list)) for item in detail):
        yield prefix, [str(item) for item in detail]
    elif isinstance(detail, list):
        for index, item in enumerate(detail):
            if item:
                yield from _flatten(item, f"{prefix}[{index}]")
    else:
        yield prefix, [str(detail)]


def error_body(error: ApiError, *, path: str, request_id: str) -> tuple[int, dict, str]:
    """(status, body, content type) of `error` for the surface `path` belongs to."""
    if is_problem_surface(path):
        status = error.problem_status or error.status
        code = error.problem_code or error.code
        body = {
            "type": settings.PROBLEM_TYPE_BASE + code,
            "title": error.title,
            "status": status,
            "detail": error.message,
            "code": code,
            "request_id": request_id,
            **error.problem_extra(),
        }
        return status, body, PROBLEM_CONTENT_TYPE
    body = {"error": {"code": error.code, "message": error.message, "requestId": request_id,
                      **error.envelope_extra()}}
    return error.status, body, "application/json"


def log_unexpected(exc: BaseException, request_id: str, path: str) -> None:
    """The one log line of a server fault: its traceback, the request id and the path (tokens masked)."""
    logger.error("unhandled exception", exc_info=exc, extra={"request_id": request_id, "path": loggable_path(path)})


def api_error_for(exc: BaseException, request, view=None) -> ApiError:
    """The platform's error for `exc`; an unexpected exception (anything that becomes a 500) is logged here."""
    error = to_api_error(exc, view)
    if isinstance(error, InternalError) and error is not exc:
        log_unexpected(exc, getattr(request, "request_id", ""), request.path)
    return error


def exception_handler(exc, context):
    """DRF's exception hook: every exception a view raises ends here."""
    request = context["request"]
    error = api_error_for(exc, request, context.get("view"))
    request_id = getattr(request, "request_id", "")
    status, body, content_type = error_body(error, path=request.path, request_id=request_id)
    return Response(body, status=status, headers=error.headers(), content_type=content_type)


def api_error_response(request, error: ApiError) -> HttpResponse:
    """The same rendering for code paths outside DRF (Django's 404/500 handlers, middleware)."""
    request_id = getattr(request, "request_id", "")
    status, body, content_type = error_body(error, path=request.path, request_id=request_id)
    response = HttpResponse(dumps(body), status=status, content_type=content_type)
    for name, value in error.headers().items():
        response[name] = value
    return response


def unknown_api_path(request, *args, **kwargs):
    """The last `/v1` route: any path no API route matched (a trailing slash included) is the surface's 404."""
    raise NotFound()


def handler400(request, exception=None):
    """Requests Django refuses before any view (a malformed Host header...) still answer in the API's shape."""
    if is_api_path(request.path):
        return api_error_response(request, ValidationFailed(form_errors=["The request is malformed."]))
    from django.views.defaults import bad_request

    return bad_request(request, exception)


def handler404(request, exception=None):
    if is_api_path(request.path):
        return api_error_response(request, NotFound())
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    """Django's last resort for an exception no view handled (one raised by a middleware, say): log it, once."""
    exc = sys.exc_info()[1]
    if exc is not None:
        log_unexpected(exc, getattr(request, "request_id", ""), request.path)
    if is_api_path(request.path):
        return api_error_response(request, InternalError())
    from django.views.defaults import server_error

    return server_error(request)
