"""Server faults and unknown paths (CONTRACT sections 0, 3.2 and 5).

Every 500, on every path (public pages included), is logged once, with its traceback, the request id and the
path with any token masked. Unknown paths under /v1 answer 404 in their surface's shape whatever DEBUG is, and
`/` is a small page pointing to the docs and the admin.
"""

import json
import logging

import pytest
from django.test import Client

from engagement_platform.logging import JsonFormatter

pytestmark = pytest.mark.django_db


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def logged():
    """Every record that reaches a handler of the platform's, Django's or the root logger."""
    handler = ListHandler()
    loggers = [logging.getLogger(name) for name in ("", "engagement_platform", "django", "django.request")]
    for lg in loggers:
        lg.addHandler(handler)
    yield handler.records
    for lg in loggers:
        lg.removeHandler(handler)


def errors_in(records) -> list[logging.LogRecord]:
    return [record for record in records if record.levelno >= logging.ERROR]


def as_lines(records) -> str:
    formatter = JsonFormatter()
    return "\n".join(formatter.format(record) for record in records)


@pytest.fixture
def share_token(api, render):
    return api.post(f"/v1/renders/{render.id}/shares", {}, format="json").json()["url"].rsplit("/", 1)[1]


@pytest.fixture
def missing_file(render):
    """The render's PDF gone from storage behind the platform's back."""
    render.file.storage.delete(render.file.name)
    assert not render.file.storage.exists(render.file.name)
    return render


# -- a missing file is a server fault, logged once ------------------------------------------------------------

@pytest.mark.parametrize(("route", "masked"), [("/s/{token}/file", "/s/[token]/file"),
                                               ("/s/{token}/download", "/s/[token]/download")])
def test_a_missing_file_on_a_public_route_is_a_500_page_logged_once_with_traceback_and_request_id(
        route, masked, share_token, missing_file, logged):
    response = Client(raise_request_exception=False).get(route.format(token=share_token))

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
    [error] = errors_in(logged)
    assert error.exc_info is not None and error.exc_info[0] is FileNotFoundError
    assert (error.request_id, error.path) == (response["X-Request-Id"], masked)
    line = json.loads(as_lines([error]))
    assert "Traceback" in line["exception"] and line["request_id"] == response["X-Request-Id"]
    assert share_token not in as_lines(logged)


def test_a_missing_file_on_a_public_route_under_debug_is_logged_once_too(share_token, missing_file, logged, settings):
    settings.DEBUG = True  # Django's debug page answers instead of handler500

    response = Client(raise_request_exception=False).get(f"/s/{share_token}/file")

    assert response.status_code == 500
    [error] = errors_in(logged)
    assert error.exc_info[0] is FileNotFoundError
    assert (error.request_id, error.path) == (response["X-Request-Id"], "/s/[token]/file")


def test_a_missing_file_on_the_api_download_is_a_500_envelope_logged_once(api, missing_file, logged):
    response = api.get(f"/v1/renders/{missing_file.id}/download")

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "internal_error"
    assert response.json()["error"]["requestId"] == response["X-Request-Id"]
    [error] = errors_in(logged)
    assert error.exc_info[0] is FileNotFoundError
    assert (error.request_id, error.path) == (response["X-Request-Id"], f"/v1/renders/{missing_file.id}/download")
    assert "Traceback" in json.loads(as_lines([error]))["exception"]


def test_the_request_line_of_a_server_fault_is_info_and_the_only_other_record(share_token, missing_file, logged):
    response = Client(raise_request_exception=False).get(f"/s/{share_token}/file")

    ours = [(record.name, record.levelname, getattr(record, "status", None)) for record in logged]
    assert ours == [("engagement_platform.errors", "ERROR", None),
                    ("engagement_platform.request", "INFO", 500)]
    assert logged[1].request_id == response["X-Request-Id"]


def test_a_client_error_on_a_public_route_logs_no_error(client, db, logged):
    response = client.get("/s/no-such-token/file")

    assert response.status_code == 404
    assert errors_in(logged) == []


# -- a fault outside any view (a middleware) is logged once too -------------------------------------------------

class FailingMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        raise RuntimeError("a middleware failed")


@pytest.fixture
def failing_middleware(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.test_errors_logging.FailingMiddleware"]


def test_a_fault_in_a_middleware_on_a_page_is_a_500_page_logged_once(failing_middleware, logged):
    response = Client(raise_request_exception=False).get("/healthz")

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
    [error] = errors_in(logged)
    assert error.exc_info[0] is RuntimeError
    assert (error.request_id, error.path) == (response["X-Request-Id"], "/healthz")


def test_a_fault_in_a_middleware_under_v1_is_a_500_problem_logged_once(failing_middleware, logged):
    response = Client(raise_request_exception=False).get("/v1/reports/engagement")

    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    assert (response.json()["code"], response.json()["request_id"]) == ("internal_error", response["X-Request-Id"])
    [error] = errors_in(logged)
    assert error.exc_info[0] is RuntimeError and error.request_id == response["X-Request-Id"]


# -- unknown /v1 paths -------------------------------------------------------------------------------------------

RENDER_SIDE_UNKNOWN = ["/v1/renders/", "/v1/nothing-here", "/v1", "/v1/", "/v1/renders/abc/shares/def/extra"]
REPORT_SIDE_UNKNOWN = ["/v1/reports/engagement/", "/v1/reports/other", "/v1/messages/", "/v1/messages/events/x"]


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
@pytest.mark.parametrize("path", RENDER_SIDE_UNKNOWN)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_unknown_render_side_path_is_a_404_envelope_whatever_debug(path, method, debug, settings, api, logged):
    settings.DEBUG = debug

    response = api.generic(method, path)

    assert response.status_code == 404, response.content[:300]
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": {"code": "not_found", "message": response.json()["error"]["message"],
                                         "requestId": response["X-Request-Id"]}}
    assert errors_in(logged) == []


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
@pytest.mark.parametrize("path", REPORT_SIDE_UNKNOWN)
def test_an_unknown_report_side_path_is_a_404_problem_whatever_debug(path, debug, settings, client):
    settings.DEBUG = debug

    response = client.get(path)

    assert response.status_code == 404, response.content[:300]
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["code"], body["request_id"]) == (404, "not_found", response["X-Request-Id"])
    assert body["type"].endswith("/not_found")


# -- the root page -----------------------------------------------------------------------------------------------

def test_the_root_is_a_small_page_linking_the_docs_and_the_admin(client):
    response = client.get("/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert 'href="/docs"' in page and 'href="/admin/"' in page
    assert client.get("/docs").status_code == 200

