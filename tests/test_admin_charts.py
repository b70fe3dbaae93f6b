"""Section 5: the admin's chart of a project's daily message traffic, read from the daily rollups."""

import re
from datetime import date, timedelta

import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext

from reports.charts import (
    TRAFFIC_CHART_MAX_DAYS,
    TRAFFIC_COLUMNS,
    TRAFFIC_LABELS,
    daily_traffic,
    traffic_chart_days,
)
from reports.models import DailyRollup, MessageEvent, RollupGrain
from tests.test_reports_helpers import CHANNEL_A, CHANNEL_B, OTHER_SENDER, SENDER, ingest, wire_event

pytestmark = pytest.mark.django_db

TODAY = date(2026, 5, 3)  # the `clock` fixture's day
EVENT_COLUMN = {"sent": "sent", "delivered": "delivered", "opened": "opens", "clicked": "clicks"}
CHART = re.compile(r'<svg [^>]*role="img".*?</svg>', flags=re.S)
LEGEND = re.compile(r"<text [^>]*>(sent|delivered|(?:opens|clicks) \((?:human|machine)\)) \((\d+)\)</text>")
COLUMN_OF_LABEL = {label: column for column, label in TRAFFIC_LABELS.items()}


def traffic(project, *, days_ago: list[int], recipients: int = 2, prefix: str = "t"):
    """Per day: each recipient gets a message on each channel from each sender; some open, fewer click."""
    events = []
    for ago in days_ago:
        stamp = f"{TODAY - timedelta(days=ago)}T08:30:00Z"
        for n in range(recipients):
            for channel in (CHANNEL_A, CHANNEL_B):
                for sender in (SENDER, OTHER_SENDER):
                    common = {"recipient": f"r{n}@example.org", "channel": channel, "sender": sender,
                              "message": f"{prefix}-{ago}-{n}-{channel[-1]}-{sender}"}
                    events.append(wire_event("sent", stamp, **common))
                    if n % 3 != 2:
                        events.append(wire_event("delivered", stamp, **common))
                    if n % 2 == 0:
                        events.append(wire_event("opened", stamp, **common))
                        events.append(wire_event("opened", stamp, **common, machine=True))  # a proxy's
                    if n % 4 == 0:
                        events.append(wire_event("clicked", stamp, **common))
    ingest(project, events)


def unfiltered_rollup_sums(project, first_day: date) -> dict[str, int]:
    rows = DailyRollup.objects.filter(project=project, grain=RollupGrain.ALL, day__gte=first_day, day__lte=TODAY)
    return {column: value or 0 for column, value in rows.aggregate(**{c: Sum(c) for c in TRAFFIC_COLUMNS}).items()}


def raw_event_sums(project, first_day: date) -> dict[str, int]:
    sums = dict.fromkeys(TRAFFIC_COLUMNS, 0)
    for event in MessageEvent.objects.filter(project=project, occurred_at__date__gte=first_day):
        column = EVENT_COLUMN[event.type]
        sums[f"{column}_{event.traffic}" if event.type in ("opened", "clicked") else column] += 1
    return sums


def legend_totals(svg: str) -> dict[str, int]:
    return {COLUMN_OF_LABEL.get(name, name): int(total) for name, total in LEGEND.findall(svg)}


def chart_on_change_page(client, project) -> str:
    page = client.get(f"/admin/apikeys/project/{project.pk}/change/")
    assert page.status_code == 200
    svgs = CHART.findall(page.content.decode())
    assert len(svgs) == 1
    return svgs[0]


def test_daily_figures_equal_the_unfiltered_rollup_rows_day_by_day(clock, make_project):
    project = make_project(retention_days=30)
    traffic(project, days_ago=[0, 1, 5, 12, 29], recipients=5)

    result = daily_traffic(project=project, days=30)

    assert result.days == [TODAY - timedelta(days=29 - i) for i in range(30)]
    rollups = {row.day: row for row in DailyRollup.objects.filter(project=project, grain=RollupGrain.ALL)}
    assert len(rollups) == 5
    for column in TRAFFIC_COLUMNS:
        expected = [getattr(rollups[day], column) if day in rollups else 0 for day in result.days]
        assert result.values[column] == expected
    assert result.values["sent"][-1] == 5 * 2 * 2  # today: five recipients, two channels, two senders


def test_chart_totals_equal_the_rollup_sums_and_a_recount_of_raw_events(clock, make_project, admin_client):
    project = make_project(retention_days=14)
    traffic(project, days_ago=[0, 3, 13], recipients=6)
    traffic(project, days_ago=[14, 40], recipients=6, prefix="old")  # outside the 14-day retention

    svg = chart_on_change_page(admin_client, project)

    first_day = TODAY - timedelta(days=13)
    expected = unfiltered_rollup_sums(project, first_day)
    assert expected == raw_event_sums(project, first_day)
    assert expected["sent"] == 3 * 6 * 4 and expected["opens_human"] > 0
    assert expected["opens_machine"] == expected["opens_human"]
    assert expected["clicks_machine"] > 0 == expected["clicks_human"]  # clicked as delivered: a scanner's
    assert legend_totals(svg) == expected
    # per-channel and per-domain grains hold the same events again: the chart does not add them
    all_grains = DailyRollup.objects.filter(project=project, day__gte=first_day).aggregate(s=Sum("sent"))["s"]
    assert all_grains == 4 * expected["sent"]
    assert "last 14 days" in svg
    assert all(len(points.split()) == 14 for points in re.findall(r'points="([^"]*)"', svg))


def test_chart_shows_only_its_own_project(clock, make_project, admin_client):
    mine, other = make_project(), make_project()
    traffic(mine, days_ago=[2], recipients=1)
    traffic(other, days_ago=[2, 3], recipients=4, prefix="other")

    assert legend_totals(chart_on_change_page(admin_client, mine))["sent"] == 4


def test_chart_of_a_project_without_traffic_says_so(clock, make_project, admin_client):
    svg = chart_on_change_page(admin_client, make_project())

    assert legend_totals(svg) == dict.fromkeys(TRAFFIC_COLUMNS, 0)
    assert "No activity in this period" in svg


def test_chart_span_is_the_retention_capped_at_a_year(make_project):
    assert traffic_chart_days(project=make_project(retention_days=7)) == 7
    assert traffic_chart_days(project=make_project(retention_days=3650)) == TRAFFIC_CHART_MAX_DAYS


def test_project_page_runs_the_same_queries_for_little_or_much_traffic(clock, make_project, admin_client):
    project = make_project()
    traffic(project, days_ago=[1], recipients=1)
    with CaptureQueriesContext(connection) as few:
        chart_on_change_page(admin_client, project)
    traffic(project, days_ago=list(range(2, 60, 3)), recipients=8, prefix="more")

    with CaptureQueriesContext(connection) as many:
        svg = chart_on_change_page(admin_client, project)

    assert len(many.captured_queries) == len(few.captured_queries)
    rollup_reads = [q for q in many.captured_queries if "reports_dailyrollup" in q["sql"]]
    assert len(rollup_reads) == 1
    assert legend_totals(svg)["sent"] == unfiltered_rollup_sums(project, TODAY - timedelta(days=89))["sent"]


def test_add_project_page_has_no_chart(admin_client):
    page = admin_client.get("/admin/apikeys/project/add/")

    assert page.status_code == 200
    assert CHART.findall(page.content.decode()) == []
    assert "Message traffic" not in page.content.decode()
