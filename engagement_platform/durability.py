"""Commits that need not wait for the disk, made durable at once when it matters (bulk loads)."""

from contextlib import contextmanager

from django.db import connection, transaction


def flush_commits() -> None:
    """Return once every transaction this session committed without waiting for its flush is on disk.

    A transaction that commits with synchronous_commit on flushes the WAL up to its commit record,
    which lies after every earlier commit of the session (PostgreSQL; nothing to do elsewhere).
    """
    if connection.vendor != "postgresql":
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT txid_current()")  # an xid, so the commit writes and flushes a record


@contextmanager
def commit_without_flush():
    """A transaction whose commit does not wait for its WAL flush (PostgreSQL; a plain transaction elsewhere).

    For rows that are only a hint, rebuilt from durable data if a server crash loses them (a webhook task
    row: the delivery it points at was stored durably with its event, and the worker's sweep sends it anyway).
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield
