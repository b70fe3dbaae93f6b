"""Reads on the report side: the engagement time series.

Whole UTC days come from the daily rollups (one row per day whatever the traffic); only the
partial first and last days of a window are counted from raw events. One statement: the
database sums the days into buckets (and on PostgreSQL also writes the JSON body).
"""

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import connection, models

from engagement_platform.bodycache import KeptBodies
from engagement_platform.clock import iso_seconds, now
from engagement_platform.errors import RetentionExceeded, ValidationFailed
from engagement_platform.jsonio import dumps
from reports.grains import COUNT_COLUMN, UNIQUE_COLUMN, day_start, grain_key_for_filters, utc_day
from reports.models import Channel, DailyRollup, Message, MessageEvent

DEFAULT_WINDOW = timedelta(days=30)
# Encoded report bodies kept per project, under the resolved window, the bucket size and the filters (a
# report is a pure function of those and the project's rollups and raw events), dropped by every write to
# the project's report data once it commits (`report_bodies.changed(project_id)`: ingestion batches that
# accepted events, rollup rebuilds). Off (`REPORT_CACHE_SECONDS` = 0) unless the cache is shared by every
# worker (Redis).
report_bodies = KeptBodies(scope="reports", seconds_setting="REPORT_CACHE_SECONDS")
# A bucket's counts in the order of `Bucket`'s fields and of the statement's columns.
BUCKET_COLUMNS = ("sent", "delivered", "opens", "clicks", "unique_opens", "unique_clicks")


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
    sql, params = _buckets_statement(project=project, window=window, group_by=group_by, filters=filters)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [Bucket(day_start(period if isinstance(period, date) else date.fromisoformat(period)), *counts)
            for period, *counts in rows]


def engagement_report_json(*, project, window: Window, group_by: str, filters: ReportFilters) -> bytes:
    """The report's body `{"data": [bucket, ...]}`, encoded.

    On PostgreSQL the database builds the buckets and their JSON text in the same statement
    (rates clamped with LEAST/GREATEST, periods with to_char) and the view passes the bytes
    through; elsewhere the buckets are encoded here.
    """
    if connection.vendor != "postgresql":
        buckets = engagement_report(project=project, window=window, group_by=group_by, filters=filters)
        return dumps({"data": [bucket_json(bucket) for bucket in buckets]})
    sql, params = _buckets_statement(project=project, window=window, group_by=group_by, filters=filters)
    with connection.cursor() as cursor:
        cursor.execute(_json_body(sql), params)
        return cursor.fetchone()[0].encode("utf-8")


def engagement_report_body(*, project, window: Window, group_by: str, filters: ReportFilters,
                           refresh: bool = False) -> bytes:
    """The report's encoded body, from the report cache when it is current (`refresh` builds it afresh)."""
    return report_bodies.cached(
        project.pk,
        inputs=_report_inputs(window=window, group_by=group_by, filters=filters),
        build=lambda: engagement_report_json(project=project, window=window, group_by=group_by, filters=filters),
        refresh=refresh,
    )


def _report_inputs(*, window: Window, group_by: str, filters: ReportFilters) -> tuple:
    """Everything besides the project's data that a report body depends on."""
    channel = filters.channel_id.hex if filters.channel_id else ""
    return (window.start.isoformat(), window.end.isoformat(), str(group_by), channel, filters.domain or "")


def bucket_json(bucket: Bucket) -> dict:
    """One bucket on the wire; the PostgreSQL text in `_JSON_ENVELOPE` spells the same keys in the same order."""
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


# One statement per report: the rollup rows of the whole days, UNION ALL the partial edge days
# counted from raw events (only when the window has any), grouped into buckets by the database.

_PERIOD = {
    "postgresql": {GroupBy.DAY: "day", GroupBy.WEEK: "date_trunc('week', day::timestamp)::date",
                   GroupBy.MONTH: "date_trunc('month', day::timestamp)::date"},
    "sqlite": {GroupBy.DAY: "day", GroupBy.WEEK: "date(day, 'weekday 0', '-6 days')",
               GroupBy.MONTH: "date(day, 'start of month')"},
}
_UTC_DAY = {"postgresql": "(e.occurred_at AT TIME ZONE 'UTC')::date", "sqlite": "date(e.occurred_at)"}

_SUMMED = ", ".join(f"CAST(sum({column}) AS BIGINT) AS {column}" for column in BUCKET_COLUMNS)


def _rate_text(unique: str) -> str:
    """unique / delivered clamped to [0, 1], as JSON text equal to Python's float repr (0.0 and 1.0 included).

    The clamp is decided on the integers (both are counts, never negative), so only rates strictly
    between 0 and 1 are divided and printed by float8 output, whose shortest form is Python's repr.
    """
    return (f"CASE WHEN {unique} <= 0 OR delivered <= 0 THEN '0.0' WHEN {unique} >= delivered THEN '1.0' "
            f"ELSE ({unique}::float8 / delivered)::text END")


# One bucket's JSON text; `bucket_json` gives the same keys in the same order.
_BUCKET_TEXT = (
    """'{"period":"' || to_char(period, 'YYYY-MM-DD') || 'T00:00:00Z","sent":' || sent"""
    """ || ',"delivered":' || delivered || ',"opens":' || opens || ',"unique_opens":' || unique_opens"""
    """ || ',"clicks":' || clicks || ',"unique_clicks":' || unique_clicks"""
    f""" || ',"open_rate":' || {_rate_text('unique_opens')} || ',"click_rate":' || {_rate_text('unique_clicks')}"""
    """ || '}'"""
)


def _json_body(buckets_sql: str) -> str:
    return (f"""SELECT '{{"data":[' || coalesce(string_agg({_BUCKET_TEXT}, ',' ORDER BY period), '') || ']}}' """
            f"FROM ({buckets_sql}) AS buckets")


def _buckets_statement(*, project, window: Window, group_by: str, filters: ReportFilters) -> tuple[str, list]:
    """SQL and parameters giving (period, sent, delivered, opens, clicks, unique_opens, unique_clicks) rows."""
    vendor = "postgresql" if connection.vendor == "postgresql" else "sqlite"
    ops = connection.ops
    project_id = project.pk if vendor == "postgresql" else project.pk.hex
    first_whole, end_whole, partial = split_window(window)
    grain, channel_key, domain = grain_key_for_filters(channel_id=filters.channel_id, domain=filters.domain)
    parts, params = [], []
    if first_whole < end_whole:
        parts.append(
            f"SELECT day, {', '.join(BUCKET_COLUMNS)} FROM {_table(DailyRollup)} WHERE project_id = %s "
            f"AND grain = %s AND channel_key = %s AND domain = %s AND day >= %s AND day < %s"
        )
        params += [project_id, grain, channel_key, domain, ops.adapt_datefield_value(first_whole),
                   ops.adapt_datefield_value(end_whole)]
    if partial:
        joins, conditions = "", []
        if filters.channel_id is not None:
            joins = f" JOIN {_table(Channel)} c ON c.id = m.channel_id"
            conditions.append("c.external_id = %s")
        if filters.domain:
            conditions.append("m.from_domain = %s")
        ranges = " OR ".join(["(e.occurred_at >= %s AND e.occurred_at < %s)"] * len(partial))
        counts = ", ".join(f"sum(CASE WHEN e.type = '{kind}' THEN 1 ELSE 0 END) AS {column}"
                           for kind, column in COUNT_COLUMN.items())
        uniques = ", ".join(f"count(DISTINCT CASE WHEN e.type = '{kind}' THEN m.recipient END) AS {column}"
                            for kind, column in UNIQUE_COLUMN.items())
        parts.append(
            f"SELECT {_UTC_DAY[vendor]} AS day, {counts}, {uniques} FROM {_table(MessageEvent)} e "
            f"JOIN {_table(Message)} m ON m.id = e.message_id{joins} WHERE e.project_id = %s AND ({ranges})"
            + "".join(f" AND {condition}" for condition in conditions) + " GROUP BY 1"
        )
        params.append(project_id)
        for range_start, range_end in partial:
            params += [ops.adapt_datetimefield_value(range_start), ops.adapt_datetimefield_value(range_end)]
        if filters.channel_id is not None:
            params.append(filters.channel_id if vendor == "postgresql" else filters.channel_id.hex)
        if filters.domain:
            params.append(filters.domain)
    days = " UNION ALL ".join(parts)
    columns = ", ".join(BUCKET_COLUMNS)
    nonempty = f"{' + '.join(BUCKET_COLUMNS)} > 0"
    if group_by == GroupBy.DAY:  # one row per day already: whole days are one rollup row, edge days one group
        sql = f"SELECT day AS period, {columns} FROM ({days}) AS days WHERE {nonempty} ORDER BY period"
    else:
        sql = (f"SELECT {_PERIOD[vendor][group_by]} AS period, {_SUMMED} FROM ({days}) AS days "
               f"WHERE {nonempty} GROUP BY 1 ORDER BY period")
    return sql, params


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)
