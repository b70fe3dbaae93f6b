"""The atomic upserts behind event recording.

The upserts (counters, dedupe marks, and reading depth's per-page figures and visit totals) are the
same SQL on PostgreSQL and on SQLite (3.35+): an `INSERT ... ON CONFLICT ... DO UPDATE` is a single
atomic step on each, and `RETURNING` tells whether the dedupe mark was claimed. On PostgreSQL the whole
recording (claim, event, counters) is one statement: `record_in_one_statement`.
"""

import hashlib
import json
import random
import uuid
from collections.abc import Sequence
from functools import cache

from django.db import connection, models

from engagement_platform.event_hooks import RECORDED, StatementWrite
from renders.models import (
    COUNTER_SHARDS,
    DedupeMark,
    EngagementCounter,
    EngagementEvent,
    PageReading,
    Render,
    Visit,
    VisitPage,
    VisitTotals,
)


def claim_dedupe_mark(*, project_id, dedupe_key: str, at, window) -> bool:
    """Claim the key for `at` unless an event of that key was recorded after `at - window`.

    Concurrent claimers of one key queue on the unique index; exactly one wins.
    The claim is part of the caller's transaction, so a rolled-back request leaves no mark.
    """
    table = DedupeMark._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    sql = (
        f"INSERT INTO {table} (project_id, dedupe_key, last_recorded_at) VALUES (%s, %s, %s) "
        f"ON CONFLICT (project_id, dedupe_key) DO UPDATE SET last_recorded_at = excluded.last_recorded_at "
        f"WHERE {table}.last_recorded_at <= %s RETURNING 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [_uuid_param(project_id), dedupe_key, adapt(at), adapt(at - window)])
        return cursor.fetchone() is not None


def add_to_counters(*, project_id, render_id, increments: dict[str, int], shard: int = 0) -> None:
    """Add `increments` ({counter key: n}) to one shard of a render's counters, creating missing rows."""
    if not increments:
        return
    table = EngagementCounter._meta.db_table
    rows = sorted(increments.items())  # a fixed order avoids lock-order deadlocks
    values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(rows))
    params = []
    for key, amount in rows:
        params += [_uuid_param(project_id), _uuid_param(render_id), key, shard, amount]
    sql = (
        f"INSERT INTO {table} (project_id, render_id, key, shard, count) VALUES {values} "
        f"ON CONFLICT (project_id, render_id, key, shard) DO UPDATE SET count = {table}.count + excluded.count"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def add_to_page_readings(*, project_id, render_id, traffic: str, pages: dict[int, tuple[int, int]]) -> None:
    """Add {page: (ms, visits)} to a render's per-page figures of one traffic class, creating missing rows, in
    one statement (pages in order: concurrent reports lock rows in the same order)."""
    if not pages:
        return
    table = PageReading._meta.db_table
    rows = sorted(pages.items())
    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(rows))
    params = []
    for page, (ms, visits) in rows:
        params += [_uuid_param(project_id), _uuid_param(render_id), traffic, page, ms, visits]
    sql = (
        f"INSERT INTO {table} (project_id, render_id, traffic, page, total_ms, visits) VALUES {values} "
        f"ON CONFLICT (project_id, render_id, traffic, page) DO UPDATE SET "
        f"total_ms = {table}.total_ms + excluded.total_ms, visits = {table}.visits + excluded.visits"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def add_to_visit_pages(*, project_id, render_id, visit_id, pages: dict[int, int]) -> dict[int, int]:
    """Add {page: ms} to one visit's pages, creating missing rows, in one statement; returns each page's ms
    after it (the caller holds the visit's lock, so ms before = after - added)."""
    if not pages:
        return {}
    table = VisitPage._meta.db_table
    rows = sorted(pages.items())
    values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(rows))
    params = []
    for page, ms in rows:
        params += [_uuid_param(project_id), _uuid_param(render_id), _uuid_param(visit_id), page, ms]
    sql = (
        f"INSERT INTO {table} (project_id, render_id, visit_id, page, ms) VALUES {values} "
        f"ON CONFLICT (project_id, visit_id, page) DO UPDATE SET ms = {table}.ms + excluded.ms RETURNING page, ms"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return dict(cursor.fetchall())


def add_to_visit_totals(*, project_id, render_id, traffic: str, visits: int = 0, duration_ms: int = 0,
                        completed: int = 0) -> None:
    """Add to a render's visit totals of one traffic class, creating the row when missing."""
    table = VisitTotals._meta.db_table
    sql = (
        f"INSERT INTO {table} (project_id, render_id, traffic, visits, duration_ms, completed) "
        f"VALUES (%s, %s, %s, %s, %s, %s) "
        f"ON CONFLICT (project_id, render_id, traffic) DO UPDATE SET visits = {table}.visits + excluded.visits, "
        f"duration_ms = {table}.duration_ms + excluded.duration_ms, "
        f"completed = {table}.completed + excluded.completed"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [_uuid_param(project_id), _uuid_param(render_id), traffic, visits, duration_ms,
                             completed])


VIEWER_LOCK_NAMESPACE = 0x56495354  # "VIST"


def lock_viewer_of_share(*, share_id, viewer: str) -> None:
    """PostgreSQL: serialize one viewer's visit starts on one share until the transaction ends (two first views
    at once make one visit, not two); other viewers and shares are not held. SQLite needs nothing: its
    IMMEDIATE transactions already run one at a time."""
    if connection.vendor != "postgresql":
        return
    digest = hashlib.blake2s(f"{share_id}|{viewer}".encode(), digest_size=4).digest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                       [VIEWER_LOCK_NAMESPACE, int.from_bytes(digest, "big", signed=True)])


def _as_uuid(value) -> uuid.UUID:
    """A UUID read by raw SQL (native on PostgreSQL, 32 hex characters on SQLite)."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def _uuid_param(value):
    """UUIDs as the backend stores them (native on PostgreSQL, 32 hex characters on SQLite)."""
    return value if connection.vendor == "postgresql" else value.hex


def record_in_one_statement(*, event, dedupe_key: str | None, window, increments: dict[str, int],
                            check_render: bool = False, writes: Sequence[StatementWrite] = ()) -> bool | None:
    """PostgreSQL: claim the dedupe mark, insert `event` and add to its counters in ONE statement.

    The three writes are data-modifying CTEs of a single statement, so they commit or fail
    together without a BEGIN/COMMIT pair around them (one round trip instead of five): the
    event insert runs only when the claim returned a row, the counter upsert only when the
    event was inserted. Concurrent claimers of one key still queue on the mark's unique index
    and exactly one wins. The counters get a random shard, so concurrent events of one render
    rarely wait on the same row lock. Returns whether the event was recorded.

    With `check_render` the statement first reads the render by id and project (the caller
    has not looked it up) and writes nothing when it is not there; it then returns None.
    `writes` are the event's listeners' CTEs (engagement_platform.event_hooks), run after the counters';
    they read the recorded row (`event_hooks.RECORDED`), so they write only with the event.
    """
    ops = connection.ops
    rows = sorted(increments.items())  # a fixed order avoids lock-order deadlocks
    shard = random.randrange(COUNTER_SHARDS)  # spreads concurrent events of one render over rows
    counter_params = [p for key, amount in rows for p in (event.project_id, event.render_id, key, shard, amount)]
    target_params = [event.render_id, event.project_id] if check_render else []
    claim_params = [] if dedupe_key is None else [
        event.project_id, dedupe_key, ops.adapt_datetimefield_value(event.created_at),
        ops.adapt_datetimefield_value(event.created_at - window)]
    ctes, result = _record_statement(check_render=check_render, deduped=dedupe_key is not None,
                                     counter_rows=len(rows))
    sql = ", ".join([ctes, *(f"{write.name} AS ({write.sql})" for write in writes)]) + " " + result
    params = target_params + claim_params + _event_params(event) + counter_params
    for write in writes:
        params.extend(write.params)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        inserted, found = cursor.fetchone()
    return inserted == 1 if found else None


@cache
def _record_statement(*, check_render: bool, deduped: bool, counter_rows: int) -> tuple[str, str]:
    """The SQL of `record_in_one_statement` for one shape of call (built once per process): its CTEs, to
    which the listeners' are added, and its final SELECT."""
    marks, events, counters = (model._meta.db_table for model in (DedupeMark, EngagementEvent, EngagementCounter))
    _converters, columns, placeholders = _event_insert_parts()
    counter_values = ", ".join(["(%s::uuid, %s::uuid, %s::varchar, %s::smallint, %s::bigint)"] * counter_rows)
    target, target_gate = "", ""
    if check_render:
        target = f"target AS (SELECT 1 FROM {Render._meta.db_table} WHERE id = %s AND project_id = %s), "
        target_gate = " WHERE EXISTS (SELECT 1 FROM target)"
    claim, gate = "", target_gate
    if deduped:
        claim = (
            f"claim AS (INSERT INTO {marks} (project_id, dedupe_key, last_recorded_at) "
            f"SELECT %s::uuid, %s::varchar, %s::timestamptz{target_gate} "
            f"ON CONFLICT (project_id, dedupe_key) DO UPDATE SET last_recorded_at = excluded.last_recorded_at "
            f"WHERE {marks}.last_recorded_at <= %s RETURNING 1), "
        )
        gate = " WHERE EXISTS (SELECT 1 FROM claim)"
    return (
        f"WITH {target}{claim}"
        f"{RECORDED} AS (INSERT INTO {events} ({columns}) SELECT {placeholders}{gate} RETURNING 1), "
        f"counted AS (INSERT INTO {counters} (project_id, render_id, key, shard, count) "
        f"SELECT * FROM (VALUES {counter_values}) AS v WHERE EXISTS (SELECT 1 FROM {RECORDED}) "
        f"ON CONFLICT (project_id, render_id, key, shard) DO UPDATE SET count = {counters}.count + excluded.count)",
        f"SELECT (SELECT count(*) FROM {RECORDED}), {'(SELECT count(*) FROM target)' if check_render else '1'}",
    )


def _event_params(event) -> list:
    """The event's column values, in `_event_insert_parts` order, as the typed placeholders take them."""
    converters, _columns, _placeholders = _event_insert_parts()
    return [convert(getattr(event, attname)) for attname, convert in converters]


@cache
def _event_insert_parts() -> tuple[tuple, str, str]:
    """The event table's (attname, value converter) pairs, column list and typed placeholders (built once).

    Every placeholder carries its column type, so plain Python values serve: a JSON value goes as its
    text (SQL NULL for None, as the model field stores it), an empty address as NULL; the other
    columns (UUIDs, text, aware datetimes) as they are.
    """
    fields = list(EngagementEvent._meta.concrete_fields)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    placeholders = ", ".join(f"%s::{f.db_type(connection)}" for f in fields)
    return tuple((f.attname, _converter(f)) for f in fields), columns, placeholders


def _converter(field):
    if isinstance(field, models.JSONField):
        return lambda value: None if value is None else json.dumps(value, cls=field.encoder, ensure_ascii=False)
    if isinstance(field, models.GenericIPAddressField):
        return lambda value: value or None
    return _same


def _same(value):
    return value


# Backfilled history: rows inserted as given, idempotently on their id ------------------------------------

BACKFILL_COLUMNS = ("id", "project", "render", "share", "event_type", "actor_kind", "source_ip", "user_agent",
                    "metadata", "created_at", "traffic", "machine_reason", "traffic_given")
BACKFILL_STAGING_TABLE = "renders_backfill_incoming"
SQLITE_INSERT_CHUNK_ROWS = 1000  # 13 parameters a row stays under SQLite's variable limit


def insert_new_events(rows: list[tuple], *, wait_for_flush: bool = True) -> dict[tuple, int]:
    """Insert event rows unless their id is stored: values in BACKFILL_COLUMNS order, UUIDs as canonical text,
    metadata as JSON text, `created_at` an aware datetime.

    Returns how many rows were actually inserted per (render id, event type, has a share, traffic): what the
    counters need. PostgreSQL: the batch is copied (COPY) into a temporary table and moved with one
    INSERT ... SELECT ... ON CONFLICT (id, created_at) DO NOTHING; SQLite: multi-row INSERTs ON CONFLICT (id).
    Must run inside the caller's transaction. `wait_for_flush=False` lets that transaction commit
    without waiting for the disk (PostgreSQL); `flush_commits` later makes all such commits durable.
    """
    if not rows:
        return {}
    if connection.vendor == "postgresql":
        return _insert_new_events_copy(rows, wait_for_flush=wait_for_flush)
    return _insert_new_events_values(rows)


def _backfill_columns() -> list[str]:
    meta = EngagementEvent._meta
    return [meta.get_field(name).column for name in BACKFILL_COLUMNS]


def _insert_new_events_copy(rows: list[tuple], *, wait_for_flush: bool) -> dict[tuple, int]:
    from psycopg import sql

    table = sql.Identifier(EngagementEvent._meta.db_table)
    staging = sql.Identifier(BACKFILL_STAGING_TABLE)
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in _backfill_columns())
    render, event_type, share, traffic = (sql.Identifier(EngagementEvent._meta.get_field(name).column)
                                          for name in ("render", "event_type", "share", "traffic"))
    # The table is partitioned by month of created_at (migration 0008): its primary key holds it. An id is
    # derived from the event's content, its created_at included, so the id alone still names one event.
    pk = sql.SQL(", ").join(sql.Identifier(EngagementEvent._meta.get_field(name).column)
                            for name in ("id", "created_at"))
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor: COPY is not part of the DB-API Django wraps
        if not wait_for_flush:
            cursor.execute("SET LOCAL synchronous_commit = off")
        # INCLUDING DEFAULTS: the columns a backfill line does not carry (its traffic class) take the table's
        # defaults in the staging copy too, which keeps their NOT NULL.
        # ON COMMIT DROP: the staging table is the transaction's own, so no session state outlives it (a pooler
        # in transaction mode hands the server connection to another client after the commit).
        cursor.execute(sql.SQL("CREATE TEMPORARY TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) "
                               "ON COMMIT DROP").format(staging, table).as_string(raw.connection))
        cursor.execute(sql.SQL("TRUNCATE {}").format(staging).as_string(raw.connection))
        with raw.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(staging, columns)) as copy:
            write_row = copy.write_row
            for row in rows:
                write_row(row)
        cursor.execute(sql.SQL(
            "WITH inserted AS (INSERT INTO {table} ({columns}) SELECT {columns} FROM {staging} "
            "ON CONFLICT ({pk}) DO NOTHING RETURNING {render}, {event_type}, {share} IS NOT NULL AS has_share, "
            "{traffic}) "
            "SELECT {render}, {event_type}, has_share, {traffic}, count(*) FROM inserted GROUP BY 1, 2, 3, 4"
        ).format(table=table, columns=columns, staging=staging, pk=pk, render=render, event_type=event_type,
                 share=share, traffic=traffic).as_string(raw.connection))
        return {(render_id, kind, has_share, traffic_class): count
                for render_id, kind, has_share, traffic_class, count in cursor.fetchall()}


def _insert_new_events_values(rows: list[tuple]) -> dict[tuple, int]:
    import uuid
    from collections import Counter

    quote = connection.ops.quote_name
    adapt_datetime = connection.ops.adapt_datetimefield_value
    meta = EngagementEvent._meta
    columns = ", ".join(quote(name) for name in _backfill_columns())
    returning = ", ".join(quote(meta.get_field(name).column) for name in ("render", "event_type", "share",
                                                                           "traffic"))
    row_placeholder = "(" + ", ".join(["%s"] * len(BACKFILL_COLUMNS)) + ")"
    inserted: Counter = Counter()
    with connection.cursor() as cursor:
        for start in range(0, len(rows), SQLITE_INSERT_CHUNK_ROWS):
            chunk = rows[start:start + SQLITE_INSERT_CHUNK_ROWS]
            params = []
            for (event_id, project_id, render_id, share_id, kind, actor, ip, agent, metadata, at, *classed) in chunk:
                params += [_hex(event_id), _hex(project_id), _hex(render_id), share_id and _hex(share_id), kind,
                           actor, ip, agent, metadata, adapt_datetime(at), *classed]
            cursor.execute(
                f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {', '.join([row_placeholder] * len(chunk))} "
                f"ON CONFLICT ({quote(meta.pk.column)}) DO NOTHING RETURNING {returning}",
                params,
            )
            for render_id, kind, share_id, traffic in cursor.fetchall():
                inserted[(uuid.UUID(render_id), kind, share_id is not None, traffic)] += 1
    return dict(inserted)


def _hex(canonical: str) -> str:
    """A UUID's canonical text as SQLite stores it (32 hex characters)."""
    return canonical.replace("-", "")




def report_in_one_statement(*, share_id, visit_id, pages: dict[int, int], at, last_page: int, grace_ms: int,
                            read_ms: int) -> tuple[int, list[int]] | None:
    """PostgreSQL: a reading report in ONE statement (the portable path is renders.visits.activity_record's
    transaction, the same steps): lock the share's visit, credit {page: ms} up to its wall-clock time since it
    started plus `grace_ms` (pages in order, as `credit_within`), add to its pages, to the render's per-page
    figures (a page's visit counted when it passes `read_ms`) and totals, and update the visit.

    Returns (credited ms, the pages that passed `read_ms`), or None when the share has no such visit.
    """
    visits, visit_pages = Visit._meta.db_table, VisitPage._meta.db_table
    readings, totals = PageReading._meta.db_table, VisitTotals._meta.db_table
    rows = sorted(pages.items())
    asked = ", ".join(["(%s::integer, %s::bigint)"] * len(rows)) if rows else "(NULL::integer, NULL::bigint)"
    sql = (
        f"WITH v AS (SELECT id, project_id, render_id, traffic, GREATEST(0, "
        f"(EXTRACT(EPOCH FROM (%s::timestamptz - started_at)) * 1000)::bigint + %s - duration_ms) AS allowed "
        f"FROM {visits} WHERE id = %s AND share_id = %s FOR UPDATE), "
        f"asked (page, ms) AS (VALUES {asked}), "
        f"credited AS (SELECT a.page, LEAST(a.ms, GREATEST(0, v.allowed - COALESCE(SUM(a.ms) OVER (ORDER BY a.page "
        f"ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)))::bigint AS ms FROM asked a CROSS JOIN v "
        f"WHERE a.page IS NOT NULL), "
        f"added AS (INSERT INTO {visit_pages} (project_id, render_id, visit_id, page, ms) "
        f"SELECT v.project_id, v.render_id, v.id, c.page, c.ms FROM credited c CROSS JOIN v WHERE c.ms > 0 "
        f"ORDER BY c.page ON CONFLICT (project_id, visit_id, page) DO UPDATE SET ms = {visit_pages}.ms + excluded.ms "
        f"RETURNING page, ms AS after), "
        f"counted AS (SELECT c.page, c.ms, (a.after - c.ms < %s AND a.after >= %s) AS passed "
        f"FROM added a JOIN credited c ON c.page = a.page), "
        f"per_page AS (INSERT INTO {readings} (project_id, render_id, traffic, page, total_ms, visits) "
        f"SELECT v.project_id, v.render_id, v.traffic, r.page, r.ms, r.passed::integer FROM counted r CROSS JOIN v "
        f"ORDER BY r.page ON CONFLICT (project_id, render_id, traffic, page) DO UPDATE SET "
        f"total_ms = {readings}.total_ms + excluded.total_ms, visits = {readings}.visits + excluded.visits), "
        f"sums AS (SELECT COALESCE(SUM(ms), 0)::bigint AS total, COUNT(*) FILTER (WHERE passed) AS passed, "
        f"COUNT(*) FILTER (WHERE passed AND page = %s) AS finished FROM counted), "
        f"in_all AS (INSERT INTO {totals} (project_id, render_id, traffic, visits, duration_ms, completed) "
        f"SELECT v.project_id, v.render_id, v.traffic, 0, s.total, s.finished FROM v CROSS JOIN sums s "
        f"WHERE s.total > 0 ON CONFLICT (project_id, render_id, traffic) DO UPDATE SET "
        f"duration_ms = {totals}.duration_ms + excluded.duration_ms, "
        f"completed = {totals}.completed + excluded.completed), "
        f"moved AS (UPDATE {visits} SET duration_ms = {visits}.duration_ms + s.total, "
        f"pages_viewed = {visits}.pages_viewed + s.passed, "
        f"last_activity_at = GREATEST({visits}.last_activity_at, %s::timestamptz) "
        f"FROM sums s WHERE {visits}.id = (SELECT id FROM v)) "
        f"SELECT (SELECT COUNT(*) FROM v), s.total, "
        f"(SELECT COALESCE(array_agg(page ORDER BY page), '{{}}') FROM counted WHERE passed) FROM sums s"
    )
    params = [at, grace_ms, visit_id, share_id]
    for page, ms in rows:
        params += [page, ms]
    params += [read_ms, read_ms, last_page, at]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found, total, passed = cursor.fetchone()
    if not found:
        return None
    return int(total), list(passed)


# Retention: deleting what a plan no longer keeps -------------------------------------------------------

def events_delete_before(*, project_id, cutoff, limit: int) -> list[tuple]:
    """Delete up to `limit` of the project's render events recorded before `cutoff`, in one statement, and
    return (render id, event type, shared, traffic) of each: what they had added to the counters."""
    table = EngagementEvent._meta.db_table
    sql = (
        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE project_id = %s AND created_at < %s "
        f"LIMIT %s) AND created_at < %s RETURNING render_id, event_type, share_id, traffic"
    )
    at = connection.ops.adapt_datetimefield_value(cutoff)
    with connection.cursor() as cursor:
        cursor.execute(sql, [_uuid_param(project_id), at, limit, at])
        return [(_as_uuid(render_id), event_type, share_id is not None, traffic)
                for render_id, event_type, share_id, traffic in cursor.fetchall()]


def partition_counted_events(partition: str) -> list[tuple]:
    """(project id, render id, event type, shared, traffic, events) over one partition of the render events:
    what its rows added to the counters (PostgreSQL; the partition is about to be dropped)."""
    sql = (
        f"SELECT project_id, render_id, event_type, share_id IS NOT NULL, traffic, count(*) "
        f"FROM {connection.ops.quote_name(partition)} GROUP BY 1, 2, 3, 4, 5"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def dedupe_marks_delete_before(*, project_id, cutoff) -> int:
    """Delete the project's dedupe marks last claimed before `cutoff` (far past the dedupe window: no event can
    be a duplicate of them any more)."""
    return DedupeMark.objects.filter(project_id=project_id, last_recorded_at__lt=cutoff).delete()[0]
