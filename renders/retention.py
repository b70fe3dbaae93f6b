"""Retention on the render side: what a project's plan no longer keeps is deleted, and what it had added to the
all-time figures (counters, visit totals, per-page reading) is taken off them in the same transaction, so the
figures stay equal to a recomputation from what is kept.

Kept: a project's render events recorded at or after the cutoff, its visits with activity at or after it (a
visit is kept whole while any of it is), and every render, share and email (documents are not traffic).
"""

from collections import Counter, defaultdict
from dataclasses import dataclass

from django.db.models import Count, F, Q, Sum

from engagement_platform.db.batches import chunked_transactions
from renders.models import Visit, VisitPage
from renders.selectors import summaries
from renders.services import counter_increments
from renders.upserts import (
    add_to_counters,
    add_to_page_readings,
    add_to_visit_totals,
    dedupe_marks_delete_before,
    events_delete_before,
    partition_counted_events,
)
from renders.visits import READ_PAGE_MS

PURGE_CHUNK = 5000  # rows per transaction: short locks, and a killed purge keeps what it finished


@dataclass
class RenderPurge:
    events: int = 0
    visits: int = 0
    dedupe_marks: int = 0


def render_data_purge(*, project_id, cutoff, chunk: int = PURGE_CHUNK) -> RenderPurge:
    """Delete the project's render events and visits from before `cutoff`, their figures taken off the totals."""
    purged = RenderPurge()

    def events_chunk_delete(limit: int) -> list:
        rows = events_delete_before(project_id=project_id, cutoff=cutoff, limit=limit)
        counters_subtract(project_id=project_id, tallies=[(*row, 1) for row in rows])
        return rows

    def visits_chunk_delete(limit: int) -> list:
        return _visits_chunk_purge(project_id=project_id, cutoff=cutoff, chunk=limit)

    purged.events = sum(len(rows) for rows in chunked_transactions(events_chunk_delete, chunk))
    purged.visits = sum(len(ids) for ids in chunked_transactions(visits_chunk_delete, chunk))
    purged.dedupe_marks = dedupe_marks_delete_before(project_id=project_id, cutoff=cutoff)
    return purged


def counters_subtract(*, project_id, tallies) -> None:
    """Take (render id, event type, shared, traffic, events) tallies of deleted events off their counters."""
    by_render: dict = defaultdict(Counter)
    for render_id, event_type, shared, traffic, events in tallies:
        for key, amount in counter_increments(event_type, True if shared else None, traffic).items():
            by_render[render_id][key] -= amount * events
    for render_id in sorted(by_render, key=str):  # one lock order for concurrent purges
        add_to_counters(project_id=project_id, render_id=render_id, increments=dict(by_render[render_id]))
    if by_render:
        summaries.changed(*by_render)


def _visits_chunk_purge(*, project_id, cutoff, chunk: int) -> list:
    """Delete up to `chunk` visits idle since before `cutoff` with their pages, taking them off the render's
    visit totals and per-page figures (inside the caller's transaction); returns their ids."""
    ids = list(Visit.objects.select_for_update().filter(project_id=project_id, last_activity_at__lt=cutoff)
               .order_by().values_list("pk", flat=True)[:chunk])
    if not ids:
        return ids
    pages = VisitPage.objects.filter(visit_id__in=ids).order_by()
    readings = defaultdict(dict)
    for row in pages.values("render_id", "page", traffic=F("visit__traffic")).annotate(
            total_ms=Sum("ms"), read=Count("pk", filter=Q(ms__gte=READ_PAGE_MS))):
        readings[row["render_id"], row["traffic"]][row["page"]] = (-row["total_ms"], -row["read"])
    completed = Counter({(row["render_id"], row["traffic"]): row["n"] for row in pages.filter(
        page=F("render__page_count"), ms__gte=READ_PAGE_MS).values(
        "render_id", traffic=F("visit__traffic")).annotate(n=Count("pk"))})
    totals = list(Visit.objects.filter(pk__in=ids).order_by().values("render_id", "traffic")
                  .annotate(n=Count("pk"), ms=Sum("duration_ms")))
    pages.delete()
    Visit.objects.filter(pk__in=ids).delete()
    for (render_id, traffic), by_page in sorted(readings.items(), key=str):
        add_to_page_readings(project_id=project_id, render_id=render_id, traffic=traffic, pages=by_page)
    summaries.changed(*{row["render_id"] for row in totals})
    for row in sorted(totals, key=lambda row: (str(row["render_id"]), row["traffic"])):
        add_to_visit_totals(project_id=project_id, render_id=row["render_id"], traffic=row["traffic"],
                            visits=-row["n"], duration_ms=-row["ms"],
                            completed=-completed[row["render_id"], row["traffic"]])
    return ids


def events_partition_settle(partition: str) -> None:
    """Before one monthly partition of the render events is dropped: take its rows off their counters."""
    by_project = defaultdict(list)
    for project_id, *tally in partition_counted_events(partition):
        by_project[project_id].append(tally)
    for project_id, tallies in by_project.items():
        counters_subtract(project_id=project_id, tallies=tallies)
