"""Chunked request bodies (CONTRACT section 0): read like any other, or refused with 411, never taken as empty.

Under gunicorn (the production server) the body of a `Transfer-Encoding: chunked` request is delimited by the
server (`wsgi.input_terminated`) and is read to its end, within the route's body limit. A server that gives no
length (Django's runserver, the test client) gets 411 `length_required` in the surface's shape.
"""

import http.client
import io
import json
import socket
from datetime import timedelta

import pytest
from django.db import connection
from django.test.client import FakePayload

from engagement_platform.clock import iso_seconds, now
from reliability.servers import Gunicorn, base_env, database_url_of
from renders.models import EngagementEvent, Share
from reports.models import MessageEvent
from tests.test_reports_helpers import wire_event

EXPIRES_AT = "2031-02-03T04:05:06.000Z"


def chunks(body: bytes, size: int = 7):
    for start in range(0, len(body), size):
        yield body[start:start + size]


def post_chunked(base_port: int, path: str, body: bytes, *, raw_key: str, content_type: str = "application/json"):
    """(status, headers, body) of a POST whose body goes out in 7-byte chunks, with no Content-Length."""
    conn = http.client.HTTPConnection("127.0.0.1", base_port, timeout=30)
    try:
        conn.request("POST", path, body=chunks(body), encode_chunked=True, headers={
            "Authorization": f"Bearer {raw_key}", "Content-Type": content_type, "Transfer-Encoding": "chunked",
        })
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


# -- a real gunicorn reads the chunked body ------------------------------------------------------------------

@pytest.fixture(scope="module")
def gunicorn(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        database_url = database_url_of(connection.settings_dict)
    server = Gunicorn(base_env(DATABASE_URL=database_url), workers=1, threads=2)
    server.start()
    yield server
    server.cleanup()


@pytest.mark.django_db(transaction=True)
def test_a_share_expiry_sent_chunked_to_gunicorn_is_kept(gunicorn, project, make_key, render):
    raw_key = make_key(project).raw_key
    body = json.dumps({"label": "Chunked", "expiresAt": EXPIRES_AT}).encode()

    status, headers, content = post_chunked(gunicorn.port, f"/v1/renders/{render.id}/shares", body, raw_key=raw_key)

    assert status == 201, content
    share = json.loads(content)
    assert (share["label"], share["expiresAt"]) == ("Chunked", EXPIRES_AT)
    assert iso_seconds(Share.objects.get(pk=share["id"]).expires_at) == "2031-02-03T04:05:06Z"


@pytest.mark.django_db(transaction=True)
def test_a_message_batch_sent_chunked_to_gunicorn_is_ingested(gunicorn, project, make_key):
    raw_key = make_key(project).raw_key
    events = [wire_event("delivered", iso_seconds(now() - timedelta(hours=1)), event_id="chunked-1"),
              wire_event("opened", iso_seconds(now() - timedelta(minutes=30)), event_id="chunked-2")]

    status, _, content = post_chunked(gunicorn.port, "/v1/messages/events", json.dumps({"events": events}).encode(),
                                      raw_key=raw_key)

    assert status == 200, content
    assert json.loads(content) == {"accepted": 2, "duplicates": 0}
    assert MessageEvent.objects.filter(project=project).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_past_the_route_limit_is_413_from_gunicorn(gunicorn, project, make_key, render):
    raw_key = make_key(project).raw_key
    body = json.dumps({"label": "x" * (64 * 1024)}).encode()  # the shares route takes 16 KiB

    status, headers, content = post_chunked(gunicorn.port, f"/v1/renders/{render.id}/shares", body, raw_key=raw_key)

    assert status == 413
    assert headers["Content-Type"] == "application/json"
    assert json.loads(content)["error"]["code"] == "payload_too_large"
    assert not Share.objects.filter(render=render).exists()


@pytest.mark.django_db(transaction=True)
def test_a_malformed_chunked_body_is_a_400_not_a_500_from_gunicorn(gunicorn, project, make_key, render):
    raw_key = make_key(project).raw_key
    request = (f"POST /v1/renders/{render.id}/shares HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Bearer {raw_key}\r\nContent-Type: application/json\r\n"
               "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               "2\r\n{}\r\nZZ\r\nnot a chunk size\r\n0\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", gunicorn.port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while data := sock.recv(65536):
            answer += data

    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"400", answer[:500]
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["code"] == "invalid_request"
    assert not Share.objects.filter(render=render).exists()


# -- in process: the same rule, with and without a server-delimited input ------------------------------------


def chunked_request(client, path: str, body: bytes, *, terminated: bool, content_type="application/json"):
    """A POST with `Transfer-Encoding: chunked` and no CONTENT_LENGTH, as a WSGI server hands it on (dechunked)."""
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "CONTENT_TYPE": content_type,
               "HTTP_TRANSFER_ENCODING": "chunked"}
    if terminated:
        environ.update({"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True})
    else:
        environ["wsgi.input"] = FakePayload(body)
    return client.request(**environ)


@pytest.mark.django_db
def test_a_chunked_body_on_a_terminated_input_is_read(api, render):
    body = json.dumps({"expiresAt": EXPIRES_AT}).encode()

    response = chunked_request(api, f"/v1/renders/{render.id}/shares", body, terminated=True)

    assert response.status_code == 201, response.content
    assert response.json()["expiresAt"] == EXPIRES_AT


@pytest.mark.django_db
def test_an_empty_chunked_body_is_not_json_on_the_events_route(api, render):
    response = chunked_request(api, f"/v1/renders/{render.id}/events", b"", terminated=True)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


@pytest.mark.django_db
def test_a_chunked_body_without_a_server_delimited_input_is_411_on_the_render_side(api, render):
    body = json.dumps({"expiresAt": EXPIRES_AT}).encode()

    response = chunked_request(api, f"/v1/renders/{render.id}/shares", body, terminated=False)

    assert response.status_code == 411
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "length_required"
    assert error["requestId"] == response["X-Request-Id"]
    assert not Share.objects.filter(render=render).exists()


@pytest.mark.django_db
def test_a_chunked_body_without_a_server_delimited_input_is_411_problem_on_the_report_side(api, project):
    body = json.dumps({"events": [wire_event("delivered", iso_seconds(now()))]}).encode()

    response = chunked_request(api, "/v1/messages/events", body, terminated=False)

    assert response.status_code == 411
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert (problem["status"], problem["code"], problem["request_id"]) == (411, "length_required",
                                                                         response["X-Request-Id"])
    assert not MessageEvent.objects.filter(project=project).exists()


@pytest.mark.django_db
def test_a_chunked_post_to_a_public_route_without_a_delimited_input_is_a_411_page(client, api, render):
    token = api.post(f"/v1/renders/{render.id}/shares", {}, format="json").json()["url"].rsplit("/", 1)[1]

    response = chunked_request(client, f"/s/{token}/print", b"", terminated=False)

    assert response.status_code == 411
    assert response["Content-Type"].startswith("text/html")
    assert not EngagementEvent.objects.filter(render=render, event_type="printed").exists()


@pytest.mark.django_db(transaction=True)
def test_a_query_string_past_four_kib_is_answered_by_the_platform_not_refused_by_the_server(gunicorn, project,
                                                                                           make_key, render):
    """gunicorn.conf.py raises the request-line limit: a long malformed query is the API's 400, not a bare 414."""
    raw_key = make_key(project).raw_key
    query = "&".join(["limit=%C3%A9%C3%A9%C3%A9%C3%A9"] * 200)  # about 6 KiB of request line
    conn = http.client.HTTPConnection("127.0.0.1", gunicorn.port, timeout=30)
    try:
        conn.request("GET", f"/v1/renders/{render.id}/shares?{query}", headers={"Authorization": f"Bearer {raw_key}"})
        response = conn.getresponse()
        status, content = response.status, response.read()
    finally:
        conn.close()

    assert len(query) > 4096
    assert status == 400, content
    assert json.loads(content)["error"]["code"] == "invalid_request"
