"""The traffic class of message events (contract section 6), by the rules of `engagement_platform.traffic`.

`opened` and `clicked` are classified; `sent` and `delivered` are always human. A class given with the
event (an ingested `"machine": true`, a backfill line's `traffic`) is kept as given. Otherwise the user-agent
rules decide (and, for events the platform's own pixel and tracked link recorded, the request's purpose
and source address), and a click less than `MACHINE_CLICK_SECONDS` after its message's earliest known
`delivered` is a `scanner`'s. The same functions judge a stored event again (`reclassify_traffic`).
"""

from collections.abc import Iterable
from datetime import datetime

from engagement_platform.traffic import (
    HUMAN,
    EventKind,
    MachineReason,
    Traffic,
    Verdict,
    classify,
    click_is_too_soon,
)
from reports.models import Message, MessageEvent, MessageEventType
from reports.rollups.definition import CLASSIFIED_TYPES

EVENT_KINDS = {MessageEventType.OPENED: EventKind.OPEN, MessageEventType.CLICKED: EventKind.CLICK}


def given_verdict(event: dict) -> Verdict | None:
    """The class a classified event came with (`traffic` of a backfill line, or `machine: true`), or None."""
    if event["type"] not in CLASSIFIED_TYPES:
        return None
    if event.get("traffic") is not None:
        return Verdict(event["traffic"], event.get("machine_reason"))
    if event.get("machine") is True:
        return Verdict(Traffic.MACHINE, MachineReason.CLIENT)
    return None


def verdict_by_rules(*, event_type: str, user_agent: str | None, source_ip: str | None, purpose: str | None,
                     occurred_at: datetime, delivered_at: datetime | None) -> Verdict:
    """The rules' class of one message event; `delivered_at` is its message's earliest known `delivered`."""
    if event_type not in CLASSIFIED_TYPES:
        return HUMAN
    verdict = classify(kind=EVENT_KINDS[event_type], user_agent=user_agent, source_ip=source_ip, purpose=purpose)
    if (not verdict.is_machine and event_type == MessageEventType.CLICKED
            and click_is_too_soon(clicked_at=occurred_at, delivered_at=delivered_at)):
        return Verdict(Traffic.MACHINE, MachineReason.SCANNER)
    return verdict


def needs_delivery_time(event_type: str, verdict: Verdict | None) -> bool:
    """Whether the click-timing rule can still change this event's class (a click no other rule made machine)."""
    return event_type == MessageEventType.CLICKED and (verdict is None or not verdict.is_machine)


def earliest_deliveries(*, project_id, client_message_ids: Iterable[str],
                        in_batch: Iterable[tuple[str, datetime]] = ()) -> dict[str, datetime]:
    """Each message's earliest `delivered`, stored or in the batch being recorded (`in_batch`: (client
    message id, occurred_at) of its `delivered` events), by client message id."""
    wanted = sorted(set(client_message_ids))
    earliest: dict[str, datetime] = {}
    for message_id, at in in_batch:
        if message_id not in earliest or at < earliest[message_id]:
            earliest[message_id] = at
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start:start + LOOKUP_CHUNK]
        stored = dict(Message.objects.filter(project_id=project_id, client_message_id__in=chunk)
                      .values_list("id", "client_message_id"))
        for message_pk, at in _earliest_stored(stored).items():
            message_id = stored[message_pk]
            if message_id not in earliest or at < earliest[message_id]:
                earliest[message_id] = at
    return earliest


def earliest_deliveries_of_messages(*, project_id, message_ids: Iterable) -> dict:
    """Each stored message's earliest `delivered`, by message row id (stored events judged again); the ids are
    the project's messages (`project_id` names whose)."""
    wanted = sorted(set(message_ids))
    earliest: dict = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        earliest.update(_earliest_stored(wanted[start:start + LOOKUP_CHUNK]))
    return earliest


def _earliest_stored(message_pks) -> dict:
    """The earliest stored `delivered` of each of these messages (row ids of one project's messages).

    Looked up by the events' message index alone: with the project in the condition too, a project whose
    events the table's statistics do not know yet (a new one, between two ANALYZE runs) was planned as a
    scan of all its events against all the batch's messages, seconds per batch once it held a few thousand."""
    earliest: dict = {}
    for message_pk, at in deliveries_of(message_pks):
        if message_pk not in earliest or at < earliest[message_pk]:
            earliest[message_pk] = at
    return earliest


def deliveries_of(message_pks):
    """(message row id, occurred_at) of the stored `delivered` events of these messages, by the message index."""
    return (MessageEvent.objects.filter(message_id__in=list(message_pks), type=MessageEventType.DELIVERED)
            .order_by().values_list("message_id", "occurred_at"))


LOOKUP_CHUNK = 500
