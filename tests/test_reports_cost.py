"""Section 3.1 cost: a year-long report reads rollups for whole days and raw events only for partial edge days."""

import re
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from reports.models import MessageEvent
from tests.conftest import partitions_listed
from tests.test_reports_helpers import REPORT_URL, get_report, ingest, utc, wire_event

pytestmark = pytest.mark.django_db

NOW = utc(2026, 5, 3, 10, 20)  # the `clock` fixture
YEAR_AGO = NOW - timedelta(days=365)  # 2025-05-03T10:20:00Z
RAW_TABLE = MessageEvent._meta.db_table
TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})")
# Authentication (key lookup, at most one last-used write) and the report's one statement, which
# reads the rollup rows of the whole days and the edge days together; on PostgreSQL a window with edge
# days sets its generic plan for the statement (`SET LOCAL` before it and, inside the test's transaction,
# back to the default after it: two more; no BEGIN and COMMIT inside the test's transaction).
MAX_REPORT_QUERIES = 3 + (2 if connection.vendor == "postgresql" else 0)


@pytest.fixture
def year_of_traffic(make_project, make_key, make_client, clock):
    """A project with a year and a day of opens (two per day, at 06:00 and 18:00) and a client for it."""
    project = make_project("yearly", retention_days=400)
    events = []
    for offset in range(367):
        day = (YEAR_AGO - timedelta(days=1) + timedelta(days=offset)).date()
        for hour in (6, 18):
            events.append(wire_event("opened", f"{day.isoformat()}T{hour:02d}:00:00Z",
                                     recipient=f"reader{offset % 5}@example.org"))
    for start in range(0, len(events), 1000):
        ingest(project, events[start:start + 1000])
    partitions_listed()
    return project, make_client(make_key(project).raw_key)


def raw_event_queries(captured) -> list[str]:
    return [query["sql"] for query in captured.captured_queries if RAW_TABLE in query["sql"]]


def test_a_year_long_report_runs_a_bounded_number_of_queries(year_of_traffic, django_assert_max_num_queries):
    _project, client = year_of_traffic

    with django_assert_max_num_queries(MAX_REPORT_QUERIES):
        response = get_report(client, from_="2025-05-03T10:20:00Z", group_by="day")

    data = response.json()["data"]
    assert response.status_code == 200 and len(data) == 366
    assert data[0] == {**data[0], "period": "2025-05-03T00:00:00Z", "opens": 1}  # 18:00 only; 06:00 is before
    assert data[-1] == {**data[-1], "period": "2026-05-03T00:00:00Z", "opens": 1}  # 06:00 only; now is 10:20
    assert all(bucket["opens"] == 2 for bucket in data[1:-1])


def test_raw_events_are_read_only_for_the_partial_edge_days(year_of_traffic):
    _project, client = year_of_traffic

    with CaptureQueriesContext(connection) as captured:
        assert get_report(client, from_="2025-05-03T10:20:00Z", group_by="month").status_code == 200

    [raw_sql] = raw_event_queries(captured)
    bounds = {datetime.fromisoformat(f"{day}T{time}") for day, time in TIMESTAMP.findall(raw_sql)}
    # The partial first day: its raw events only where its edge data is not written (10:20 starts a slice,
    # so no partial slice is read). The partial last day: its raw events, and the rest of the day (whether
    # its rollup row can stand for the edge).
    assert bounds == {
        datetime(2025, 5, 3, 10, 20), datetime(2025, 5, 4),
        datetime(2026, 5, 3), datetime(2026, 5, 3, 10, 20), datetime(2026, 5, 4),
    }


def test_a_day_aligned_window_never_reads_raw_events(year_of_traffic):
    _project, client = year_of_traffic

    with CaptureQueriesContext(connection) as captured:
        response = get_report(client, from_="2025-05-04T00:00:00Z", to="2026-05-03T00:00:00Z", group_by="week")

    assert response.status_code == 200 and response.json()["data"]
    assert raw_event_queries(captured) == []


def test_whole_days_come_from_the_rollups_and_edge_days_from_raw_events(year_of_traffic):
    project, client = year_of_traffic
    before = get_report(client, from_="2025-05-03T10:20:00Z").json()["data"]

    # Remove the raw rows behind the rollups (never done in operation): whole days must not change.
    MessageEvent.objects.filter(project=project, occurred_at__gte=utc(2025, 5, 10),
                                occurred_at__lt=utc(2025, 5, 11)).delete()
    # Today's 18:00 open (after `to`) stays: the partial last day is not its day's rollup row.
    MessageEvent.objects.filter(project=project, occurred_at__gte=utc(2026, 5, 3), occurred_at__lt=NOW).delete()
    after = get_report(client, from_="2025-05-03T10:20:00Z").json()["data"]

    assert before[-1]["period"] == "2026-05-03T00:00:00Z"
    assert after == before[:-1]  # the edge day is gone with its raw rows; the whole days are all still there
    assert [bucket for bucket in after if bucket["period"] == "2025-05-10T00:00:00Z"][0]["opens"] == 2


def test_query_count_does_not_grow_with_traffic(year_of_traffic):
    project, client = year_of_traffic
    get_report(client)  # the key's first use writes last_used_at; later requests do not
    with CaptureQueriesContext(connection) as light:
        get_report(client, from_="2025-05-03T10:20:00Z")
    ingest(project, [wire_event("opened", f"2025-{month:02d}-15T12:00:00Z", recipient=f"extra{n}@example.org")
                     for month in range(6, 13) for n in range(50)])

    with CaptureQueriesContext(connection) as heavy:
        response = client.get(REPORT_URL, {"from": "2025-05-03T10:20:00Z"})

    assert response.status_code == 200
    assert len(heavy.captured_queries) == len(light.captured_queries)
