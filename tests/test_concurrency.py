"""Contract section 2.3 under concurrency: exactly-once dedupe, exact counts, no mark left by a failure.

Real threads, each with its own database connection and its own APIClient, against a committed
database (transaction=True). Runs on PostgreSQL and on SQLite (a file database whose IMMEDIATE
transactions serialize writers).
"""

from collections import Counter
from contextlib import contextmanager

import pytest
from django.db import connection
from rest_framework.test import APIClient

from renders.models import LINK_OPENS_COUNTER, DedupeMark, EngagementCounter, EngagementEvent, EventType, Share
from renders.services import record_event
from tests.conftest import assert_envelope, run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)

MIXED_THREADS, EVENTS_PER_THREAD = 40, 5


def keyed_client(raw_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@contextmanager
def failing_event_inserts():
    """A trigger that makes every insert of an engagement event fail, whatever code path issues it."""
    table = EngagementEvent._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("CREATE FUNCTION test_disk_full() RETURNS trigger LANGUAGE plpgsql AS "
                           "$$ BEGIN RAISE EXCEPTION 'the disk is full'; END $$")
            cursor.execute(f"CREATE TRIGGER test_disk_full BEFORE INSERT ON {table} "
                           f"FOR EACH ROW EXECUTE FUNCTION test_disk_full()")
        else:
            cursor.execute(f"CREATE TRIGGER test_disk_full BEFORE INSERT ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, 'the disk is full'); END")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(f"DROP TRIGGER test_disk_full ON {table}")
                cursor.execute("DROP FUNCTION test_disk_full()")
            else:
                cursor.execute("DROP TRIGGER test_disk_full")


def engagement(raw_key, render) -> dict:
    response = keyed_client(raw_key).get(f"/v1/renders/{render.id}/engagement")
    assert response.status_code == 200, response.content
    return response.json()


def test_fifty_concurrent_identical_posts_record_exactly_one_event(project, make_key, render):
    raw_key = make_key(project).raw_key

    def post(_index):
        response = keyed_client(raw_key).post(f"/v1/renders/{render.id}/events", {"eventType": "viewed"},
                                              format="json", HTTP_X_FORWARDED_FOR="203.0.113.50")
        return response.status_code, response.json()

    results = run_in_threads(50, post)
    assert [status for status, _ in results] == [200] * 50
    assert Counter(body["recorded"] for _, body in results) == {True: 1, False: 49}
    assert EngagementEvent.objects.count() == 1
    assert DedupeMark.objects.count() == 1
    body = engagement(raw_key, render)
    assert body["counts"]["viewed"] == 1 and body["total"] == 1 and len(body["recent"]) == 1


def test_counts_stay_exact_under_200_concurrent_mixed_events(project, make_key, render):
    """200 events from 40 threads released together (PostgreSQL allows 100 connections in all)."""
    raw_key = make_key(project).raw_key
    share = Share.objects.create(project=project, render=render)
    partner_types = ["viewed", "downloaded", "printed"]

    def act(client, index):
        source_ip = f"10.{index // 200}.{index % 200}.1"  # distinct per event: nothing is deduped
        if index % 5 == 4:  # a recipient opening the share link: counts towards linkOpens
            return record_event(render=render, event_type="viewed", actor_kind="recipient", share=share,
                                source_ip=source_ip).recorded
        if index % 5 == 3:  # an event type that is never deduped
            return record_event(render=render, event_type="email_opened", actor_kind="recipient", share=share,
                                source_ip=source_ip).recorded
        response = client.post(f"/v1/renders/{render.id}/events", {"eventType": partner_types[index % 3]},
                               format="json", HTTP_X_FORWARDED_FOR=source_ip)
        assert response.status_code == 200, response.content
        return response.json()["recorded"]

    def thread(thread_index):
        client = keyed_client(raw_key)
        return [act(client, thread_index * EVENTS_PER_THREAD + k) for k in range(EVENTS_PER_THREAD)]

    results = [recorded for per_thread in run_in_threads(MIXED_THREADS, thread) for recorded in per_thread]
    assert results == [True] * 200

    rows = list(EngagementEvent.objects.filter(render=render).values_list("event_type", "share_id"))
    assert len(rows) == 200
    expected_counts = {event_type.value: 0 for event_type in EventType}
    expected_counts.update(Counter(event_type for event_type, _ in rows))
    expected_link_opens = sum(1 for event_type, share_id in rows if event_type == "viewed" and share_id)
    assert expected_link_opens == 40

    body = engagement(raw_key, render)
    assert body["counts"] == expected_counts
    assert body["linkOpens"] == expected_link_opens
    assert body["total"] == 200
    stored = Counter()
    for key, count in EngagementCounter.objects.filter(render=render).values_list("key", "count"):
        stored[key] += count  # a count is the sum of its shards
    assert stored == {**{k: v for k, v in expected_counts.items() if v}, LINK_OPENS_COUNTER: expected_link_opens}


def test_a_request_that_fails_after_claiming_the_dedupe_mark_leaves_no_mark(project, make_key, render):
    client = keyed_client(make_key(project).raw_key)
    url = f"/v1/renders/{render.id}/events"
    with failing_event_inserts():  # the database refuses the event row, after the mark was claimed
        failed = client.post(url, {"eventType": "printed"}, format="json")
    assert_envelope(failed, 500, "internal_error",
                    "Something went wrong on our side. Quote the request id to support.")
    assert DedupeMark.objects.count() == 0
    assert EngagementCounter.objects.count() == 0

    retry = client.post(url, {"eventType": "printed"}, format="json")
    assert retry.status_code == 200 and retry.json() == {"recorded": True}

    assert EngagementEvent.objects.count() == 1
    assert DedupeMark.objects.count() == 1
    assert client.post(url, {"eventType": "printed"}, format="json").json() == {"recorded": False}


def test_concurrent_views_from_one_ip_record_exactly_one_per_traffic_class(project, make_key, render):
    """Contract section 6: dedupe per class. 40 identical share-page views from one IP, half from a link
    previewer and half from a browser, released together: one machine view and one human view."""
    from django.test import Client

    from tests.test_traffic_rules import CHROME, SLACKBOT

    raw_key = make_key(project).raw_key
    share = keyed_client(raw_key).post(f"/v1/renders/{render.id}/shares", {}, format="json").json()
    path = "/s/" + share["url"].rsplit("/s/", 1)[1]

    def view(index):
        agent = SLACKBOT if index % 2 else CHROME
        return Client(HTTP_USER_AGENT=agent, REMOTE_ADDR="203.0.113.9").get(path).status_code

    assert run_in_threads(40, view) == [200] * 40
    views = EngagementEvent.objects.filter(render=render, event_type="viewed")
    assert sorted(views.values_list("traffic", "machine_reason")) == [("human", None), ("machine", "bot")]
    assert DedupeMark.objects.count() == 2
    for traffic in ("human", "machine"):
        body = keyed_client(raw_key).get(f"/v1/renders/{render.id}/engagement?traffic={traffic}").json()
        assert (body["counts"]["viewed"], body["linkOpens"], len(body["recent"])) == (1, 1, 1 + (traffic == "human"))
    assert engagement(raw_key, render)["counts"]["viewed"] == 2
