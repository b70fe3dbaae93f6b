"""Contract section 5: the admin's key and project pages. A raw key created in the admin is shown on the
page, never put in a cookie or a log; the admin's changes apply from the next request (through the services)."""

import logging

import pytest
from django.contrib.messages import get_messages
from django.contrib.messages.storage.cookie import CookieStorage

from apikeys.models import ALL_SCOPES, ApiKey, Project, Scope
from apikeys.services import apikey_issue
from tests.rediscache import delete_own_keys, redis_cache_settings, redis_url_or_skip


@pytest.fixture
def maybe_shared_cache(request, settings):
    """Both configurations: nothing kept (per-process cache), and kept keys told by the epoch (Redis)."""
    if request.param == "redis":
        own = settings.CACHES = redis_cache_settings(redis_url_or_skip())
        yield
        delete_own_keys(own)
    else:
        yield


def test_a_key_created_in_the_admin_is_shown_once_on_the_page_and_never_in_a_cookie_or_a_log(
        admin_client, project, caplog):
    caplog.set_level(logging.DEBUG)
    response = admin_client.post("/admin/apikeys/apikey/add/", {
        "project": str(project.pk), "name": "ci", "scopes": [Scope.RENDERS_READ, Scope.REPORTS_VIEW],
    })
    assert response.status_code == 200, response.content[:500]
    key = ApiKey.objects.get(name="ci")
    page = response.content.decode()
    raw_keys = [word for word in page.replace("<", " ").replace(">", " ").split() if word.startswith(key.prefix)
                and len(word) > len(key.prefix) + 8]
    assert len(raw_keys) == 1  # shown once
    raw_key = raw_keys[0]
    assert key.matches(raw_key)
    assert page.count(raw_key) == 1
    assert key.scopes == [Scope.RENDERS_READ, Scope.REPORTS_VIEW]

    for cookie in response.cookies.values():
        assert raw_key not in cookie.value
    assert raw_key not in str(response.headers)
    assert all(raw_key not in str(message) for message in get_messages(response.wsgi_request))
    stored = CookieStorage(response.wsgi_request)._decode(admin_client.cookies.get("messages").value) \
        if "messages" in admin_client.cookies else None
    assert stored is None or all(raw_key not in str(message) for message in stored)
    assert raw_key not in caplog.text

    following = admin_client.get("/admin/apikeys/apikey/")
    assert raw_key not in following.content.decode()  # not shown again, nor left behind in a message


def test_the_key_created_page_works(admin_client, project):
    response = admin_client.post("/admin/apikeys/apikey/add/", {"project": str(project.pk), "name": "x",
                                                                "scopes": ALL_SCOPES, "expires_in_days": "3"})
    assert response.status_code == 200
    key = ApiKey.objects.get(name="x")
    assert key.expires_at is not None
    assert f"/admin/apikeys/apikey/{key.pk}/change/" in response.content.decode()


@pytest.mark.parametrize("maybe_shared_cache", ["per-process", "redis"], indirect=True)
def test_a_plan_changed_in_the_admin_applies_from_the_next_request(maybe_shared_cache, admin_client, make_project,
                                                                  make_key, make_client, clock):
    project = make_project(rate_limit_per_minute=600)
    client = make_client(make_key(project).raw_key)
    assert [client.get("/v1/renders").status_code for _ in range(2)] == [200, 200]
    response = admin_client.post(f"/admin/apikeys/project/{project.pk}/change/", {
        "name": project.name, "retention_days": "90", "rate_limit_per_minute": "2",
    })
    assert response.status_code == 302, response.content[:2000]
    assert Project.objects.get(pk=project.pk).rate_limit_per_minute == 2
    assert client.get("/v1/renders").status_code == 429


@pytest.mark.parametrize("maybe_shared_cache", ["per-process", "redis"], indirect=True)
def test_keys_revoked_and_projects_deleted_by_admin_actions_are_refused_on_the_next_request(
        maybe_shared_cache, admin_client, make_project, make_key, make_client):
    revoked_project, deleted_project = make_project(), make_project()
    revoked, deleted = make_client(make_key(revoked_project).raw_key), make_client(make_key(deleted_project).raw_key)
    assert revoked.get("/v1/renders").status_code == deleted.get("/v1/renders").status_code == 200
    admin_client.post("/admin/apikeys/apikey/", {"action": "revoke",
                                                 "_selected_action": [str(revoked_project.api_keys.get().pk)]})
    admin_client.post("/admin/apikeys/project/", {"action": "soft_delete",
                                                  "_selected_action": [str(deleted_project.pk)]})
    assert revoked.get("/v1/renders").status_code == 401
    assert deleted.get("/v1/renders").status_code == 403


@pytest.mark.parametrize("maybe_shared_cache", ["per-process", "redis"], indirect=True)
def test_an_expiry_set_in_the_admin_applies_from_the_next_request(maybe_shared_cache, admin_client, project,
                                                                  make_client):
    issued = apikey_issue(project=project, name="soon")
    client = make_client(issued.raw_key)
    assert client.get("/v1/renders").status_code == 200
    response = admin_client.post(f"/admin/apikeys/apikey/{issued.key.pk}/change/", {
        "name": "soon", "expires_at_0": "2000-01-01", "expires_at_1": "00:00:00",
    })
    assert response.status_code == 302, response.content[:2000]
    assert client.get("/v1/renders").status_code == 401
