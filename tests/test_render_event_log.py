"""CONTRACT 6: the event log, `GET /v1/renders/:id/events` (`renders.read`)."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apikeys.models import Scope
from engagement_platform.clock import now
from renders.models import EngagementEvent
from renders.services import record_event
from tests.conftest import assert_envelope
from tests.sharing import mint
from tests.test_traffic_rules import CHROME, SLACKBOT

pytestmark = pytest.mark.django_db

EVENT_KEYS = ["id", "eventType", "actorKind", "shareId", "sourceIp", "userAgent", "metadata", "createdAt",
              "traffic", "machineReason"]


def log(api, render, **query):
    response = api.get(f"/v1/renders/{render.id}/events", query)
    assert response.status_code == 200, response.content
    return response.json()


def walk(api, render, **query) -> list[dict]:
    """Every page of the log, following nextCursor."""
    events, cursor = [], None
    while True:
        body = log(api, render, **query, **({"cursor": cursor} if cursor else {}))
        assert len(body["data"]) <= int(query.get("limit", 50))
        events += body["data"]
        cursor = body["nextCursor"]
        if cursor is None:
            return events


@pytest.fixture
def history(api, render):
    """Two shares and 30 events: people and previewers on the share page, the partner's own, at one instant
    for some (ties broken by id)."""
    first, second = (render.shares.get(pk=mint(api, render, label=label)["id"]) for label in ("a", "b"))
    at = now()
    for index in range(24):
        share = first if index % 2 else second
        record_event(render=render, event_type=("viewed", "downloaded", "printed")[index % 3],
                     actor_kind="recipient", share=share, source_ip=f"203.0.113.{index}",
                     user_agent=SLACKBOT if index % 4 == 0 else CHROME, request_purpose="direct",
                     at=at - timedelta(seconds=index // 3))  # three events at each instant
    for index in range(4):
        record_event(render=render, event_type="viewed", actor_kind="partner", source_ip=f"198.51.100.{index}",
                     user_agent=SLACKBOT, at=at - timedelta(minutes=10, seconds=index))
    return first, second


def expected(render, **lookups) -> list[str]:
    return [str(pk) for pk in EngagementEvent.objects.filter(render=render, **lookups)
            .order_by("-created_at", "-id").values_list("id", flat=True)]


def test_every_event_newest_first_ties_by_id_with_its_traffic_class(api, render, history):
    body = log(api, render)
    assert body["nextCursor"] is None
    assert [event["id"] for event in body["data"]] == expected(render)
    assert len(body["data"]) == 30
    assert all(list(event) == EVENT_KEYS for event in body["data"])
    by_id = {str(e.id): e for e in EngagementEvent.objects.filter(render=render)}
    for event in body["data"]:
        stored = by_id[event["id"]]
        assert (event["traffic"], event["machineReason"]) == (stored.traffic, stored.machine_reason)
    assert {(e["actorKind"], e["traffic"], e["machineReason"]) for e in body["data"]} == {
        ("recipient", "machine", "bot"), ("recipient", "human", None), ("partner", "human", None)}


@pytest.mark.parametrize("limit", [1, 7, 29, 30, 100])
def test_pages_follow_the_cursor_without_gaps_or_repeats(api, render, history, limit):
    events = walk(api, render, limit=str(limit))
    assert [event["id"] for event in events] == expected(render)


def test_the_default_page_is_50_events(api, render):
    for index in range(55):
        record_event(render=render, event_type="email_opened", actor_kind="recipient",
                     source_ip=f"203.0.113.{index}", user_agent=CHROME, request_purpose="direct")
    body = log(api, render)
    assert len(body["data"]) == 50 and body["nextCursor"]
    assert len(log(api, render, cursor=body["nextCursor"])["data"]) == 5


@pytest.mark.parametrize(("query", "lookups"), [
    ({"traffic": "human"}, {"traffic": "human"}),
    ({"traffic": "machine"}, {"traffic": "machine"}),
    ({"traffic": "all"}, {}),
    ({"eventType": "downloaded"}, {"event_type": "downloaded"}),
    ({"eventType": "share_created"}, {"event_type": "share_created"}),
    ({"actorKind": "partner"}, {"actor_kind": "partner"}),
    ({"actorKind": "system"}, {"actor_kind": "system"}),
    ({"traffic": "machine", "eventType": "viewed", "actorKind": "recipient"},
     {"traffic": "machine", "event_type": "viewed", "actor_kind": "recipient"}),
])
def test_each_filter_and_their_combination(api, render, history, query, lookups):
    events = walk(api, render, **query, limit="4")
    assert [event["id"] for event in events] == expected(render, **lookups)
    if lookups.get("actor_kind") != "system":
        assert events


def test_the_share_filter(api, render, history):
    first, second = history
    for share in (first, second):
        events = walk(api, render, shareId=str(share.id), limit="5")
        assert [event["id"] for event in events] == expected(render, share=share)
        assert {event["shareId"] for event in events} == {str(share.id)}
    assert log(api, render, shareId="01966b3c-0000-7000-8000-000000000000")["data"] == []


@pytest.mark.parametrize(("query", "errors"), [
    ({"traffic": "bots"}, {"traffic": ['Must be one of "all", "human", "machine".']}),
    ({"eventType": "opened"}, {"eventType": ['Must be one of "viewed", "downloaded", "printed", "email_opened", '
                                             '"email_sent", "share_created", "share_revoked".']}),
    ({"actorKind": "robot"}, {"actorKind": ['Must be one of "recipient", "partner", "system".']}),
    ({"shareId": "not-a-uuid"}, {"shareId": ["Must be a share id (a UUID)."]}),
    ({"limit": "0"}, {"limit": ["Must be an integer from 1 to 100."]}),
    ({"limit": "101"}, {"limit": ["Must be an integer from 1 to 100."]}),
    ({"limit": "ten"}, {"limit": ["Must be an integer from 1 to 100."]}),
    ({"cursor": "!!!"}, {"cursor": ["Not a cursor returned by this API."]}),
    ({"traffic": "", "limit": "-1"}, {"traffic": ['Must be one of "all", "human", "machine".'],
                                      "limit": ["Must be an integer from 1 to 100."]}),
])
def test_bad_parameters_are_400_naming_each(api, render, query, errors):
    response = api.get(f"/v1/renders/{render.id}/events", query)
    assert_envelope(response, 400, "invalid_request", issues={"formErrors": [], "fieldErrors": errors})


def test_a_cursor_of_another_list_is_refused(api, render, make_render, project):
    for index in range(3):
        record_event(render=render, event_type="email_sent", actor_kind="partner", source_ip=f"203.0.113.{index}")
    other = make_render(project)
    cursor = log(api, render, limit="1")["nextCursor"]
    assert_envelope(api.get(f"/v1/renders/{other.id}/events", {"cursor": cursor}), 400, "invalid_request",
                    issues={"formErrors": [], "fieldErrors": {
                        "cursor": ["A cursor of another list: pass the nextCursor this list returned."]}})
    renders_cursor = api.get("/v1/renders", {"limit": "1"})
    assert renders_cursor.status_code == 200


def test_another_projects_key_gets_404_exactly_like_a_missing_id(api, render, history, make_project, make_key,
                                                                  make_client):
    other = make_client(make_key(make_project()).raw_key)
    foreign = other.get(f"/v1/renders/{render.id}/events", {"traffic": "human"})
    missing = other.get("/v1/renders/01966b3c-0000-7000-8000-000000000000/events", {"traffic": "human"})
    malformed = other.get("/v1/renders/nope/events")
    for response in (foreign, missing, malformed):
        assert_envelope(response, 404, "not_found", "No render with that id in this project.")
    # a bad parameter on a foreign render still answers as a missing render, revealing nothing
    assert_envelope(other.get(f"/v1/renders/{render.id}/events", {"traffic": "x"}), 404, "not_found")


def test_the_log_needs_renders_read(project, render, make_key, make_client):
    writer = make_client(make_key(project, scopes=[Scope.RENDERS_WRITE]).raw_key)
    assert_envelope(writer.get(f"/v1/renders/{render.id}/events"), 403, "forbidden")
    reader = make_client(make_key(project, scopes=[Scope.RENDERS_READ]).raw_key)
    assert reader.get(f"/v1/renders/{render.id}/events").status_code == 200


def log_queries(api, render, **query) -> int:
    with CaptureQueriesContext(connection) as captured:
        log(api, render, **query)
    return len(captured)


def test_a_page_costs_the_same_queries_whatever_its_length(api, render, history):
    assert log_queries(api, render, limit="1") == log_queries(api, render, limit="100")
    assert log_queries(api, render, traffic="machine", shareId=str(history[0].id)) == log_queries(api, render)


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="reads PostgreSQL's EXPLAIN output (the plans production runs); SQLite's differs")
def test_newest_first_reads_use_an_index_for_each_filter(render):
    from django.db.models import Q

    base = EngagementEvent.objects.filter(render=render).order_by("-created_at", "-id")
    position = Q(created_at__lt=now()) | Q(created_at=now(), id__lt=render.id)
    for queryset, index in [
        (base, "event_render_recent"),
        (base.filter(traffic="machine"), "event_render_traffic_recent"),
        (base.filter(event_type="printed"), "event_render_type_recent"),
        (base.filter(traffic="human").filter(position), "event_render_traffic_recent"),
    ]:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_sort = off")  # an index that gives the order, or a visible Sort
        plan = queryset[:51].explain()
        # Partitioned by month: each partition's copy of the index is named after it and the month.
        used = set(re.findall(r"using (\w+?)_p(?:\d{4}_\d{2}|default) on", plan))
        # Merge Append keeps the partitions' index order: no Sort node (its "Sort Key" line is not one).
        assert used == {index} and not re.search(r"(^|->  )Sort ", plan, re.M), plan
