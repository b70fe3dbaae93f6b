"""The task queue's side of deliveries (django-tasks, forward compatible with django.tasks): a delivery's task
is stored with it (the database backend) or enqueued once its transaction commits, so the worker sends it at
once; the worker's sweep
(`delivery.deliver_due`) sends anything the queue lost (a crash after commit, a failed enqueue) and retries."""

import logging

from django.conf import settings
from django.db import connection, transaction
from django.db.utils import DatabaseError

from engagement_platform.durability import commit_without_flush

try:  # Django 6's own tasks framework when present, else the backport
    from django.tasks import task
except ImportError:  # pragma: no cover - Django 5.2
    from django_tasks import task

logger = logging.getLogger("engagement_platform.webhooks")

DATABASE_BACKEND = "django_tasks_db.DatabaseBackend"


@task()
def deliver_deliveries(delivery_ids: list[str]) -> int:
    """Send these deliveries now (each one only if still pending, due and not being sent elsewhere)."""
    from webhooks.delivery import deliver

    return sum(1 for delivery_id in delivery_ids if deliver(delivery_id) is not None)


def enqueue_after_commit(delivery_ids: list) -> None:
    """Have the worker send these stored deliveries once the caller's transaction commits.

    With the database backend the task row is written now, in the caller's transaction: it commits with the
    deliveries (the worker cannot see it before) or not at all, and costs one statement instead of a
    transaction of its own after the commit. Any other backend is told after the commit."""
    ids = [str(pk) for pk in delivery_ids]
    if not ids:
        return
    if _stored_in_the_database() and connection.in_atomic_block:
        deliver_deliveries.enqueue(ids)
    else:
        transaction.on_commit(lambda: enqueue_now(ids))


def task_row(delivery_ids: list) -> object | None:
    """The database backend's row for the deliveries' task, unsaved, exactly as its `enqueue` writes it (its
    fields as `DatabaseBackend._task_to_db_task` sets them; tests/test_webhooks_delivery.py compares the two
    rows), for a statement that stores it with its event; None with any other backend."""
    if not _stored_in_the_database():
        return None
    from django_tasks_db.compat import normalize_json
    from django_tasks_db.models import DBTaskResult

    backend = deliver_deliveries.get_backend()
    backend.validate_task(deliver_deliveries)
    return DBTaskResult(id=backend._get_id(), priority=deliver_deliveries.priority,
                        args_kwargs=normalize_json({"args": [[str(pk) for pk in delivery_ids]], "kwargs": {}}),
                        task_path=deliver_deliveries.module_path, queue_name=deliver_deliveries.queue_name,
                        run_after=deliver_deliveries.run_after, backend_name=backend.alias)


def task_stored(row) -> None:
    """What the backend's `enqueue` does after storing a task's row: its `task_enqueued` signal."""
    from django_tasks_db.compat import task_enqueued

    task_enqueued.send(type(deliver_deliveries.get_backend()), task_result=row.task_result)


def _stored_in_the_database() -> bool:
    return settings.TASKS["default"]["BACKEND"] == DATABASE_BACKEND


def enqueue_now(ids: list[str]) -> None:
    """Enqueue the deliveries' task. Its row is only a wake-up call (the deliveries are stored, durably, with
    their event, and the sweep sends them anyway), so its commit does not wait for the disk."""
    try:
        with commit_without_flush():
            deliver_deliveries.enqueue(ids)
    except DatabaseError as exc:  # stored already: the worker's sweep sends them
        logger.warning("webhook delivery not enqueued; the sweep sends it", extra={"error": str(exc)})
