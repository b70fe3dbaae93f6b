"""Which database a replica-safe read of a project uses: the streaming replica, or the primary.

Contract section 10: with `DATABASE_REPLICA_URL` set (the `replica` alias), the report, the event log,
visits, pages and exports read from the replica; every write, and a read of a project within
`READ_YOUR_WRITES_SECONDS` of that project's last write through the platform, uses the primary; when
the replica is unreachable reads fall back to the primary.

The choice is made explicitly where such a read runs, never by a global router:

    from engagement_platform.db.replica import replica_read

    def visit_page(*, project, limit, after):
        return replica_read(project.pk, lambda using: list(Visit.objects.using(using).filter(...)[:limit]))

`replica_read` runs the read on the alias `reading_from_replica` picks and, when the replica fails while
answering (stopped, restarted, a recovery conflict), marks it down and runs the read again on the
primary. A streamed read (an export) goes through `replica_stream` instead: it is retried on the primary
only while no chunk has been handed over (see there). The read must be a read: the replica refuses
writes. Everything else (writes, migrations, reads not routed here) goes to the primary (`PrimaryRouter`
in engagement_platform/db/router.py).

What every process shares (in the cache, Redis in production): each project's last write time
(`project_written`, called after a successful write through the API), and a "replica down" mark kept
`DATABASE_REPLICA_RETRY_SECONDS` after a failed connection or read, so the next reads do not wait for
the replica's connect timeout again. With the cache unreachable, reads use the primary.
"""

import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from django.conf import settings
from django.core.cache import caches
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.utils import DatabaseError, InterfaceError, OperationalError

logger = logging.getLogger("engagement_platform.replica")

PRIMARY = DEFAULT_DB_ALIAS
REPLICA = "replica"
WRITTEN_KEY = "replica:written:{project}"
DOWN_KEY = "replica:down"

T = TypeVar("T")


def replica_configured() -> bool:
    return REPLICA in settings.DATABASES


def _project_key(project) -> str:
    project_id = project if isinstance(project, uuid.UUID) else project.pk
    return WRITTEN_KEY.format(project=project_id.hex)


def _cache():
    return caches["default"]


def project_written(project) -> None:
    """Note a committed write of `project` (a project or its id): its reads use the primary for the window."""
    if not replica_configured():
        return
    seconds = settings.READ_YOUR_WRITES_SECONDS
    try:
        _cache().set(_project_key(project), time.time(), timeout=max(1, math.ceil(seconds)))
    except Exception as exc:  # the project's reads may see the replica's lag until the cache is back
        logger.warning("last write not kept, cache unavailable: %s", type(exc).__name__)


def mark_replica_down(reason: BaseException) -> None:
    """Reads use the primary for `DATABASE_REPLICA_RETRY_SECONDS`, in every process."""
    logger.warning("replica unavailable, reading from the primary: %s", type(reason).__name__)
    try:
        _cache().set(DOWN_KEY, time.time(), timeout=max(1, math.ceil(settings.REPLICA_RETRY_SECONDS)))
    except Exception as exc:  # noqa: BLE001 - each read then tries the replica again (short connect timeout)
        logger.warning("replica mark not kept, cache unavailable: %s", type(exc).__name__)


def _replica_connects() -> bool:
    """Open (or keep) this thread's replica connection; a failure marks the replica down."""
    try:
        connections[REPLICA].ensure_connection()
    except (OperationalError, InterfaceError) as exc:
        mark_replica_down(exc)
        return False
    return True


def reading_from_replica(project) -> str:
    """The alias a replica-safe read of `project` (a project or its id) uses: `replica` or the primary's.

    The primary when no replica is configured, within the project's read-your-writes window, while the
    replica is marked down, when the cache cannot say (unreachable) or when the replica does not connect.
    One cache round trip (both marks at once), then the thread's kept replica connection.
    """
    if not replica_configured():
        return PRIMARY
    written_key = _project_key(project)
    try:
        marks = _cache().get_many([written_key, DOWN_KEY])
    except Exception as exc:  # noqa: BLE001 - whether the project just wrote is unknown: the primary has it
        logger.warning("replica marks unavailable, reading from the primary: %s", type(exc).__name__)
        return PRIMARY
    if DOWN_KEY in marks:
        return PRIMARY
    written = marks.get(written_key)
    if written is not None and time.time() - written < settings.READ_YOUR_WRITES_SECONDS:
        return PRIMARY
    return REPLICA if _replica_connects() else PRIMARY


def replica_read(project, read: Callable[[str], T], *, using: str | None = None) -> T:
    """`read(using)` on the alias `reading_from_replica(project)` picks; on the primary again when the
    replica fails while answering (the replica is then marked down and its connection closed).

    A caller that names the database (`using`, e.g. the admin's pages on the primary) reads there only."""
    if using is not None:
        return read(using)
    alias = reading_from_replica(project)
    if alias == PRIMARY:
        return read(PRIMARY)
    try:
        return read(alias)
    except (DatabaseError, InterfaceError) as exc:  # stopped, restarted, a recovery conflict: the primary answers
        failure = exc
    _replica_failed(failure)
    return read(PRIMARY)


def replica_stream(project, chunks: Callable[[str], Iterable[bytes]]) -> Iterable[bytes]:
    """The chunks of a streamed read (an export) of `project`: `chunks(using)` on the alias
    `reading_from_replica(project)` picks, by the rule `replica_read` follows.

    On the replica the stream is started here, before the response is: its first chunk is read at once,
    so a replica failing before that chunk costs nothing but time, the stream is started again on the
    primary (read as it is sent) and the client gets a whole, ordinary response. On the primary (no
    replica, read-your-writes, or the replica marked down) there is nothing to fall back to: the stream
    starts when the response is sent, so the request's connection stays free until then (the middleware
    may still query it). Once the first chunk has been handed over, bytes
    may have reached the client and a failure cannot be retried without repeating or losing rows: it is
    logged (with the alias that failed) and raised again, so the server aborts the response
    and the client sees a transfer cut short, never a body that looks whole. A replica failing mid-stream
    is marked down like any failed replica read.
    """
    alias = reading_from_replica(project)
    if alias == PRIMARY:  # nothing to fall back to: streamed as it is read, the connection free until then
        return chunks(PRIMARY)
    try:
        return _started(chunks(alias), alias)
    except (DatabaseError, InterfaceError) as exc:
        if alias == PRIMARY:
            raise
        failure = exc
    _replica_failed(failure)
    return chunks(PRIMARY)


def _started(chunks: Iterable[bytes], alias: str) -> Iterable[bytes]:
    """`chunks` with its first chunk read already: a failure until then is raised here."""
    stream = iter(chunks)
    first = next(stream, None)
    if first is None:
        return ()
    return _StartedStream(first, stream, alias)


class _StartedStream:
    """`first`, then the rest of `stream`. Closing it (the response closed: sent, or the client gone away)
    closes `stream` at once, whether or not it was iterated, so the read it holds open ends."""

    def __init__(self, first: bytes, stream: Iterator[bytes], alias: str):
        self.first, self.stream, self.alias = first, stream, alias

    def __iter__(self) -> Iterator[bytes]:
        yield self.first
        try:
            yield from self.stream
        except (DatabaseError, InterfaceError) as exc:
            logger.error("stream cut short after its first chunk, %s failed: %s", self.alias, type(exc).__name__)
            if self.alias == REPLICA:
                _replica_failed(exc)
            raise

    def close(self) -> None:
        close = getattr(self.stream, "close", None)
        if close is not None:
            close()


def _replica_failed(failure: BaseException) -> None:
    mark_replica_down(failure)
    _close_quietly(connections[REPLICA])


def _close_quietly(connection) -> None:
    try:
        connection.close()
    except DatabaseError:  # already broken: nothing to close
        pass
