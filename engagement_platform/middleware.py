"""Request ids on every response, one structured log line per request, and request bodies of every framing."""

import logging
import re
import tempfile
import time
import uuid

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpResponse
from django.utils.html import escape
from gunicorn.http.errors import ParseException as ServerParseError

from engagement_platform.errors import (
    ApiError,
    InternalError,
    LengthRequired,
    PayloadTooLarge,
    ValidationFailed,
    api_error_for,
    api_error_response,
    is_api_path,
    log_unexpected,
    to_api_error,
)
from engagement_platform.logging import loggable_path

logger = logging.getLogger("engagement_platform.request")

REQUEST_ID_HEADER = "X-Request-Id"
_WELL_FORMED_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

# Room for the multipart framing around an upload of RENDER_MAX_BYTES (boundaries, part headers, the name field).
MULTIPART_OVERHEAD_BYTES = 64 * 1024
_READ_CHUNK_BYTES = 64 * 1024
# What reading a server-delimited body raises when the client sent a bad chunk or went away mid-body.
BODY_READ_ERRORS = (OSError, ServerParseError)

__all__ = ["REQUEST_ID_HEADER", "ChunkedBodyMiddleware", "RequestIdMiddleware", "loggable_path", "request_id_from"]


def request_id_from(request) -> str:
    supplied = request.META.get("HTTP_X_REQUEST_ID", "")
    if _WELL_FORMED_REQUEST_ID.fullmatch(supplied):  # fullmatch: `$` would let a trailing newline in
        return supplied
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = request_id_from(request)
        started = time.perf_counter()
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request.request_id
        logger.info(
            "request",
            extra={
                "request_id": request.request_id,
                "method": request.method,
                "path": loggable_path(request.path),
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return response

    def process_exception(self, request, exception):
        """An exception that escapes a plain Django view under /v1 answers in the API's shape, whatever DEBUG is
        (a server fault is logged once, by `api_error_for`). Elsewhere Django answers: its own 4xx pages, or
        `handler500`, which logs the fault."""
        if not is_api_path(request.path):
            if settings.DEBUG and isinstance(to_api_error(exception), InternalError):
                # Django's debug page answers instead of `handler500`: the fault is still logged, once.
                log_unexpected(exception, request.request_id, request.path)
            return None
        return api_error_response(request, api_error_for(exception, request))


def refusal(request, error: ApiError) -> HttpResponse:
    """`error` in the shape of the path's surface: the API's shapes under /v1, a small HTML page elsewhere."""
    if is_api_path(request.path):
        return api_error_response(request, error)
    title, message = escape(error.title), escape(error.message)
    page = f"<!doctype html><title>{title}</title><h1>{title}</h1><p>{message}</p>"
    return HttpResponse(page, status=error.status, content_type="text/html; charset=utf-8")


def declared_body_limit(view_func) -> int | None:
    """The view's own `max_body_bytes`, if it declares one."""
    view_class = getattr(view_func, "view_class", None) or getattr(view_func, "cls", None)
    return getattr(view_class, "max_body_bytes", None)


def largest_body() -> int:
    """The largest body any route accepts: a JSON body, or an upload with its multipart framing."""
    return max(settings.JSON_MAX_BODY_BYTES, settings.RENDER_MAX_BYTES + MULTIPART_OVERHEAD_BYTES)


class UnreadableBody(Exception):
    """The client's body could not be read to its end (a malformed chunk, or the client went away)."""


def _read(stream, size: int) -> bytes:
    try:
        return stream.read(size)
    except BODY_READ_ERRORS as exc:
        raise UnreadableBody from exc


def read_to_end(stream, limit: int):
    """(the stream's bytes in a spooled file (memory, then disk), their size), or (None, ...) past `limit`."""
    buffer = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE)
    size = 0
    while chunk := _read(stream, min(_READ_CHUNK_BYTES, limit + 1 - size)):
        size += len(chunk)
        if size > limit:
            buffer.close()
            return None, size
        buffer.write(chunk)
    buffer.seek(0)
    return buffer, size


class ChunkedBodyMiddleware:
    """A body sent with `Transfer-Encoding` (chunked) is read like any other, or refused: never taken as empty.

    Django delimits a body by `Content-Length` alone, so without one it reads nothing. A server that delimits
    the body itself says so with `wsgi.input_terminated` (gunicorn, the production server): the body is then read
    to its end, at most the route's limit (413 past it, without reading on), and handed on with its length, as if
    it had come with a `Content-Length`. A server that does not (Django's runserver) gets 411 `length_required`.
    Runs before anything reads the body (CSRF reads forms in its `process_view`), once the route is known.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if not request.META.get("HTTP_TRANSFER_ENCODING", "").strip():
            return None
        if not request.META.get("wsgi.input_terminated"):
            return refusal(request, LengthRequired())
        declared = declared_body_limit(view_func)
        try:
            buffer, size = read_to_end(request.META["wsgi.input"], declared or largest_body())
        except UnreadableBody:  # the client's fault, not a server fault
            return refusal(request, ValidationFailed(
                form_errors=["The chunked request body is malformed or ends early; nothing was read."]))
        if buffer is None:
            return refusal(request, PayloadTooLarge(declared))
        request.META.pop("HTTP_TRANSFER_ENCODING")
        request.META["CONTENT_LENGTH"] = str(size)
        request.META["wsgi.input"] = buffer
        request._stream = LimitedStream(buffer, size)  # what WSGIRequest builds from a Content-Length
        request._read_started = False
        return None
