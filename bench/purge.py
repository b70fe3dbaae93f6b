"""`manage.py purge_expired` over millions of events, on PostgreSQL's monthly partitions.

    python bench/purge.py --events 10000000 --render-events 1000000 [--days 120] [--keep-db]

Loads one project (800 days' retention) with N message events of bench/datagen.py over the DAYS that end now,
their daily rollups (by SQL, as `make bench` does), and M render events of one render spread over the same days
with their counters; the worker's partition upkeep has made the months first, so each month's rows sit in its
own partition. Then the plan is cut to 30 days and `purge_expired` runs as the worker runs it: the months
wholly older than the longest retention are dropped (their render events taken off the counters, their
message events' keys deleted, each month one transaction), and the rest of the expired month is deleted row
by row, 5,000 rows per transaction, with the day, week and month straddling the cutoff recounted. Prints the
command's own report, its wall time, the rows left, and checks that the counters and the rollups left equal a
recount from the events kept.
"""

import argparse
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import datagen, pg  # noqa: E402
from bench.bulk import load_message_events, rollups_by_sql, rollups_differ  # noqa: E402
from bench.edge_window import LATEST_OFFSET, environment  # noqa: E402

DB = "engagement_bench_purge"
TABLES = {"message": "reports_message", "message_event": "reports_messageevent", "rollup": "reports_dailyrollup",
          "channel": "reports_channel"}


def log(message: str) -> None:
    print(f"[purge {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def manage(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip()


def load(env: dict, *, events: int, render_events: int, days: int) -> tuple[str, str]:
    manage(env, "migrate", "--noinput", "-v", "0")
    project = manage(env, "createproject", "bench-purge", "--retention-days", "800",
                     "--rate-limit", "1000000000").splitlines()[-1]
    log(manage(env, "upkeep_partitions"))
    start = datetime.now(UTC) - timedelta(days=days - 1) - LATEST_OFFSET
    render = uuid.uuid4()
    with pg.connect(DB) as conn:
        for external in datagen.CHANNELS:
            conn.execute("INSERT INTO reports_channel (id, project_id, external_id, name, is_default, created_at) "
                         "VALUES (%s, %s, %s, '', false, now())", [uuid.uuid4(), project, external])
        channel_ids = dict(conn.execute("SELECT external_id::text, id FROM reports_channel WHERE project_id = %s",
                                        [project]).fetchall())
        messages = datagen.messages_for(events)
        seconds = load_message_events(conn, tables=TABLES, project_id=project, channel_ids=channel_ids, first=0,
                                      last=messages, start=start, days=days,
                                      progress=lambda done, total: log(f"  messages {done:,}/{total:,}"))
        log(f"{datagen.events_in(0, messages):,} message events (and their keys) in {seconds:.1f}s")
        log(f"rollups by SQL in {rollups_by_sql(conn, tables=TABLES, project_id=project):.1f}s")
        conn.execute("INSERT INTO renders_render (id, project_id, name, file, size_bytes, status, page_sizes, "
                     "created_at) VALUES (%s, %s, 'Quote.pdf', 'renders/bench.pdf', 10, 'ready', '[]', %s)",
                     [render, project, start])
        started = time.perf_counter()
        step = days * 86400 / max(1, render_events)
        with conn.transaction():
            conn.execute(
                "INSERT INTO renders_engagementevent (id, project_id, render_id, event_type, actor_kind, source_ip, "
                "user_agent, created_at) SELECT gen_random_uuid(), %(p)s, %(r)s, "
                "(ARRAY['viewed','downloaded','printed'])[i %% 3 + 1], 'partner', '10.0.0.1', 'bench/1.0', "
                "%(start)s + i * make_interval(secs => %(step)s) FROM generate_series(0, %(n)s - 1) AS i",
                {"p": project, "r": render, "start": start, "step": step, "n": render_events})
            conn.execute("INSERT INTO renders_engagementcounter (project_id, render_id, key, shard, count) "
                         "SELECT project_id, render_id, event_type, 0, count(*) FROM renders_engagementevent "
                         "WHERE render_id = %s GROUP BY 1, 2, 3", [render])
        log(f"{render_events:,} render events and their counters in {time.perf_counter() - started:.1f}s")
        conn.execute("VACUUM ANALYZE")
    return project, str(render)


def counts(conn, project: str) -> dict:
    return {
        "message events": conn.execute("SELECT count(*) FROM reports_messageevent WHERE project_id = %s",
                                       [project]).fetchone()[0],
        "event keys": conn.execute("SELECT count(*) FROM reports_messageeventkey WHERE project_id = %s",
                                   [project]).fetchone()[0],
        "render events": conn.execute("SELECT count(*) FROM renders_engagementevent WHERE project_id = %s",
                                      [project]).fetchone()[0],
        "partitions": conn.execute("SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                   "WHERE c.relkind = 'r'").fetchone()[0],
    }


def counters_differ(conn, render: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM (SELECT key, sum(count) AS n FROM renders_engagementcounter WHERE render_id = %(r)s "
        "GROUP BY key HAVING sum(count) <> 0) AS c FULL JOIN (SELECT event_type AS key, count(*) AS n "
        "FROM renders_engagementevent WHERE render_id = %(r)s GROUP BY 1) AS e USING (key) "
        "WHERE c.n IS DISTINCT FROM e.n", {"r": render}).fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--render-events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    pg.drop_database(DB)
    pg.create_database(DB)
    env = environment(DB, "/tmp")
    try:
        project, render = load(env, events=args.events, render_events=args.render_events, days=args.days)
        with pg.connect(DB) as conn:
            before = counts(conn, project)
            log(f"before: {before}")
            conn.execute("UPDATE apikeys_project SET retention_days = 30 WHERE id = %s", [project])
        started = time.perf_counter()
        report = manage(env, "purge_expired")
        seconds = time.perf_counter() - started
        for line in report.splitlines():
            log(f"  {line}")
        with pg.connect(DB) as conn:
            after = counts(conn, project)
            differ, total = rollups_differ(conn, tables=TABLES, project_id=project)
            oldest = conn.execute("SELECT min(occurred_at) FROM reports_messageevent WHERE project_id = %s",
                                  [project]).fetchone()[0]
            counter_rows = counters_differ(conn, render)
        log(f"after: {after}; oldest message event kept {oldest:%Y-%m-%dT%H:%M:%SZ}")
        print(f"purge_expired over {before['message events']:,} message events and {before['render events']:,} "
              f"render events: {seconds:.1f} s wall (command start included); deleted "
              f"{before['message events'] - after['message events']:,} message events and "
              f"{before['render events'] - after['render events']:,} render events; partitions "
              f"{before['partitions']} -> {after['partitions']}; rollup rows differing from a recount: "
              f"{differ} of {total}; counters differing from a recount: {counter_rows}")
    finally:
        if not args.keep_db:
            pg.drop_database(DB)


if __name__ == "__main__":
    main()
