"""Keyset cursors and page parameters of every cursor-paginated list.

A cursor is opaque to clients: base64url (unpadded) of `<list tag>|<created_at>|<id>`, where
the list tag binds the cursor to the list that issued it (one project's renders, one render's
shares...). Decoding is strict: bounded length, canonical base64url, exactly three parts, an
aware timestamp and a UUID. Anything else, including a cursor another list issued, is a 400
`invalid_request` with `fieldErrors.cursor`; nothing is parsed recursively, so no input can
exhaust the stack.
"""

import base64
import binascii
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from engagement_platform.errors import ValidationFailed
from engagement_platform.ids import parse_uuid

LIMIT_DEFAULT, LIMIT_MAX = 20, 100
LIMIT_MAX_DIGITS = 6  # a longer digit string is out of range anyway (and int() of thousands of digits raises)
CURSOR_MAX_LENGTH = 128  # an issued cursor is about 90 characters
NOT_A_CURSOR = "Not a cursor returned by this API."
OTHER_LIST = "A cursor of another list: pass the nextCursor this list returned."
_SEPARATOR = "|"
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")


@dataclass(frozen=True)
class PageParams:
    limit: int
    after: tuple[datetime, uuid.UUID] | None  # the (created_at, id) of the previous page's last item


def list_tag(list_name: str, owner_id) -> str:
    """A short tag naming one list (its kind and the object it belongs to)."""
    return hashlib.blake2s(f"{list_name}:{owner_id}".encode(), digest_size=6).hexdigest()


def encode_cursor(*, tag: str, created_at: datetime, item_id) -> str:
    stamp = created_at.astimezone(UTC).isoformat(timespec="microseconds")
    raw = _SEPARATOR.join((tag, stamp, str(item_id))).encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _bad(message: str = NOT_A_CURSOR) -> ValidationFailed:
    return ValidationFailed(field_errors={"cursor": [message]})


def decode_cursor(value, *, tag: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) position a cursor of the list `tag` stands for."""
    if not isinstance(value, str) or not 0 < len(value) <= CURSOR_MAX_LENGTH or not _BASE64URL.match(value):
        raise _bad()
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        text = raw.decode("ascii")
    except (binascii.Error, ValueError):
        raise _bad() from None
    if base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != value:  # non-canonical trailing bits
        raise _bad()
    parts = text.split(_SEPARATOR)
    if len(parts) != 3:
        raise _bad()
    cursor_tag, stamp, raw_id = parts
    if not _TIMESTAMP.match(stamp):
        raise _bad()
    item_id = parse_uuid(raw_id)
    if item_id is None or str(item_id) != raw_id:
        raise _bad()
    try:
        created_at = datetime.fromisoformat(stamp)
    except ValueError:
        raise _bad() from None
    if cursor_tag != tag:
        raise _bad(OTHER_LIST)
    return created_at, item_id


def parse_page_params(query, *, tag: str, default: int = LIMIT_DEFAULT, maximum: int = LIMIT_MAX) -> PageParams:
    """`?limit=` (1..maximum) and `?cursor=` of a list; every bad value named in `fieldErrors`."""
    errors = {}
    limit = default
    raw_limit = query.get("limit")
    if raw_limit is not None:
        if not (raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= LIMIT_MAX_DIGITS
                and 1 <= int(raw_limit) <= maximum):
            errors["limit"] = [f"Must be an integer from 1 to {maximum}."]
        else:
            limit = int(raw_limit)
    after = None
    raw_cursor = query.get("cursor")
    if raw_cursor:
        try:
            after = decode_cursor(raw_cursor, tag=tag)
        except ValidationFailed as exc:
            errors.update(exc.field_errors)
    if errors:
        raise ValidationFailed(field_errors=errors)
    return PageParams(limit=limit, after=after)
