"""Key resolution and the verified keys a worker keeps (apikeys.resolution, apikeys.keycache).

Contract section 1: a revocation, expiry, project soft delete, scope or plan change applies from the very
next request in every server process, whatever the cache configuration. With Redis a worker keeps the keys
it verified and one round trip per request confirms the shared keys epoch did not move; without a shared
cache nothing about a key is kept in a process: every request reads it from the database.
"""

import uuid
from datetime import timedelta

import pytest
import requests
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apikeys.keycache import EPOCH_KEY, count_request, local_keys, new_epoch
from apikeys.models import ALL_SCOPES, ApiKey, Project, Scope
from apikeys.services import apikey_issue, apikey_revoke, apikey_update, project_create, project_update
from engagement_platform import ratelimit
from engagement_platform.clock import now
from reliability.servers import Gunicorn, ThrowawayRedis, base_env, database_url_of, manage
from tests.rediscache import redis_cache_settings, redis_url_or_skip
from tests.test_secrets import DEAD_REDIS

RENDERS = "/v1/renders"


def engagement_url(render) -> str:
    return f"/v1/renders/{render.id}/engagement"


def key_queries(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if ApiKey._meta.db_table in q["sql"]]


def changed_elsewhere() -> None:
    """What another process's change leaves behind here: a new epoch in the shared cache, nothing local."""
    caches["default"].set(EPOCH_KEY, new_epoch(), timeout=None)


# Without a shared cache: nothing kept, every request reads the key ------------------------------


def test_without_a_shared_cache_every_request_reads_the_key_from_the_database(project, make_key, make_client,
                                                                              render):
    client = make_client(make_key(project).raw_key)
    for _ in range(3):
        with CaptureQueriesContext(connection) as queries:
            assert client.get(engagement_url(render)).status_code == 200
        assert len([sql for sql in key_queries(queries) if sql.lstrip().upper().startswith("SELECT")]) == 1
    assert local_keys.get(ApiKey.objects.get().key_hash) is None


def test_without_a_shared_cache_a_change_made_by_sql_applies_on_the_next_request(project, make_key, make_client,
                                                                                 render):
    """No service, no epoch: the database read of every request is what makes the change visible."""
    issued = make_key(project)
    client = make_client(issued.raw_key)
    assert client.get(engagement_url(render)).status_code == 200
    ApiKey.objects.filter(pk=issued.key.pk).update(scopes=[Scope.REPORTS_VIEW])
    assert client.get(engagement_url(render)).status_code == 403
    ApiKey.objects.filter(pk=issued.key.pk).update(scopes=ALL_SCOPES, revoked_at=now())
    assert client.get(engagement_url(render)).status_code == 401


def test_without_a_shared_cache_a_plan_change_by_sql_applies_on_the_next_request(make_project, make_key,
                                                                                 make_client, clock):
    limited = make_project(rate_limit_per_minute=600)
    client = make_client(make_key(limited).raw_key)
    assert [client.get(RENDERS).status_code for _ in range(2)] == [200, 200]
    Project.objects.filter(pk=limited.pk).update(rate_limit_per_minute=2)
    assert client.get(RENDERS).status_code == 429


# With a shared cache (Redis): kept keys, checked by the epoch on every request ------------------


def test_a_known_key_is_not_read_from_the_database_again(shared_cache, project, make_key, make_client, render):
    client = make_client(make_key(project).raw_key)
    with CaptureQueriesContext(connection) as first:
        assert client.get(engagement_url(render)).status_code == 200
    assert len(key_queries(first)) == 2  # the key with its project, and last_used_at
    with CaptureQueriesContext(connection) as second:
        assert client.get(engagement_url(render)).status_code == 200
    assert key_queries(second) == []


def test_a_key_revoked_by_another_process_is_refused_on_the_next_request(shared_cache, project, make_key,
                                                                         make_client, render):
    issued = make_key(project)
    client = make_client(issued.raw_key)
    assert client.get(engagement_url(render)).status_code == 200
    ApiKey.objects.filter(pk=issued.key.pk).update(revoked_at=now())
    changed_elsewhere()
    assert client.get(engagement_url(render)).status_code == 401


def test_a_project_deleted_by_another_process_is_forbidden_on_the_next_request(shared_cache, project, make_key,
                                                                                make_client, render):
    client = make_client(make_key(project).raw_key)
    assert client.get(engagement_url(render)).status_code == 200
    Project.objects.filter(pk=project.pk).update(deleted_at=now())
    changed_elsewhere()
    response = client.get(engagement_url(render))
    assert response.status_code == 403 and "deleted" in response.json()["error"]["message"]


def test_a_plan_change_through_the_service_applies_from_the_next_request(shared_cache, project, make_key,
                                                                         make_client, render):
    client = make_client(make_key(project).raw_key)
    assert client.get(engagement_url(render)).status_code == 200
    assert client.get(engagement_url(render)).status_code == 200
    project_update(project=project, rate_limit_per_minute=2)
    assert client.get(engagement_url(render)).status_code == 429


def test_a_scope_removed_through_the_service_is_refused_on_the_next_request(shared_cache, project, make_key,
                                                                            make_client, render):
    issued = make_key(project)
    client = make_client(issued.raw_key)
    assert client.get(engagement_url(render)).status_code == 200
    apikey_update(key=issued.key, scopes=[Scope.REPORTS_VIEW])
    assert client.get(engagement_url(render)).status_code == 403


def test_an_expiry_set_through_the_service_applies_from_the_next_request(shared_cache, project, make_key,
                                                                         make_client, render):
    issued = make_key(project)
    client = make_client(issued.raw_key)
    assert client.get(engagement_url(render)).status_code == 200
    apikey_update(key=issued.key, expires_at=now() - timedelta(seconds=1))
    assert client.get(engagement_url(render)).status_code == 401


def test_a_refusal_is_confirmed_in_the_database_not_taken_from_the_cache(shared_cache, project, make_key,
                                                                         make_client, render, clock):
    """A kept key that would be refused (missing scope, expired) is read again before the 403 or 401."""
    issued = make_key(project, scopes=[Scope.REPORTS_VIEW], expires_in_days=1)
    client = make_client(issued.raw_key)
    assert client.get(engagement_url(render)).status_code == 403
    ApiKey.objects.filter(pk=issued.key.pk).update(scopes=ALL_SCOPES)  # no service, no epoch change
    assert client.get(engagement_url(render)).status_code == 200
    clock.shift(timedelta(days=2))
    assert client.get(engagement_url(render)).status_code == 401
    ApiKey.objects.filter(pk=issued.key.pk).update(expires_at=now() + timedelta(days=1))
    assert client.get(engagement_url(render)).status_code == 200


def test_a_lost_epoch_makes_every_kept_key_read_again(shared_cache, project, make_key, make_client, render):
    issued = make_key(project)
    client = make_client(issued.raw_key)
    assert client.get(engagement_url(render)).status_code == 200
    ApiKey.objects.filter(pk=issued.key.pk).update(revoked_at=now())
    caches["default"].delete(EPOCH_KEY)  # a Redis restart or flush loses the epoch: a new one is drawn
    assert client.get(engagement_url(render)).status_code == 401


@pytest.mark.parametrize("cache_kind", ["per-process", "redis"])
def test_refused_requests_do_not_count_against_the_rate_limit(request, cache_kind, make_project, make_key,
                                                              make_client, clock):
    if cache_kind == "redis":
        request.getfixturevalue("shared_cache")
    limited = make_project(rate_limit_per_minute=2)
    revoked = make_key(limited)
    apikey_revoke(key=revoked.key)
    for client in (make_client(make_key(limited, scopes=[Scope.REPORTS_VIEW]).raw_key), make_client(revoked.raw_key)):
        for _ in range(3):
            assert client.get(RENDERS).status_code in (401, 403)
    full = make_client(make_key(limited).raw_key)
    assert [full.get(RENDERS).status_code for _ in range(3)] == [200, 200, 429]


def test_a_request_whose_kept_key_went_stale_is_counted_once(shared_cache, make_project, make_key, make_client,
                                                             clock):
    client = make_client(make_key(make_project(rate_limit_per_minute=3)).raw_key)
    assert client.get(RENDERS).status_code == 200
    changed_elsewhere()
    assert client.get(RENDERS).status_code == 200  # read again from the database, then counted (2)
    changed_elsewhere()
    assert client.get(RENDERS).status_code == 200  # 3
    assert client.get(RENDERS).status_code == 429


# Redis unreachable: the database answers for every key -------------------------------------------


def test_with_the_cache_down_a_key_revoked_meanwhile_is_refused(shared_cache, project, make_key, make_client,
                                                                render, settings):
    issued = make_key(project)
    client = make_client(issued.raw_key)
    assert client.get(engagement_url(render)).status_code == 200
    ApiKey.objects.filter(pk=issued.key.pk).update(revoked_at=now())  # its epoch change lost with the cache
    settings.CACHES = DEAD_REDIS
    settings.RATE_LIMIT_FAIL_OPEN = True
    assert client.get(engagement_url(render)).status_code == 401


def test_with_the_cache_down_and_failing_closed_a_bad_key_is_still_a_401_not_a_503(shared_cache, project,
                                                                                   make_key, make_client,
                                                                                   render, settings):
    good, revoked = make_key(project), make_key(project)
    good_client, revoked_client = make_client(good.raw_key), make_client(revoked.raw_key)
    assert revoked_client.get(engagement_url(render)).status_code == 200
    ApiKey.objects.filter(pk=revoked.key.pk).update(revoked_at=now())
    settings.CACHES = DEAD_REDIS
    settings.RATE_LIMIT_FAIL_OPEN = False
    assert revoked_client.get(engagement_url(render)).status_code == 401
    assert good_client.get(engagement_url(render)).status_code == 503


# The count script on a Redis server of the test's own --------------------------------------------


@pytest.fixture
def own_redis(settings):
    """A throwaway redis-server started for this test: its script cache may be flushed freely."""
    server = ThrowawayRedis()
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        pytest.skip(f"needs redis-server to start a private Redis: {exc}")
    settings.CACHES = redis_cache_settings(server.url)
    try:
        yield server
    finally:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        server.stop()


def test_the_count_script_is_loaded_by_a_new_server_and_again_after_it_forgot_it(own_redis):
    import redis

    counter = ratelimit.counter_key(f"test:{uuid.uuid4().hex}", ratelimit.window_of(now().timestamp()))
    client = redis.Redis.from_url(own_redis.url)
    epoch = 7
    client.set(caches["default"].make_key(EPOCH_KEY), epoch)
    assert count_request(counter_key=counter, expected_epoch=epoch) == (epoch, 1)  # NOSCRIPT: sent as EVAL
    client.script_flush()  # this server is the test's own
    assert count_request(counter_key=counter, expected_epoch=epoch) == (epoch, 2)
    assert count_request(counter_key=counter, expected_epoch=epoch + 1) == (epoch, None)  # stale: not counted
    assert count_request(counter_key=counter, expected_epoch=epoch) == (epoch, 3)
    assert 0 < client.ttl(caches["default"].make_key(counter)) <= ratelimit.COUNTER_TTL_SECONDS


def test_the_count_creates_a_missing_epoch_and_counts_nothing_against_it(own_redis):
    counter = ratelimit.counter_key(f"test:{uuid.uuid4().hex}", 1)
    epoch, count = count_request(counter_key=counter, expected_epoch=1)
    assert count is None and epoch != 1  # a fresh epoch, unlike any kept key's
    assert count_request(counter_key=counter, expected_epoch=epoch) == (epoch, 1)


def test_the_count_goes_through_when_its_kept_connection_was_closed_by_the_server(own_redis):
    import redis

    counter = ratelimit.counter_key(f"test:{uuid.uuid4().hex}", 1)
    epoch, _ = count_request(counter_key=counter, expected_epoch=0)
    assert count_request(counter_key=counter, expected_epoch=epoch) == (epoch, 1)
    kept = caches["default"]._kept_connection.connection
    kept.send_command("CLIENT", "ID")
    redis.Redis.from_url(own_redis.url).client_kill_filter(_id=kept.read_response())  # as a server restart would
    assert count_request(counter_key=counter, expected_epoch=epoch) == (epoch, 2)


# Two server processes: a change made in a third applies on the next request to each -------------


def _status(server: Gunicorn, path: str, raw_key: str) -> int:
    return requests.get(server.base_url + path, headers={"Authorization": f"Bearer {raw_key}"},
                        timeout=30).status_code


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("cache_kind", ["per-process", "redis"])
def test_a_change_made_in_another_process_applies_on_the_next_request_to_every_server(cache_kind, settings,
                                                                                      tmp_path):
    """Two servers (one process each) on one database; the changes come from a third process or the database."""
    extra = {}
    if cache_kind == "redis":
        redis_url = redis_url_or_skip()
        # The servers' cache has no key prefix: the test process shares their keys epoch.
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                       "LOCATION": redis_url}}
        extra["CACHE_URL"] = redis_url
    env = base_env(DATABASE_URL=database_url_of(connection.settings_dict), RATE_LIMIT_FAIL_OPEN="0",
                   MEDIA_ROOT=str(tmp_path), SECRET_KEY=uuid.uuid4().hex * 2, **extra)
    servers = [Gunicorn(env, workers=1, threads=1), Gunicorn(env, workers=1, threads=1)]
    try:
        for server in servers:
            server.start()
        suffix = uuid.uuid4().hex[:8]
        revoked_project, deleted_project, scoped_project = (
            project_create(name=f"{name}-{suffix}") for name in ("revoked", "deleted", "scoped"))
        revoked, deleted, scoped = (apikey_issue(project=p) for p in (revoked_project, deleted_project,
                                                                      scoped_project))
        for issued in (revoked, deleted, scoped):
            assert [_status(server, RENDERS, issued.raw_key) for server in servers] == [200, 200]

        manage("revokeapikey", revoked.key.prefix, env=env)
        assert [_status(server, RENDERS, revoked.raw_key) for server in servers] == [401, 401]

        manage("deleteproject", str(deleted_project.pk), env=env)
        assert [_status(server, RENDERS, deleted.raw_key) for server in servers] == [403, 403]

        if cache_kind == "redis":  # a kept key is told by the epoch the service moves
            apikey_update(key=scoped.key, scopes=[Scope.REPORTS_VIEW])
        else:  # nothing is kept: a change made in the database alone is seen
            ApiKey.objects.filter(pk=scoped.key.pk).update(scopes=[Scope.REPORTS_VIEW])
        assert [_status(server, RENDERS, scoped.raw_key) for server in servers] == [403, 403]
        assert [_status(server, "/v1/reports/engagement", scoped.raw_key) for server in servers] == [200, 200]
    finally:
        for server in servers:
            server.cleanup()
