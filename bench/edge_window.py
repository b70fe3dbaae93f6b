"""The default report window (`to` = now) against the same 30 days aligned to UTC midnight, at N events.

    python bench/edge_window.py load --db NAME --events 1000000   # a database with N events over 80 days
    python bench/edge_window.py measure --db NAME                 # p50 of both windows through gunicorn
    python bench/edge_window.py ingest --db NAME                  # POST /v1/messages/events, events/s
    python bench/edge_window.py drop --db NAME

`measure` also times the default window as asked 30 seconds after midnight (`from` = 30 days
before, `to` = now), whose first day is almost whole: the edge's cost at its largest.
`load` creates the database, migrates it, makes a project and a key, creates the four channels
through the API, bulk-loads the events of bench/datagen.py over the 80 days that end now (today's
events included, none dated after now) and computes the rollups by SQL, as `make bench` does for
its large size. `measure` starts gunicorn (2 workers, production settings) on that database and
sends 41 sequential requests of each window in turn, bodies built afresh (Cache-Control: no-cache).
"""

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import datagen, pg  # noqa: E402
from bench.bulk import load_message_events, rollups_by_sql  # noqa: E402
from bench.loadgen import run_wrk  # noqa: E402
from bench.server import Server  # noqa: E402

DAYS = 80
REQUESTS = 41
WARMUP = 25  # rounds: every server thread's database connection has prepared its statements (steady state)
# The last generated event of a day is 86,000 + 900 s after the day's start: start early enough that
# every event is dated before now.
LATEST_OFFSET = timedelta(seconds=datagen.SECONDS_SPREAD + 900)
INGEST_BATCH = 1000
INGEST_CONNECTIONS = 8
INGEST_SECONDS = 15
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "14"))


def log(message: str) -> None:
    print(f"[edge-window {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def environment(db: str, tmp: str) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "engagement_platform.settings",
        "DATABASE_URL": pg.database_url(db),
        "CACHE_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "MEDIA_ROOT": os.path.join(tmp, "media"),
        "STATIC_ROOT": os.path.join(tmp, "static"),
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    }


def manage(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return (result.stdout.strip().splitlines() or [""])[-1]


def state_path(db: str) -> str:
    return os.path.join(tempfile.gettempdir(), f"edge-window-{db}.json")


def request(base_url: str, path: str, key: str, body: dict | None = None) -> tuple[float, int]:
    headers = {"Authorization": f"Bearer {key}", "Cache-Control": "no-cache"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    started = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(base_url + path, data=data, headers=headers)) as response:
        response.read()
        return time.perf_counter() - started, response.status


def load(db: str, events: int) -> None:
    tmp = tempfile.mkdtemp(prefix="edge-window-")
    env = environment(db, tmp)
    pg.create_database(db)
    manage(env, "migrate", "--noinput", "-v", "0")
    project = manage(env, "createproject", "bench-edges", "--retention-days", "800", "--rate-limit", "1000000000")
    key = manage(env, "createapikey", "--project", project, "--name", "bench")
    manage(env, "upkeep_partitions")  # the months the project keeps (what the worker does)
    start = datetime.now(UTC) - timedelta(days=DAYS - 1) - LATEST_OFFSET
    server = Server(env=env, workers=1, threads=1, log_path=os.path.join(tmp, "gunicorn.log"), max_connections=1)
    server.start()
    try:  # the channels, through the API (one event each, a day before the generated ones)
        before = datagen.iso_z(start - timedelta(days=1))
        request(server.base_url, "/v1/messages/events", key, {"events": [
            {"id": f"channel{n}", "type": "sent", "messageId": f"channel{n}", "channel": channel,
             "from": "news@d0.example", "recipient": "r0@rcpt.example", "occurredAt": before}
            for n, channel in enumerate(datagen.CHANNELS)]})
    finally:
        server.stop()
    tables = {"message": "reports_message", "message_event": "reports_messageevent", "rollup": "reports_dailyrollup",
              "channel": "reports_channel"}
    with pg.connect(db) as conn:
        channel_ids = dict(conn.execute(f"SELECT external_id::text, id FROM {tables['channel']} "
                                        f"WHERE project_id = %s", [project]).fetchall())
        messages = datagen.messages_for(events)
        seconds = load_message_events(conn, tables=tables, project_id=project, channel_ids=channel_ids, first=0,
                                      last=messages, start=start, days=DAYS,
                                      progress=lambda done, total: log(f"  messages {done:,}/{total:,}"))
        log(f"{datagen.events_in(0, messages):,} events in {seconds:.1f}s")
        log(f"rollups by SQL in {rollups_by_sql(conn, tables=tables, project_id=project):.1f}s")
    log(manage(env, "shell", "-c", f"from bench.edge_data import write; write('{project}')"))
    with pg.connect(db) as conn:
        conn.execute("VACUUM ANALYZE")
    with open(state_path(db), "w") as out:
        json.dump({"project": project, "key": key, "events": datagen.events_in(0, messages) + 4}, out)


def measure(db: str) -> None:
    with open(state_path(db)) as source:
        state = json.load(source)
    tmp = tempfile.mkdtemp(prefix="edge-window-")
    server = Server(env=environment(db, tmp), workers=2, threads=4, log_path=os.path.join(tmp, "gunicorn.log"),
                    max_connections=4)
    server.start()
    midnight = datagen.utc_midnight(datetime.now(UTC))
    paths = {
        "default": "/v1/reports/engagement?group_by=day",
        "aligned": (f"/v1/reports/engagement?from={datagen.iso_z(midnight - timedelta(days=30))}"
                    f"&to={datagen.iso_z(midnight)}&group_by=day"),
        # The default window as called 30 seconds after midnight: its first day is (almost) a whole day.
        "early": (f"/v1/reports/engagement?from={datagen.iso_z(midnight - timedelta(days=30, seconds=-30))}"
                  f"&group_by=day"),
        # Contract 6 and 3.1 as dashboards ask them: people only, and each recipient once per week bucket.
        "human": "/v1/reports/engagement?group_by=day&traffic=human",
        "week": "/v1/reports/engagement?group_by=week",
        "week_exact": "/v1/reports/engagement?group_by=week&unique=exact",
        "month_exact": "/v1/reports/engagement?group_by=month&unique=exact&traffic=human",
    }
    timings = {name: [] for name in paths}
    try:
        for round_ in range(WARMUP + REQUESTS):
            for name, path in paths.items():
                seconds, status = request(server.base_url, path, state["key"])
                if status != 200:
                    raise RuntimeError(f"{path}: {status}")
                if round_ >= WARMUP:
                    timings[name].append(seconds)
    finally:
        server.stop()
    p50 = {name: statistics.median(values) * 1000 for name, values in timings.items()}
    print(f"{state['events']:,} events over {DAYS} days: default window p50 {p50['default']:.2f} ms, "
          f"aligned 30 days p50 {p50['aligned']:.2f} ms, ratio {p50['default'] / p50['aligned']:.2f}; "
          f"from 00:00:30 to now p50 {p50['early']:.2f} ms, ratio {p50['early'] / p50['aligned']:.2f} "
          f"({REQUESTS} sequential requests each)")
    print(f"  traffic=human p50 {p50['human']:.2f} ms, ratio {p50['human'] / p50['default']:.2f} to the default; "
          f"group_by=week p50 {p50['week']:.2f} ms, unique=exact {p50['week_exact']:.2f} ms, ratio "
          f"{p50['week_exact'] / p50['week']:.2f}; group_by=month unique=exact traffic=human "
          f"{p50['month_exact']:.2f} ms")


def ingest(db: str) -> None:
    """POST /v1/messages/events as `make bench` measures it: 8 connections of 1,000-event batches, a new project."""
    tmp = tempfile.mkdtemp(prefix="edge-window-")
    env = environment(db, tmp)
    project = manage(env, "createproject", f"bench-ingest-{secrets.token_hex(4)}", "--retention-days", "800",
                     "--rate-limit", "1000000000")
    key = manage(env, "createapikey", "--project", project, "--name", "bench")
    server = Server(env=env, workers=2, threads=4, log_path=os.path.join(tmp, "gunicorn.log"),
                    max_connections=INGEST_CONNECTIONS)
    server.start()
    yesterday = (datagen.utc_midnight(datetime.now(UTC)) - timedelta(days=1)).strftime("%Y-%m-%d")
    wrk_env = {"BENCH_KEY": key, "BENCH_CHANNEL": datagen.CHANNELS[0], "BENCH_BATCH": str(INGEST_BATCH),
               "BENCH_DAY": yesterday}
    url = server.base_url + "/v1/messages/events"
    try:
        run_wrk(url, script="messages.lua", workdir=tmp, duration=2, connections=INGEST_CONNECTIONS,
                env={**wrk_env, "BENCH_SALT": "warmup"})
        result = run_wrk(url, script="messages.lua", workdir=tmp, duration=INGEST_SECONDS,
                         connections=INGEST_CONNECTIONS, env={**wrk_env, "BENCH_SALT": "measured"})
    finally:
        server.stop()
    print(f"POST /v1/messages/events: {result.rps * INGEST_BATCH:,.0f} events/s ({INGEST_BATCH}-event batches, "
          f"{INGEST_CONNECTIONS} connections, p50 {result.p50_ms:.0f} ms per batch)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("load", "measure", "ingest", "drop"))
    parser.add_argument("--db", required=True)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.action == "load":
        load(args.db, args.events)
    elif args.action == "measure":
        measure(args.db)
    elif args.action == "ingest":
        ingest(args.db)
    else:
        pg.drop_database(args.db)
        if os.path.exists(state_path(args.db)):
            os.remove(state_path(args.db))


if __name__ == "__main__":
    main()
