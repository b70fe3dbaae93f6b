"""Reads on the report side: the engagement time series.

Whole UTC days come from the daily rollups (one row per day whatever the traffic); only the
partial first and last days of a window are counted from raw events. At most two queries.
"""

import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db import models
from django.db.models import Count, Q
from django.db.models.functions import TruncDate

from engagement_platform.clock import now
from engagement_platform.errors import RetentionExceeded, ValidationFailed
from reports.grains import COUNT_COLUMN, ROLLUP_COUNT_COLUMNS, UNIQUE_COLUMN, day_start, grain_key_for_filters, utc_day
from reports.models import DailyRollup, MessageEvent

DEFAULT_WINDOW = timedelta(days=30)


class GroupBy(models.TextChoices):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True)
class Window:
    """Events with start <= occurred_at < end (aware datetimes)."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class ReportFilters:
    channel_id: uuid.UUID | None = None
    domain: str | None = None  # lowercased sending domain


@dataclass(frozen=True)
class Bucket:
    period: datetime
    sent: int = 0
    delivered: int = 0
    opens: int = 0
    clicks: int = 0
    unique_opens: int = 0
    unique_clicks: int = 0

    @property
    def open_rate(self) -> float:
        return rate(self.unique_opens, self.delivered)

    @property
    def click_rate(self) -> float:
        return rate(self.unique_clicks, self.delivered)


def rate(unique: int, delivered: int) -> float:
    """unique / delivered clamped to [0, 1]; 0.0 when nothing was delivered."""
    if delivered <= 0:
        return 0.0
    return min(1.0, max(0.0, unique / delivered))


def report_window(*, project, start: datetime | None = None, end: datetime | None = None,
                  at: datetime | None = None) -> Window:
    """The window a report covers: defaults, `from < to`, and the plan's retention."""
    at = at or now()
    retention_start = at - timedelta(days=project.retention_days)
    end = end or at
    if start is None:
        if end <= retention_start:
            raise RetentionExceeded(project.retention_days)
        start = max(end - DEFAULT_WINDOW, retention_start)
    if start >= end:
        raise ValidationFailed(field_errors={"from": ["Must be earlier than `to`."]})
    if start < retention_start:
        raise RetentionExceeded(project.retention_days)
    return Window(start=start, end=end)


def bucket_start(day: date, group_by: str) -> date:
    if group_by == GroupBy.WEEK:
        return day - timedelta(days=day.weekday())  # ISO week: Monday
    if group_by == GroupBy.MONTH:
        return day.replace(day=1)
    return day


def split_window(window: Window) -> tuple[date, date, list[tuple[datetime, datetime]]]:
    """(first whole day, end of whole days (exclusive), the partial time ranges outside them)."""
    start, end = window.start, window.end
    first_whole = utc_day(start)
    if start > day_start(first_whole):
        first_whole += timedelta(days=1)
    end_whole = utc_day(end)
    if first_whole >= end_whole:
        return first_whole, first_whole, [(start, end)]
    partial = []
    if start < day_start(first_whole):
        partial.append((start, day_start(first_whole)))
    if end > day_start(end_whole):
        partial.append((day_start(end_whole), end))
    return first_whole, end_whole, partial


def engagement_report(*, project, window: Window, group_by: str, filters: ReportFilters) -> list[Bucket]:
    """The buckets of `window`, oldest first, empty ones omitted.

    Unique opens and clicks are exact per UTC day for the filtered traffic; week and month
    buckets sum the daily figures (the documented caveat).
    """
    first_whole, end_whole, partial = split_window(window)
    daily: dict[date, Counter] = {}
    if first_whole < end_whole:
        daily.update(_rollup_days(project=project, first_day=first_whole, end_day=end_whole, filters=filters))
    if partial:
        daily.update(_raw_days(project=project, ranges=partial, filters=filters))
    buckets: dict[date, Counter] = defaultdict(Counter)
    for day, counts in daily.items():
        buckets[bucket_start(day, group_by)].update(counts)
    return [
        Bucket(period=day_start(period), **{column: counts[column] for column in ROLLUP_COUNT_COLUMNS})
        for period, counts in sorted(buckets.items())
        if any(counts.values())
    ]


def _rollup_days(*, project, first_day: date, end_day: date, filters: ReportFilters) -> dict[date, Counter]:
    grain, channel_key, domain = grain_key_for_filters(channel_id=filters.channel_id, domain=filters.domain)
    rows = DailyRollup.objects.filter(
        project=project, grain=grain, channel_key=channel_key, domain=domain, day__gte=first_day, day__lt=end_day,
    ).values_list("day", *ROLLUP_COUNT_COLUMNS)
    return {row[0]: Counter(dict(zip(ROLLUP_COUNT_COLUMNS, row[1:], strict=True))) for row in rows}


def _raw_days(*, project, ranges: list[tuple[datetime, datetime]], filters: ReportFilters) -> dict[date, Counter]:
    """Counts and distinct recipients per UTC day of the events inside `ranges` (partial days only)."""
    in_ranges = Q()
    for range_start, range_end in ranges:
        in_ranges |= Q(occurred_at__gte=range_start, occurred_at__lt=range_end)
    events = MessageEvent.objects.filter(in_ranges, project=project)
    if filters.channel_id is not None:
        events = events.filter(message__channel__external_id=filters.channel_id)
    if filters.domain:
        events = events.filter(message__from_domain=filters.domain)
    rows = (
        events.annotate(utc_day=TruncDate("occurred_at", tzinfo=UTC))
        .order_by()
        .values("utc_day", "type")
        .annotate(n=Count("id"), recipients=Count("message__recipient", distinct=True))
    )
    daily: dict[date, Counter] = defaultdict(Counter)
    for row in rows:
        counts = daily[row["utc_day"]]
        counts[COUNT_COLUMN[row["type"]]] += row["n"]
        if row["type"] in UNIQUE_COLUMN:
            counts[UNIQUE_COLUMN[row["type"]]] += row["recipients"]
    return daily
