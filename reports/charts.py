"""A project's daily message traffic for the admin chart, read from the unfiltered rollup grain."""

from dataclasses import dataclass
from datetime import date, timedelta

from engagement_platform.clock import now
from engagement_platform.svgchart import Series, line_chart
from reports.grains import grain_key_for_filters, utc_day
from reports.models import DailyRollup

# The chart spans the plan's retention, at most a year: older rollups cannot be reported anyway.
TRAFFIC_CHART_MAX_DAYS = 366
# Opens and clicks split into people and machines (contract section 6); sent and delivered are not classified.
TRAFFIC_COLUMNS = ("sent", "delivered", "opens_human", "opens_machine", "clicks_human", "clicks_machine")
TRAFFIC_LABELS = {"opens_human": "opens (human)", "opens_machine": "opens (machine)",
                  "clicks_human": "clicks (human)", "clicks_machine": "clicks (machine)"}


@dataclass(frozen=True)
class DailyTraffic:
    days: list[date]  # every UTC day of the span, oldest first, days without traffic included
    values: dict[str, list[int]]  # column name → one figure per day of `days`


def traffic_chart_days(*, project) -> int:
    return max(1, min(project.retention_days, TRAFFIC_CHART_MAX_DAYS))


def daily_traffic(*, project, days: int) -> DailyTraffic:
    """Sent, delivered, and opens and clicks per traffic class, per UTC day over the last `days` days (today
    included), one query.

    Only the unfiltered grain is read: every event counts once there, while the per-channel and
    per-domain grains hold the same events again.
    """
    last_day = utc_day(now())
    first_day = last_day - timedelta(days=days - 1)
    grain, channel_key, domain = grain_key_for_filters(channel_id=None, domain=None)
    rows = (DailyRollup.objects
            .filter(project=project, grain=grain, channel_key=channel_key, domain=domain,
                    day__gte=first_day, day__lte=last_day)
            .values_list("day", *TRAFFIC_COLUMNS))
    by_day = {row[0]: row[1:] for row in rows}
    day_list = [first_day + timedelta(days=i) for i in range(days)]
    zeros = (0,) * len(TRAFFIC_COLUMNS)
    return DailyTraffic(
        days=day_list,
        values={column: [by_day.get(day, zeros)[position] for day in day_list]
                for position, column in enumerate(TRAFFIC_COLUMNS)},
    )


def project_traffic_chart(*, project) -> str:
    """The admin's SVG chart of a project's daily sent, delivered, and human and machine opens and clicks over its
    retention."""
    days = traffic_chart_days(project=project)
    traffic = daily_traffic(project=project, days=days)
    series = [Series(TRAFFIC_LABELS.get(column, column), traffic.values[column]) for column in TRAFFIC_COLUMNS]
    return line_chart(title=f"Messages per day, last {days} days (UTC)", days=traffic.days, series=series)
