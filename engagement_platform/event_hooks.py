"""What the platform recorded, told to whoever listens, inside the recording transaction.

The apps that record events (renders) call `listened_types` before recording and `recorded` after, in the same
transaction; the apps that act on them (webhooks, for its outbox) register a listener in their `ready()`. The
recording side knows no listener, the listeners know the public event vocabulary below: arrows stay one way.

A listener answers `wanted_types(project_id, machine)` from a cache (it is asked on every recorded event, so it
must cost about nothing when the project listens to nothing), and `take(event)` writes what it needs in the
caller's transaction.

On PostgreSQL an event is recorded by one statement (its claim, row and counters as data-modifying CTEs). A
listener may offer its writes as more CTEs of that statement (`statement_writes`), so a subscribed event costs
the same single round trip and commit as any other; a listener that cannot (or a recording that must read
first) gets `take` inside a transaction instead.
"""

import uuid
from collections.abc import Callable, Sequence
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


# The recording statement's relation holding the recorded event's one row, empty when nothing was recorded (a
# duplicate, a render of another project): a statement write reads it so that it writes only with the event.
RECORDED = "recorded"


@dataclass(frozen=True)
class StatementWrite:
    """A listener's write as a data-modifying CTE of the recording statement: `name AS (sql)`, whose SQL writes
    only when `RECORDED` holds a row and may read the CTEs of the same listener named before it. `committed`,
    if any, runs once the statement's transaction has committed with the event."""

    name: str
    sql: str
    params: Sequence = ()
    committed: Callable[[], None] | None = field(default=None, compare=False)


class Listener(Protocol):
    def wanted_types(self, *, project_id, machine: bool) -> frozenset[str]: ...

    def take(self, event: RecordedEvent) -> None: ...

    # Optional: `statement_writes(event, *, prefix) -> list[StatementWrite] | None`, CTE names starting with
    # `prefix`; None when this event can only be taken in a transaction.


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


def statement_writes(event: RecordedEvent) -> list[StatementWrite] | None:
    """What the listeners that want `event` write, as CTEs of the statement that records it; None when one of
    them can only `take` it in a transaction (the caller then records in one and calls `recorded`)."""
    writes: list[StatementWrite] = []
    for index, listener in enumerate(_listeners):
        if event.type not in listener.wanted_types(project_id=event.project_id, machine=event.machine):
            continue
        offer = getattr(listener, "statement_writes", None)
        parts = offer(event, prefix=f"listener{index}_{event.type.replace('.', '_')}_") if offer else None
        if parts is None:
            return None
        writes.extend(parts)
    return writes


def recorded(event: RecordedEvent) -> None:
    """Tell the listeners that want it; call inside the transaction that recorded the event."""
    for listener in _listeners:
        if event.type in listener.wanted_types(project_id=event.project_id, machine=event.machine):
            listener.take(event)
