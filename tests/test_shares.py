"""CONTRACT 2.4: minting, listing and revoking shares through the API."""

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from renders.models import Share
from tests.conftest import requires_postgres, run_in_threads
from tests.sharing import engagement, mint, token_of, without_request_id

MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def test_minting_a_share_answers_the_share_with_an_absolute_unguessable_link(api, render, clock):
    response = api.post(f"/v1/renders/{render.id}/shares", {"label": "For Alice"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "renderId", "url", "label", "createdAt", "expiresAt", "revokedAt", "requireEmail"}
    assert uuid.UUID(body["id"]).version == 7
    assert body["renderId"] == str(render.id)
    assert body["label"] == "For Alice"
    assert body["createdAt"] == "2026-05-03T10:20:00.000Z"
    assert body["expiresAt"] is None and body["revokedAt"] is None
    assert body["url"].startswith("http://testserver/s/")
    token = token_of(body)
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,64}", token)  # at least 128 bits of URL-safe base64
    assert Share.objects.get(token=token).pk == uuid.UUID(body["id"])


def test_two_shares_never_share_a_token(api, render):
    assert token_of(mint(api, render)) != token_of(mint(api, render))


def test_minting_records_share_created_by_the_partner_with_the_new_share_id(api, render):
    share = mint(api, render, label="x")

    summary = engagement(api, render)
    assert summary["counts"]["share_created"] == 1
    assert summary["linkOpens"] == 0
    [event] = summary["recent"]
    assert (event["eventType"], event["actorKind"], event["shareId"]) == ("share_created", "partner", share["id"])


def test_the_link_uses_public_base_url_when_it_is_set(api, render, settings):
    settings.PUBLIC_BASE_URL = "https://docs.example.com/"

    share = mint(api, render)

    assert share["url"] == f"https://docs.example.com/s/{token_of(share)}"


def test_minting_without_a_body_makes_an_unlabelled_share_that_never_expires(api, render):
    response = api.post(f"/v1/renders/{render.id}/shares")

    assert response.status_code == 201
    assert response.json()["label"] is None
    assert response.json()["expiresAt"] is None


def test_expiry_is_kept_with_milliseconds_in_utc(api, render, clock):
    share = mint(api, render, expiresAt="2026-05-10T12:00:00.250+02:00")

    assert share["expiresAt"] == "2026-05-10T10:00:00.250Z"
    assert MS_Z.match(share["createdAt"])


@pytest.mark.parametrize(("body", "field"), [
    ({"label": "x", "recipient": "a@example.com"}, "recipient"),
    ({"expiresAt": "2026-05-10T10:00:00"}, "expiresAt"),  # no offset
    ({"expiresAt": "next week"}, "expiresAt"),
    ({"expiresAt": 1778400000}, "expiresAt"),
    ({"expiresAt": "2026-05-03T10:19:59.999Z"}, "expiresAt"),  # in the past
    ({"label": "x" * 201}, "label"),
    ({"label": 12}, "label"),
])
def test_a_bad_share_body_is_invalid_request_naming_the_field(api, render, clock, body, field):
    response = api.post(f"/v1/renders/{render.id}/shares", body, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["issues"]["fieldErrors"]
    assert Share.objects.count() == 0


def test_a_share_body_that_is_not_json_is_invalid_json(api, render):
    response = api.post(f"/v1/renders/{render.id}/shares", b"{label", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_a_share_body_that_is_not_an_object_is_invalid_request(api, render):
    response = api.post(f"/v1/renders/{render.id}/shares", ["label"], format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


def test_shares_are_listed_newest_first_in_constant_queries(api, render, make_render, project, clock,
                                                       django_assert_num_queries):
    first = mint(api, render, label="first")
    clock.shift(60)
    second = mint(api, render, label="second")
    mint(api, make_render(project, name="Other.pdf"), label="other render")

    with django_assert_num_queries(3):  # the key (nothing kept without a shared cache), the render, its shares
        response = api.get(f"/v1/renders/{render.id}/shares")

    assert response.status_code == 200
    assert [share["id"] for share in response.json()["data"]] == [second["id"], first["id"]]
    assert response.json()["data"][0] == second


def test_revoking_sets_revoked_at_and_records_share_revoked(api, render, clock):
    share = mint(api, render)
    clock.shift(30)

    response = api.delete(f"/v1/renders/{render.id}/shares/{share['id']}")

    assert response.status_code == 200
    assert response.json() == {**share, "revokedAt": "2026-05-03T10:20:30.000Z"}
    summary = engagement(api, render)
    assert summary["counts"]["share_revoked"] == 1
    latest = summary["recent"][0]
    assert (latest["eventType"], latest["actorKind"], latest["shareId"]) == ("share_revoked", "partner", share["id"])


def test_revoking_again_changes_nothing_and_records_nothing(api, render, clock):
    share = mint(api, render)
    first = api.delete(f"/v1/renders/{render.id}/shares/{share['id']}").json()
    clock.shift(3600)

    again = api.delete(f"/v1/renders/{render.id}/shares/{share['id']}")

    assert again.status_code == 200
    assert again.json() == first
    summary = engagement(api, render)
    assert summary["counts"]["share_revoked"] == 1
    assert summary["total"] == 2  # share_created + share_revoked


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_revokes_record_share_revoked_exactly_once(project, make_key, make_client, make_render):
    render = make_render(project)
    raw_key = make_key(project).raw_key
    share = mint(make_client(raw_key), render)

    def revoke(_index):
        return make_client(raw_key).delete(f"/v1/renders/{render.id}/shares/{share['id']}").status_code

    assert run_in_threads(6, revoke) == [200] * 6
    assert engagement(make_client(raw_key), render)["counts"]["share_revoked"] == 1


def test_revoked_share_stays_listed_with_its_revocation(api, render):
    share = mint(api, render)
    api.delete(f"/v1/renders/{render.id}/shares/{share['id']}")

    [listed] = api.get(f"/v1/renders/{render.id}/shares").json()["data"]

    assert listed["id"] == share["id"] and listed["revokedAt"] is not None


def _not_found(client, method, path):
    response = getattr(client, method)(path, {}, format="json") if method == "post" else getattr(client, method)(path)
    assert response.status_code == 404, (path, response.content)
    return without_request_id(response.json())


def test_foreign_render_ids_answer_exactly_like_ids_that_do_not_exist(api, render, make_project, make_render):
    foreign = make_render(make_project("globex"))
    random_id, malformed = uuid.uuid4(), "not-a-uuid"

    for method in ("get", "post"):
        expected = _not_found(api, method, f"/v1/renders/{random_id}/shares")
        assert _not_found(api, method, f"/v1/renders/{foreign.id}/shares") == expected
        assert _not_found(api, method, f"/v1/renders/{malformed}/shares") == expected
    assert Share.objects.count() == 0


def test_foreign_share_ids_answer_exactly_like_ids_that_do_not_exist(api, render, project, make_project,
                                                                     make_render, make_key, make_client):
    other_project = make_project("globex")
    foreign_render = make_render(other_project)
    foreign_share = mint(make_client(make_key(other_project).raw_key), foreign_render)
    sibling_share = mint(api, make_render(project, name="Sibling.pdf"))  # ours, but of another render

    expected = _not_found(api, "delete", f"/v1/renders/{render.id}/shares/{uuid.uuid4()}")
    for share_id in (foreign_share["id"], sibling_share["id"], "42"):
        assert _not_found(api, "delete", f"/v1/renders/{render.id}/shares/{share_id}") == expected
    assert _not_found(api, "delete", f"/v1/renders/{foreign_render.id}/shares/{foreign_share['id']}") == \
        _not_found(api, "delete", f"/v1/renders/{uuid.uuid4()}/shares/{foreign_share['id']}")
    assert not Share.objects.filter(revoked_at__isnull=False).exists()


def test_listing_needs_renders_read_and_minting_or_revoking_needs_renders_write(project, render, make_key,
                                                                                make_client, api):
    share = mint(api, render)
    reader = make_client(make_key(project, scopes=["renders.read"]).raw_key)
    writer = make_client(make_key(project, scopes=["renders.write"]).raw_key)

    assert reader.get(f"/v1/renders/{render.id}/shares").status_code == 200
    assert reader.post(f"/v1/renders/{render.id}/shares", {}, format="json").status_code == 403
    assert reader.delete(f"/v1/renders/{render.id}/shares/{share['id']}").status_code == 403
    assert writer.get(f"/v1/renders/{render.id}/shares").status_code == 403
    assert writer.delete(f"/v1/renders/{render.id}/shares/{share['id']}").status_code == 200


def test_shares_need_a_key(client, render):
    assert client.get(f"/v1/renders/{render.id}/shares").status_code == 401
    assert client.post(f"/v1/renders/{render.id}/shares").status_code == 401


def test_expiry_at_exactly_now_plus_a_millisecond_is_accepted(api, render, clock):
    later = datetime(2026, 5, 3, 10, 20, tzinfo=UTC) + timedelta(milliseconds=1)

    share = mint(api, render, expiresAt=later.isoformat())

    assert share["expiresAt"] == "2026-05-03T10:20:00.001Z"
