"""Contract section 1 (keys, scopes, the failure order) and section 0 (request ids)."""

import hashlib
import re
from datetime import timedelta
from unittest import mock

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory

from apikeys.models import ALL_SCOPES, ApiKey, Scope
from apikeys.permissions import required_scope_for
from apikeys.scoping import ProjectScopedAPIView
from apikeys.services import apikey_issue, apikey_revoke, project_soft_delete
from renders.models import EngagementEvent, Render
from tests.conftest import assert_envelope

UNAUTHORIZED = "Missing, malformed, unknown, revoked or expired API key. Send Authorization: Bearer <key>."
PROJECT_DELETED = "This key's project has been deleted."
GENERATED_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


def lacks_scope(scope: str) -> str:
    return f"This key lacks the scope '{scope}' that this route requires."


def rate_limited(seconds: int) -> str:
    return f"This project's rate limit is exhausted. Retry in {seconds} seconds."


def assert_unauthorized(response):
    assert_envelope(response, 401, "unauthorized", UNAUTHORIZED)
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


# 401: no, malformed, unknown, revoked or expired key ---------------------------------------


def test_a_request_without_authorization_is_unauthorized(db):
    assert_unauthorized(APIClient().get("/v1/renders"))


@pytest.mark.parametrize(
    "header",
    [
        "Token {key}",
        "Basic dXNlcjpwYXNzd29yZA==",
        "{key}",
        "Bearer",
        "Bearer ",
        "Bearer ck_live_tooshort",
        "Bearer sk_live_" + "a" * 43,
        "Bearer {key}x",
        "Bearer {key} {key}",
        "Bearer ck_live_" + "é" * 40,
        "Bearer ключ",
    ],
)
def test_a_malformed_authorization_header_is_unauthorized(project, make_key, header):
    raw_key = make_key(project).raw_key
    response = APIClient().get("/v1/renders", HTTP_AUTHORIZATION=header.format(key=raw_key))
    assert_unauthorized(response)


def test_the_bearer_scheme_is_case_insensitive(project, make_key):
    raw_key = make_key(project).raw_key
    assert APIClient().get("/v1/renders", HTTP_AUTHORIZATION=f"bearer {raw_key}").status_code == 200


def test_an_unknown_key_is_unauthorized(db, make_client):
    assert_unauthorized(make_client("ck_live_" + "A" * 43).get("/v1/renders"))


def test_a_revoked_key_is_unauthorized(project, make_key, make_client):
    issued = make_key(project)
    client = make_client(issued.raw_key)
    assert client.get("/v1/renders").status_code == 200
    apikey_revoke(key=issued.key)
    assert_unauthorized(client.get("/v1/renders"))


def test_an_expired_key_is_unauthorized_from_its_expiry_instant(project, make_key, make_client, clock):
    client = make_client(make_key(project, expires_in_days=1).raw_key)
    clock.shift(timedelta(days=1) - timedelta(milliseconds=1))
    assert client.get("/v1/renders").status_code == 200
    clock.shift(timedelta(milliseconds=1))
    assert_unauthorized(client.get("/v1/renders"))


# 403: deleted project, missing scope ------------------------------------------------------


def test_a_key_of_a_deleted_project_is_forbidden(project, make_key, make_client):
    client = make_client(make_key(project).raw_key)
    project_soft_delete(project=project)
    assert_envelope(client.get("/v1/renders"), 403, "forbidden", PROJECT_DELETED)


@pytest.mark.parametrize(
    ("method", "path", "scopes", "missing"),
    [
        ("get", "/v1/renders", [Scope.RENDERS_WRITE], Scope.RENDERS_READ),
        ("post", "/v1/renders", [Scope.RENDERS_READ], Scope.RENDERS_WRITE),
        ("get", "/v1/renders/{render}", [Scope.RENDERS_WRITE, Scope.REPORTS_VIEW], Scope.RENDERS_READ),
        ("get", "/v1/renders/{render}/download", [Scope.MESSAGES_WRITE], Scope.RENDERS_READ),
        ("get", "/v1/renders/{render}/engagement", [Scope.RENDERS_WRITE], Scope.RENDERS_READ),
        ("post", "/v1/renders/{render}/events", [Scope.RENDERS_READ], Scope.RENDERS_WRITE),
        ("get", "/v1/renders/{render}/events", [Scope.RENDERS_WRITE], Scope.RENDERS_READ),
        ("options", "/v1/renders/{render}/events", [Scope.REPORTS_VIEW], Scope.RENDERS_READ),
    ],
)
def test_a_key_without_the_route_scope_is_forbidden_naming_the_scope(project, render, make_key, make_client,
                                                                     method, path, scopes, missing):
    client = make_client(make_key(project, scopes=scopes).raw_key)
    response = getattr(client, method)(path.format(render=render.id))
    error = assert_envelope(response, 403, "forbidden", lacks_scope(missing))
    assert missing in error["message"]
    assert EngagementEvent.objects.count() == 0 and Render.objects.count() == 1


def test_a_key_with_exactly_the_route_scope_passes(project, render, make_key, make_client):
    reader = make_client(make_key(project, scopes=[Scope.RENDERS_READ]).raw_key)
    writer = make_client(make_key(project, scopes=[Scope.RENDERS_WRITE]).raw_key)
    assert reader.get(f"/v1/renders/{render.id}/engagement").status_code == 200
    response = writer.post(f"/v1/renders/{render.id}/events", {"eventType": "viewed"}, format="json")
    assert response.json() == {"recorded": True}


def test_options_on_a_read_and_write_route_needs_its_scope_and_never_fails(api, render):
    response = api.options(f"/v1/renders/{render.id}/events")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


def test_a_key_created_without_a_scope_list_gets_all_five(project):
    assert apikey_issue(project=project).key.scopes == ALL_SCOPES
    assert set(ALL_SCOPES) == {"renders.read", "renders.write", "messages.write", "reports.view", "webhooks.manage"}


# 429: the per-project rate limit -----------------------------------------------------------


def test_requests_over_the_project_rate_limit_are_rate_limited_with_retry_after(make_project, make_key,
                                                                                make_client, clock):
    client = make_client(make_key(make_project(rate_limit_per_minute=2)).raw_key)
    assert client.get("/v1/renders").status_code == 200
    assert client.get("/v1/renders").status_code == 200
    response = client.get("/v1/renders")
    assert_envelope(response, 429, "rate_limited", rate_limited(60), retryAfter=60)
    assert response["Retry-After"] == "60"
    clock.shift(45)
    response = client.get("/v1/renders")
    assert_envelope(response, 429, "rate_limited", rate_limited(15), retryAfter=15)
    assert response["Retry-After"] == "15"
    clock.shift(15)
    assert client.get("/v1/renders").status_code == 200


def test_the_rate_limit_is_counted_per_project_across_its_keys(make_project, make_key, make_client, clock):
    limited = make_project(rate_limit_per_minute=2)
    first, second = make_client(make_key(limited).raw_key), make_client(make_key(limited).raw_key)
    other = make_client(make_key(make_project(rate_limit_per_minute=2)).raw_key)
    assert first.get("/v1/renders").status_code == 200
    assert second.get("/v1/renders").status_code == 200
    assert first.get("/v1/renders").status_code == 429
    assert second.get("/v1/renders").status_code == 429
    assert other.get("/v1/renders").status_code == 200


# The failure order -----------------------------------------------------------------------


def test_a_revoked_key_of_a_deleted_project_is_unauthorized_not_forbidden(project, make_key, make_client):
    issued = make_key(project)
    apikey_revoke(key=issued.key)
    project_soft_delete(project=project)
    assert_unauthorized(make_client(issued.raw_key).get("/v1/renders"))


def test_an_expired_key_of_a_deleted_project_is_unauthorized_not_forbidden(project, make_key, make_client, clock):
    client = make_client(make_key(project, expires_in_days=1).raw_key)
    project_soft_delete(project=project)
    clock.shift(timedelta(days=2))
    assert_unauthorized(client.get("/v1/renders"))


def test_a_deleted_project_is_reported_before_a_missing_scope(project, make_key, make_client):
    client = make_client(make_key(project, scopes=[Scope.REPORTS_VIEW]).raw_key)
    project_soft_delete(project=project)
    assert_envelope(client.get("/v1/renders"), 403, "forbidden", PROJECT_DELETED)


def test_a_missing_scope_is_reported_before_the_rate_limit(make_project, make_key, make_client, clock):
    limited = make_project(rate_limit_per_minute=1)
    full = make_client(make_key(limited).raw_key)
    reports_only = make_client(make_key(limited, scopes=[Scope.REPORTS_VIEW]).raw_key)
    assert full.get("/v1/renders").status_code == 200
    assert full.get("/v1/renders").status_code == 429
    assert_envelope(reports_only.get("/v1/renders"), 403, "forbidden", lacks_scope(Scope.RENDERS_READ))


def test_a_deleted_project_is_reported_before_the_rate_limit(make_project, make_key, make_client, clock):
    limited = make_project(rate_limit_per_minute=1)
    client = make_client(make_key(limited).raw_key)
    assert client.get("/v1/renders").status_code == 200
    assert client.get("/v1/renders").status_code == 429
    project_soft_delete(project=limited)
    assert_envelope(client.get("/v1/renders"), 403, "forbidden", PROJECT_DELETED)


def test_the_rate_limit_is_reported_before_the_route_checks(make_project, make_key, make_client, clock):
    client = make_client(make_key(make_project(rate_limit_per_minute=1)).raw_key)
    assert client.get("/v1/renders/not-an-id").status_code == 404
    assert client.get("/v1/renders/not-an-id").status_code == 429
    assert client.post("/v1/renders", {}, format="multipart").status_code == 429


def test_a_missing_scope_is_reported_before_an_unknown_render(project, make_key, make_client):
    client = make_client(make_key(project, scopes=[Scope.RENDERS_READ]).raw_key)
    response = client.post("/v1/renders/not-an-id/events", {"eventType": "nope"}, format="json")
    assert_envelope(response, 403, "forbidden", lacks_scope(Scope.RENDERS_WRITE))


def test_a_missing_key_is_reported_before_a_malformed_id_or_body(db):
    assert_unauthorized(APIClient().post("/v1/renders/not-an-id/events", b"{", content_type="application/json"))


# Keys: format, storage, last use ---------------------------------------------------------


def test_a_raw_key_is_ck_live_and_at_least_32_url_safe_characters(project):
    issued = apikey_issue(project=project)
    assert re.fullmatch(r"ck_live_[A-Za-z0-9_-]{32,}", issued.raw_key)
    assert issued.key.prefix == issued.raw_key[:16]


def test_only_a_sha256_digest_of_the_key_is_stored(project, make_key):
    issued = make_key(project, name="ci")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiKey._meta.db_table}")
        rows = cursor.fetchall()
    assert len(rows) == 1
    stored = " ".join(str(value) for value in rows[0])
    assert issued.raw_key not in stored
    assert issued.raw_key[16:] not in stored  # the secret beyond the display prefix
    key = ApiKey.objects.get()
    assert key.key_hash == hashlib.sha256(issued.raw_key.encode()).hexdigest()
    assert key.prefix == issued.raw_key[:16]


def test_last_used_at_is_written_at_most_once_per_five_minutes(project, make_key, make_client, clock):
    issued = make_key(project)
    client = make_client(issued.raw_key)

    def last_used():
        return ApiKey.objects.get(pk=issued.key.pk).last_used_at

    assert last_used() is None
    first_use = timezone.now()
    assert client.get("/v1/renders").status_code == 200
    assert last_used() == first_use

    clock.shift(timedelta(minutes=4, seconds=59))
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/v1/renders").status_code == 200
    assert not [q for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert last_used() == first_use

    clock.shift(timedelta(seconds=1))
    assert client.get("/v1/renders").status_code == 200
    assert last_used() == first_use + timedelta(minutes=5)


def test_a_failed_authentication_does_not_touch_last_used_at(project, make_key, make_client):
    issued = make_key(project)
    project_soft_delete(project=project)
    assert make_client(issued.raw_key).get("/v1/renders").status_code == 403
    assert ApiKey.objects.get(pk=issued.key.pk).last_used_at is None


# X-Request-Id ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [("/v1/renders", 200), ("/v1/nowhere", 404), ("/healthz", 200)],
)
def test_every_response_carries_a_generated_request_id(api, path, status):
    response = api.get(path)
    assert response.status_code == status
    assert GENERATED_REQUEST_ID.fullmatch(response["X-Request-Id"])


def test_error_responses_carry_the_request_id_in_header_and_body(api, db):
    for response in (APIClient().get("/v1/renders"), api.delete("/v1/renders"), api.get("/v1/renders/x")):
        error = response.json()["error"]
        assert GENERATED_REQUEST_ID.fullmatch(response["X-Request-Id"])
        assert error["requestId"] == response["X-Request-Id"]


def test_each_request_gets_its_own_generated_request_id(api):
    assert api.get("/v1/renders")["X-Request-Id"] != api.get("/v1/renders")["X-Request-Id"]


@pytest.mark.parametrize("supplied", ["abc-123", "req_1.2:3", "A" * 128, "0"])
def test_a_well_formed_caller_request_id_is_echoed(db, supplied):
    response = APIClient().get("/v1/renders", HTTP_X_REQUEST_ID=supplied)
    assert response["X-Request-Id"] == supplied
    assert_envelope(response, 401, "unauthorized", UNAUTHORIZED)


@pytest.mark.parametrize("supplied", ["A" * 129, "has space", "semi;colon", "<script>", "abc\n", "ünï", "a/b", ""])
def test_a_malformed_caller_request_id_is_replaced_by_a_generated_one(db, supplied):
    response = APIClient().get("/v1/renders", HTTP_X_REQUEST_ID=supplied)
    assert GENERATED_REQUEST_ID.fullmatch(response["X-Request-Id"])
    assert_envelope(response, 401, "unauthorized", UNAUTHORIZED)


# Views that cannot open a door -----------------------------------------------------------

handled = []


class ScopelessView(ProjectScopedAPIView):
    def get(self, request):
        handled.append(request)
        return Response({"opened": True})


class HalfDeclaredView(ProjectScopedAPIView):
    required_scopes = {"GET": Scope.RENDERS_READ}

    def get(self, request):
        return Response({"read": True})

    def post(self, request):
        handled.append(request)
        return Response({"written": True})


def _call(view_class, method, raw_key):
    request = getattr(APIRequestFactory(), method)("/v1/direct", HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    with mock.patch("engagement_platform.errors.log_unexpected") as logged:
        response = view_class.as_view()(request)
    return response, logged


def test_a_view_declaring_no_scopes_fails_closed_with_improperly_configured(project, make_key):
    handled.clear()
    with pytest.raises(ImproperlyConfigured, match="ScopelessView declares no required_scopes"):
        required_scope_for(ScopelessView(), "GET")
    response, logged = _call(ScopelessView, "get", make_key(project).raw_key)
    assert response.status_code == 500
    assert response.data["error"]["code"] == "internal_error"
    assert handled == []
    assert isinstance(logged.call_args.args[0], ImproperlyConfigured)


def test_a_method_without_a_declared_scope_fails_closed(project, make_key):
    handled.clear()
    raw_key = make_key(project).raw_key
    assert _call(HalfDeclaredView, "get", raw_key)[0].status_code == 200
    response, logged = _call(HalfDeclaredView, "post", raw_key)
    assert response.status_code == 500
    assert handled == []
    assert isinstance(logged.call_args.args[0], ImproperlyConfigured)


def test_a_scoped_view_that_overrides_get_queryset_is_refused_at_class_creation():
    with pytest.raises(TypeError, match="must not override get_queryset"):

        class LeakyView(ProjectScopedAPIView):
            required_scopes = {"GET": Scope.RENDERS_READ}

            def get_queryset(self):
                return Render.objects.all()
