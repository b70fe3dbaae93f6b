"""The report side's database module: every SQL statement of `reports`, PostgreSQL and portable side by side.

No other module of the app writes SQL or asks `connection.vendor`. The statements that count events
(ingestion, the deferred recount, `rebuild_rollups`, the first-touch ledger, the report read) are
generated from `reports.rollups.definition`: its grains become a grain expansion, its figures the
aggregates and the rollup columns, its dimensions the key columns. Names are quoted by Django
(`connection.ops.quote_name`), the definition's constants written as SQL literals by `_literal`;
statements are built from fragments, never cut out of one another. Every statement goes through a
Django cursor (so query capture and execute wrappers see it) inside Django's transactions.

Writes are `INSERT ... ON CONFLICT` with `RETURNING`, the same semantics on both databases. Rows go
in as one unnested array per column on PostgreSQL (a short, cached statement whatever the batch
size), as multi-row VALUES on SQLite. Rows are sorted by their unique key first, so concurrent
transactions take row locks in one order and cannot deadlock each other.
"""

import itertools
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from typing import TypeVar

import psycopg
from django.db import DEFAULT_DB_ALIAS, ProgrammingError, connection, connections, transaction

from engagement_platform.db import partitions
from engagement_platform.ids import new_id
from reports.models import (
    Channel,
    DailyFirstTouch,
    DailyRollup,
    FirstTouchesPending,
    Message,
    MessageEvent,
    MessageEventKey,
    PendingRecount,
    PeriodFirstTouch,
    PeriodRollup,
    SliceRollup,
)
from reports.rollups import definition as rule

# Bind parameters per statement: under SQLite's limit (32766) and PostgreSQL's (65535).
MAX_PARAMS_PER_STATEMENT = 8000
LOOKUP_CHUNK = 1000  # ids per `IN (...)` lookup
# Advisory lock namespace (first key of PostgreSQL's two-key form) guarding a project's rollups.
ROLLUP_LOCK_NAMESPACE = 0x52504F4C  # "RPOL"
RUN_LOCK_NAMESPACE = 0x52554E53  # "RUNS"


# Quoting and parameters -----------------------------------------------------------------------


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _table(model) -> str:
    return _name(model._meta.db_table)


# A report statement names a few hundred columns, and each `connection.ops` goes through the connection
# handler's thread-local lookup: the quoted names are kept (both backends quote alike, and a process
# talks to one kind of database).
@lru_cache(maxsize=1024)
def _name(column: str) -> str:
    return connection.ops.quote_name(column)


def _literal(value: str) -> str:
    """A constant of the definition (an event type, a grain name) as an SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def _literals(values: Iterable[str]) -> str:
    return ", ".join(_literal(value) for value in values)


def _bytewise(expression: str) -> str:
    """PostgreSQL: the ledger's and rollups' text keys compare bytewise (migration 0005): sort the same way."""
    return f'{expression} COLLATE "C"' if _postgres() else expression


class _Params:
    """Python values as the current backend stores them, resolved once per statement, not per value."""

    def __init__(self):
        self.postgres = _postgres()
        self.datetime = _same if self.postgres else connection.ops.adapt_datetimefield_value
        self.date = _same if self.postgres else connection.ops.adapt_datefield_value

    def uuid(self, value: uuid.UUID | None):
        """Native on PostgreSQL, 32 hex characters on SQLite."""
        return value if value is None or self.postgres else value.hex


def _same(value):
    return value


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _chunks(rows: Sequence, columns: int):
    size = max(1, MAX_PARAMS_PER_STATEMENT // columns)
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _insert(table: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence], suffix: str,
            returning: bool = False) -> list[tuple]:
    """INSERT `rows` (in order) and return what `suffix`'s RETURNING yields when `returning`.

    `columns` are (name, PostgreSQL type). PostgreSQL receives one array per column and unnests
    them; SQLite receives multi-row VALUES in chunks under its bind-parameter limit.
    """
    if not rows:
        return []
    returned: list[tuple] = []
    names = ", ".join(_name(name) for name, _type in columns)
    with connection.cursor() as cursor:
        if _postgres():
            arrays = ", ".join(f"%s::{pg_type}[]" for _name_, pg_type in columns)
            aliases = ", ".join(f"c{i}" for i in range(len(columns)))
            cursor.execute(
                f"INSERT INTO {table} ({names}) SELECT {aliases} FROM unnest({arrays}) "
                f"WITH ORDINALITY AS batch({aliases}, position) ORDER BY position {suffix}",
                [list(column) for column in zip(*rows, strict=True)],
            )
            return cursor.fetchall() if returning else []
        placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
        for chunk in _chunks(rows, len(columns)):
            cursor.execute(
                f"INSERT INTO {table} ({names}) VALUES {', '.join([placeholder] * len(chunk))} {suffix}",
                [value for row in chunk for value in row],
            )
            if returning:
                returned.extend(cursor.fetchall())
    return returned


@contextmanager
def _server_binding_cursor():
    """A Django cursor (its wrapper: query capture, execute wrappers, error translation) that binds server-side.

    The psycopg connection is the one behind Django's cursor, so statements run inside Django's
    transaction. Server-side binding sends arrays in binary, dumped by psycopg's C code: Django's
    client-side binding quotes every array element in Python, which costs more than the inserts.
    """
    with connection.cursor() as django_cursor:
        raw = psycopg.Cursor(django_cursor.cursor.connection)
        wrapped = connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)
        with wrapped as cursor:
            yield cursor


@contextmanager
def _numbered_statement_cursor(using: str = DEFAULT_DB_ALIAS):
    """A Django cursor for a statement given in two forms: (`%s` form, params) -> runs it.

    psycopg converts `%s` placeholders on every execution of a statement longer than 4096 bytes or with
    more than 50 parameters (its conversion cache skips those): for the report statement with edges
    that costs more than running it. Its `$n` form (`_numbered`, made once per statement shape) runs on
    a raw cursor, still through Django's cursor wrapper (execute wrappers, error translation). When
    Django logs queries (DEBUG, query capture) the `%s` form runs instead, which its log can render.
    """
    database = connections[using]
    with database.cursor() as django_cursor:
        if database.queries_logged:
            yield lambda statement, params: django_cursor.execute(statement, params) or django_cursor
            return
        raw = psycopg.RawCursor(django_cursor.cursor.connection)
        with database.make_cursor(raw) as cursor:
            yield lambda statement, params: cursor.execute(_numbered(statement), params) or cursor


@lru_cache(maxsize=64)
def _numbered(statement: str) -> str:
    """`statement` with its `%s` placeholders numbered `$1`, `$2`, ... in order (and `%%` read as `%`)."""
    position = itertools.count(1)
    return "%".join(_PLACEHOLDER.sub(lambda _match: f"${next(position)}", piece) for piece in statement.split("%%"))


_PLACEHOLDER = re.compile(r"%s")


# The rule as SQL: facts, grain expansion, figures -------------------------------------------
#
# An event's facts come from `e` (the event), `m` (its message) and `c` (the message's channel).

_SOURCE_ALIASES = {"event": ("e", MessageEvent), "message": ("m", Message), "channel": ("c", Channel)}


def _source(path: str) -> str:
    """The SQL value of a stored fact ("message.from_domain") as the rollups keep it: text, a UUID canonical."""
    alias, model = _SOURCE_ALIASES[path.split(".")[0]]
    field_name = path.split(".")[1]
    expression = f"{alias}.{_name(model._meta.get_field(field_name).column)}"
    if model._meta.get_field(field_name).get_internal_type() != "UUIDField":
        return expression
    if _postgres():
        return f"{expression}::text"
    # SQLite stores UUIDs as 32 hex digits.
    parts = [f"substr({expression}, {start}, {length})" for start, length in ((1, 8), (9, 4), (13, 4), (17, 4),
                                                                              (21, 12))]
    return "lower(" + " || '-' || ".join(parts) + ")"


def _dimension_source(dimension: rule.Dimension) -> str:
    return _source(dimension.source)


def _recipient() -> str:
    return _source(rule.RECIPIENT_SOURCE)


def _utc_day(column: str) -> str:
    return f"({column} AT TIME ZONE 'UTC')::date" if _postgres() else f"date({column})"


def _utc_slice(column: str) -> str:
    """The slice of its UTC day a moment falls in (minutes since midnight // SLICE_MINUTES)."""
    if _postgres():
        minutes = (f"(extract(hour FROM {column} AT TIME ZONE 'UTC') * 60 "
                   f"+ extract(minute FROM {column} AT TIME ZONE 'UTC'))::int")
    else:  # stored as "YYYY-MM-DD HH:MM:SS[.ffffff]" in UTC
        minutes = f"(CAST(substr({column}, 12, 2) AS INTEGER) * 60 + CAST(substr({column}, 15, 2) AS INTEGER))"
    return f"({minutes} / {rule.SLICE_MINUTES})"


def _facts_join(events: str | None = None) -> str:
    """The events (`events`: their FROM item as `e`; the table by default) joined to their facts."""
    return (f"FROM {events or _table(MessageEvent) + ' e'} JOIN {_table(Message)} m ON m.id = e.message_id "
            f"JOIN {_table(Channel)} c ON c.id = m.channel_id")


def _facts_sql(where: str) -> str:
    """The facts of the events matching `where`: day, type, traffic, recipient and one column per dimension."""
    dimensions = ", ".join(f"{_dimension_source(d)} AS {_name(d.column)}" for d in rule.DIMENSIONS)
    return (f"SELECT {_utc_day('e.occurred_at')} AS day, {_utc_slice('e.occurred_at')} AS slice, e.type, "
            f"e.traffic, e.occurred_at, {_recipient()} AS recipient, {dimensions} {_facts_join()} WHERE {where}")


def _grain_expansion(alias: str) -> tuple[str, list[str]]:
    """A FROM fragment repeating each row of `alias` once per grain, and the grain key's expressions.

    The key is `g.grain` and, per dimension, the row's value where the grain splits by it, else "".
    """
    if _postgres():
        rows = ", ".join(
            "(" + ", ".join([_literal(grain.name), *(f"{alias}.{_name(d.column)}" if d in grain.splits else "''"
                                                     for d in rule.DIMENSIONS)]) + ")"
            for grain in rule.GRAINS)
        columns = ", ".join(_name(column) for column in rule.KEY_COLUMNS)
        return (f"CROSS JOIN LATERAL (VALUES {rows}) AS g({columns})",
                [f"g.{_name(column)}" for column in rule.KEY_COLUMNS])
    # SQLite has no LATERAL: a constant table of the grains with one split flag per dimension.
    rows = " UNION ALL ".join(
        "SELECT " + ", ".join([f"{_literal(grain.name)} AS grain",
                               *(f"{int(d in grain.splits)} AS {_name('by_' + d.column)}" for d in rule.DIMENSIONS)])
        for grain in rule.GRAINS)
    return (f"CROSS JOIN ({rows}) AS g",
            ["g.grain", *(f"CASE WHEN g.{_name('by_' + d.column)} = 1 THEN {alias}.{_name(d.column)} ELSE '' END"
                          for d in rule.DIMENSIONS)])


def _matches(figure: rule.Figure, alias: str) -> str:
    """Whether an event (its facts under `alias`, "" for bare columns) adds to `figure`: its type, and its class."""
    condition = f"{alias}type IN ({_literals(figure.event_types)})"
    return f"{condition} AND {alias}traffic = {_literal(figure.traffic)}" if figure.traffic else condition


def _counted(figure: rule.Figure, alias: str = "") -> str:
    return f"count(*) FILTER (WHERE {_matches(figure, alias)})"


def _distinct(figure: rule.Figure, alias: str, recipient_expression: str) -> str:
    return f"count(DISTINCT {recipient_expression}) FILTER (WHERE {_matches(figure, alias)})"


def _touching(alias: str) -> str:
    """Whether an event (facts under `alias`) is of a type the ledger records."""
    return f"{alias}.type IN ({_literals(rule.TOUCH_TYPES)})"


def _last_touches(alias: str) -> str:
    """The ledger's time columns of the events (facts under `alias`) grouped into one ledger row: their last
    touch, and per traffic class their last of the class (NULL when none is of it)."""
    return ", ".join(
        f"max({alias}.occurred_at)"
        + (f" FILTER (WHERE {alias}.traffic = {_literal(traffic)})" if traffic else "")
        + f" AS {_name(rule.last_column(traffic))}"
        for traffic in ("", *rule.TRAFFIC_CLASSES))


# The ledgers' note that a write created the row: PostgreSQL returns no `xmax` from a partitioned table.
CREATED_NOTE = "new_row"


def _new_on_insert(alias: str) -> str:
    """The notes of a ledger row as an insert creates it: created, and set for each class its events have."""
    return ", ".join([*(f"(count(*) FILTER (WHERE {alias}.traffic = {_literal(traffic)}) > 0) "
                        f"AS {_name(rule.new_column(traffic))}" for traffic in rule.TRAFFIC_CLASSES),
                      f"true AS {_name(CREATED_NOTE)}"])


def _added_by_write(figure: rule.Figure) -> str:
    """Over a ledger write's RETURNING rows (`type`, `created`, the class notes): whether the row adds one to
    the distinct `figure`: the all-traffic figure when the write created it, a class's when it noted the class."""
    added = _name(rule.new_column(figure.traffic)) if figure.traffic else "created"
    return f"type = {_literal(figure.touch_type)} AND {added}"


def _ledger_count(figure: rule.Figure, since: str | None = None) -> str:
    """Over ledger rows: the distinct `figure` (recipients with a touch of its type and class, at or after
    `since` when given: an SQL placeholder or value)."""
    last = _name(figure.last_column)
    touched = f"{last} >= {since}" if since else f"{last} IS NOT NULL"
    return f"count(*) FILTER (WHERE type = {_literal(figure.touch_type)} AND {touched})"


def _figures_select(per_figure) -> str:
    """One expression per figure, in the definition's order, each named by its column."""
    return ", ".join(f"{per_figure(figure)} AS {_name(figure.column)}" for figure in rule.FIGURES)


def _key_list(prefix: str = "") -> str:
    return ", ".join(f"{prefix}{_name(column)}" for column in ("day", *rule.KEY_COLUMNS))


def _ordinals(first: int, count: int) -> str:
    return ", ".join(str(position) for position in range(first, first + count))


TOUCH_KEY_COLUMNS = ("project_id", "day", "type", *rule.KEY_COLUMNS, "recipient")


def _touch_columns(*, notes: bool = False) -> str:
    """The ledger's columns as its writers list them: its key, then the last touch times (and the notes)."""
    return ", ".join(_name(column) for column in (*TOUCH_KEY_COLUMNS, *rule.LAST_COLUMNS,
                                                   *((*rule.NEW_COLUMNS, CREATED_NOTE) if notes else ())))


def _rollup_columns() -> str:
    return ", ".join(_name(column) for column in ("project_id", "day", *rule.KEY_COLUMNS, *rule.FIGURE_COLUMNS))


def _slice_columns() -> str:
    return ", ".join(_name(column) for column in ("project_id", "day", "slice", *rule.KEY_COLUMNS,
                                                   *(figure.column for figure in rule.COUNTED)))


def _rollup_conflict() -> str:
    return f"({_name('project_id')}, {_key_list()})"


def _slice_conflict() -> str:
    return f"({_name('project_id')}, {', '.join(_name(c) for c in ('day', 'slice', *rule.KEY_COLUMNS))})"


def _touch_conflict() -> str:
    return f"({', '.join(_name(column) for column in TOUCH_KEY_COLUMNS)})"


def _later_touch(table: str, *, notes: bool = False) -> str:
    """The ledger upsert's update: a later touch of a recipient already counted moves its last times (a first
    touch of a class sets that class's). With `notes`, each class note tells whether this write set the class's
    first time (SET expressions read the row as it was). Rows the write would not change are left unwritten."""
    def later(column: str) -> str:
        old, new = f"{table}.{_name(column)}", f"excluded.{_name(column)}"
        return f"CASE WHEN {new} > {old} OR {old} IS NULL THEN {new} ELSE {old} END"

    sets = [f"{_name(column)} = {later(column)}" for column in rule.LAST_COLUMNS]
    if notes:
        sets += [f"{_name(rule.new_column(traffic))} = ({table}.{_name(rule.last_column(traffic))} IS NULL "
                 f"AND excluded.{_name(rule.last_column(traffic))} IS NOT NULL)" for traffic in rule.TRAFFIC_CLASSES]
        sets.append(f"{_name(CREATED_NOTE)} = false")
    moved = " OR ".join(f"excluded.{_name(c)} > {table}.{_name(c)} OR ({table}.{_name(c)} IS NULL "
                        f"AND excluded.{_name(c)} IS NOT NULL)" for c in rule.LAST_COLUMNS)
    return f"DO UPDATE SET {', '.join(sets)} WHERE {moved}"


def _counted_sql(source: str, *, by_slice: bool = False) -> str:
    """The counted figures (day, [slice,] grain key, one column per counted figure) of the facts in `source`.

    `source` is a FROM item with the columns of `_facts_sql`. Counts are aggregated per day (and
    slice) and dimension values first, then expanded to the grains, so the expansion sees few rows.
    """
    period = ("day", "slice") if by_slice else ("day",)
    width = len(period) + len(rule.KEY_COLUMNS)
    dimensions = ", ".join(_name(d.column) for d in rule.DIMENSIONS)
    expand_x, key_x = _grain_expansion("x")
    counted = ", ".join(f"{_counted(f)} AS {_name(f.column)}" for f in rule.COUNTED)
    summed = ", ".join(f"CAST(sum(x.{_name(f.column)}) AS BIGINT) AS {_name(f.column)}" for f in rule.COUNTED)
    key_aliases_x = ", ".join(f"{expr} AS {_name(column)}" for expr, column in zip(key_x, rule.KEY_COLUMNS,
                                                                                    strict=True))
    periods = ", ".join(period)
    return (f"SELECT {', '.join(f'x.{name} AS {name}' for name in period)}, {key_aliases_x}, {summed} FROM ("
            f"SELECT {periods}, {dimensions}, {counted} FROM {source} GROUP BY {periods}, {dimensions}) AS x "
            f"{expand_x} GROUP BY {_ordinals(1, width)}")


def _expected_slices_sql(where: str) -> str:
    """The slice rollup rows (day, slice, grain key, counted figures) of the events matching `where`."""
    return _counted_sql(f"({_facts_sql(where)}) AS facts", by_slice=True)


def _expected_rollups_sql(where: str) -> str:
    """The rollup rows (day, grain key, figures) that the events matching `where` give, counted afresh.

    Counts are aggregated before the grain expansion; distinct recipients after it, over the opens
    and clicks only, so the expensive part only sees the events the distinct figures count.
    """
    width = 1 + len(rule.KEY_COLUMNS)
    expand_b, key_b = _grain_expansion("b")
    join = " AND ".join(f"u.{_name(column)} = n.{_name(column)}" for column in ("day", *rule.KEY_COLUMNS))
    materialized = "MATERIALIZED " if _postgres() else ""
    distinct = ", ".join(f"{_distinct(f, 'b.', 'b.recipient')} AS {_name(f.column)}" for f in rule.DISTINCT)
    key_aliases_b = ", ".join(f"{expr} AS {_name(column)}" for expr, column in zip(key_b, rule.KEY_COLUMNS,
                                                                                    strict=True))
    values = _figures_select(lambda f: f"coalesce(u.{_name(f.column)}, 0)" if f.distinct else f"n.{_name(f.column)}")
    return (
        f"WITH base AS {materialized}({_facts_sql(where)}), "
        f"uniques AS (SELECT b.day AS day, {key_aliases_b}, {distinct} FROM base b {expand_b} "
        f"WHERE b.type IN ({_literals(rule.TOUCH_TYPES)}) GROUP BY {_ordinals(1, width)}), "
        f"totals AS ({_counted_sql('base')}) "
        f"SELECT n.day, {', '.join(f'n.{_name(c)}' for c in rule.KEY_COLUMNS)}, {values} FROM totals n "
        f"LEFT JOIN uniques u ON {join}"
    )


def _expected_touches_sql(where: str) -> str:
    """The first touches (day, type, grain key, recipient, last touch times) of the events matching `where`."""
    expand, key = _grain_expansion("b")
    names = ("type", *rule.KEY_COLUMNS, "recipient")
    columns = ", ".join(f"{_bytewise(expression)} AS {_name(name)}"
                        for expression, name in zip(("b.type", *key, "b.recipient"), names, strict=True))
    return (f"SELECT b.day AS day, {columns}, {_last_touches('b')} "
            f"FROM ({_facts_sql(where)}) AS b {expand} WHERE {_touching('b')} "
            f"GROUP BY {_ordinals(1, len(names) + 1)}")


def _bucket_start(group_by: str, day: str) -> str:
    """The SQL of the first day of the `group_by` bucket (day, ISO week, month) holding the date `day`."""
    if group_by == "day":
        return day
    if _postgres():
        return f"date_trunc({_literal(group_by)}, {day}::timestamp)::date"
    return f"date({day}, 'weekday 0', '-6 days')" if group_by == "week" else f"date({day}, 'start of month')"


def _period_expansion(alias: str) -> tuple[str, str]:
    """A FROM fragment repeating each row of `alias` once per period (`rule.PERIODS`), and the SQL of the
    row's period start in it (as `pg.period`, start)."""
    rows = " UNION ALL ".join(f"SELECT {_literal(period)} AS period" for period in rule.PERIODS)
    start = ("CASE pg.period " + " ".join(f"WHEN {_literal(period)} THEN {_bucket_start(period, f'{alias}.day')}"
                                          for period in rule.PERIODS) + " END")
    return f"CROSS JOIN ({rows}) AS pg", start


PERIOD_TOUCH_KEY_COLUMNS = ("project_id", "period", "start", "type", *rule.KEY_COLUMNS, "recipient")
PERIOD_ROLLUP_KEY_COLUMNS = ("project_id", "period", *rule.KEY_COLUMNS, "start")


def _expected_period_touches_sql(where: str) -> str:
    """The period ledger rows (period, start, type, grain key, recipient, last touch times) of the events
    matching `where`."""
    expand, key = _grain_expansion("b")
    periods, start = _period_expansion("b")
    names = ("period", "start", "type", *rule.KEY_COLUMNS, "recipient")
    columns = ", ".join(f"{expression} AS {_name(name)}" for expression, name in zip(
        ("pg.period", start, *(_bytewise(e) for e in ("b.type", *key, "b.recipient"))), names, strict=True))
    return (f"SELECT {columns}, {_last_touches('b')} "
            f"FROM ({_facts_sql(where)}) AS b {periods} {expand} WHERE {_touching('b')} "
            f"GROUP BY {_ordinals(1, len(names))}")


def _period_touch_columns(*, notes: bool = False) -> str:
    return ", ".join(_name(column) for column in (*PERIOD_TOUCH_KEY_COLUMNS, *rule.LAST_COLUMNS,
                                                   *((*rule.NEW_COLUMNS, CREATED_NOTE) if notes else ())))


def _period_rollup_columns() -> str:
    return ", ".join(_name(column) for column in ("project_id", "period", "start", *rule.KEY_COLUMNS,
                                                   *(f.column for f in rule.DISTINCT)))


def _period_rollup_conflict() -> str:
    return f"({', '.join(_name(column) for column in PERIOD_ROLLUP_KEY_COLUMNS)})"


def _period_touch_conflict() -> str:
    return f"({', '.join(_name(column) for column in PERIOD_TOUCH_KEY_COLUMNS)})"


def _days_where(*, listed: bool) -> str:
    """The project's events inside [start, end) and, when `listed`, on one of the UTC days `days` (PostgreSQL)."""
    where = "e.project_id = %(p)s AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s"
    return f"{where} AND {_utc_day('e.occurred_at')} = ANY(%(days)s)" if listed else where


def _days_params(project_id: uuid.UUID, span: Sequence[date], **more) -> dict:
    """`p`, `start` / `end` bounding the sorted UTC days `span` and `first_day` / `last_day` its days; `more`
    added as they are."""
    p = _Params()
    start = datetime.combine(span[0], datetime.min.time(), tzinfo=UTC)
    end = datetime.combine(span[-1], datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
    return {"p": p.uuid(project_id), "start": p.datetime(start), "end": p.datetime(end),
            "first_day": p.date(span[0]), "last_day": p.date(span[-1]), **more}


# Locks ----------------------------------------------------------------------------------------


def _lock_id(value: uuid.UUID) -> int:
    return int.from_bytes(value.bytes[-4:], "big", signed=True)


def lock_project_rollups(*, project_id: uuid.UUID, exclusive: bool) -> None:
    """Ingestion holds the shared lock, a rollup rebuild the exclusive one (PostgreSQL).

    A rebuild recomputes a day from raw events, so no batch may commit into that day while
    it runs. SQLite needs nothing: its IMMEDIATE transactions already run one at a time.
    """
    if not _postgres():
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s, %s)", [ROLLUP_LOCK_NAMESPACE, _lock_id(project_id)])


class RunLock:
    """A live run's mark: an advisory lock on its id held by an open transaction on a connection of its own.

    Not a session lock: under a pooler in transaction mode a session lock stays on whichever server
    connection took it (and an unlock may reach another one), while an open transaction keeps its
    server connection until it ends. The transaction only holds the lock (no snapshot is kept between
    statements at READ COMMITTED, so it holds back no vacuum); it ends with `release`, or when the
    process dies and its connection closes, which frees the lock for the next run to adopt the marks.
    """

    def __init__(self, run: uuid.UUID):
        self.holder = connections.create_connection(DEFAULT_DB_ALIAS)
        self.holder.set_autocommit(False)
        with self.holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [RUN_LOCK_NAMESPACE, _lock_id(run)])

    def release(self) -> None:
        try:
            self.holder.rollback()
        finally:
            self.holder.close()


def hold_run_lock(run: uuid.UUID) -> RunLock:
    """Take the run's lock until `RunLock.release` (or the process's end)."""
    return RunLock(run)


# Ingestion ------------------------------------------------------------------------------------
#
# A batch arrives as `messages`: (channel row id, client message id, from address, from domain,
# lowercased recipient), one per client message id (existing ones are left as they are), and
# `events`: (client event id, type, client message id, occurred_at, url, user agent, traffic, machine
# reason, traffic given, source IP, request purpose), ids unique within the batch. The caller holds the
# project's shared rollup lock in the same transaction.


def ingest_batch(*, project_id: uuid.UUID, received_at, messages: Sequence[tuple], events: Sequence[tuple],
                 wait_for_flush: bool = True, into_rollups: bool = True) -> int:
    """Store a batch; returns how many events were new (the accepted ones).

    `into_rollups=False` stores the events only: the caller has marked their days for a recount
    (`mark_days_pending`) and recounts them later (`recount_days`). `wait_for_flush=False` lets the
    transaction's commit return before its WAL reaches the disk (PostgreSQL bulk loads; see
    `flush_commits`).
    """
    if not events:
        return 0
    if _postgres():
        return _ingest_set_based(project_id=project_id, received_at=received_at, messages=messages, events=events,
                                 wait_for_flush=wait_for_flush, into_rollups=into_rollups)
    return _ingest_portable(project_id=project_id, received_at=received_at, messages=messages, events=events,
                            into_rollups=into_rollups)


# PostgreSQL: a batch is two statements whatever its size. The first creates the batch's new
# messages; the second inserts the events and, from the rows that insert returns (the accepted
# events only), records the first touches and adds one increment per rollup row, all in
# data-modifying CTEs. Each write is sorted by its unique key and the writes run in a fixed order
# (messages, events, first touches, rollups), so concurrent batches take row locks in one global
# order and cannot deadlock. The statements are separate because the second must see messages
# that a concurrent batch committed while the first waited on them.

# UUIDv7 made by PostgreSQL (RFC 9562, as `engagement_platform.ids.new_id` makes them), one per row
# of a statement: the millisecond clock in the first 48 bits, the version 7, then 54 random bits drawn
# once per statement (from one v4 UUID, whose variant bits are kept) and the row's position as a
# 20-bit counter (RFC 9562 section 6.2, method 1).
MAX_ROWS_PER_STATEMENT = (1 << 20) - 1
_UUID7_PREFIX_SQL = ("(SELECT lpad(to_hex(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') "
                     "|| '7' || substr(r, 14, 3) || substr(r, 17, 11) FROM replace(gen_random_uuid()::text, '-', '') "
                     "AS r)")


def uuid7_sql(position: str) -> str:
    """A UUIDv7 for the row at `position` (1 .. MAX_ROWS_PER_STATEMENT) of the statement."""
    return f"({_UUID7_PREFIX_SQL} || lpad(to_hex({position}), 5, '0'))::uuid"


def _check_statement_rows(count: int) -> None:
    if count > MAX_ROWS_PER_STATEMENT:
        raise ValueError(f"at most {MAX_ROWS_PER_STATEMENT} rows per statement, not {count}")


@cache
def _messages_statement() -> str:
    # Text keys sort bytewise ("C") for the lock order: any order shared by every writer will do, and
    # this one is the cheapest to sort and equals Python's code-point order used by the other writers.
    return (
        f"INSERT INTO {_table(Message)} (id, project_id, channel_id, client_message_id, from_address, from_domain, "
        f"recipient, created_at) "
        f"SELECT {uuid7_sql('m.position')}, %(p)b, m.channel_id, m.client_message_id, m.from_address, m.from_domain, "
        f"m.recipient, %(at)b "
        f"FROM unnest(%(channel)b::uuid[], %(message)b::text[], %(sender)b::text[], %(domain)b::text[], "
        f"%(recipient)b::text[]) WITH ORDINALITY "
        f"AS m(channel_id, client_message_id, from_address, from_domain, recipient, position) "
        f'ORDER BY m.client_message_id COLLATE "C" ON CONFLICT (project_id, client_message_id) DO NOTHING'
    )


def _events_insert_ctes(returning: str) -> str:
    """The batch's events inserted idempotently (the CTE `inserted`, RETURNING `returning` of each accepted one).

    The events are partitioned by month, so their idempotency key lives in MessageEventKey: the keys go in
    first (`keyed`: only the new ones come back, a key another transaction holds is waited for), and an event
    is stored only when its key was new. Batches hold no duplicate ids (removed before). Each event finds its
    stored message through the unique index: LATERAL with LIMIT 1 is not flattened into a join, so it stays
    one index lookup per event however large the project.
    """
    return (
        f"keyed AS (INSERT INTO {_table(MessageEventKey)} (project_id, client_event_id, occurred_at) "
        f"SELECT %(p)b, k.client_event_id, k.occurred_at FROM unnest(%(event)b::text[], %(occurred)b::timestamptz[]) "
        f'AS k(client_event_id, occurred_at) ORDER BY k.client_event_id COLLATE "C" ON CONFLICT DO NOTHING '
        f"RETURNING client_event_id), "
        f"inserted AS (INSERT INTO {_table(MessageEvent)} (id, project_id, message_id, client_event_id, type, "
        f"occurred_at, url, user_agent, traffic, machine_reason, traffic_given, source_ip, request_purpose, "
        f"received_at) "
        f"SELECT {uuid7_sql('b.position')}, %(p)b, m.id, b.client_event_id, b.type, b.occurred_at, b.url, "
        f"b.user_agent, b.traffic, b.machine_reason, b.traffic_given, b.source_ip, b.request_purpose, %(at)b "
        f"FROM unnest(%(event)b::text[], %(type)b::text[], %(event_message)b::text[], %(occurred)b::timestamptz[], "
        f"%(url)b::text[], %(agent)b::text[], %(traffic)b::text[], %(reason)b::text[], %(given)b::boolean[], "
        f"%(source_ip)b::inet[], %(purpose)b::text[]) WITH ORDINALITY "
        f"AS b(client_event_id, type, client_message_id, occurred_at, url, user_agent, traffic, machine_reason, "
        f"traffic_given, source_ip, request_purpose, position) "
        f"JOIN keyed ON keyed.client_event_id = b.client_event_id "
        f"CROSS JOIN LATERAL (SELECT id FROM {_table(Message)} WHERE project_id = %(p)b "
        f"AND client_message_id = b.client_message_id LIMIT 1) AS m "
        f"RETURNING {returning})"
    )


@cache
def _events_only_statement() -> str:
    """The events alone: a bulk load recounts its days' rollups afterwards."""
    return f"WITH {_events_insert_ctes('1')} SELECT count(*) FROM inserted"


@cache
def _events_counted_statement() -> str:
    """The events, their first touches and their rollup increments: one statement, derived from the rule."""
    expand, key = _grain_expansion("f")
    keys = ", ".join(_name(column) for column in rule.KEY_COLUMNS)
    width = 1 + len(rule.KEY_COLUMNS)
    dimensions = ", ".join(f"{_dimension_source(d)} AS {_name(d.column)}" for d in rule.DIMENSIONS)
    key_aliases = ", ".join(f"{expr} AS {_name(column)}" for expr, column in zip(key, rule.KEY_COLUMNS, strict=True))
    counted = _figures_select(lambda f: "0" if f.distinct else _counted(f))
    uniques = _figures_select(lambda f: f"count(*) FILTER (WHERE {_added_by_write(f)})" if f.distinct else "0")
    sums = ", ".join(f"sum({_name(column)})" for column in rule.FIGURE_COLUMNS)
    rollups, slices, touches = _table(DailyRollup), _table(SliceRollup), _table(DailyFirstTouch)
    period_touches, period_rollups = _table(PeriodFirstTouch), _table(PeriodRollup)
    periods, period_start = _period_expansion("facts")
    period_touch_width = 3 + len(rule.KEY_COLUMNS) + 1  # period, start, type, grain key, recipient
    period_key_width = 2 + len(rule.KEY_COLUMNS)
    period_updates = ", ".join(f"{_name(f.column)} = {period_rollups}.{_name(f.column)} + excluded.{_name(f.column)}"
                               for f in rule.DISTINCT)
    period_uniques = ", ".join(f"count(*) FILTER (WHERE {_added_by_write(f)})" for f in rule.DISTINCT)
    updates = ", ".join(f"{_name(column)} = {rollups}.{_name(column)} + excluded.{_name(column)}"
                        for column in rule.FIGURE_COLUMNS)
    slice_updates = ", ".join(f"{_name(f.column)} = {slices}.{_name(f.column)} + excluded.{_name(f.column)}"
                              for f in rule.COUNTED)
    slice_counts = ", ".join(f"{_counted(f)}" for f in rule.COUNTED)
    bytewise_keys = ", ".join(_bytewise(_name(k)) for k in rule.KEY_COLUMNS)
    touch_key = ", ".join(["day", *(_bytewise(column) for column in ("facts.type", *(_name(c) for c in
                                                                                    rule.KEY_COLUMNS), "recipient"))])
    notes = ", ".join(_name(column) for column in rule.NEW_COLUMNS)
    adding = " OR ".join(["created", *(_name(column) for column in rule.NEW_COLUMNS)])  # writes that add one
    return (
        f"WITH {_events_insert_ctes('message_id, type, traffic, occurred_at')}, "
        # The accepted events fetch their message's facts by primary key: the stored message's count.
        f"facts AS MATERIALIZED ("
        f"SELECT (i.occurred_at AT TIME ZONE 'UTC')::date AS day, {_utc_slice('i.occurred_at')} AS slice, i.type, "
        f"i.traffic, i.occurred_at, f.recipient, {key_aliases} "
        f"FROM inserted i CROSS JOIN LATERAL (SELECT {_recipient()} AS recipient, {dimensions} "
        f"FROM {_table(Message)} m JOIN {_table(Channel)} c ON c.id = m.channel_id WHERE m.id = i.message_id "
        f"LIMIT 1) AS f {expand}), "
        # A new ledger row is a new distinct recipient (its created note marks the rows the insert made), and
        # a class note a new distinct recipient of the class; a later touch of a recipient already
        # counted only moves its last times.
        f"touched AS ("
        f"INSERT INTO {touches} AS t ({_touch_columns(notes=True)}) "
        f"SELECT %(p)b::uuid, {touch_key}, {_last_touches('facts')}, {_new_on_insert('facts')} "
        f"FROM facts WHERE {_touching('facts')} GROUP BY {_ordinals(2, width + 2)} "
        f"ORDER BY {_ordinals(2, width + 2)} "
        f"ON CONFLICT {_touch_conflict()} {_later_touch('t', notes=True)} "
        f"RETURNING day, type, {keys}, {_name(CREATED_NOTE)} AS created, {notes}), "
        f"increments AS ("
        f"SELECT day, {keys}, {counted} FROM facts GROUP BY {_ordinals(1, width)} "
        f"UNION ALL SELECT day, {keys}, {uniques} FROM touched WHERE {adding} GROUP BY {_ordinals(1, width)}), "
        f"added AS ("
        f"INSERT INTO {rollups} ({_rollup_columns()}) "
        f"SELECT %(p)b::uuid, day, {bytewise_keys}, "
        f"{sums} FROM increments GROUP BY {_ordinals(2, width)} ORDER BY {_ordinals(2, width)} "
        f"ON CONFLICT {_rollup_conflict()} DO UPDATE SET {updates} RETURNING 1), "
        f"sliced AS ("
        f"INSERT INTO {slices} ({_slice_columns()}) "
        f"SELECT %(p)b::uuid, day, slice, {bytewise_keys}, {slice_counts} FROM facts "
        f"GROUP BY {_ordinals(2, width + 1)} ORDER BY {_ordinals(2, width + 1)} "
        f"ON CONFLICT {_slice_conflict()} DO UPDATE SET {slice_updates} RETURNING 1), "
        # The same ledger and counts per ISO week and month (exact uniques of longer buckets).
        f"period_touched AS ("
        f"INSERT INTO {period_touches} AS t ({_period_touch_columns(notes=True)}) "
        f"SELECT %(p)b::uuid, pg.period, {period_start}, {touch_key.removeprefix('day, ')}, "
        f"{_last_touches('facts')}, {_new_on_insert('facts')} "
        f"FROM facts {periods} WHERE {_touching('facts')} GROUP BY {_ordinals(2, period_touch_width)} "
        f"ORDER BY {_ordinals(2, period_touch_width)} "
        f"ON CONFLICT {_period_touch_conflict()} {_later_touch('t', notes=True)} "
        f"RETURNING period, start, type, {keys}, {_name(CREATED_NOTE)} AS created, {notes}), "
        f"period_added AS ("
        f"INSERT INTO {period_rollups} ({_period_rollup_columns()}) "
        f"SELECT %(p)b::uuid, period, start, {bytewise_keys}, {period_uniques} FROM period_touched WHERE {adding} "
        f"GROUP BY {_ordinals(2, period_key_width)} ORDER BY {_ordinals(2, period_key_width)} "
        f"ON CONFLICT {_period_rollup_conflict()} DO UPDATE SET {period_updates} RETURNING 1) "
        f"SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM added), (SELECT count(*) FROM sliced), "
        f"(SELECT count(*) FROM period_added)"
    )


def _batch_params(project_id: uuid.UUID, received_at, messages: Sequence[tuple], events: Sequence[tuple]) -> tuple:
    channel, message, sender, domain, recipient = map(list, zip(*messages, strict=True))
    (event, type_, event_message, occurred, url, agent, traffic, reason, given, source_ip,
     purpose) = map(list, zip(*events, strict=True))
    common = {"p": project_id, "at": received_at}
    return ({**common, "channel": channel, "message": message, "sender": sender, "domain": domain,
             "recipient": recipient},
            {**common, "event": event, "type": type_, "event_message": event_message, "occurred": occurred,
             "url": url, "agent": agent, "traffic": traffic, "reason": reason, "given": given,
             "source_ip": source_ip, "purpose": purpose})


def _ingest_set_based(*, project_id, received_at, messages, events, wait_for_flush: bool,
                      into_rollups: bool) -> int:
    _check_statement_rows(len(events))
    message_params, event_params = _batch_params(project_id, received_at, messages, events)
    with _server_binding_cursor() as cursor:
        if not wait_for_flush:
            cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute(_messages_statement(), message_params)
        if not into_rollups:
            cursor.execute(_events_only_statement(), event_params)
            return cursor.fetchone()[0]
        cursor.execute(_events_counted_statement(), event_params)
        accepted, _rollup_rows, _slice_rows, _period_rows = cursor.fetchone()
    return accepted


def store_batch_pipelined(*, project_id: uuid.UUID, received_at, messages: Sequence[tuple],
                          events: Sequence[tuple], wait_for_flush: bool = False) -> int:
    """Store a batch's messages and events (no rollups) as one transaction, its statements sent together.

    For bulk loads that recount their days afterwards, outside any other transaction (PostgreSQL).
    Why pipelined: a backfill batch is four short statements (the commit mode, the project's shared
    rollup lock, both inserts) whose round trips cost as much as the inserts on a fast link; in
    psycopg's pipeline mode they travel in one round trip (psycopg sends the BEGIN of Django's
    transaction with the first of them; Django sends the COMMIT when the block exits). The
    connection is the one behind Django's cursor, so the transaction is Django's own: an error
    rolls it back through `transaction.atomic`. Returns how many events were new.
    """
    if not events:
        return 0
    _check_statement_rows(len(events))
    message_params, event_params = _batch_params(project_id, received_at, messages, events)
    with connection.wrap_database_errors, transaction.atomic():
        with _server_binding_cursor() as cursor, _server_binding_cursor() as counting:
            with cursor.connection.pipeline():
                if not wait_for_flush:
                    cursor.execute("SET LOCAL synchronous_commit = off")
                cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)",
                               [ROLLUP_LOCK_NAMESPACE, _lock_id(project_id)])
                cursor.execute(_messages_statement(), message_params)
                counting.execute(_events_only_statement(), event_params)
            return counting.fetchone()[0]


# Portable (SQLite): the same steps as separate statements (SQLite has no data-modifying CTEs), the
# counting generated from the same fragments: the accepted events' counted figures, then their first
# touches, whose RETURNING rows are the distinct figures' increments.


def _ingest_portable(*, project_id, received_at, messages, events, into_rollups: bool) -> int:
    p = _Params()
    _insert(
        _table(Message),
        (("id", "uuid"), ("project_id", "uuid"), ("channel_id", "uuid"), ("client_message_id", "text"),
         ("from_address", "text"), ("from_domain", "text"), ("recipient", "text"), ("created_at", "timestamptz")),
        [(p.uuid(new_id()), p.uuid(project_id), p.uuid(channel_id), message_id, sender, domain, recipient,
          p.datetime(received_at))
         for channel_id, message_id, sender, domain, recipient in sorted(messages, key=lambda row: row[1])],
        "ON CONFLICT (project_id, client_message_id) DO NOTHING",
    )
    message_ids = _message_ids(project_id, [row[1] for row in messages])
    accepted = [row[0] for row in _insert(
        _table(MessageEvent),
        (("id", "uuid"), ("project_id", "uuid"), ("message_id", "uuid"), ("client_event_id", "text"),
         ("type", "text"), ("occurred_at", "timestamptz"), ("url", "text"), ("user_agent", "text"),
         ("traffic", "text"), ("machine_reason", "text"), ("traffic_given", "boolean"), ("source_ip", "inet"),
         ("request_purpose", "text"), ("received_at", "timestamptz")),
        [(p.uuid(new_id()), p.uuid(project_id), message_ids[message_id], event_id, type_, p.datetime(occurred_at),
          url, agent, *classified, p.datetime(received_at))
         for event_id, type_, message_id, occurred_at, url, agent, *classified in sorted(events,
                                                                                          key=lambda row: row[0])],
        "ON CONFLICT (project_id, client_event_id) DO NOTHING RETURNING id",
        returning=True,
    )]
    if into_rollups and accepted:
        _count_into_rollups(project_id=project_id, event_ids=accepted)
    return len(accepted)


def _message_ids(project_id: uuid.UUID, client_message_ids: Sequence[str]) -> dict[str, object]:
    """Each client message id's stored message id, as the database keeps it."""
    p = _Params()
    found: dict[str, object] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(client_message_ids), LOOKUP_CHUNK):
            chunk = client_message_ids[start:start + LOOKUP_CHUNK]
            cursor.execute(f"SELECT client_message_id, id FROM {_table(Message)} WHERE project_id = %s "
                           f"AND client_message_id IN ({', '.join(['%s'] * len(chunk))})",
                           [p.uuid(project_id), *chunk])
            found.update(cursor.fetchall())
    return found


def _count_into_rollups(*, project_id: uuid.UUID, event_ids: Sequence) -> None:
    """Count the stored events `event_ids` into the rollups: their counted figures, then their first touches."""
    p = _Params()
    width = len(rule.KEY_COLUMNS)
    touches = _table(DailyFirstTouch)
    increments: dict[tuple, Counter] = defaultdict(Counter)
    slice_increments: dict[tuple, Counter] = defaultdict(Counter)
    period_increments: dict[tuple, Counter] = defaultdict(Counter)
    with connection.cursor() as cursor:
        for start in range(0, len(event_ids), LOOKUP_CHUNK):
            chunk = list(event_ids[start:start + LOOKUP_CHUNK])
            where = f"e.id IN ({', '.join(['%s'] * len(chunk))})"
            cursor.execute(_expected_slices_sql(where), chunk)
            for day, slice_, *rest in cursor.fetchall():
                day_counts = increments[(_as_date(day), *rest[:width])]
                slice_counts = slice_increments[(_as_date(day), slice_, *rest[:width])]
                for figure, value in zip(rule.COUNTED, rest[width:], strict=True):
                    day_counts[figure.column] += value
                    slice_counts[figure.column] += value
            _count_into_ledger(cursor, touches, _touch_columns(), _touch_conflict(), _expected_touches_sql(where),
                               [p.uuid(project_id), *chunk], ("day",), increments)
            _count_into_ledger(cursor, _table(PeriodFirstTouch), _period_touch_columns(), _period_touch_conflict(),
                               _expected_period_touches_sql(where), [p.uuid(project_id), *chunk],
                               ("period", "start"), period_increments)
    _add_to_rollups(project_id=project_id, increments=increments)
    _add_to_slices(project_id=project_id, increments=slice_increments)
    _add_to_period_rollups(project_id=project_id, increments=period_increments)


def _count_into_ledger(cursor, table: str, columns: str, conflict: str, expected_sql: str, params: list,
                       when: tuple[str, ...], increments: dict[tuple, Counter]) -> None:
    """Write a ledger's rows (daily or period) for the events `expected_sql` selects, adding to `increments`
    (by (*`when`, *grain key)) one per distinct figure each write adds to.

    New rows are new distinct recipients (of each class they have a time of); then the rows already there
    move their last times, noting each class whose first time the write set (one writer at a time here:
    the two statements see no other change between them). WHERE true: SQLite reads ON CONFLICT after a bare
    FROM item as a join constraint.
    """
    keys = ", ".join(_name(column) for column in (*when, "type", *rule.KEY_COLUMNS))
    classes = ", ".join(_name(rule.last_column(traffic)) for traffic in rule.TRAFFIC_CLASSES)
    notes = ", ".join(_name(column) for column in rule.NEW_COLUMNS)
    expected = f"SELECT %s, x.* FROM ({expected_sql}) AS x WHERE true"
    cursor.execute(f"INSERT INTO {table} ({columns}) {expected} ON CONFLICT {conflict} DO NOTHING "
                   f"RETURNING {keys}, {classes}", params)
    for row in cursor.fetchall():
        _add_written(increments, row, when, created=True)
    cursor.execute(f"INSERT INTO {table} ({columns}) {expected} ON CONFLICT {conflict} "
                   f"{_later_touch(table, notes=True)} RETURNING {keys}, {notes}", params)
    for row in cursor.fetchall():
        _add_written(increments, row, when, created=False)


def _add_written(increments: dict[tuple, Counter], row: tuple, when: tuple[str, ...], *, created: bool) -> None:
    """Count one ledger write's RETURNING row (*when, type, *grain key, one value per class) into `increments`:
    a created row adds one to the all-traffic figure and to each class it has a time of (the values are the
    class times); an updated row to each class it noted (the values are the class notes)."""
    width, key_width = len(when), len(rule.KEY_COLUMNS)
    moment = tuple(_as_date(value) if column in ("day", "start") else value
                   for column, value in zip(when, row[:width], strict=True))
    touch_type, key, per_class = row[width], row[width + 1:width + 1 + key_width], row[width + 1 + key_width:]
    counts = increments[(*moment, *key)]
    if created:
        counts[rule.DISTINCT_BY_TOUCH[(touch_type, "")].column] += 1
    for traffic, value in zip(rule.TRAFFIC_CLASSES, per_class, strict=True):
        if (value is not None) if created else bool(value):
            counts[rule.DISTINCT_BY_TOUCH[(touch_type, traffic)].column] += 1


def _add_to_period_rollups(*, project_id: uuid.UUID, increments: dict[tuple, dict[str, int]]) -> None:
    """Add per-(period, start, *grain key) increments of the distinct figures to the period rollups."""
    if not increments:
        return
    table = _table(PeriodRollup)
    p = _Params()
    distinct = tuple(figure.column for figure in rule.DISTINCT)
    values = [(p.uuid(project_id), period, p.date(start), *key, *(counts.get(column, 0) for column in distinct))
              for (period, start, *key), counts in sorted(increments.items())]
    updates = ", ".join(f"{_name(c)} = {table}.{_name(c)} + excluded.{_name(c)}" for c in distinct)
    _insert(
        table,
        (("project_id", "uuid"), ("period", "text"), ("start", "date"), *((c, "text") for c in rule.KEY_COLUMNS),
         *((c, "bigint") for c in distinct)),
        values,
        f"ON CONFLICT {_period_rollup_conflict()} DO UPDATE SET {updates}",
    )


def rebuild_periods(*, project_id: uuid.UUID, periods: Iterable[tuple[str, date]]) -> None:
    """Rewrite the period ledgers and period rollups of `periods` ((period, start) pairs) from raw events.

    The caller holds the exclusive rollup lock in the same transaction.
    """
    p = _Params()
    period_touches, period_rollups = _table(PeriodFirstTouch), _table(PeriodRollup)
    distinct = ", ".join(_ledger_count(figure) for figure in rule.DISTINCT)
    keys = ", ".join(_name(column) for column in rule.KEY_COLUMNS)
    with connection.cursor() as cursor:
        for period, start in sorted(set(periods)):
            end = period_end(period, start)
            params = {"p": p.uuid(project_id), "period": period, "start_day": p.date(start),
                      "start": p.datetime(datetime.combine(start, datetime.min.time(), tzinfo=UTC)),
                      "end": p.datetime(datetime.combine(end, datetime.min.time(), tzinfo=UTC))}
            own = "project_id = %(p)s AND period = %(period)s AND start = %(start_day)s"
            cursor.execute(f"DELETE FROM {period_touches} WHERE {own}", params)
            cursor.execute(f"DELETE FROM {period_rollups} WHERE {own}", params)
            cursor.execute(f"INSERT INTO {period_touches} ({_period_touch_columns()}) SELECT %(p)s, x.* FROM "
                           f"({_expected_period_touches_sql(_days_where(listed=False))}) AS x "
                           f"WHERE x.period = %(period)s", params)
            cursor.execute(f"INSERT INTO {period_rollups} ({_period_rollup_columns()}) "
                           f"SELECT project_id, period, start, {keys}, {distinct} FROM {period_touches} "
                           f"WHERE {own} GROUP BY project_id, period, start, {keys}", params)


def periods_of(days: Iterable[date]) -> set[tuple[str, date]]:
    """The (period, start) pairs of `rule.PERIODS` holding any of `days`."""
    return {(period, period_start(period, day)) for day in days for period in rule.PERIODS}


def days_of_periods(periods: Iterable[tuple[str, date]]) -> set[date]:
    """Every day of the (period, start) pairs `periods`."""
    days = set()
    for period, start in periods:
        end = period_end(period, start)
        days.update(start + timedelta(days=offset) for offset in range((end - start).days))
    return days


def period_start(period: str, day: date) -> date:
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def period_end(period: str, start: date) -> date:
    """The first day after the period that starts on `start`."""
    if period == "week":
        return start + timedelta(days=7)
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def _add_to_rollups(*, project_id: uuid.UUID, increments: dict[tuple, dict[str, int]]) -> None:
    """Add per-(day, *grain key) increments to the rollups, creating missing rows."""
    if not increments:
        return
    table = _table(DailyRollup)
    p = _Params()
    values = [(p.uuid(project_id), p.date(day), *key, *(counts.get(column, 0) for column in rule.FIGURE_COLUMNS))
              for (day, *key), counts in sorted(increments.items())]
    updates = ", ".join(f"{_name(c)} = {table}.{_name(c)} + excluded.{_name(c)}" for c in rule.FIGURE_COLUMNS)
    _insert(
        table,
        (("project_id", "uuid"), ("day", "date"), *((c, "text") for c in rule.KEY_COLUMNS),
         *((c, "bigint") for c in rule.FIGURE_COLUMNS)),
        values,
        f"ON CONFLICT {_rollup_conflict()} DO UPDATE SET {updates}",
    )


def _add_to_slices(*, project_id: uuid.UUID, increments: dict[tuple, dict[str, int]]) -> None:
    """Add per-(day, slice, *grain key) increments of the counted figures to the slice rollups."""
    if not increments:
        return
    table = _table(SliceRollup)
    p = _Params()
    counted = tuple(figure.column for figure in rule.COUNTED)
    values = [(p.uuid(project_id), p.date(day), slice_, *key, *(counts.get(column, 0) for column in counted))
              for (day, slice_, *key), counts in sorted(increments.items())]
    updates = ", ".join(f"{_name(c)} = {table}.{_name(c)} + excluded.{_name(c)}" for c in counted)
    _insert(
        table,
        (("project_id", "uuid"), ("day", "date"), ("slice", "smallint"), *((c, "text") for c in rule.KEY_COLUMNS),
         *((c, "bigint") for c in counted)),
        values,
        f"ON CONFLICT {_slice_conflict()} DO UPDATE SET {updates}",
    )


# Rebuilding from raw events -------------------------------------------------------------------


def rebuild_day(*, project_id: uuid.UUID, day: date) -> dict[tuple, dict[str, int]]:
    """Rewrite one UTC day's first touches and slice rollups from its raw events and return its rollup rows,
    counted afresh.

    Returns {grain key: {figure column: value}}. The caller holds the exclusive rollup lock and
    makes the stored rows equal to the returned ones.
    """
    params = _days_params(project_id, [day], day=_Params().date(day))
    touches = _table(DailyFirstTouch)
    where = _days_where(listed=False)
    ledger_key = ", ".join(_name(c) for c in ("type", *rule.KEY_COLUMNS, "recipient"))
    lasts = ", ".join(_name(c) for c in rule.LAST_COLUMNS)
    excluded = ", ".join(f"excluded.{_name(c)}" for c in rule.LAST_COLUMNS)
    with connection.cursor() as cursor:
        if _postgres():
            # A day is small: starting parallel workers costs more than the whole statement.
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            # Only the differences are written: touches the events no longer support are deleted, missing
            # ones inserted, wrong last times set; a ledger that is already right is only read. NOT IN over
            # NOT NULL columns: a hashed subplan, whatever the estimates after a bulk load.
            cursor.execute(
                f"WITH expected AS MATERIALIZED ({_expected_touches_sql(where)}), "
                f"stale AS (DELETE FROM {touches} t WHERE t.project_id = %(p)s AND t.day = %(day)s AND "
                f"({', '.join('t.' + _name(c) for c in ('type', *rule.KEY_COLUMNS, 'recipient'))}) NOT IN ("
                f"SELECT {ledger_key} FROM expected)) "
                f"INSERT INTO {touches} AS t ({_touch_columns()}) SELECT %(p)s::uuid, * FROM expected "
                f"ON CONFLICT {_touch_conflict()} DO UPDATE SET ({lasts}) = ROW({excluded}) "
                f"WHERE ({', '.join('t.' + _name(c) for c in rule.LAST_COLUMNS)}) IS DISTINCT FROM ({excluded})",
                params,
            )
        else:
            cursor.execute(f"DELETE FROM {touches} WHERE project_id = %(p)s AND day = %(day)s", params)
            cursor.execute(f"INSERT INTO {touches} ({_touch_columns()}) SELECT %(p)s, * FROM "
                           f"({_expected_touches_sql(where)}) AS x", params)
        _write_slices(cursor, where, params)
        # The day's first touches and slices are now all written.
        cursor.execute(f"DELETE FROM {_table(FirstTouchesPending)} WHERE project_id = %(p)s AND day = %(day)s",
                       params)
        cursor.execute(_expected_rollups_sql(where), params)
        width = len(rule.KEY_COLUMNS)
        return {tuple(row[1:1 + width]): dict(zip(rule.FIGURE_COLUMNS, row[1 + width:], strict=True))
                for row in cursor.fetchall()}


def _write_slices(cursor, where: str, params: dict) -> None:
    """Replace the slice rollups of the days in `params`' span (`start` .. `end`) by those of the events
    matching `where` (which lies inside that span)."""
    slices = _table(SliceRollup)
    cursor.execute(f"DELETE FROM {slices} WHERE project_id = %(p)s AND {_span_days(params)}", params)
    cursor.execute(f"INSERT INTO {slices} ({_slice_columns()}) SELECT %(p)s, x.* FROM "
                   f"({_expected_slices_sql(where)}) AS x", params)


def _span_days(params: dict) -> str:
    """The condition on `day` for `_days_params`' span: its days, and only the listed ones when it lists them."""
    return "day >= %(first_day)s AND day <= %(last_day)s" + (" AND day = ANY(%(days)s)" if "days" in params else "")


# Deferred rollups (PostgreSQL bulk loads) ----------------------------------------------------
#
# A backfill that defers its rollups marks each UTC day before storing events of it (a committed
# mark per day and run), stores events only, and at the end recounts the marked days set-based
# under the exclusive rollup lock, deleting its marks in the same transaction. While it runs it
# holds an advisory lock on its run id (`RunLock`), so another backfill can tell a crashed run's marks
# (lock free) from a live run's and adopt them.


def deferred_rollups_supported() -> bool:
    """Whether the database can store batches on several connections and recount their days afterwards."""
    return _postgres()


def mark_days_pending(*, project_id: uuid.UUID, run: uuid.UUID, days: Iterable[date]) -> None:
    """Commit a recount mark for each day (before any event of it is stored), outside any other transaction."""
    ordered = sorted(set(days))
    if not ordered:
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_table(PendingRecount)} (project_id, day, run, created_at) "
            f"SELECT %s, day, %s, now() FROM unnest(%s::date[]) AS d(day) ORDER BY day "
            f"ON CONFLICT (project_id, day, run) DO NOTHING",
            [project_id, run, ordered],
        )


def abandoned_runs(*, project_id: uuid.UUID, own: uuid.UUID) -> list[uuid.UUID]:
    """Runs other than `own` with recount marks in the project whose backfill is no longer running."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT run FROM {_table(PendingRecount)} WHERE project_id = %s AND run <> %s",
                       [project_id, own])
        runs = [row[0] for row in cursor.fetchall()]
    dead = []
    for run in runs:  # a run's lock free: it is not running (tried and freed in one transaction of its own)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [RUN_LOCK_NAMESPACE, _lock_id(run)])
            if cursor.fetchone()[0]:
                dead.append(run)
    return dead


def pending_days(*, project_id: uuid.UUID, runs: Sequence[uuid.UUID]) -> set[date]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT day FROM {_table(PendingRecount)} WHERE project_id = %s AND run = ANY(%s)",
                       [project_id, list(runs)])
        return {_as_date(row[0]) for row in cursor.fetchall()}


def recount_days(*, project_id: uuid.UUID, days: Sequence[date], runs: Sequence[uuid.UUID]) -> int:
    """Rewrite the rollup rows of `days` from raw events, set-based; clear the runs' recount marks.

    The rows are `rebuild_day`'s (the same generated statement), for many days at once. The days'
    first touches and slice rollups are not written: they are deleted and the days marked
    (`FirstTouchesPending`), and the first ingestion batch with an event of such a day writes them
    (`write_pending_first_touches`).
    The caller holds the exclusive rollup lock in the same transaction. Returns the days' rollup rows.
    """
    days = sorted(set(days))
    if not days:
        return 0
    touches, rollups, pending = _table(DailyFirstTouch), _table(DailyRollup), _table(FirstTouchesPending)
    params = _days_params(project_id, days, days=list(days), runs=list(runs))
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute(f"DELETE FROM {touches} WHERE project_id = %(p)s AND day = ANY(%(days)s)", params)
        cursor.execute(f"DELETE FROM {_table(SliceRollup)} WHERE project_id = %(p)s AND day = ANY(%(days)s)", params)
        cursor.execute(f"DELETE FROM {rollups} WHERE project_id = %(p)s AND day = ANY(%(days)s)", params)
        cursor.execute(f"INSERT INTO {rollups} ({_rollup_columns()}) SELECT %(p)s::uuid, r.* FROM "
                       f"({_expected_rollups_sql(_days_where(listed=True))}) AS r", params)
        rows = cursor.rowcount
        cursor.execute(f"INSERT INTO {pending} (project_id, day, created_at) SELECT %(p)s, day, now() "
                       f"FROM unnest(%(days)s::date[]) AS d(day) ON CONFLICT (project_id, day) DO NOTHING", params)
        cursor.execute(f"DELETE FROM {_table(PendingRecount)} WHERE project_id = %(p)s AND day = ANY(%(days)s) "
                       f"AND run = ANY(%(runs)s)", params)
    return rows


def first_touches_pending(*, project_id: uuid.UUID, days: Iterable[date]) -> list[date]:
    """Which of `days` have no first touches written yet (see `recount_days`)."""
    days = sorted(set(days))
    if not days:
        return []
    p = _Params()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT day FROM {_table(FirstTouchesPending)} WHERE project_id = %s "
                       f"AND day IN ({', '.join(['%s'] * len(days))}) ORDER BY day",
                       [p.uuid(project_id), *(p.date(day) for day in days)])
        return [_as_date(row[0]) for row in cursor.fetchall()]


def write_pending_first_touches(*, project_id: uuid.UUID, days: Sequence[date]) -> None:
    """Write the first touches and slice rollups of `days` (and the period ledgers of their weeks and months)
    from their raw events and clear their marks.

    The caller holds the exclusive rollup lock in the same transaction, so the touches written are
    exactly the ones the days' rollups counted. PostgreSQL writes all days at once, SQLite day by day.
    """
    days = sorted(set(days))
    if not days:
        return
    touches, pending = _table(DailyFirstTouch), _table(FirstTouchesPending)
    if _postgres():
        spans = [(_days_params(project_id, days, days=list(days)), _days_where(listed=True))]
    else:
        spans = [(_days_params(project_id, [day]), _days_where(listed=False)) for day in days]
    with connection.cursor() as cursor:
        if _postgres():
            cursor.execute("SET LOCAL work_mem = '64MB'")
        for params, where in spans:
            cursor.execute(
                f"INSERT INTO {touches} ({_touch_columns()}) SELECT %(p)s, x.* FROM "
                f"({_expected_touches_sql(where)}) AS x WHERE true "
                f"ON CONFLICT {_touch_conflict()} {_later_touch(touches)}",
                params,
            )
            _write_slices(cursor, where, params)
            cursor.execute(f"DELETE FROM {pending} WHERE project_id = %(p)s AND {_span_days(params)}", params)
    # The weeks and months holding those days: their ledgers counted the days' events without the first
    # touches; written afresh from their raw events.
    rebuild_periods(project_id=project_id, periods=periods_of(days))


# The report read ------------------------------------------------------------------------------
#
# One statement per report: the rollup rows of the whole days, UNION ALL the partial edge days
# counted from raw events (only when the window has any), grouped into buckets by the database.



def report_rows(*, project_id: uuid.UUID, whole_days: tuple[date, date] | None,
                partial: Sequence[tuple[datetime, datetime]], key: rule.GrainKey, group_by: str,
                figures: Sequence[str], exact: tuple[datetime, datetime] | None = None,
                using: str = DEFAULT_DB_ALIAS) -> list[tuple]:
    """(period, *figures) per non-empty bucket, oldest first; `period` a date. `using`: the database alias.

    `exact` (the window, for week and month buckets): the distinct figures count each recipient once per
    bucket, from the period ledgers, instead of summing the daily ones.
    """
    def run() -> list[tuple]:
        sql, params = _report_statement(project_id=project_id, whole_days=whole_days, partial=partial, key=key,
                                        group_by=group_by, figures=figures, exact=exact, using=using)
        with connections[using].cursor() as cursor:
            cursor.execute(sql, params)
            return [(_as_date(period), *values) for period, *values in cursor.fetchall()]

    return _partitions_relisted_if_gone(run, using)


def report_json_text(*, project_id: uuid.UUID, whole_days: tuple[date, date] | None,
                     partial: Sequence[tuple[datetime, datetime]], key: rule.GrainKey, group_by: str,
                     body: Sequence[tuple[str, str | tuple[str, str]]],
                     exact: tuple[datetime, datetime] | None = None, using: str = DEFAULT_DB_ALIAS) -> str | None:
    """The report body's JSON text written by the database (PostgreSQL), or None where it does not write JSON.

    `body` lists the bucket's keys in wire order, each with what it holds: "period", a figure
    column, or ("rate", a distinct figure's column): that figure over `delivered`, clamped to [0, 1].
    `using`: the database alias (the primary, or the replica: the statement only reads).
    """
    if not _postgres():
        return None
    figures = [source for _key, source in body if isinstance(source, str) and source != "period"]
    if "delivered" not in figures:
        figures.append("delivered")
    return _partitions_relisted_if_gone(lambda: _report_json_run(
        *_report_statement(project_id=project_id, whole_days=whole_days, partial=partial, key=key,
                           group_by=group_by, figures=figures, exact=exact, using=using),
        body=body, edges=bool(partial) or exact is not None, using=using), using)


T = TypeVar("T")


def _partitions_relisted_if_gone(run: Callable[[], T], using: str) -> T:
    """`run()` (which builds and runs a report statement); if a partition it named was dropped since this
    process listed them (another process's purge), list them again and run once more. Inside a transaction
    the error stands: the transaction is lost anyway."""
    try:
        return run()
    except ProgrammingError as error:
        if not isinstance(error.__cause__, psycopg.errors.UndefinedTable) or connections[using].in_atomic_block:
            raise
        partitions.known_partitions_forget()
        return run()


def _report_json_run(sql: str, params: list, *, body, edges: bool, using: str) -> str:
    if not edges:
        with connections[using].cursor() as cursor:
            cursor.execute(_json_body(sql, body), params)
            return cursor.fetchone()[0]
    if not _statements_prepared(using):  # every execution is planned anyway: a plan mode would save nothing
        with _numbered_statement_cursor(using) as execute:
            return execute(_json_body(sql, body), params).fetchone()[0]
    # The statement's text is the same for every report of the same shape (the window and the key are parameters; on
    # partitioned tables it names the partitions of the window's months), and planning its edge parts costs more than
    # running them: once prepared, it runs on one generic plan per connection (each guard is a one-time filter, decided
    # when the statement runs). The setting is the transaction's own (`SET LOCAL`): no session state outlives it. Its
    # own transaction, pipelined (psycopg's pipeline mode, where Django does not log queries): the BEGIN, the setting
    # and the statement travel in one round trip, the COMMIT in a second. Inside a caller's transaction the setting is
    # put back once the statement has run, so the caller's later statements plan as before.
    database = connections[using]
    inside_a_transaction = database.in_atomic_block
    with database.wrap_database_errors, transaction.atomic(using=using, savepoint=False):
        with _numbered_statement_cursor(using) as execute, _pipelined(database):
            execute("SET LOCAL plan_cache_mode = force_generic_plan", None)
            text = execute(_json_body(sql, body), params).fetchone()[0]
            if inside_a_transaction:
                execute("SET LOCAL plan_cache_mode TO DEFAULT", None)
            return text


def _pipelined(database):
    """psycopg's pipeline mode on the alias's connection, unless Django logs its queries (its `%s` cursor)."""
    return nullcontext() if database.queries_logged else database.connection.pipeline()


def _statements_prepared(using: str) -> bool:
    """Whether the connection prepares statements it runs again (`DATABASE_PREPARE_THRESHOLD` > 0); behind a
    pooler in transaction mode (0) none is prepared, so none keeps a plan."""
    database = connections[using]
    database.ensure_connection()
    return database.connection.prepare_threshold is not None


def _report_statement(*, project_id, whole_days, partial, key, group_by: str, figures: Sequence[str],
                      exact: tuple[datetime, datetime] | None = None,
                      using: str = DEFAULT_DB_ALIAS) -> tuple[str, list]:
    p = _Params()
    reads = _Reads(using)
    ops = connection.ops
    # With exact buckets the days give the counted figures only; the periods give the distinct ones.
    columns = ", ".join(f"0 AS {_name(figure)}" if exact and _figure(figure).distinct else _name(figure)
                        for figure in figures)
    parts, params = [], []
    if whole_days is not None:
        rollups = reads.days(DailyRollup, whole_days[0], whole_days[1] - timedelta(days=1), "d")
        parts.append(f"SELECT day, {columns} FROM {rollups} WHERE project_id = %s "
                     f"AND {_key_condition()} AND day >= %s AND day < %s")
        params += [p.uuid(project_id), *key, ops.adapt_datefield_value(whole_days[0]),
                   ops.adapt_datefield_value(whole_days[1])]
    edge = _Edge(project_id=project_id, key=key, figures=figures, distinct=exact is None, reads=reads)
    for range_start, range_end in partial:
        for part, part_params in edge.parts(range_start, range_end):
            parts.append(part)
            params += part_params
    if exact is not None:
        for part, part_params in _PeriodParts(project_id=project_id, key=key, figures=figures,
                                              period=group_by, reads=reads).parts(*exact):
            parts.append(part)
            params += part_params
    days = " UNION ALL ".join(parts)
    nonempty = " + ".join(_name(figure) for figure in figures) + " > 0"
    summed = ", ".join(f"CAST(sum({_name(figure)}) AS BIGINT) AS {_name(figure)}" for figure in figures)
    period = _bucket_start(group_by, "day")
    # A day may have several rows (an edge day's slices, ledger counts and partial slice): summed per bucket.
    return (f"SELECT {period} AS period, {summed} FROM ({days}) AS days WHERE {nonempty} GROUP BY 1 "
            f"ORDER BY period"), params


class _Reads:
    """The FROM items through which a report statement reads its partitioned tables' rows of some days: on
    PostgreSQL the partitions of those months by name (`partitions.months_relation`: a statement prepared
    once keeps a generic plan that holds those partitions alone), else the table itself."""

    def __init__(self, using: str):
        self.known = partitions.known_partitions(using) if partitions.supported(connections[using]) else None

    def days(self, model, first: date, last: date, alias: str) -> str:
        """`model`'s rows of the days `first` to `last` (both included), as `alias`."""
        return partitions.model_months_relation(model, first, last, alias=alias, known=self.known)

    def moments(self, model, low: datetime, high: datetime, alias: str) -> str:
        """`model`'s rows dated in [low, high), as `alias`."""
        return self.days(model, _utc_date(low), _utc_date(max(low, high - timedelta(microseconds=1))), alias)


def _key_condition(alias: str = "") -> str:
    return " AND ".join(f"{alias}{_name(column)} = %s" for column in rule.KEY_COLUMNS)


class _Edge:
    """The statement parts that count a partial edge day of a report (a range inside one UTC day, or the
    span of a window shorter than a day), each giving (day, *figures) rows.

    - A range from inside a day to its end (the default window's first day) reads the day's kept edge
      data: its whole slices' counted figures, the raw events of the one partial slice before them
      (counted figures only), and per distinct figure the ledger rows whose last touch falls in the
      range. Guarded: only when the day's rollups, first touches and slices are all written (no pending
      recount, no pending first touches); else the range's raw events.
    - Any other range inside one day (the last day up to `to`) whose day has no event outside the range
      and no pending recount reads as the day's rollup row (today up to now: nothing is dated after
      now); else its raw events.
    - A range over more than one day (a window shorter than a day that crosses midnight): raw events.

    Each guard is uncorrelated (evaluated once per statement, by index probes), so a part whose guard
    is false reads nothing; each part is its own UNION member so that happens before any event is read.
    """

    def __init__(self, *, project_id: uuid.UUID, key: rule.GrainKey, figures: Sequence[str], reads: _Reads,
                 distinct: bool = True):
        self.project_id = project_id
        self.reads = reads
        self.key = key
        self.figures = [_figure(name) for name in figures]
        self.distinct = distinct  # False: the distinct figures read 0 (another part counts them)
        self.filters = [(dimension, value) for dimension, value in zip(rule.DIMENSIONS, key[1:], strict=True)
                        if value]
        self.p = _Params()
        self.ops = connection.ops

    def parts(self, range_start: datetime, range_end: datetime) -> list[tuple[str, list]]:
        day = _utc_date(range_start)
        day_begin = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
        if range_end == day_begin + timedelta(days=1) and range_start > day_begin:
            guard, guard_params = self._edge_data_guard(day)
            parts = [self._slices(day, range_start, guard, guard_params),
                     *self._ledger(day, range_start, guard, guard_params)]
            slice_end = _slice_start(day_begin, _first_whole_slice(day_begin, range_start))
            if range_start < slice_end:
                parts.append(self._raw(range_start, slice_end, f"AND {guard}", guard_params, counted_only=True))
            parts.append(self._raw(range_start, range_end, f"AND NOT {guard}", guard_params))
            return parts
        guard, guard_params = _whole_day_guard(self.project_id, range_start, range_end, self.reads)
        if not guard:
            return [self._raw(range_start, range_end, "", [])]
        return [self._day_rollup(day, guard, guard_params),
                self._raw(range_start, range_end, f"AND NOT {guard}", guard_params)]

    def _values(self, per_figure) -> str:
        return ", ".join(f"{'0' if figure.distinct and not self.distinct else per_figure(figure)} AS "
                         f"{_name(figure.column)}" for figure in self.figures)

    def _edge_data_guard(self, day: date) -> tuple[str, list]:
        """True when the day's rollups, first touches and slices are all written."""
        params = [self.p.uuid(self.project_id), self.ops.adapt_datefield_value(day)] * 2
        return (f"(NOT EXISTS (SELECT 1 FROM {_table(PendingRecount)} r WHERE r.project_id = %s AND r.day = %s) "
                f"AND NOT EXISTS (SELECT 1 FROM {_table(FirstTouchesPending)} w WHERE w.project_id = %s "
                f"AND w.day = %s))"), params

    def _day_rollup(self, day: date, guard: str, guard_params: list) -> tuple[str, list]:
        columns = self._values(lambda figure: _name(figure.column))
        return (f"SELECT day, {columns} FROM {self.reads.days(DailyRollup, day, day, 'd')} WHERE project_id = %s "
                f"AND {_key_condition()} AND day = %s AND {guard}",
                [self.p.uuid(self.project_id), *self.key, self.ops.adapt_datefield_value(day), *guard_params])

    def _slices(self, day: date, range_start: datetime, guard: str, guard_params: list) -> tuple[str, list]:
        """The counted figures of the day's whole slices from `range_start` on."""
        first_slice = _first_whole_slice(datetime.combine(day, datetime.min.time(), tzinfo=UTC), range_start)
        values = self._values(lambda f: "0" if f.distinct else f"CAST(sum({_name(f.column)}) AS BIGINT)")
        return (f"SELECT day, {values} FROM {self.reads.days(SliceRollup, day, day, 's')} WHERE project_id = %s "
                f"AND {_key_condition()} AND day = %s AND slice >= %s AND {guard} GROUP BY day",
                [self.p.uuid(self.project_id), *self.key, self.ops.adapt_datefield_value(day), first_slice,
                 *guard_params])

    def _ledger(self, day: date, range_start: datetime, guard: str, guard_params: list) -> list[tuple[str, list]]:
        """The distinct figures: the recipients whose last touch of the day falls at or after `range_start`."""
        distinct = [figure for figure in self.figures if figure.distinct]
        if not distinct or not self.distinct:
            return []
        since = self.ops.adapt_datetimefield_value(range_start)
        types = tuple(dict.fromkeys(figure.touch_type for figure in distinct))
        if range_start.astimezone(UTC).hour < 12 and all(figure.traffic == "" for figure in distinct):
            return [self._ledger_by_complement(day, since, types, guard, guard_params)]
        values = self._values(lambda f: _ledger_count(f, "%s") if f.distinct else "0")
        # The last touch of any class is the latest of the classes': the rows of the range are a prefix of it.
        return [(
            f"SELECT day, {values} FROM {self.reads.days(DailyFirstTouch, day, day, 't')} WHERE project_id = %s "
            f"AND {_key_condition()} AND type IN ({_literals(types)}) AND day = %s AND last_at >= %s AND {guard} "
            f"GROUP BY day",
            [*(since for _figure in distinct), self.p.uuid(self.project_id), *self.key,
             self.ops.adapt_datefield_value(day), since, *guard_params])]

    def _ledger_by_complement(self, day: date, since, types: tuple[str, ...], guard: str,
                              guard_params: list) -> tuple[str, list]:
        """The same count from the other end, for a `since` in the morning (fewer rows before it than after):
        the day's distinct figures (its rollup row) less the recipients whose last touch of the day came
        before `since`. Only for the figures of every class, whose last touch the ledger's index ends in."""
        before = ", ".join(f"count(*) FILTER (WHERE t.type = {_literal(figure.touch_type)}) AS {_name(figure.column)}"
                           for figure in self.figures if figure.distinct)
        values = self._values(lambda f: f"r.{_name(f.column)} - b.{_name(f.column)}" if f.distinct else "0")
        # The ledger's side is uncorrelated (a plain join on both databases): one aggregate row.
        return (f"SELECT r.day, {values} FROM {self.reads.days(DailyRollup, day, day, 'r')} CROSS JOIN "
                f"(SELECT {before} FROM {self.reads.days(DailyFirstTouch, day, day, 't')} WHERE t.project_id = %s "
                f"AND {_key_condition('t.')} AND t.type IN ({_literals(types)}) AND t.day = %s AND t.last_at < %s) "
                f"AS b WHERE r.project_id = %s AND {_key_condition('r.')} AND r.day = %s AND {guard}",
                [self.p.uuid(self.project_id), *self.key, self.ops.adapt_datefield_value(day), since,
                 self.p.uuid(self.project_id), *self.key, self.ops.adapt_datefield_value(day), *guard_params])

    def _raw(self, range_start: datetime, range_end: datetime, guard: str, guard_params: list, *,
             counted_only: bool = False) -> tuple[str, list]:
        """The figures of the raw events in [range_start, range_end) (`counted_only`: distinct figures 0)."""
        events = self.reads.moments(MessageEvent, range_start, range_end, "e")
        if counted_only and not self.filters:  # the counted figures need the event alone
            facts_from, recipient, dimension_value = f"FROM {events}", None, None
        else:
            facts_from, recipient, dimension_value = _edge_facts(events, every_event=bool(self.filters))
        values = self._values(lambda f: ("0" if counted_only else _distinct(f, "e.", recipient)) if f.distinct
                              else _counted(f, "e."))
        sql = (f"SELECT {_utc_day('e.occurred_at')} AS day, {values} {facts_from} "
               f"WHERE e.project_id = %s AND e.occurred_at >= %s AND e.occurred_at < %s {guard}"
               + "".join(f" AND {dimension_value(dimension)} = %s" for dimension, _value in self.filters)
               + " GROUP BY 1")
        return sql, [self.p.uuid(self.project_id), self.ops.adapt_datetimefield_value(range_start),
                     self.ops.adapt_datetimefield_value(range_end), *guard_params,
                     *(value for _dimension, value in self.filters)]


class _PeriodParts:
    """The statement parts that count a report's distinct figures per week or month bucket exactly
    (`unique=exact`), each giving (bucket start, *figures) rows with the counted figures 0.

    A bucket is the part of its period inside the window, [a, b) of [period start, period end):
    - the whole period: its period rollup row;
    - from the period's start to `b`, when nothing of the project is dated in [b, period end): the same row;
    - from inside the period (to its end, or to `b` with nothing dated after it in the period): the
      period ledger rows whose last touch falls at or after `a`.
    Each is guarded: only when no day of the period has pending first touches or a pending recount (the
    ledger is complete), else the bucket's raw events are counted. The guards are uncorrelated, as the
    daily edges' are, so a part whose guard is false reads nothing.
    """

    def __init__(self, *, project_id: uuid.UUID, key: rule.GrainKey, figures: Sequence[str], period: str,
                 reads: _Reads):
        self.project_id = project_id
        self.reads = reads
        self.key = key
        self.figures = [_figure(name) for name in figures]
        self.period = period
        self.p = _Params()
        self.ops = connection.ops
        self.filters = [(dimension, value) for dimension, value in zip(rule.DIMENSIONS, key[1:], strict=True)
                        if value]

    def parts(self, window_start: datetime, window_end: datetime) -> list[tuple[str, list]]:
        parts = []
        start = period_start(self.period, _utc_date(window_start))
        while _midnight(start) < window_end:
            end = period_end(self.period, start)
            parts += self._bucket(start, end, max(window_start, _midnight(start)), min(window_end, _midnight(end)))
            start = end
        return parts

    def _bucket(self, start: date, end: date, low: datetime, high: datetime) -> list[tuple[str, list]]:
        guard, guard_params = self._complete(start, end)
        if high < _midnight(end):
            quiet, quiet_params = self._nothing_dated(high, _midnight(end))
            guard, guard_params = f"{guard} AND {quiet}", [*guard_params, *quiet_params]
        counted = (self._rollup(start, guard, guard_params) if low == _midnight(start)
                   else self._ledger(start, low, guard, guard_params))
        return [counted, self._raw(start, low, high, f"NOT ({guard})", guard_params)]

    def _values(self, per_distinct) -> str:
        return ", ".join(f"{per_distinct(figure) if figure.distinct else '0'} AS {_name(figure.column)}"
                         for figure in self.figures)

    def _complete(self, start: date, end: date) -> tuple[str, list]:
        """True when the period's ledger and rollups hold every event of it."""
        params = [self.p.uuid(self.project_id), self.ops.adapt_datefield_value(start),
                  self.ops.adapt_datefield_value(end)] * 2
        return (f"NOT EXISTS (SELECT 1 FROM {_table(FirstTouchesPending)} w WHERE w.project_id = %s AND w.day >= %s "
                f"AND w.day < %s) AND NOT EXISTS (SELECT 1 FROM {_table(PendingRecount)} r WHERE r.project_id = %s "
                f"AND r.day >= %s AND r.day < %s)"), params

    def _nothing_dated(self, low: datetime, high: datetime) -> tuple[str, list]:
        return (f"NOT EXISTS (SELECT 1 FROM {self.reads.moments(MessageEvent, low, high, 'o')} "
                f"WHERE o.project_id = %s AND o.occurred_at >= %s AND o.occurred_at < %s)",
                [self.p.uuid(self.project_id), self.ops.adapt_datetimefield_value(low),
                 self.ops.adapt_datetimefield_value(high)])

    def _own(self, start: date) -> tuple[str, list]:
        return (f"project_id = %s AND period = %s AND {_key_condition()} AND start = %s",
                [self.p.uuid(self.project_id), self.period, *self.key, self.ops.adapt_datefield_value(start)])

    def _rollup(self, start: date, guard: str, guard_params: list) -> tuple[str, list]:
        own, own_params = self._own(start)
        return (f"SELECT start AS day, {self._values(lambda f: _name(f.column))} FROM {_table(PeriodRollup)} "
                f"WHERE {own} AND {guard}", [*own_params, *guard_params])

    def _ledger(self, start: date, low: datetime, guard: str, guard_params: list) -> tuple[str, list]:
        own, own_params = self._own(start)
        distinct = [figure for figure in self.figures if figure.distinct]
        since = self.ops.adapt_datetimefield_value(low)
        types = tuple(dict.fromkeys(figure.touch_type for figure in distinct))
        values = self._values(lambda f: _ledger_count(f, "%s"))
        return (f"SELECT %s AS day, {values} FROM {self.reads.days(PeriodFirstTouch, start, start, 'l')} WHERE {own} "
                f"AND type IN ({_literals(types)}) AND last_at >= %s AND {guard}",
                [self.ops.adapt_datefield_value(start), *(since for _figure in distinct), *own_params, since,
                 *guard_params])

    def _raw(self, start: date, low: datetime, high: datetime, guard: str, guard_params: list) -> tuple[str, list]:
        facts_from, recipient, dimension_value = _edge_facts(self.reads.moments(MessageEvent, low, high, "e"),
                                                             every_event=True)
        values = self._values(lambda f: _distinct(f, "e.", recipient))
        sql = (f"SELECT %s AS day, {values} {facts_from} WHERE e.project_id = %s AND e.occurred_at >= %s "
               f"AND e.occurred_at < %s AND e.type IN ({_literals(rule.TOUCH_TYPES)}) AND {guard}"
               + "".join(f" AND {dimension_value(dimension)} = %s" for dimension, _value in self.filters))
        return sql, [self.ops.adapt_datefield_value(start), self.p.uuid(self.project_id),
                     self.ops.adapt_datetimefield_value(low), self.ops.adapt_datetimefield_value(high),
                     *guard_params, *(value for _dimension, value in self.filters)]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def _figure(column: str) -> rule.Figure:
    return next(figure for figure in rule.FIGURES if figure.column == column)


def _first_whole_slice(day_begin: datetime, moment: datetime) -> int:
    """The first slice of the day that starts at `day_begin` lying wholly at or after `moment`
    (SLICES_PER_DAY when none does)."""
    return -(-(moment - day_begin) // timedelta(minutes=rule.SLICE_MINUTES))


def _slice_start(day_begin: datetime, slice_: int) -> datetime:
    return day_begin + slice_ * timedelta(minutes=rule.SLICE_MINUTES)


def _edge_facts(events: str, *, every_event: bool):
    """The FROM items of an edge's raw events (`events`: their FROM item, as `e`), and the SQL of their
    recipient and of a dimension's value.

    PostgreSQL: each event fetches its message's facts by primary key (LATERAL with LIMIT 1 is not
    flattened into a join), so an edge costs its own events, never a hash of the project's messages.
    Unless `every_event` (a filter reads every event's dimensions), only the events a distinct figure
    counts fetch their message: the counted figures need the event alone.
    """
    if not _postgres():
        return _facts_join(events), _recipient(), _dimension_source
    dimensions = ", ".join(f"{_dimension_source(d)} AS {_name(d.column)}" for d in rule.DIMENSIONS)
    touching = "" if every_event else f" AND e.type IN ({_literals(rule.TOUCH_TYPES)})"
    facts_from = (f"FROM {events} {'CROSS' if every_event else 'LEFT'} JOIN LATERAL ("
                  f"SELECT {_recipient()} AS recipient, {dimensions} FROM {_table(Message)} m "
                  f"JOIN {_table(Channel)} c ON c.id = m.channel_id WHERE m.id = e.message_id{touching} LIMIT 1) AS f"
                  f"{'' if every_event else ' ON true'}")
    return facts_from, "f.recipient", lambda dimension: f"f.{_name(dimension.column)}"


def _utc_date(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def _whole_day_guard(project_id: uuid.UUID, range_start: datetime, range_end: datetime,
                     reads: _Reads) -> tuple[str, list]:
    """A condition true when the UTC day of [range_start, range_end) has no event outside the range and no
    pending recount, so the day's rollup row counts exactly the range's events; and its parameters.
    ("", []) when the range is not inside one UTC day.

    Both subqueries are uncorrelated (evaluated once per statement) and read an index each: the
    events by (project, occurred_at), the recount marks by (project, day).
    """
    p, ops = _Params(), connection.ops
    day = _utc_date(range_start)
    day_begin = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    if range_end > day_begin + timedelta(days=1):
        return "", []
    outside = [(low, high) for low, high in ((day_begin, range_start), (range_end, day_begin + timedelta(days=1)))
               if low < high]
    events = " OR ".join(["(o.occurred_at >= %s AND o.occurred_at < %s)"] * len(outside))
    condition = (f"NOT EXISTS (SELECT 1 FROM {_table(PendingRecount)} r WHERE r.project_id = %s AND r.day = %s)")
    params = [p.uuid(project_id), ops.adapt_datefield_value(day)]
    if outside:
        condition += (f" AND NOT EXISTS (SELECT 1 FROM {reads.days(MessageEvent, day, day, 'o')} "
                      f"WHERE o.project_id = %s AND ({events}))")
        params.append(p.uuid(project_id))
        for low, high in outside:
            params += [ops.adapt_datetimefield_value(low), ops.adapt_datetimefield_value(high)]
    return f"({condition})", params


def _rate_text(unique: str) -> str:
    """unique / delivered clamped to [0, 1], as JSON text equal to Python's float repr (0.0 and 1.0 included).

    The clamp is decided on the integers (both are counts, never negative), so only rates strictly
    between 0 and 1 are divided and printed by float8 output, whose shortest form is Python's repr.
    """
    return (f"CASE WHEN {unique} <= 0 OR delivered <= 0 THEN '0.0' WHEN {unique} >= delivered THEN '1.0' "
            f"ELSE ({unique}::float8 / delivered)::text END")


def _json_body(buckets_sql: str, body: Sequence[tuple[str, str | tuple[str, str]]]) -> str:
    pieces = []
    for position, (wire_key, source) in enumerate(body):
        prefix = ("{" if position == 0 else ",") + f'"{wire_key}":'
        if source == "period":
            value = """'"' || to_char(period, 'YYYY-MM-DD') || 'T00:00:00Z"'"""
        elif isinstance(source, tuple):
            _rate, unique = source
            value = _rate_text(_name(unique))
        else:
            value = _name(source)
        pieces.append(f"{_literal(prefix)} || {value}")
    bucket = " || ".join([*pieces, "'}'"])
    return (f"""SELECT '{{"data":[' || coalesce(string_agg({bucket}, ',' ORDER BY period), '') || ']}}' """
            f"FROM ({buckets_sql}) AS buckets")


# Retention ------------------------------------------------------------------------------------------


def message_events_delete_before(*, project_id: uuid.UUID, cutoff: datetime, limit: int) -> list[tuple[date, object]]:
    """Delete up to `limit` of the project's message events that occurred before `cutoff`, in one statement;
    returns the UTC day and the message id of each."""
    p = _Params()
    events = _table(MessageEvent)
    params = {"p": p.uuid(project_id), "cutoff": p.datetime(cutoff), "limit": limit}
    deleting = (f"DELETE FROM {events} WHERE id IN (SELECT id FROM {events} WHERE project_id = %(p)s "
                f"AND occurred_at < %(cutoff)s LIMIT %(limit)s) AND occurred_at < %(cutoff)s")
    if _postgres():  # their keys go with them (MessageEventKey)
        statement = (f"WITH gone AS ({deleting} RETURNING client_event_id, occurred_at, message_id), "
                     f"unkeyed AS (DELETE FROM {_table(MessageEventKey)} k USING gone "
                     f"WHERE k.project_id = %(p)s AND k.client_event_id = gone.client_event_id) "
                     f"SELECT {_utc_day('occurred_at')}, message_id FROM gone")
    else:
        statement = f"{deleting} RETURNING {_utc_day('occurred_at')}, message_id"
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return [(_as_date(day), message_id) for day, message_id in cursor.fetchall()]


def messages_without_events_delete(*, project_id: uuid.UUID, message_ids: Sequence) -> int:
    """Delete those of the project's messages `message_ids` that no stored event refers to any more; returns how
    many. The caller holds the project's exclusive rollup lock: no batch is adding an event to one of them."""
    p = _Params()
    messages, events = _table(Message), _table(MessageEvent)
    deleted = 0
    with connection.cursor() as cursor:
        for chunk in _chunks(list(message_ids), columns=1):  # as many ids as a statement takes parameters
            placeholders = ", ".join(["%s"] * len(chunk))
            cursor.execute(f"DELETE FROM {messages} WHERE project_id = %s AND id IN ({placeholders}) AND NOT EXISTS "
                           f"(SELECT 1 FROM {events} e WHERE e.message_id = {messages}.id)",
                           [p.uuid(project_id), *chunk])
            deleted += cursor.rowcount
    return deleted


def partition_messages_settle(partition: str) -> None:
    """PostgreSQL, before one monthly partition of the message events is dropped: its events' keys are deleted,
    and the messages no event outside it refers to, under each project's exclusive rollup lock (no batch adds an
    event to one of them meanwhile)."""
    part = _name(partition)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT project_id FROM {part}")
        for (project_id,) in sorted(cursor.fetchall()):
            lock_project_rollups(project_id=project_id, exclusive=True)
        cursor.execute(f"DELETE FROM {_table(MessageEventKey)} k USING {part} e "
                       f"WHERE k.project_id = e.project_id AND k.client_event_id = e.client_event_id")
        cursor.execute(f"DELETE FROM {_table(Message)} m USING (SELECT DISTINCT message_id FROM {part}) d "
                       f"WHERE m.id = d.message_id AND NOT EXISTS (SELECT 1 FROM {_table(MessageEvent)} e "
                       f"WHERE e.message_id = m.id AND e.tableoid <> %s::regclass)", [partition])

