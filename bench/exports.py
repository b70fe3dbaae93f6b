"""Exports (contract section 9) against PostgreSQL's COPY of the same rows, and the server's peak memory.

    python bench/exports.py [--rows 1000000] [--rounds 3] [--keep]

Loads `--rows` message events (bench/datagen.py's data, through bench/bulk.py) into one project and as
many render events onto one render, starts gunicorn (one sync worker, production settings), then per
round, in turn:

- each export as a user calls it: `curl` reading the whole streamed attachment over HTTP
  (`GET /v1/messages/events?format=ndjson|csv` over the whole window, `GET /v1/renders/:id/events?
  format=ndjson|csv`), rows per second;
- the floor, measured in the same round: `COPY (SELECT <the export's rows: same columns, joins,
  window and order>) TO STDOUT (FORMAT csv)` read to its end by psycopg, rows per second.

The ratio is the median export rate over the median COPY rate (target >= 0.3). The server's peak
memory is the gunicorn worker's VmHWM (peak resident set) after all exports (target <= 150 MB).
The database (`eng_exports_bench_<pid>`) is dropped at the end unless `--keep`.
"""

import argparse
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
sys.path.insert(0, ROOT)

from bench import datagen, pg  # noqa: E402
from bench.bulk import load_message_events, load_render_events  # noqa: E402
from bench.report import Table  # noqa: E402
from bench.server import Server  # noqa: E402

PDF_BYTES = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
DAYS = 30
RATIO_TARGET = 0.3
RSS_TARGET_MB = 150

# The floors: the rows each export writes, as PostgreSQL reads them for itself.
MESSAGE_ROWS_SQL = (
    "SELECT e.client_event_id, e.type, m.client_message_id, c.external_id, m.from_address, m.recipient, "
    "e.occurred_at, e.url, e.user_agent, e.traffic, e.machine_reason FROM {ev} e JOIN {msg} m ON m.id = e.message_id "
    "JOIN {ch} c ON c.id = m.channel_id WHERE e.project_id = '{project}' AND e.occurred_at >= '{start}' "
    "AND e.occurred_at < '{end}' ORDER BY e.occurred_at, e.id")
RENDER_ROWS_SQL = (
    "SELECT id, render_id, event_type, actor_kind, share_id, source_ip, user_agent, metadata, created_at, "
    "traffic, machine_reason FROM {ev} WHERE render_id = '{render}' ORDER BY created_at, id")


def log(text: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", file=sys.stderr, flush=True)


class ExportBench:
    def __init__(self, *, rows: int, rounds: int):
        self.rows, self.rounds = rows, rounds
        self.db_name = f"eng_exports_bench_{os.getpid()}"
        self.tmp = tempfile.mkdtemp(prefix="ep-exports-")
        self.server = None
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "engagement_platform.settings",
            "DATABASE_URL": pg.database_url(self.db_name),
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "MEDIA_ROOT": os.path.join(self.tmp, "media"),
            "STATIC_ROOT": os.path.join(self.tmp, "static"),
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("CACHE_URL", None)
        self.env.pop("REDIS_URL", None)

    def manage(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True,
                                text=True)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> bytes:
        request = urllib.request.Request(self.server.base_url + path, data=body, method=method, headers={
            "Authorization": f"Bearer {self.key}", **(headers or {})})
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read()

    # ------------------------------------------------------------------------------------------ setup
    def setup(self) -> None:
        import json

        pg.create_database(self.db_name)
        self.manage("migrate", "--noinput", "-v", "0")
        self.project = self.manage("createproject", "bench-exports", "--retention-days", "800", "--rate-limit",
                                   "1000000000").strip().splitlines()[-1]
        self.key = self.manage("createapikey", "--project", self.project).strip().splitlines()[-1]
        self.manage("upkeep_partitions")  # the months the project keeps (what the worker does)
        # One worker, no threads: its peak memory is the export's.
        self.server = Server(env=self.env, workers=1, threads=1, log_path=os.path.join(self.tmp, "gunicorn.log"),
                             max_connections=4)
        self.server.start()
        boundary = secrets.token_hex(12)
        upload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.pdf\"\r\n"
                  f"Content-Type: application/pdf\r\n\r\n").encode() + PDF_BYTES + f"\r\n--{boundary}--\r\n".encode()
        self.render = json.loads(self.request("POST", "/v1/renders", upload, {
            "Content-Type": f"multipart/form-data; boundary={boundary}"}))["id"]
        self.end = datagen.utc_midnight(datetime.now(UTC))
        self.start = self.end - timedelta(days=DAYS)
        # The channels, created by the platform on first use (their events fall outside the export's window).
        first_use = [{"id": f"channel-{n}", "type": "sent", "messageId": f"channel-{n}", "channel": channel,
                      "from": "news@d0.example", "recipient": "r@rcpt.example",
                      "occurredAt": datagen.iso_z(self.start - timedelta(days=1))}
                     for n, channel in enumerate(datagen.CHANNELS)]
        self.request("POST", "/v1/messages/events", json.dumps({"events": first_use}).encode(),
                     {"Content-Type": "application/json"})
        self.tables = {"message": "reports_message", "message_event": "reports_messageevent",
                       "channel": "reports_channel", "render_event": "renders_engagementevent",
                       "render_counter": "renders_engagementcounter"}
        with pg.connect(self.db_name) as conn:
            channel_ids = dict(conn.execute(
                f"SELECT external_id::text, id FROM {self.tables['channel']} WHERE project_id = %s",
                [self.project]).fetchall())
            messages = datagen.messages_for(self.rows)
            seconds = load_message_events(conn, tables=self.tables, project_id=self.project, channel_ids=channel_ids,
                                          first=0, last=messages, start=self.start, days=DAYS)
            log(f"message events: {datagen.events_in(0, messages):,} loaded in {seconds:.0f}s")
            started = time.perf_counter()
            load_render_events(conn, tables=self.tables, project_id=self.project, render_id=self.render, first=0,
                               last=self.rows, start=self.start, id_tag="b001")
            log(f"render events: {self.rows:,} loaded in {time.perf_counter() - started:.0f}s")
            conn.execute("VACUUM ANALYZE")
            self.message_sql = MESSAGE_ROWS_SQL.format(
                ev=self.tables["message_event"], msg=self.tables["message"], ch=self.tables["channel"],
                project=self.project, start=self.start.isoformat(), end=self.end.isoformat())
            self.render_sql = RENDER_ROWS_SQL.format(ev=self.tables["render_event"], render=self.render)
            self.counts = {
                "messages": conn.execute(f"SELECT count(*) FROM ({self.message_sql}) AS q").fetchone()[0],
                "render": conn.execute(f"SELECT count(*) FROM ({self.render_sql}) AS q").fetchone()[0],
            }
        log(f"rows in the exports: {self.counts}")

    # ------------------------------------------------------------------------------------------ measures
    def export_seconds(self, path: str) -> tuple[float, int]:
        """(seconds, bytes) of curl reading the whole attachment."""
        started = time.perf_counter()
        result = subprocess.run(
            ["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download}", "-H",
             f"Authorization: Bearer {self.key}", self.server.base_url + path],
            capture_output=True, text=True, check=True)
        return time.perf_counter() - started, int(result.stdout)

    def copy_seconds(self, sql: str) -> tuple[float, int]:
        """(seconds, bytes) of COPY (sql) TO STDOUT (FORMAT csv), read to its end."""
        with pg.connect(self.db_name) as conn, conn.cursor() as cursor:
            started = time.perf_counter()
            size = 0
            with cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)") as copy:
                for data in copy:
                    size += len(data)
            return time.perf_counter() - started, size

    def worker_peak_rss_mb(self) -> float:
        """The gunicorn worker's peak resident set (VmHWM), MB."""
        children = subprocess.run(["pgrep", "-P", str(self.server.proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        peaks = []
        for pid in children:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]) / 1024)
        return max(peaks)

    def verify(self) -> None:
        """The exports hold the rows the floors count (one line per row, a header row for CSV)."""
        checks = {f"/v1/messages/events?from={datagen.iso_z(self.start)}&to={datagen.iso_z(self.end)}":
                  self.counts["messages"], f"/v1/renders/{self.render}/events?format=csv": self.counts["render"] + 1}
        for path, expected in checks.items():
            body = self.request("GET", path)
            lines = body.count(b"\n")
            if lines != expected:
                raise RuntimeError(f"{path}: {lines} lines, expected {expected}")
            log(f"verified {path}: {lines:,} lines")

    def run(self) -> Table:
        window = f"from={datagen.iso_z(self.start)}&to={datagen.iso_z(self.end)}"
        exports = {
            "message events NDJSON": (f"/v1/messages/events?{window}&format=ndjson", "messages"),
            "message events CSV": (f"/v1/messages/events?{window}&format=csv", "messages"),
            "render events NDJSON": (f"/v1/renders/{self.render}/events?format=ndjson", "render"),
            "render events CSV": (f"/v1/renders/{self.render}/events?format=csv", "render"),
        }
        floors = {"messages": self.message_sql, "render": self.render_sql}
        rss_before = self.worker_peak_rss_mb()
        rates = {name: [] for name in [*exports, *floors]}
        sizes = {}
        for number in range(self.rounds):
            for rows_name, sql in floors.items():
                seconds, size = self.copy_seconds(sql)
                rates[rows_name].append(self.counts[rows_name] / seconds)
                for name, (path, of) in exports.items():
                    if of != rows_name:
                        continue
                    seconds, sizes[name] = self.export_seconds(path)
                    rates[name].append(self.counts[of] / seconds)
            log(f"round {number + 1}: " + ", ".join(f"{name} {values[-1]:,.0f}/s" for name, values in rates.items()))
        peak = self.worker_peak_rss_mb()
        table = Table()
        for rows_name in floors:
            floor = statistics.median(rates[rows_name])
            table.info(f"COPY TO STDOUT ({rows_name})", f"{floor:,.0f} rows/s", f"{self.counts[rows_name]:,} rows")
            for name, (_path, of) in exports.items():
                if of != rows_name:
                    continue
                rate = statistics.median(rates[name])
                table.target(f"export {name}", f"{rate:,.0f} rows/s", f"COPY {floor:,.0f} rows/s", rate / floor,
                             ">=", RATIO_TARGET, note=f"{sizes[name] / 2**20:,.0f} MiB")
        table.target("server peak RSS (1 worker)", f"{peak:.0f} MB", f"{RSS_TARGET_MB} MB, before exports "
                     f"{rss_before:.0f} MB", peak / RSS_TARGET_MB, "<=", 1.0, ratio_fmt="{:.2f}")
        table.notes.append(f"{self.rounds} rounds, medians; each export and its COPY floor in the same round; "
                           f"gunicorn 1 sync worker; curl reads each attachment to its end")
        return table

    def cleanup(self, keep: bool) -> None:
        if self.server is not None:
            self.server.stop()
        if not keep:
            pg.drop_database(self.db_name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    bench = ExportBench(rows=args.rows, rounds=args.rounds)
    try:
        bench.setup()
        bench.verify()
        table = bench.run()
    finally:
        bench.cleanup(args.keep)
    print(table.render())
    return 1 if table.missed else 0


if __name__ == "__main__":
    sys.exit(main())
