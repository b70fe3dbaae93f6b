"""Contract section 0: X-RateLimit-Limit, -Remaining and -Reset on every response to a request whose key
authenticated (scope 403s and 429s included), none on a 401; and the one-minute windows they describe
(engagement_platform.ratelimit)."""

import uuid
from datetime import UTC, datetime

import pytest

from apikeys.models import Scope
from engagement_platform import ratelimit
from engagement_platform.ratelimit import RateLimitUnavailable, WindowDecision, count_in_window, window_state
from tests.rediscache import delete_own_keys, redis_cache_settings, redis_url_or_skip
from tests.test_secrets import DEAD_REDIS

# The conftest clock stands at 2026-05-03T10:20:00Z: its window ends at 10:21:00Z.
WINDOW_END = int(datetime(2026, 5, 3, 10, 21, tzinfo=UTC).timestamp())
HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")

# (path, the scope it needs, a scope that is not it), one GET route per surface.
ROUTES = {
    "render side": ("/v1/renders", Scope.RENDERS_READ, Scope.REPORTS_VIEW),
    "reports": ("/v1/reports/engagement", Scope.REPORTS_VIEW, Scope.RENDERS_READ),
}


def rate_headers(response) -> tuple[int, int, int]:
    return tuple(int(response[name]) for name in HEADERS)


@pytest.fixture(params=["per-process", "redis"])
def any_cache(request, settings):
    if request.param == "redis":
        own = settings.CACHES = redis_cache_settings(redis_url_or_skip())
        yield request.param
        delete_own_keys(own)
    else:
        yield request.param


@pytest.mark.parametrize("surface", ROUTES)
def test_a_keyed_response_carries_the_window_limit_remaining_and_reset(any_cache, surface, make_project, make_key,
                                                                       make_client, clock):
    path, _, _ = ROUTES[surface]
    client = make_client(make_key(make_project(rate_limit_per_minute=3)).raw_key)
    responses = [client.get(path) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [rate_headers(r) for r in responses] == [(3, 2, WINDOW_END), (3, 1, WINDOW_END), (3, 0, WINDOW_END),
                                                    (3, 0, WINDOW_END)]
    assert responses[3]["Retry-After"] == "60"


@pytest.mark.parametrize("surface", ROUTES)
def test_a_scope_403_carries_the_headers_and_is_not_counted(any_cache, surface, make_project, make_key, make_client,
                                                           clock):
    path, needed, other = ROUTES[surface]
    project = make_project(rate_limit_per_minute=5)
    full, lacking = make_client(make_key(project).raw_key), make_client(make_key(project, scopes=[other]).raw_key)
    assert rate_headers(full.get(path)) == (5, 4, WINDOW_END)
    refused = lacking.get(path)
    assert refused.status_code == 403
    assert rate_headers(refused) == (5, 4, WINDOW_END)  # what is left: the refusal was not counted
    assert rate_headers(full.get(path)) == (5, 3, WINDOW_END)


def test_a_message_ingestion_response_carries_the_headers(make_project, make_key, make_client, clock):
    project = make_project(rate_limit_per_minute=10)
    writer = make_client(make_key(project, scopes=[Scope.MESSAGES_WRITE]).raw_key)
    reader = make_client(make_key(project, scopes=[Scope.REPORTS_VIEW]).raw_key)
    response = writer.post("/v1/messages/events", data=b"{}", content_type="application/json")
    assert response.status_code < 500 and response.status_code != 401
    assert rate_headers(response) == (10, 9, WINDOW_END)
    refused = reader.post("/v1/messages/events", data=b"{}", content_type="application/json")
    assert refused.status_code == 403 and refused["Content-Type"] == "application/problem+json"
    assert rate_headers(refused) == (10, 9, WINDOW_END)


def test_a_route_error_after_the_key_checks_carries_the_headers(project, make_key, make_client, clock):
    response = make_client(make_key(project).raw_key).get(f"/v1/renders/{uuid.uuid4()}")
    assert response.status_code == 404
    assert rate_headers(response) == (600, 599, WINDOW_END)


@pytest.mark.parametrize("path", ["/v1/renders", "/v1/reports/engagement", "/v1/messages/events"])
def test_a_401_carries_no_rate_limit_headers(path, project, make_key, make_client):
    for client in (make_client(), make_client("ck_live_" + "A" * 43)):
        response = client.get(path)
        assert response.status_code == 401
        assert not any(name in response for name in HEADERS)


def test_a_deleted_projects_403_carries_no_rate_limit_headers(project, make_key, make_client):
    client = make_client(make_key(project).raw_key)
    project.deleted_at = project.created_at
    project.save()
    response = client.get("/v1/renders")
    assert response.status_code == 403
    assert not any(name in response for name in HEADERS)


# The window machinery ----------------------------------------------------------------------------


def test_a_window_is_one_utc_minute_and_resets_at_its_end():
    at = datetime(2026, 5, 3, 10, 20, 59, 500000, tzinfo=UTC).timestamp()
    window = ratelimit.window_of(at)
    assert ratelimit.window_reset(window) == WINDOW_END
    assert ratelimit.retry_after(window, at) == 1  # never 0
    assert ratelimit.window_of(WINDOW_END) == window + 1


@pytest.mark.parametrize("cache_kind", ["per-process", "redis"])
def test_count_in_window_counts_and_refuses_past_the_limit(cache_kind, settings, db):
    if cache_kind == "redis":
        own = settings.CACHES = redis_cache_settings(redis_url_or_skip())
    key, at = f"test:{uuid.uuid4().hex}", datetime(2026, 5, 3, 10, 20, 15, tzinfo=UTC).timestamp()
    try:
        decisions = [count_in_window(key=key, limit=2, at=at) for _ in range(3)]
        assert decisions == [WindowDecision(limit=2, remaining=1, reset=WINDOW_END, retry_after=None),
                             WindowDecision(limit=2, remaining=0, reset=WINDOW_END, retry_after=None),
                             WindowDecision(limit=2, remaining=0, reset=WINDOW_END, retry_after=45)]
        assert [d.allowed for d in decisions] == [True, True, False]
        assert window_state(key=key, limit=2, at=at) == WindowDecision(limit=2, remaining=0, reset=WINDOW_END,
                                                                       retry_after=None)
        next_minute = count_in_window(key=key, limit=2, at=WINDOW_END + 1)
        assert next_minute.remaining == 1 and next_minute.reset == WINDOW_END + 60
    finally:
        if cache_kind == "redis":
            delete_own_keys(own)


def test_count_in_window_raises_rate_limit_unavailable_when_the_cache_is_down(settings):
    settings.CACHES = DEAD_REDIS
    with pytest.raises(RateLimitUnavailable):
        count_in_window(key="test:down", limit=1)
