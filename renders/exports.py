"""The render event export (contract section 9): a render's events, oldest first, as backfill lines.

Each line is what `backfill_render_events` reads (with `id`), plus the event's traffic class:
`render_event_line` is the one mapping from a stored row to that line, `RENDER_EVENT_FIELDS` what it reads.
"""

from engagement_platform.clock import iso_ms
from renders.models import EngagementEvent

RENDER_EVENT_FIELDS = ("id", "render_id", "event_type", "actor_kind", "share_id", "source_ip", "user_agent",
                       "metadata", "created_at", "traffic", "machine_reason")
# The keys of an exported line (NDJSON) and the CSV header, in order.
RENDER_EVENT_COLUMNS = ("id", "renderId", "eventType", "actorKind", "shareId", "sourceIp", "userAgent", "metadata",
                        "createdAt", "traffic", "machineReason")


def render_event_rows(*, render, lookups: dict):
    """The render's events matching the event log's filters (`lookups`), oldest first (ties by id)."""
    return (EngagementEvent.objects.filter(render=render, **lookups)
            .order_by("created_at", "id")
            .values_list(*RENDER_EVENT_FIELDS))


def render_event_line(row: tuple) -> dict:
    """One stored event (a RENDER_EVENT_FIELDS row) as a backfill line with its traffic class."""
    (event_id, render_id, event_type, actor_kind, share_id, source_ip, user_agent, metadata, created_at, traffic,
     machine_reason) = row
    return {"id": str(event_id), "renderId": str(render_id), "eventType": event_type, "actorKind": actor_kind,
            "shareId": share_id and str(share_id), "sourceIp": source_ip, "userAgent": user_agent,
            "metadata": metadata, "createdAt": iso_ms(created_at), "traffic": traffic,
            "machineReason": machine_reason}
