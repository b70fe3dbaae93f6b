"""Backfilling render events from another system: validation of one line, and idempotent batch inserts.

Backfilled events are history: they are stored as given (no dedupe window applies), idempotently on
their `id`. A line without an `id` gets one derived from its content, so loading a file twice adds
nothing the second time. Counters move only by the rows actually inserted, and only the renders
that got rows have their kept summaries dropped (once per batch).
"""

import hashlib
import json
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from django.db import connection, transaction

from engagement_platform.clock import now
from engagement_platform.ids import parse_uuid
from renders.models import ActorKind, EngagementEvent, EventType, Render, Share
from renders.selectors import summaries
from renders.services import (
    METADATA_MAX_BYTES,
    contains_nul,
    counter_increments,
    metadata_size_bytes,
    truncate_user_agent,
    valid_ip,
)
from renders.upserts import add_to_counters
from reports.validation import parse_rfc3339

EVENT_FIELDS = frozenset(
    {"id", "renderId", "eventType", "actorKind", "shareId", "sourceIp", "userAgent", "metadata", "createdAt"}
)
INSERT_CHUNK_ROWS = 1000  # 10 parameters a row stays under SQLite's variable limit
INSERT_COLUMNS = ("id", "project", "render", "share", "event_type", "actor_kind", "source_ip", "user_agent",
                  "metadata", "created_at")


@dataclass(frozen=True)
class BackfillResult:
    accepted: int
    duplicates: int
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index in the batch, reason)


def parse_render_event(raw) -> tuple[dict | None, dict[str, str]]:
    """One NDJSON line's object → (event, {}) or (None, {field: reason}). No database access."""
    if not isinstance(raw, dict):
        return None, {"": "Expected a JSON object."}
    errors = {key: "Unknown field." for key in sorted(set(raw) - EVENT_FIELDS)}
    event = {}

    def uuid_field(name: str, *, required: bool):
        value = raw.get(name)
        if value is None:
            if required:
                errors[name] = "Required: a UUID."
            return None
        parsed = parse_uuid(value) if isinstance(value, str) else None
        if parsed is None:
            errors[name] = "Must be a UUID."
        return parsed

    def choice_field(name: str, choices):
        value = raw.get(name)
        if value not in choices.values:
            errors[name] = "Must be one of: " + ", ".join(choices.values) + "."
        return value

    event["id"] = uuid_field("id", required=False)
    event["render_id"] = uuid_field("renderId", required=True)
    event["share_id"] = uuid_field("shareId", required=False)
    event["event_type"] = choice_field("eventType", EventType)
    event["actor_kind"] = choice_field("actorKind", ActorKind)

    source_ip = raw.get("sourceIp")
    event["source_ip"] = valid_ip(source_ip) if isinstance(source_ip, str) else None
    if source_ip is not None and event["source_ip"] is None:
        errors["sourceIp"] = "Must be an IPv4 or IPv6 address, or null."

    user_agent = raw.get("userAgent")
    if user_agent is not None and not isinstance(user_agent, str):
        errors["userAgent"] = "Must be a string or null."
    event["user_agent"] = truncate_user_agent(user_agent) if isinstance(user_agent, str) else None

    metadata = raw.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        errors["metadata"] = "Must be a JSON object or null."
    elif metadata is not None and metadata_size_bytes(metadata) > METADATA_MAX_BYTES:
        errors["metadata"] = f"Must be at most {METADATA_MAX_BYTES} bytes serialized."
    elif metadata is not None and contains_nul(metadata):
        errors["metadata"] = "Must not contain the character U+0000."
    event["metadata"] = metadata

    try:
        event["created_at"] = parse_rfc3339(raw.get("createdAt"))
    except ValueError as exc:
        errors["createdAt"] = str(exc)
    else:
        if event["created_at"] > now():
            errors["createdAt"] = "Must not be in the future."
    return (None, errors) if errors else (event, {})


def derived_event_id(*, project_id, event: dict) -> uuid.UUID:
    """A UUIDv7-shaped id from the event's content: its `createdAt` in the time bits, a content hash after."""
    canonical = json.dumps([
        str(project_id), str(event["render_id"]), str(event["share_id"]), event["event_type"], event["actor_kind"],
        event["source_ip"], event["user_agent"], event["metadata"], event["created_at"].isoformat(),
    ], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    raw = bytearray(hashlib.sha256(canonical.encode("utf-8")).digest()[:16])
    raw[0:6] = int(event["created_at"].timestamp() * 1000).to_bytes(6, "big")
    raw[6] = 0x70 | (raw[6] & 0x0F)  # version 7
    raw[8] = 0x80 | (raw[8] & 0x3F)  # RFC 4122 variant
    return uuid.UUID(bytes=bytes(raw))


def render_events_backfill(*, project, events: list[dict]) -> BackfillResult:
    """Insert parsed events of `project` in one transaction; events naming other projects' objects are rejected."""
    render_ids = {event["render_id"] for event in events}
    share_ids = {event["share_id"] for event in events} - {None}
    own_renders = set(Render.objects.filter(project=project, pk__in=render_ids).values_list("pk", flat=True))
    own_shares = dict(Share.objects.filter(project=project, pk__in=share_ids).values_list("pk", "render_id"))

    rows: dict[uuid.UUID, EngagementEvent] = {}
    rejected, valid = [], 0
    for index, event in enumerate(events):
        if event["render_id"] not in own_renders:
            rejected.append((index, "renderId: No render with that id in this project."))
            continue
        if event["share_id"] is not None and own_shares.get(event["share_id"]) != event["render_id"]:
            rejected.append((index, "shareId: No share of that render in this project."))
            continue
        valid += 1
        event_id = event["id"] or derived_event_id(project_id=project.pk, event=event)
        rows.setdefault(event_id, EngagementEvent(
            id=event_id, project_id=project.pk, render_id=event["render_id"], share_id=event["share_id"],
            event_type=event["event_type"], actor_kind=event["actor_kind"], source_ip=event["source_ip"],
            user_agent=event["user_agent"], metadata=event["metadata"], created_at=event["created_at"],
        ))

    with transaction.atomic():
        inserted = insert_new_events(list(rows.values()))
        increments: dict[uuid.UUID, Counter] = defaultdict(Counter)
        for event_id in inserted:
            row = rows[event_id]
            increments[row.render_id].update(counter_increments(row.event_type, row.share_id))
        for render_id in sorted(increments):  # a fixed order avoids lock-order deadlocks
            add_to_counters(project_id=project.pk, render_id=render_id, increments=dict(increments[render_id]))
        summaries.changed(*sorted(increments))  # once the batch commits
    return BackfillResult(accepted=len(inserted), duplicates=valid - len(inserted), rejected=rejected)


def insert_new_events(rows: list[EngagementEvent]) -> set[uuid.UUID]:
    """INSERT ... ON CONFLICT (id) DO NOTHING RETURNING id: the ids actually inserted (PostgreSQL and SQLite)."""
    if not rows:
        return set()
    meta = EngagementEvent._meta
    fields = [meta.get_field(name) for name in INSERT_COLUMNS]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    row_placeholder = "(" + ", ".join(["%s"] * len(fields)) + ")"
    inserted: set[uuid.UUID] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(rows), INSERT_CHUNK_ROWS):
            chunk = rows[start:start + INSERT_CHUNK_ROWS]
            params = [f.get_db_prep_save(getattr(row, f.attname), connection) for row in chunk for f in fields]
            cursor.execute(
                f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {', '.join([row_placeholder] * len(chunk))} "
                f"ON CONFLICT ({quote(meta.pk.column)}) DO NOTHING RETURNING {quote(meta.pk.column)}",
                params,
            )
            inserted.update(uuid.UUID(str(value)) for (value,) in cursor.fetchall())
    return inserted
