"""Bulk loading straight into the tables, for the sizes the commands cannot load within the time budget.

Same data as bench/datagen.py (same formulas), generated inside PostgreSQL with generate_series,
then the app's own derived data is made consistent: render counters here, report rollups by
`manage.py rebuild_rollups`.
"""

import time

from bench.datagen import CHANNELS, RECIPIENTS, RENDER_EVENT_STEP, SECONDS_SPREAD

_SEQ_UUID = "('00000000-0000-7000-{tag}-' || lpad(to_hex({expr}), 12, '0'))::uuid"


def _seq_uuid(tag: str, expr: str) -> str:
    return _SEQ_UUID.format(tag=tag, expr=expr)


def load_render_events(conn, *, tables, project_id, render_id, first: int, last: int, start, id_tag: str,
                       chunk=250_000):
    """Events first..last-1 of the render (as datagen.write_render_ndjson would), and its counters."""
    ev, counter = tables["render_event"], tables["render_counter"]
    step = RENDER_EVENT_STEP.total_seconds()
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET session_replication_role = replica")  # see load_message_events
    conn.execute("SET maintenance_work_mem = '512MB'")
    rebuild = _drop_secondary_indexes(conn, ev)
    for lo in range(first, last, chunk):
        hi = min(last, lo + chunk)
        with conn.transaction():
            conn.execute(
                f"INSERT INTO {ev} (id, project_id, render_id, share_id, event_type, actor_kind, source_ip, "
                f"user_agent, metadata, created_at) "
                f"SELECT {_seq_uuid(id_tag, 'i')}, %(p)s, %(r)s, NULL, "
                f"(ARRAY['viewed','downloaded','printed'])[i %% 3 + 1], 'partner', "
                f"('10.' || ((i >> 16) & 255) || '.' || ((i >> 8) & 255) || '.' || (i & 255))::inet, "
                f"'bench/1.0', jsonb_build_object('n', i), %(start)s + i * make_interval(secs => %(step)s) "
                f"FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i",
                {"p": project_id, "r": render_id, "start": start, "step": step, "lo": lo, "hi": hi},
            )
            conn.execute(
                f"INSERT INTO {counter} (project_id, render_id, key, shard, count) "
                f"SELECT %(p)s, %(r)s, (ARRAY['viewed','downloaded','printed'])[i %% 3 + 1], 0, count(*) "
                f"FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i GROUP BY 3 "
                f"ON CONFLICT (project_id, render_id, key, shard) "
                f"DO UPDATE SET count = {counter}.count + excluded.count",
                {"p": project_id, "r": render_id, "lo": lo, "hi": hi},
            )
    for statement in rebuild:
        conn.execute(statement)
    conn.execute("SET session_replication_role = origin")
    conn.execute("SET synchronous_commit = on")


def load_message_events(conn, *, tables, project_id, channel_ids: dict, first: int, last: int, start, days: int,
                        chunk=500_000, progress=None) -> float:
    """Messages first..last-1 and their events (as datagen.message_events); returns seconds taken.

    Loaded the way one bulk-loads PostgreSQL: secondary indexes and unique constraints of the two
    tables dropped and rebuilt afterwards (one sorted build instead of millions of random
    inserts), foreign-key triggers off for this session (the generated rows are consistent by
    construction), asynchronous commit. The rebuilt constraints still check every row.
    """
    msg, ev = tables["message"], tables["message_event"]
    channels = [str(channel_ids[c]) for c in CHANNELS]
    started = time.perf_counter()
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET session_replication_role = replica")
    conn.execute("SET maintenance_work_mem = '512MB'")
    rebuild = [_drop_secondary_indexes(conn, table) for table in (msg, ev)]
    t0 = (f"(%(start)s::timestamptz + (i %% %(days)s) * interval '1 day' "
          f"+ ((i * 7919) %% {SECONDS_SPREAD}) * interval '1 second')")
    for lo in range(first, last, chunk):
        hi = min(last, lo + chunk)
        params = {"p": project_id, "ch": channels, "start": start, "days": days, "lo": lo, "hi": hi}
        with conn.transaction():
            conn.execute(
                f"INSERT INTO {msg} (id, project_id, channel_id, client_message_id, from_address, from_domain, "
                f"recipient, created_at) "
                f"SELECT {_seq_uuid('8000', 'i')}, %(p)s, (%(ch)s::uuid[])[i %% 4 + 1], 'm' || i, "
                f"'news@d' || (i %% 10) || '.example', 'd' || (i %% 10) || '.example', "
                f"'r' || ((i * 31) %% {RECIPIENTS}) || '@rcpt.example', {t0} "
                f"FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i",
                params,
            )
            conn.execute(
                f"INSERT INTO {ev} (id, project_id, message_id, client_event_id, type, occurred_at, url, "
                f"user_agent, received_at) "
                f"SELECT {_seq_uuid('9000', 'i * 4 + k.n')}, %(p)s, {_seq_uuid('8000', 'i')}, 'e' || i || k.suffix, "
                f"k.type, {t0} + k.off * interval '1 second', "
                f"CASE WHEN k.n = 3 THEN 'https://example.com/p/' || (i %% 100) END, NULL, now() "
                f"FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i CROSS JOIN "
                f"(VALUES (0, 's', 'sent', 0), (1, 'd', 'delivered', 5), (2, 'o', 'opened', 600), "
                f"(3, 'c', 'clicked', 900)) AS k(n, suffix, type, off) "
                f"WHERE k.n < 2 OR (k.n = 2 AND i %% 10 < 5) OR (k.n = 3 AND i %% 10 < 2)",
                params,
            )
        if progress:
            progress(hi - first, last - first)
    for statements in rebuild:
        for statement in statements:
            conn.execute(statement)
    _event_keys_fill(conn, events=ev, keys=tables.get("message_event_key", "reports_messageeventkey"),
                     first=first, last=last, chunk=chunk)
    conn.execute("SET session_replication_role = origin")
    conn.execute("SET synchronous_commit = on")
    return time.perf_counter() - started


def _event_keys_fill(conn, *, events: str, keys: str, first: int, last: int, chunk: int) -> None:
    """The loaded events' idempotency keys (reports.MessageEventKey): the partitioned events table keeps none
    of its own, and ingestion stores an event only when its key is new."""
    for lo in range(first, last, chunk):
        with conn.transaction():
            conn.execute(f"INSERT INTO {keys} (project_id, client_event_id, occurred_at) "
                         f"SELECT project_id, client_event_id, occurred_at FROM {events} "
                         f"WHERE message_id BETWEEN {_seq_uuid('8000', '%(lo)s::bigint')} "
                         f"AND {_seq_uuid('8000', '%(hi)s::bigint - 1')} ON CONFLICT DO NOTHING",
                         {"lo": lo, "hi": min(last, lo + chunk)})


def _drop_secondary_indexes(conn, table: str) -> list[str]:
    """Drop the table's indexes other than its primary key; return the statements that recreate them."""
    rows = conn.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), c.conname, "
        "pg_get_constraintdef(c.oid) FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid "
        "AND c.conrelid = i.indrelid WHERE i.indrelid = %s::regclass AND NOT i.indisprimary",
        [table]).fetchall()
    recreate = []
    for index, indexdef, constraint, constraintdef in rows:
        if constraint:
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{constraint}"')
            recreate.append(f'ALTER TABLE {table} ADD CONSTRAINT "{constraint}" {constraintdef}')
        else:
            conn.execute(f"DROP INDEX {index}")
            # A partitioned table's index is defined `ON ONLY` the parent (its partitions' copies are attached to
            # it): recreated as it reads, no partition would have one. Recreated on the table, each gets its own.
            recreate.append(indexdef.replace(" ON ONLY ", " ON ", 1))
    return recreate


ROLLUP_COLUMNS = ("project_id, day, grain, channel_key, domain, "
                  "sent, delivered, opens, clicks, unique_opens, unique_clicks")


def _rollup_select(tables) -> str:
    """The daily rollup rows of one project computed from its raw events in one set-based query.

    Same rule as `rebuild_rollups`: each event feeds one row of each of the four grains, and
    unique opens/clicks are the distinct recipients per UTC day within each grain key. Counts are
    aggregated before the grain expansion, distinct recipients after a DISTINCT of the touches,
    so the expensive sort only sees opens and clicks.
    """
    ev, msg, channel = tables["message_event"], tables["message"], tables["channel"]
    base = (f"SELECT (e.occurred_at AT TIME ZONE 'UTC')::date AS day, e.type, c.external_id::text AS ch, "
            f"m.from_domain AS dom, m.recipient FROM {ev} e JOIN {msg} m ON m.id = e.message_id "
            f"JOIN {channel} c ON c.id = m.channel_id WHERE e.project_id = %(p)s")
    grains = ("CROSS JOIN LATERAL (VALUES ('all', '', ''), ('channel', x.ch, ''), ('domain', '', x.dom), "
              "('channel_domain', x.ch, x.dom)) AS g(grain, ck, gd)")
    return (
        f"SELECT %(p)s::uuid, c4.day, c4.grain, c4.ck, c4.gd, c4.s, c4.d, c4.o, c4.k, "
        f"coalesce(u4.uo, 0), coalesce(u4.uc, 0) FROM ("
        f"SELECT x.day, g.grain, g.ck, g.gd, sum(x.s)::bigint AS s, sum(x.d)::bigint AS d, "
        f"sum(x.o)::bigint AS o, sum(x.k)::bigint AS k FROM ("
        f"SELECT day, ch, dom, count(*) FILTER (WHERE type = 'sent') AS s, "
        f"count(*) FILTER (WHERE type = 'delivered') AS d, count(*) FILTER (WHERE type = 'opened') AS o, "
        f"count(*) FILTER (WHERE type = 'clicked') AS k FROM ({base}) AS b GROUP BY day, ch, dom) AS x "
        f"{grains} GROUP BY x.day, g.grain, g.ck, g.gd) AS c4 LEFT JOIN ("
        f"SELECT x.day, g.grain, g.ck, g.gd, count(DISTINCT x.recipient) FILTER (WHERE x.type = 'opened') AS uo, "
        f"count(DISTINCT x.recipient) FILTER (WHERE x.type = 'clicked') AS uc FROM ("
        f"SELECT DISTINCT day, type, ch, dom, recipient FROM ({base}) AS b WHERE type IN ('opened', 'clicked')"
        f") AS x {grains} GROUP BY x.day, g.grain, g.ck, g.gd) AS u4 "
        f"ON u4.day = c4.day AND u4.grain = c4.grain AND u4.ck = c4.ck AND u4.gd = c4.gd"
    )


def rollups_by_sql(conn, *, tables, project_id) -> float:
    """Replace the project's rollup rows by the set-based computation; returns seconds taken.

    Used for the full-size load, where `rebuild_rollups` (day by day, first touches through
    Python) would not fit the time budget; the quick run checks both give the same rows.
    """
    started = time.perf_counter()
    rollup = tables["rollup"]
    with conn.transaction():
        conn.execute("SET LOCAL work_mem = '256MB'")
        conn.execute(f"DELETE FROM {rollup} WHERE project_id = %(p)s", {"p": project_id})
        conn.execute(f"INSERT INTO {rollup} ({ROLLUP_COLUMNS}) {_rollup_select(tables)}", {"p": project_id})
        # Bulk-loaded events are human traffic (the column's default): each class's figures follow.
        conn.execute(f"UPDATE {rollup} SET opens_human = opens, clicks_human = clicks, "
                     f"unique_opens_human = unique_opens, unique_clicks_human = unique_clicks "
                     f"WHERE project_id = %(p)s", {"p": project_id})
    return time.perf_counter() - started


def rollups_differ(conn, *, tables, project_id) -> tuple[int, int]:
    """(rows that differ between the stored rollups and the set-based computation, stored rows)."""
    rollup = tables["rollup"]
    stored = f"SELECT {ROLLUP_COLUMNS} FROM {rollup} WHERE project_id = %(p)s"
    computed = _rollup_select(tables)
    differ = conn.execute(
        f"SELECT count(*) FROM (({stored} EXCEPT ALL {computed}) UNION ALL ({computed} EXCEPT ALL {stored})) AS d",
        {"p": project_id}).fetchone()[0]
    total = conn.execute(f"SELECT count(*) FROM {rollup} WHERE project_id = %(p)s", {"p": project_id}).fetchone()[0]
    return differ, total
