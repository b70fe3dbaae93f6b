"""Contract section 2.1: uploading, listing, reading and downloading renders; the envelope on every failure."""

import base64
import json
import os
import re
import uuid
from datetime import UTC, datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from renders.models import Render
from tests.conftest import PDF_BYTES, assert_envelope

MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
RENDER_FIELDS = {"id", "name", "status", "sizeBytes", "pageCount", "createdAt", "downloadUrl"}
NOT_A_PDF = "The file is not a PDF (it must start with %PDF-)."
FILE_REQUIRED = "Required: the PDF as a multipart file field."
BAD_LIMIT = "Must be an integer from 1 to 100."
BAD_CURSOR = "Not a cursor returned by this API."
NO_RENDER = "No render with that id in this project."


def upload(client, content=PDF_BYTES, filename="Quote.pdf", **fields):
    file = SimpleUploadedFile(filename, content, content_type="application/pdf")
    return client.post("/v1/renders", {"file": file, **fields}, format="multipart")


def invalid(field, message):
    return {"formErrors": [], "fieldErrors": {field: [message]}}


def stored_files(settings) -> list[str]:
    return [name for _, _, names in os.walk(settings.MEDIA_ROOT) for name in names]


def assert_nothing_stored(settings):
    assert Render.objects.count() == 0
    assert stored_files(settings) == []


def cursor_of(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


LIST_TAG = "0123456789ab"  # the shape of a list tag; which list does not matter to a malformed cursor


def raw_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("latin-1")).decode().rstrip("=")


# Upload ----------------------------------------------------------------------------------


def test_uploading_a_pdf_answers_201_with_the_render_in_camel_case(api, clock):
    response = upload(api, name="Quarterly quote")
    assert response.status_code == 201, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == RENDER_FIELDS
    render_id = uuid.UUID(body["id"])
    assert render_id.version == 7
    assert body == {
        "id": str(render_id),
        "name": "Quarterly quote",
        "status": "succeeded",
        "sizeBytes": len(PDF_BYTES),
        "pageCount": 1,
        "createdAt": "2026-05-03T10:20:00.000Z",
        "downloadUrl": f"http://testserver/v1/renders/{render_id}/download",
    }
    assert Render.objects.get().project.name == "acme"


def test_created_at_has_milliseconds_and_z(api, clock):
    clock.move_to(datetime(2026, 5, 3, 10, 20, 7, 123999, tzinfo=UTC))
    created_at = upload(api).json()["createdAt"]
    assert MS_Z.match(created_at)
    assert created_at == "2026-05-03T10:20:07.123Z"


def test_the_download_url_is_absolute_and_serves_the_uploaded_bytes(api):
    content = PDF_BYTES + b"%" + os.urandom(3000) + b"\n%%EOF\n"
    download_url = upload(api, content=content).json()["downloadUrl"]
    assert download_url.startswith("http://testserver/v1/renders/")
    response = api.get(download_url)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert b"".join(response.streaming_content) == content


def test_the_name_defaults_to_the_uploaded_file_name(api):
    assert upload(api, filename="Invoice 42.pdf").json()["name"] == "Invoice 42.pdf"


@pytest.mark.parametrize("content", [b"hello, not a pdf", b"%PDF1.4 missing dash", b"", b" %PDF-1.4"])
def test_a_file_that_is_not_a_pdf_is_invalid_request_on_the_file_field(api, settings, content):
    response = upload(api, content=content)
    assert_envelope(response, 400, "invalid_request", "Invalid value for: file.", issues=invalid("file", NOT_A_PDF))
    assert_nothing_stored(settings)


def test_a_file_over_render_max_bytes_is_payload_too_large(api, settings):
    settings.RENDER_MAX_BYTES = len(PDF_BYTES) + 10
    response = upload(api, content=PDF_BYTES + b"x" * 11)
    assert_envelope(response, 413, "payload_too_large",
                    f"The request body exceeds the limit of {settings.RENDER_MAX_BYTES} bytes.")
    assert_nothing_stored(settings)


def test_a_file_of_exactly_render_max_bytes_is_accepted(api, settings):
    settings.RENDER_MAX_BYTES = len(PDF_BYTES) + 10
    assert upload(api, content=PDF_BYTES + b"x" * 10).status_code == 201


def test_a_body_far_over_the_limit_is_refused_before_it_is_parsed(api, settings):
    settings.RENDER_MAX_BYTES = 100
    response = upload(api, content=PDF_BYTES + b"x" * 100_000)
    assert_envelope(response, 413, "payload_too_large", "The request body exceeds the limit of 100 bytes.")
    assert_nothing_stored(settings)


def test_an_upload_without_a_file_is_invalid_request(api, settings):
    response = api.post("/v1/renders", {"name": "no file"}, format="multipart")
    assert_envelope(response, 400, "invalid_request", "Invalid value for: file.",
                    issues=invalid("file", FILE_REQUIRED))
    response = api.post("/v1/renders", {"file": "%PDF-1.4 as a text field"}, format="multipart")
    assert_envelope(response, 400, "invalid_request", "Invalid value for: file.",
                    issues=invalid("file", FILE_REQUIRED))
    assert_nothing_stored(settings)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("x" * 256, "Must be at most 255 characters."),
        ("nul\x00name", "Must not contain the character U+0000."),
        (SimpleUploadedFile("name.txt", b"a file"), "Must be a text field, not a file."),
    ],
)
def test_a_bad_name_is_invalid_request_on_the_name_field(api, settings, name, message):
    response = upload(api, name=name)
    assert_envelope(response, 400, "invalid_request", "Invalid value for: name.", issues=invalid("name", message))
    assert_nothing_stored(settings)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [('{"file": "%PDF-1.4"}', "application/json"), ("%PDF-1.4", "text/plain"), (PDF_BYTES, "application/pdf")],
)
def test_an_upload_that_is_not_multipart_is_invalid_request(api, settings, body, content_type):
    response = api.generic("POST", "/v1/renders", body, content_type=content_type)
    assert_envelope(response, 400, "invalid_request", "Send the body as multipart/form-data.",
                    issues={"formErrors": ["Send the body as multipart/form-data."], "fieldErrors": {}})
    assert_nothing_stored(settings)


def test_a_multipart_body_with_too_many_fields_is_invalid_request_not_a_crash(api, settings):
    fields = {f"field{index}": "x" for index in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
    response = upload(api, **fields)
    message = "The request is malformed or has too many fields or files."
    assert_envelope(response, 400, "invalid_request", message, issues={"formErrors": [message], "fieldErrors": {}})
    assert_nothing_stored(settings)


def test_a_malformed_multipart_body_is_a_client_error(api, settings):
    response = api.generic("POST", "/v1/renders", b"--oops\r\nnot really multipart",
                           content_type="multipart/form-data; boundary=oops")
    assert response.status_code == 400
    assert response.json()["error"]["code"] in ("invalid_request", "invalid_json")
    assert_nothing_stored(settings)


# List ------------------------------------------------------------------------------------


def test_renders_are_listed_newest_first_with_their_full_objects(api, project, make_render, clock):
    created = []
    for index in range(3):
        created.append(make_render(project, name=f"r{index}.pdf"))
        clock.shift(1)
    response = api.get("/v1/renders")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"data", "nextCursor"}
    assert [item["id"] for item in body["data"]] == [str(render.id) for render in reversed(created)]
    assert body["nextCursor"] is None
    for item in body["data"]:
        assert item == api.get(f"/v1/renders/{item['id']}").json()


def _all_pages(api, limit):
    pages, cursor = [], None
    while True:
        query = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = api.get("/v1/renders", query)
        assert response.status_code == 200, response.content
        pages.append([item["id"] for item in response.json()["data"]])
        cursor = response.json()["nextCursor"]
        if cursor is None:
            return pages


def test_the_cursor_walks_every_page_once_until_next_cursor_is_null(api, project, make_render, clock):
    created = []
    for _ in range(5):
        created.append(str(make_render(project).id))
        clock.shift(0.25)
    assert _all_pages(api, 2) == [created[4:2:-1], created[2:0:-1], created[:1]]


def test_the_cursor_orders_renders_of_one_instant_by_id_newest_first(api, project, make_render, clock):
    created = [str(make_render(project).id) for _ in range(5)]
    assert _all_pages(api, 2) == [created[4:2:-1], created[2:0:-1], created[:1]]


def test_the_default_page_is_20_and_limit_goes_up_to_100(api, project, make_render):
    for _ in range(21):
        make_render(project)
    default_page = api.get("/v1/renders").json()
    assert len(default_page["data"]) == 20 and default_page["nextCursor"] is not None
    full_page = api.get("/v1/renders", {"limit": 100}).json()
    assert len(full_page["data"]) == 21 and full_page["nextCursor"] is None
    assert len(api.get("/v1/renders", {"limit": 1}).json()["data"]) == 1


def test_the_list_holds_only_the_key_projects_renders(api, project, make_project, make_render):
    mine = make_render(project)
    make_render(make_project())
    assert [item["id"] for item in api.get("/v1/renders").json()["data"]] == [str(mine.id)]


def test_listing_costs_the_same_queries_for_one_render_or_many(api, project, make_render):
    make_render(project)
    api.get("/v1/renders")  # the key's last_used_at is written once, outside the measured requests
    with CaptureQueriesContext(connection) as one:
        assert api.get("/v1/renders").status_code == 200
    for _ in range(9):
        make_render(project)
    with CaptureQueriesContext(connection) as many:
        assert len(api.get("/v1/renders").json()["data"]) == 10
    assert len(many.captured_queries) == len(one.captured_queries) <= 3


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", "", "²", " 5", "1e1", "0" * 4999 + "5", "9" * 5000])
def test_a_bad_limit_is_invalid_request(api, limit):
    response = api.get("/v1/renders", {"limit": limit})
    assert_envelope(response, 400, "invalid_request", "Invalid value for: limit.", issues=invalid("limit", BAD_LIMIT))


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!",
        "\x00é",
        cursor_of([1, 2]),
        cursor_of({"a": 1}),
        cursor_of(["2026-05-03T10:20:00", str(uuid.uuid4())]),  # no offset
        cursor_of(["2026-05-03T10:20:00+00:00", "not-a-uuid"]),
        cursor_of(["0001-01-01T00:00:00+14:00", str(uuid.uuid4())]),  # before year 1 in UTC
        cursor_of(["9999-12-31T23:59:59-14:00", str(uuid.uuid4())]),  # after year 9999 in UTC
        cursor_of(["2026-05-03T10:20:00+00:00", str(uuid.uuid4()), "extra"]),
        base64.urlsafe_b64encode(b"[" * 2000).decode().rstrip("="),  # nested arrays: no RecursionError
        base64.urlsafe_b64encode(b'{"a":' * 1000).decode().rstrip("="),
        "A" * 129,  # longer than any cursor the API returns
        "A" * 100_000,
        raw_cursor(f"{LIST_TAG}|2026-05-03T10:20:00.000000+00:00"),  # a part missing
        raw_cursor(f"{LIST_TAG}|2026-05-03T10:20:00+00:00|{uuid.uuid4()}"),  # not the issued timestamp form
        raw_cursor(f"{LIST_TAG}|2026-05-03T10:20:00.000000+02:00|{uuid.uuid4()}"),
        raw_cursor(f"{LIST_TAG}|2026-13-03T10:20:00.000000+00:00|{uuid.uuid4()}"),
        raw_cursor(f"{LIST_TAG}|2026-05-03T10:20:00.000000+00:00|{uuid.uuid4().hex}"),  # not the canonical id
        raw_cursor(f"{LIST_TAG}|2026-05-03T10:20:00.000000+00:00|{uuid.uuid4()}|x"),
        raw_cursor(f"{LIST_TAG}|2026-05-03T10:20:00.000000+00:00|{uuid.uuid4()}") + "=",  # padded
        raw_cursor(f"{LIST_TAG}|2026-05-03T10:20:00.000000+00:00|{uuid.uuid4()}")[:-1] + "~",
        raw_cursor("é|2026-05-03T10:20:00.000000+00:00|x".encode().decode("latin-1")),
    ],
)
def test_a_bad_cursor_is_invalid_request(api, render, cursor):
    response = api.get("/v1/renders", {"cursor": cursor})
    assert_envelope(response, 400, "invalid_request", "Invalid value for: cursor.",
                    issues=invalid("cursor", BAD_CURSOR))


def test_a_cursor_with_non_canonical_trailing_bits_is_invalid_request(api, project, make_render, clock):
    make_render(project)
    clock.shift(1)
    make_render(project)
    cursor = api.get("/v1/renders", {"limit": 1}).json()["nextCursor"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    tweaked = [cursor[:-1] + other for other in alphabet if other != cursor[-1]
               and base64.urlsafe_b64decode(cursor[:-1] + other + "=" * (-len(cursor) % 4))
               == base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))]
    assert tweaked  # the same bytes spelled differently
    for spelling in tweaked:
        response = api.get("/v1/renders", {"cursor": spelling})
        assert_envelope(response, 400, "invalid_request", issues=invalid("cursor", BAD_CURSOR))


def test_a_render_list_cursor_of_another_project_is_refused(api, project, make_project, make_key, make_client,
                                                            make_render, clock):
    other = make_project()
    for _ in range(2):
        make_render(other)
        clock.shift(1)
    foreign_cursor = make_client(make_key(other).raw_key).get("/v1/renders", {"limit": 1}).json()["nextCursor"]
    assert foreign_cursor is not None
    make_render(project)

    response = api.get("/v1/renders", {"cursor": foreign_cursor})

    assert_envelope(response, 400, "invalid_request", "Invalid value for: cursor.",
                    issues=invalid("cursor", "A cursor of another list: pass the nextCursor this list returned."))


def test_a_bad_limit_and_a_bad_cursor_are_named_together(api, render):
    response = api.get("/v1/renders", {"limit": "0", "cursor": "A" * 200})
    assert_envelope(response, 400, "invalid_request", "Invalid value for: limit, cursor.",
                    issues={"formErrors": [], "fieldErrors": {"limit": [BAD_LIMIT], "cursor": [BAD_CURSOR]}})


# Detail and download ---------------------------------------------------------------------


def test_the_detail_is_the_render_object(api, clock):
    uploaded = upload(api, name="Quote").json()
    response = api.get(f"/v1/renders/{uploaded['id']}")
    assert response.status_code == 200
    assert response.json() == uploaded


def test_the_download_is_the_pdf_streamed_as_an_attachment(api, render):
    response = api.get(f"/v1/renders/{render.id}/download")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="Quote.pdf"'
    assert b"".join(response.streaming_content) == PDF_BYTES


def test_the_api_answers_json_whatever_accept_asks_for(api, render):
    response = api.get(f"/v1/renders/{render.id}", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json()["id"] == str(render.id)


# Malformed ids, wrong methods, unknown paths ---------------------------------------------

MALFORMED_IDS = [
    "not-a-uuid",
    "1",
    "00000000-0000-0000-0000-00000000000g",
    "%00",
    "a" * 300,
    "%F0%9F%8E%89",
    "%27%20OR%201=1--",
    str(uuid.uuid4()),  # well formed, but no such render
]


@pytest.mark.parametrize("render_id", MALFORMED_IDS)
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("get", ""), ("get", "/download"), ("get", "/engagement"), ("post", "/events")],
)
def test_a_malformed_or_unknown_render_id_is_not_found(api, render, render_id, method, suffix):
    kwargs = {"data": {"eventType": "viewed"}, "format": "json"} if method == "post" else {}
    response = getattr(api, method)(f"/v1/renders/{render_id}{suffix}", **kwargs)
    assert_envelope(response, 404, "not_found", NO_RENDER)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("put", "/v1/renders", {"GET", "POST"}),
        ("patch", "/v1/renders", {"GET", "POST"}),
        ("delete", "/v1/renders", {"GET", "POST"}),
        ("post", "/v1/renders/{id}", {"GET", "DELETE"}),
        ("put", "/v1/renders/{id}", {"GET", "DELETE"}),
        ("patch", "/v1/renders/{id}", {"GET", "DELETE"}),
        ("trace", "/v1/renders/{id}", {"GET", "DELETE"}),
        ("post", "/v1/renders/{id}/download", {"GET"}),
        ("post", "/v1/renders/{id}/engagement", {"GET"}),
        ("put", "/v1/renders/{id}/events", {"GET", "POST"}),
        ("delete", "/v1/renders/{id}/events", {"GET", "POST"}),
    ],
)
def test_a_wrong_method_is_405_in_the_envelope(api, render, method, path, allowed):
    response = getattr(api, method)(path.format(id=render.id))
    assert_envelope(response, 405, "method_not_allowed", f"Method {method.upper()} is not allowed on this route.")
    assert allowed <= {value.strip() for value in response["Allow"].split(",")}
    assert method.upper() not in response["Allow"]


@pytest.mark.parametrize(
    "path",
    ["/v1/nowhere", "/v1/", "/v1/renders/", "/v1/renders/{id}/unknown", "/v1/renders/{id}/events/", "/v1/render"],
)
def test_an_unknown_v1_path_is_not_found_in_the_envelope(api, render, path):
    response = api.get(path.format(id=render.id))
    assert_envelope(response, 404, "not_found", "No such resource.")


def test_an_unknown_v1_path_is_not_found_in_the_envelope_without_a_key(db):
    from rest_framework.test import APIClient

    assert_envelope(APIClient().post("/v1/nowhere", {}, format="json"), 404, "not_found", "No such resource.")
