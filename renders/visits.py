"""Visits and reading time (contract 7.2, 7.3): writes as the share page and its reports arrive, and reads.

A visit is one viewer's continuous reading of one share: a `viewed` starts one unless the same viewer (their
first-party cookie) had activity on that share less than VISIT_IDLE_MINUTES ago. Every activity report adds
its reading time to the visit, its pages (`VisitPage`), the render's per-page figures (`PageReading`) and
the render's visit totals (`VisitTotals`) in one transaction, with the visit's row locked: so the pages read
is a few rows whatever the number of visits, and concurrent reports of one visit queue instead of racing.

A visit idle for VISIT_IDLE_MINUTES has ended: the worker's periodic job (`visits_ended_announce`) tells it as
`visit.ended` through engagement_platform.event_hooks, once per visit, marked in the same transaction.
"""

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Sum

from engagement_platform import event_hooks
from engagement_platform.clock import iso_ms, now
from engagement_platform.db.replica import replica_read
from engagement_platform.event_hooks import PublicEventType, RecordedEvent
from engagement_platform.ids import new_id
from engagement_platform.traffic import Traffic, TrafficFilter, Verdict
from renders.models import PageReading, Render, Share, Visit, VisitTotals
from renders.selectors import keyset_page
from renders.upserts import (
    add_to_page_readings,
    add_to_visit_pages,
    add_to_visit_totals,
    lock_viewer_of_share,
    report_in_one_statement,
)

READ_PAGE_MS = 1000  # a page counts as read (pagesViewed, a page's visits, completion) from 1 s of reading
CAP_GRACE_MS = 5000  # a visit is never credited more than its wall-clock time since it started plus this
ENDINGS_EVERY_SECONDS = 10.0  # how often the worker looks for visits that ended (visit.ended)
ENDINGS_CHUNK = 100  # visits announced per transaction
ENDINGS_CHUNKS_PER_RUN = 20  # a run stops after this many chunks, so the worker's other periodic jobs keep pace


def idle_window() -> timedelta:
    return timedelta(minutes=settings.VISIT_IDLE_MINUTES)


def wall_ms(since: datetime, until: datetime) -> int:
    return max(0, int((until - since).total_seconds() * 1000))


# Writes ------------------------------------------------------------------------------------------------------

def current_visit(*, share: Share, viewer: str | None, at: datetime) -> Visit | None:
    """The viewer's visit of `share` that goes on at `at`: their latest, active less than VISIT_IDLE_MINUTES ago."""
    if not viewer:
        return None
    return (Visit.objects.filter(share=share, viewer=viewer, last_activity_at__gt=at - idle_window())
            .order_by("-last_activity_at").first())


def visit_view(*, share: Share, viewer: str, verdict: Verdict, source_ip: str | None, user_agent: str | None,
               viewer_email: str = "", at: datetime | None = None) -> Visit:
    """The visit a view of the share page belongs to: the viewer's current one (its activity moved to `at`),
    else a new one with this request's source IP, user agent and traffic class."""
    at = at or now()
    with transaction.atomic():
        lock_viewer_of_share(share_id=share.pk, viewer=viewer)
        visit = current_visit(share=share, viewer=viewer, at=at)
        if visit is not None:
            changes = {"last_activity_at": at}
            if viewer_email and not visit.viewer_email:
                changes["viewer_email"] = visit.viewer_email = viewer_email
            Visit.objects.filter(pk=visit.pk, last_activity_at__lt=at).update(**changes)
            return visit
        visit = Visit.objects.create(
            project_id=share.project_id, render_id=share.render_id, share=share, viewer=viewer,
            viewer_email=viewer_email, started_at=at, last_activity_at=at, traffic=verdict.traffic,
            machine_reason=verdict.reason, source_ip=source_ip, user_agent=user_agent)
        add_to_visit_totals(project_id=share.project_id, render_id=share.render_id, traffic=verdict.traffic,
                            visits=1)
    return visit


def visit_mark(*, share: Share, viewer: str | None, downloaded: bool = False, printed: bool = False,
               at: datetime | None = None) -> Visit | None:
    """Mark the viewer's current visit as downloaded or printed (its activity moved to `at`); None without one."""
    at = at or now()
    visit = current_visit(share=share, viewer=viewer, at=at)
    if visit is None:
        return None
    changes = {"last_activity_at": at}
    if downloaded:
        changes["downloaded"] = True
    if printed:
        changes["printed"] = True
    Visit.objects.filter(pk=visit.pk).update(**changes)
    return visit


def credit_within(pages: dict[int, int], allowed_ms: int) -> dict[int, int]:
    """The reported {page: ms} trimmed to `allowed_ms` in all (pages in order), without zero entries."""
    credited = {}
    for page, ms in sorted(pages.items()):
        take = min(ms, allowed_ms)
        if take > 0:
            credited[page] = take
            allowed_ms -= take
    return credited


@dataclass(frozen=True)
class ActivityResult:
    credited_ms: int
    pages_read: list[int]  # the pages this report made read (they passed READ_PAGE_MS)


def activity_record(*, share: Share, visit_id, pages: dict[int, int], at: datetime | None = None
                    ) -> ActivityResult | None:
    """Add a reading report ({page: ms}, pages within the render's) to the share's visit `visit_id`; None when
    the share has no such visit. The visit is credited at most its wall-clock time since it started plus
    CAP_GRACE_MS in all; what a report asks beyond that is dropped."""
    at = at or now()
    if connection.vendor == "postgresql":
        # one round trip; inside a caller's transaction a savepoint keeps a failure from poisoning it
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            done = report_in_one_statement(share_id=share.pk, visit_id=visit_id, pages=pages, at=at,
                                           last_page=share.render.page_count or 0, grace_ms=CAP_GRACE_MS,
                                           read_ms=READ_PAGE_MS)
        return None if done is None else ActivityResult(credited_ms=done[0], pages_read=done[1])
    with transaction.atomic():
        visit = Visit.objects.select_for_update().filter(pk=visit_id, share_id=share.pk).first()
        if visit is None:
            return None
        allowed = max(0, wall_ms(visit.started_at, at) + CAP_GRACE_MS - visit.duration_ms)
        credited = credit_within(pages, allowed)
        after = add_to_visit_pages(project_id=visit.project_id, render_id=visit.render_id, visit_id=visit.pk,
                                   pages=credited)
        read = [page for page, ms in credited.items() if after[page] - ms < READ_PAGE_MS <= after[page]]
        total = sum(credited.values())
        if credited:
            add_to_page_readings(project_id=visit.project_id, render_id=visit.render_id, traffic=visit.traffic,
                                 pages={page: (ms, int(page in read)) for page, ms in credited.items()})
            add_to_visit_totals(project_id=visit.project_id, render_id=visit.render_id, traffic=visit.traffic,
                                duration_ms=total, completed=int(share.render.page_count in read))
        Visit.objects.filter(pk=visit.pk).update(duration_ms=F("duration_ms") + total,
                                                 pages_viewed=F("pages_viewed") + len(read),
                                                 last_activity_at=max(at, visit.last_activity_at))
    return ActivityResult(credited_ms=total, pages_read=read)


# Endings: visit.ended ------------------------------------------------------------------------------------------

def visits_ended_announce(*, at: datetime | None = None, chunk: int = ENDINGS_CHUNK,
                          chunks: int = ENDINGS_CHUNKS_PER_RUN) -> int:
    """The worker's periodic job: tell the listeners `visit.ended` for each visit idle for VISIT_IDLE_MINUTES
    by `at` and not yet announced, once per visit. Returns how many events were told.

    Each chunk is one transaction: the due visits are taken with their rows locked (PostgreSQL, `SKIP LOCKED`:
    workers running at once take different visits; SQLite's IMMEDIATE transactions run one at a time), the
    listeners store their deliveries (the webhooks outbox), and the visits get `ended_announced_at`, all
    committed together or not at all; a worker killed mid-run leaves its chunk to the next run. A visit whose
    project listens to nothing for its traffic class is marked without an event. The event's `createdAt` is
    `at` (the marker's time), its `data` the visit of GET /v1/renders/:id/visits plus `renderId`, as it stood
    when announced. Activity that reaches a visit after its announcement is still credited; it is not
    announced again. The partial index on the visits not yet announced keeps the scan to the visits of the
    last VISIT_IDLE_MINUTES once the job has caught up."""
    at = at or now()
    told = 0
    for _ in range(chunks):
        with transaction.atomic():
            due = list(visits_unannounced(at=at).select_for_update(skip_locked=True, of=("self",))[:chunk])
            for visit in due:
                told += visit_ended_tell(visit, at=at)
            if due:
                Visit.objects.filter(pk__in=[visit.pk for visit in due]).update(ended_announced_at=at)
        if len(due) < chunk:
            break
    return told


def visits_unannounced(*, at: datetime):
    """The visits ended by `at` whose ending was not told yet, oldest last activity first (the partial index
    `visit_end_unannounced`)."""
    return visits_idle(at=at).filter(ended_announced_at__isnull=True)


def visit_ended_tell(visit: Visit, *, at: datetime) -> int:
    """Tell `visit.ended` of `visit` to the listeners that want it (in the caller's transaction); 1 if any did."""
    machine = visit.traffic == Traffic.MACHINE
    if PublicEventType.VISIT_ENDED not in event_hooks.listened_types(project_id=visit.project_id, machine=machine):
        return 0
    event_hooks.recorded(RecordedEvent(
        project_id=visit.project_id, id=new_id(), type=PublicEventType.VISIT_ENDED, created_at=at,
        machine=machine, data=lambda: visit_ended_data(visit)))
    return 1


def visit_ended_data(visit: Visit) -> dict:
    """The `data` of `visit.ended` (contract section 8): the visit object of 7.3 plus `renderId`."""
    return {**visit_json(visit, visit.render.page_count), "renderId": str(visit.render_id)}


# Reads -------------------------------------------------------------------------------------------------------

def visit_list_page(*, render: Render, lookups: dict, limit: int, after: tuple | None,
                    using: str | None = None) -> tuple[list[Visit], bool]:
    """One page of a render's visits matching `lookups`, newest first (ties by id), through the
    (render, started_at, id) index or its per-class and per-share siblings. Read from the replica when one is
    configured and the render's project has not written within the read-your-writes window (contract 10),
    unless `using` names the database (the admin reads the primary)."""
    return replica_read(render.project_id, lambda alias: keyset_page(
        Visit.objects.using(alias).filter(render=render, **lookups), limit=limit, after=after, field="started_at"),
        using=using)


def visits_idle(*, at: datetime | None = None, since: datetime | None = None):
    """Visits that ended by `at`: no activity for VISIT_IDLE_MINUTES (optionally only those whose last activity
    is after `since`, for a job that picks up where it stopped), oldest last activity first."""
    at = at or now()
    visits = Visit.objects.filter(last_activity_at__lte=at - idle_window())
    if since is not None:
        visits = visits.filter(last_activity_at__gt=since)
    return visits.select_related("render").order_by("last_activity_at", "id")


def visit_json(visit: Visit, page_count: int | None) -> dict:
    """The visit object of contract 7.3."""
    return {
        "id": str(visit.id),
        "shareId": str(visit.share_id),
        "viewerEmail": visit.viewer_email or None,
        "startedAt": iso_ms(visit.started_at),
        "lastActivityAt": iso_ms(visit.last_activity_at),
        "durationMs": visit.duration_ms,
        "pagesViewed": visit.pages_viewed,
        "pageCount": page_count or 0,
        "completion": round(visit.pages_viewed / page_count, 4) if page_count else 0,
        "downloaded": visit.downloaded,
        "printed": visit.printed,
        "traffic": visit.traffic,
        "sourceIp": visit.source_ip,
        "userAgent": visit.user_agent,
    }


@dataclass(frozen=True)
class PageFigures:
    page: int
    visits: int
    total_ms: int

    @property
    def average_ms(self) -> int:
        return self.total_ms // self.visits if self.visits else 0


@dataclass(frozen=True)
class ReadingByPage:
    page_count: int
    visits: int
    duration_ms: int
    completed: int
    pages: list[PageFigures]

    @property
    def average_duration_ms(self) -> int:
        return self.duration_ms // self.visits if self.visits else 0

    @property
    def completion_rate(self) -> float:
        return round(self.completed / self.visits, 4) if self.visits else 0


def _classes(queryset, traffic: str):
    return queryset if traffic == TrafficFilter.ALL else queryset.filter(traffic=traffic)


def reading_by_page(*, render: Render, traffic: str = TrafficFilter.ALL, using: str | None = None) -> ReadingByPage:
    """A render's reading per page (zero-filled 1..pageCount) and its visits in all: two reads of the kept
    figures (a row per page and class, a row per class), whatever the number of visits. Both read from the
    replica when one is configured and the render's project has not written within the read-your-writes
    window (contract 10), and both again from the primary when the replica fails; unless `using` names the
    database (the admin reads the primary)."""
    per_page, totals = replica_read(render.project_id, lambda alias: _kept_figures(
        render=render, traffic=traffic, using=alias), using=using)
    page_count = render.page_count or 0
    pages = [PageFigures(page=page, visits=int(per_page[page]["n"]) if page in per_page else 0,
                         total_ms=int(per_page[page]["ms"]) if page in per_page else 0)
             for page in range(1, page_count + 1)]
    return ReadingByPage(page_count=page_count, visits=int(totals["visits"] or 0),
                         duration_ms=int(totals["duration_ms"] or 0), completed=int(totals["completed"] or 0),
                         pages=pages)


def _kept_figures(*, render: Render, traffic: str, using: str) -> tuple[dict, dict]:
    """{page: its summed figures} and the visits' summed totals, read from the database `using`."""
    per_page = {row["page"]: row for row in _classes(PageReading.objects.using(using).filter(render=render), traffic)
                .order_by().values("page").annotate(ms=Sum("total_ms"), n=Sum("visits"))}
    totals = _classes(VisitTotals.objects.using(using).filter(render=render), traffic).aggregate(
        visits=Sum("visits"), duration_ms=Sum("duration_ms"), completed=Sum("completed"))
    return per_page, totals


def reading_json(reading: ReadingByPage) -> dict:
    """The body of GET /v1/renders/:id/pages."""
    return {
        "pageCount": reading.page_count,
        "visits": reading.visits,
        "averageDurationMs": reading.average_duration_ms,
        "completionRate": reading.completion_rate,
        "data": [{"page": page.page, "visits": page.visits, "totalMs": page.total_ms, "averageMs": page.average_ms}
                 for page in reading.pages],
    }



