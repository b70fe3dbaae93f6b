"""Webhook delivery benchmark (docs/performance.md), on its own PostgreSQL database with a real worker process
and a real local HTTP receiver:

- commit-to-delivery: from just before the recording call (its commit and enqueue included) to the receiver
  having the request, with an idle worker; p50 and p95 (target p50 < 200 ms);
- deliveries per second of one worker process draining a backlog;
- recording an event (`render_event_record`, what POST /v1/renders/:id/events calls) for a project with a
  subscribed endpoint against the same for a project without one, in the same run (target <= 1.15x).

    .venv/bin/python bench/webhooks.py [--events 50] [--backlog 1000] [--records 2000]
"""

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import pg  # noqa: E402

DB_NAME = f"ep_bench_webhooks_{os.getpid()}"


def environment() -> dict:
    return {
        "DJANGO_SETTINGS_MODULE": "engagement_platform.settings",
        "DATABASE_URL": pg.database_url(DB_NAME),
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(48),
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "1",
        "LOG_LEVEL": "WARNING",
    }


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "manage.py", "worker"], cwd=ROOT, env={**os.environ, **env},
                               stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while b"worker started" not in log.read_bytes():
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit(f"the worker did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    return process


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50, help="Events timed one by one, commit to delivery.")
    parser.add_argument("--backlog", type=int, default=1000, help="Deliveries one worker drains.")
    parser.add_argument("--records", type=int, default=2000, help="Recordings timed per side of the ratio.")
    args = parser.parse_args()

    env = environment()
    os.environ.update(env)
    pg.create_database(DB_NAME)
    worker = None
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from django.core.files.uploadedfile import SimpleUploadedFile

        from apikeys.services import project_create
        from demo.pdf import simple_pdf
        from renders.services import render_create, render_event_record
        from renders.shares import share_mint
        from tests.receivers import start_receiver
        from webhooks.models import DeliveryStatus, WebhookDelivery
        from webhooks.services import endpoint_create

        pdf = simple_pdf("Quarterly report", ["A readable one-page PDF: uploads are opened as PDFs."])

        def new_render(project):
            return render_create(project=project, uploaded_file=SimpleUploadedFile("q.pdf", pdf), name="q.pdf")

        receiver = start_receiver()
        listening = project_create(name="listening")
        render = new_render(listening)
        endpoint_create(project=listening, url=receiver.url, events=["share.created", "render.printed"])
        log = Path(f"/tmp/{DB_NAME}-worker.log")
        worker = start_worker(env, log)

        # 1. Commit to delivery, one event at a time, the worker idle in between.
        latencies = []
        for index in range(args.events):
            before = len(receiver.received)
            started = time.monotonic()
            share_mint(render=render, label=f"latency {index}")
            arrived = receiver.wait_for(before + 1, timeout=10)
            if len(arrived) <= before:
                raise SystemExit("a delivery did not arrive within 10 s")
            latencies.append(arrived[before].at - started)
            time.sleep(0.3)

        # 2. One worker draining a backlog stored while it was stopped.
        stop(worker)
        worker = None
        for index in range(args.backlog):
            share_mint(render=render, label=f"backlog {index}")
        before = len(receiver.received)
        worker = start_worker(env, log)
        drain_started = time.monotonic()
        receiver.wait_for(before + args.backlog, timeout=600)
        drained = time.monotonic() - drain_started
        while WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).exists():
            time.sleep(0.1)
        stop(worker)
        worker = None

        # 3. Recording with a subscribed endpoint against without (interleaved rounds, same run).
        quiet = project_create(name="quiet")
        quiet_render = new_render(quiet)
        per_side = {"without": [], "with": []}
        rounds = 10
        for round_index in range(rounds):
            for side, (project, target) in (("without", (quiet, quiet_render)), ("with", (listening, render))):
                started = time.perf_counter()
                for index in range(args.records // rounds):
                    n = round_index * args.records + index
                    render_event_record(project=project, render_id=str(target.id), event_type="printed",
                                        actor_kind="partner", source_ip=f"10.{n // 65536 % 256}.{n // 256 % 256}"
                                                                        f".{n % 256}")
                per_side[side].append((time.perf_counter() - started) / (args.records // rounds))
        without, with_endpoint = statistics.median(per_side["without"]), statistics.median(per_side["with"])
        receiver.stop()

        p50, p95 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.95) * 1000
        print(f"commit-to-delivery, idle worker ({args.events} events): p50 {p50:.1f} ms, p95 {p95:.1f} ms "
              "(target p50 < 200 ms)")
        print(f"one worker: {args.backlog} deliveries in {drained:.2f} s = {args.backlog / drained:.0f} deliveries/s")
        print(f"recording an event: {without * 1e6:.0f} us without endpoints, {with_endpoint * 1e6:.0f} us with a "
              f"subscribed endpoint = {with_endpoint / without:.2f}x (target <= 1.15x)")
        return 0
    finally:
        if worker is not None:
            stop(worker)
        from django.db import connections

        connections.close_all()
        pg.drop_database(DB_NAME)


if __name__ == "__main__":
    raise SystemExit(main())
