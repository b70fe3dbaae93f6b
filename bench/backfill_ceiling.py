"""How fast the backfills could be on this machine: server-side ceilings, and the commands against them.

    python bench/backfill_ceiling.py --db NAME [--rows 300000] [--commands]

For the same rows (the generated data of bench/datagen.py), already formatted, no Python parsing:

- (a) COPY into a scratch table `LIKE` the real one `INCLUDING ALL`, one transaction: the floor
  `make bench` compares the backfills with;
- (b) what an idempotent store must do at least, batch by batch as the backfills commit: COPY the
  batch into a temporary table, then one `INSERT ... SELECT ... ON CONFLICT DO NOTHING` into the
  real table (its foreign keys and unique indexes), commits without waiting for the disk; a first
  load, then a rerun of the same rows (all conflicts). Message events first insert their batch's
  messages the same way and find them through the (project, client message id) index.

The ratio b/a bounds what any backfill can reach against COPY with the server doing the same work.
With `--commands` the two backfill commands then load the same rows from NDJSON (first load and
rerun), with the peak memory of their whole process tree (every process, parsing workers included:
the sum of RSS, and of PSS, which counts pages shared after a fork once), sampled every 20 ms.

The database is migrated if needed; the script makes its own projects and deletes them at the end.
"""

import argparse
import io
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import datagen, pg  # noqa: E402

RENDER_BATCH = 2000  # backfill_render_events' default batch
MESSAGE_BATCH = 5000  # backfill_message_events' default batch
MESSAGE_DAYS = 365
SAMPLE_SECONDS = 0.02


def log(message: str) -> None:
    print(f"[ceiling {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def setup_django(db: str):
    os.environ["DATABASE_URL"] = pg.database_url(db)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "engagement_platform.settings")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(48))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_fixtures():
    """A project with one render, and a project with the generated data's four channels."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from apikeys.services import project_create
    from renders.services import render_create
    from reports.models import Channel

    tag = secrets.token_hex(4)
    renders_project = project_create(name=f"ceiling-renders-{tag}")
    from demo.pdf import simple_pdf

    pdf = simple_pdf("Ceiling", ["One page."])
    render = render_create(project=renders_project, name="ceiling.pdf",
                           uploaded_file=SimpleUploadedFile("ceiling.pdf", pdf, content_type="application/pdf"))
    messages_project = project_create(name=f"ceiling-messages-{tag}")
    for external_id in datagen.CHANNELS:
        Channel.objects.create(project=messages_project, external_id=external_id)
    return renders_project, render, messages_project


def tables() -> dict:
    from renders.models import EngagementEvent
    from reports.models import Channel, Message, MessageEvent, MessageEventKey

    return {"render_event": EngagementEvent._meta.db_table, "message": Message._meta.db_table,
            "message_event": MessageEvent._meta.db_table, "message_event_key": MessageEventKey._meta.db_table,
            "channel": Channel._meta.db_table}


# Rows, formatted for COPY (text format) ------------------------------------------------------------------


def render_rows(project_id, render_id, count: int, start: datetime) -> list[bytes]:
    return [(f"00000000-0000-7000-c000-{i:012x}\t{project_id}\t{render_id}\t\\N\t{datagen.RENDER_EVENT_TYPES[i % 3]}"
             f"\tpartner\t{datagen.ip_for(i)}\tbench/1.0\t{{\"n\":{i}}}\t"
             f"{(start + datagen.RENDER_EVENT_STEP * i).isoformat()}\n").encode() for i in range(count)]


def message_batches(project_id, channels: dict, messages: int, start: datetime, batch: int):
    """[(message rows, event rows)] per batch of about `batch` events: the batch's messages, then its events."""
    received = datetime.now(UTC).isoformat()
    batches, message_rows, event_rows, seen = [], [], [], set()
    for i, suffix, kind, at in datagen.message_events(0, messages, start=start, days=MESSAGE_DAYS):
        if i not in seen:
            seen.add(i)
            message_rows.append(f"{channels[datagen.CHANNELS[i % 4]]}\tm{i}\tnews@d{i % 10}.example\t"
                                f"d{i % 10}.example\tr{(i * 31) % datagen.RECIPIENTS}@rcpt.example\t{received}\n"
                                .encode())
        url = f"https://example.com/p/{i % 100}" if kind == "clicked" else "\\N"
        event_rows.append(f"e{i}{suffix}\t{kind}\tm{i}\t{at.isoformat()}\t{url}\t\\N\n".encode())
        if len(event_rows) >= batch:
            batches.append((message_rows, event_rows))
            message_rows, event_rows, seen = [], [], {i}
    if event_rows:
        batches.append((message_rows, event_rows))
    return batches


def copy_rows(cursor, statement: str, rows: list[bytes]) -> None:
    with cursor.copy(statement) as copy:
        copy.write(b"".join(rows))


# (a) COPY, (b) the idempotent minimum --------------------------------------------------------------------


def copy_floor(conn, table: str, columns: list[str], rows: list[bytes]) -> float:
    conn.execute(f"CREATE TABLE ceiling_copy_floor (LIKE {table} INCLUDING ALL)")
    try:
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cursor:
            copy_rows(cursor, f"COPY ceiling_copy_floor ({', '.join(columns)}) FROM STDIN", rows)
        return time.perf_counter() - started
    finally:
        conn.execute("DROP TABLE ceiling_copy_floor")


def render_minimum(conn, table: str, rows: list[bytes]) -> float:
    columns = ", ".join(datagen.RENDER_COPY_COLUMNS)
    started = time.perf_counter()
    for first in range(0, len(rows), RENDER_BATCH):
        with conn.transaction(), conn.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
            cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS ceiling_incoming (LIKE {table}) "
                           f"ON COMMIT DELETE ROWS")
            copy_rows(cursor, f"COPY ceiling_incoming ({columns}) FROM STDIN", rows[first:first + RENDER_BATCH])
            cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM ceiling_incoming "
                           f"ON CONFLICT (id, created_at) DO NOTHING")  # partitioned: the key holds created_at
    return time.perf_counter() - started


def message_minimum(conn, t: dict, project_id, batches) -> float:
    started = time.perf_counter()
    for message_rows, event_rows in batches:
        with conn.transaction(), conn.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
            cursor.execute("CREATE TEMPORARY TABLE IF NOT EXISTS ceiling_messages (channel_id uuid, "
                           "client_message_id text, from_address text, from_domain text, recipient text, "
                           "created_at timestamptz) ON COMMIT DELETE ROWS")
            cursor.execute("CREATE TEMPORARY TABLE IF NOT EXISTS ceiling_events (client_event_id text, type text, "
                           "client_message_id text, occurred_at timestamptz, url text, user_agent text) "
                           "ON COMMIT DELETE ROWS")
            copy_rows(cursor, "COPY ceiling_messages FROM STDIN", message_rows)
            copy_rows(cursor, "COPY ceiling_events FROM STDIN", event_rows)
            cursor.execute(
                f"INSERT INTO {t['message']} (id, project_id, channel_id, client_message_id, from_address, "
                f"from_domain, recipient, created_at) SELECT gen_random_uuid(), %s, channel_id, client_message_id, "
                f"from_address, from_domain, recipient, created_at FROM ceiling_messages "
                f"ON CONFLICT (project_id, client_message_id) DO NOTHING", [project_id])
            # The idempotency key first (the events are partitioned by month; their key table says what is new).
            cursor.execute(
                f"WITH keyed AS (INSERT INTO {t['message_event_key']} (project_id, client_event_id, occurred_at) "
                f"SELECT %s, client_event_id, occurred_at FROM ceiling_events ON CONFLICT DO NOTHING "
                f"RETURNING client_event_id) "
                f"INSERT INTO {t['message_event']} (id, project_id, message_id, client_event_id, type, occurred_at, "
                f"url, user_agent, received_at) SELECT gen_random_uuid(), %s, m.id, b.client_event_id, b.type, "
                f"b.occurred_at, b.url, b.user_agent, now() FROM ceiling_events b "
                f"JOIN keyed ON keyed.client_event_id = b.client_event_id JOIN {t['message']} m "
                f"ON m.project_id = %s AND m.client_message_id = b.client_message_id",
                [project_id, project_id, project_id])
    return time.perf_counter() - started


def ceilings(db: str, *, rows: int, renders_project, render, messages_project, t: dict) -> dict:
    now = datetime.now(UTC)
    figures = {}
    with pg.connect(db) as conn:
        start = now - datagen.RENDER_EVENT_STEP * (rows + 10)
        formatted = render_rows(renders_project.pk, render.pk, rows, start)
        a = copy_floor(conn, t["render_event"], datagen.RENDER_COPY_COLUMNS, formatted)
        first = render_minimum(conn, t["render_event"], formatted)
        rerun = render_minimum(conn, t["render_event"], formatted)
        figures["render"] = (rows, a, first, rerun)

        channels = dict(conn.execute(f"SELECT external_id::text, id FROM {t['channel']} WHERE project_id = %s",
                                     [messages_project.pk]).fetchall())
        messages = datagen.messages_for(rows)
        batches = message_batches(messages_project.pk, channels, messages,
                                  datagen.utc_midnight(now) - timedelta(days=MESSAGE_DAYS), MESSAGE_BATCH)
        events = sum(len(event_rows) for _messages, event_rows in batches)
        copy_path = os.path.join(tempfile.gettempdir(), f"ceiling-{os.getpid()}.tsv")
        datagen.write_message_copy_rows(copy_path, 0, messages, project_id=messages_project.pk, received_at=now,
                                        start=datagen.utc_midnight(now) - timedelta(days=MESSAGE_DAYS),
                                        days=MESSAGE_DAYS)
        with open(copy_path, "rb") as handle:
            copy_lines = handle.readlines()
        os.remove(copy_path)
        a = copy_floor(conn, t["message_event"], datagen.COPY_COLUMNS, copy_lines)
        first = message_minimum(conn, t, messages_project.pk, batches)
        rerun = message_minimum(conn, t, messages_project.pk, batches)
        figures["message"] = (events, a, first, rerun)
        conn.execute(f"DELETE FROM {t['render_event']} WHERE project_id = %s", [renders_project.pk])
        conn.execute(f"DELETE FROM {t['message_event']} WHERE project_id = %s", [messages_project.pk])
        conn.execute(f"DELETE FROM {t['message']} WHERE project_id = %s", [messages_project.pk])
        conn.execute("VACUUM ANALYZE")
    for name, (count, a, first, rerun) in figures.items():
        log(f"{name}: {count:,} rows; (a) COPY {count / a:,.0f} rows/s; (b) idempotent minimum first load "
            f"{count / first:,.0f} rows/s ({a / first:.2f} of COPY), rerun {count / rerun:,.0f} rows/s "
            f"({a / rerun:.2f} of COPY)")
    return figures


# The commands on the same rows ---------------------------------------------------------------------------


def tree_memory(pid: int) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in bytes of `pid` and its descendants."""
    pids, rss, pss = [pid], 0, 0
    while pids:
        current = pids.pop()
        try:
            with open(f"/proc/{current}/smaps_rollup") as handle:
                for text in handle:
                    if text.startswith("Rss:"):
                        rss += int(text.split()[1]) * 1024
                    elif text.startswith("Pss:"):
                        pss += int(text.split()[1]) * 1024
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    pids.extend(int(child) for child in handle.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return rss, pss


def run_command(db: str, checkout: str, *args: str) -> tuple[float, int, int, str]:
    """(seconds, peak tree RSS, peak tree PSS, last stdout line) of `checkout`'s manage.py command."""
    env = {**os.environ, "DATABASE_URL": pg.database_url(db)}
    out = io.StringIO()
    with tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "manage.py", *args], cwd=checkout, env=env, stdout=output,
                                 stderr=subprocess.STDOUT)
        peak_rss = peak_pss = 0
        while child.poll() is None:
            rss, pss = tree_memory(child.pid)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            time.sleep(SAMPLE_SECONDS)
        seconds = time.perf_counter() - started
        output.seek(0)
        out.write(output.read())
    text = out.getvalue().strip()
    if child.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{text[-3000:]}")
    return seconds, peak_rss, peak_pss, text.splitlines()[-1] if text else ""


def commands(db: str, checkouts: list[str], *, rows: int, figures: dict, renders_project, render,
             messages_project) -> None:
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        render_path = os.path.join(tmp, "renders.ndjson")
        datagen.write_render_ndjson(render_path, str(render.pk), 0, rows,
                                    start=now - datagen.RENDER_EVENT_STEP * (rows + 10))
        message_path = os.path.join(tmp, "messages.ndjson")
        datagen.write_message_ndjson(message_path, 0, datagen.messages_for(rows),
                                     start=datagen.utc_midnight(now) - timedelta(days=MESSAGE_DAYS),
                                     days=MESSAGE_DAYS)
        for name, command, project, path in (
                ("render", "backfill_render_events", renders_project, render_path),
                ("message", "backfill_message_events", messages_project, message_path)):
            count, a, _first, _rerun = figures[name]
            for checkout in checkouts:
                if len(checkouts) > 1:
                    _forget_loaded(project)
                for run in ("first load", "rerun"):
                    seconds, rss, pss, summary = run_command(db, checkout, command, "--project", str(project.pk),
                                                             path)
                    log(f"{checkout}: {command} {run}: {count:,} lines in {seconds:.1f}s, "
                        f"{count / seconds:,.0f} lines/s "
                        f"({a / seconds:.2f} of COPY); peak tree RSS {rss / 2**20:.0f} MB, PSS {pss / 2**20:.0f} MB "
                        f"({summary})")


def _forget_loaded(project) -> None:
    """Remove what a command loaded into `project`, so the next checkout's first load is a first load again."""
    from django.db import connection

    from renders.models import EngagementCounter
    from reports.models import DailyFirstTouch, DailyRollup, FirstTouchesPending, PendingRecount

    t = tables()
    with connection.cursor() as cursor:
        for table in (t["render_event"], t["message_event"], t["message"], *(
                model._meta.db_table for model in (EngagementCounter, DailyRollup, DailyFirstTouch,
                                                   FirstTouchesPending, PendingRecount))):
            cursor.execute(f"DELETE FROM {table} WHERE project_id = %s", [project.pk])
        cursor.execute("VACUUM ANALYZE")


def delete_fixtures(t: dict, *projects) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for project in projects:
            for table in (t["render_event"], t["message_event"], t["message"]):
                cursor.execute(f"DELETE FROM {table} WHERE project_id = %s", [project.pk])
    for project in projects:
        project.delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="An existing PostgreSQL database (migrated if needed).")
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--commands", action="store_true", help="Also run both backfill commands on the same rows.")
    parser.add_argument("--checkout", action="append", default=[],
                        help="Run the commands of this checkout (repeatable, in turn on the same rows; default: "
                             "this one). Its Python environment is this one's.")
    args = parser.parse_args()
    setup_django(args.db)
    renders_project, render, messages_project = make_fixtures()
    t = tables()
    try:
        figures = ceilings(args.db, rows=args.rows, renders_project=renders_project, render=render,
                           messages_project=messages_project, t=t)
        if args.commands:
            commands(args.db, args.checkout or [ROOT], rows=args.rows, figures=figures,
                     renders_project=renders_project, render=render, messages_project=messages_project)
    finally:
        delete_fixtures(t, renders_project, messages_project)


if __name__ == "__main__":
    main()
