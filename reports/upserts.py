"""The raw-SQL writes behind ingestion and rollups.

Every statement is the same SQL on PostgreSQL and on SQLite (3.35+): multi-row
`INSERT ... ON CONFLICT` with `RETURNING`. Callers pass rows sorted by their unique key, so
concurrent transactions take row locks in one order and cannot deadlock each other.
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


def _uuid(value: uuid.UUID | None):
    """UUIDs as the backend stores them (native on PostgreSQL, 32 hex characters on SQLite)."""
    if value is None:
        return None
    return value if connection.vendor == "postgresql" else value.hex


def _datetime(value):
    return connection.ops.adapt_datetimefield_value(value)


def _date(value: date):
    return connection.ops.adapt_datefield_value(value)


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _chunks(rows: Sequence, columns: int):
    size = max(1, MAX_PARAMS_PER_STATEMENT // columns)
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _insert(table: str, columns: Sequence[str], rows: Sequence[Sequence], suffix: str) -> list[tuple]:
    """Multi-row INSERT of `rows` in chunks; returns what `suffix`'s RETURNING yields, if any."""
    returned: list[tuple] = []
    column_list = ", ".join(columns)
    placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
    with connection.cursor() as cursor:
        for chunk in _chunks(rows, len(columns)):
            params = [value for row in chunk for value in row]
            cursor.execute(
                f"INSERT INTO {table} ({column_list}) VALUES {', '.join([placeholder] * len(chunk))} {suffix}",
                params,
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
    values = [
        (_uuid(row["id"]), _uuid(project_id), _uuid(row["channel_id"]), row["client_message_id"],
         row["from_address"], row["from_domain"], row["recipient"], _uuid(row["render_id"]),
         _datetime(row["created_at"]))
        for row in ordered
    ]
    _insert(
        _table(Message),
        ("id", "project_id", "channel_id", "client_message_id", "from_address", "from_domain", "recipient",
         "render_id", "created_at"),
        values,
        "ON CONFLICT (project_id, client_message_id) DO NOTHING",
    )


def insert_events(*, project_id: uuid.UUID, rows: Iterable[dict]) -> set[str]:
    """Insert events idempotently; returns the client event ids that were new (the accepted ones)."""
    ordered = sorted(rows, key=lambda row: row["client_event_id"])
    values = [
        (_uuid(row["id"]), _uuid(project_id), _uuid(row["message_id"]), row["client_event_id"], row["type"],
         _datetime(row["occurred_at"]), row["url"], row["user_agent"], _datetime(row["received_at"]))
        for row in ordered
    ]
    returned = _insert(
        _table(MessageEvent),
        ("id", "project_id", "message_id", "client_event_id", "type", "occurred_at", "url", "user_agent",
         "received_at"),
        values,
        "ON CONFLICT (project_id, client_event_id) DO NOTHING RETURNING client_event_id",
    )
    return {row[0] for row in returned}


FirstTouch = tuple[date, str, str, str, str, str]  # (day, kind, grain, channel_key, domain, recipient)


def insert_first_touches(*, project_id: uuid.UUID, touches: Iterable[FirstTouch]) -> list[tuple]:
    """Record first touches; returns (day, kind, grain, channel_key, domain) of each that was new."""
    ordered = sorted(set(touches))
    values = [(_uuid(project_id), _date(day), kind, grain, channel_key, domain, recipient)
              for day, kind, grain, channel_key, domain, recipient in ordered]
    returned = _insert(
        _table(DailyFirstTouch),
        ("project_id", "day", "kind", "grain", "channel_key", "domain", "recipient"),
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
    values = [
        (_uuid(project_id), _date(day), grain, channel_key, domain,
         *(counts.get(column, 0) for column in ROLLUP_COUNT_COLUMNS))
        for (day, grain, channel_key, domain), counts in sorted(increments.items())
    ]
    updates = ", ".join(f"{column} = {table}.{column} + excluded.{column}" for column in ROLLUP_COUNT_COLUMNS)
    _insert(
        table,
        ("project_id", "day", "grain", "channel_key", "domain", *ROLLUP_COUNT_COLUMNS),
        values,
        f"ON CONFLICT (project_id, day, grain, channel_key, domain) DO UPDATE SET {updates}",
    )
