"""Encoded report bodies kept in the shared cache, dropped by any write to the project's report data.

A report is a pure function of the project's rollups and raw events, the resolved window, the
bucket size and the filters. Dashboards ask for the same report again and again, so the body is
kept (engagement_platform/bodycache.py) in the project's scope under exactly those inputs, and every
write to the project's report data replaces the project's version after it commits
(`report_data_changed`: ingestion batches that accepted events, rollup rebuilds).

Off (`REPORT_CACHE_SECONDS` = 0) unless the cache is shared by every worker (Redis). A request with
`Cache-Control: no-cache` is built afresh (and stored). Bodies expire after `REPORT_CACHE_SECONDS`.
"""

import uuid
from collections.abc import Callable

from django.conf import settings

from engagement_platform import bodycache


def report_cache_seconds() -> int:
    return getattr(settings, "REPORT_CACHE_SECONDS", 0)


def report_scope(project_id: uuid.UUID) -> str:
    return f"reports:{project_id.hex}"


def report_inputs(*, window, group_by: str, filters) -> tuple:
    """Everything besides the project's data that the body depends on."""
    channel = filters.channel_id.hex if filters.channel_id else ""
    return (window.start.isoformat(), window.end.isoformat(), str(group_by), channel, filters.domain or "")


def cached_body(*, project_id: uuid.UUID, inputs: tuple, build: Callable[[], bytes], refresh: bool = False) -> bytes:
    """The body for `inputs` from the cache when it is current, else `build()` (then kept for the next request)."""
    return bodycache.cached_body(scope=report_scope(project_id), inputs=inputs, build=build,
                                 seconds=report_cache_seconds(), refresh=refresh)


def report_data_changed(*, project_id: uuid.UUID) -> None:
    """Drop the project's kept report bodies once the current transaction commits (at once outside one)."""
    bodycache.data_changed(scopes=(report_scope(project_id),), seconds=report_cache_seconds())
