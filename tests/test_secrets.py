"""Keys and secrets: raw keys are never stored or logged, compared in constant time, and rate limits hold
across worker processes (CONTRACT section 1)."""

import hashlib
import hmac
import io
import logging
import os
import threading
import time
import uuid
from unittest import mock

import pytest
import requests
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apikeys.models import ApiKey, hash_key
from apikeys.services import apikey_issue, project_create, project_soft_delete
from engagement_platform.logging import JsonFormatter
from reliability.servers import Gunicorn, base_env, database_url_of
from tests import test_tenant_matrix
from tests.routewalk import api_operations, token_routes
from tests.test_tenant_matrix import MATRIX, PARAMS, TOKEN_MATRIX, send

pytestmark = pytest.mark.django_db
world = test_tenant_matrix.world  # the two-tenant fixture

SHARE_TOKEN_COLUMNS = {("renders_share", "token")}


def all_text_in_database() -> list[tuple[str, str, str]]:
    """(table, column, value) for every non-null value of every column of every table, as text."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT * FROM {quoted}")  # noqa: S608 - table names come from introspection
            columns = [col[0] for col in cursor.description]
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    if value is not None:
                        text = bytes(value).decode("latin-1") if isinstance(value, (bytes, memoryview)) else str(value)
                        found.append((table, column, text))
    return found


@pytest.fixture
def capture_logs():
    """Every log record of the run at the configured levels, formatted as the servers format them (JSON,
    tracebacks included)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(name) for name in ("", "engagement_platform", "django", "django.request",
                                                    "django.server", "django.db.backends")]
    for lg in loggers:
        lg.addHandler(handler)
    yield stream
    for lg in loggers:
        lg.removeHandler(handler)


def exercise_every_route(world, make_client, make_key):
    """One request per operation with the owner's key, and failing ones: wrong scope, foreign ids, bad bodies,
    an unknown key that shares the real key's prefix, and every public token route."""
    client_a = make_client(world.a.raw_key)
    for route, method in api_operations():
        op = MATRIX[route.pattern][method]
        own = route.path(**{p: PARAMS[p](world.a) for p in route.params})
        send(client_a, method, own, op, world)
        send(make_client(world.a.raw_key[:-4] + "AAAA"), method, own, op, world)  # unknown, same prefix
        send(make_client(world.b.raw_key), method, own, op, world)  # foreign ids
        client_a.generic(method, own, b"{not json", content_type="application/json")
    for route in token_routes():
        method, _ = TOKEN_MATRIX.get(route.pattern, ("GET", 200))
        make_client().generic(method, route.path(token=world.a.share.token, number=1))


def test_raw_keys_and_share_tokens_are_stored_nowhere(world, make_client, make_key):
    exercise_every_route(world, make_client, make_key)
    rows = all_text_in_database()
    assert rows, "the scan read nothing"
    raw_keys = [world.a.raw_key, world.b.raw_key]
    hashes_seen = {value for table, column, value in rows if column == "key_hash"}
    assert {hash_key(k) for k in raw_keys} <= hashes_seen  # the scan does see the key table
    leaks = [(t, c) for t, c, v in rows for k in raw_keys if k in v or k[8:] in v]
    assert leaks == [], f"raw keys stored in {leaks}"
    tokens = [world.a.share.token, world.b.share.token]
    token_leaks = [(t, c) for t, c, v in rows for tok in tokens if tok in v and (t, c) not in SHARE_TOKEN_COLUMNS]
    assert token_leaks == [], f"share tokens stored outside the share table: {token_leaks}"


def test_raw_keys_and_share_tokens_never_reach_a_log_line(world, make_client, make_key, capture_logs, settings):
    settings.DEBUG_PROPAGATE_EXCEPTIONS = False
    exercise_every_route(world, make_client, make_key)
    # An unexpected failure on a keyed request logs a traceback: it must not carry the key either.
    with mock.patch("renders.api.views.engagement_summary_body", side_effect=RuntimeError("boom")):
        failed = make_client(world.a.raw_key).get(f"/v1/renders/{world.a.render.id}/engagement")
    assert failed.status_code == 500
    output = capture_logs.getvalue()
    assert '"status": 401' in output and "unhandled exception" in output and "Traceback" in output
    for secret in (world.a.raw_key, world.b.raw_key, world.a.share.token, world.b.share.token):
        assert secret not in output
        assert secret[8:24] not in output  # not even a slice past the public prefix


def test_key_is_found_by_its_hash_and_compared_in_constant_time(project, make_key, make_client, render):
    issued = make_key(project)
    real = hmac.compare_digest
    with mock.patch("hmac.compare_digest", wraps=real) as spy, CaptureQueriesContext(connection) as queries:
        response = make_client(issued.raw_key).get(f"/v1/renders/{render.id}")
    assert response.status_code == 200
    expected_hash = hashlib.sha256(issued.raw_key.encode()).hexdigest()
    assert spy.call_args_list == [mock.call(expected_hash, expected_hash)]
    sql = "\n".join(q["sql"] for q in queries.captured_queries)
    assert expected_hash in sql, "the key is looked up by its hash"
    assert issued.raw_key not in sql and issued.raw_key[8:] not in sql


def test_a_wrong_key_is_rejected_through_the_same_comparison(project, make_key, make_client, render):
    issued = make_key(project)
    with mock.patch("hmac.compare_digest", wraps=hmac.compare_digest) as spy:
        response = make_client(issued.raw_key[:-1] + ("A" if issued.raw_key[-1] != "A" else "B")).get("/v1/renders")
    assert response.status_code == 401
    assert spy.call_count == 0  # no row with that hash: nothing to compare, nothing learned per character


def test_only_the_hash_and_display_prefix_are_kept(project):
    issued = apikey_issue(project=project)
    row = ApiKey.objects.values().get(pk=issued.key.pk)
    assert row["key_hash"] == hash_key(issued.raw_key)
    assert row["prefix"] == issued.raw_key[:16]
    assert not any(isinstance(v, str) and issued.raw_key[16:] in v for v in row.values())


def test_key_of_a_deleted_project_is_forbidden_everywhere(project, make_key, make_client, render):
    issued = make_key(project)
    project_soft_delete(project=project)
    response = make_client(issued.raw_key).get(f"/v1/renders/{render.id}")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert "deleted" in response.json()["error"]["message"]


# -- the rate limit is one count across worker processes ---------------------------------------------

def _redis_url() -> str | None:
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except Exception:  # noqa: BLE001 - any failure means there is no Redis to test with
        return None
    return url


RATE_LIMIT = 20
WINDOW = 60


@pytest.mark.django_db(transaction=True)
def test_rate_limit_is_exact_across_two_gunicorn_workers():
    redis_url = _redis_url()
    if redis_url is None:
        pytest.skip("needs a Redis server (TEST_REDIS_URL or redis://127.0.0.1:6379/15)")
    server = Gunicorn(base_env(DATABASE_URL=database_url_of(connection.settings_dict), CACHE_URL=redis_url,
                               RATE_LIMIT_FAIL_OPEN="0"),
                      workers=2, threads=1, access_log=True)  # sync workers: each takes one request at a time
    server.start()
    try:
        for _attempt in range(2):  # a run that straddles a minute boundary proves nothing: run it again
            project = project_create(name=f"ratelimited-{uuid.uuid4().hex[:8]}", rate_limit_per_minute=RATE_LIMIT)
            raw_key = apikey_issue(project=project).raw_key
            started, statuses = time.time(), _burst(server.base_url, raw_key, RATE_LIMIT + 10)
            if int(started // WINDOW) == int(time.time() // WINDOW):
                break
        else:
            pytest.fail("two bursts in a row straddled a minute boundary")
        assert statuses.count(200) == RATE_LIMIT, statuses
        assert statuses.count(429) == 10, statuses
        pids = {line.split()[0] for line in server.read_log().splitlines()
                if line.startswith("pid=") and '"GET /v1/renders' in line}  # not the readiness probes
        assert len(pids) == 2, f"the burst should reach both workers, saw {pids}"
    finally:
        server.cleanup()


def _burst(base_url: str, raw_key: str, count: int) -> list[int]:
    barrier = threading.Barrier(count)
    statuses = [None] * count

    def one(index):
        barrier.wait(timeout=30)
        # A fresh connection per request, so the requests spread over both workers.
        response = requests.get(base_url + "/v1/renders", headers={"Authorization": f"Bearer {raw_key}"},
                                timeout=30)
        statuses[index] = response.status_code
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json()["error"]["code"] == "rate_limited"

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return statuses


# -- Redis down: the limiter fails open or closed as configured ------------------------------------

DEAD_REDIS = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": "redis://127.0.0.1:1/0",
                          "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2}}}


def test_redis_down_fails_open_when_configured(project, make_key, make_client, render, settings):
    settings.CACHES = DEAD_REDIS
    settings.RATE_LIMIT_FAIL_OPEN = True
    response = make_client(make_key(project).raw_key).get(f"/v1/renders/{render.id}")
    assert response.status_code == 200


def test_redis_down_fails_closed_when_configured(project, make_key, make_client, render, settings):
    settings.CACHES = DEAD_REDIS
    settings.RATE_LIMIT_FAIL_OPEN = False
    response = make_client(make_key(project).raw_key).get(f"/v1/renders/{render.id}")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert response["Retry-After"]
