"""Tenant isolation, scopes and key states for every keyed route, generated from the URL configuration.

CONTRACT section 1: failure order 401 (no/unknown/revoked/expired key) → 403 (project deleted) → 403
(scope) → the route; another project's ids answer exactly like ids that do not exist. Every route under
/v1/ (the schema aside) is walked from `engagement_platform.urls`; a route or method without an entry in
MATRIX fails `test_every_v1_operation_is_described`, so a new route cannot be forgotten.
"""

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.apps import apps
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile

from apikeys.models import ALL_SCOPES
from apikeys.services import apikey_revoke, project_soft_delete
from engagement_platform.clock import now
from engagement_platform.errors import is_problem_surface
from engagement_platform.ids import new_id
from renders.models import ActorKind, EventType, Share
from renders.services import record_event
from tests.conftest import PDF_BYTES
from tests.routewalk import api_operations, api_routes, token_routes

pytestmark = pytest.mark.django_db

CHANNEL = "0196a000-0000-7000-8000-00000000c0de"


def message_batch(world, prefix="evt"):
    stamp = now().replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return {"events": [{
        "id": f"{prefix}-{world.tag}-{i}", "type": kind, "messageId": f"msg-{world.tag}-{i}", "channel": CHANNEL,
        "from": "news@sender.example", "recipient": f"r{i}@example.com", "occurredAt": stamp,
    } for i, kind in enumerate(["sent", "delivered", "opened", "clicked"])]}


@dataclass
class Op:
    """How to make a request that would succeed on this route, and what isolation means without ids."""

    json: Callable | None = None  # world -> JSON body
    multipart: Callable | None = None  # world -> multipart data
    query: Callable | None = None  # world -> query parameters
    # For routes without object ids: world, response of project B's key -> assert B sees nothing of A.
    isolation: Callable | None = None
    writes: bool = False


def _upload(world):
    return {"file": SimpleUploadedFile("x.pdf", PDF_BYTES, content_type="application/pdf"), "name": "Quote"}


def _render_list_isolated(world, response):
    assert response.status_code == 200
    ids = {item["id"] for item in response.json()["data"]}
    assert ids == {str(world.b.render.id)}


def _render_create_isolated(world, response):
    assert response.status_code == 201
    created = response.json()["id"]
    assert world.a.project.renders.filter(pk=created).count() == 0
    assert world.b.project.renders.filter(pk=created).count() == 1


def _messages_isolated(world, response):
    # Project A already holds these event ids; for project B they are new, not duplicates.
    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 4, "duplicates": 0}


def _report_isolated(world, response):
    assert response.status_code == 200, response.content
    assert response.json()["data"] == []


def _message_export_isolated(world, response):
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b""  # B's window holds none of A's events


def _report_query(world):
    start = (now() - timedelta(days=1)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    end = (now() + timedelta(days=1)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return {"from": start, "to": end, "group_by": "day"}


MATRIX: dict[str, dict[str, Op]] = {
    "v1/renders": {
        "GET": Op(isolation=_render_list_isolated),
        "POST": Op(multipart=_upload, isolation=_render_create_isolated, writes=True),
    },
    "v1/renders/<str:render_id>": {"GET": Op(), "DELETE": Op(writes=True)},
    "v1/renders/<str:render_id>/download": {"GET": Op()},
    "v1/renders/<str:render_id>/visits": {"GET": Op()},
    "v1/renders/<str:render_id>/pages": {"GET": Op()},
    "v1/renders/<str:render_id>/engagement": {"GET": Op()},
    "v1/renders/<str:render_id>/events": {"GET": Op(),
                                          "POST": Op(json=lambda w: {"eventType": "viewed"}, writes=True)},
    "v1/renders/<str:render_id>/shares": {
        "GET": Op(),
        "POST": Op(json=lambda w: {"label": "matrix"}, writes=True),
    },
    "v1/renders/<str:render_id>/shares/<str:share_id>": {"DELETE": Op(writes=True)},
    "v1/renders/<str:render_id>/emails": {
        "POST": Op(json=lambda w: {"to": "someone@example.com", "subject": "Hi"}, writes=True),
    },
    "v1/messages/events": {"POST": Op(json=message_batch, isolation=_messages_isolated, writes=True),
                           "GET": Op(query=_report_query, isolation=_message_export_isolated)},
    "v1/reports/engagement": {"GET": Op(query=_report_query, isolation=_report_isolated)},
    "v1/webhooks": {
        "GET": Op(isolation=lambda w, r: _webhook_list_isolated(w, r)),
        "POST": Op(json=lambda w: {"url": "http://127.0.0.1:9/hooks", "events": ["render.viewed"]},
                   isolation=lambda w, r: _webhook_create_isolated(w, r), writes=True),
    },
    "v1/webhooks/<str:webhook_id>": {"GET": Op(), "PATCH": Op(json=lambda w: {"description": "matrix"}, writes=True),
                                     "DELETE": Op(writes=True)},
    "v1/webhooks/<str:webhook_id>/rotate-secret": {"POST": Op(writes=True)},
    "v1/webhooks/<str:webhook_id>/test": {"POST": Op(writes=True)},
    "v1/webhooks/<str:webhook_id>/deliveries": {"GET": Op()},
    "v1/webhooks/<str:webhook_id>/deliveries/<str:delivery_id>/retry": {"POST": Op(writes=True)},
}


def _webhook_list_isolated(world, response):
    assert response.status_code == 200
    assert {item["id"] for item in response.json()["data"]} == {str(world.b.extra["webhook"].id)}


def _webhook_create_isolated(world, response):
    from webhooks.models import WebhookEndpoint

    assert response.status_code == 201, response.content
    created = response.json()["id"]
    assert WebhookEndpoint.objects.filter(pk=created, project=world.b.project).count() == 1

# Which object of a tenant each path parameter names.
PARAMS: dict[str, Callable] = {
    "render_id": lambda tenant: tenant.render.id,
    "share_id": lambda tenant: tenant.share.id,
    "webhook_id": lambda tenant: tenant.extra["webhook"].id,
    "delivery_id": lambda tenant: tenant.extra["delivery"].id,
}

# Public token routes: method, and what a revoked share's token must answer.
TOKEN_MATRIX: dict[str, tuple[str, int]] = {
    "s/<str:token>": ("GET", 410),
    "s/<str:token>/file": ("GET", 410),
    "s/<str:token>/download": ("GET", 410),
    "s/<str:token>/print": ("POST", 410),
    "s/<str:token>/pages/<int:number>": ("GET", 410),
    "s/<str:token>/activity": ("POST", 410),
    # The open pixel answers the same GIF for any token and records nothing for a dead one.
    "t/<str:token>.gif": ("GET", 200),
    # The tracked link sends the recipient to the share page (which says 404 for an unknown token).
    "c/<str:token>": ("GET", 302),
}
# A revoked or expired share's tracked link is the 410 page itself, and records no click.
DEAD_TOKEN_STATUS: dict[str, int] = {"c/<str:token>": 410}


@dataclass
class Tenant:
    project: object
    raw_key: str
    render: object
    share: object
    key: object = None
    extra: dict = field(default_factory=dict)


@dataclass
class World:
    a: Tenant
    b: Tenant
    tag: str


def _tenant(name, make_project, make_key, make_render):
    project = make_project(name)
    issued = make_key(project)
    render = make_render(project)
    share = Share.objects.create(project=project, render=render, label=f"{name} share")
    record_event(render=render, event_type=EventType.VIEWED, actor_kind=ActorKind.RECIPIENT, share=share,
                 source_ip="203.0.113.7", metadata={"tenant": name})
    from webhooks.services import endpoint_create, endpoint_test

    webhook = endpoint_create(project=project, url="http://127.0.0.1:9/hooks", events=["render.viewed"]).endpoint
    return Tenant(project=project, raw_key=issued.raw_key, render=render, share=share, key=issued.key,
                  extra={"webhook": webhook, "delivery": endpoint_test(endpoint=webhook)})


@pytest.fixture
def world(make_project, make_key, make_render, make_client):
    a = _tenant("tenant-a", make_project, make_key, make_render)
    b = _tenant("tenant-b", make_project, make_key, make_render)
    w = World(a=a, b=b, tag=new_id().hex[:8])
    # Project A holds message events too, so the report and ingestion routes have something to leak.
    if any(route.pattern == "v1/messages/events" for route in api_routes()):
        response = make_client(a.raw_key).post("/v1/messages/events", message_batch(w), format="json")
        assert response.status_code == 200, response.content
    return w


def send(client, method: str, path: str, op: Op, world: World):
    if op.multipart is not None:
        return client.generic(method, path) if method != "POST" else client.post(path, op.multipart(world))
    if op.json is not None:
        return getattr(client, method.lower())(path, op.json(world), format="json")
    if op.query is not None:
        return client.get(path, op.query(world))
    return client.generic(method, path)


def without_request_id(body):
    if isinstance(body, dict):
        return {k: without_request_id(v) for k, v in body.items() if k not in ("requestId", "request_id")}
    return body


def body_of(response):
    content_type = response.get("Content-Type", "")
    if "json" in content_type:
        return without_request_id(response.json())
    return response.content


def row_counts() -> dict[str, int]:
    return {model._meta.label: model.objects.count() for model in apps.get_models()
            if model._meta.app_label in ("renders", "reports", "apikeys", "webhooks")}


def assert_error(response, path: str, status: int, envelope_code: str, problem_code: str):
    assert response.status_code == status, (path, response.status_code, response.content[:300])
    body = response.json()
    if is_problem_surface(path):
        assert response["Content-Type"].startswith("application/problem+json")
        assert body["code"] == problem_code and body["status"] == status
        assert body["request_id"] == response["X-Request-Id"]
    else:
        assert set(body) == {"error"}
        assert body["error"]["code"] == envelope_code
        assert body["error"]["requestId"] == response["X-Request-Id"]
    return body


def op_for(route, method) -> Op:
    entry = MATRIX.get(route.pattern, {}).get(method)
    if entry is None:
        pytest.fail(f"{method} /{route.pattern} has no entry in the tenant MATRIX: describe it there")
    return entry


OPERATIONS = [pytest.param(route, method, id=f"{method} /{route.pattern}") for route, method in api_operations()]


# -- the matrix covers every route ---------------------------------------------------------------

def test_every_v1_operation_is_described():
    missing = [f"{m} /{r.pattern}" for r, m in api_operations() if m not in MATRIX.get(r.pattern, {})]
    assert not missing, f"routes with no tenant-matrix entry: {missing}"
    unknown_params = sorted({p for r in api_routes() for p in r.params} - set(PARAMS))
    assert not unknown_params, f"path parameters with no tenant object in PARAMS: {unknown_params}"


def test_every_v1_operation_declares_exactly_its_scopes():
    for route in api_routes():
        declared = set(route.required_scopes)
        assert declared == set(route.methods), (route.pattern, declared, route.methods)
        assert set(route.required_scopes.values()) <= set(ALL_SCOPES), route.pattern


def test_every_token_route_is_described():
    missing = [r.pattern for r in token_routes() if r.pattern not in TOKEN_MATRIX]
    assert not missing, f"public token routes with no entry in TOKEN_MATRIX: {missing}"


def test_walk_finds_the_known_routes():
    """The walk itself works: it sees the foundation's routes (if it saw nothing, the matrix would pass vacuously)."""
    patterns = {r.pattern for r in api_routes()}
    assert {"v1/renders", "v1/renders/<str:render_id>", "v1/renders/<str:render_id>/events"} <= patterns
    assert "v1/schema" not in patterns


# -- a foreign id answers exactly like a random one ----------------------------------------------

def _id_variants(route, world):
    """(label, path with A's ids, path with random ids) for every non-empty subset of params made foreign."""
    params = route.params
    for size in range(1, len(params) + 1):
        for foreign in itertools.combinations(params, size):
            own = {p: PARAMS[p](world.b) for p in params}
            with_a = {**own, **{p: PARAMS[p](world.a) for p in foreign}}
            with_random = {**own, **{p: new_id() for p in foreign}}
            yield "+".join(foreign), route.path(**with_a), route.path(**with_random)


@pytest.mark.parametrize(("route", "method"), OPERATIONS)
def test_key_of_another_project_sees_nothing(route, method, world, make_client):
    op = op_for(route, method)
    client_b = make_client(world.b.raw_key)
    if not route.params:
        assert op.isolation is not None, f"{method} /{route.pattern}: a route without ids needs an isolation check"
        path = route.path()
        op.isolation(world, send(client_b, method, path, op, world))
        return
    before = row_counts()
    for label, foreign_path, random_path in _id_variants(route, world):
        foreign = send(client_b, method, foreign_path, op, world)
        random = send(client_b, method, random_path, op, world)
        assert foreign.status_code == 404, (label, foreign_path, foreign.status_code, foreign.content[:300])
        assert (foreign.status_code, body_of(foreign)) == (random.status_code, body_of(random)), label
        assert foreign.get("Content-Type") == random.get("Content-Type")
    assert row_counts() == before, "a refused foreign-id request wrote something"
    assert mail.outbox == []
    world.a.share.refresh_from_db()
    assert world.a.share.revoked_at is None


@pytest.mark.parametrize(("route", "method"), OPERATIONS)
def test_own_ids_succeed(route, method, world, make_client):
    """The control for the matrix: the same request with the owner's key is not refused."""
    op = op_for(route, method)
    ids = {p: PARAMS[p](world.a) for p in route.params}
    response = send(make_client(world.a.raw_key), method, route.path(**ids), op, world)
    assert 200 <= response.status_code < 300, (response.status_code, response.content[:300])


# -- scopes and key states --------------------------------------------------------------------------

def _own_path(route, world):
    return route.path(**{p: PARAMS[p](world.a) for p in route.params})


@pytest.mark.parametrize(("route", "method"), OPERATIONS)
def test_key_missing_the_scope_is_forbidden(route, method, world, make_key, make_client):
    op = op_for(route, method)
    scope = route.required_scopes[method]
    narrowed = make_key(world.a.project, scopes=[s for s in ALL_SCOPES if s != scope]).raw_key
    before = row_counts()
    path = _own_path(route, world)
    response = send(make_client(narrowed), method, path, op, world)
    body = assert_error(response, path, 403, "forbidden", "insufficient_scope")
    if is_problem_surface(path):
        assert body["scope"] == scope
    else:
        assert scope in body["error"]["message"]
    assert row_counts() == before


@pytest.mark.parametrize(("route", "method"), OPERATIONS)
@pytest.mark.parametrize("state", ["revoked", "expired", "unknown", "missing", "malformed"])
def test_unusable_key_is_unauthorized(route, method, state, world, make_key, make_client):
    op = op_for(route, method)
    if state == "revoked":
        issued = make_key(world.a.project)
        apikey_revoke(key=issued.key)
        client = make_client(issued.raw_key)
    elif state == "expired":
        issued = make_key(world.a.project)
        issued.key.expires_at = now() - timedelta(seconds=1)
        issued.key.save(update_fields=["expires_at"])
        client = make_client(issued.raw_key)
    elif state == "unknown":
        client = make_client("ck_live_" + "x" * 43)
    elif state == "missing":
        client = make_client(None)
    else:
        client = make_client(None)
        client.credentials(HTTP_AUTHORIZATION=f"Token {world.a.raw_key}")
    before = row_counts()
    path = _own_path(route, world)
    assert_error(send(client, method, path, op, world), path, 401, "unauthorized", "invalid_key")
    assert row_counts() == before


@pytest.mark.parametrize(("route", "method"), OPERATIONS)
def test_key_of_a_deleted_project_is_forbidden(route, method, world, make_client):
    op = op_for(route, method)
    project_soft_delete(project=world.a.project)
    before = row_counts()
    path = _own_path(route, world)
    assert_error(send(make_client(world.a.raw_key), method, path, op, world), path, 403, "forbidden",
                 "project_deleted")
    assert row_counts() == before


# -- public token routes ------------------------------------------------------------------------

TOKEN_ROUTES = [pytest.param(r, id=f"/{r.pattern}") for r in token_routes()]


@pytest.mark.parametrize("route", TOKEN_ROUTES)
@pytest.mark.parametrize("state", ["revoked", "expired"])
def test_dead_share_token_is_gone_and_records_nothing(route, state, world, client):
    if route.pattern not in TOKEN_MATRIX:
        pytest.fail(f"/{route.pattern} has no entry in TOKEN_MATRIX")
    method, expected = TOKEN_MATRIX[route.pattern]
    expected = DEAD_TOKEN_STATUS.get(route.pattern, expected)
    share = world.a.share
    if state == "revoked":
        share.revoked_at = now()
    else:
        share.expires_at = now() - timedelta(seconds=1)
    share.save()
    before = row_counts()
    response = client.generic(method, route.path(token=share.token, number=1))
    assert response.status_code == expected, (route.pattern, response.status_code)
    if expected == 302:
        followed = client.get(response["Location"])
        assert followed.status_code == 410
    assert row_counts() == before


@pytest.mark.parametrize("route", TOKEN_ROUTES)
def test_unknown_token_is_not_found_and_records_nothing(route, world, client):
    method, expected = TOKEN_MATRIX.get(route.pattern, ("GET", 404))
    before = row_counts()
    response = client.generic(method, route.path(token="A" * 32, number=1))
    if expected in (200, 302):  # the pixel and the click answer alike for every token
        assert response.status_code == expected
    else:
        assert response.status_code == 404
    assert row_counts() == before
