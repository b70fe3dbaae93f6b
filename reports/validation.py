"""The wire shape of a message event (contract section 4), shared by the HTTP route and the backfill.

`{"id", "type", "messageId", "channel", "from", "recipient", "occurredAt", "url"?, "userAgent"?, "machine"?}`
becomes the internal dict `ingest_message_events` takes, or a field → reason map. A backfill line may
also carry `traffic` and `machineReason` (as the exports write them), taken as given.
"""

import re
from datetime import UTC, datetime
from functools import lru_cache

from django.core.validators import EmailValidator

from engagement_platform.ids import parse_uuid
from engagement_platform.traffic import MachineReason, Traffic
from reports.models import (
    DOMAIN_MAX_LENGTH,
    EMAIL_MAX_LENGTH,
    EVENT_ID_MAX_LENGTH,
    MESSAGE_ID_MAX_LENGTH,
    URL_MAX_LENGTH,
    USER_AGENT_MAX_LENGTH,
    MessageEventType,
)

EVENT_FIELDS = ("id", "type", "messageId", "channel", "from", "recipient", "occurredAt", "url", "userAgent", "machine")
GIVEN_TRAFFIC_FIELDS = ("traffic", "machineReason")
_EVENT_FIELD_SET = frozenset(EVENT_FIELDS)
_BACKFILL_FIELD_SET = frozenset(EVENT_FIELDS + GIVEN_TRAFFIC_FIELDS)
_TRAFFIC_REASON = "Must be one of " + ", ".join(Traffic.values) + "."
_MACHINE_REASON_REASON = "Must be one of " + ", ".join(MachineReason.values) + "."
_EVENT_TYPES = frozenset(MessageEventType.values)
_EVENT_TYPE_REASON = "Must be one of " + ", ".join(MessageEventType.values) + "."
# Validated addresses and channel ids repeat across a batch and a backfill: their answers are kept
# for this many distinct values (bounded, so memory does not grow with the input).
VALIDATION_CACHE_SIZE = 1 << 16
# Timestamps outside these bounds are refused: they cannot be bucketed or compared safely.
EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(9999, 1, 1, tzinfo=UTC)
RFC3339_EXAMPLE = "2026-05-17T09:30:00Z"

_email_validator = EmailValidator()
# The validator's own pattern, compiled here: its lazily compiled one costs four times the match.
_EMAIL_USER_REGEX = re.compile(_email_validator.user_regex.pattern, _email_validator.user_regex.flags)


def parse_rfc3339(value) -> datetime:
    """An aware UTC datetime from an RFC 3339 string that carries an offset or `Z`; ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"Must be an RFC 3339 date-time string, e.g. {RFC3339_EXAMPLE}.")
    text = value.strip().upper()  # RFC 3339 allows a lowercase `t` and `z`
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        if " " in text and "T" in text:
            raise ValueError("Not an RFC 3339 date-time; a `+` in an offset must be sent as %2B in a URL.") from None
        raise ValueError(f"Must be an RFC 3339 date-time, e.g. {RFC3339_EXAMPLE}.") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"Must carry a UTC offset or Z, e.g. {RFC3339_EXAMPLE}.")
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("Out of range.") from None
    if not EARLIEST_TIMESTAMP <= parsed < LATEST_TIMESTAMP:
        raise ValueError("Out of range: must be between 1970 and 9998.")
    return parsed


def is_valid_email(value: str) -> bool:
    """Django's EmailValidator, step for step, with the costly domain check kept per distinct domain.

    Recipients rarely repeat within a backfill, their domains nearly always do.
    """
    if not value or "@" not in value or len(value) > 320:
        return False
    user_part, domain_part = value.rsplit("@", 1)
    return bool(_EMAIL_USER_REGEX.match(user_part)) and _is_valid_email_domain(domain_part)


# Sending addresses repeat across nearly every event of a backfill: their whole answer is kept.
_is_valid_sender = lru_cache(maxsize=VALIDATION_CACHE_SIZE)(is_valid_email)


@lru_cache(maxsize=VALIDATION_CACHE_SIZE)
def _is_valid_email_domain(domain_part: str) -> bool:
    return domain_part in _email_validator.domain_allowlist or _email_validator.validate_domain_part(domain_part)


def normalize_domain(value: str) -> str | None:
    """A lowercased domain, or None when `value` is not one."""
    domain = value.strip().lower()
    if not domain or len(domain) > 253 or not is_valid_email(f"x@{domain}"):
        return None
    return domain


def email_domain(address: str) -> str:
    return address.rsplit("@", 1)[1].lower()


def stored_address_problem(address: str, *, stored_lowercased: bool) -> str | None:
    """Why a valid `address` would not fit where it is stored, or None.

    A message keeps its recipient lower-cased (`stored_lowercased`), its sender as sent, and the sender's
    domain lower-cased. Lower-casing can lengthen a string ("İ" becomes two code points): the lengths
    are checked on the stored forms.
    """
    if len(address.strip().lower() if stored_lowercased else address) > EMAIL_MAX_LENGTH:
        return f"Too long: at most {EMAIL_MAX_LENGTH} characters once lower-cased."
    if len(email_domain(address)) > DOMAIN_MAX_LENGTH:
        return f"The domain is too long: at most {DOMAIN_MAX_LENGTH} characters once lower-cased."
    return None


_channel_uuid = lru_cache(maxsize=VALIDATION_CACHE_SIZE)(parse_uuid)


def _string(raw: dict, name: str, max_length: int, errors: dict) -> str | None:
    value = raw.get(name)
    if type(value) is str and 0 < len(value) <= max_length and "\x00" not in value:  # the usual case, in one test
        return value
    if not isinstance(value, str) or not value:
        errors[name] = "Required: a non-empty string." if value in (None, "") else "Must be a string."
        return None
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        errors[name] = "Must not contain NUL characters."
        return None
    if len(value) > max_length:
        errors[name] = f"Must be at most {max_length} characters."
        return None
    return value


def _email(raw: dict, name: str, errors: dict) -> str | None:
    value = _string(raw, name, EMAIL_MAX_LENGTH, errors)
    if value is not None and not (_is_valid_sender(value) if name == "from" else is_valid_email(value)):
        errors[name] = "Must be an email address."
        return None
    if value is not None and not value.isascii():  # only then can lower-casing lengthen it
        problem = stored_address_problem(value, stored_lowercased=name == "recipient")
        if problem is not None:
            errors[name] = problem
            return None
    return value


def _optional_string(raw: dict, name: str, max_length: int | None, errors: dict) -> str | None:
    value = raw.get(name)
    if value is None or value == "":
        return None
    if type(value) is str and (max_length is None or len(value) <= max_length) and "\x00" not in value:
        return value
    if not isinstance(value, str):
        errors[name] = "Must be a string or null."
        return None
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        errors[name] = "Must not contain NUL characters."
        return None
    if max_length is not None and len(value) > max_length:
        errors[name] = f"Must be at most {max_length} characters."
        return None
    return value


def parse_backfilled_message_event(raw) -> tuple[dict | None, dict[str, str]]:
    """`parse_message_event` for a backfill line, which may also give its traffic class."""
    return parse_message_event(raw, given_traffic=True)


def parse_message_event(raw, *, given_traffic: bool = False) -> tuple[dict | None, dict[str, str]]:
    """(event for `ingest_message_events`, {}) or (None, {field: reason}) — one reason per bad field.

    `given_traffic`: the event may carry `traffic` and `machineReason` (backfill lines).
    """
    if not isinstance(raw, dict):
        return None, {"": "Must be a JSON object."}
    errors: dict[str, str] = {}
    fields = _BACKFILL_FIELD_SET if given_traffic else _EVENT_FIELD_SET
    if not fields.issuperset(raw):
        for name in sorted(raw.keys() - fields):
            errors[name] = "Unknown field."
    event_id = _string(raw, "id", EVENT_ID_MAX_LENGTH, errors)
    event_type = raw.get("type")
    if not isinstance(event_type, str) or event_type not in _EVENT_TYPES:
        errors["type"] = _EVENT_TYPE_REASON
    message_id = _string(raw, "messageId", MESSAGE_ID_MAX_LENGTH, errors)
    channel = raw.get("channel")
    channel_id = _channel_uuid(channel) if isinstance(channel, str) else parse_uuid(channel)
    if channel_id is None:
        errors["channel"] = "Required: a UUID." if raw.get("channel") is None else "Must be a UUID."
    from_address = _email(raw, "from", errors)
    recipient = _email(raw, "recipient", errors)
    occurred_at = None
    if raw.get("occurredAt") is None:
        errors["occurredAt"] = f"Required: an RFC 3339 date-time, e.g. {RFC3339_EXAMPLE}."
    else:
        try:
            occurred_at = parse_rfc3339(raw["occurredAt"])
        except ValueError as exc:
            errors["occurredAt"] = str(exc)
    url = _optional_string(raw, "url", URL_MAX_LENGTH, errors)
    user_agent = _optional_string(raw, "userAgent", None, errors)
    machine = raw.get("machine")
    if machine is not None and type(machine) is not bool:
        errors["machine"] = "Must be true, false or null."
    traffic, machine_reason = _given_traffic(raw, event_type, machine, errors) if given_traffic else (None, None)
    if errors:
        return None, errors
    return {
        "id": event_id,
        "type": event_type,
        "message_id": message_id,
        "channel_id": channel_id,
        "from_address": from_address,
        "recipient": recipient,
        "occurred_at": occurred_at,
        "url": url,
        "user_agent": user_agent[:USER_AGENT_MAX_LENGTH] if user_agent else None,
        "machine": machine,
        "traffic": traffic,
        "machine_reason": machine_reason,
    }, {}


def _given_traffic(raw: dict, event_type, machine, errors: dict) -> tuple[str | None, str | None]:
    """A backfill line's own `traffic` and `machineReason` (None, None when it gives none)."""
    traffic, reason = raw.get("traffic"), raw.get("machineReason")
    if traffic is None:
        if reason is not None:
            errors["machineReason"] = "Only with `traffic`: machine."
        return None, None
    if traffic not in Traffic.values:
        errors["traffic"] = _TRAFFIC_REASON
    elif traffic == Traffic.MACHINE and event_type not in (MessageEventType.OPENED, MessageEventType.CLICKED):
        errors["traffic"] = "Only opened and clicked events are classified: sent and delivered are human."
    elif traffic == Traffic.HUMAN and machine is True:
        errors["traffic"] = "Contradicts `machine`: true."
    if traffic == Traffic.MACHINE and reason not in MachineReason.values:
        errors["machineReason"] = ("Required with `traffic`: machine. " if reason is None else "") + \
            _MACHINE_REASON_REASON
    elif traffic == Traffic.HUMAN and reason is not None:
        errors["machineReason"] = "Must be null for human traffic."
    return traffic, reason
