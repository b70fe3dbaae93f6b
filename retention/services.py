"""Each plan's retention, enforced: `purge_expired` and the worker's daily job.

Every project keeps its events, visits and derived rows from `retention_days` before now; what is older is
deleted (renders.retention, reports.retention), what it added to all-time figures taken off them. On
PostgreSQL the tables that grow with traffic are partitioned by month (engagement_platform.db.partitions):
the months older than the longest retention of any project hold nothing any plan keeps, and are dropped whole
before the rows of shorter plans are deleted one chunk at a time.
"""

import time
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Max

from apikeys.models import Project
from engagement_platform.clock import now
from engagement_platform.db import partitions
from renders.retention import RenderPurge, render_data_purge
from reports.retention import ReportPurge, report_data_purge

PURGE_EVERY_SECONDS = 24 * 3600.0
UPKEEP_EVERY_SECONDS = 3600.0


@dataclass
class ProjectPurge:
    project_id: object
    cutoff: datetime
    renders: RenderPurge
    reports: ReportPurge
    seconds: float


@dataclass
class PurgeResult:
    at: datetime
    partitions_dropped: list[str] = field(default_factory=list)
    partition_seconds: float = 0.0
    projects: list[ProjectPurge] = field(default_factory=list)


def longest_retention_days() -> int | None:
    """The longest plan retention of any project (soft-deleted ones included: their data is still kept)."""
    return Project.objects.aggregate(longest=Max("retention_days"))["longest"]


def partitions_keep_ahead(*, at: datetime | None = None) -> partitions.UpkeepResult:
    """The worker's hourly job: every partitioned table has its months up to MONTHS_AHEAD ahead."""
    return partitions.partitions_upkeep(longest_retention_days=longest_retention_days() or 0, at=at or now())


def expired_purge(*, at: datetime | None = None) -> PurgeResult:
    """Drop the partitions past the longest retention, then delete each project's rows past its own."""
    at = at or now()
    result = PurgeResult(at=at)
    longest = longest_retention_days()
    if longest is None:
        return result
    dropped = partitions.expired_partitions_drop(cutoff=Project(retention_days=longest).kept_since(at))
    result.partitions_dropped, result.partition_seconds = dropped.dropped, dropped.seconds
    for project in Project.objects.order_by("created_at", "id"):
        started = time.perf_counter()
        cutoff = project.kept_since(at)
        renders = render_data_purge(project_id=project.pk, cutoff=cutoff)
        reports = report_data_purge(project=project, cutoff=cutoff)
        result.projects.append(ProjectPurge(project_id=project.pk, cutoff=cutoff, renders=renders, reports=reports,
                                            seconds=time.perf_counter() - started))
    return result
