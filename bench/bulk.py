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
                f"INSERT INTO {counter} (project_id, render_id, key, count) "
                f"SELECT %(p)s, %(r)s, (ARRAY['viewed','downloaded','printed'])[i %% 3 + 1], count(*) "
                f"FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i GROUP BY 3 "
                f"ON CONFLICT (project_id, render_id, key) DO UPDATE SET count = {counter}.count + excluded.count",
                {"p": project_id, "r": render_id, "lo": lo, "hi": hi},
            )
    conn.execute("SET synchronous_commit = on")


def load_message_events(conn, *, tables, project_id, channel_ids: dict, first: int, last: int, start, days: int,
                        chunk=400_000, progress=None) -> float:
    """Messages first..last-1 and their events (as datagen.message_events); returns seconds taken."""
    msg, ev = tables["message"], tables["message_event"]
    channels = [str(channel_ids[c]) for c in CHANNELS]
    started = time.perf_counter()
    conn.execute("SET synchronous_commit = off")
    t0 = (f"(%(start)s::timestamptz + (i %% %(days)s) * interval '1 day' "
          f"+ ((i * 7919) %% {SECONDS_SPREAD}) * interval '1 second')")
    for lo in range(first, last, chunk):
        hi = min(last, lo + chunk)
        params = {"p": project_id, "ch": channels, "start": start, "days": days, "lo": lo, "hi": hi}
        with conn.transaction():
            conn.execute(
                f"INSERT INTO {msg} (id, project_id, channel_id, client_message_id, from_address, from_domain, "
                f"recipient, render_id, created_at) "
                f"SELECT {_seq_uuid('8000', 'i')}, %(p)s, (%(ch)s::uuid[])[i %% 4 + 1], 'm' || i, "
                f"'news@d' || (i %% 10) || '.example', 'd' || (i %% 10) || '.example', "
                f"'r' || ((i * 31) %% {RECIPIENTS}) || '@rcpt.example', NULL, {t0} "
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
    conn.execute("SET synchronous_commit = on")
    return time.perf_counter() - started
