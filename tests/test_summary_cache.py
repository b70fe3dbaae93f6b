"""Kept engagement summaries (contract 2.2): a repeated summary is answered without the database, and
never after a write that changed what it would say (events from every path, backfills, the render's
deletion), per render and per asking project."""

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from demo.data import ensure_activity
from engagement_platform import bodycache
from renders import selectors
from renders.models import ActorKind, EngagementCounter, EngagementEvent, EventType, Render
from renders.services import record_event, render_delete
from tests.rediscache import clear_test_cache, redis_cache_settings
from tests.sharing import mint, token_of
from tests.test_backfill_render_events import backfill, line, ndjson
from tests.test_email_flow import path_of, urls_in
from tests.test_secrets import _redis_url

# Real commits: kept bodies are dropped when a write commits.
pytestmark = pytest.mark.django_db(transaction=True)

SUMMARY_TABLES = tuple(model._meta.db_table for model in (Render, EngagementEvent, EngagementCounter))


@pytest.fixture(params=["locmem", "redis"])
def summary_cache(request, settings):
    """The summary cache on, over a per-process cache and over Redis (the production setting)."""
    if request.param == "redis":
        redis_url = _redis_url()
        if redis_url is None:
            pytest.skip("needs a Redis server (TEST_REDIS_URL or redis://127.0.0.1:6379/15)")
        settings.CACHES = redis_cache_settings(redis_url)  # its own key prefix: cleared without a FLUSHDB
    settings.SUMMARY_CACHE_SECONDS = 60
    clear_test_cache()
    yield request.param
    clear_test_cache()


def summary_queries(client, render_id, **headers):
    """(response, how many queries read the render, its events or its counters) of one summary request."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/v1/renders/{render_id}/engagement", **headers)
    reads = [q["sql"] for q in queries.captured_queries if any(table in q["sql"] for table in SUMMARY_TABLES)]
    return response, len(reads)


def summary(client, render, **headers) -> dict:
    response, _ = summary_queries(client, render.id, **headers)
    assert response.status_code == 200, response.content
    return response.json()


def kept(client, render) -> dict:
    """The summary, which must come from the cache."""
    response, reads = summary_queries(client, render.id)
    assert (response.status_code, reads) == (200, 0), response.content
    return response.json()


def post_event(client, render, event_type="viewed", ip="198.51.100.7"):
    response = client.post(f"/v1/renders/{render.id}/events", {"eventType": event_type}, format="json",
                           REMOTE_ADDR=ip)
    assert response.status_code == 200, response.content
    return response.json()["recorded"]


def test_a_repeated_summary_is_answered_without_reading_render_data(summary_cache, api, render, clock):
    post_event(api, render)
    first, reads = summary_queries(api, render.id)
    assert first.status_code == 200 and reads >= 1
    again, reads = summary_queries(api, render.id)
    assert (again.status_code, reads) == (200, 0)
    assert again.content == first.content
    assert again["Content-Type"] == "application/json"
    assert first.json()["counts"]["viewed"] == 1


def test_an_event_posted_over_http_shows_in_the_next_summary(summary_cache, api, render, clock):
    summary(api, render)
    assert kept(api, render)["total"] == 0
    assert post_event(api, render, "printed") is True
    response, reads = summary_queries(api, render.id)
    assert reads >= 1
    assert response.json()["counts"]["printed"] == 1
    assert [event["eventType"] for event in response.json()["recent"]] == ["printed"]


def test_a_deduped_event_keeps_the_kept_body(summary_cache, api, render, clock):
    assert post_event(api, render) is True
    before = summary(api, render)
    assert post_event(api, render) is False  # same render, share, type and IP within five minutes
    assert kept(api, render) == before


def test_share_pages_and_share_changes_show_in_the_next_summary(summary_cache, api, client, render, clock):
    summary(api, render)
    share = mint(api, render)
    assert summary(api, render)["counts"]["share_created"] == 1
    token = token_of(share)

    assert client.get(f"/s/{token}").status_code == 200
    after_view = summary(api, render)
    assert (after_view["counts"]["viewed"], after_view["linkOpens"]) == (1, 1)
    assert client.get(f"/s/{token}/download").status_code == 200
    assert summary(api, render)["counts"]["downloaded"] == 1
    assert client.post(f"/s/{token}/print").status_code == 204
    assert summary(api, render)["counts"]["printed"] == 1
    assert client.get(f"/s/{token}/file").status_code == 200  # records nothing: the kept body stays
    kept(api, render)

    assert api.delete(f"/v1/renders/{render.id}/shares/{share['id']}").status_code == 200
    assert summary(api, render)["counts"]["share_revoked"] == 1


def test_an_email_and_its_open_show_in_the_next_summary(summary_cache, api, client, render, settings, clock):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    summary(api, render)
    assert api.post(f"/v1/renders/{render.id}/emails", {"to": "alice@example.com"}, format="json").status_code == 201
    counts = summary(api, render)["counts"]
    assert (counts["share_created"], counts["email_sent"], counts["email_opened"]) == (1, 1, 0)

    [message] = mail.outbox
    assert client.get(path_of(urls_in(message)["pixel"])).status_code == 200
    assert summary(api, render)["counts"]["email_opened"] == 1


def test_a_backfill_batch_shows_in_the_next_summary_of_each_render_it_touched(summary_cache, api, project, render,
                                                                               make_render, clock):
    other, untouched = make_render(project, name="Other.pdf"), make_render(project, name="Untouched.pdf")
    for each in (render, other, untouched):
        summary(api, each)

    out, _ = backfill(project.name, ndjson(line(render), line(render, eventType="downloaded"),
                                           line(other, eventType="printed")))
    assert out.strip().splitlines()[-1] == "accepted 3, duplicates 0, rejected 0."
    assert summary(api, render)["total"] == 2
    assert summary(api, other)["counts"]["printed"] == 1
    kept(api, untouched)  # no event of the batch was its

    out, _ = backfill(project.name, ndjson(line(render)))  # already stored: a duplicate changes nothing
    assert out.strip().splitlines()[-1] == "accepted 0, duplicates 1, rejected 0."
    assert kept(api, render)["total"] == 2


def test_demo_seeding_shows_in_the_next_summary(summary_cache, api, project, make_render, clock):
    renders = [make_render(project, name=f"Demo {n}.pdf") for n in range(3)]
    assert [summary(api, demo)["total"] for demo in renders] == [0, 0, 0]
    ensure_activity(project=project, renders=renders)
    assert [summary(api, demo)["total"] for demo in renders] == [3, 2, 1]


def test_a_render_deleted_through_its_service_answers_404_at_once(summary_cache, api, render, clock):
    post_event(api, render)
    summary(api, render)
    kept(api, render)
    render_delete(render=Render.objects.get(pk=render.pk))
    response, _ = summary_queries(api, render.id)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_render_deleted_in_the_admin_answers_404_at_once(summary_cache, api, admin_client, render, clock):
    summary(api, render)
    kept(api, render)
    response = admin_client.post(f"/admin/renders/render/{render.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.content
    assert not Render.objects.filter(pk=render.pk).exists()
    assert summary_queries(api, render.id)[0].status_code == 404


def test_renders_deleted_by_the_admins_bulk_action_answer_404_at_once(summary_cache, api, admin_client, project,
                                                                      render, make_render, clock):
    other, untouched = make_render(project, name="Other.pdf"), make_render(project, name="Untouched.pdf")
    for each in (render, other, untouched):
        summary(api, each)
        kept(api, each)
    response = admin_client.post("/admin/renders/render/", {"action": "delete_selected", "post": "yes",
                                                            "_selected_action": [str(render.pk), str(other.pk)]})
    assert response.status_code == 302, response.content
    assert list(Render.objects.values_list("pk", flat=True)) == [untouched.pk]
    assert [summary_queries(api, each.id)[0].status_code for each in (render, other)] == [404, 404]
    kept(api, untouched)


def test_no_cache_builds_afresh_and_keeps_the_new_body(summary_cache, api, render, clock):
    post_event(api, render)
    summary(api, render)
    EngagementCounter.objects.filter(render=render).update(count=7)  # out of band: nothing is told
    assert kept(api, render)["counts"]["viewed"] == 1
    fresh, reads = summary_queries(api, render.id, HTTP_CACHE_CONTROL="max-age=0, No-Cache")
    assert reads >= 1
    assert fresh.json()["counts"]["viewed"] == 7
    assert kept(api, render)["counts"]["viewed"] == 7


def test_a_project_never_gets_another_projects_render_even_while_its_body_is_kept(summary_cache, make_project,
                                                                                   make_key, make_client,
                                                                                   make_render, clock):
    first, second = make_project(), make_project()
    first_api, second_api = (make_client(make_key(p).raw_key) for p in (first, second))
    render, own = make_render(first), make_render(second)
    post_event(first_api, render)
    assert summary(first_api, render)["total"] == 1
    kept(first_api, render)

    response, reads = summary_queries(second_api, render.id)
    assert response.status_code == 404 and reads >= 1  # looked up in the second project: not there
    assert response.json()["error"]["code"] == "not_found"
    assert summary_queries(second_api, render.id)[0].status_code == 404  # a 404 is never kept
    assert summary(second_api, own)["total"] == 0
    assert kept(first_api, render)["total"] == 1


@pytest.mark.parametrize("written_before", [True, False], ids=["render-with-events", "render-never-written"])
def test_a_write_that_commits_while_a_body_is_built_is_not_hidden_by_it(summary_cache, api, render, monkeypatch,
                                                                        clock, written_before):
    """The body built before the write is kept under the version read before building: never answered after.
    A render never written has no version yet: the one the write sets wins over the reader's."""
    if written_before:
        post_event(api, render, ip="198.51.100.1")
    build = selectors.engagement_summary_in_project
    calls = []

    def build_then_write(**kwargs):
        built = build(**kwargs)
        if not calls:
            record_event(render=render, event_type=EventType.PRINTED, actor_kind=ActorKind.PARTNER)
        calls.append(1)
        return built

    monkeypatch.setattr(selectors, "engagement_summary_in_project", build_then_write)
    before = int(written_before)
    assert summary(api, render)["total"] == before  # built before the write
    assert summary(api, render)["total"] == before + 1
    assert kept(api, render)["total"] == before + 1


def test_summaries_are_built_from_the_database_when_the_cache_is_unreachable(summary_cache, api, render, monkeypatch,
                                                                             clock):
    class Unreachable:
        def key(self, name):
            return name

        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise ConnectionError("cache down")
            return fail

    monkeypatch.setattr(bodycache, "_store", Unreachable)
    assert post_event(api, render) is True  # the version not replaced: the event is still recorded
    for _ in range(2):
        response, reads = summary_queries(api, render.id)
        assert (response.status_code, reads >= 1) == (200, True)
        assert response.json()["counts"]["viewed"] == 1


def test_off_by_default_over_a_per_process_cache(api, render, settings, clock):
    assert settings.SUMMARY_CACHE_SECONDS == 0
    summary(api, render)
    response, reads = summary_queries(api, render.id)
    assert response.status_code == 200 and reads >= 1
