"""Public object ids are UUIDv7: random, and ordered by creation time."""

import uuid

from uuid6 import uuid7


def new_id() -> uuid.UUID:
    return uuid.UUID(bytes=uuid7().bytes)


def parse_uuid(value) -> uuid.UUID | None:
    """A UUID from a path or a body, or None for anything malformed."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
