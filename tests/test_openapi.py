"""Section 5: the OpenAPI document at /v1/schema is valid and describes every /v1 route the URL resolver has.

Routes come from walking `engagement_platform.urls` (tests/routewalk.py), so a route added without its
annotations fails here.
"""

import uuid

import pytest
from openapi_spec_validator import validate
from rest_framework.test import APIClient

from engagement_platform.openapi import KEYED_ERRORS
from tests.routewalk import api_routes

pytestmark = pytest.mark.django_db

JSON_SCHEMA_REQUESTS = [({"format": "json"}, {}), ({}, {"HTTP_ACCEPT": "application/json"})]
PROBLEM = "application/problem+json"
ENVELOPE = "application/json"


def fetch_schema(query=None, **headers) -> dict:
    response = APIClient().get("/v1/schema", query or {}, **headers)
    assert response.status_code == 200
    assert "json" in response["Content-Type"]
    return response.json()


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker) -> dict:
    with django_db_blocker.unblock():
        return fetch_schema({"format": "json"})


def openapi_path(route) -> str:
    return route.path(**{name: "{" + name + "}" for name in route.params})


def is_report_side(path: str) -> bool:
    return path.startswith(("/v1/reports/", "/v1/messages/"))


def operations(schema):
    for route in api_routes():
        path = openapi_path(route)
        for method in route.methods:
            yield route, path, method, schema["paths"].get(path, {}).get(method.lower())


def resolve(schema, ref_holder: dict) -> dict:
    ref = ref_holder["$ref"]
    assert ref.startswith("#/components/schemas/")
    return schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]


@pytest.mark.parametrize(("query", "headers"), JSON_SCHEMA_REQUESTS)
def test_schema_is_served_as_json_and_is_a_valid_openapi_3_document(query, headers):
    document = fetch_schema(query, **headers)

    assert document["openapi"].startswith("3.")
    validate(document)  # raises on any violation of the OpenAPI 3 specification


def test_every_v1_route_and_method_is_a_path_and_operation_and_nothing_else(schema):
    routes = api_routes()
    assert len(routes) >= 9  # the walk found the API's routes

    expected = {(openapi_path(route), method.lower()) for route in routes for method in route.methods}
    documented = {(path, method) for path, item in schema["paths"].items() for method in item
                  if method in ("get", "post", "put", "patch", "delete")}
    assert documented == expected


def test_every_path_parameter_of_a_route_is_declared(schema):
    for route, path, method, operation in operations(schema):
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(route.params), (path, method)
        assert all(p["required"] for p in operation.get("parameters", []) if p["in"] == "path")


def test_the_render_list_documents_its_page_parameters(schema):
    parameters = {p["name"]: p for p in schema["paths"]["/v1/renders"]["get"]["parameters"] if p["in"] == "query"}

    assert set(parameters) == {"limit", "cursor"}
    assert parameters["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}
    assert parameters["cursor"]["schema"] == {"type": "string", "maxLength": 128}


def test_the_share_list_documents_its_page_parameters_and_next_cursor(schema):
    operation = schema["paths"]["/v1/renders/{render_id}/shares"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}

    assert set(parameters) == {"limit", "cursor"}
    assert parameters["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}
    assert parameters["cursor"]["schema"] == {"type": "string", "maxLength": 128}
    page = resolve(schema, operation["responses"]["200"]["content"]["application/json"]["schema"])
    assert set(page["properties"]) == {"data", "nextCursor"}
    assert page["properties"]["nextCursor"]["nullable"] is True
    assert "400" in operation["responses"]


def test_the_event_log_documents_its_filters_page_and_traffic_fields(schema):
    operation = schema["paths"]["/v1/renders/{render_id}/events"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}

    assert set(parameters) == {"limit", "cursor", "traffic", "eventType", "shareId", "actorKind", "format"}
    assert parameters["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 50}
    assert parameters["traffic"]["schema"]["enum"] == ["all", "human", "machine"]
    assert parameters["shareId"]["schema"] == {"type": "string", "format": "uuid"}
    assert operation["x-required-scope"] == "renders.read"
    assert {"400", "404"} <= set(operation["responses"])
    page = resolve(schema, operation["responses"]["200"]["content"]["application/json"]["schema"])
    event = resolve(schema, page["properties"]["data"]["items"])
    assert {"traffic", "machineReason", "eventType", "createdAt"} <= set(event["properties"])
    reason = event["properties"]["machineReason"]
    assert reason["nullable"] is True
    assert resolve(schema, reason["oneOf"][0])["enum"] == ["bot", "prefetch", "privacy_proxy", "scanner",
                                                           "no_user_agent", "client"]


def test_the_summary_documents_its_traffic_parameter_and_keeps_the_event_shape(schema):
    operation = schema["paths"]["/v1/renders/{render_id}/engagement"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    assert parameters["traffic"]["schema"] == {"type": "string", "enum": ["all", "human", "machine"],
                                               "default": "all"}
    assert "400" in operation["responses"]
    body = resolve(schema, operation["responses"]["200"]["content"]["application/json"]["schema"])
    recent = resolve(schema, body["properties"]["recent"]["items"])
    assert "traffic" not in recent["properties"]


def test_the_download_is_documented_as_a_binary_pdf_attachment(schema):
    response = schema["paths"]["/v1/renders/{render_id}/download"]["get"]["responses"]["200"]

    assert response["content"] == {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}
    assert response["headers"]["Content-Disposition"]["required"] is True


EXPECTED_TAGS = {
    "/v1/renders": "renders",
    "/v1/renders/{render_id}": "renders",
    "/v1/renders/{render_id}/download": "renders",
    "/v1/renders/{render_id}/engagement": "renders",
    "/v1/renders/{render_id}/events": "renders",
    "/v1/renders/{render_id}/shares": "shares",
    "/v1/renders/{render_id}/shares/{share_id}": "shares",
    "/v1/renders/{render_id}/emails": "emails",
    "/v1/reports/engagement": "reports",
    "/v1/messages/events": "messages",
}


def test_operations_are_tagged_by_the_resource_they_act_on(schema):
    for path, expected in EXPECTED_TAGS.items():
        for method, operation in schema["paths"][path].items():
            assert operation["tags"] == [expected], (path, method)
    for _route, path, method, operation in operations(schema):
        [tag] = operation["tags"]
        assert tag != "v1", (path, method)


def test_every_tag_in_use_is_declared_once_with_a_description(schema):
    used = {tag for item in schema["paths"].values() for operation in item.values() for tag in operation["tags"]}
    declared = [tag["name"] for tag in schema["tags"]]

    assert sorted(declared) == sorted(used)
    assert declared[:5] == ["renders", "shares", "emails", "reports", "messages"]
    assert all(tag.get("description") for tag in schema["tags"] if tag["name"] in EXPECTED_TAGS.values())


RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def test_every_keyed_response_documents_the_rate_limit_headers_except_before_the_key_is_known(schema):
    for _route, path, method, operation in operations(schema):
        for status, response in operation["responses"].items():
            headers = response["headers"]
            if status == "401":
                assert not set(RATE_LIMIT_HEADERS) & set(headers), (path, method, status)
                continue
            for name in RATE_LIMIT_HEADERS:
                assert headers[name]["schema"]["type"] == "integer", (path, method, status, name)
                assert headers[name]["required"] is (not status.startswith("5")), (path, method, status, name)


@pytest.mark.parametrize(("path", "subject"), [("/v1/renders/{render_id}/engagement", "summary"),
                                                ("/v1/reports/engagement", "report")])
def test_the_kept_bodies_document_the_no_cache_request_header(schema, path, subject):
    [header] = [p for p in schema["paths"][path]["get"]["parameters"] if p["in"] == "header"]

    assert (header["name"], header.get("required", False), header["schema"]) == \
        ("Cache-Control", False, {"type": "string"})
    assert header["description"].startswith(f"`no-cache` builds the {subject} afresh.")


def test_every_operation_requires_the_bearer_key_and_names_the_scope_its_view_enforces(schema):
    scheme = schema["components"]["securitySchemes"]["ApiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert schema.get("security") in (None, [])  # nothing global: each operation says it

    for route, path, method, operation in operations(schema):
        assert operation["security"] == [{"ApiKey": []}], (path, method)
        assert operation["x-required-scope"] == route.required_scopes[method], (path, method)


def test_every_operation_declares_its_success_and_its_errors_in_its_surface_shape(schema):
    for route, path, method, operation in operations(schema):
        responses = operation["responses"]
        statuses = {int(status) for status in responses}
        media, component = (PROBLEM, "Problem") if is_report_side(path) else (ENVELOPE, "ErrorEnvelope")
        if statuses & {204}:  # no content by definition
            assert not responses["204"].get("content"), path
        else:
            assert any(200 <= status < 300 and responses[str(status)].get("content") for status in statuses), path
        required = set(KEYED_ERRORS)
        if route.params:
            required.add(404)
        if method in ("POST", "PUT", "PATCH"):
            required |= {413, 422} if is_report_side(path) else {400, 413}
        if is_report_side(path) and method == "GET":
            required.add(422)
        assert required <= statuses, (path, method, sorted(required - statuses))
        for status in statuses - {s for s in statuses if s < 400}:
            content = responses[str(status)]["content"]
            assert list(content) == [media], (path, method, status)
            assert content[media]["schema"] == {"$ref": f"#/components/schemas/{component}"}, (path, method, status)
            assert responses[str(status)]["description"]


def test_every_response_declares_the_request_id_and_retries_declare_retry_after(schema):
    for _route, path, method, operation in operations(schema):
        for status, response in operation["responses"].items():
            headers = response["headers"]
            assert headers["X-Request-Id"]["required"] is True, (path, method, status)
            assert ("Retry-After" in headers) is (status in ("429", "503")), (path, method, status)
            if "Retry-After" in headers:
                assert headers["Retry-After"]["schema"]["type"] == "integer"


def test_documented_error_shapes_are_the_ones_served(schema):
    """Without a key every operation answers 401, in the media type and with the fields its schema names."""
    for route, path, method, operation in operations(schema):
        url = route.path(**{name: uuid.uuid4() for name in route.params})
        response = getattr(APIClient(), method.lower())(url)
        documented = operation["responses"]["401"]["content"]
        media = next(iter(documented))
        assert response.status_code == 401, (path, method)
        assert response["Content-Type"] == media, (path, method)
        assert set(operation["responses"]["401"]["headers"]) <= set(response.headers)
        shape = resolve(schema, documented[media]["schema"])
        body = response.json()
        if media == ENVELOPE:
            shape, body = resolve(schema, shape["properties"]["error"]), body["error"]
        assert set(shape["required"]) <= set(body) <= set(shape["properties"]), (path, method, body)


def test_the_documented_rate_limit_headers_are_served_on_keyed_answers(schema, project, make_key, make_client):
    client = make_client(make_key(project).raw_key)
    answers = {
        ("/v1/renders", "get", "200"): client.get("/v1/renders"),
        ("/v1/renders/{render_id}", "get", "404"): client.get(f"/v1/renders/{uuid.uuid4()}"),
        ("/v1/renders", "get", "400"): client.get("/v1/renders", {"cursor": "A" * 500}),
    }
    for (path, method, status), response in answers.items():
        assert str(response.status_code) == status, (path, response.content)
        documented = schema["paths"][path][method]["responses"][status]["headers"]
        required = {name for name, header in documented.items() if header.get("required")}
        assert set(RATE_LIMIT_HEADERS) <= required
        assert required <= set(response.headers), (path, status, sorted(required - set(response.headers)))
        assert int(response["X-RateLimit-Limit"]) == project.rate_limit_per_minute
