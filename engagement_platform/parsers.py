"""A JSON parser that reads at most a view's body limit and never raises anything but a clean error."""

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from engagement_platform.errors import PayloadTooLarge
from engagement_platform.jsonio import loads_strict


def read_bounded(stream, limit: int) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(limit)
    return data


class BoundedJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        view = (parser_context or {}).get("view")
        limit = getattr(view, "max_body_bytes", settings.JSON_MAX_BODY_BYTES)
        raw = read_bounded(stream, limit)
        try:
            return loads_strict(raw)
        except ValueError as exc:
            raise ParseError(f"The request body is not valid JSON: {exc}.") from exc
