"""Open share links kept by each worker under the shared keys epoch (renders/public/kept_links.py): a kept link
saves the token's database lookup, and every change that closes a link, made by any worker, closes it at once."""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apikeys.keycache import keys_changed
from apikeys.services import project_soft_delete
from engagement_platform.clock import now
from renders.kept_links_store import local_links
from renders.models import Render, Share
from renders.public.kept_links import link_open_and_spend
from renders.shares import LinkState
from tests.conftest import run_in_threads
from tests.sharing import mint, token_of

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def kept(shared_cache):
    return shared_cache


@pytest.fixture
def token(api, render):
    return token_of(mint(api, render, label="For Alice"))


def share_lookups(captured) -> list[str]:
    table = Share._meta.db_table
    return [query["sql"] for query in captured.captured_queries if f'FROM "{table}"' in query["sql"]]


def test_an_open_link_is_looked_up_in_the_database_once(client, token):
    assert client.get(f"/s/{token}/pages/1").status_code == 200
    with CaptureQueriesContext(connection) as captured:
        assert client.get(f"/s/{token}/pages/1").status_code == 200
        assert client.get(f"/s/{token}/file").status_code == 200
    assert share_lookups(captured) == []
    assert local_links.get(token) is not None


def test_a_revocation_by_another_worker_closes_the_kept_link_on_the_next_request(client, token):
    assert client.get(f"/s/{token}/pages/1").status_code == 200
    # Another worker revokes: the row changes and the shared epoch moves; this worker's kept link stays put.
    Share.objects.filter(token=token).update(revoked_at=now())
    keys_changed()
    assert local_links.get(token) is not None

    assert client.get(f"/s/{token}/pages/1").status_code == 410
    assert local_links.get(token) is None


def test_revoking_through_the_api_closes_the_link_at_once(client, api, render):
    share = mint(api, render)
    token = token_of(share)
    assert client.get(f"/s/{token}").status_code == 200

    assert api.delete(f"/v1/renders/{render.id}/shares/{share['id']}").status_code == 200

    assert client.get(f"/s/{token}/pages/1").status_code == 410


def test_deleting_the_render_makes_its_kept_links_unknown(client, api, render, token):
    assert client.get(f"/s/{token}/pages/1").status_code == 200

    assert api.delete(f"/v1/renders/{render.id}").status_code == 204

    assert client.get(f"/s/{token}/pages/1").status_code == 404
    assert not Render.objects.filter(pk=render.pk).exists()


def test_a_soft_deleted_project_closes_its_kept_links(client, project, token):
    assert client.get(f"/s/{token}/pages/1").status_code == 200

    project_soft_delete(project=project)

    assert client.get(f"/s/{token}/pages/1").status_code == 410


def test_a_kept_link_expires_at_its_moment(client, api, render, clock):
    token = token_of(mint(api, render, expiresAt="2026-05-03T10:30:00Z"))
    assert client.get(f"/s/{token}/pages/1").status_code == 200

    clock.shift(600)

    assert client.get(f"/s/{token}/pages/1").status_code == 410


def test_requests_on_a_kept_link_still_spend_the_budget(client, token, settings, clock):
    settings.PUBLIC_RATE_LIMIT_PER_MINUTE = 3
    statuses = [client.get(f"/s/{token}/pages/1").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]


def test_each_request_gets_its_own_share_render_and_file(token):
    first, _ = link_open_and_spend(token=token, source_ip="192.0.2.1")
    second, _ = link_open_and_spend(token=token, source_ip="192.0.2.1")
    assert first.state is second.state is LinkState.OPEN
    assert first.share is not second.share
    assert first.share.render is not second.share.render and first.share.project is not second.share.project
    assert first.share.render.file is not second.share.render.file
    assert first.share.render.file.name == second.share.render.file.name
    assert (first.share.pk, first.share.render.pk) == (second.share.pk, second.share.render.pk)
    assert first.share._state is not second.share._state  # a related object cached on one stays on it
    first.share.render.name = "changed by one request"
    assert second.share.render.name != first.share.render.name
    assert first.share._state.db == second.share._state.db and not first.share._state.adding


@pytest.mark.django_db(transaction=True)
def test_threads_reading_one_kept_link_each_get_the_whole_page_image(token):
    expected = Client().get(f"/s/{token}/pages/1")
    body = b"".join(expected.streaming_content)

    def read(index):
        response = Client(REMOTE_ADDR=f"192.0.2.{index + 1}").get(f"/s/{token}/pages/1")
        return response.status_code, b"".join(response.streaming_content)

    assert run_in_threads(8, read) == [(200, body)] * 8
