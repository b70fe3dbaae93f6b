"""The public events a recorded render event makes (contract section 8's vocabulary), told through
engagement_platform.event_hooks in the recording transaction. Renders knows no listener.

`wanted_announcements` is asked before recording (a cached answer per project, so an event nobody listens to
costs no query). When it is not empty, the listeners' writes go into the recording statement itself
(`announcement_writes`, PostgreSQL) or, when an announcement must read first or a listener cannot, the caller
records inside a transaction and calls `announce` there.
"""

from engagement_platform import event_hooks
from engagement_platform.event_hooks import PublicEventType, RecordedEvent
from engagement_platform.traffic import Traffic
from renders.models import EngagementEvent, EventType, Share

PUBLIC_TYPE_OF = {
    EventType.VIEWED: PublicEventType.RENDER_VIEWED,
    EventType.DOWNLOADED: PublicEventType.RENDER_DOWNLOADED,
    EventType.PRINTED: PublicEventType.RENDER_PRINTED,
    EventType.EMAIL_OPENED: PublicEventType.EMAIL_OPENED,
    EventType.SHARE_CREATED: PublicEventType.SHARE_CREATED,
    EventType.SHARE_REVOKED: PublicEventType.SHARE_REVOKED,
}
SHARE_TYPES = {PublicEventType.SHARE_CREATED, PublicEventType.SHARE_REVOKED}


def candidate_types(event: EngagementEvent) -> frozenset[str]:
    """The public types this event may make: its own, and `render.first_viewed` for a person's share view."""
    own = PUBLIC_TYPE_OF.get(event.event_type)
    if own is None:
        return frozenset()
    if own == PublicEventType.RENDER_VIEWED and event.share_id is not None and event.traffic == Traffic.HUMAN:
        return frozenset({own, PublicEventType.RENDER_FIRST_VIEWED})
    return frozenset({own})


def wanted_announcements(event: EngagementEvent) -> frozenset[str]:
    candidates = candidate_types(event)
    if not candidates:
        return candidates
    return candidates & event_hooks.listened_types(project_id=event.project_id,
                                                   machine=event.traffic == Traffic.MACHINE)


# Announcements that read before they are made: whether a view is its share's first, the share's row.
READING_TYPES = SHARE_TYPES | {PublicEventType.RENDER_FIRST_VIEWED}


def announcement_writes(event: EngagementEvent, wanted: frozenset[str]) -> list[event_hooks.StatementWrite] | None:
    """The listeners' writes for the `wanted` announcements of `event`, as CTEs of its recording statement;
    None when one of them must read first or a listener cannot write so (then `announce` in a transaction)."""
    if wanted & READING_TYPES:
        return None
    writes: list[event_hooks.StatementWrite] = []
    for public_type in sorted(wanted):
        parts = event_hooks.statement_writes(public_event(event, public_type))
        if parts is None:
            return None
        writes.extend(parts)
    return writes


def announce(event: EngagementEvent, wanted: frozenset[str]) -> None:
    """Tell the listeners of the recorded `event`; inside its recording transaction."""
    for public_type in sorted(wanted):
        if public_type == PublicEventType.RENDER_FIRST_VIEWED and not is_first_human_view(event):
            continue
        event_hooks.recorded(public_event(event, public_type))


def public_event(event: EngagementEvent, public_type: str) -> RecordedEvent:
    return RecordedEvent(project_id=event.project_id, id=event.id, type=public_type, created_at=event.created_at,
                         machine=event.traffic == Traffic.MACHINE, data=lambda: announcement_data(event, public_type))


def is_first_human_view(event: EngagementEvent) -> bool:
    """Whether `event` is its share's first human view. The share's row lock queues concurrent first views,
    so the later one sees the earlier (committed) one and exactly one of them is the first."""
    list(Share.objects.select_for_update().filter(pk=event.share_id).values_list("pk", flat=True))
    return not (EngagementEvent.objects.filter(project_id=event.project_id, share_id=event.share_id,
                                               event_type=EventType.VIEWED, traffic=Traffic.HUMAN)
                .exclude(pk=event.id).exists())


def announcement_data(event: EngagementEvent, public_type: str) -> dict:
    """The payload's `data`: the share object for `share.*`, else the event-log object plus `renderId`."""
    from renders.api.serializers import event_log_json  # the API's shapes; imported late (they import services)

    if public_type in SHARE_TYPES:
        return share_data(Share.objects.get(pk=event.share_id))
    return {**event_log_json(event), "renderId": str(event.render_id)}


def share_data(share: Share) -> dict:
    """The share object as the API answers it (its `url` absolute when PUBLIC_BASE_URL is set, else a path)."""
    from renders.api.share_serializers import share_json

    return share_json(share, request=None)
