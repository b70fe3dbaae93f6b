"""Kept report bodies: a repeated report is answered without the database, and never after a write
that changed what it would say (ingestion, rollup rebuilds), per project and per query."""

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from engagement_platform import bodycache
from reports import selectors
from reports.models import DailyRollup
from tests.conftest import partitions_listed
from tests.rediscache import clear_test_cache, redis_cache_settings
from tests.test_reports_helpers import (
    CHANNEL_B,
    REPORT_URL,
    delivered_message,
    get_report,
    ingest,
    wire_event,
)
from tests.test_secrets import _redis_url

# Real commits: kept bodies are dropped when a write commits.
pytestmark = pytest.mark.django_db(transaction=True)

WINDOW = {"from_": "2026-04-01T00:00:00Z", "to": "2026-05-01T00:00:00Z"}


@pytest.fixture(params=["locmem", "redis"])
def report_cache(request, settings):
    """The report cache on, over a per-process cache and over Redis (the production setting)."""
    if request.param == "redis":
        redis_url = _redis_url()
        if redis_url is None:
            pytest.skip("needs a Redis server (TEST_REDIS_URL or redis://127.0.0.1:6379/15)")
        settings.CACHES = redis_cache_settings(redis_url)  # its own key prefix: cleared without a FLUSHDB
    settings.REPORT_CACHE_SECONDS = 60
    clear_test_cache()
    yield request.param
    clear_test_cache()


@pytest.fixture
def traffic(project, clock):
    assert ingest(project, [*delivered_message("2026-04-10T09:00:00Z", recipient="a@example.org"),
                            wire_event("opened", "2026-04-10T10:00:00Z", recipient="a@example.org")]).accepted == 3
    partitions_listed()


def report_queries(api, **params):
    """(response, how many queries read report data) of one report request."""
    with CaptureQueriesContext(connection) as queries:
        response = get_report(api, **params)
    assert response.status_code == 200, response.content
    reads = [q["sql"] for q in queries.captured_queries if "reports_" in q["sql"]]
    return response, len(reads)


def sent_on(response, day="2026-04-10T00:00:00Z") -> int:
    return next((b["sent"] for b in response.json()["data"] if b["period"] == day), 0)


def test_a_repeated_report_is_answered_without_reading_report_data(report_cache, api, traffic):
    first, reads = report_queries(api, **WINDOW)
    assert reads == 1
    again, reads = report_queries(api, **WINDOW)
    assert reads == 0
    assert again.content == first.content


def test_ingested_events_show_in_the_next_report(report_cache, api, project, traffic):
    before, _ = report_queries(api, **WINDOW)
    assert sent_on(before) == 1
    assert ingest(project, delivered_message("2026-04-10T11:00:00Z", recipient="b@example.org")).accepted == 2
    after, reads = report_queries(api, **WINDOW)
    assert reads == 1
    assert sent_on(after) == 2


def test_events_posted_over_http_show_in_the_next_report(report_cache, api, traffic):
    report_queries(api, **WINDOW)
    posted = api.post("/v1/messages/events",
                      {"events": delivered_message("2026-04-10T12:00:00Z", recipient="c@example.org")}, format="json")
    assert posted.json() == {"accepted": 2, "duplicates": 0}
    assert sent_on(report_queries(api, **WINDOW)[0]) == 2


def test_a_batch_of_duplicates_keeps_the_kept_body(report_cache, api, project, clock):
    events = delivered_message("2026-04-10T09:00:00Z", recipient="a@example.org")
    ingest(project, events)
    report_queries(api, **WINDOW)
    assert ingest(project, events).accepted == 0
    assert report_queries(api, **WINDOW)[1] == 0


def test_a_rollup_rebuild_that_changes_rows_drops_kept_bodies(report_cache, api, project, traffic):
    DailyRollup.objects.filter(project=project).update(sent=99)  # out of band: nothing is told
    assert sent_on(report_queries(api, **WINDOW)[0]) == 99
    call_command("rebuild_rollups", "--project", str(project.pk), verbosity=0)
    assert sent_on(report_queries(api, **WINDOW)[0]) == 1


def test_no_cache_builds_afresh_and_keeps_the_new_body(report_cache, api, project, traffic):
    report_queries(api, **WINDOW)
    DailyRollup.objects.filter(project=project).update(sent=7)  # out of band: the kept body still says 1
    assert sent_on(report_queries(api, **WINDOW)[0]) == 1
    fresh = api.get(REPORT_URL, {"from": WINDOW["from_"], "to": WINDOW["to"]}, HTTP_CACHE_CONTROL="max-age=0, no-cache")
    assert sent_on(fresh) == 7
    again, reads = report_queries(api, **WINDOW)
    assert (sent_on(again), reads) == (7, 0)


def test_each_query_has_its_own_body(report_cache, api, project, traffic):
    ingest(project, delivered_message("2026-04-10T09:30:00Z", recipient="d@example.org", channel=CHANNEL_B))
    day = report_queries(api, **WINDOW)[0].json()["data"]
    week = report_queries(api, group_by="week", **WINDOW)[0].json()["data"]
    channel_b = report_queries(api, channel=CHANNEL_B, **WINDOW)[0].json()["data"]
    shorter = report_queries(api, from_="2026-04-10T09:00:00Z", to="2026-04-10T09:45:00Z")[0].json()["data"]
    assert [b["sent"] for b in day] == [2]
    assert [b["period"] for b in week] == ["2026-04-06T00:00:00Z"]
    assert [b["sent"] for b in channel_b] == [1]
    assert [b["sent"] for b in shorter] == [2]
    assert report_queries(api, channel=CHANNEL_B, **WINDOW)[0].json()["data"] == channel_b


def test_a_project_never_gets_another_projects_body(report_cache, make_project, make_key, make_client, clock):
    first, second = make_project(), make_project()
    ingest(first, delivered_message("2026-04-10T09:00:00Z"))
    ingest(second, [*delivered_message("2026-04-10T09:00:00Z"), *delivered_message("2026-04-10T09:05:00Z",
                                                                                   recipient="z@example.org")])
    first_api, second_api = (make_client(make_key(p).raw_key) for p in (first, second))
    assert sent_on(report_queries(first_api, **WINDOW)[0]) == 1
    response, reads = report_queries(second_api, **WINDOW)
    assert (sent_on(response), reads) == (2, 1)
    assert sent_on(report_queries(first_api, **WINDOW)[0]) == 1


def test_a_write_that_commits_while_a_body_is_built_is_not_hidden_by_it(report_cache, api, project, traffic,
                                                                        monkeypatch):
    """The body built before the write is kept under the version read before building: never answered after."""
    build = selectors.engagement_report_json
    calls = []

    def build_then_write(**kwargs):
        body = build(**kwargs)
        if not calls:
            ingest(project, delivered_message("2026-04-10T13:00:00Z", recipient="e@example.org"))
        calls.append(1)
        return body

    monkeypatch.setattr(selectors, "engagement_report_json", build_then_write)
    assert sent_on(report_queries(api, **WINDOW)[0]) == 1  # built before the write
    assert sent_on(report_queries(api, **WINDOW)[0]) == 2


def test_reports_are_built_from_the_database_when_the_cache_is_unreachable(report_cache, api, traffic, monkeypatch):
    class Unreachable:
        def key(self, name):
            return name

        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise ConnectionError("cache down")
            return fail

    monkeypatch.setattr(bodycache, "_store", Unreachable)
    response, reads = report_queries(api, **WINDOW)
    assert (sent_on(response), reads) == (1, 1)
    assert report_queries(api, **WINDOW)[1] == 1


def test_off_by_default_over_a_per_process_cache(api, traffic, settings):
    assert settings.REPORT_CACHE_SECONDS == 0
    report_queries(api, **WINDOW)
    assert report_queries(api, **WINDOW)[1] == 1
