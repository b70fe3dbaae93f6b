"""Section 3.2: every error of /v1/reports/* and /v1/messages/* is RFC 9457 problem details.

Each case checks the whole body: type, title, status, detail, code, request_id (equal to the
X-Request-Id header) and the case's own fields, with Content-Type application/problem+json.
"""

from datetime import timedelta

import pytest

from apikeys.models import Scope
from apikeys.services import apikey_revoke, project_soft_delete
from reports.models import MessageEvent
from tests.test_reports_helpers import EVENTS_URL, REPORT_URL, problem, wire_event

pytestmark = pytest.mark.django_db

PROBLEM_JSON = "application/problem+json"
INVALID_KEY_DETAIL = "Missing, malformed, unknown, revoked or expired API key. Send Authorization: Bearer <key>."
BATCH = {"events": [wire_event("opened", "2026-05-01T09:00:00Z")]}

ENDPOINTS = {
    "report": ("get", REPORT_URL, Scope.REPORTS_VIEW),
    "ingest": ("post", EVENTS_URL, Scope.MESSAGES_WRITE),
}


def call(client, endpoint: str, **headers):
    method, url, _scope = ENDPOINTS[endpoint]
    if method == "get":
        return client.get(url, **headers)
    return client.post(url, BATCH, format="json", **headers)


def assert_problem(response, expected_status: int, expected_body_without_request_id: dict):
    assert response.status_code == expected_status
    assert response["Content-Type"] == PROBLEM_JSON
    body = response.json()
    assert body["request_id"] == response["X-Request-Id"] != ""
    assert body == {**expected_body_without_request_id, "request_id": response["X-Request-Id"]}


def invalid_key():
    return problem("invalid_key", 401, "Invalid API key", INVALID_KEY_DETAIL, request_id=None)


@pytest.fixture(params=sorted(ENDPOINTS))
def endpoint(request):
    return request.param


# 401 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [
    None,
    "",
    "Bearer",
    "Basic dXNlcjpwYXNz",
    "Bearer not-a-key",
    "Bearer ck_live_" + "A" * 43,  # well-formed, unknown
])
def test_missing_malformed_or_unknown_key_is_401_invalid_key(make_client, endpoint, authorization, clock):
    client = make_client()
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}

    response = call(client, endpoint, **headers)

    assert_problem(response, 401, invalid_key())
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_revoked_key_is_401_invalid_key(project, make_key, make_client, endpoint, clock):
    issued = make_key(project)
    apikey_revoke(key=issued.key)

    assert_problem(call(make_client(issued.raw_key), endpoint), 401, invalid_key())


def test_expired_key_is_401_invalid_key(project, make_key, make_client, endpoint, clock):
    issued = make_key(project, expires_in_days=1)
    clock.shift(timedelta(days=1))

    assert_problem(call(make_client(issued.raw_key), endpoint), 401, invalid_key())


def test_request_id_sent_by_the_client_is_echoed_in_header_and_body(make_client, endpoint, clock):
    response = call(make_client(), endpoint, HTTP_X_REQUEST_ID="client-trace-42")

    assert response["X-Request-Id"] == "client-trace-42"
    assert response.json()["request_id"] == "client-trace-42"


# 403 -------------------------------------------------------------------------------------------


def test_key_of_a_deleted_project_is_403_project_deleted(project, make_key, make_client, endpoint, clock):
    client = make_client(make_key(project).raw_key)
    project_soft_delete(project=project)

    assert_problem(call(client, endpoint), 403, problem(
        "project_deleted", 403, "Project deleted", "This key's project has been deleted.", request_id=None))


def test_key_without_the_routes_scope_is_403_insufficient_scope(project, make_key, make_client, endpoint, clock):
    needed = ENDPOINTS[endpoint][2]
    others = [scope.value for scope in Scope if scope != needed]
    client = make_client(make_key(project, scopes=others).raw_key)

    response = call(client, endpoint)

    assert_problem(response, 403, problem(
        "insufficient_scope", 403, "Insufficient scope",
        f"This key lacks the scope '{needed.value}' that this route requires.", request_id=None,
        scope=needed.value))


def test_key_with_only_the_routes_scope_is_enough(project, make_key, make_client, endpoint, clock):
    client = make_client(make_key(project, scopes=[ENDPOINTS[endpoint][2].value]).raw_key)

    assert call(client, endpoint).status_code == 200


def test_from_earlier_than_the_plan_retention_is_403_retention_exceeded(api, clock):
    # The clock reads 2026-05-03T10:20:00Z; the plan keeps 90 days, back to 2026-02-02T10:20:00Z.
    response = api.get(REPORT_URL, {"from": "2026-02-02T10:19:59Z", "to": "2026-03-01T00:00:00Z"})

    assert_problem(response, 403, problem(
        "retention_exceeded", 403, "Retention exceeded",
        "`from` is earlier than this project's plan retention of 90 days allows.", request_id=None,
        retention_days=90))


def test_from_exactly_at_the_retention_start_is_allowed(api, clock):
    assert api.get(REPORT_URL, {"from": "2026-02-02T10:20:00Z"}).status_code == 200


def test_retention_follows_the_projects_plan(make_project, make_key, make_client, clock):
    client = make_client(make_key(make_project("weekly", retention_days=7)).raw_key)

    response = client.get(REPORT_URL, {"from": "2026-04-26T10:19:59Z"})

    assert response.status_code == 403
    assert response.json()["retention_days"] == 7


def test_to_before_the_retention_start_with_default_from_is_403(api, clock):
    response = api.get(REPORT_URL, {"to": "2026-01-01T00:00:00Z"})

    assert response.status_code == 403
    assert response.json()["code"] == "retention_exceeded"


# 422 -------------------------------------------------------------------------------------------


def validation_failed(detail: str, errors: list[dict]) -> dict:
    return problem("validation_failed", 422, "Validation failed", detail, request_id=None, errors=errors)


@pytest.mark.parametrize(("params", "field", "reason"), [
    ({"from": "yesterday"}, "from", "Must be an RFC 3339 date-time, e.g. 2026-05-17T09:30:00Z."),
    ({"from": "2026-05-01T00:00:00"}, "from", "Must carry a UTC offset or Z, e.g. 2026-05-17T09:30:00Z."),
    ({"from": "2026-05-01"}, "from", "Must carry a UTC offset or Z, e.g. 2026-05-17T09:30:00Z."),
    ({"to": "2026-05-01T00:00:00"}, "to", "Must carry a UTC offset or Z, e.g. 2026-05-17T09:30:00Z."),
    ({"to": "2026-13-01T00:00:00Z"}, "to", "Must be an RFC 3339 date-time, e.g. 2026-05-17T09:30:00Z."),
    ({"from": "2026-05-01T00:00:00 02:00"}, "from",
     "Not an RFC 3339 date-time; a `+` in an offset must be sent as %2B in a URL."),
    ({"from": "0001-01-01T00:00:00+01:00"}, "from", "Out of range."),
    ({"group_by": "year"}, "group_by", "Must be one of day, week, month."),
    ({"group_by": "DAY"}, "group_by", "Must be one of day, week, month."),
    ({"channel": "not-a-uuid"}, "channel", "Must be a UUID."),
    ({"identity": "not a domain"}, "identity", "Must be an email address or a domain, e.g. example.com."),
    ({"identity": "someone@"}, "identity", "Must be an email address or a domain, e.g. example.com."),
    ({"from": "2026-05-02T00:00:00Z", "to": "2026-05-02T00:00:00Z"}, "from", "Must be earlier than `to`."),
    ({"from": "2026-05-02T00:00:00Z", "to": "2026-05-01T00:00:00Z"}, "from", "Must be earlier than `to`."),
    ({"from": "2026-05-03T10:20:00Z"}, "from", "Must be earlier than `to`."),  # `to` defaults to now
])
def test_bad_query_parameter_is_422_with_one_error_for_that_field(api, clock, params, field, reason):
    response = api.get(REPORT_URL, params)

    assert_problem(response, 422, validation_failed(f"Invalid value for: {field}.",
                                                    [{"field": field, "reason": reason}]))


def test_several_bad_parameters_give_one_error_item_per_field(api, clock):
    response = api.get(REPORT_URL, {"from": "x", "to": "y", "group_by": "hour", "channel": "1", "identity": "@"})

    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["from", "to", "group_by", "channel",
                                                                       "identity"]


def test_validation_comes_before_the_retention_check(api, clock):
    response = api.get(REPORT_URL, {"from": "2020-01-01T00:00:00Z", "group_by": "year"})

    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "group_by", "reason": "Must be one of day, week, month."}]


def test_invalid_event_is_422_with_indexed_field_errors_and_nothing_stored(api, clock):
    events = [
        wire_event("opened", "2026-05-01T09:00:00Z"),
        wire_event("bounced", "2026-05-01T09:00:00Z"),
        wire_event("opened", "2026-05-01T09:00:00", recipient="not-an-address"),
    ]

    response = api.post(EVENTS_URL, {"events": events}, format="json")

    assert_problem(response, 422, validation_failed("2 of 3 events failed validation; nothing was stored.", [
        {"field": "events[1].type", "reason": "Must be one of sent, delivered, opened, clicked."},
        {"field": "events[2].recipient", "reason": "Must be an email address."},
        {"field": "events[2].occurredAt", "reason": "Must carry a UTC offset or Z, e.g. 2026-05-17T09:30:00Z."},
    ]))
    assert MessageEvent.objects.count() == 0


# 429 -------------------------------------------------------------------------------------------


def test_rate_limit_exceeded_is_429_with_retry_after(make_project, make_key, make_client, endpoint, clock):
    # The clock stands at the start of a minute, so the window resets in exactly 60 seconds.
    client = make_client(make_key(make_project("limited", rate_limit_per_minute=2)).raw_key)
    assert [call(client, endpoint).status_code for _ in range(2)] == [200, 200]

    response = call(client, endpoint)

    assert_problem(response, 429, problem(
        "rate_limited", 429, "Rate limit exceeded", "This project's rate limit is exhausted. Retry in 60 seconds.",
        request_id=None, retry_after=60))
    assert response["Retry-After"] == "60"


def test_retry_after_counts_down_within_the_minute(make_project, make_key, make_client, clock):
    client = make_client(make_key(make_project("limited", rate_limit_per_minute=1)).raw_key)
    client.get(REPORT_URL)
    clock.shift(45)

    response = client.get(REPORT_URL)

    assert response.status_code == 429
    assert (response.json()["retry_after"], response["Retry-After"]) == (15, "15")


def test_rate_limit_is_counted_per_project(make_project, make_key, make_client, clock):
    limited = make_client(make_key(make_project("limited", rate_limit_per_minute=1)).raw_key)
    other = make_client(make_key(make_project("roomy", rate_limit_per_minute=1)).raw_key)
    limited.get(REPORT_URL)

    assert limited.get(REPORT_URL).status_code == 429
    assert other.get(REPORT_URL).status_code == 200
