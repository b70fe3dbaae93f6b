"""The two atomic upserts behind event recording.

Both statements are the same SQL on PostgreSQL and on SQLite (3.35+): an
`INSERT ... ON CONFLICT ... DO UPDATE` is a single atomic step on each, and
`RETURNING` tells whether the dedupe mark was claimed.
"""

from django.db import connection

from renders.models import DedupeMark, EngagementCounter


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


def add_to_counters(*, project_id, render_id, increments: dict[str, int]) -> None:
    """Add `increments` ({counter key: n}) to a render's counters, creating missing rows."""
    if not increments:
        return
    table = EngagementCounter._meta.db_table
    rows = sorted(increments.items())  # a fixed order avoids lock-order deadlocks
    values = ", ".join(["(%s, %s, %s, %s)"] * len(rows))
    params = []
    for key, amount in rows:
        params += [_uuid_param(project_id), _uuid_param(render_id), key, amount]
    sql = (
        f"INSERT INTO {table} (project_id, render_id, key, count) VALUES {values} "
        f"ON CONFLICT (project_id, render_id, key) DO UPDATE SET count = {table}.count + excluded.count"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _uuid_param(value):
    """UUIDs as the backend stores them (native on PostgreSQL, 32 hex characters on SQLite)."""
    return value if connection.vendor == "postgresql" else value.hex
