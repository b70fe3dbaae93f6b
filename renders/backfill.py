"""Backfilling render events from another system: validation of one line, and idempotent batch inserts.

Backfilled events are history: they are stored as given (no dedupe window applies), idempotently on
their `id`. A line without an `id` gets one derived from its content, so loading a file twice adds
nothing the second time. Counters move only by the rows actually inserted, and only the renders
that got rows have their kept summaries dropped (once per batch).
"""

import hashlib
import json
import re
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache

import orjson
from django.db import transaction

from engagement_platform.clock import now
from engagement_platform.durability import flush_commits
from engagement_platform.ids import parse_uuid
from engagement_platform.ndjson import read_ahead
from engagement_platform.traffic import MachineReason, Traffic, Verdict
from renders.models import CLASSIFIED_EVENT_TYPES, ActorKind, EventType, Render, Share
from renders.selectors import summaries
from renders.services import (
    METADATA_MAX_BYTES,
    contains_nul,
    counter_increments,
    event_verdict,
    truncate_user_agent,
    valid_ip,
)
from renders.upserts import add_to_counters, insert_new_events
from reports.validation import parse_rfc3339

EVENT_FIELDS = frozenset(
    {"id", "renderId", "eventType", "actorKind", "shareId", "sourceIp", "userAgent", "metadata", "createdAt",
     "traffic", "machineReason"}
)
_TRAFFIC_CHOICES = "Must be one of: " + ", ".join(Traffic.values) + "."
_MACHINE_REASON_CHOICES = "Must be one of: " + ", ".join(MachineReason.values) + "."


@dataclass(frozen=True)
class BackfillResult:
    accepted: int
    duplicates: int
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index in the batch, reason)


def parse_render_event(raw) -> tuple[dict | None, dict[str, str]]:
    """One NDJSON line's object → (event, {}) or (None, {field: reason}). No database access.

    A backfill runs this once per line, so values that repeat from line to line (render and share ids)
    are parsed once, and the common canonical forms take a fast path with the same answer.
    """
    if not isinstance(raw, dict):
        return None, {"": "Expected a JSON object."}
    errors = {key: "Unknown field." for key in sorted(raw.keys() - EVENT_FIELDS)}
    get = raw.get

    def uuid_field(name: str, *, required: bool):
        value = get(name)
        if value is None:
            if required:
                errors[name] = "Required: a UUID."
            return None
        parsed = _parse_uuid(value) if isinstance(value, str) else None
        if parsed is None:
            errors[name] = "Must be a UUID."
        return parsed

    event_id = uuid_field("id", required=False)
    render_id = uuid_field("renderId", required=True)
    share_id = uuid_field("shareId", required=False)
    event_type = get("eventType")
    if event_type not in _EVENT_TYPES:
        errors["eventType"] = _EVENT_TYPE_CHOICES
    actor_kind = get("actorKind")
    if actor_kind not in _ACTOR_KINDS:
        errors["actorKind"] = _ACTOR_KIND_CHOICES

    source_ip = get("sourceIp")
    canonical_ip = _canonical_ip(source_ip) if isinstance(source_ip, str) else None
    if source_ip is not None and canonical_ip is None:
        errors["sourceIp"] = "Must be an IPv4 or IPv6 address, or null."

    user_agent = get("userAgent")
    if user_agent is not None and not isinstance(user_agent, str):
        errors["userAgent"] = "Must be a string or null."
        user_agent = None
    elif user_agent is not None:
        user_agent = truncate_user_agent(user_agent)

    metadata = get("metadata")
    metadata_json, plain = None, True
    if metadata is not None:
        if not isinstance(metadata, dict):
            errors["metadata"] = "Must be a JSON object or null."
        else:
            plain = not _has_float(metadata)  # orjson writes some floats differently from the standard encoder
            metadata_json = orjson.dumps(metadata) if plain else _standard_json(metadata)
            if len(metadata_json) > METADATA_MAX_BYTES:
                errors["metadata"] = f"Must be at most {METADATA_MAX_BYTES} bytes serialized."
            elif contains_nul(metadata):
                errors["metadata"] = "Must not contain the character U+0000."

    traffic, machine_reason = _given_traffic(get("traffic"), get("machineReason"), event_type, actor_kind, errors)

    try:
        created_at = parse_rfc3339(get("createdAt"))
    except ValueError as exc:
        errors["createdAt"] = str(exc)
    else:
        if created_at > now():
            errors["createdAt"] = "Must not be in the future."
    if errors:
        return None, errors
    return {"id": event_id, "render_id": render_id, "share_id": share_id, "event_type": event_type,
            "actor_kind": actor_kind, "source_ip": canonical_ip, "user_agent": user_agent, "metadata": metadata,
            "metadata_json": metadata_json, "plain_json": plain, "created_at": created_at, "traffic": traffic,
            "machine_reason": machine_reason}, {}


def _given_traffic(traffic, reason, event_type, actor_kind, errors: dict) -> tuple[str | None, str | None]:
    """A line's own class (as the event log's export writes it), or (None, None) for the rules to decide."""
    if traffic is None:
        if reason is not None:
            errors["machineReason"] = "Only with `traffic`: machine."
        return None, None
    if traffic not in Traffic.values:
        errors["traffic"] = _TRAFFIC_CHOICES
    elif traffic == Traffic.MACHINE and (actor_kind != ActorKind.RECIPIENT or event_type not in CLASSIFIED_EVENT_TYPES):
        errors["traffic"] = "Only recipients' views, downloads, prints and email opens are classified."
    if traffic == Traffic.MACHINE and reason not in MachineReason.values:
        errors["machineReason"] = _MACHINE_REASON_CHOICES
    elif traffic == Traffic.HUMAN and reason is not None:
        errors["machineReason"] = "Must be null for human traffic."
    return traffic, reason


_parse_uuid = lru_cache(maxsize=4096)(parse_uuid)  # render and share ids repeat from line to line
_EVENT_TYPES = frozenset(EventType.values)
_EVENT_TYPE_CHOICES = "Must be one of: " + ", ".join(EventType.values) + "."
_ACTOR_KINDS = frozenset(ActorKind.values)
_ACTOR_KIND_CHOICES = "Must be one of: " + ", ".join(ActorKind.values) + "."
# A dotted quad without leading zeros is already the canonical form `valid_ip` gives.
_CANONICAL_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")


def _canonical_ip(value: str) -> str | None:
    return value if _CANONICAL_IPV4.fullmatch(value) else valid_ip(value)


def _standard_json(metadata: dict) -> bytes:
    """The metadata as stored and as sized: compact JSON, UTF-8 (`metadata_size_bytes`' serialization)."""
    return json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _has_float(value) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def derived_event_id(*, project_id, event: dict) -> uuid.UUID:
    """A UUIDv7-shaped id from the event's content: its `createdAt` in the time bits, a content hash after.

    The hash is of a canonical JSON array (keys sorted, compact, UTF-8): the same content gives the
    same id in every run, so loading a file twice adds nothing the second time.
    """
    fields = [
        str(project_id), str(event["render_id"]), str(event["share_id"]), event["event_type"], event["actor_kind"],
        event["source_ip"], event["user_agent"], event["metadata"], event["created_at"].isoformat(),
    ]
    plain = event.get("plain_json")
    if plain is None:
        plain = event["metadata"] is None or not _has_float(event["metadata"])
    if not plain:
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    else:  # byte for byte what the standard encoder writes for these values, at a fraction of its cost
        canonical = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    raw = bytearray(hashlib.sha256(canonical).digest()[:16])
    raw[0:6] = int(event["created_at"].timestamp() * 1000).to_bytes(6, "big")
    raw[6] = 0x70 | (raw[6] & 0x0F)  # version 7
    raw[8] = 0x80 | (raw[8] & 0x3F)  # RFC 4122 variant
    return uuid.UUID(bytes=bytes(raw))


class BackfillRows:
    """A good line's event → its row for `render_events_backfill` (BACKFILL_COLUMNS order), the id derived from
    the content when the line has none. Plain values only (UUIDs as canonical text, metadata as JSON text),
    so a row is cheap to hand from a parsing worker to the storer; runs in the parsing worker when there is one.
    """

    def __init__(self, project_id: uuid.UUID):
        self.project_id = project_id
        self.project_text = str(project_id)

    def __call__(self, event: dict) -> tuple:
        event_id = event["id"] or derived_event_id(project_id=self.project_id, event=event)
        share_id = event["share_id"]
        metadata_json = event["metadata_json"]
        given = event.get("traffic") is not None
        # A line without a class is judged by the user-agent rules only: no request, so no purpose.
        verdict = (Verdict(event["traffic"], event["machine_reason"]) if given else
                   event_verdict(event_type=event["event_type"], actor_kind=event["actor_kind"],
                                 user_agent=event["user_agent"], source_ip=event["source_ip"], request_purpose=None))
        return (str(event_id), self.project_text, str(event["render_id"]), share_id and str(share_id),
                event["event_type"], event["actor_kind"], event["source_ip"], event["user_agent"],
                metadata_json and metadata_json.decode("utf-8"), event["created_at"], str(verdict.traffic),
                verdict.reason and str(verdict.reason), given)


def render_events_backfill(*, project, rows: list[tuple], wait_for_flush: bool = True) -> BackfillResult:
    """Insert rows (`BackfillRows`) of `project` in one transaction; rows naming other projects' objects are rejected.

    Only the rows actually inserted move the counters; the renders that got rows have their kept
    summaries dropped once the batch commits.
    """
    render_ids = {row[2] for row in rows}
    share_ids = {row[3] for row in rows} - {None}
    own_renders = {str(pk) for pk in Render.objects.filter(project=project, pk__in=render_ids)
                   .values_list("pk", flat=True)}
    own_shares = {str(pk): str(render_id) for pk, render_id in
                  Share.objects.filter(project=project, pk__in=share_ids).values_list("pk", "render_id")}

    project_id = project.pk
    unique: dict[str, tuple] = {}
    rejected, valid = [], 0
    for index, row in enumerate(rows):
        render_id, share_id = row[2], row[3]
        if render_id not in own_renders:
            rejected.append((index, "renderId: No render with that id in this project."))
            continue
        if share_id is not None and own_shares.get(share_id) != render_id:
            rejected.append((index, "shareId: No share of that render in this project."))
            continue
        valid += 1
        unique.setdefault(row[0], row)

    with transaction.atomic():
        inserted = insert_new_events(list(unique.values()), wait_for_flush=wait_for_flush)
        increments: dict[uuid.UUID, Counter] = defaultdict(Counter)
        for (render_id, event_type, has_share, traffic), count in inserted.items():
            for key, amount in counter_increments(event_type, True if has_share else None, traffic).items():
                increments[render_id][key] += amount * count
        for render_id in sorted(increments):  # a fixed order avoids lock-order deadlocks
            add_to_counters(project_id=project_id, render_id=render_id, increments=dict(increments[render_id]))
        summaries.changed(*sorted(increments))  # once the batch commits
    accepted = sum(inserted.values())
    return BackfillResult(accepted=accepted, duplicates=valid - accepted, rejected=rejected)


def render_events_backfill_lines(*, project, reader, batch_size: int) -> None:
    """Store every good line of `reader` (an `NdjsonReader` of render events, prepared by `BackfillRows`) in
    batches of `batch_size`.

    A thread reads (and parses, unless parsing workers do) the next batches while this one is stored.
    Lines refused when their batch is stored (a render or share outside the project) are reported
    through the reader with their line numbers; totals go to `reader.tally`. Batches commit without
    waiting for the disk (a rerun stores again whatever a crash lost); the flush at the end makes all
    of them durable before the summary says they are stored.
    """
    for batch in read_ahead(reader.batches(batch_size)):
        result = render_events_backfill(project=project, rows=[row for _number, row in batch], wait_for_flush=False)
        reader.tally.add(accepted=result.accepted, duplicates=result.duplicates)
        for index, reason in result.rejected:
            reader.reject(batch[index][0], reason)
    flush_commits()
