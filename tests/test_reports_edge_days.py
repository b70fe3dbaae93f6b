"""Section 3.1 cost: a partial edge day whose other hours hold no event reads as its day's rollup row.

The default window ends now, and nothing is usually dated after now: today's rollup row then
counts exactly the events before `to`, so the report reads it instead of today's raw events.
Exactness is kept: an event dated later that day, or a recount still pending for the day, sends
the edge back to raw events. Deleting raw rows (never done in operation) shows which one was read.
"""

import uuid

import pytest

from reports.models import MessageEvent, PendingRecount
from tests.test_reports_helpers import get_report, ingest, utc, wire_event

pytestmark = pytest.mark.django_db

TODAY = "2026-05-03"  # the `clock` fixture's day (now is 10:20)


@pytest.fixture
def opened_today(make_project, make_key, make_client, clock):
    """A project with three opens today before now (two readers) and one yesterday, and a client for it."""
    project = make_project("edges")
    ingest(project, [
        wire_event("opened", "2026-05-02T12:00:00Z", recipient="a@example.org"),
        wire_event("opened", f"{TODAY}T01:00:00Z", recipient="a@example.org"),
        wire_event("opened", f"{TODAY}T02:00:00Z", recipient="b@example.org"),
        wire_event("opened", f"{TODAY}T09:00:00Z", recipient="a@example.org"),
    ])
    return project, make_client(make_key(project).raw_key)


def today_bucket(client, **params) -> dict | None:
    response = get_report(client, group_by="day", **params)
    assert response.status_code == 200, response.content
    return next((b for b in response.json()["data"] if b["period"] == f"{TODAY}T00:00:00Z"), None)


def delete_todays_raw_events(project):
    MessageEvent.objects.filter(project=project, occurred_at__gte=utc(2026, 5, 3)).delete()


def test_today_with_nothing_dated_after_now_is_read_from_its_rollup_row(opened_today):
    project, client = opened_today
    assert today_bucket(client)["opens"] == 3

    delete_todays_raw_events(project)

    bucket = today_bucket(client)
    assert (bucket["opens"], bucket["unique_opens"]) == (3, 2)


def test_an_event_dated_later_today_sends_today_back_to_raw_events(opened_today, clock):
    project, client = opened_today
    ingest(project, [wire_event("opened", f"{TODAY}T15:00:00Z", recipient="c@example.org")])
    bucket = today_bucket(client)
    assert (bucket["opens"], bucket["unique_opens"]) == (3, 2)  # the 15:00 open is after `to`

    MessageEvent.objects.filter(project=project, occurred_at__lt=utc(2026, 5, 3, 10)).delete()

    assert today_bucket(client) is None  # raw events were read: only the 15:00 one is left, after `to`


def test_a_pending_recount_of_today_sends_today_back_to_raw_events(opened_today):
    project, client = opened_today
    PendingRecount.objects.create(project=project, day=utc(2026, 5, 3).date(), run=uuid.uuid4())

    delete_todays_raw_events(project)

    assert today_bucket(client) is None


def test_a_first_day_with_no_event_before_from_is_read_from_its_rollup_row(opened_today):
    project, client = opened_today
    params = {"from_": f"{TODAY}T00:30:00Z", "to": "2026-05-03T10:20:00Z"}
    assert today_bucket(client, **params)["opens"] == 3

    MessageEvent.objects.filter(project=project, occurred_at__gte=utc(2026, 5, 3, 1, 30)).delete()

    assert today_bucket(client, **params)["opens"] == 3  # the day's rollup row, no raw event before 00:30


def test_an_edge_spanning_midnight_inside_a_day_counts_both_days_raw_events(opened_today):
    _project, client = opened_today
    response = get_report(client, group_by="day", from_="2026-05-02T11:00:00Z", to=f"{TODAY}T01:30:00Z")

    assert response.status_code == 200
    assert [(b["period"], b["opens"]) for b in response.json()["data"]] == [
        ("2026-05-02T00:00:00Z", 1), (f"{TODAY}T00:00:00Z", 1)]
