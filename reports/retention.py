"""Retention on the report side: a project's message events from before its plan's cutoff are deleted, with the
messages left without events and every derived row (daily and period ledgers and rollups) of days wholly before
the cutoff. The day holding the cutoff, and the week and month holding it, are recounted from the events kept,
so the rollups stay equal to a recomputation from raw events.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db import transaction

from engagement_platform.db.batches import chunked_transactions
from reports.grains import utc_day
from reports.models import (
    DailyFirstTouch,
    DailyRollup,
    FirstTouchesPending,
    PendingRecount,
    PeriodFirstTouch,
    PeriodRollup,
    SliceRollup,
)
from reports.rollups import definition as rule
from reports.rollups.sql import (
    lock_project_rollups,
    message_events_delete_before,
    messages_without_events_delete,
    partition_messages_settle,
    period_start,
    periods_of,
)
from reports.selectors import report_bodies
from reports.services import periods_rebuild, rollups_rebuild

PURGE_CHUNK = 5000  # rows per transaction: short locks, and a killed purge keeps what it finished


@dataclass
class ReportPurge:
    events: int = 0
    messages: int = 0
    derived_rows: int = 0
    recounted: list = field(default_factory=list)  # the days and (period, start) pairs recounted


def report_data_purge(*, project, cutoff: datetime, chunk: int = PURGE_CHUNK) -> ReportPurge:
    """Delete what the project's plan no longer keeps before `cutoff`; recount what straddles it."""
    purged = ReportPurge()
    cutoff_day = utc_day(cutoff)
    days: set[date] = set()
    messages: set = set()
    def events_chunk_delete(limit: int) -> list:
        return message_events_delete_before(project_id=project.pk, cutoff=cutoff, limit=limit)

    for deleted in chunked_transactions(events_chunk_delete, chunk):
        days.update(day for day, _message in deleted)
        messages.update(message for _day, message in deleted)
        purged.events += len(deleted)
    purged.messages = _messages_purge(project=project, message_ids=sorted(messages, key=str), chunk=chunk)
    purged.derived_rows = _derived_rows_purge(project=project, cutoff_day=cutoff_day)
    straddling = {(period, start) for period, start in periods_of(days) if start == period_start(period, cutoff_day)}
    if cutoff_day in days:  # the day, and the week and month holding it
        rollups_rebuild(project=project, first_day=cutoff_day, end_day=cutoff_day + timedelta(days=1))
        purged.recounted.append(cutoff_day)
    else:
        periods_rebuild(project=project, periods=straddling)
    purged.recounted.extend(sorted(straddling))
    if purged.events or purged.derived_rows:
        report_bodies.changed(project.pk)
    return purged


def _messages_purge(*, project, message_ids: list, chunk: int) -> int:
    """Delete the messages of the deleted events that no kept event refers to, a chunk per transaction (each
    under the project's exclusive rollup lock, so no batch adds an event to one of them meanwhile)."""
    gone = 0
    for start in range(0, len(message_ids), chunk):
        with transaction.atomic():
            lock_project_rollups(project_id=project.pk, exclusive=True)
            gone += messages_without_events_delete(project_id=project.pk, message_ids=message_ids[start:start + chunk])
    return gone


def _derived_rows_purge(*, project, cutoff_day: date) -> int:
    """Delete the derived rows of days (and periods) that end on or before `cutoff_day`, a day per transaction."""
    gone = 0
    daily = (DailyFirstTouch, DailyRollup, SliceRollup, FirstTouchesPending, PendingRecount)
    days = set()
    for model in daily:
        days.update(model.objects.filter(project=project, day__lt=cutoff_day).order_by()
                    .values_list("day", flat=True).distinct())
    for day in sorted(days):
        with transaction.atomic():
            gone += sum(model.objects.filter(project=project, day=day).delete()[0] for model in daily)
    for period in rule.PERIODS:
        ended = {"project": project, "period": period, "start__lt": period_start(period, cutoff_day)}
        starts = sorted(set(PeriodRollup.objects.filter(**ended).values_list("start", flat=True))
                        | set(PeriodFirstTouch.objects.filter(**ended).order_by().values_list("start", flat=True)
                              .distinct()))
        for start in starts:
            with transaction.atomic():
                own = {"project": project, "period": period, "start": start}
                gone += PeriodFirstTouch.objects.filter(**own).delete()[0]
                gone += PeriodRollup.objects.filter(**own).delete()[0]
    return gone


def events_partition_settle(partition: str) -> None:
    """Before one monthly partition of the message events is dropped: its events' keys and the messages left
    without events go in the same transaction."""
    partition_messages_settle(partition)
