"""Reads on renders: the engagement summary, the render list and a render's shares."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache

from django.db import connection
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate

from engagement_platform.bodycache import KeptBodies
from engagement_platform.clock import now
from engagement_platform.db import partitions
from engagement_platform.db.replica import replica_read
from engagement_platform.ids import parse_uuid
from engagement_platform.traffic import TrafficFilter
from renders.models import (
    LINK_OPENS_COUNTER,
    EngagementCounter,
    EngagementEvent,
    EventType,
    Render,
    Share,
    machine_counter_key,
)

RECENT_EVENTS_LIMIT = 25
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # a summary's `since` when no retention bounds it (the admin)
# Encoded engagement summaries kept per render (a summary is a pure function of its events and counters),
# under the id of the project that asked: one project's key never reads another project's body, and a body
# is kept only once the lookup in the asking project found the render (a 404 is never kept). Dropped by
# every write that changes what a summary says once it commits (`summaries.changed(render_id)`): an event
# recorded by any path (nothing for a deduped one), a backfill batch (once per render it added events to),
# the render's deletion. Off (`SUMMARY_CACHE_SECONDS` = 0) unless the cache is shared by every worker (Redis).
summaries = KeptBodies(scope="summary", seconds_setting="SUMMARY_CACHE_SECONDS")


@dataclass(frozen=True)
class EngagementSummary:
    counts: dict[str, int]
    link_opens: int
    total: int
    recent: list[EngagementEvent]
    recent_json: bytes | None = None  # `recent` already encoded as the API's JSON array (then `recent` is empty)


EVENT_TYPE_VALUES = tuple(event_type.value for event_type in EventType)


def class_count(stored: dict, key: str, traffic: str) -> int:
    """One counter of a render for one traffic class (`stored`: the summed counter rows by key): the key's
    own counter for every class, its machine counter for machine, the difference for human."""
    if traffic == TrafficFilter.ALL:
        return stored.get(key, 0)
    machine = stored.get(machine_counter_key(key), 0)
    return machine if traffic == TrafficFilter.MACHINE else stored.get(key, 0) - machine


def _summary_of(stored: dict, recent: list, recent_json: bytes | None = None,
                traffic: str = TrafficFilter.ALL) -> EngagementSummary:
    counts = {event_type: class_count(stored, event_type, traffic) for event_type in EVENT_TYPE_VALUES}
    return EngagementSummary(counts=counts, link_opens=class_count(stored, LINK_OPENS_COUNTER, traffic),
                             total=sum(counts.values()), recent=recent, recent_json=recent_json)


def _class_events(queryset, traffic: str):
    return queryset if traffic == TrafficFilter.ALL else queryset.filter(traffic=traffic)


def engagement_summary(*, render: Render, traffic: str = TrafficFilter.ALL,
                       since: datetime = EARLIEST) -> EngagementSummary:
    """Two indexed reads whatever the number of events: the counter shards and the class's 25 newest events
    recorded since `since` (the plan's retention start: older months' partitions are not read)."""
    if connection.vendor == "postgresql":
        stored, recent = _summary_rows_in_one_statement(render, traffic, since)
    else:
        stored = dict(EngagementCounter.objects.filter(render=render).order_by().values("key")
                      .annotate(total=Sum("count")).values_list("key", "total"))
        recent = list(_class_events(EngagementEvent.objects.filter(render=render, created_at__gte=since), traffic)
                      .order_by("-created_at", "-id")[:RECENT_EVENTS_LIMIT])
    return _summary_of(stored, recent, traffic=traffic)


def engagement_summary_in_project(*, project, render_id, traffic: str = TrafficFilter.ALL) -> EngagementSummary | None:
    """The summary of the project's render with this id (None: malformed, foreign or unknown id).

    On PostgreSQL ONE statement: the render's existence in the project, its counter shards and its
    25 newest events already encoded as the API's JSON (`recent_json`) by PostgreSQL, so the
    hottest read builds no model instances and encodes no event in Python.
    """
    uid = parse_uuid(render_id)
    if uid is None:
        return None
    at = now()
    since = project.kept_since(at)
    if connection.vendor != "postgresql":
        render = render_in_project(project=project, render_id=render_id)
        return engagement_summary(render=render, traffic=traffic, since=since) if render is not None else None
    by_class = traffic != TrafficFilter.ALL
    classes = [traffic] * by_class
    newest_since = max(since, _previous_month_start(at))
    with connection.cursor() as cursor:
        cursor.execute(_encoded_summary_statement(by_class, _recent_events_relation(newest_since, at)),
                       [uid, project.pk, uid, uid, newest_since, *classes])
        rows = cursor.fetchall()
        found, stored, recent, listed = False, {}, "[]", 0
        for part, key, count, document in rows:
            if part == 0:
                found = True
            elif part == 1:
                stored[key] = count
            else:
                recent, listed = document, count
        if not found:
            return None
        summary = _summary_of(stored, [], traffic=traffic)
        if listed < RECENT_EVENTS_LIMIT and summary.total > listed and since < newest_since:
            # Fewer than 25 events since the previous month began, and the counters hold more: the rest of
            # the newest come from the older months the plan keeps (a quiet render; a busy one never gets here).
            cursor.execute(_older_events_statement(by_class),
                           [uid, since, newest_since, *classes, RECENT_EVENTS_LIMIT - listed])
            recent = _json_arrays_joined(recent, cursor.fetchone()[1])
    return _summary_of(stored, [], recent.encode(), traffic=traffic)


def _previous_month_start(at: datetime) -> datetime:
    """Where a summary looks for its newest events first: the start of the month before `at`'s (UTC)."""
    first = at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first - timedelta(days=1)).replace(day=1)


def _recent_events_relation(newest_since: datetime, at: datetime) -> str:
    """The FROM item (as `e`) of the render events recorded since `newest_since`: the partitions of those months
    by name (two, or three on a month's last day, which also covers the next month's start against clock skew
    between servers) when they exist. A statement naming the table would be planned over every month's partition
    the plan keeps."""
    return partitions.model_months_relation(EngagementEvent, newest_since.date(), (at + timedelta(days=1)).date(),
                                            alias="e", known=partitions.known_partitions())


_EVENT_OBJECT = (
    "json_build_object('id', e.id, 'eventType', e.event_type, 'actorKind', e.actor_kind, 'shareId', e.share_id, "
    "'sourceIp', e.source_ip, 'userAgent', e.user_agent, 'metadata', e.metadata, "
    "'createdAt', to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))"
)


def _newest_events_sql(events: str, *, by_class: bool, bounded: bool, limit: str) -> str:
    """`count, JSON array` (the select list and its FROM) of a render's newest events in `events` (a FROM item
    as `e`): parameters the render, the earliest time, the time before which (`bounded`), the class
    (`by_class`); at most `limit` (SQL: a number or a placeholder), newest first."""
    before = " AND created_at < %s" if bounded else ""
    return (f"count(*), coalesce(json_agg({_EVENT_OBJECT} ORDER BY e.created_at DESC, e.id DESC), '[]')::text "
            f"FROM (SELECT e.* FROM {events} WHERE render_id = %s AND created_at >= %s{before}"
            f"{_class_condition(by_class)} ORDER BY created_at DESC, id DESC LIMIT {limit}) AS e")


@cache
def _older_events_statement(by_class: bool) -> str:
    """The render's newest events in [since, newest since), at most a given number: (count, JSON array)."""
    events = f"{EngagementEvent._meta.db_table} AS e"
    return f"SELECT {_newest_events_sql(events, by_class=by_class, bounded=True, limit='%s')}"


def _json_arrays_joined(newer: str, older: str) -> str:
    """Two JSON arrays' text as one array (the database wrote both)."""
    if newer == "[]":
        return older
    return newer if older == "[]" else f"{newer[:-1]},{older[1:]}"


def engagement_summary_body(*, project, render_id, encode: Callable[[EngagementSummary], bytes],
                            refresh: bool = False, traffic: str = TrafficFilter.ALL) -> bytes | None:
    """The encoded summary of the project's render with this id for one traffic filter (None: malformed,
    foreign or unknown id), from the summary cache when it is current (`refresh` builds it afresh).
    Each filter's body is kept apart; the default's under the key it always had."""
    uid = parse_uuid(render_id)
    if uid is None:
        return None

    def build() -> bytes | None:
        summary = engagement_summary_in_project(project=project, render_id=uid, traffic=traffic)
        return None if summary is None else encode(summary)

    inputs = (project.pk.hex,) if traffic == TrafficFilter.ALL else (project.pk.hex, traffic)
    return summaries.cached(uid, inputs=inputs, build=build, refresh=refresh)


@lru_cache(maxsize=16)
def _encoded_summary_statement(by_class: bool, events: str) -> str:
    """The summary as one statement, reading the newest events from `events` (a FROM item as `e`); `by_class`
    adds a traffic condition (one more parameter) to them. Its part 2 gives how many it listed, and their JSON."""
    renders, counters = (model._meta.db_table for model in (Render, EngagementCounter))
    return (
        f"SELECT 0, NULL::varchar, NULL::bigint, NULL::text FROM {renders} WHERE id = %s AND project_id = %s "
        f"UNION ALL SELECT 1, key, sum(count)::bigint, NULL FROM {counters} WHERE render_id = %s GROUP BY key "
        f"UNION ALL SELECT 2, NULL, "
        f"{_newest_events_sql(events, by_class=by_class, bounded=False, limit=str(RECENT_EVENTS_LIMIT))}"
    )


def _class_condition(by_class: bool) -> str:
    """The SQL condition on the events' traffic class (one parameter) of a summary read for one class."""
    if not by_class:
        return ""
    return f" AND {connection.ops.quote_name(EngagementEvent._meta.get_field('traffic').column)} = %s"


def render_in_project(*, project, render_id) -> Render | None:
    """The project's render with this id (a malformed or foreign id is None).

    On PostgreSQL one raw indexed read: the scoped ORM lookup costs several times its SQL on the
    two hottest routes (record an event, read the summary). Same filter: id and project.
    """
    uid = parse_uuid(render_id)
    if uid is None:
        return None
    if connection.vendor != "postgresql":
        return Render.objects.filter(project=project, pk=uid).first()
    fields = Render._meta.concrete_fields
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {Render._meta.db_table} WHERE id = %s AND project_id = %s",
                       [uid, project.pk])
        row = cursor.fetchone()
    if row is None:
        return None
    return Render.from_db(connection.alias, [f.attname for f in fields], list(row))


@cache
def _summary_statement(by_class: bool = False) -> tuple[str, list[str], list]:
    """The summary's SQL (built once per process and shape), the event attribute names and their converters."""
    fields = EngagementEvent._meta.concrete_fields
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    nulls = ", ".join(f"NULL::{f.db_type(connection)}" for f in fields)
    events, counters = EngagementEvent._meta.db_table, EngagementCounter._meta.db_table
    sql = (
        f"SELECT NULL::varchar, NULL::bigint, * FROM (SELECT {columns} FROM {events} WHERE render_id = %s "
        f"AND created_at >= %s{_class_condition(by_class)} ORDER BY created_at DESC, id DESC "
        f"LIMIT {RECENT_EVENTS_LIMIT}) AS recent "
        f"UNION ALL SELECT key, sum(count)::bigint, {nulls} FROM {counters} WHERE render_id = %s GROUP BY key"
    )
    converters = [(i, f.from_db_value) for i, f in enumerate(fields) if hasattr(f, "from_db_value")]
    return sql, [f.attname for f in fields], converters


def _summary_rows_in_one_statement(render: Render, traffic: str,
                                   since: datetime) -> tuple[dict[str, int], list[EngagementEvent]]:
    """PostgreSQL: the same two index reads as one raw statement (UNION ALL), without ORM query building.

    The summary is the hottest read; building two querysets cost several times the SQL itself.
    """
    by_class = traffic != TrafficFilter.ALL
    sql, names, converters = _summary_statement(by_class)
    with connection.cursor() as cursor:
        cursor.execute(sql, [render.pk, since, *([traffic] * by_class), render.pk])
        rows = cursor.fetchall()
    stored, recent = {}, []
    for key, count, *values in rows:
        if key is not None:
            stored[key] = count
            continue
        for i, convert in converters:
            values[i] = convert(values[i], None, connection)
        recent.append(EngagementEvent.from_db(connection.alias, names, values))
    recent.sort(key=lambda event: (event.created_at, event.id), reverse=True)
    return stored, recent


def keyset_page(queryset, *, limit: int, after: tuple | None, field: str = "created_at") -> tuple[list, bool]:
    """One page of `queryset`, newest first, keyset-paginated on (`field`, id), `field` a timestamp
    (created_at unless told): the rows and whether more follow. Every cursor-paginated list reads through this."""
    queryset = queryset.order_by(f"-{field}", "-id")
    if after is not None:
        at, item_id = after
        queryset = queryset.filter(Q(**{f"{field}__lt": at}) | Q(**{field: at, "id__lt": item_id}))
    rows = list(queryset[: limit + 1])
    return rows[:limit], len(rows) > limit


def render_page(*, project, limit: int, after: tuple | None) -> tuple[list[Render], bool]:
    """One page of the project's renders, newest first."""
    return keyset_page(Render.objects.filter(project=project), limit=limit, after=after)


def render_event_page(*, render: Render, lookups: dict, limit: int, after: tuple | None
                      ) -> tuple[list[EngagementEvent], bool]:
    """One page of a render's events matching `lookups` (field filters), newest first (ties by id), through
    the (render, created_at, id) index or its per-class and per-type siblings. Read from the replica when
    one is configured and the render's project has not written within the read-your-writes window."""
    return replica_read(render.project_id, lambda using: keyset_page(
        EngagementEvent.objects.using(using).filter(render=render, **lookups), limit=limit, after=after))


def share_page(*, render: Render, limit: int, after: tuple | None) -> tuple[list[Share], bool]:
    """One page of a render's shares, newest first, through the (render, created_at) index."""
    return keyset_page(Share.objects.filter(render=render), limit=limit, after=after)


def engagement_by_day(*, render: Render, since, until) -> dict:
    """{(day, event type, traffic class): count} for the admin charts, through the (render, created_at) index."""
    rows = (
        EngagementEvent.objects.filter(render=render, created_at__gte=since, created_at__lt=until)
        .annotate(day=TruncDate("created_at"))
        .values("day", "event_type", "traffic")
        .annotate(n=Count("id"))
    )
    return {(row["day"], row["event_type"], row["traffic"]): row["n"] for row in rows}
