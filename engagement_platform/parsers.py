"""A JSON parser that reads at most a view's body limit and never raises anything but a clean error."""

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from engagement_platform.errors import PayloadTooLarge
from engagement_platform.jsonio import loads_strict

# Deep enough for any real document, shallow enough that every later step (validation,
# the database driver, the response renderer) can walk the value without a RecursionError.
JSON_MAX_DEPTH = 64


def read_bounded(stream, limit: int) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(limit)
    return data


def check_storable(value, max_depth: int = JSON_MAX_DEPTH) -> None:
    """Refuse nesting deeper than `max_depth` and strings that are not valid Unicode (lone surrogates)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("a string holds an unpaired UTF-16 surrogate escape") from None
        elif isinstance(item, (dict, list)):
            if depth > max_depth:
                raise ValueError(f"the JSON is nested deeper than {max_depth} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


class BoundedJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        view = (parser_context or {}).get("view")
        limit = getattr(view, "max_body_bytes", settings.JSON_MAX_BODY_BYTES)
        raw = read_bounded(stream, limit)
        try:
            value = loads_strict(raw)
            check_storable(value)
        except ValueError as exc:
            raise ParseError(f"The request body is not valid JSON: {exc}.") from exc
        return value
