"""Encoded engagement summaries kept in the shared cache, dropped by every write that changes one.

A render's summary is a pure function of its events and counters, so its body is kept
(engagement_platform/bodycache.py) in the render's scope, under the id of the project that asked:
one project's key never reads another project's body, and a body is kept only once the lookup in
the asking project found the render (a 404 is never kept). Every write that changes what a summary
says replaces the render's version after it commits (`summaries_changed`): an event recorded by any
path (partner, share pages, email, shares, demo seeding; nothing for a deduped one), a backfill
batch (once per render it added events to), the render's deletion.

Off (`SUMMARY_CACHE_SECONDS` = 0) unless the cache is shared by every worker (Redis). A request with
`Cache-Control: no-cache` is built afresh (and stored). Bodies expire after `SUMMARY_CACHE_SECONDS`.
"""

import uuid
from collections.abc import Callable, Collection

from django.conf import settings

from engagement_platform import bodycache


def summary_cache_seconds() -> int:
    return getattr(settings, "SUMMARY_CACHE_SECONDS", 0)


def summary_scope(render_id: uuid.UUID) -> str:
    return f"summary:{render_id.hex}"


def cached_summary_body(*, project_id: uuid.UUID, render_id: uuid.UUID, build: Callable[[], bytes | None],
                        refresh: bool = False) -> bytes | None:
    """The summary body of `render_id` as `project_id` sees it, kept when current, else `build()` (None: not found)."""
    return bodycache.cached_body(scope=summary_scope(render_id), inputs=(project_id.hex,), build=build,
                                 seconds=summary_cache_seconds(), refresh=refresh)


def summaries_changed(*, render_ids: Collection[uuid.UUID]) -> None:
    """Drop the kept summaries of these renders once the current transaction commits (at once outside one)."""
    seconds = summary_cache_seconds()
    if seconds > 0:
        bodycache.data_changed(scopes=[summary_scope(render_id) for render_id in render_ids], seconds=seconds)
