"""The render event export (contract section 9): a render's events, oldest first, as backfill lines.

Each line is what `backfill_render_events` reads (with `id`), plus the event's traffic class.
`RENDER_EVENT_LINE` is the one definition of that line; both ways of writing it derive from it.
"""

from engagement_platform.exports import ENUM, IP, JSON, TIME_MS, UUID, Column
from renders.models import EngagementEvent

RENDER_EVENT_LINE = (
    Column("id", "id", UUID),
    Column("renderId", "render_id", UUID),
    Column("eventType", "event_type", ENUM),
    Column("actorKind", "actor_kind", ENUM),
    Column("shareId", "share_id", UUID),
    Column("sourceIp", "source_ip", IP),
    Column("userAgent", "user_agent"),
    Column("metadata", "metadata", JSON),
    Column("createdAt", "created_at", TIME_MS),
    Column("traffic", "traffic", ENUM),
    Column("machineReason", "machine_reason", ENUM),
)
RENDER_EVENT_COLUMNS = tuple(column.key for column in RENDER_EVENT_LINE)


def render_events_matching(*, render, lookups: dict):
    """The render's events matching the event log's filters (`lookups`), oldest first (ties by id)."""
    return EngagementEvent.objects.filter(render=render, **lookups).order_by("created_at", "id")
