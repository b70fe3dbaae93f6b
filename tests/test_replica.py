"""Section 10, read replica: the report, the event log, visits, pages and exports read from a real
streaming replica.

The module starts its own pair (a primary postmaster, and a hot standby made from it by
`pg_basebackup -R`), its own Redis (the shared cache holding each project's last write) and a gunicorn
serving the platform with `DATABASE_URL` on the primary and `DATABASE_REPLICA_URL` on the standby, once
for all its tests. Which database answered is shown by the standby's lag: with its replay paused, a read
that reaches it does not see a write the primary has. The server runs one worker with one thread, so
the replica connection a read leaves open is the one the next read uses (a replica stopped under it
fails the read itself, not its connection attempt).
"""

import csv
import glob
import io
import json
import re
import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
import requests
from django.db import connection

from reliability.servers import (
    Gunicorn,
    StreamingReplica,
    ThrowawayPostgres,
    ThrowawayRedis,
    base_env,
    free_port_in,
    manage,
)
from tests.conftest import PDF_BYTES

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="a streaming replica is PostgreSQL's"),
    pytest.mark.skipif(not glob.glob("/usr/lib/postgresql/*/bin/pg_basebackup"),
                       reason="PostgreSQL's server binaries (pg_basebackup, postgres) are not installed"),
]

POSTMASTER_PORTS = (55400, 55449)
HTTP_PORTS = (8400, 8449)
WINDOW_SECONDS = 1.0  # READ_YOUR_WRITES_SECONDS of the server under test
RETRY_SECONDS = 1.0  # DATABASE_REPLICA_RETRY_SECONDS
CHANNEL = "0193c2c3-0000-7000-8000-0000000000aa"


class Pair:
    def __init__(self, primary, replica, server, key, env):
        self.primary, self.replica, self.server, self.env = primary, replica, server, env
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {key}"

    def url(self, path: str) -> str:
        return self.server.base_url + path

    def sql(self, which, statement: str):
        with psycopg.connect(which.database_url("platform"), autocommit=True, connect_timeout=3) as conn:
            return conn.execute(statement).fetchone()

    def pause_replay(self) -> None:
        self.sql(self.replica, "SELECT pg_wal_replay_pause()")

    def resume_replay_and_catch_up(self) -> None:
        self.sql(self.replica, "SELECT pg_wal_replay_resume()")
        (target,) = self.sql(self.primary, "SELECT pg_current_wal_insert_lsn()::text")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            (caught_up,) = self.sql(self.replica, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")
            if caught_up:
                return
            time.sleep(0.05)
        raise AssertionError("the replica did not catch up")

    def wait_out_the_window(self, since: float) -> None:
        remaining = since + WINDOW_SECONDS + 0.2 - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)


@pytest.fixture(scope="module")
def pair():
    primary = ThrowawayPostgres(free_port_in(*POSTMASTER_PORTS))
    replica = redis = server = None
    try:
        primary.start()
        primary.create_database("platform")
        redis = ThrowawayRedis(free_port_in(*HTTP_PORTS))
        redis.start()
        env = base_env(DATABASE_URL=primary.database_url("platform"), CACHE_URL=redis.url)
        manage("migrate", "--noinput", "-v", "0", env=env)
        project_id = manage("createproject", "Replicated", env=env).stdout.split()[-1]
        key = manage("createapikey", "--project", project_id, "--name", "replica-test", env=env).stdout.split()[-1]
        replica = StreamingReplica(primary, free_port_in(*POSTMASTER_PORTS))
        replica.start()
        server = Gunicorn({**env, "DATABASE_REPLICA_URL": replica.database_url("platform"),
                           "READ_YOUR_WRITES_SECONDS": str(WINDOW_SECONDS),
                           "DATABASE_REPLICA_RETRY_SECONDS": str(RETRY_SECONDS),
                           "REPORT_CACHE_SECONDS": "0", "SUMMARY_CACHE_SECONDS": "0"},
                          workers=1, threads=1, port=free_port_in(*HTTP_PORTS))
        server.start()
        yield Pair(primary, replica, server, key, env)
    finally:
        if server is not None:
            server.cleanup()
        if replica is not None:
            replica.destroy()
        if redis is not None:
            redis.stop()
        primary.destroy()


@pytest.fixture
def render_id(pair):
    response = pair.http.post(pair.url("/v1/renders"), files={"file": ("q.pdf", PDF_BYTES, "application/pdf")},
                              data={"name": "Quote"})
    assert response.status_code == 201, response.text
    pair.resume_replay_and_catch_up()
    return response.json()["id"]


_sources = iter(range(1, 250))


def record(pair, render_id: str, source: str) -> float:
    """Record a partner download (from an address of its own, so the dedupe window never joins two)."""
    response = pair.http.post(pair.url(f"/v1/renders/{render_id}/events"),
                              json={"eventType": "downloaded", "metadata": {"source": source}},
                              headers={"X-Forwarded-For": f"10.0.0.{next(_sources)}"})
    assert response.status_code == 200 and response.json() == {"recorded": True}, response.text
    return time.monotonic()


def logged_sources(pair, render_id: str) -> list[str]:
    response = pair.http.get(pair.url(f"/v1/renders/{render_id}/events"))
    assert response.status_code == 200, response.text
    return [event["metadata"]["source"] for event in response.json()["data"]]


def ingest_open(pair, recipient: str) -> float:
    occurred = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = pair.http.post(pair.url("/v1/messages/events"), json={"events": [{
        "id": f"evt-{uuid.uuid4()}", "type": "opened", "messageId": f"m-{recipient}", "channel": CHANNEL,
        "from": "news@acme.example", "recipient": recipient, "occurredAt": occurred}]})
    assert response.status_code == 200 and response.json()["accepted"] == 1, response.text
    return time.monotonic()


def report_opens(pair) -> int:
    response = pair.http.get(pair.url("/v1/reports/engagement"), headers={"Cache-Control": "no-cache"})
    assert response.status_code == 200, response.text
    return sum(bucket["opens"] for bucket in response.json()["data"])


def test_a_read_within_the_window_sees_the_write_even_while_the_replica_lags(pair, render_id):
    pair.pause_replay()
    try:
        record(pair, render_id, "first")
        assert logged_sources(pair, render_id) == ["first"]  # the primary: the project just wrote
    finally:
        pair.resume_replay_and_catch_up()


def test_a_read_outside_the_window_reads_the_lagging_replica(pair, render_id):
    record(pair, render_id, "replicated")
    pair.resume_replay_and_catch_up()
    pair.pause_replay()
    try:
        written_at = record(pair, render_id, "not-yet-replayed")
        assert logged_sources(pair, render_id) == ["not-yet-replayed", "replicated"]
        pair.wait_out_the_window(written_at)

        # Outside the window the event log comes from the replica, which has not replayed the last write.
        assert logged_sources(pair, render_id) == ["replicated"]
    finally:
        pair.resume_replay_and_catch_up()
    assert logged_sources(pair, render_id) == ["not-yet-replayed", "replicated"]


def test_the_report_reads_the_replica_outside_the_window_and_the_primary_within_it(pair):
    pair.resume_replay_and_catch_up()
    before = report_opens(pair)
    pair.pause_replay()
    try:
        written_at = ingest_open(pair, f"{uuid.uuid4().hex[:8]}@example.org")
        assert report_opens(pair) == before + 1
        pair.wait_out_the_window(written_at)
        assert report_opens(pair) == before  # the paused replica
    finally:
        pair.resume_replay_and_catch_up()
    assert report_opens(pair) == before + 1


def test_reads_still_answer_with_the_replica_stopped_and_return_to_it_once_it_is_back(pair, render_id):
    written_at = record(pair, render_id, "before-the-stop")
    pair.resume_replay_and_catch_up()
    pair.wait_out_the_window(written_at)
    assert logged_sources(pair, render_id) == ["before-the-stop"]  # kept replica connections now
    before_report = report_opens(pair)

    pair.replica.stop("immediate")
    try:
        started = time.monotonic()
        assert logged_sources(pair, render_id) == ["before-the-stop"]  # the primary answers
        assert report_opens(pair) == before_report
        assert logged_sources(pair, render_id) == ["before-the-stop"]  # marked down: no reconnect attempt
        assert time.monotonic() - started < 3
        written_at = record(pair, render_id, "while-stopped")
        pair.wait_out_the_window(written_at)
        assert logged_sources(pair, render_id) == ["while-stopped", "before-the-stop"]
    finally:
        pair.replica.start()

    # Back after the retry period: a paused replica is read again (it lacks the next write).
    pair.resume_replay_and_catch_up()
    pair.pause_replay()
    try:
        written_at = record(pair, render_id, "after-the-restart")
        time.sleep(RETRY_SECONDS)
        pair.wait_out_the_window(written_at)
        assert logged_sources(pair, render_id) == ["while-stopped", "before-the-stop"]
    finally:
        pair.resume_replay_and_catch_up()


# Visits and pages ------------------------------------------------------------------------------------------------

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"


def share_token(pair, render_id: str) -> str:
    response = pair.http.post(pair.url(f"/v1/renders/{render_id}/shares"), json={"label": "Reader"})
    assert response.status_code == 201, response.text
    return response.json()["url"].rsplit("/s/", 1)[1]


def read_the_share(pair, token: str, ms: int) -> str:
    """A new viewer opens the share page and reads page 1 for `ms`; the visit's id. (The share page's writes
    are the viewers', not the project's API client's: they open no read-your-writes window.)"""
    viewer = requests.Session()
    viewer.headers.update({"User-Agent": BROWSER, "X-Forwarded-For": f"10.0.1.{next(_sources)}"})
    page = viewer.get(pair.url(f"/s/{token}"))
    assert page.status_code == 200, page.text
    visit = re.search(r'data-visit="([0-9a-f-]{36})"', page.text).group(1)
    reported = viewer.post(pair.url(f"/s/{token}/activity"), json={"visit": visit, "pages": [{"page": 1, "ms": ms}]})
    assert reported.status_code == 204, reported.text
    return visit


def visit_ids(pair, render_id: str) -> list[str]:
    response = pair.http.get(pair.url(f"/v1/renders/{render_id}/visits"))
    assert response.status_code == 200, response.text
    return [visit["id"] for visit in response.json()["data"]]


def page_one(pair, render_id: str) -> tuple[int, int, int]:
    """(visits in all, page 1's visits, page 1's reading time) from GET /v1/renders/:id/pages."""
    response = pair.http.get(pair.url(f"/v1/renders/{render_id}/pages"))
    assert response.status_code == 200, response.text
    body = response.json()
    return body["visits"], body["data"][0]["visits"], body["data"][0]["totalMs"]


@pytest.fixture
def token(pair, render_id):
    token = share_token(pair, render_id)
    read_the_share(pair, token, 2000)
    pair.resume_replay_and_catch_up()
    return token


def test_visits_and_pages_read_the_lagging_replica_outside_the_window_and_the_primary_within_it(
        pair, render_id, token):
    first = visit_ids(pair, render_id)
    pair.wait_out_the_window(time.monotonic())
    pair.pause_replay()
    try:
        second = read_the_share(pair, token, 3000)
        # No API write since: the replica answers, without the second visit.
        assert visit_ids(pair, render_id) == first
        assert page_one(pair, render_id) == (1, 1, 2000)

        written_at = record(pair, render_id, "a-write-of-the-project")
        assert visit_ids(pair, render_id) == [second, *first]  # within the window: the primary
        assert page_one(pair, render_id) == (2, 2, 5000)
        pair.wait_out_the_window(written_at)

        assert visit_ids(pair, render_id) == first  # the paused replica again
        assert page_one(pair, render_id) == (1, 1, 2000)
    finally:
        pair.resume_replay_and_catch_up()
    assert visit_ids(pair, render_id) == [second, *first]
    assert page_one(pair, render_id) == (2, 2, 5000)


def test_another_projects_render_answers_404_through_the_replica_as_a_missing_one(pair, render_id):
    project_id = manage("createproject", "Elsewhere", env=pair.env).stdout.split()[-1]
    other_key = manage("createapikey", "--project", project_id, "--name", "elsewhere", env=pair.env).stdout.split()[-1]
    other = requests.post(pair.url("/v1/renders"), files={"file": ("q.pdf", PDF_BYTES, "application/pdf")},
                          headers={"Authorization": f"Bearer {other_key}"})
    assert other.status_code == 201, other.text
    pair.resume_replay_and_catch_up()
    pair.wait_out_the_window(time.monotonic())

    for route in ("visits", "pages", "events?format=ndjson"):
        foreign = pair.http.get(pair.url(f"/v1/renders/{other.json()['id']}/{route}"))
        missing = pair.http.get(pair.url(f"/v1/renders/{uuid.uuid4()}/{route}"))
        assert foreign.status_code == missing.status_code == 404, route
        assert without_request_id(foreign.json()) == without_request_id(missing.json())


def without_request_id(body: dict) -> dict:
    return {"error": {key: value for key, value in body["error"].items() if key != "requestId"}}


# Exports ---------------------------------------------------------------------------------------------------------


def exported_sources(pair, render_id: str, export_format: str) -> list[str]:
    """The `source` of each partner event in the render's event export, oldest first."""
    response = pair.http.get(pair.url(f"/v1/renders/{render_id}/events"), params={"format": export_format})
    assert response.status_code == 200 and response.headers["Content-Disposition"].startswith("attachment"), \
        response.text
    if export_format == "csv":
        lines = [json.loads(row["metadata"] or "null") for row in csv.DictReader(io.StringIO(response.text))]
    else:
        lines = [json.loads(line)["metadata"] for line in response.text.splitlines()]
    return [metadata["source"] for metadata in lines if metadata]  # partner events (a share page view has none)


def exported_recipients(pair, export_format: str) -> set[str]:
    response = pair.http.get(pair.url("/v1/messages/events"), params={"format": export_format})
    assert response.status_code == 200 and response.headers["Content-Disposition"].startswith("attachment"), \
        response.text
    if export_format == "csv":
        return {row["recipient"] for row in csv.DictReader(io.StringIO(response.text))}
    return {json.loads(line)["recipient"] for line in response.text.splitlines()}


def report_csv_opens(pair, **how) -> int:
    response = pair.http.get(pair.url("/v1/reports/engagement"), **how)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv"), response.text
    return sum(int(row["opens"]) for row in csv.DictReader(io.StringIO(response.text)))


def every_export(pair, render_id: str) -> dict:
    """What each export shows: the render's event sources (NDJSON, CSV), the message recipients (NDJSON, CSV)
    and the report's opens (format=csv, Accept: text/csv)."""
    return {"render ndjson": exported_sources(pair, render_id, "ndjson"),
            "render csv": exported_sources(pair, render_id, "csv"),
            "messages ndjson": exported_recipients(pair, "ndjson"),
            "messages csv": exported_recipients(pair, "csv"),
            "report format=csv": report_csv_opens(pair, params={"format": "csv"}),
            "report Accept": report_csv_opens(pair, headers={"Accept": "text/csv"})}


def test_exports_read_the_lagging_replica_outside_the_window_and_the_primary_within_it(pair, render_id):
    record(pair, render_id, "replicated")
    ingest_open(pair, "replicated@example.org")
    pair.resume_replay_and_catch_up()
    before = every_export(pair, render_id)
    assert before["render ndjson"] == before["render csv"] == ["replicated"]
    assert {"replicated@example.org"} <= before["messages ndjson"] == before["messages csv"]
    recipient = f"{uuid.uuid4().hex[:8]}@example.org"
    after = {**before, "render ndjson": ["replicated", "not-yet-replayed"],
             "render csv": ["replicated", "not-yet-replayed"],
             "messages ndjson": before["messages ndjson"] | {recipient},
             "messages csv": before["messages csv"] | {recipient},
             "report format=csv": before["report format=csv"] + 1, "report Accept": before["report Accept"] + 1}

    pair.pause_replay()
    try:
        record(pair, render_id, "not-yet-replayed")
        written_at = ingest_open(pair, recipient)
        assert every_export(pair, render_id) == after  # within the window: the primary
        pair.wait_out_the_window(written_at)
        assert every_export(pair, render_id) == before  # the paused replica
    finally:
        pair.resume_replay_and_catch_up()
    assert every_export(pair, render_id) == after


def test_visits_pages_and_exports_answer_from_the_primary_with_the_replica_stopped(pair, render_id, token):
    written_at = record(pair, render_id, "before-the-stop")
    pair.resume_replay_and_catch_up()
    pair.wait_out_the_window(written_at)
    expected = exported_sources(pair, render_id, "ndjson")
    visits, pages = visit_ids(pair, render_id), page_one(pair, render_id)
    assert expected == ["before-the-stop"] and len(visits) == 1 and pages == (1, 1, 2000)
    log_before = len(pair.server.read_log())

    pair.replica.stop("immediate")
    try:
        # The kept replica connection fails under the export's first chunk: the primary's export answers.
        assert exported_sources(pair, render_id, "ndjson") == expected
        assert "stream cut short" not in pair.server.read_log()[log_before:]
        assert visit_ids(pair, render_id) == visits
        assert page_one(pair, render_id) == pages
        time.sleep(RETRY_SECONDS)  # the down mark gone: each read tries the replica again, and falls back
        assert exported_sources(pair, render_id, "csv") == expected
        assert page_one(pair, render_id) == pages
        assert visit_ids(pair, render_id) == visits
        assert "replica unavailable" in pair.server.read_log()[log_before:]
    finally:
        pair.replica.start()
    pair.resume_replay_and_catch_up()
