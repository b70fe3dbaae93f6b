"""Contract section 8's deliveries, in process against real local HTTP receivers: the transactional outbox,
what each event type carries, signatures a `standardwebhooks` receiver verifies unchanged (rotation included),
machine traffic, retries, failure, disabling, and the address checks at delivery."""

import json
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from standardwebhooks import Webhook

from engagement_platform.clock import now
from renders.models import ActorKind, EventType
from renders.services import record_event
from renders.shares import share_mint, share_revoke
from tests.receivers import start_receiver
from tests.test_traffic_rules import CHROME, SLACKBOT
from webhooks.delivery import deliver_due, disable_failing_endpoints
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.services import endpoint_create, endpoint_rotate_secret, endpoint_update

pytestmark = pytest.mark.usefixtures("fresh_webhook_subscriptions")


@pytest.fixture
def receiver():
    started = start_receiver()
    yield started
    started.stop()


def subscribe(project, url, events, **options):
    return endpoint_create(project=project, url=url, events=events, **options)


def deliveries():
    return list(WebhookDelivery.objects.order_by("created_at", "event_type"))


def verified(created, received) -> dict:
    """The payload, as a receiver using the standardwebhooks library verifies it."""
    return Webhook(created.secret).verify(received.body, received.headers)


def visit(token, user_agent=CHROME, ip="203.0.113.7"):
    return Client(HTTP_USER_AGENT=user_agent, REMOTE_ADDR=ip).get(f"/s/{token}")


def test_a_view_is_delivered_signed_and_verifies_with_standardwebhooks(project, render, receiver):
    created = subscribe(project, receiver.url, ["render.viewed"])
    share = share_mint(render=render)
    assert visit(share.token).status_code == 200
    [delivery] = deliveries()
    assert (delivery.event_type, delivery.status) == ("render.viewed", DeliveryStatus.PENDING)

    assert deliver_due() == 1
    [received] = receiver.wait_for(1)
    payload = verified(created, received)
    assert received.headers["webhook-id"] == payload["id"] == str(delivery.event_id)
    assert received.headers["content-type"] == "application/json"
    assert payload["type"] == "render.viewed" and payload["createdAt"].endswith("Z")
    data = payload["data"]
    assert set(data) == {"id", "eventType", "actorKind", "shareId", "sourceIp", "userAgent", "metadata",
                         "createdAt", "traffic", "machineReason", "renderId"}
    assert (data["eventType"], data["actorKind"], data["shareId"], data["renderId"], data["traffic"]) == \
        ("viewed", "recipient", str(share.id), str(render.id), "human")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_response_status, delivery.next_attempt_at) == \
        (DeliveryStatus.SUCCEEDED, 1, 204, None)
    assert delivery.last_duration_ms is not None
    assert deliver_due() == 0  # nothing left


def test_during_a_rotation_both_secrets_sign_and_each_verifies(project, render, receiver, clock):
    created = subscribe(project, receiver.url, ["share.created"])
    new_secret = endpoint_rotate_secret(endpoint=created.endpoint)
    share_mint(render=render)
    deliver_due()
    [received] = receiver.wait_for(1)
    assert len(received.headers["webhook-signature"].split(" ")) == 2
    assert verified(created, received)["type"] == "share.created"
    assert Webhook(new_secret).verify(received.body, received.headers)["type"] == "share.created"

    clock.shift(24 * 3600 + 60)
    share_mint(render=render)
    deliver_due()
    later = receiver.wait_for(2)[1]
    assert len(later.headers["webhook-signature"].split(" ")) == 1
    assert Webhook(new_secret).verify(later.body, later.headers)
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(created.secret).verify(later.body, later.headers)


def test_share_events_carry_the_share_object(project, render, receiver):
    created = subscribe(project, receiver.url, ["share.created", "share.revoked"])
    share = share_mint(render=render, label="For Bob")
    share_revoke(share=share)
    deliver_due()
    payloads = [verified(created, received) for received in receiver.wait_for(2)]
    by_type = {payload["type"]: payload["data"] for payload in payloads}
    assert set(by_type) == {"share.created", "share.revoked"}
    assert by_type["share.created"] == {"id": str(share.id), "renderId": str(render.id),
                                        "url": f"/s/{share.token}", "label": "For Bob",
                                        "createdAt": by_type["share.created"]["createdAt"],
                                        "expiresAt": None, "revokedAt": None, "requireEmail": False}
    assert by_type["share.revoked"]["revokedAt"] is not None


def test_only_subscribed_types_and_first_viewed_once_per_share(project, render, receiver):
    subscribe(project, receiver.url, ["render.first_viewed", "render.downloaded"])
    share = share_mint(render=render)
    visit(share.token, ip="203.0.113.7")
    visit(share.token, ip="203.0.113.8")
    Client(HTTP_USER_AGENT=CHROME).get(f"/s/{share.token}/download")
    assert sorted(d.event_type for d in deliveries()) == ["render.downloaded", "render.first_viewed"]


def test_machine_traffic_goes_only_to_endpoints_that_include_it(project, render, receiver):
    people = subscribe(project, receiver.url, ["render.viewed", "render.first_viewed"])
    machines = subscribe(project, receiver.url, ["render.viewed", "render.first_viewed"], include_machine=True)
    share = share_mint(render=render)
    visit(share.token, user_agent=SLACKBOT)
    assert [(d.endpoint_id, d.event_type) for d in deliveries()] == [(machines.endpoint.pk, "render.viewed")]
    visit(share.token)  # a person's view: the first human one, to both
    assert sorted((d.endpoint_id == people.endpoint.pk, d.event_type) for d in deliveries()[1:]) == [
        (False, "render.first_viewed"), (False, "render.viewed"), (True, "render.first_viewed"),
        (True, "render.viewed")]


def test_an_email_click_is_delivered_with_its_message_fields(project, render, receiver, settings, mailoutbox):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    from renders.emails import render_email_send

    created = subscribe(project, receiver.url, ["email.clicked", "email.opened"], include_machine=True)
    email = render_email_send(render=render, to="bob@example.com", base_url="http://testserver")
    WebhookDelivery.objects.all().delete()
    Client(HTTP_USER_AGENT=CHROME).get(f"/c/{email.share.token}")
    deliver_due()
    [received] = receiver.wait_for(1)
    payload = verified(created, received)
    assert payload["type"] == "email.clicked"
    data = payload["data"]
    assert set(data) == {"id", "messageId", "recipient", "renderId", "shareId", "url", "occurredAt", "traffic",
                         "machineReason"}
    assert (data["messageId"], data["recipient"], data["renderId"], data["shareId"]) == \
        (email.message_id, "bob@example.com", str(render.id), str(email.share_id))
    assert data["url"].endswith(f"/s/{email.share.token}") and data["id"] == payload["id"]
    assert data["traffic"] in ("human", "machine")


def test_a_rolled_back_event_leaves_no_delivery(project, render, receiver):
    subscribe(project, receiver.url, ["share.created"])
    with pytest.raises(RuntimeError), transaction.atomic():
        share_mint(render=render)
        assert len(deliveries()) == 1  # stored in the same transaction as the event...
        raise RuntimeError("the request failed")
    assert deliveries() == []  # ...and gone with it


def test_a_disabled_endpoint_gets_nothing_and_nothing_later(project, render, receiver):
    created = subscribe(project, receiver.url, ["share.created"])
    endpoint_update(endpoint=created.endpoint, changes={"enabled": False})
    share_mint(render=render)
    endpoint_update(endpoint=created.endpoint, changes={"enabled": True})
    assert deliveries() == []


def test_events_of_a_project_without_endpoints_cost_no_webhook_query(project, render, make_project, receiver):
    subscribe(make_project(), receiver.url, ["render.viewed"])  # another project listens
    record_event(render=render, event_type=EventType.DOWNLOADED, actor_kind=ActorKind.PARTNER)  # warms the cache
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            record_event(render=render, event_type=EventType.PRINTED, actor_kind=ActorKind.PARTNER,
                         source_ip=None)
    assert not [q["sql"] for q in queries.captured_queries if "webhook" in q["sql"]]


one_statement = pytest.mark.skipif(connection.vendor != "postgresql",
                                   reason="only PostgreSQL records an event in one statement")


def task_rows():
    from django_tasks_db.models import DBTaskResult

    return list(DBTaskResult.objects.order_by("enqueued_at"))


@one_statement
def test_a_subscribed_event_is_recorded_with_its_delivery_and_task_in_one_statement(project, render, receiver):
    """The event, its delivery and the task that wakes the worker are one statement (one round trip, one
    commit), and the task row is the one the task backend's own `enqueue` writes."""
    from webhooks.tasks import deliver_deliveries

    subscribe(project, receiver.url, ["render.printed"])
    record_event(render=render, event_type=EventType.DOWNLOADED, actor_kind=ActorKind.PARTNER)  # warms the cache
    with CaptureQueriesContext(connection) as queries:
        assert record_event(render=render, event_type=EventType.PRINTED, actor_kind=ActorKind.PARTNER).recorded
    [statement] = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]  # the test's
    assert "webhooks_webhookdelivery" in statement and "dbtaskresult" in statement           # transaction
    [delivery] = deliveries()
    [stored] = task_rows()
    assert stored.args_kwargs == {"args": [[str(delivery.pk)]], "kwargs": {}}

    enqueued = deliver_deliveries.enqueue([str(delivery.pk)])
    [_, by_backend] = task_rows()
    assert str(by_backend.pk) == enqueued.id
    compared = [field.attname for field in type(stored)._meta.concrete_fields
                if field.attname not in ("id", "enqueued_at")]
    assert {name: getattr(stored, name) for name in compared} == {name: getattr(by_backend, name)
                                                                 for name in compared}

    assert deliver_deliveries.call([str(delivery.pk)]) == 1  # the task the statement stored sends it
    [received] = receiver.wait_for(1)
    assert json.loads(received.body)["type"] == "render.printed"


@one_statement
def test_a_duplicate_or_a_foreign_render_stores_no_delivery_and_no_task(project, render, make_project, receiver):
    from renders.services import render_event_record

    subscribe(project, receiver.url, ["render.printed"])
    first = record_event(render=render, event_type=EventType.PRINTED, actor_kind=ActorKind.PARTNER,
                         source_ip="198.51.100.4")
    again = record_event(render=render, event_type=EventType.PRINTED, actor_kind=ActorKind.PARTNER,
                         source_ip="198.51.100.4")
    assert (first.recorded, again.recorded) == (True, False)
    assert render_event_record(project=make_project(), render_id=str(render.pk), event_type=EventType.PRINTED,
                               actor_kind=ActorKind.PARTNER) is None
    assert len(deliveries()) == 1 and len(task_rows()) == 1


@one_statement
def test_an_endpoint_disabled_elsewhere_since_it_was_kept_gets_no_delivery_and_no_task(project, render, receiver):
    created = subscribe(project, receiver.url, ["render.printed"])
    record_event(render=render, event_type=EventType.DOWNLOADED, actor_kind=ActorKind.PARTNER)  # kept now
    WebhookEndpoint.objects.filter(pk=created.endpoint.pk).update(disabled_at=now())  # another process did it
    assert record_event(render=render, event_type=EventType.PRINTED, actor_kind=ActorKind.PARTNER).recorded
    assert deliveries() == [] and task_rows() == []


def test_a_recording_inside_a_rolled_back_transaction_leaves_no_delivery_nor_task(project, render, receiver):
    subscribe(project, receiver.url, ["render.printed"])
    with pytest.raises(RuntimeError), transaction.atomic():
        assert record_event(render=render, event_type=EventType.PRINTED, actor_kind=ActorKind.PARTNER).recorded
        assert len(deliveries()) == 1
        raise RuntimeError("the request failed")
    assert deliveries() == [] and task_rows() == []


def test_a_failing_receiver_is_retried_on_the_schedule_then_failed(project, render, clock, settings):
    receiver = start_receiver(status=500)
    try:
        subscribe(project, receiver.url, ["share.created"])
        share_mint(render=render)
        deliver_due()
        [delivery] = deliveries()
        assert (delivery.status, delivery.attempts, delivery.last_response_status) == ("pending", 1, 500)
        assert delivery.last_error == "The endpoint answered 500."
        assert delivery.next_attempt_at == now() + timedelta(seconds=5)
        assert deliver_due() == 0  # not due yet
        for delay in settings.WEBHOOK_RETRY_SCHEDULE:
            clock.shift(delay)
            assert deliver_due() == 1
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 7, None)
        assert len(receiver.wait_for(7)) == 7
        assert len({r.headers["webhook-id"] for r in receiver.received}) == 1  # one id on every attempt
    finally:
        receiver.stop()


def test_a_redirect_is_not_followed_and_counts_as_a_failure(project, render):
    receiver = start_receiver(status=302)
    try:
        subscribe(project, receiver.url, ["share.created"])
        share_mint(render=render)
        deliver_due()
        [delivery] = deliveries()
        assert (delivery.status, delivery.last_response_status) == ("pending", 302)
        assert len(receiver.wait_for(1)) == 1
    finally:
        receiver.stop()


def test_an_endpoint_failing_for_three_days_is_disabled(project, render, clock, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [3600] * 100
    receiver = start_receiver(status=503)
    try:
        created = subscribe(project, receiver.url, ["share.created"])
        share_mint(render=render)
        deliver_due()
        for _ in range(71):
            clock.shift(3600)
            deliver_due()
            assert disable_failing_endpoints() == 0
        clock.shift(3600)
        deliver_due()
        assert disable_failing_endpoints() == 1
        endpoint = WebhookEndpoint.objects.get(pk=created.endpoint.pk)
        assert endpoint.disabled_at is not None
        share_mint(render=render)
        assert len(deliveries()) == 1  # disabled: the new event is not delivered
    finally:
        receiver.stop()


def test_a_success_ends_the_failing_streak(project, render, clock):
    receiver = start_receiver(status=500)
    try:
        created = subscribe(project, receiver.url, ["share.created"])
        share_mint(render=render)
        deliver_due()
        assert WebhookEndpoint.objects.get(pk=created.endpoint.pk).failing_since is not None
        receiver.status = 200
        clock.shift(5)
        deliver_due()
        assert WebhookEndpoint.objects.get(pk=created.endpoint.pk).failing_since is None
    finally:
        receiver.stop()


def test_the_address_is_checked_again_at_delivery(project, render, receiver, settings):
    subscribe(project, receiver.url, ["share.created"])  # saved while local addresses were allowed
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    share_mint(render=render)
    deliver_due()
    [delivery] = deliveries()
    assert delivery.status == "pending" and delivery.last_error.startswith("Refused destination")
    assert receiver.received == []


def test_the_payload_body_is_the_same_bytes_on_every_attempt(project, render, clock):
    receiver = start_receiver(status=500)
    try:
        subscribe(project, receiver.url, ["share.created"])
        share_mint(render=render)
        deliver_due()
        clock.shift(5)
        deliver_due()
        first, second = receiver.wait_for(2)
        assert first.body == second.body and json.loads(first.body)["type"] == "share.created"
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
    finally:
        receiver.stop()
