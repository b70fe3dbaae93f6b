"""The raw-SQL writes behind ingestion and rollups.

Every write is `INSERT ... ON CONFLICT` with `RETURNING`, the same semantics on PostgreSQL and
on SQLite (3.35+). Rows go in as multi-row VALUES on SQLite and as one unnested array per
column on PostgreSQL (a short, cached statement whatever the batch size). Rows are sorted by
their unique key first, so concurrent transactions take row locks in one order and cannot
deadlock each other.
"""

import uuid
from collections.abc import Iterable, Sequence
from datetime import date

from django.db import connection

from reports.grains import ROLLUP_COUNT_COLUMNS
from reports.models import DailyFirstTouch, DailyRollup, Message, MessageEvent

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
         row["from_address"], row["from_domain"], row["recipient"], p.uuid(row["render_id"]),
         p.datetime(row["created_at"]))
        for row in ordered
    ]
    _insert(
        _table(Message),
        (("id", "uuid"), ("project_id", "uuid"), ("channel_id", "uuid"), ("client_message_id", "text"),
         ("from_address", "text"), ("from_domain", "text"), ("recipient", "text"), ("render_id", "uuid"),
         ("created_at", "timestamptz")),
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
