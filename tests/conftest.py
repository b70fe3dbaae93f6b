"""Shared fixtures: projects, keys, an HTTP client per key, renders, and a movable clock."""

import shutil
import tempfile
import threading
from datetime import UTC, datetime

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, connections
from rest_framework.test import APIClient

from apikeys.models import ALL_SCOPES
from apikeys.services import apikey_issue, project_create
from demo.pdf import simple_pdf
from engagement_platform.db.partitions import known_partitions, known_partitions_forget
from renders.services import render_create
from tests.rediscache import clear_test_cache, delete_own_keys, redis_cache_settings, redis_url_or_skip

PDF_BYTES = simple_pdf("Quote Q-1042", ["40 hours of consulting."])  # a real, readable one-page PDF

requires_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row-level concurrency is only meaningful on PostgreSQL"
)


@pytest.fixture(autouse=True)
def _isolated_media(settings):
    media = tempfile.mkdtemp(prefix="media-")
    settings.MEDIA_ROOT = media
    yield
    shutil.rmtree(media, ignore_errors=True)


@pytest.fixture(autouse=True)
def _partitions_listed_afresh():
    """A test's rolled-back transaction takes the partitions it created with it: each test lists them anew."""
    known_partitions_forget()
    yield
    known_partitions_forget()


def partitions_listed() -> None:
    """PostgreSQL: list the partitions before a test counts a request's queries (each process lists them once
    a minute, not per request)."""
    if connection.vendor == "postgresql":
        known_partitions()


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_test_cache()  # never a FLUSHDB of a Redis server: only a test cache's own keys
    yield
    clear_test_cache()


_names = iter(range(1, 10**9))


@pytest.fixture
def make_project(db):
    def make(name=None, **plan):
        return project_create(name=name or f"project-{next(_names)}", **plan)

    return make


@pytest.fixture
def project(make_project):
    return make_project("acme")


@pytest.fixture
def make_key(db):
    def make(project, scopes=None, **kwargs):
        return apikey_issue(project=project, scopes=ALL_SCOPES if scopes is None else scopes, **kwargs)

    return make


@pytest.fixture
def make_client():
    """An APIClient that sends `Authorization: Bearer <raw key>` (or nothing)."""

    def make(raw_key=None, **headers):
        client = APIClient()
        if raw_key is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}", **headers)
        return client

    return make


@pytest.fixture
def api(project, make_key, make_client):
    """A client holding a full-scope key of `project`."""
    return make_client(make_key(project).raw_key)


@pytest.fixture
def make_render(db):
    def make(project, name="Quote.pdf", content=PDF_BYTES):
        upload = SimpleUploadedFile(name, content, content_type="application/pdf")
        return render_create(project=project, uploaded_file=upload, name=name)

    return make


@pytest.fixture
def render(project, make_render):
    return make_render(project)


@pytest.fixture
def clock():
    """A frozen, movable clock: `clock.move_to(...)`, `clock.shift(seconds)`."""
    with time_machine.travel(datetime(2026, 5, 3, 10, 20, tzinfo=UTC), tick=False) as traveller:
        yield traveller


def run_in_threads(count: int, target, *args):
    """Run `target(index, *args)` in `count` threads released together; return their results."""
    barrier = threading.Barrier(count)
    results = [None] * count
    errors = []

    def worker(index):
        try:
            barrier.wait(timeout=30)
            results[index] = target(index, *args)
        except Exception as exc:  # surfaced to the test below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    return results


def assert_envelope(response, status: int, code: str, message: str | None = None, **extra) -> dict:
    """Check a render-side error: status, JSON type, and exactly `{"error": {code, message, requestId, **extra}}`.

    `message=None` accepts any message; `requestId` must equal the response's `X-Request-Id`.
    Returns the `error` object.
    """
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    expected = {
        "code": code,
        "message": error.get("message") if message is None else message,
        "requestId": response["X-Request-Id"],
        **extra,
    }
    assert response.json() == {"error": expected}
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.fixture
def fresh_webhook_subscriptions():
    """No endpoint kept by this process's webhook subscriptions before or after the test (they are cached per
    process for WEBHOOK_SUBSCRIPTIONS_CACHE_SECONDS)."""
    from webhooks.subscriptions import kept_subscriptions

    kept_subscriptions.clear()
    yield kept_subscriptions
    kept_subscriptions.clear()


@pytest.fixture
def shared_cache(settings):
    """The default cache on Redis (a shared keys epoch, kept keys), under a key prefix of this test's own."""
    from apikeys.keycache import local_keys
    from renders.kept_links_store import local_links

    own = settings.CACHES = redis_cache_settings(redis_url_or_skip())
    local_keys.clear()
    local_links.clear()
    yield own
    local_keys.clear()
    local_links.clear()
    delete_own_keys(own)
