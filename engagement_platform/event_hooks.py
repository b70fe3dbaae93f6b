"""What the platform recorded, told to whoever listens, inside the recording transaction.

The apps that record events (renders) call `listened_types` before recording and `recorded` after, in the same
transaction; the apps that act on them (webhooks, for its outbox) register a listener in their `ready()`. The
recording side knows no listener, the listeners know the public event vocabulary below: arrows stay one way.

A listener answers `wanted_types(project_id, machine)` from a cache (it is asked on every recorded event, so it
must cost about nothing when the project listens to nothing), and `take(event)` writes what it needs in the
caller's transaction.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from django.db import models


class PublicEventType(models.TextChoices):
    """The event types partners subscribe to (contract section 8)."""

    RENDER_VIEWED = "render.viewed"
    RENDER_DOWNLOADED = "render.downloaded"
    RENDER_PRINTED = "render.printed"
    RENDER_FIRST_VIEWED = "render.first_viewed"
    EMAIL_OPENED = "email.opened"
    EMAIL_CLICKED = "email.clicked"
    SHARE_CREATED = "share.created"
    SHARE_REVOKED = "share.revoked"
    VISIT_ENDED = "visit.ended"
    WEBHOOK_TEST = "webhook.test"


@dataclass(frozen=True)
class RecordedEvent:
    """One recorded event in its public shape; `data` builds the payload's `data` only when someone takes it."""

    project_id: uuid.UUID
    id: uuid.UUID
    type: str
    created_at: datetime
    machine: bool
    data: Callable[[], dict] = field(compare=False)


class Listener(Protocol):
    def wanted_types(self, *, project_id, machine: bool) -> frozenset[str]: ...

    def take(self, event: RecordedEvent) -> None: ...


_listeners: list[Listener] = []


def listen(listener: Listener) -> None:
    """Register a listener (once: from an AppConfig's `ready()`)."""
    if listener not in _listeners:
        _listeners.append(listener)


def listened_types(*, project_id, machine: bool) -> frozenset[str]:
    """The public event types some listener wants from this project, for this traffic class."""
    wanted: frozenset[str] = frozenset()
    for listener in _listeners:
        wanted |= listener.wanted_types(project_id=project_id, machine=machine)
    return wanted


def recorded(event: RecordedEvent) -> None:
    """Tell the listeners that want it; call inside the transaction that recorded the event."""
    for listener in _listeners:
        if event.type in listener.wanted_types(project_id=event.project_id, machine=event.machine):
            listener.take(event)
