"""Contract section 8's delivery under faults, with real worker processes, real HTTP receivers and PostgreSQL
(docs/reliability.md). The worker's retry schedule and lease are shortened by their settings
(WEBHOOK_RETRY_SCHEDULE, WEBHOOK_LEASE_SECONDS) so that minutes of production time pass in seconds; the
receiver-down-a-minute case also runs in process with a moved clock and the real schedule."""

import json
import threading
import time

import pytest
from django.db import connection, connections
from standardwebhooks import Webhook

from renders.shares import share_mint
from tests.conftest import requires_postgres, run_in_threads
from tests.receivers import start_receiver
from tests.workers import WorkerProcess
from webhooks.delivery import deliver_due
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.services import endpoint_create
from webhooks.subscriptions import kept_subscriptions

pytestmark = pytest.mark.usefixtures("fresh_webhook_subscriptions")
RECEIVER_PORT = 8241  # in this suite's port range, so the receiver can come back on the same address


@pytest.fixture
def workers(tmp_path):
    started = []

    def start(*args, **env):
        worker = WorkerProcess(*args, log=tmp_path / f"worker-{len(started)}.log", **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def statuses() -> list[str]:
    return list(WebhookDelivery.objects.order_by("created_at").values_list("status", flat=True))


def test_a_receiver_down_for_a_minute_gets_the_delivery_when_it_is_back(db, project, render, clock):
    """In process, the real schedule (5 s, 1 min...) and a moved clock."""
    down_url = f"http://127.0.0.1:{RECEIVER_PORT}/hooks"
    created = endpoint_create(project=project, url=down_url, events=["share.created"])
    share_mint(render=render)
    deliver_due()
    clock.shift(5)
    deliver_due()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("pending", 2)
    assert "ConnectionRefusedError" in delivery.last_error
    clock.shift(60)  # the receiver was down for over a minute (the third attempt is due 5 s + 60 s after)
    receiver = start_receiver(port=RECEIVER_PORT)
    try:
        assert deliver_due() == 1
        [received] = receiver.wait_for(1)
        assert Webhook(created.secret).verify(received.body, received.headers)["type"] == "share.created"
        assert statuses() == ["succeeded"]
    finally:
        receiver.stop()




@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_between_sending_and_recording_sends_again_with_the_same_webhook_id(
        project, render, workers):
    receiver = start_receiver(hang_seconds=2)  # the worker is mid-request when it dies
    try:
        created = endpoint_create(project=project, url=receiver.url, events=["share.created"])
        worker = workers(WEBHOOK_LEASE_SECONDS="11")
        share_mint(render=render)
        [first] = receiver.wait_for(1, timeout=15)
        worker.kill()  # sent, never recorded
        delivery = WebhookDelivery.objects.get()
        assert (delivery.status, delivery.attempts) == ("pending", 0) and delivery.leased_until is not None

        workers(WEBHOOK_LEASE_SECONDS="11")
        second = receiver.wait_for(2, timeout=30)[1]
        wait_until(lambda: statuses() == ["succeeded"], 15, "the delivery to be recorded")
        assert first.headers["webhook-id"] == second.headers["webhook-id"] == str(delivery.event_id)
        assert first.body == second.body
        assert Webhook(created.secret).verify(second.body, second.headers)["type"] == "share.created"
    finally:
        receiver.stop()


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_receiver_down_then_up_is_delivered_by_the_running_worker(project, render, workers):
    endpoint_create(project=project, url=f"http://127.0.0.1:{RECEIVER_PORT}/hooks", events=["share.created"])
    workers(WEBHOOK_RETRY_SCHEDULE="1,2,2,2,2,2,2,2,2,2")
    share_mint(render=render)
    wait_until(lambda: WebhookDelivery.objects.filter(attempts__gte=3).exists(), 20, "three failed attempts")
    assert statuses() == ["pending"]
    receiver = start_receiver(port=RECEIVER_PORT)
    try:
        receiver.wait_for(1, timeout=15)
        wait_until(lambda: statuses() == ["succeeded"], 15, "success")
    finally:
        receiver.stop()


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_the_database_dropping_the_workers_connections_for_ten_seconds_loses_no_delivery(
        project, render, workers):
    receiver = start_receiver()
    try:
        endpoint_create(project=project, url=receiver.url, events=["share.created"])
        # A delivery whose outcome could not be recorded is sent again once its lease ends.
        worker = workers(WEBHOOK_RETRY_SCHEDULE="1,1,1,1,1,1,1,1,1,1", WEBHOOK_LEASE_SECONDS="11")
        stop = threading.Event()
        terminated = []

        def terminate_the_workers_connections():
            with connections["default"].cursor() as cursor:
                while not stop.is_set():
                    cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   "WHERE datname = current_database() AND application_name = %s",
                                   [WorkerProcess.APPLICATION_NAME])
                    terminated.append(cursor.fetchone()[0])
                    time.sleep(0.05)
            connections["default"].close()

        killer = threading.Thread(target=terminate_the_workers_connections, daemon=True)
        killer.start()
        shares = []
        try:
            started = time.monotonic()
            while time.monotonic() - started < 10:
                shares.append(share_mint(render=render))
                time.sleep(0.25)
        finally:
            stop.set()
            killer.join()
        assert sum(terminated) > 0, "the worker's connections were never cut"
        wait_until(lambda: set(statuses()) == {"succeeded"}, 60,
                   f"every delivery to succeed: {statuses()} {worker.log_path.read_text()[-3000:]}")
        assert worker.alive
        delivered = {json.loads(r.body)["data"]["id"] for r in receiver.received}
        assert delivered == {str(share.id) for share in shares}
    finally:
        receiver.stop()


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_events_to_one_endpoint_are_each_delivered_exactly_once(project, render, workers):
    receiver = start_receiver()
    try:
        endpoint_create(project=project, url=receiver.url, events=["share.created"])
        workers()
        workers()  # two workers, racing for the same deliveries
        run_in_threads(20, lambda index: share_mint(render=render, label=f"concurrent {index}"))
        connection.close()
        wait_until(lambda: statuses().count("succeeded") == 20, 30, "twenty deliveries")
        time.sleep(2)  # any duplicate would arrive by now
        ids = [r.headers["webhook-id"] for r in receiver.received]
        assert len(ids) == 20 and len(set(ids)) == 20
        assert set(WebhookDelivery.objects.values_list("attempts", flat=True)) == {1}
    finally:
        receiver.stop()


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_api_events_are_delivered_exactly_once_by_their_tasks_alone(project, render, workers):
    """Events recorded through the API's path (event, delivery and task in one statement), two workers running
    tasks only (no sweep): every delivery is sent once, so every task row the statement wrote was run."""
    from renders.services import render_event_record

    receiver = start_receiver()
    try:
        endpoint_create(project=project, url=receiver.url, events=["render.printed"])
        workers("--no-periodic")
        workers("--no-periodic")
        run_in_threads(20, lambda index: render_event_record(
            project=project, render_id=str(render.pk), event_type="printed", actor_kind="partner",
            source_ip=f"198.51.100.{index}"))
        connection.close()
        wait_until(lambda: statuses().count("succeeded") == 20, 30, "twenty deliveries")
        time.sleep(1)  # any duplicate would arrive by now
        ids = [r.headers["webhook-id"] for r in receiver.received]
        assert len(ids) == 20 and len(set(ids)) == 20
    finally:
        receiver.stop()


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_hanging_receiver_is_given_up_after_ten_seconds_and_frees_the_worker(project, render, workers):
    hanging = start_receiver(hang_seconds=30)
    healthy = start_receiver()
    try:
        endpoint_create(project=project, url=hanging.url, events=["share.created"])
        workers("--no-periodic")  # the queue alone: the next task waits for the hanging one
        share_mint(render=render)
        hanging.wait_for(1, timeout=10)
        endpoint_create(project=project, url=healthy.url, events=["share.revoked"])
        from renders.shares import share_revoke
        kept_subscriptions.clear()
        share_revoke(share=render.shares.first())
        sent_at = time.monotonic()
        healthy.wait_for(1, timeout=20)
        assert healthy.received, "the worker stayed stuck on the hanging receiver"
        stuck = WebhookDelivery.objects.get(event_type="share.created")
        assert (stuck.status, stuck.last_error) == (DeliveryStatus.PENDING, "Timed out.")
        assert 9_500 <= stuck.last_duration_ms <= 11_500
        assert healthy.received[0].at - sent_at < 12
    finally:
        hanging.stop()
        healthy.stop()
