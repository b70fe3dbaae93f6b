"""The worker's verified keys (apikeys.keycache): no database read for a known key, and never a stale
answer: a change made anywhere applies from the next request in every worker (CONTRACT section 1)."""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apikeys.keycache import EPOCH_KEY, new_epoch
from apikeys.models import ALL_SCOPES, ApiKey, Project, Scope
from apikeys.services import apikey_issue, apikey_revoke, project_create, project_soft_delete
from engagement_platform.clock import now
from reliability.servers import Gunicorn, base_env, database_url_of, manage
from tests.test_secrets import DEAD_REDIS, _redis_url


def engagement_url(render) -> str:
    return f"/v1/renders/{render.id}/engagement"


def changed_elsewhere() -> None:
    """What another process's change leaves behind here: a new epoch in the shared cache, nothing local."""
    cache.set(EPOCH_KEY, new_epoch(), timeout=None)


def key_queries(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if ApiKey._meta.db_table in q["sql"]]


# One process (the tests' per-process cache stands in for the shared one) -----------------------


def test_a_known_key_is_not_read_from_the_database_again(project, make_key, make_client, render):
    client = make_client(make_key(project).raw_key)
    with CaptureQueriesContext(connection) as first:
        assert client.get(engagement_url(render)).status_code == 200
    assert len(key_queries(first)) == 2  # the key with its project, and last_used_at
    with CaptureQueriesContext(connection) as second:
        assert client.get(engagement_url(render)).status_code == 200
    assert key_queries(second) == []


def test_a_key_revoked_by_another_process_is_refused_on_the_next_request(project, make_key, make_client, render):
    issued = make_key(project)
    client = make_client(issued.raw_key)
    assert client.get(engagement_url(render)).status_code == 200
    ApiKey.objects.filter(pk=issued.key.pk).update(revoked_at=now())
    changed_elsewhere()
    assert client.get(engagement_url(render)).status_code == 401


def test_a_project_deleted_by_another_process_is_forbidden_on_the_next_request(project, make_key, make_client,
                                                                                render):
    client = make_client(make_key(project).raw_key)
    assert client.get(engagement_url(render)).status_code == 200
    Project.objects.filter(pk=project.pk).update(deleted_at=now())
    changed_elsewhere()
    response = client.get(engagement_url(render))
    assert response.status_code == 403 and "deleted" in response.json()["error"]["message"]


def test_a_plan_change_applies_from_the_next_request(project, make_key, make_client, render):
    client = make_client(make_key(project).raw_key)
    assert client.get(engagement_url(render)).status_code == 200
    assert client.get(engagement_url(render)).status_code == 200
    project.rate_limit_per_minute = 2
    project.save()  # the admin's form does this: its signal moves the epoch
    assert client.get(engagement_url(render)).status_code == 429


def test_a_scope_removed_is_refused_on_the_next_request(project, make_key, make_client, render):
    issued = make_key(project)
    client = make_client(issued.raw_key)
    assert client.get(engagement_url(render)).status_code == 200
    issued.key.scopes = [Scope.REPORTS_VIEW]
    issued.key.save()
    assert client.get(engagement_url(render)).status_code == 403


def test_a_refusal_is_confirmed_in_the_database_not_taken_from_the_cache(project, make_key, make_client, render,
                                                                         clock):
    """A cached key that would be refused (missing scope, expired) is read again before the 403 or 401."""
    issued = make_key(project, scopes=[Scope.REPORTS_VIEW], expires_in_days=1)
    client = make_client(issued.raw_key)
    assert client.get(engagement_url(render)).status_code == 403
    ApiKey.objects.filter(pk=issued.key.pk).update(scopes=ALL_SCOPES)  # no signal, no epoch change
    assert client.get(engagement_url(render)).status_code == 200
    clock.shift(timedelta(days=2))
    assert client.get(engagement_url(render)).status_code == 401
    ApiKey.objects.filter(pk=issued.key.pk).update(expires_at=now() + timedelta(days=1))
    assert client.get(engagement_url(render)).status_code == 200


def test_an_emptied_shared_cache_makes_every_cached_key_read_again(project, make_key, make_client, render):
    issued = make_key(project)
    client = make_client(issued.raw_key)
    assert client.get(engagement_url(render)).status_code == 200
    ApiKey.objects.filter(pk=issued.key.pk).update(revoked_at=now())
    cache.clear()  # a Redis restart or flush loses the epoch: a new one is drawn, unlike any cached
    assert client.get(engagement_url(render)).status_code == 401


def test_refused_requests_do_not_count_against_the_rate_limit(make_project, make_key, make_client, render, clock):
    limited = make_project(rate_limit_per_minute=2)
    revoked = make_key(limited)
    apikey_revoke(key=revoked.key)
    for client in (make_client(make_key(limited, scopes=[Scope.REPORTS_VIEW]).raw_key), make_client(revoked.raw_key)):
        for _ in range(3):
            assert client.get("/v1/renders").status_code in (401, 403)
    full = make_client(make_key(limited).raw_key)
    assert [full.get("/v1/renders").status_code for _ in range(3)] == [200, 200, 429]


def test_a_request_whose_cached_key_went_stale_is_counted_once(make_project, make_key, make_client, clock):
    client = make_client(make_key(make_project(rate_limit_per_minute=3)).raw_key)
    assert client.get("/v1/renders").status_code == 200
    changed_elsewhere()
    assert client.get("/v1/renders").status_code == 200  # re-read from the database, then counted (2)
    changed_elsewhere()
    assert client.get("/v1/renders").status_code == 200  # 3
    assert client.get("/v1/renders").status_code == 429


# The shared cache unreachable: the database answers for every key ------------------------------


def test_with_the_cache_down_a_key_revoked_meanwhile_is_refused(project, make_key, make_client, render, settings):
    issued = make_key(project)
    client = make_client(issued.raw_key)
    assert client.get(engagement_url(render)).status_code == 200
    ApiKey.objects.filter(pk=issued.key.pk).update(revoked_at=now())  # its epoch change lost with the cache
    settings.CACHES = DEAD_REDIS
    settings.RATE_LIMIT_FAIL_OPEN = True
    assert client.get(engagement_url(render)).status_code == 401


def test_with_the_cache_down_and_failing_closed_a_bad_key_is_still_a_401_not_a_503(project, make_key, make_client,
                                                                                   render, settings):
    good, revoked = make_key(project), make_key(project)
    good_client, revoked_client = make_client(good.raw_key), make_client(revoked.raw_key)
    assert revoked_client.get(engagement_url(render)).status_code == 200
    ApiKey.objects.filter(pk=revoked.key.pk).update(revoked_at=now())
    settings.CACHES = DEAD_REDIS
    settings.RATE_LIMIT_FAIL_OPEN = False
    assert revoked_client.get(engagement_url(render)).status_code == 401
    assert good_client.get(engagement_url(render)).status_code == 503


# Two gunicorn workers on Redis: a change made in another process ------------------------------


def _get_all(url: str, raw_key: str, count: int) -> list[int]:
    """`count` requests, four at a time on fresh connections: a busy worker leaves the next ones to the
    other, so both serve some (one after another, the same worker may win every accept)."""
    def get(_):
        return requests.get(url, headers={"Authorization": f"Bearer {raw_key}"}, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(get, range(count)))


@pytest.mark.django_db(transaction=True)
def test_a_change_in_another_process_applies_to_every_worker_on_its_next_request(settings, tmp_path):
    redis_url = _redis_url()
    if redis_url is None:
        pytest.skip("needs a Redis server (TEST_REDIS_URL or redis://127.0.0.1:6379/15)")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}}
    env = base_env(DATABASE_URL=database_url_of(connection.settings_dict), CACHE_URL=redis_url,
                   RATE_LIMIT_FAIL_OPEN="0", MEDIA_ROOT=str(tmp_path))
    server = Gunicorn(env, workers=2, threads=1, access_log=True)
    server.start()
    try:
        suffix = uuid.uuid4().hex[:8]
        revoked_project = project_create(name=f"revoked-{suffix}")
        deleted_project = project_create(name=f"deleted-{suffix}")
        planned_project = project_create(name=f"planned-{suffix}", rate_limit_per_minute=600)
        revoked, deleted, planned = (apikey_issue(project=p) for p in (revoked_project, deleted_project,
                                                                       planned_project))
        url = server.base_url + "/v1/renders"
        warm = {name: _get_all(url, issued.raw_key, 8)
                for name, issued in (("revoked", revoked), ("deleted", deleted), ("planned", planned))}
        assert all(status == 200 for statuses in warm.values() for status in statuses), warm
        pids = {line.split()[0] for line in server.read_log().splitlines()
                if line.startswith("pid=") and '"GET /v1/renders' in line}  # not the readiness probes
        assert len(pids) == 2, f"every key should be cached by both workers, saw {pids}"

        # Revoked by the operator's command: its own process, on the same database and Redis.
        manage("revokeapikey", revoked.key.prefix, env=env)
        assert _get_all(url, revoked.raw_key, 8) == [401] * 8

        project_soft_delete(project=deleted_project)
        assert _get_all(url, deleted.raw_key, 8) == [403] * 8

        started = time.time()
        planned_project.rate_limit_per_minute = 10  # 8 already counted this minute
        planned_project.save()
        statuses = _get_all(url, planned.raw_key, 4)
        if int(started // 60) == int(time.time() // 60):  # a new minute would restart the count
            assert sorted(statuses) == [200, 200, 429, 429]
    finally:
        server.cleanup()


def test_the_count_script_is_loaded_again_after_the_server_forgot_it(settings):
    redis_url = _redis_url()
    if redis_url is None:
        pytest.skip("needs a Redis server (TEST_REDIS_URL or redis://127.0.0.1:6379/15)")
    import redis

    from apikeys.keycache import count_request

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}}
    counter = f"test-counter:{uuid.uuid4().hex}"
    epoch, first = count_request(counter_key=counter, ttl=60, expected_epoch=None)
    redis.Redis.from_url(redis_url).script_flush()
    assert count_request(counter_key=counter, ttl=60, expected_epoch=epoch) == (epoch, first + 1)
    assert count_request(counter_key=counter, ttl=60, expected_epoch=epoch + 1) == (epoch, None)  # stale: not counted
    assert count_request(counter_key=counter, ttl=60, expected_epoch=None) == (epoch, first + 2)
    assert 0 < redis.Redis.from_url(redis_url).ttl(cache.make_key(counter)) <= 60


def test_the_count_goes_through_when_its_kept_connection_was_closed_by_the_server(settings):
    redis_url = _redis_url()
    if redis_url is None:
        pytest.skip("needs a Redis server (TEST_REDIS_URL or redis://127.0.0.1:6379/15)")
    import redis
    from django.core.cache import caches

    from apikeys.keycache import count_request

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}}
    counter = f"test-counter:{uuid.uuid4().hex}"
    epoch, first = count_request(counter_key=counter, ttl=60, expected_epoch=None)
    kept = caches["default"]._kept_connection.connection
    kept.send_command("CLIENT", "ID")
    redis.Redis.from_url(redis_url).client_kill_filter(_id=kept.read_response())  # as a server restart would
    assert count_request(counter_key=counter, ttl=60, expected_epoch=epoch) == (epoch, first + 1)
