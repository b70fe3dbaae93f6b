"""CONTRACT 3.1 `unique=exact`: week and month buckets count each recipient once (the part inside the window),
from period ledgers kept at ingestion; day buckets agree in both modes."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from reports.models import FirstTouchesPending, MessageEvent, PeriodFirstTouch, PeriodRollup
from tests.test_reports_helpers import ingest, wire_event
from tests.test_traffic_rules import CHROME

pytestmark = pytest.mark.django_db

# Wednesday 2026-04-01 .. Friday 2026-04-03: one ISO week (from Monday 03-30), one month (April).
WEEK = {"from": "2026-03-30T00:00:00Z", "to": "2026-04-06T00:00:00Z"}


def report(api, **query) -> list[dict]:
    response = api.get("/v1/reports/engagement", query)
    assert response.status_code == 200, response.content
    return response.json()["data"]


@pytest.fixture
def three_days(project):
    ingest(project, [
        *(wire_event("opened", f"2026-04-0{day}T09:00:00Z", recipient="ann@example.org", userAgent=CHROME)
          for day in (1, 2, 3)),
        wire_event("opened", "2026-04-02T10:00:00Z", recipient="bob@example.org", machine=True),
        wire_event("clicked", "2026-04-03T10:00:00Z", recipient="ANN@example.org", userAgent=CHROME),
    ])
    return project


def test_a_recipient_active_on_three_days_counts_once_in_an_exact_week_and_month(api, three_days, clock):
    daily = report(api, **WEEK, group_by="week")
    exact = report(api, **WEEK, group_by="week", unique="exact")
    assert [(b["opens"], b["unique_opens"], b["unique_clicks"]) for b in daily] == [(4, 4, 1)]
    assert [(b["opens"], b["unique_opens"], b["unique_clicks"]) for b in exact] == [(4, 2, 1)]
    month = report(api, **{"from": "2026-04-01T00:00:00Z", "to": "2026-05-01T00:00:00Z"}, group_by="month",
                   unique="exact")
    assert [(b["period"], b["unique_opens"]) for b in month] == [("2026-04-01T00:00:00Z", 2)]
    humans = report(api, **WEEK, group_by="week", unique="exact", traffic="human")
    assert [(b["opens"], b["unique_opens"]) for b in humans] == [(3, 1)]
    for unique in ("daily", "exact"):  # day buckets agree
        assert report(api, **WEEK, unique=unique) == report(api, **WEEK)


def test_an_exact_bucket_counts_only_the_part_inside_the_window(api, three_days, clock):
    """From inside the week to its end (ledger rows touched at or after `from`), and up to `to` inside it."""
    tail = report(api, **{"from": "2026-04-02T09:30:00Z", "to": "2026-04-06T00:00:00Z"}, group_by="week",
                  unique="exact")
    assert [(b["opens"], b["unique_opens"]) for b in tail] == [(2, 2)]  # Bob's 10:00 and Ann's Friday open
    head = report(api, **{"from": "2026-03-30T00:00:00Z", "to": "2026-04-02T09:30:00Z"}, group_by="week",
                  unique="exact")
    assert [(b["opens"], b["unique_opens"]) for b in head] == [(2, 1)]  # an event after `to`: raw events
    inside = report(api, **{"from": "2026-04-01T12:00:00Z", "to": "2026-04-03T00:00:00Z"}, group_by="week",
                    unique="exact")
    assert [(b["opens"], b["unique_opens"]) for b in inside] == [(2, 2)]


def test_an_exact_report_is_one_statement(api, three_days, clock):
    api.get("/v1/reports/engagement", {**WEEK, "group_by": "week", "unique": "exact"})  # warm the key cache
    with CaptureQueriesContext(connection) as captured:
        response = api.get("/v1/reports/engagement", {"from": "2026-04-01T08:00:00Z", "to": "2026-04-20T08:00:00Z",
                                                      "group_by": "week", "unique": "exact"},
                              HTTP_CACHE_CONTROL="no-cache")
    assert response.status_code == 200
    statements = [q["sql"] for q in captured.captured_queries if "reports_period" in q["sql"]]
    assert len(statements) == 1


@pytest.mark.parametrize("value", ["weekly", "EXACT", "true"])
def test_a_bad_unique_value_is_a_422_naming_the_field(api, value, clock):
    response = api.get("/v1/reports/engagement", {"unique": value})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "unique", "reason": "Must be one of daily, exact."}]


def test_periods_with_pending_first_touches_read_raw_events_until_they_are_written(api, three_days, clock):
    expected = report(api, **WEEK, group_by="week", unique="exact")
    PeriodFirstTouch.objects.filter(project=three_days).delete()  # what a deferred recount leaves unwritten
    PeriodRollup.objects.filter(project=three_days).delete()
    FirstTouchesPending.objects.create(project=three_days, day="2026-04-02")
    assert report(api, **WEEK, group_by="week", unique="exact") == expected  # from raw events
    ingest(three_days, [wire_event("opened", "2026-04-02T11:00:00Z", recipient="cy@example.org",
                                   userAgent=CHROME)])  # writes the day's first touches and its periods
    assert not FirstTouchesPending.objects.filter(project=three_days).exists()
    assert PeriodRollup.objects.get(project=three_days, period="week", grain="all").unique_opens == 3
    [bucket] = report(api, **WEEK, group_by="week", unique="exact")
    assert (bucket["opens"], bucket["unique_opens"]) == (5, 3)


def test_rebuild_rollups_writes_the_period_ledgers_again(api, three_days, clock):
    expected = report(api, **WEEK, group_by="month", unique="exact")
    PeriodRollup.objects.filter(project=three_days).update(unique_opens=99)
    PeriodFirstTouch.objects.filter(project=three_days).delete()
    call_command("rebuild_rollups", project=three_days.name, stdout=StringIO())
    assert report(api, **WEEK, group_by="month", unique="exact") == expected
    assert PeriodFirstTouch.objects.filter(project=three_days, period="week", grain="all", type="opened").count() == 2


@pytest.mark.django_db(transaction=True)  # the backfill stores on connections of its own
def test_a_backfilled_week_reads_exactly_before_and_after_its_first_touches_are_written(api, project, tmp_path,
                                                                                       clock):
    lines = [wire_event("opened", f"2026-04-0{1 + minute % 3}T09:{minute:02d}:00Z",
                        recipient=f"r{minute % 4}@example.org", userAgent=CHROME) for minute in range(24)]
    path = tmp_path / "events.ndjson"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    call_command("backfill_message_events", str(path), project=project.name, stdout=StringIO(), stderr=StringIO())
    assert MessageEvent.objects.filter(project=project).count() == 24
    [before] = report(api, **WEEK, group_by="week", unique="exact")
    assert before["unique_opens"] == 4 and before["opens"] == 24
    call_command("rebuild_rollups", project=project.name, stdout=StringIO())
    [after] = report(api, **WEEK, group_by="week", unique="exact")
    assert after == before


def test_an_exact_week_from_any_hour_counts_the_recipients_touched_since(api, project, clock):
    """Whatever hour of the week `from` falls on (the week's ledger rows last touched since), the exact week
    equals a recount of the raw events."""
    from datetime import UTC, datetime, timedelta

    monday = datetime(2026, 3, 30, tzinfo=UTC)
    events = [(f"r{n % 9}@example.org", monday + timedelta(hours=7 * n + n % 5)) for n in range(24)]
    ingest(project, [wire_event("opened", at.strftime("%Y-%m-%dT%H:%M:%SZ"), recipient=recipient,
                                userAgent=CHROME) for recipient, at in events])
    for hours in range(0, 7 * 24, 5):
        since = monday + timedelta(hours=hours, minutes=17)
        expected = len({recipient for recipient, at in events if at >= since})
        buckets = report(api, **{"from": since.strftime("%Y-%m-%dT%H:%M:%SZ"), "to": "2026-04-06T00:00:00Z"},
                         group_by="week", unique="exact")
        assert sum(b["unique_opens"] for b in buckets) == expected, (since, buckets)
