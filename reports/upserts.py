"""The raw-SQL writes behind ingestion and rollups.

Every write is `INSERT ... ON CONFLICT` with `RETURNING`, the same semantics on PostgreSQL and
on SQLite (3.35+). Rows go in as multi-row VALUES on SQLite and as one unnested array per
column on PostgreSQL (a short, cached statement whatever the batch size). Rows are sorted by
their unique key first, so concurrent transactions take row locks in one order and cannot
deadlock each other.
"""

import uuid
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from datetime import date
from functools import cache

import psycopg
from django.db import connection, transaction

from reports.grains import COUNT_COLUMN, ROLLUP_COUNT_COLUMNS, UNIQUE_COLUMN, day_bounds, grain_keys_for
from reports.models import (
    Channel,
    DailyFirstTouch,
    DailyRollup,
    FirstTouchesPending,
    Message,
    MessageEvent,
    PendingRecount,
)

# Bind parameters per statement: under SQLite's limit (32766) and PostgreSQL's (65535).
MAX_PARAMS_PER_STATEMENT = 8000
# Advisory lock namespace (first key of PostgreSQL's two-key form) guarding a project's rollups.
ROLLUP_LOCK_NAMESPACE = 0x52504F4C  # "RPOL"


class _Params:
    """Python values as the current backend stores them, resolved once per statement, not per value."""

    def __init__(self):
        self.postgres = connection.vendor == "postgresql"
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


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _insert(table: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence], suffix: str) -> list[tuple]:
    """INSERT `rows` (in order) and return what `suffix`'s RETURNING yields, if any.

    `columns` are (name, PostgreSQL type). PostgreSQL receives one array per column and
    unnests them, so the statement text stays short and cached whatever the row count;
    SQLite receives multi-row VALUES in chunks under its bind-parameter limit.
    """
    if not rows:
        return []
    returned: list[tuple] = []
    names = ", ".join(name for name, _type in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = ", ".join(f"%s::{pg_type}[]" for _name, pg_type in columns)
            aliases = ", ".join(f"c{i}" for i in range(len(columns)))
            cursor.execute(
                f"INSERT INTO {table} ({names}) SELECT {aliases} FROM unnest({arrays}) "
                f"WITH ORDINALITY AS batch({aliases}, position) ORDER BY position {suffix}",
                [list(column) for column in zip(*rows, strict=True)],
            )
            return cursor.fetchall() if "RETURNING" in suffix else []
        placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
        for chunk in _chunks(rows, len(columns)):
            cursor.execute(
                f"INSERT INTO {table} ({names}) VALUES {', '.join([placeholder] * len(chunk))} {suffix}",
                [value for row in chunk for value in row],
            )
            if "RETURNING" in suffix:
                returned.extend(cursor.fetchall())
    return returned


def lock_project_rollups(*, project_id: uuid.UUID, exclusive: bool) -> None:
    """Ingestion holds the shared lock, a rollup rebuild the exclusive one (PostgreSQL).

    A rebuild recomputes a day from raw events, so no batch may commit into that day while
    it runs. SQLite needs nothing: its IMMEDIATE transactions already run one at a time.
    """
    if connection.vendor != "postgresql":
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    lock_id = int.from_bytes(project_id.bytes[-4:], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s, %s)", [ROLLUP_LOCK_NAMESPACE, lock_id])


def insert_messages(*, project_id: uuid.UUID, rows: Iterable[dict]) -> None:
    """Create messages that do not exist yet; existing (project, client message id) pairs are left as they are."""
    ordered = sorted(rows, key=lambda row: row["client_message_id"])
    p = _Params()
    values = [
        (p.uuid(row["id"]), p.uuid(project_id), p.uuid(row["channel_id"]), row["client_message_id"],
         row["from_address"], row["from_domain"], row["recipient"], p.datetime(row["created_at"]))
        for row in ordered
    ]
    _insert(
        _table(Message),
        (("id", "uuid"), ("project_id", "uuid"), ("channel_id", "uuid"), ("client_message_id", "text"),
         ("from_address", "text"), ("from_domain", "text"), ("recipient", "text"), ("created_at", "timestamptz")),
        values,
        "ON CONFLICT (project_id, client_message_id) DO NOTHING",
    )


def insert_events(*, project_id: uuid.UUID, rows: Iterable[dict]) -> set[str]:
    """Insert events idempotently; returns the client event ids that were new (the accepted ones)."""
    ordered = sorted(rows, key=lambda row: row["client_event_id"])
    p = _Params()
    values = [
        (p.uuid(row["id"]), p.uuid(project_id), p.uuid(row["message_id"]), row["client_event_id"], row["type"],
         p.datetime(row["occurred_at"]), row["url"], row["user_agent"], p.datetime(row["received_at"]))
        for row in ordered
    ]
    returned = _insert(
        _table(MessageEvent),
        (("id", "uuid"), ("project_id", "uuid"), ("message_id", "uuid"), ("client_event_id", "text"),
         ("type", "text"), ("occurred_at", "timestamptz"), ("url", "text"), ("user_agent", "text"),
         ("received_at", "timestamptz")),
        values,
        "ON CONFLICT (project_id, client_event_id) DO NOTHING RETURNING client_event_id",
    )
    return {row[0] for row in returned}


FirstTouch = tuple[date, str, str, str, str, str]  # (day, kind, grain, channel_key, domain, recipient)


def insert_first_touches(*, project_id: uuid.UUID, touches: Iterable[FirstTouch]) -> list[tuple]:
    """Record first touches; returns (day, kind, grain, channel_key, domain) of each that was new."""
    ordered = sorted(set(touches))
    p = _Params()
    values = [(p.uuid(project_id), p.date(day), kind, grain, channel_key, domain, recipient)
              for day, kind, grain, channel_key, domain, recipient in ordered]
    returned = _insert(
        _table(DailyFirstTouch),
        (("project_id", "uuid"), ("day", "date"), ("kind", "text"), ("grain", "text"), ("channel_key", "text"),
         ("domain", "text"), ("recipient", "text")),
        values,
        "ON CONFLICT (project_id, day, kind, grain, channel_key, domain, recipient) DO NOTHING "
        "RETURNING day, kind, grain, channel_key, domain",
    )
    return [(_as_date(day), kind, grain, channel_key, domain) for day, kind, grain, channel_key, domain in returned]


def add_to_rollups(*, project_id: uuid.UUID, increments: dict[tuple, dict[str, int]]) -> None:
    """Add per-(day, grain, channel_key, domain) increments to the rollups, creating missing rows."""
    if not increments:
        return
    table = _table(DailyRollup)
    p = _Params()
    values = [
        (p.uuid(project_id), p.date(day), grain, channel_key, domain,
         *(counts.get(column, 0) for column in ROLLUP_COUNT_COLUMNS))
        for (day, grain, channel_key, domain), counts in sorted(increments.items())
    ]
    updates = ", ".join(f"{column} = {table}.{column} + excluded.{column}" for column in ROLLUP_COUNT_COLUMNS)
    _insert(
        table,
        (("project_id", "uuid"), ("day", "date"), ("grain", "text"), ("channel_key", "text"), ("domain", "text"),
         *((column, "bigint") for column in ROLLUP_COUNT_COLUMNS)),
        values,
        f"ON CONFLICT (project_id, day, grain, channel_key, domain) DO UPDATE SET {updates}",
    )


# Set-based ingestion (PostgreSQL) ------------------------------------------------------------
#
# A batch is two statements whatever its size. The first creates the batch's new messages; the
# second inserts the events and, from the rows that insert returns (the accepted events only),
# records the first touches and adds one increment per rollup row, all in data-modifying CTEs.
# Each write is sorted by its unique key and the writes run in a fixed order (messages, events,
# first touches, rollups: every later step sorts all of its input first), so concurrent batches
# take row locks in one global order and cannot deadlock. The statements are separate because
# the second must see messages that a concurrent batch committed while the first waited on them.

# UUIDv7 made by PostgreSQL (RFC 9562, as `engagement_platform.ids.new_id` makes them), one per row
# of a statement: the millisecond clock in the first 48 bits, the version 7, then 54 random bits drawn
# once per statement (from one v4 UUID, whose variant bits are kept) and the row's position as a
# 20-bit counter (RFC 9562 section 6.2, method 1). Per row this costs a few string operations
# instead of a random UUID, an overlay and two bit sets (about a fifth of an event insert).
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


@contextmanager
def _binary_cursor():
    """A cursor on Django's connection (so inside its transaction) that binds parameters server-side.

    Arrays then travel in binary, dumped by psycopg's C code: client-side binding, Django's
    default, quotes every array element in Python, which costs more than the inserts themselves.
    """
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor


# Text keys sort bytewise ("C") for the lock order: any order shared by every writer will do, and
# this one is the cheapest to sort and equals Python's code-point order used by the other writers.
_MESSAGES_SQL = (
    f"INSERT INTO {{messages}} (id, project_id, channel_id, client_message_id, from_address, from_domain, "
    f"recipient, created_at) "
    f"SELECT {uuid7_sql('m.position')}, %b, m.channel_id, m.client_message_id, m.from_address, m.from_domain, "
    f"m.recipient, %b "
    f"FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::text[], %b::text[]) WITH ORDINALITY "
    f"AS m(channel_id, client_message_id, from_address, from_domain, recipient, position) "
    f'ORDER BY m.client_message_id COLLATE "C" ON CONFLICT (project_id, client_message_id) DO NOTHING'
)


@cache
def _events_statement() -> str:
    events, messages, channels = _table(MessageEvent), _table(Message), _table(Channel)
    touches, rollups = _table(DailyFirstTouch), _table(DailyRollup)
    kinds = ", ".join(f"'{kind}'" for kind in UNIQUE_COLUMN)
    counts = ", ".join(f"count(*) FILTER (WHERE type = '{kind}') AS {column}" for kind, column in COUNT_COLUMN.items())
    uniques = ", ".join(f"count(*) FILTER (WHERE kind = '{kind}') AS {column}"
                        for kind, column in UNIQUE_COLUMN.items())
    zero_counts = ", ".join(f"0 AS {column}" for column in COUNT_COLUMN.values())
    zero_uniques = ", ".join(f"0 AS {column}" for column in UNIQUE_COLUMN.values())
    sums = ", ".join(f"sum({column})" for column in ROLLUP_COUNT_COLUMNS)
    updates = ", ".join(f"{column} = {rollups}.{column} + excluded.{column}" for column in ROLLUP_COUNT_COLUMNS)
    grains = ", ".join(
        f"('{grain}', {'b.channel_key' if key else chr(39) * 2}, {'b.domain' if dom else chr(39) * 2})"
        for grain, key, dom in grain_keys_for(channel_key="k", domain="d")
    )
    bytewise = ' COLLATE "C"'
    return (
        # Each event finds its stored message through the unique index: LATERAL with LIMIT 1 is not
        # flattened into a join, so it stays one index lookup per event however large the project
        # (a hash join would scan all of the project's messages). The accepted events fetch the
        # message's channel, domain and recipient by primary key: the stored message's count.
        f"WITH inserted AS ("
        f"INSERT INTO {events} (id, project_id, message_id, client_event_id, type, occurred_at, url, user_agent, "
        f"received_at) "
        f"SELECT {uuid7_sql('b.position')}, %b, m.id, b.client_event_id, b.type, b.occurred_at, b.url, "
        f"b.user_agent, %b "
        f"FROM unnest(%b::text[], %b::text[], %b::text[], %b::timestamptz[], %b::text[], %b::text[]) WITH ORDINALITY "
        f"AS b(client_event_id, type, client_message_id, occurred_at, url, user_agent, position) "
        f"CROSS JOIN LATERAL (SELECT id FROM {messages} WHERE project_id = %b "
        f"AND client_message_id = b.client_message_id LIMIT 1) AS m "
        f"ORDER BY b.client_event_id{bytewise} ON CONFLICT (project_id, client_event_id) DO NOTHING "
        f"RETURNING message_id, type, occurred_at), "
        f"facts AS MATERIALIZED ("
        f"SELECT (i.occurred_at AT TIME ZONE 'UTC')::date AS day, i.type, g.grain, g.channel_key, g.domain, "
        f"b.recipient FROM inserted i CROSS JOIN LATERAL ("
        f"SELECT m.recipient, m.from_domain AS domain, ch.external_id::text AS channel_key FROM {messages} m "
        f"JOIN {channels} ch ON ch.id = m.channel_id WHERE m.id = i.message_id LIMIT 1) AS b "
        f"CROSS JOIN LATERAL (VALUES {grains}) AS g(grain, channel_key, domain)), "
        f"touched AS ("
        f"INSERT INTO {touches} (project_id, day, kind, grain, channel_key, domain, recipient) "
        f"SELECT DISTINCT %b::uuid, day, type{bytewise}, grain{bytewise}, channel_key{bytewise}, domain{bytewise}, "
        f"recipient{bytewise} FROM facts "
        f"WHERE type IN ({kinds}) ORDER BY 2, 3, 4, 5, 6, 7 "
        f"ON CONFLICT (project_id, day, kind, grain, channel_key, domain, recipient) DO NOTHING "
        f"RETURNING day, kind, grain, channel_key, domain), "
        f"increments AS ("
        f"SELECT day, grain, channel_key, domain, {counts}, {zero_uniques} FROM facts "
        f"GROUP BY day, grain, channel_key, domain "
        f"UNION ALL SELECT day, grain, channel_key, domain, {zero_counts}, {uniques} FROM touched "
        f"GROUP BY day, grain, channel_key, domain), "
        f"added AS ("
        f"INSERT INTO {rollups} (project_id, day, grain, channel_key, domain, {', '.join(ROLLUP_COUNT_COLUMNS)}) "
        f"SELECT %b::uuid, day, grain{bytewise}, channel_key{bytewise}, domain{bytewise}, {sums} FROM increments "
        f"GROUP BY 2, 3, 4, 5 ORDER BY 2, 3, 4, 5 "
        f"ON CONFLICT (project_id, day, grain, channel_key, domain) DO UPDATE SET {updates} RETURNING 1) "
        f"SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM added)"
    )


@cache
def _events_only_statement() -> str:
    """The events insert of `_events_statement` alone: a bulk load recounts its days' rollups afterwards."""
    insert = _events_statement().split("), facts AS MATERIALIZED (")[0].removeprefix("WITH inserted AS (")
    insert = insert.replace("RETURNING message_id, type, occurred_at", "RETURNING 1")
    return f"WITH inserted AS ({insert}) SELECT count(*) FROM inserted"


def ingest_batch(*, project_id: uuid.UUID, received_at, messages: Sequence[tuple], events: Sequence[tuple],
                 wait_for_flush: bool = True, into_rollups: bool = True) -> int:
    """Store a batch on PostgreSQL; returns how many events were new (the accepted ones).

    `wait_for_flush=False` lets this transaction's commit return before its WAL reaches the disk
    (bulk loads; see `flush_commits`).

    `messages`: (channel row id, client message id, from address, from domain, lowercased
    recipient), one per client message id; existing ones are left as they are.
    `events`: (client event id, type, client message id, occurred_at, url, user agent), ids unique
    within the batch. The caller holds the project's shared rollup lock in the same transaction.
    `into_rollups=False` stores the events only: the caller has marked their days for a recount
    (`mark_days_pending`) and recounts them later (`recount_days`).
    """
    _check_statement_rows(len(events))
    columns = [*map(list, zip(*events, strict=True))]
    with _binary_cursor() as cursor:
        if not wait_for_flush:
            cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute(_MESSAGES_SQL.format(messages=_table(Message)),
                       [project_id, received_at, *map(list, zip(*messages, strict=True))])
        if not into_rollups:
            cursor.execute(_events_only_statement(), [project_id, received_at, *columns, project_id])
            return cursor.fetchone()[0]
        cursor.execute(_events_statement(), [project_id, received_at, *columns, project_id, project_id, project_id])
        accepted, _rollup_rows = cursor.fetchone()
    return accepted


def store_batch_pipelined(*, project_id: uuid.UUID, received_at, messages: Sequence[tuple],
                          events: Sequence[tuple], wait_for_flush: bool = False) -> int:
    """Store a batch's messages and events (no rollups) as one transaction sent in one round trip.

    For bulk loads that recount their days afterwards (`into_rollups=False` of `ingest_batch`), outside
    any other transaction: BEGIN, the commit that need not wait for its flush (see `ingest_batch`), the
    project's shared rollup lock, both inserts and COMMIT go out together in psycopg's pipeline mode. On an
    error the transaction is rolled back before the error is raised. Returns how many events were new.
    """
    _check_statement_rows(len(events))
    columns = [*map(list, zip(*events, strict=True))]
    lock_id = int.from_bytes(project_id.bytes[-4:], "big", signed=True)
    connection.ensure_connection()
    raw = connection.connection
    with connection.wrap_database_errors:
        try:
            with psycopg.Cursor(raw) as cursor, psycopg.Cursor(raw) as counting:
                with raw.pipeline():
                    cursor.execute("BEGIN")
                    if not wait_for_flush:
                        cursor.execute("SET LOCAL synchronous_commit = off")
                    cursor.execute("SELECT pg_advisory_xact_lock_shared(%b, %b)", [ROLLUP_LOCK_NAMESPACE, lock_id])
                    cursor.execute(_MESSAGES_SQL.format(messages=_table(Message)),
                                   [project_id, received_at, *map(list, zip(*messages, strict=True))])
                    counting.execute(_events_only_statement(), [project_id, received_at, *columns, project_id])
                    cursor.execute("COMMIT")
                return counting.fetchone()[0]
        except BaseException:
            if raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                raw.execute("ROLLBACK")
            raise


def flush_commits() -> None:
    """Return once every transaction this session committed without waiting for its flush is on disk.

    A transaction that commits with synchronous_commit on flushes the WAL up to its commit record,
    which lies after every earlier commit of the session (PostgreSQL; nothing to do elsewhere).
    """
    if connection.vendor != "postgresql":
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT txid_current()")  # an xid, so the commit writes and flushes a record


def _grain_values(channel_key: str, domain: str) -> str:
    """The VALUES list of an event's four grain keys, over SQL expressions of its channel key and domain."""
    return ", ".join(
        f"('{grain}', {channel_key if key else chr(39) * 2}, {domain if dom else chr(39) * 2})"
        for grain, key, dom in grain_keys_for(channel_key="k", domain="d")
    )


def recount_day(*, project_id: uuid.UUID, day: date, start, end) -> dict[tuple[str, str, str], dict[str, int]]:
    """PostgreSQL: rewrite one UTC day's first touches from its raw events and return its rollup rows.

    Set-based: the touches are made equal to the DISTINCT of the day's opens and clicks in their
    four grain keys in one statement; the rows, keyed by (grain, channel_key, domain), are one GROUP BY of the
    day's events plus one of the touches just written. The caller holds the exclusive rollup lock.
    """
    events, messages, channels = _table(MessageEvent), _table(Message), _table(Channel)
    touches = _table(DailyFirstTouch)
    expanded = (
        f"FROM {events} e JOIN {messages} m ON m.id = e.message_id JOIN {channels} c ON c.id = m.channel_id "
        f"CROSS JOIN LATERAL (VALUES {_grain_values('c.external_id::text', 'm.from_domain')}) "
        f"AS g(grain, channel_key, domain) WHERE e.project_id = %s AND e.occurred_at >= %s AND e.occurred_at < %s"
    )
    kinds = ", ".join(f"'{kind}'" for kind in UNIQUE_COLUMN)
    counts = ", ".join(f"count(*) FILTER (WHERE e.type = '{kind}')" for kind in COUNT_COLUMN)
    uniques = ", ".join(f"count(*) FILTER (WHERE kind = '{kind}')" for kind in UNIQUE_COLUMN)
    zeros = lambda columns: ", ".join("0" for _ in columns)  # noqa: E731
    sums = ", ".join(f"CAST(sum({column}) AS BIGINT)" for column in ROLLUP_COUNT_COLUMNS)
    with connection.cursor() as cursor:
        # A day is small: starting parallel workers costs more than the whole statement.
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        # Only the differences are written: touches the events no longer support are deleted, missing
        # ones inserted; a ledger that is already right is only read.
        cursor.execute(
            f"WITH expected AS MATERIALIZED (SELECT DISTINCT e.type AS kind, g.grain, g.channel_key, g.domain, "
            f"m.recipient {expanded} AND e.type IN ({kinds})), "
            # NOT IN over NOT NULL columns: a hashed subplan, whatever the estimates after a bulk load.
            f"stale AS (DELETE FROM {touches} t WHERE t.project_id = %s AND t.day = %s AND "
            f"(t.kind, t.grain, t.channel_key, t.domain, t.recipient) NOT IN ("
            f"SELECT kind, grain, channel_key, domain, recipient FROM expected)) "
            f"INSERT INTO {touches} (project_id, day, kind, grain, channel_key, domain, recipient) "
            f"SELECT %s::uuid, %s::date, kind, grain, channel_key, domain, recipient FROM expected "
            f"ON CONFLICT (project_id, day, kind, grain, channel_key, domain, recipient) DO NOTHING",
            [project_id, start, end, project_id, day, project_id, day],
        )
        # The day's first touches are now all written.
        cursor.execute(f"DELETE FROM {_table(FirstTouchesPending)} WHERE project_id = %s AND day = %s",
                       [project_id, day])
        cursor.execute(
            f"SELECT grain, channel_key, domain, {sums} FROM ("
            f"SELECT g.grain, g.channel_key, g.domain, {counts}, {zeros(UNIQUE_COLUMN)} AS u {expanded} "
            f"GROUP BY 1, 2, 3 UNION ALL "
            f"SELECT grain, channel_key, domain, {zeros(COUNT_COLUMN)}, {uniques} FROM {touches} "
            f"WHERE project_id = %s AND day = %s GROUP BY 1, 2, 3) AS x(grain, channel_key, domain, "
            f"{', '.join(ROLLUP_COUNT_COLUMNS)}) GROUP BY 1, 2, 3",
            [project_id, start, end, project_id, day],
        )
        return {(grain, channel_key, domain): dict(zip(ROLLUP_COUNT_COLUMNS, values, strict=True))
                for grain, channel_key, domain, *values in cursor.fetchall()}


# Deferred rollups (PostgreSQL bulk loads) ----------------------------------------------------
#
# A backfill that defers its rollups marks each UTC day before storing events of it (a committed
# mark per day and run), stores events only, and at the end recounts the marked days set-based
# under the exclusive rollup lock, deleting its marks in the same transaction. While it runs it
# holds a session advisory lock on its run id, so another backfill can tell a crashed run's marks
# (lock free) from a live run's and adopt them.

RUN_LOCK_NAMESPACE = 0x52554E53  # "RUNS"


def _run_lock_id(run: uuid.UUID) -> int:
    return int.from_bytes(run.bytes[-4:], "big", signed=True)


def hold_run_lock(run: uuid.UUID) -> None:
    """Take the run's session lock on this thread's connection (released when it closes or by `release_run_lock`)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [RUN_LOCK_NAMESPACE, _run_lock_id(run)])


def release_run_lock(run: uuid.UUID) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [RUN_LOCK_NAMESPACE, _run_lock_id(run)])


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
        for run in runs:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [RUN_LOCK_NAMESPACE, _run_lock_id(run)])
            if cursor.fetchone()[0]:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [RUN_LOCK_NAMESPACE, _run_lock_id(run)])
                dead.append(run)
    return dead


def pending_days(*, project_id: uuid.UUID, runs: Sequence[uuid.UUID]) -> set[date]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT day FROM {_table(PendingRecount)} WHERE project_id = %s AND run = ANY(%s)",
                       [project_id, list(runs)])
        return {_as_date(row[0]) for row in cursor.fetchall()}


def _days_events_sql(days_param: str = "days") -> str:
    """The events of the UTC days `%(days)s` with their message's channel key, domain and recipient."""
    events, messages, channels = _table(MessageEvent), _table(Message), _table(Channel)
    return (
        f"SELECT (e.occurred_at AT TIME ZONE 'UTC')::date AS day, e.type, c.external_id::text AS ch, "
        f"m.from_domain AS dom, m.recipient FROM {events} e JOIN {messages} m ON m.id = e.message_id "
        f"JOIN {channels} c ON c.id = m.channel_id WHERE e.project_id = %(p)s AND e.occurred_at >= %(start)s "
        f"AND e.occurred_at < %(end)s AND (e.occurred_at AT TIME ZONE 'UTC')::date = ANY(%({days_param})s)"
    )


def _days_params(project_id: uuid.UUID, days: Sequence[date], **more) -> dict:
    return {"p": project_id, "start": day_bounds(days[0])[0], "end": day_bounds(days[-1])[1], "days": list(days),
            **more}


def recount_days(*, project_id: uuid.UUID, days: Sequence[date], runs: Sequence[uuid.UUID]) -> int:
    """Rewrite the rollup rows of `days` from raw events, set-based; clear the runs' recount marks.

    Same rule as `recount_day` (each event feeds its four grain keys; unique opens and clicks are
    the day's distinct recipients per key), counted from the days' events in one statement. The days'
    first touches are not written: they are deleted and the days marked (`FirstTouchesPending`), and
    the first ingestion batch with an event of such a day writes them (`write_pending_first_touches`).
    The caller holds the exclusive rollup lock in the same transaction. Returns the days' rollup rows.
    """
    days = sorted(set(days))
    if not days:
        return 0
    touches, rollups, pending = _table(DailyFirstTouch), _table(DailyRollup), _table(FirstTouchesPending)
    counts = ", ".join(f"count(*) FILTER (WHERE type = '{kind}') AS {column}" for kind, column in COUNT_COLUMN.items())
    summed = ", ".join(f"sum(x.{column}) AS {column}" for column in COUNT_COLUMN.values())
    uniques = ", ".join(f"count(DISTINCT b.recipient) FILTER (WHERE b.type = '{kind}') AS {column}"
                        for kind, column in UNIQUE_COLUMN.items())
    kinds = ", ".join(f"'{kind}'" for kind in UNIQUE_COLUMN)
    values = ", ".join([*(f"n.{column}" for column in COUNT_COLUMN.values()),
                        *(f"coalesce(u.{column}, 0)" for column in UNIQUE_COLUMN.values())])
    params = _days_params(project_id, days, runs=list(runs))
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute(f"DELETE FROM {touches} WHERE project_id = %(p)s AND day = ANY(%(days)s)", params)
        cursor.execute(f"DELETE FROM {rollups} WHERE project_id = %(p)s AND day = ANY(%(days)s)", params)
        cursor.execute(
            f"WITH base AS MATERIALIZED ({_days_events_sql()}), "
            f"uniques AS (SELECT b.day, g.grain, g.channel_key, g.domain, {uniques} FROM base b "
            f"CROSS JOIN LATERAL (VALUES {_grain_values('b.ch', 'b.dom')}) AS g(grain, channel_key, domain) "
            f"WHERE b.type IN ({kinds}) GROUP BY 1, 2, 3, 4), "
            f"totals AS (SELECT x.day, g.grain, g.channel_key, g.domain, {summed} FROM ("
            f"SELECT day, ch, dom, {counts} FROM base GROUP BY 1, 2, 3) AS x "
            f"CROSS JOIN LATERAL (VALUES {_grain_values('x.ch', 'x.dom')}) AS g(grain, channel_key, domain) "
            f"GROUP BY 1, 2, 3, 4) "
            f"INSERT INTO {rollups} (project_id, day, grain, channel_key, domain, {', '.join(ROLLUP_COUNT_COLUMNS)}) "
            f"SELECT %(p)s::uuid, n.day, n.grain, n.channel_key, n.domain, {values} FROM totals n "
            f"LEFT JOIN uniques u ON u.day = n.day AND u.grain = n.grain AND u.channel_key = n.channel_key "
            f"AND u.domain = n.domain",
            params,
        )
        rows = cursor.rowcount
        cursor.execute(f"INSERT INTO {pending} (project_id, day, created_at) SELECT %(p)s, day, now() "
                       f"FROM unnest(%(days)s::date[]) AS d(day) ON CONFLICT (project_id, day) DO NOTHING", params)
        cursor.execute(f"DELETE FROM {_table(PendingRecount)} WHERE project_id = %(p)s AND day = ANY(%(days)s) "
                       f"AND run = ANY(%(runs)s)", params)
    return rows


def first_touches_pending(*, project_id: uuid.UUID, days: Iterable[date]) -> list[date]:
    """Which of `days` have no first touches written yet (PostgreSQL; see `recount_days`)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT day FROM {_table(FirstTouchesPending)} WHERE project_id = %s AND day = ANY(%s) "
                       f"ORDER BY day", [project_id, sorted(set(days))])
        return [_as_date(row[0]) for row in cursor.fetchall()]


def write_pending_first_touches(*, project_id: uuid.UUID, days: Sequence[date]) -> None:
    """Write the first touches of `days` from their raw events and clear their marks.

    The caller holds the exclusive rollup lock in the same transaction, so the touches written are
    exactly the ones the days' rollups counted.
    """
    days = sorted(set(days))
    if not days:
        return
    touches, pending = _table(DailyFirstTouch), _table(FirstTouchesPending)
    kinds = ", ".join(f"'{kind}'" for kind in UNIQUE_COLUMN)
    bytewise = ' COLLATE "C"'  # the ledger's key columns compare bytewise (migration 0005): sorted the same way
    params = _days_params(project_id, days)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute(
            f"INSERT INTO {touches} (project_id, day, kind, grain, channel_key, domain, recipient) "
            f"SELECT DISTINCT %(p)s::uuid, b.day, b.type{bytewise}, g.grain{bytewise}, g.channel_key{bytewise}, "
            f"g.domain{bytewise}, b.recipient{bytewise} FROM ({_days_events_sql()}) AS b "
            f"CROSS JOIN LATERAL (VALUES {_grain_values('b.ch', 'b.dom')}) AS g(grain, channel_key, domain) "
            f"WHERE b.type IN ({kinds}) "
            f"ON CONFLICT (project_id, day, kind, grain, channel_key, domain, recipient) DO NOTHING",
            params,
        )
        cursor.execute(f"DELETE FROM {pending} WHERE project_id = %(p)s AND day = ANY(%(days)s)", params)
