"""Contract section 8: webhook endpoints over HTTP (CRUD, secrets, rotation, the delivery log, retry, test),
errors in the section 2 envelope, another project's ids answered like missing ones."""

import base64
import uuid

import pytest
from django.test import Client

from apikeys.models import Scope
from tests.conftest import assert_envelope
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

URL = "https://93.184.215.14/hooks"  # a public address: no DNS needed
ENDPOINT_KEYS = {"id", "url", "events", "description", "includeMachine", "createdAt", "disabledAt"}


def invalid(response) -> set[str]:
    """Assert a 400 `invalid_request` envelope; the top-level fields its `fieldErrors` name."""
    issues = response.json().get("error", {}).get("issues")
    assert_envelope(response, 400, "invalid_request", issues=issues)
    return {key.split(".")[0] for key in issues["fieldErrors"]}


def create(api, **body):
    body = {"url": URL, "events": ["render.viewed"], **body}
    return api.post("/v1/webhooks", body, format="json")


@pytest.fixture
def endpoint_body(api):
    response = create(api, description="CRM", includeMachine=True)
    assert response.status_code == 201, response.content
    return response.json()


def test_create_answers_the_endpoint_and_its_secret_once(api, endpoint_body):
    assert set(endpoint_body) == ENDPOINT_KEYS | {"secret"}
    assert endpoint_body["url"] == URL and endpoint_body["events"] == ["render.viewed"]
    assert (endpoint_body["description"], endpoint_body["includeMachine"], endpoint_body["disabledAt"]) == \
        ("CRM", True, None)
    assert endpoint_body["createdAt"].endswith("Z")
    secret = endpoint_body["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert uuid.UUID(endpoint_body["id"]).version == 7

    listed = api.get("/v1/webhooks").json()
    assert listed == {"data": [{key: endpoint_body[key] for key in ENDPOINT_KEYS}]}
    one = api.get(f"/v1/webhooks/{endpoint_body['id']}").json()
    assert set(one) == ENDPOINT_KEYS and "secret" not in one


def test_defaults_and_event_types_are_deduplicated(api):
    body = create(api, events=["share.created", "render.viewed", "share.created"]).json()
    assert body["events"] == ["render.viewed", "share.created"]
    assert (body["description"], body["includeMachine"]) == ("", False)


@pytest.mark.parametrize("body, field", [
    ({"events": ["render.opened"]}, "events"),
    ({"events": []}, "events"),
    ({"events": "render.viewed"}, "events"),
    ({"url": "not a url"}, "url"),
    ({"url": "ftp://example.com/x"}, "url"),
    ({"includeMachine": "maybe"}, "includeMachine"),
    ({"colour": "red"}, "colour"),
])
def test_a_bad_body_is_invalid_request_naming_the_field(api, body, field):
    assert invalid(create(api, **body)) == {field}


def test_an_empty_or_broken_body_is_invalid_json(api):
    assert_envelope(api.post("/v1/webhooks", b"", content_type="application/json"), 400, "invalid_json")
    assert_envelope(api.post("/v1/webhooks", b"{", content_type="application/json"), 400, "invalid_json")


@pytest.mark.parametrize("url", [
    "http://93.184.215.14/hooks",  # not https
    "https://127.0.0.1/hooks",
    "https://localhost/hooks",
    "https://10.1.2.3/hooks",
    "https://192.168.0.10/hooks",
    "https://169.254.169.254/latest/meta-data",
    "https://[::1]/hooks",
    "https://[fe80::1]/hooks",
    "https://224.0.0.1/hooks",
    "https://240.0.0.1/hooks",
    "https://0.0.0.0/hooks",
    "https://[::ffff:127.0.0.1]/hooks",
    "https://user:pw@93.184.215.14/hooks",
])
def test_urls_to_local_networks_or_without_https_are_refused_when_saved(api, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    assert invalid(create(api, url=url)) == {"url"}
    assert create(api).status_code == 201  # a public https address is fine


def test_patch_changes_fields_and_enabled_sets_and_clears_disabled_at(api, endpoint_body):
    path = f"/v1/webhooks/{endpoint_body['id']}"
    changed = api.patch(path, {"events": ["email.clicked"], "description": "", "includeMachine": False},
                        format="json").json()
    assert (changed["events"], changed["description"], changed["includeMachine"]) == (["email.clicked"], "", False)
    disabled = api.patch(path, {"enabled": False}, format="json").json()
    assert disabled["disabledAt"] is not None and "secret" not in disabled
    assert api.patch(path, {"enabled": True}, format="json").json()["disabledAt"] is None
    assert invalid(api.patch(path, {"events": ["nope"]}, format="json")) == {"events"}
    assert invalid(api.patch(path, {"enabled": "sometimes"}, format="json")) == {"enabled"}


def test_delete_removes_the_endpoint_and_its_deliveries(api, endpoint_body):
    api.post(f"/v1/webhooks/{endpoint_body['id']}/test")
    assert api.delete(f"/v1/webhooks/{endpoint_body['id']}").status_code == 204
    assert not WebhookDelivery.objects.exists()
    assert_envelope(api.delete(f"/v1/webhooks/{endpoint_body['id']}"), 404, "not_found")


def test_rotate_secret_answers_a_new_secret_and_keeps_the_old_one_for_a_day(api, endpoint_body, clock):
    body = api.post(f"/v1/webhooks/{endpoint_body['id']}/rotate-secret").json()
    assert set(body) == {"secret"} and body["secret"].startswith("whsec_")
    assert body["secret"] != endpoint_body["secret"]
    endpoint = WebhookEndpoint.objects.get(pk=endpoint_body["id"])
    from engagement_platform.clock import now
    assert endpoint.signing_secrets(now()) == [body["secret"], endpoint_body["secret"]]
    clock.shift(24 * 3600 + 1)
    assert endpoint.signing_secrets(now()) == [body["secret"]]


def test_test_sends_a_webhook_test_event_whatever_the_endpoint_subscribes_to(api, endpoint_body):
    response = api.post(f"/v1/webhooks/{endpoint_body['id']}/test")
    assert response.status_code == 202
    [delivery] = api.get(f"/v1/webhooks/{endpoint_body['id']}/deliveries").json()["data"]
    assert response.json() == {"deliveryId": delivery["id"], "status": "pending"}
    assert (delivery["eventType"], delivery["status"], delivery["attempts"]) == ("webhook.test", "pending", 0)


def test_the_delivery_log_is_newest_first_paginated_and_filtered_by_status(api, endpoint_body):
    path = f"/v1/webhooks/{endpoint_body['id']}/deliveries"
    ids = [api.post(f"/v1/webhooks/{endpoint_body['id']}/test").json()["deliveryId"] for _ in range(3)]
    WebhookDelivery.objects.filter(pk=ids[0]).update(status=DeliveryStatus.FAILED, attempts=7, next_attempt_at=None,
                                                     last_error="The endpoint answered 500.", last_response_status=500)
    first = api.get(path, {"limit": 2}).json()
    assert [d["id"] for d in first["data"]] == [ids[2], ids[1]] and first["nextCursor"]
    second = api.get(path, {"limit": 2, "cursor": first["nextCursor"]}).json()
    assert [d["id"] for d in second["data"]] == [ids[0]] and second["nextCursor"] is None
    failed = api.get(path, {"status": "failed"}).json()["data"]
    assert [(d["id"], d["lastResponseStatus"], d["nextAttemptAt"]) for d in failed] == [(ids[0], 500, None)]
    assert set(failed[0]) == {"id", "eventId", "eventType", "status", "attempts", "lastResponseStatus",
                              "lastError", "lastDurationMs", "createdAt", "nextAttemptAt"}
    assert invalid(api.get(path, {"status": "lost"})) == {"status"}
    assert invalid(api.get(path, {"limit": 0})) == {"limit"}
    assert invalid(api.get(path, {"cursor": "garbage"})) == {"cursor"}


def test_retry_sends_a_failed_delivery_again_with_the_same_event_id(api, endpoint_body):
    delivery_id = api.post(f"/v1/webhooks/{endpoint_body['id']}/test").json()["deliveryId"]
    WebhookDelivery.objects.filter(pk=delivery_id).update(status=DeliveryStatus.FAILED, next_attempt_at=None)
    event_id = WebhookDelivery.objects.get(pk=delivery_id).event_id
    response = api.post(f"/v1/webhooks/{endpoint_body['id']}/deliveries/{delivery_id}/retry")
    assert response.status_code == 202 and response.json() == {"deliveryId": delivery_id, "status": "pending"}
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.event_id) == (DeliveryStatus.PENDING, event_id)
    assert delivery.next_attempt_at is not None


def test_another_projects_endpoints_and_deliveries_answer_404(api, endpoint_body, make_project, make_key,
                                                               make_client):
    other = make_client(make_key(make_project()).raw_key)
    delivery_id = api.post(f"/v1/webhooks/{endpoint_body['id']}/test").json()["deliveryId"]
    webhook = endpoint_body["id"]
    assert other.get("/v1/webhooks").json() == {"data": []}
    calls = [("get", f"/v1/webhooks/{webhook}"), ("patch", f"/v1/webhooks/{webhook}"),
             ("delete", f"/v1/webhooks/{webhook}"), ("post", f"/v1/webhooks/{webhook}/rotate-secret"),
             ("post", f"/v1/webhooks/{webhook}/test"), ("get", f"/v1/webhooks/{webhook}/deliveries"),
             ("post", f"/v1/webhooks/{webhook}/deliveries/{delivery_id}/retry")]
    for method, path in calls:
        foreign = getattr(other, method)(path, {"enabled": False} if method == "patch" else None, format="json")
        missing = getattr(other, method)(path.replace(webhook, str(uuid.uuid4())),
                                         {"enabled": False} if method == "patch" else None, format="json")
        assert_envelope(foreign, 404, "not_found")
        assert foreign.json()["error"]["message"] == missing.json()["error"]["message"]
    assert WebhookEndpoint.objects.get(pk=webhook).disabled_at is None
    # a delivery of another endpoint of the same project is not found under this one either
    second = create(api).json()["id"]
    assert_envelope(api.post(f"/v1/webhooks/{second}/deliveries/{delivery_id}/retry"), 404, "not_found")
    assert_envelope(api.get("/v1/webhooks/not-a-uuid"), 404, "not_found")


def test_webhooks_need_the_webhooks_manage_scope(project, make_key, make_client):
    client = make_client(make_key(project, scopes=[Scope.RENDERS_READ, Scope.RENDERS_WRITE]).raw_key)
    error = assert_envelope(client.get("/v1/webhooks"), 403, "forbidden")
    assert "webhooks.manage" in error["message"]
    assert_envelope(Client().get("/v1/webhooks"), 401, "unauthorized")
    allowed = make_client(make_key(project, scopes=[Scope.WEBHOOKS_MANAGE]).raw_key)
    assert allowed.get("/v1/webhooks").status_code == 200
