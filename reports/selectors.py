"""Reads on the report side: the engagement time series.

Whole UTC days come from the daily rollups (one row per day whatever the traffic); only the
partial first and last days of a window are counted from raw events. One statement: the
database sums the days into buckets (and on PostgreSQL also writes the JSON body).
"""

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import models

from engagement_platform.bodycache import KeptBodies
from engagement_platform.clock import iso_seconds, now
from engagement_platform.db.replica import PRIMARY, replica_read
from engagement_platform.errors import RetentionExceeded, ValidationFailed
from engagement_platform.jsonio import dumps
from engagement_platform.traffic import TrafficFilter
from reports.grains import day_start, grain_key_for_filters, utc_day
from reports.rollups.definition import column_for_traffic
from reports.rollups.sql import report_json_text, report_rows

DEFAULT_WINDOW = timedelta(days=30)
# Encoded report bodies kept per project, under the resolved window, the bucket size and the filters (a
# report is a pure function of those and the project's rollups and raw events), dropped by every write to
# the project's report data once it commits (`report_bodies.changed(project_id)`: ingestion batches that
# accepted events, rollup rebuilds). Off (`REPORT_CACHE_SECONDS` = 0) unless the cache is shared by every
# worker (Redis).
report_bodies = KeptBodies(scope="reports", seconds_setting="REPORT_CACHE_SECONDS")
# A bucket's counts (rollup figures) in the order of `Bucket`'s fields and of the statement's columns.
BUCKET_COLUMNS = ("sent", "delivered", "opens", "clicks", "unique_opens", "unique_clicks")
# A bucket's keys on the wire, in order, with what each holds (see `report_json_text`); `bucket_json` agrees.
BODY = (("period", "period"), ("sent", "sent"), ("delivered", "delivered"), ("opens", "opens"),
        ("unique_opens", "unique_opens"), ("clicks", "clicks"), ("unique_clicks", "unique_clicks"),
        ("open_rate", ("rate", "unique_opens")), ("click_rate", ("rate", "unique_clicks")))


class GroupBy(models.TextChoices):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class UniqueMode(models.TextChoices):
    """How week and month buckets count unique opens and clicks (contract 3.1)."""

    DAILY = "daily"  # the sum of the daily distinct counts (the seeds' caveat)
    EXACT = "exact"  # each recipient once per bucket


@dataclass(frozen=True)
class Window:
    """Events with start <= occurred_at < end (aware datetimes)."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class ReportFilters:
    channel_id: uuid.UUID | None = None
    domain: str | None = None  # lowercased sending domain
    traffic: str = TrafficFilter.ALL  # opens and clicks of every class, or of one (sent and delivered: all)
    unique: str = UniqueMode.DAILY

    def columns(self, figures):
        """The rollup columns holding `figures` for this filter's traffic (`column_for_traffic`)."""
        return tuple(column_for_traffic(figure, self.traffic) for figure in figures)

    def body(self):
        """`BODY` with each figure read from this filter's traffic columns (the wire keys stay)."""
        return tuple((key, source if source == "period" else
                      (source[0], column_for_traffic(source[1], self.traffic)) if isinstance(source, tuple)
                      else column_for_traffic(source, self.traffic)) for key, source in BODY)


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
    retention_start = project.kept_since(at)
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


def engagement_report(*, project, window: Window, group_by: str, filters: ReportFilters,
                      using: str = PRIMARY) -> list[Bucket]:
    """The buckets of `window`, oldest first, empty ones omitted, read from the database `using`.

    Unique opens and clicks are exact per UTC day for the filtered traffic; week and month
    buckets sum the daily figures (the documented caveat). With a traffic class, opens and clicks
    (and their uniques and rates) are that class's; a bucket whose figures are all 0 is omitted.
    """
    rows = report_rows(project_id=project.pk, group_by=group_by, figures=filters.columns(BUCKET_COLUMNS),
                       using=using, **_report_parts(window=window, group_by=group_by, filters=filters))
    return [Bucket(day_start(period), *counts) for period, *counts in rows]


def engagement_report_json(*, project, window: Window, group_by: str, filters: ReportFilters,
                           using: str = PRIMARY) -> bytes:
    """The report's body `{"data": [bucket, ...]}`, encoded.

    Where the database writes JSON (PostgreSQL) it builds the buckets and their text in the same
    statement and the view passes the bytes through; elsewhere the buckets are encoded here.
    """
    text = report_json_text(project_id=project.pk, group_by=group_by, body=filters.body(), using=using,
                            **_report_parts(window=window, group_by=group_by, filters=filters))
    if text is not None:
        return text.encode("utf-8")
    buckets = engagement_report(project=project, window=window, group_by=group_by, filters=filters, using=using)
    return dumps({"data": [bucket_json(bucket) for bucket in buckets]})


def engagement_report_body(*, project, window: Window, group_by: str, filters: ReportFilters,
                           refresh: bool = False) -> bytes:
    """The report's encoded body, from the report cache when it is current (`refresh` builds it afresh).

    Built on the replica when one is configured and the project has not written within the
    read-your-writes window (contract section 10), else on the primary."""
    def build() -> bytes:
        return replica_read(project.pk, lambda using: engagement_report_json(
            project=project, window=window, group_by=group_by, filters=filters, using=using))

    return report_bodies.cached(
        project.pk, inputs=_report_inputs(window=window, group_by=group_by, filters=filters), build=build,
        refresh=refresh,
    )


def _report_inputs(*, window: Window, group_by: str, filters: ReportFilters) -> tuple:
    """Everything besides the project's data that a report body depends on."""
    channel = filters.channel_id.hex if filters.channel_id else ""
    return (window.start.isoformat(), window.end.isoformat(), str(group_by), channel, filters.domain or "",
            str(filters.traffic), str(filters.unique))


def bucket_json(bucket: Bucket) -> dict:
    """One bucket on the wire; `BODY` gives the database's text the same keys in the same order."""
    return {
        "period": iso_seconds(bucket.period),
        "sent": bucket.sent,
        "delivered": bucket.delivered,
        "opens": bucket.opens,
        "unique_opens": bucket.unique_opens,
        "clicks": bucket.clicks,
        "unique_clicks": bucket.unique_clicks,
        "open_rate": bucket.open_rate,
        "click_rate": bucket.click_rate,
    }


def _report_parts(*, window: Window, group_by: str, filters: ReportFilters) -> dict:
    """What the report statement reads: the whole days' rollup rows of one grain key, the partial edges, and
    for exact week and month uniques the window (their buckets come from the period ledgers)."""
    first_whole, end_whole, partial = split_window(window)
    exact = filters.unique == UniqueMode.EXACT and group_by != GroupBy.DAY  # for days both modes agree
    return {"whole_days": (first_whole, end_whole) if first_whole < end_whole else None, "partial": partial,
            "key": grain_key_for_filters(channel_id=filters.channel_id, domain=filters.domain),
            "exact": (window.start, window.end) if exact else None}
