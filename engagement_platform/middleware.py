"""Request ids on every response, and one structured log line per request."""

import logging
import re
import time
import uuid

from engagement_platform.errors import InternalError, api_error_response, log_unexpected

logger = logging.getLogger("engagement_platform.request")

REQUEST_ID_HEADER = "X-Request-Id"
_WELL_FORMED_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# Public credentials in paths (share, pixel and click tokens) never reach a log line.
_TOKEN_PATH = re.compile(r"^/(s|t|c)/[^/]+")


def request_id_from(request) -> str:
    supplied = request.META.get("HTTP_X_REQUEST_ID", "")
    if _WELL_FORMED_REQUEST_ID.fullmatch(supplied):  # fullmatch: `$` would let a trailing newline in
        return supplied
    return uuid.uuid4().hex


def loggable_path(path: str) -> str:
    return _TOKEN_PATH.sub(lambda m: f"/{m.group(1)}/[token]", path)


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
        """Errors that escape a plain Django view under /v1 still answer in the API's shape."""
        if not request.path.startswith("/v1/"):
            return None
        log_unexpected(exception, request.request_id, loggable_path(request.path))
        return api_error_response(request, InternalError())
