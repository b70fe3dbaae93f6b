"""`make bench-scale`: what each step past one machine costs on this machine (contract section 10).

Starts everything it measures itself, on loopback ports: a PostgreSQL primary and a streaming replica
of it (`pg_basebackup -R`), PgBouncer in transaction mode in front of the primary, a Redis, an S3
protocol server (moto in server mode), and one gunicorn per configuration (2 workers x 4 threads,
production settings). Load is HTTP through wrk, as clients call the API; every figure is printed
beside its floor measured in the same run, in alternating rounds so both see the same background load.

- PgBouncer: the hot paths (the engagement summary, a partner event POST, the report's default window)
  through the pooler (`DATABASE_PREPARE_THRESHOLD=0`) against direct connections (the default threshold),
  and direct with threshold 0 (what giving up prepared statements costs, without the pooler's hop).
  Reads are asked with `Cache-Control: no-cache`, so each one reaches the database. Target: within 15%.
- Replica: the event log and the report read from the replica against the same reads on the primary,
  and with the replica stopped (reads answered by the primary after the "replica down" mark).
- Storage: a PDF upload and its download through the API, S3 (moto) against local files.

    python bench/scale.py            # about 4 minutes on 2 cores
    python bench/scale.py --quick    # about 1.5 minutes, figures printed, not asserted
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.loadgen import run_wrk  # noqa: E402
from demo.pdf import simple_pdf  # noqa: E402
from reliability.servers import (  # noqa: E402
    Gunicorn,
    PgBouncer,
    StreamingReplica,
    ThrowawayPostgres,
    ThrowawayRedis,
    base_env,
    free_port_in,
    manage,
    pgbouncer_installed,
    port_open,
    wait_until,
)

POSTMASTER_PORTS = (55400, 55449)
POOLER_PORTS = (55450, 55499)
HTTP_PORTS = (8400, 8499)
SIZES = {"full": {"duration": 5, "rounds": 3, "warmup": 2, "connections": 8, "files": 200},
         "quick": {"duration": 2, "rounds": 2, "warmup": 1, "connections": 8, "files": 40}}
POOLER_TARGET = 1.15
# A readable document of about 100 KiB (uploads must open as a PDF with pages).
PDF = simple_pdf("Scale bench", [f"Line {n}: " + "the quick brown fox jumps over the lazy dog " * 2
                                 for n in range(1050)])
CHANNEL = "0193c2c3-0000-7000-8000-0000000000bb"


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


class Scale:
    def __init__(self, mode: str):
        self.size = SIZES[mode]
        self.tmp = tempfile.mkdtemp(prefix="ep-bench-scale-")
        self.started: list = []
        self.salt = 0

    # ---------------------------------------------------------------- servers
    def keep(self, server):
        self.started.append(server)
        return server

    def gunicorn(self, **env) -> Gunicorn:
        server = self.keep(Gunicorn({**self.env, **{k: str(v) for k, v in env.items()}}, workers=2, threads=4,
                                    port=free_port_in(*HTTP_PORTS), timeout=120))
        server.start(ready_timeout=60)
        return server

    def setup(self) -> None:
        self.primary = self.keep(ThrowawayPostgres(free_port_in(*POSTMASTER_PORTS)))
        self.primary.start()
        self.primary.create_database("platform")
        with psycopg.connect(self.primary.database_url("platform"), autocommit=True) as conn:
            conn.execute("ALTER DATABASE platform SET jit = off")  # what `-c jit=off` does, where a pooler allows
        self.redis = self.keep(ThrowawayRedis(free_port_in(*HTTP_PORTS)))
        self.redis.start()
        self.env = base_env(DATABASE_URL=self.primary.database_url("platform"), CACHE_URL=self.redis.url,
                            MEDIA_ROOT=os.path.join(self.tmp, "media"), RENDER_MAX_BYTES=str(1 << 24))
        manage("migrate", "--noinput", "-v", "0", env=self.env)
        project = manage("createproject", "scale", "--rate-limit", "1000000000", env=self.env).stdout.split()[-1]
        self.key = manage("createapikey", "--project", project, "--name", "bench", env=self.env).stdout.split()[-1]
        self.replica = self.keep(StreamingReplica(self.primary, free_port_in(*POSTMASTER_PORTS)))
        self.replica.start()
        self.bouncer = self.keep(PgBouncer(free_port_in(*POOLER_PORTS), server_port=self.primary.port,
                                           pool_size=20))
        self.bouncer.start()
        log(f"primary :{self.primary.port}, replica :{self.replica.port}, pgbouncer :{self.bouncer.port}")

        self.direct = self.gunicorn()
        self.render_id = self._seed(self.direct)
        self.pooled = self.gunicorn(DATABASE_URL=self.bouncer.database_url("platform"),
                                    DATABASE_PREPARE_THRESHOLD=0, DATABASE_STARTUP_OPTIONS="")
        self.unprepared = self.gunicorn(DATABASE_PREPARE_THRESHOLD=0)
        self.replicated = self.gunicorn(DATABASE_REPLICA_URL=self.replica.database_url("platform"))

    def _seed(self, server) -> str:
        """One render with 1,000 events, and 30 days of message traffic (12,000 events) for the report."""
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {self.key}"
        render = http.post(server.base_url + "/v1/renders", files={"file": ("q.pdf", PDF, "application/pdf")})
        render.raise_for_status()
        render_id = render.json()["id"]
        for n in range(1000):
            http.post(f"{server.base_url}/v1/renders/{render_id}/events", json={"eventType": "viewed"},
                      headers={"X-Forwarded-For": f"10.1.{n // 250}.{n % 250}"}).raise_for_status()
        now = datetime.now(UTC)
        events = []
        for n in range(12_000):
            at = now - timedelta(minutes=n * 3.6)
            kind = ("delivered", "opened", "clicked")[n % 3]
            events.append({"id": f"seed-{n}", "type": kind, "messageId": f"m-{n // 3}", "channel": CHANNEL,
                           "from": "news@acme.example", "recipient": f"r{n % 400}@example.org",
                           "occurredAt": at.strftime("%Y-%m-%dT%H:%M:%SZ")})
        for start in range(0, len(events), 1000):
            http.post(server.base_url + "/v1/messages/events", json={"events": events[start:start + 1000]}
                      ).raise_for_status()
        log("seeded: 1 render with 1,000 events, 12,000 message events over 30 days")
        return render_id

    def teardown(self) -> None:
        for server in reversed(self.started):
            for stop in ("cleanup", "destroy", "stop"):
                if hasattr(server, stop):
                    try:
                        getattr(server, stop)()
                    except Exception as exc:  # noqa: BLE001 - keep stopping the others
                        log(f"stopping {type(server).__name__}: {exc}")
                    break

    # ---------------------------------------------------------------- load
    def wrk(self, server, path: str, *, script: str = "get.lua", duration: float | None = None,
            cache_control: str = "no-cache"):
        self.salt += 1
        return run_wrk(server.base_url + path, script=script, workdir=self.tmp,
                       duration=duration or self.size["duration"], connections=self.size["connections"],
                       env={"BENCH_KEY": self.key, "BENCH_SALT": str(self.salt),
                            "BENCH_CACHE_CONTROL": cache_control})

    def alternate(self, servers: dict, path: str, **kwargs) -> dict:
        """Median round per server (by requests/s), the servers taking turns in each round."""
        for server in servers.values():
            self.wrk(server, path, duration=self.size["warmup"], **kwargs)
        rounds = {name: [] for name in servers}
        for _ in range(self.size["rounds"]):
            for name, server in servers.items():
                rounds[name].append(self.wrk(server, path, **kwargs))
        return {name: sorted(results, key=lambda r: r.rps)[len(results) // 2] for name, results in rounds.items()}

    # ---------------------------------------------------------------- measurements
    def pooler(self) -> list[dict]:
        paths = {
            "GET /v1/renders/:id/engagement (no-cache)": (f"/v1/renders/{self.render_id}/engagement", "get.lua"),
            "POST /v1/renders/:id/events": (f"/v1/renders/{self.render_id}/events", "render_events.lua"),
            "GET /v1/reports/engagement, default window (no-cache)": ("/v1/reports/engagement", "get.lua"),
        }
        rows = []
        for label, (path, script) in paths.items():
            picked = self.alternate({"direct": self.direct, "pgbouncer": self.pooled,
                                     "direct, threshold 0": self.unprepared}, path, script=script)
            direct, pooled, unprepared = picked["direct"], picked["pgbouncer"], picked["direct, threshold 0"]
            ratio = direct.rps / pooled.rps if pooled.rps else float("inf")
            rows.append({"path": label, "direct_rps": direct.rps, "pooled_rps": pooled.rps,
                         "unprepared_rps": unprepared.rps, "direct_p50": direct.p50_ms, "pooled_p50": pooled.p50_ms,
                         "unprepared_p50": unprepared.p50_ms, "ratio": ratio,
                         "errors": direct.errors + pooled.errors + unprepared.errors})
            log(f"{label}: direct {direct.rps:,.0f}/s p50 {direct.p50_ms:.2f} ms | pgbouncer {pooled.rps:,.0f}/s "
                f"p50 {pooled.p50_ms:.2f} ms | direct, threshold 0 {unprepared.rps:,.0f}/s | "
                f"direct/pgbouncer {ratio:.2f} {'PASS' if ratio <= POOLER_TARGET else 'MISS'} (target <= 1.15)")
        return rows

    def replica_reads(self) -> list[dict]:
        paths = {"GET /v1/renders/:id/events": f"/v1/renders/{self.render_id}/events",
                 "GET /v1/reports/engagement (no-cache)": "/v1/reports/engagement"}
        rows = []
        time.sleep(6)  # past the seed's read-your-writes window
        for label, path in paths.items():
            picked = self.alternate({"primary": self.direct, "replica": self.replicated}, path)
            rows.append({"path": label, "primary_p50": picked["primary"].p50_ms,
                         "replica_p50": picked["replica"].p50_ms,
                         "primary_rps": picked["primary"].rps, "replica_rps": picked["replica"].rps,
                         "errors": picked["primary"].errors + picked["replica"].errors})
            log(f"{label}: primary p50 {picked['primary'].p50_ms:.2f} ms ({picked['primary'].rps:,.0f}/s) | "
                f"replica p50 {picked['replica'].p50_ms:.2f} ms ({picked['replica'].rps:,.0f}/s)")
        lag = self._replication_lag()
        self.replica.stop("immediate")
        down = self.wrk(self.replicated, paths["GET /v1/renders/:id/events"])
        log(f"replica stopped: event log p50 {down.p50_ms:.2f} ms ({down.rps:,.0f}/s, {down.errors} errors) "
            f"from the primary; replay lag after a write {lag * 1000:.1f} ms")
        rows.append({"path": "GET /v1/renders/:id/events, replica stopped", "replica_p50": down.p50_ms,
                     "replica_rps": down.rps, "errors": down.errors, "lag_ms": lag * 1000})
        return rows

    def _replication_lag(self) -> float:
        """Seconds from a commit on the primary until the replica has replayed it (median of 20)."""
        samples = []
        with psycopg.connect(self.primary.database_url("platform"), autocommit=True) as primary, \
                psycopg.connect(self.replica.database_url("platform"), autocommit=True) as replica:
            # A commit that waits for its flush (the throwaway primary commits asynchronously by default, whose
            # WAL the WAL writer flushes, and the replica receives, every 200 ms).
            primary.execute("SET synchronous_commit = on")
            primary.execute("CREATE TABLE IF NOT EXISTS bench_lag (n int)")
            for n in range(20):
                started = time.perf_counter()
                primary.execute("INSERT INTO bench_lag VALUES (%s)", [n])
                (lsn,) = primary.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
                while not replica.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn]).fetchone()[0]:
                    time.sleep(0.0005)
                samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    def storage(self) -> list[dict]:
        moto = self._moto()
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        import boto3

        credentials = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret"}
        os.environ.update(credentials)
        boto3.client("s3", endpoint_url=moto, region_name="us-east-1").create_bucket(Bucket=bucket)
        on_s3 = self.gunicorn(STORAGE_URL=f"s3://{bucket}?region=us-east-1&endpoint_url={moto}&addressing_style=path",
                              **credentials)
        rows = []
        timings = {"local": self._file_round_trips(self.direct), "S3 (moto)": self._file_round_trips(on_s3)}
        for name, (upload, download) in timings.items():
            rows.append({"storage": name, "upload_p50": statistics.median(upload),
                         "download_p50": statistics.median(download),
                         "upload_p90": _p90(upload), "download_p90": _p90(download)})
            log(f"{name}: upload p50 {statistics.median(upload):.1f} ms (p90 {_p90(upload):.1f}), "
                f"download p50 {statistics.median(download):.1f} ms (p90 {_p90(download):.1f}) for 100 KiB")
        return rows

    def _moto(self) -> str:
        port = free_port_in(*HTTP_PORTS)
        process = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                                    "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)

        class Moto:
            def stop(self):
                process.terminate()
                process.wait(timeout=10)

        self.keep(Moto())
        if not wait_until(lambda: port_open(port), 20):
            raise RuntimeError("moto_server did not start")
        return f"http://127.0.0.1:{port}"

    def _file_round_trips(self, server) -> tuple[list[float], list[float]]:
        """Milliseconds per upload and per download of a 100 KiB PDF, one client, one after another."""
        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {self.key}"
        uploads, downloads, ids = [], [], []
        for _ in range(self.size["files"]):
            started = time.perf_counter()
            response = http.post(server.base_url + "/v1/renders", files={"file": ("q.pdf", PDF, "application/pdf")})
            uploads.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            ids.append(response.json()["id"])
        for render_id in ids:
            started = time.perf_counter()
            response = http.get(f"{server.base_url}/v1/renders/{render_id}/download")
            body = response.content
            downloads.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200 and body == PDF
        return uploads[len(uploads) // 10:], downloads[len(downloads) // 10:]  # without the first tenth (warm-up)


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(len(ordered) * 0.9) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", help="write the figures as JSON here")
    parser.add_argument("--only", choices=("pooler", "replica", "storage"), action="append",
                        help="measure only this part (repeatable); default all three")
    args = parser.parse_args()
    if not pgbouncer_installed():
        raise SystemExit("pgbouncer is not installed: apt-get install -y pgbouncer")
    scale = Scale("quick" if args.quick else "full")
    started = time.perf_counter()
    try:
        scale.setup()
        parts = {"pooler": scale.pooler, "replica": scale.replica_reads, "storage": scale.storage}
        figures = {name: measure() for name, measure in parts.items() if not args.only or name in args.only}
    finally:
        scale.teardown()
    log(f"done in {time.perf_counter() - started:.0f}s")
    if args.output:
        with open(args.output, "w") as out:
            json.dump(figures, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
