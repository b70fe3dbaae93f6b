"""CONTRACT 2.4: `GET /v1/renders/:id/shares`, newest first, cursor-paginated like the render list."""

import base64

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from renders.models import Share
from renders.shares import share_mint
from tests.conftest import assert_envelope

BAD_LIMIT = "Must be an integer from 1 to 100."
BAD_CURSOR = "Not a cursor returned by this API."
OTHER_LIST = "A cursor of another list: pass the nextCursor this list returned."
NO_RENDER = "No render with that id in this project."


def invalid(**field_errors):
    return {"formErrors": [], "fieldErrors": {field: [message] for field, message in field_errors.items()}}


def mint_many(render, count, clock, step=1.0) -> list[str]:
    """`count` shares of `render`, oldest first, `step` seconds apart; their ids."""
    ids = []
    for index in range(count):
        share = share_mint(render=render, label=f"share {index}", expires_at=None, actor_kind="partner",
                           source_ip=None, user_agent=None)
        ids.append(str(share.id))
        clock.shift(step)
    return ids


def list_shares(api, render, **query):
    return api.get(f"/v1/renders/{render.id}/shares", query)


def all_pages(api, render, limit) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        response = list_shares(api, render, limit=limit, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"data", "nextCursor"}
        pages.append([share["id"] for share in body["data"]])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages


def test_the_share_list_answers_data_and_a_null_next_cursor_when_everything_fits(api, render, clock):
    ids = mint_many(render, 3, clock)
    body = list_shares(api, render).json()
    assert [share["id"] for share in body["data"]] == ids[::-1]
    assert body["nextCursor"] is None


def test_the_share_cursor_walks_more_shares_than_the_limit_page_by_page_newest_first(api, render, clock):
    ids = mint_many(render, 7, clock)
    newest_first = ids[::-1]
    assert all_pages(api, render, 3) == [newest_first[0:3], newest_first[3:6], newest_first[6:]]


def test_shares_minted_in_one_instant_are_paged_by_id_newest_first(api, render, clock):
    ids = mint_many(render, 5, clock, step=0)
    assert all_pages(api, render, 2) == [ids[4:2:-1], ids[2:0:-1], ids[:1]]


def test_the_default_share_page_is_20_and_limit_goes_up_to_100(api, render, clock):
    mint_many(render, 21, clock, step=0.001)
    default_page = list_shares(api, render).json()
    assert len(default_page["data"]) == 20 and default_page["nextCursor"] is not None
    full_page = list_shares(api, render, limit=100).json()
    assert len(full_page["data"]) == 21 and full_page["nextCursor"] is None


def test_a_share_page_costs_the_same_queries_for_one_share_or_many(api, render, clock):
    mint_many(render, 1, clock)
    list_shares(api, render)  # the key's last_used_at is written once, outside the measured requests
    with CaptureQueriesContext(connection) as one:
        assert len(list_shares(api, render).json()["data"]) == 1
    mint_many(render, 30, clock)
    with CaptureQueriesContext(connection) as many:
        assert len(list_shares(api, render, limit=25).json()["data"]) == 25
    # at most: the key (where no shared cache keeps it), the render, one page of its shares
    assert len(many.captured_queries) == len(one.captured_queries) <= 3


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", "", "²", " 5", "1e1", "9" * 5000])
def test_a_bad_share_list_limit_is_invalid_request(api, render, limit):
    response = list_shares(api, render, limit=limit)
    assert_envelope(response, 400, "invalid_request", "Invalid value for: limit.", issues=invalid(limit=BAD_LIMIT))


@pytest.mark.parametrize("cursor", [
    "garbage!",
    base64.urlsafe_b64encode(b"[" * 2000).decode().rstrip("="),
    "A" * 5000,
])
def test_a_bad_share_list_cursor_is_invalid_request(api, render, cursor):
    response = list_shares(api, render, cursor=cursor)
    assert_envelope(response, 400, "invalid_request", "Invalid value for: cursor.", issues=invalid(cursor=BAD_CURSOR))


def test_a_bad_limit_and_a_bad_cursor_are_both_named(api, render):
    response = list_shares(api, render, limit="0", cursor="garbage!")
    assert_envelope(response, 400, "invalid_request", "Invalid value for: limit, cursor.",
                    issues=invalid(limit=BAD_LIMIT, cursor=BAD_CURSOR))


def test_a_cursor_of_another_renders_share_list_is_refused_and_leaks_nothing(api, project, make_render, clock):
    first, second = make_render(project, name="First.pdf"), make_render(project, name="Second.pdf")
    mint_many(first, 3, clock)
    mint_many(second, 3, clock)
    first_cursor = list_shares(api, first, limit=1).json()["nextCursor"]
    assert first_cursor is not None

    response = list_shares(api, second, cursor=first_cursor)

    assert_envelope(response, 400, "invalid_request", "Invalid value for: cursor.", issues=invalid(cursor=OTHER_LIST))
    assert not any(str(share.id) in response.content.decode() for share in Share.objects.all())


def test_a_render_list_cursor_is_not_a_share_list_cursor(api, project, make_render, clock):
    render = make_render(project)
    clock.shift(1)
    make_render(project)
    render_cursor = api.get("/v1/renders", {"limit": 1}).json()["nextCursor"]
    assert render_cursor is not None
    response = list_shares(api, render, cursor=render_cursor)
    assert_envelope(response, 400, "invalid_request", "Invalid value for: cursor.", issues=invalid(cursor=OTHER_LIST))


def test_the_share_list_of_a_foreign_render_is_404_whatever_the_query(api, make_project, make_render, clock):
    foreign = make_render(make_project())
    mint_many(foreign, 2, clock)
    for query in ({}, {"limit": "1"}, {"limit": "0"}, {"cursor": "garbage!"}):
        assert_envelope(list_shares(api, foreign, **query), 404, "not_found", NO_RENDER)
