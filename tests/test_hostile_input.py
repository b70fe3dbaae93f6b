"""Hostile input against every route: never a 5xx, the contract's error shape every time.

Generated from the URL configuration (tests/routewalk.py) and the tenant matrix's valid requests: each
operation gets oversized and malformed bodies, hostile headers, traversal in its ids, and SQL-ish and
script-ish strings in every string field of its body. Strings that are stored come back verbatim; wherever
they are shown in HTML (the share page, the admin) they are escaped.
"""

import json

import pytest
from django.conf import settings
from django.utils.html import escape

from engagement_platform.errors import is_problem_surface
from renders.models import EngagementEvent, Share
from tests import test_tenant_matrix
from tests.routewalk import api_operations, token_routes
from tests.test_tenant_matrix import MATRIX, PARAMS, TOKEN_MATRIX, send

pytestmark = pytest.mark.django_db
world = test_tenant_matrix.world  # the two-tenant fixture

SQLISH = [
    "' OR '1'='1",
    "'; DROP TABLE renders_render; --",
    '" OR ""="',
    "1; SELECT pg_sleep(10); --",
    "%' UNION SELECT key_hash FROM apikeys_apikey --",
    "\\'; \\\\",
]
SCRIPTISH = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "{{ settings.SECRET_KEY }}{% debug %}",
    "</title><svg/onload=alert(1)>",
]
HOSTILE_STRINGS = SQLISH + SCRIPTISH + ["\u202e\u0000evil", "😀" * 50, "a" * 5000, ""]

TRAVERSALS = [
    "../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..\\..\\windows\\win.ini",
    "%00",
    "abc%00def",
    "%252e%252e",
    "' OR 1=1 --",
    "<script>",
    "x" * 5000,
    "0196a000-0000-7000-8000-000000000000%00",
    "%c0%ae%c0%ae",
    "%ff%fe",
]

OPERATIONS = [pytest.param(route, method, id=f"{method} /{route.pattern}") for route, method in api_operations()]
BODY_OPERATIONS = [p for p in OPERATIONS if p.values[1] in ("POST", "PUT", "PATCH")]
JSON_OPERATIONS = [p for p in BODY_OPERATIONS if MATRIX.get(p.values[0].pattern, {}).get(p.values[1]) is not None
                   and MATRIX[p.values[0].pattern][p.values[1]].json is not None]


def assert_contract_shape(response, path: str):
    """A 2xx/3xx, or an error in the surface's shape with the request id; never a 5xx."""
    assert response.status_code < 500, (path[:200], response.status_code, response.content[:500])
    assert response["X-Request-Id"]
    if response.status_code < 400:
        return
    if not path.startswith("/v1/"):
        assert "text/html" in response["Content-Type"]
        return
    body = response.json()
    if is_problem_surface(path):
        assert response["Content-Type"].startswith("application/problem+json"), response["Content-Type"]
        assert {"type", "title", "status", "detail", "code", "request_id"} <= set(body)
        assert body["status"] == response.status_code
        assert body["request_id"] == response["X-Request-Id"]
    else:
        assert response["Content-Type"] == "application/json"
        assert set(body) == {"error"}
        assert {"code", "message", "requestId"} <= set(body["error"])
        assert body["error"]["requestId"] == response["X-Request-Id"]


def own_path(route, w):
    return route.path(**{p: PARAMS[p](w.a) for p in route.params})


# -- bodies ------------------------------------------------------------------------------------------------

def _deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def _deep_object(levels: int) -> bytes:
    return b'{"metadata":' * levels + b"1" + b"}" * levels


BAD_BODIES = {
    "oversized": (b'{"x":"' + b"a" * (settings.JSON_MAX_BODY_BYTES + 10) + b'"}', "application/json"),
    "deeply_nested_array": (_deep(100_000), "application/json"),
    "deeply_nested_object": (_deep_object(5_000), "application/json"),
    "nested_65": (_deep(65), "application/json"),
    "invalid_utf8": (b'{"eventType": "viewed\xff\xfe", "label": "\xc3\x28"}', "application/json"),
    "overlong_utf8": (b'{"eventType": "\xc0\xae\xc0\xae"}', "application/json"),
    "lone_surrogate": (b'{"eventType": "\\ud800", "metadata": {"\\udfff": 1}}', "application/json"),
    "nul_bytes": (b'{"eventType": "viewed\\u0000", "label": "a\\u0000b", "metadata": {"k\\u0000": "\\u0000"}}',
                  "application/json"),
    "raw_nul": (b'{"eventType":\x00"viewed"}', "application/json"),
    "huge_int": (b'{"eventType": "viewed", "metadata": {"n": ' + b"9" * 4000 + b"}}", "application/json"),
    "huge_float": (b'{"eventType": "viewed", "metadata": {"n": 1e999999}}', "application/json"),
    "nan": (b'{"eventType": "viewed", "metadata": {"n": NaN}}', "application/json"),
    "negative_infinity": (b'{"expiresAt": -Infinity}', "application/json"),
    "not_json": (b"eventType=viewed", "application/json"),
    "empty": (b"", "application/json"),
    "null": (b"null", "application/json"),
    "array": (b'[{"eventType": "viewed"}]', "application/json"),
    "string": (b'"viewed"', "application/json"),
    "number": (b"1e400", "application/json"),
    "text_plain": (b'{"eventType": "viewed"}', "text/plain"),
    "xml": (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
            "application/xml"),
    "form": (b"eventType=viewed", "application/x-www-form-urlencoded"),
    "multipart_without_boundary": (b"--x\r\n\r\n", "multipart/form-data"),
    "multipart_garbage": (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../../x.pdf\"\r\n\r\n"
                          b"%PDF-\x00\xff\r\n--b--", "multipart/form-data; boundary=b"),
    "charset_mismatch": ('{"eventType": "viewed"}'.encode("utf-16"), "application/json; charset=utf-16"),
    "no_content_type": (b'{"eventType": "viewed"}', ""),
}


@pytest.mark.parametrize(("route", "method"), BODY_OPERATIONS)
@pytest.mark.parametrize("kind", sorted(BAD_BODIES))
def test_bad_bodies_never_5xx(route, method, kind, world, make_client):
    body, content_type = BAD_BODIES[kind]
    path = own_path(route, world)
    response = make_client(world.a.raw_key).generic(method, path, body, content_type=content_type)
    assert_contract_shape(response, path)
    if kind in ("oversized", "deeply_nested_array", "invalid_utf8", "not_json", "nan"):
        assert 400 <= response.status_code < 500


@pytest.mark.parametrize(("route", "method"), JSON_OPERATIONS)
def test_oversized_body_is_413_for_json_routes(route, method, world, make_client):
    limit = getattr(route.view_class, "max_body_bytes", settings.JSON_MAX_BODY_BYTES)
    body, content_type = b'{"x":"' + b"a" * (limit + 10) + b'"}', "application/json"
    path = own_path(route, world)
    response = make_client(world.a.raw_key).generic(method, path, body, content_type=content_type)
    assert response.status_code == 413
    assert_contract_shape(response, path)


# -- every string field gets SQL-ish and script-ish strings ------------------------------------------------

def _string_paths(value, prefix=()):
    """Paths to every string in a JSON value."""
    if isinstance(value, str):
        yield prefix
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _string_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _string_paths(child, (*prefix, index))


def _replaced(value, path, new):
    if not path:
        return new
    copy = json.loads(json.dumps(value))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return copy


def _is_message_batch(body: dict) -> bool:
    events = body.get("events")
    return isinstance(events, list) and bool(events) and isinstance(events[0], dict)


def _with_extra_string_fields(body: dict) -> dict:
    """Optional string fields the valid body leaves out, so they get hostile values too."""
    extras = {"label": "x", "subject": "x", "message": "x", "name": "x", "metadata": {"note": "x"}}
    return body if _is_message_batch(body) else {**body, **{k: v for k, v in extras.items() if k not in body}}


@pytest.mark.parametrize(("route", "method"), JSON_OPERATIONS)
def test_hostile_strings_in_every_string_field_never_5xx(route, method, world, make_client):
    op = MATRIX[route.pattern][method]
    client = make_client(world.a.raw_key)
    path = own_path(route, world)
    valid = op.json(world)
    tried = 0
    for candidate in (valid, _with_extra_string_fields(valid)):
        for string_path in list(_string_paths(candidate)):
            for hostile in HOSTILE_STRINGS:
                body = _replaced(candidate, string_path, hostile)
                if _is_message_batch(body):  # fresh idempotency ids, so each batch is judged on its own
                    for i, event in enumerate(body["events"]):
                        if string_path[-1:] != ("id",) or string_path[1] != i:
                            event["id"] = f"{event['id']}-{tried}"
                response = client.generic(method, path, json.dumps(body), content_type="application/json")
                assert_contract_shape(response, path)
                tried += 1
    assert tried >= len(HOSTILE_STRINGS)


def test_hostile_strings_are_stored_verbatim(world, make_client):
    client = make_client(world.a.raw_key)
    render = world.a.render
    for index, hostile in enumerate(SQLISH + SCRIPTISH):
        metadata = {"note": hostile, hostile: [hostile]}
        response = client.post(f"/v1/renders/{render.id}/events", {"eventType": "printed", "metadata": metadata},
                               format="json", HTTP_X_FORWARDED_FOR=f"198.51.100.{index + 1}")
        assert response.status_code == 200 and response.json() == {"recorded": True}, response.content
        stored = EngagementEvent.objects.filter(render=render, event_type="printed").order_by("-created_at",
                                                                                            "-id").first()
        assert stored.metadata == metadata
        share = client.post(f"/v1/renders/{render.id}/shares", {"label": hostile}, format="json")
        assert share.status_code == 201, share.content
        assert share.json()["label"] == hostile
        assert Share.objects.get(pk=share.json()["id"]).label == hostile
    recent = client.get(f"/v1/renders/{render.id}/engagement").json()["recent"]
    notes = {event["metadata"]["note"] for event in recent if event["eventType"] == "printed"}
    assert notes == set(SQLISH + SCRIPTISH)


@pytest.mark.parametrize("hostile", SQLISH + SCRIPTISH)
def test_hostile_render_names_are_stored_verbatim_and_escaped_on_the_share_page(hostile, world, make_client,
                                                                                client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.conftest import PDF_BYTES

    api = make_client(world.a.raw_key)
    upload = SimpleUploadedFile("doc.pdf", PDF_BYTES, content_type="application/pdf")
    created = api.post("/v1/renders", {"file": upload, "name": hostile})
    assert created.status_code == 201, created.content
    render_id = created.json()["id"]
    assert created.json()["name"] == hostile
    assert api.get(f"/v1/renders/{render_id}").json()["name"] == hostile
    share = api.post(f"/v1/renders/{render_id}/shares", {"label": hostile}, format="json").json()
    page = client.get(share["url"].split("://", 1)[1].split("/", 1)[1].join(["/", ""]))
    assert page.status_code == 200
    html = page.content.decode()
    assert escape(hostile) in html
    if any(ch in hostile for ch in "<>\"'&"):
        assert hostile not in html


# -- ids and tokens --------------------------------------------------------------------------------------

PARAM_OPERATIONS = [p for p in OPERATIONS if p.values[0].params]


@pytest.mark.parametrize(("route", "method"), PARAM_OPERATIONS)
@pytest.mark.parametrize("bad", TRAVERSALS)
def test_traversal_in_ids_is_not_found(route, method, bad, world, make_client):
    op = MATRIX[route.pattern][method]
    client = make_client(world.a.raw_key)
    for param in route.params:
        ids = {p: PARAMS[p](world.a) for p in route.params}
        ids[param] = bad
        path = route.path(**ids)
        response = send(client, method, path, op, world)
        assert_contract_shape(response, path)
        assert response.status_code in (400, 404, 405), (path[:120], response.status_code)
        if response.status_code == 404:
            body = response.json()
            code = body["code"] if is_problem_surface(path) else body["error"]["code"]
            assert code == "not_found"


@pytest.mark.parametrize("route", [pytest.param(r, id=f"/{r.pattern}") for r in token_routes()])
@pytest.mark.parametrize("bad", TRAVERSALS + SQLISH + SCRIPTISH)
def test_traversal_in_tokens_never_5xx_and_records_nothing(route, bad, world, client):
    method, expected = TOKEN_MATRIX.get(route.pattern, ("GET", 404))
    before = EngagementEvent.objects.count()
    response = client.generic(method, route.path(token=bad, number=1))
    assert response.status_code < 500
    if expected not in (200, 302):
        assert response.status_code in (404, 405)
        if "text/html" in response.get("Content-Type", ""):
            html = response.content.decode()
            assert "<script>" not in html or "<script>" not in bad
            assert bad not in html or not any(ch in bad for ch in "<>\"'")
    assert EngagementEvent.objects.count() == before


@pytest.mark.parametrize("path", ["/v1/../../etc/passwd", "/v1/renders/%2e%2e/%2e%2e/etc/passwd",
                                  "/v1/%00", "/v1/renders/%00/events", "/s/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                                  "/v1/" + "a/" * 2000, "/%2e%2e/%2e%2e/etc/passwd", "/v1/renders?limit=1e999",
                                  "/v1/renders?cursor=../../etc/passwd", "/v1/renders?cursor=%00",
                                  "/v1/renders?limit=" + "9" * 400, "/v1/renders?limit=-1",
                                  "/v1/reports/engagement?from=%00&to=' OR 1=1 --&group_by=<script>",
                                  "/v1/reports/engagement?channel=../../etc&identity=%00@x",
                                  "/v1/reports/engagement?from=99999-01-01T00:00:00Z",
                                  "/v1/reports/engagement?from=" + "9" * 400])
def test_raw_hostile_paths_never_5xx(path, world, make_client):
    response = make_client(world.a.raw_key).get(path)
    assert response.status_code < 500, (path[:100], response.status_code, response.content[:300])
    if path.startswith("/v1/"):
        assert_contract_shape(response, path.split("?")[0])


# -- headers -----------------------------------------------------------------------------------------------

HOSTILE_HEADERS = {
    "huge_authorization": {"HTTP_AUTHORIZATION": "Bearer ck_live_" + "a" * 65536},
    "bearer_only": {"HTTP_AUTHORIZATION": "Bearer"},
    "nul_authorization": {"HTTP_AUTHORIZATION": "Bearer ck_live_\x00" + "a" * 40},
    "latin1_authorization": {"HTTP_AUTHORIZATION": "Bearer ck_live_é" + "a" * 40},
    "sqlish_authorization": {"HTTP_AUTHORIZATION": "Bearer ck_live_' OR '1'='1' --" + "a" * 20},
    "huge_request_id": {"HTTP_X_REQUEST_ID": "r" * 10000},
    "newline_request_id": {"HTTP_X_REQUEST_ID": "abc\r\nSet-Cookie: x=1"},
    "huge_user_agent": {"HTTP_USER_AGENT": "U" * 100_000},
    "nul_user_agent": {"HTTP_USER_AGENT": "a\x00b"},
    "huge_forwarded_for": {"HTTP_X_FORWARDED_FOR": ",".join(["1.2.3.4"] * 5000)},
    "garbage_forwarded_for": {"HTTP_X_FORWARDED_FOR": "' OR 1=1 --, <script>", "HTTP_X_REAL_IP": "../../etc"},
    "huge_accept": {"HTTP_ACCEPT": "text/html;q=0.1," * 3000},
    "weird_accept": {"HTTP_ACCEPT": "application/xml"},
    "host_injection": {"HTTP_HOST": "evil.example\r\nX-Injected: 1"},
}


@pytest.mark.parametrize(("route", "method"), OPERATIONS)
@pytest.mark.parametrize("kind", sorted(HOSTILE_HEADERS))
def test_hostile_headers_never_5xx(route, method, kind, world, make_client):
    op = MATRIX[route.pattern][method]
    headers = dict(HOSTILE_HEADERS[kind])
    client = make_client(world.a.raw_key)
    if "HTTP_AUTHORIZATION" in headers:
        client.credentials(HTTP_AUTHORIZATION=headers.pop("HTTP_AUTHORIZATION"))
    path = own_path(route, world)
    client.credentials(**({"HTTP_AUTHORIZATION": client._credentials["HTTP_AUTHORIZATION"]} | headers))
    response = send(client, method, path, op, world)
    assert_contract_shape(response, path)
    if kind.endswith("_authorization") or kind == "bearer_only":
        assert response.status_code == 401
    if kind in ("huge_request_id", "newline_request_id"):
        assert response["X-Request-Id"] != headers["HTTP_X_REQUEST_ID"]
        assert "\n" not in response["X-Request-Id"] and len(response["X-Request-Id"]) <= 128


def test_huge_user_agent_is_truncated_and_nul_stripped(world, make_client):
    client = make_client(world.a.raw_key)
    response = client.post(f"/v1/renders/{world.a.render.id}/events", {"eventType": "downloaded"}, format="json",
                           HTTP_USER_AGENT="U\x00" * 50_000)
    assert response.status_code == 200
    stored = EngagementEvent.objects.filter(render=world.a.render, event_type="downloaded").get()
    assert stored.user_agent == "U" * 512


# -- the admin shows hostile strings escaped ---------------------------------------------------------------

@pytest.fixture
def operator(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "x")
    client.force_login(user)
    return client


def test_admin_escapes_hostile_strings_on_render_and_event_pages(world, make_client, make_render, operator):
    hostile = SCRIPTISH[0] + SCRIPTISH[1]
    render = make_render(world.a.project, name=hostile)
    api = make_client(world.a.raw_key)
    response = api.post(f"/v1/renders/{render.id}/events", {"eventType": "viewed", "metadata": {"x": hostile}},
                        format="json", HTTP_USER_AGENT=hostile, HTTP_X_FORWARDED_FOR="' OR 1=1 --")
    assert response.status_code == 200
    api.post(f"/v1/renders/{render.id}/shares", {"label": hostile}, format="json")
    event = EngagementEvent.objects.get(render=render, event_type="viewed")
    pages = [
        "/admin/renders/render/", f"/admin/renders/render/{render.pk}/change/",
        "/admin/renders/engagementevent/", f"/admin/renders/engagementevent/{event.pk}/change/",
        f"/admin/renders/render/?q={hostile}", f"/admin/renders/engagementevent/?q={hostile}",
        "/admin/renders/share/",
    ]
    for page in pages:
        response = operator.get(page)
        assert response.status_code == 200, (page, response.status_code)
        html = response.content.decode()
        assert "<script>alert(1)</script>" not in html, page
        assert "<img src=x onerror" not in html, page
    detail = operator.get(f"/admin/renders/render/{render.pk}/change/").content.decode()
    assert escape(hostile) in detail


def test_email_from_the_longest_valid_domain_is_sent_not_a_500(world, make_client):
    """A valid sender domain of 252 characters once overflowed the Message-ID column (found by fuzzing)."""
    domain = ".".join(["0" * 63, "a" * 63, "a" * 63, "a" * 59])
    response = make_client(world.a.raw_key).post(
        f"/v1/renders/{world.a.render.id}/emails",
        {"to": "0@0.com", "subject": "0", "message": "", "from": f"0@{domain}"}, format="json")
    assert response.status_code == 201, response.content


# "İ" lower-cases to two code points: these addresses fit their columns as sent and overflow them as stored.
LONG_WHEN_LOWERED = ["a@" + "İ" * 63 + "." + "İ" * 63 + ".com", "a@" + ".".join(["İ" * 10] * 12) + ".com"]
HEADER_SPLITTING_SUBJECTS = ["Invoice\u000bReply-To : x@evil.test", "a\u000cb", "a\u001cb", "a\u001db", "a\u001eb",
                             "a\u0085b", "a\u007fb", "a\u2028b", "a\u2029b", "x" * 201]
UNROUTABLE_ADDRESSES = ["a@[127.0.0.1]", "a@localhost", "a@intranet", '"a\u000bb"@example.com']


@pytest.mark.parametrize("field", ["to", "from"])
@pytest.mark.parametrize("address", LONG_WHEN_LOWERED + UNROUTABLE_ADDRESSES)
def test_emails_to_or_from_hostile_addresses_are_400_and_store_nothing(world, make_client, field, address):
    path = f"/v1/renders/{world.a.render.id}/emails"
    response = make_client(world.a.raw_key).post(path, {"to": "alice@example.com", field: address}, format="json")

    assert_contract_shape(response, path)
    assert response.status_code == 400
    assert list(response.json()["error"]["issues"]["fieldErrors"]) == [field]
    assert not Share.objects.filter(render=world.a.render, recipient__isnull=False).exclude(recipient="").exists()


@pytest.mark.parametrize("subject", HEADER_SPLITTING_SUBJECTS)
def test_emails_with_header_splitting_subjects_are_400(world, make_client, subject):
    path = f"/v1/renders/{world.a.render.id}/emails"
    response = make_client(world.a.raw_key).post(path, {"to": "alice@example.com", "subject": subject},
                                                 format="json")

    assert_contract_shape(response, path)
    assert response.status_code == 400
    assert list(response.json()["error"]["issues"]["fieldErrors"]) == ["subject"]


@pytest.mark.parametrize("field", ["recipient", "from"])
@pytest.mark.parametrize("address", LONG_WHEN_LOWERED)
def test_message_events_with_addresses_too_long_once_lower_cased_are_422(world, make_client, field, address):
    event = {"id": "evt-1", "type": "opened", "messageId": "m-1", "channel": "0193c2c3-0000-7000-8000-000000000001",
             "from": "news@acme.example", "recipient": "alice@example.com", "occurredAt": "2026-05-01T09:00:00Z",
             field: address}
    response = make_client(world.a.raw_key).post("/v1/messages/events", {"events": [event]}, format="json")

    assert_contract_shape(response, "/v1/messages/events")
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == [f"events[0].{field}"]
