"""Contract 8's `visit.ended` (with 7.3's visit object): told once per visit by the worker's periodic job when the
visit has been idle for VISIT_IDLE_MINUTES, to the endpoints that subscribe to it, through the outbox; exactly
once with several workers at once and after a run that died mid-way."""

import importlib
import json
import time
import uuid
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.urls import reverse
from standardwebhooks import Webhook

from demo.pdf import pages_pdf
from engagement_platform import event_hooks, periodic
from engagement_platform.clock import iso_ms, now
from engagement_platform.traffic import HUMAN
from renders.models import Share, Visit
from renders.services import render_create
from renders.visits import idle_window, visit_view, visits_ended_announce, visits_idle, visits_unannounced
from tests.conftest import run_in_threads
from tests.receivers import start_receiver
from tests.sharing import mint, token_of
from tests.test_reading import BOT, open_reader, reader_client, report, visits
from tests.workers import WorkerProcess
from webhooks.delivery import deliver_due
from webhooks.models import WebhookDelivery
from webhooks.services import endpoint_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_webhook_subscriptions")]
LOCAL_URL = "http://127.0.0.1:9/hooks"  # never sent to here: these tests read the stored deliveries


@pytest.fixture
def doc(project):
    pdf = pages_pdf([(f"Page {n}", [f"Line of page {n}."]) for n in (1, 2, 3)])
    return render_create(project=project, uploaded_file=SimpleUploadedFile("Proposal.pdf", pdf), name="Proposal.pdf")


@pytest.fixture
def token(api, doc):
    return token_of(mint(api, doc, label="For Alice"))


def subscribe(api, events=("visit.ended",), url=LOCAL_URL, **options) -> dict:
    response = api.post("/v1/webhooks", {"url": url, "events": list(events), **options}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def ended(endpoint_id=None) -> list[WebhookDelivery]:
    found = WebhookDelivery.objects.filter(event_type="visit.ended").order_by("created_at", "id")
    return list(found if endpoint_id is None else found.filter(endpoint_id=endpoint_id))


def data_of(delivery: WebhookDelivery) -> dict:
    return json.loads(delivery.payload)["data"]


def bot_client() -> Client:
    return Client(HTTP_USER_AGENT=BOT, REMOTE_ADDR="198.51.100.1")


def idle_at():
    """A moment at which a visit whose last activity is now has just become idle."""
    return now() + idle_window()


def test_an_idle_visit_is_delivered_once_with_the_apis_visit_object_and_render_id(api, token, doc, clock):
    receiver = start_receiver()
    try:
        created = subscribe(api, url=receiver.url)
        person = reader_client()
        visit_id = open_reader(person, token)
        clock.shift(timedelta(seconds=20))
        assert report(person, token, visit_id, [(1, 6000), (3, 1500)]).status_code == 204
        at = idle_at()

        assert visits_ended_announce(at=at) == 1

        [delivery] = ended()
        payload = json.loads(delivery.payload)
        [listed] = visits(api, doc)
        assert payload["data"] == {**listed, "renderId": str(doc.id)}
        assert (payload["data"]["id"], payload["data"]["durationMs"], payload["data"]["pagesViewed"]) == \
            (visit_id, 7500, 2)
        assert (payload["type"], payload["createdAt"], payload["id"]) == \
            ("visit.ended", iso_ms(at), str(delivery.event_id))
        assert uuid.UUID(payload["id"]).version == 7  # contract 8: the event id is a UUIDv7
        assert Visit.objects.get(pk=visit_id).ended_announced_at == at

        assert visits_ended_announce(at=at) == 0
        assert visits_ended_announce(at=at + timedelta(hours=1)) == 0
        assert len(ended()) == 1

        assert deliver_due() == 1
        [received] = receiver.wait_for(1)
        assert Webhook(created["secret"]).verify(received.body, received.headers) == payload
    finally:
        receiver.stop()


def test_a_visit_still_active_is_not_announced_until_it_is_idle(api, token, clock):
    subscribe(api)
    person = reader_client()
    visit_id = open_reader(person, token)
    clock.shift(timedelta(minutes=4))
    assert report(person, token, visit_id, [(1, 3000)]).status_code == 204
    last_activity = now()

    assert visits_ended_announce(at=last_activity + idle_window() - timedelta(seconds=1)) == 0
    assert ended() == [] and Visit.objects.get(pk=visit_id).ended_announced_at is None

    assert visits_ended_announce(at=last_activity + idle_window()) == 1
    assert [data_of(delivery)["id"] for delivery in ended()] == [visit_id]
    assert data_of(ended()[0])["lastActivityAt"] == iso_ms(last_activity)


def test_activity_after_the_announcement_is_credited_but_not_announced_again(api, token, doc, clock):
    subscribe(api)
    person = reader_client()
    visit_id = open_reader(person, token)
    clock.shift(idle_window())
    assert visits_ended_announce(at=now()) == 1

    clock.shift(timedelta(seconds=30))  # a tab that was left open reports once more
    assert report(person, token, visit_id, [(2, 4000)]).status_code == 204
    assert visits(api, doc)[0]["durationMs"] == 4000
    clock.shift(idle_window())

    assert visits_ended_announce(at=now()) == 0
    assert len(ended()) == 1


def test_a_machine_visit_goes_only_to_an_endpoint_that_includes_machine_traffic(api, token, clock):
    people = subscribe(api)
    machines = subscribe(api, includeMachine=True)
    machine_visit = open_reader(bot_client(), token)
    human_visit = open_reader(reader_client(), token)

    assert visits_ended_announce(at=idle_at()) == 2

    assert [data_of(d)["id"] for d in ended(people["id"])] == [human_visit]
    assert sorted(data_of(d)["id"] for d in ended(machines["id"])) == sorted([human_visit, machine_visit])
    assert {data_of(d)["id"]: data_of(d)["traffic"] for d in ended(machines["id"])} == \
        {human_visit: "human", machine_visit: "machine"}


def test_a_machine_visit_nobody_takes_machine_traffic_for_is_marked_without_a_delivery(api, token):
    subscribe(api)
    machine_visit = open_reader(bot_client(), token)

    assert visits_ended_announce(at=idle_at()) == 0
    assert ended() == []
    assert Visit.objects.get(pk=machine_visit).ended_announced_at is not None


def test_only_subscribed_endpoints_of_the_visits_own_project_receive_it(api, project, token, make_project,
                                                                         make_key, make_client, make_render):
    not_subscribed = subscribe(api, events=["render.viewed", "share.created"])
    other = make_project("other")
    other_api = make_client(make_key(other).raw_key)
    theirs = subscribe(other_api)
    their_token = token_of(mint(other_api, make_render(other)))
    mine = open_reader(reader_client(), token)

    assert visits_ended_announce(at=idle_at()) == 0
    assert ended() == [] and Visit.objects.get(pk=mine).ended_announced_at is not None

    mine_too = subscribe(api)
    my_next, their_visit = open_reader(reader_client(), token), open_reader(reader_client(), their_token)
    assert visits_ended_announce(at=idle_at()) == 2
    [their_delivery] = ended(theirs["id"])
    assert (data_of(their_delivery)["id"], their_delivery.project_id) == (their_visit, other.pk)
    [my_delivery] = ended(mine_too["id"])
    assert (data_of(my_delivery)["id"], my_delivery.project_id) == (my_next, project.pk)
    assert ended(not_subscribed["id"]) == []


def test_a_disabled_endpoint_gets_no_visit_ended(api, token):
    endpoint = subscribe(api)
    assert api.patch(f"/v1/webhooks/{endpoint['id']}", {"enabled": False}, format="json").status_code == 200
    visit_id = open_reader(reader_client(), token)

    assert visits_ended_announce(at=idle_at()) == 0
    assert ended() == [] and Visit.objects.get(pk=visit_id).ended_announced_at is not None


def test_without_a_listener_visits_are_marked_no_delivery_is_written_and_the_scan_is_then_empty(
        token, django_assert_max_num_queries):
    for _ in range(3):
        open_reader(reader_client(), token)
    at = idle_at()

    assert visits_ended_announce(at=at) == 0

    assert WebhookDelivery.objects.count() == 0
    assert set(Visit.objects.values_list("ended_announced_at", flat=True)) == {at}
    assert not visits_idle(at=at).filter(ended_announced_at__isnull=True).exists()
    with django_assert_max_num_queries(3):  # the savepoint, one scan that finds nothing, its release
        assert visits_ended_announce(at=at + timedelta(hours=1)) == 0


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="reads PostgreSQL's EXPLAIN output (the plans production runs); SQLite's differs")
def test_the_scan_reads_the_partial_index_of_the_visits_not_yet_announced():
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")  # an index that gives the order, or a visible Sort
    plan = visits_unannounced(at=now()).select_for_update(skip_locked=True, of=("self",))[:100].explain()
    assert "visit_end_unannounced" in plan and "Sort" not in plan, plan


def test_a_run_takes_visits_in_chunks_and_each_chunk_is_one_transaction(api, token):
    endpoint = subscribe(api)
    for _ in range(7):
        open_reader(reader_client(), token)

    assert visits_ended_announce(at=idle_at(), chunk=3, chunks=2) == 6
    assert Visit.objects.filter(ended_announced_at__isnull=True).count() == 1
    assert visits_ended_announce(at=idle_at(), chunk=3) == 1
    assert len(ended(endpoint["id"])) == 7
    assert len({data_of(d)["id"] for d in ended()}) == 7


class FailingListener:
    """A listener that fails on its `fail_on`-th event: the run dies mid-way, as a killed worker's would."""

    def __init__(self, fail_on: int):
        self.fail_on, self.seen = fail_on, 0

    def wanted_types(self, *, project_id, machine):
        return frozenset({"visit.ended"})

    def take(self, event):
        self.seen += 1
        if self.seen == self.fail_on:
            raise RuntimeError("the worker died here")


@pytest.fixture
def failing_listener():
    listener = FailingListener(fail_on=5)
    event_hooks.listen(listener)
    yield listener
    event_hooks._listeners.remove(listener)


def test_a_run_that_dies_mid_chunk_keeps_the_chunks_before_and_the_next_run_announces_the_rest_once(
        api, token, failing_listener):
    endpoint = subscribe(api)
    for _ in range(6):
        open_reader(reader_client(), token)
    at = idle_at()

    with pytest.raises(RuntimeError, match="died"):
        visits_ended_announce(at=at, chunk=3)

    assert len(ended()) == 3  # the first chunk committed; the second rolled back, deliveries and markers alike
    assert Visit.objects.filter(ended_announced_at__isnull=True).count() == 3
    failing_listener.fail_on = 0  # the next run goes through

    assert visits_ended_announce(at=at, chunk=3) == 3
    assert len(ended(endpoint["id"])) == 6
    assert len({data_of(d)["id"] for d in ended()}) == 6
    assert not Visit.objects.filter(ended_announced_at__isnull=True).exists()


def test_the_job_is_registered_for_the_worker():
    [job] = [job for job in periodic.jobs() if job.name == "visits-ended"]
    assert 5 <= job.every_seconds <= 15
    assert job.run is visits_ended_announce


def test_the_migration_marks_visits_ended_more_than_a_day_ago_and_leaves_recent_ones_to_the_job(token):
    old, recent = open_reader(reader_client(), token), open_reader(reader_client(), token)
    Visit.objects.filter(pk=old).update(last_activity_at=now() - timedelta(hours=25))
    Visit.objects.filter(pk=recent).update(last_activity_at=now() - timedelta(hours=23))

    migration = importlib.import_module("renders.migrations.0007_visit_ended_announced")
    migration.mark_visits_ended_long_ago(apps, None)

    assert Visit.objects.get(pk=old).ended_announced_at is not None
    assert Visit.objects.get(pk=recent).ended_announced_at is None
    assert [str(v.id) for v in visits_idle().filter(ended_announced_at__isnull=True)] == [recent]


def test_the_admin_shows_when_a_visit_was_announced(token, admin_client):
    visit_id = open_reader(reader_client(), token)
    at = idle_at()
    visits_ended_announce(at=at)

    listing = admin_client.get(reverse("admin:renders_visit_changelist"))
    assert listing.status_code == 200
    assert "Ended announced at" in listing.content.decode()
    page = admin_client.get(reverse("admin:renders_visit_change", args=[visit_id]))
    assert page.status_code == 200
    assert "Ended announced at" in page.content.decode()
    assert "When the worker told listeners the visit ended" in page.content.decode()


# Several workers at once -----------------------------------------------------------------------------------------

RUNNERS = 4
MANY_VISITS = 60
WORKER_VISITS = 30
requires_row_locks = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the runners overlap only on PostgreSQL (row locks, SKIP LOCKED); SQLite's IMMEDIATE transactions "
           "run one at a time, so there is no race to test")


@requires_row_locks
@pytest.mark.django_db(transaction=True)
def test_several_workers_at_once_announce_each_visit_exactly_once(api, project, doc):
    endpoint = subscribe(api)
    share = Share.objects.select_related("render").get(pk=Share.objects.create(project=project, render=doc).pk)
    started = now() - timedelta(hours=1)
    for index in range(MANY_VISITS):
        visit_view(share=share, viewer=f"viewer-{index:03d}-aaaaaaaaaaaaaaaa", verdict=HUMAN,
                   source_ip="203.0.113.1", user_agent="UA", at=started + timedelta(seconds=index))
    at = now()

    told = run_in_threads(RUNNERS, lambda index: visits_ended_announce(at=at, chunk=4))

    assert sum(told) == MANY_VISITS
    deliveries = ended(endpoint["id"])
    assert len(deliveries) == MANY_VISITS
    assert sorted(data_of(d)["id"] for d in deliveries) == sorted(str(pk) for pk in Visit.objects.values_list(
        "pk", flat=True))
    assert len({d.event_id for d in deliveries}) == MANY_VISITS
    assert not Visit.objects.filter(ended_announced_at__isnull=True).exists()
    assert sum(run_in_threads(RUNNERS, lambda index: visits_ended_announce(at=at))) == 0


@pytest.mark.django_db(transaction=True)
def test_two_running_workers_deliver_each_ended_visit_once(project, doc, tmp_path):
    receiver = start_receiver()
    created = endpoint_create(project=project, url=receiver.url, events=["visit.ended"])
    share = Share.objects.select_related("render").get(pk=Share.objects.create(project=project, render=doc).pk)
    started = now() - timedelta(hours=1)
    expected = {str(visit_view(share=share, viewer=f"viewer-{index:03d}-aaaaaaaaaaaaaaaa", verdict=HUMAN,
                               source_ip="203.0.113.1", user_agent="UA", at=started + timedelta(seconds=index)).pk)
                for index in range(WORKER_VISITS)}
    workers = []
    try:
        workers = [WorkerProcess(log=tmp_path / f"worker-{index}.log") for index in range(2)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                WebhookDelivery.objects.filter(status="succeeded").count() >= WORKER_VISITS
                and not Visit.objects.filter(ended_announced_at__isnull=True).exists()):
            time.sleep(0.1)
        time.sleep(1.5)  # a duplicate, if there were one, would have been sent by now
        received = receiver.wait_for(WORKER_VISITS + 1, timeout=0.1)
    finally:
        for worker in workers:
            worker.stop()
        receiver.stop()

    payloads = [Webhook(created.secret).verify(item.body, item.headers) for item in received]
    assert sorted(payload["data"]["id"] for payload in payloads) == sorted(expected)
    assert {payload["type"] for payload in payloads} == {"visit.ended"}
    assert WebhookDelivery.objects.filter(status="succeeded").count() == WORKER_VISITS
