"""The outbox listener: which event types a project's endpoints want (kept per process for a few seconds, so an
event nobody subscribes to costs no query), and the deliveries written in the recording transaction."""

import json
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from engagement_platform.clock import iso_ms
from engagement_platform.event_hooks import RecordedEvent, StatementWrite
from webhooks.models import WebhookEndpoint

KEPT_PROJECTS_MAX = 10_000


@dataclass(frozen=True)
class Subscription:
    endpoint_id: object
    events: frozenset[str]
    include_machine: bool

    def wants(self, event_type: str, machine: bool) -> bool:
        return event_type in self.events and (self.include_machine or not machine)


def enabled_subscriptions(project_id) -> list[Subscription]:
    """The project's enabled endpoints and what each subscribes to (one query)."""
    rows = (WebhookEndpoint.objects.filter(project_id=project_id, disabled_at__isnull=True)
            .values_list("id", "events", "include_machine"))
    return [Subscription(endpoint_id=pk, events=frozenset(events), include_machine=include_machine)
            for pk, events, include_machine in rows]


class KeptSubscriptions:
    """Each project's subscriptions, kept in this process for WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS and dropped
    by every change saved in this process. Another process sees a new, re-enabled or changed endpoint within
    that time; a deleted or disabled one gets no delivery (the outbox's insert checks the endpoint's row)."""

    def __init__(self):
        self._kept: dict = {}
        self._lock = threading.Lock()

    def get(self, project_id) -> list[Subscription]:
        kept = self._kept.get(project_id)
        if kept is not None and kept[0] > time.monotonic():
            return kept[1]
        found = enabled_subscriptions(project_id)
        with self._lock:
            if len(self._kept) >= KEPT_PROJECTS_MAX:
                self._kept.clear()
            self._kept[project_id] = (time.monotonic() + settings.WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS, found)
        return found

    def changed(self, project_id) -> None:
        """Drop the project's kept subscriptions now and once the saving transaction commits."""
        self._kept.pop(project_id, None)
        transaction.on_commit(lambda: self._kept.pop(project_id, None))

    def clear(self) -> None:
        self._kept.clear()


kept_subscriptions = KeptSubscriptions()


def payload_body(event: RecordedEvent) -> str:
    """The delivered body: `{"id", "type", "createdAt", "data"}`, the same bytes on every attempt."""
    return json.dumps({"id": str(event.id), "type": event.type, "createdAt": iso_ms(event.created_at),
                       "data": event.data()}, ensure_ascii=False, separators=(",", ":"))


class Outbox:
    """engagement_platform.event_hooks listener: one delivery per subscribed endpoint, stored in the
    transaction that recorded the event, and the worker told once that transaction commits."""

    def wanted_types(self, *, project_id, machine: bool) -> frozenset[str]:
        wanted: set[str] = set()
        for subscription in kept_subscriptions.get(project_id):
            if subscription.include_machine or not machine:
                wanted |= subscription.events
        return frozenset(wanted)

    def take(self, event: RecordedEvent) -> None:
        targets = subscribed_endpoints(event)
        if targets:
            deliveries_store(project_id=event.project_id, endpoint_ids=targets, event_id=event.id,
                             event_type=event.type, created_at=event.created_at, body=payload_body(event))

    def statement_writes(self, event: RecordedEvent, *, prefix: str) -> list[StatementWrite] | None:
        """The deliveries and their task row as CTEs of the statement recording the event: one round trip and
        one commit for the event and its outbox. None unless the task backend stores tasks in the database."""
        from engagement_platform.clock import now
        from engagement_platform.ids import new_id
        from webhooks.db import deliveries_with_the_event
        from webhooks.tasks import task_row, task_stored

        targets = subscribed_endpoints(event)
        rows = [(new_id(), endpoint_id) for endpoint_id in targets]
        task = task_row([delivery_id for delivery_id, _endpoint in rows]) if rows else None
        if task is None:
            return None if rows else []
        return deliveries_with_the_event(rows=rows, project_id=event.project_id, event_id=event.id,
                                         event_type=event.type, body=payload_body(event), at=now(),
                                         task_row=task, name=f"{prefix}outbox",
                                         task_committed=lambda: task_stored(task))


def subscribed_endpoints(event: RecordedEvent) -> list:
    """The endpoints subscribed to this event's type and traffic class (from the kept subscriptions)."""
    return [subscription.endpoint_id for subscription in kept_subscriptions.get(event.project_id)
            if subscription.wants(event.type, event.machine)]


outbox = Outbox()


def deliveries_store(*, project_id, endpoint_ids: list, event_id, event_type: str, created_at, body: str) -> list:
    """Insert pending deliveries of one event (in the caller's transaction; one statement, for the endpoints
    still enabled) and enqueue them once it commits. Returns the ids of the deliveries stored."""
    from engagement_platform.clock import now
    from engagement_platform.ids import new_id
    from webhooks.db import insert_deliveries
    from webhooks.tasks import enqueue_after_commit

    stored = insert_deliveries(rows=[(new_id(), endpoint_id) for endpoint_id in endpoint_ids],
                               project_id=project_id, event_id=event_id, event_type=event_type, body=body, at=now())
    enqueue_after_commit(stored)
    return stored
