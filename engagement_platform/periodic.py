"""The worker's periodic jobs: a small registry the apps fill from their `ready()` and `manage.py worker` runs.

Each job runs at most every `every_seconds`, one at a time, in the worker's periodic thread. Webhooks registers
its due deliveries (retries and anything enqueued but not run: the outbox sweep) and the failing-endpoint
check; renders registers the visit endings (`visit.ended`) the same way.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db.utils import DatabaseError, InterfaceError

logger = logging.getLogger("engagement_platform.worker")


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    every_seconds: float
    run: Callable[[], object]


_jobs: dict[str, PeriodicJob] = {}


def register(job: PeriodicJob) -> None:
    """Add (or replace, by name) a periodic job."""
    _jobs[job.name] = job


def jobs() -> list[PeriodicJob]:
    return list(_jobs.values())


class Schedule:
    """When each job last ran; `run_due` runs those whose time has come (a failing job is logged, retried
    at its next time, and never stops the others). The caller drops stale connections between rounds."""

    def __init__(self, registered: list[PeriodicJob] | None = None, clock=time.monotonic):
        self.jobs = registered if registered is not None else jobs()
        self.clock = clock
        self.last_run: dict[str, float] = {}

    def run_due(self) -> int:
        ran = 0
        for job in self.jobs:
            started = self.clock()
            if started - self.last_run.get(job.name, float("-inf")) < job.every_seconds:
                continue
            self.last_run[job.name] = started
            ran += 1
            try:
                job.run()
            except (DatabaseError, InterfaceError) as exc:  # the database is away: the next round retries
                logger.warning("periodic job lost its database", extra={"job": job.name, "error": str(exc)})
                close_connections()
            except Exception:
                logger.exception("periodic job failed", extra={"job": job.name})
        return ran

    def seconds_to_next(self) -> float:
        now = self.clock()
        waits = [self.last_run.get(job.name, float("-inf")) + job.every_seconds - now for job in self.jobs]
        return max(0.0, min(waits, default=1.0))


def close_connections() -> None:
    """Drop this thread's database connections so the next query opens a fresh one."""
    from django.db import connections

    for connection in connections.all(initialized_only=True):
        try:
            connection.close()
        except (DatabaseError, InterfaceError):
            pass  # a connection the server already dropped: closing it is all that was needed
