"""`manage.py worker`: the background worker (contract section 5).

It runs the task queue (django-tasks' database worker: webhook deliveries enqueued at commit) and, in a thread
beside it, the periodic jobs of engagement_platform.periodic (due webhook deliveries and retries, failing
endpoints; visit endings and partition upkeep register there too). A lost database connection is waited out:
the worker logs it and carries on once the database answers again.
"""

import logging
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django.db.utils import DatabaseError, InterfaceError
from django.utils.crypto import get_random_string
from django_tasks_db.management.commands.db_worker import Worker

from engagement_platform import periodic

logger = logging.getLogger("engagement_platform.worker")
DATABASE_RETRY_SECONDS = 1.0


class Command(BaseCommand):
    help = "Run the background worker: queued tasks and the periodic jobs."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=None,
                            help="Seconds between looks for new tasks when idle (default WORKER_POLL_SECONDS).")
        parser.add_argument("--queue-name", default="*", help="Queues to run, comma-separated ('*': all).")
        parser.add_argument("--no-periodic", action="store_true", help="Run queued tasks only.")
        parser.add_argument("--worker-id", default=None, help="A unique id for this worker (default: random).")

    def handle(self, *args, interval, queue_name, no_periodic, worker_id, **options):
        interval = settings.WORKER_POLL_SECONDS if interval is None else interval
        stop = threading.Event()
        if not no_periodic:
            names = ", ".join(job.name for job in periodic.jobs())
            threading.Thread(target=run_periodic, args=(stop,), name="periodic", daemon=True).start()
        else:
            names = "none"
        worker = Worker(queue_names=queue_name.split(","), interval=interval, batch=False, backend_name="default",
                        startup_delay=False, max_tasks=None, worker_id=worker_id or get_random_string(32),
                        excluded_queue_names=[])
        worker.configure_signals()
        self.stdout.write(f"worker started: tasks every {interval}s when idle; periodic jobs: {names}")
        self.stdout.flush()
        try:
            run_tasks(worker)
        finally:
            stop.set()


def run_tasks(worker: Worker) -> None:
    """The task loop, started again whenever the database drops it."""
    while worker.running:
        try:
            worker.run()
        except (DatabaseError, InterfaceError) as exc:
            logger.warning("worker lost its database; retrying", extra={"error": str(exc)})
            periodic.close_connections()
            time.sleep(DATABASE_RETRY_SECONDS)


def run_periodic(stop: threading.Event) -> None:
    schedule = periodic.Schedule()
    while not stop.is_set():
        try:
            close_old_connections()
        except (DatabaseError, InterfaceError):
            periodic.close_connections()
        schedule.run_due()
        stop.wait(min(schedule.seconds_to_next(), 1.0))
