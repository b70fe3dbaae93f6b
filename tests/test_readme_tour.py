"""The README's five-minute tour: its ingestion example is dated by the reader's shell (now), so the event
lands inside the demo's retention and shows in the report line that follows it."""

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import connection

from apikeys.services import apikey_issue, project_create

pytestmark = pytest.mark.django_db(transaction=True)

README = Path(__file__).resolve().parent.parent / "README.md"
# Verbatim from the README's tour.
TOUR_INGESTION = (
    'curl -X POST $BASE/v1/messages/events -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \\\n'
    """  -d '{"events": [{"id": "evt-1", "type": "delivered", "messageId": "m-1",
       "channel": "0193c2c3-0000-7000-8000-000000000001", "from": "news@acme.example",
       "recipient": "alice@example.com", "occurredAt": "'"$(date -u +%Y-%m-%dT%H:%M:%SZ)"'"}]}'"""
)
TOUR_REPORT = 'curl -H "Authorization: Bearer $KEY" "$BASE/v1/reports/engagement?group_by=day&identity=acme.example"'


@pytest.fixture
def server(live_server):
    settings_dict = connection.settings_dict  # request threads close their session with each request
    saved = settings_dict["CONN_MAX_AGE"]
    settings_dict["CONN_MAX_AGE"] = 0
    project = project_create(name="tour")
    yield {"BASE": live_server.url, "KEY": apikey_issue(project=project).raw_key}
    settings_dict["CONN_MAX_AGE"] = saved


def run(line: str, server) -> tuple[int, dict]:
    assert shutil.which("curl"), "curl is missing"
    shell_line = "curl -sS -w '\\n%{http_code}' " + line.removeprefix("curl ")
    done = subprocess.run(["bash", "-c", shell_line], env={**os.environ, **server}, capture_output=True, text=True,
                          timeout=30, check=True)
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


def test_the_readme_tour_carries_the_shell_dated_ingestion_line():
    assert TOUR_INGESTION in README.read_text()
    assert TOUR_REPORT in README.read_text()


def test_the_tours_ingested_event_shows_in_todays_report_bucket(server):
    status, accepted = run(TOUR_INGESTION, server)
    assert (status, accepted) == (200, {"accepted": 1, "duplicates": 0})

    status, report = run(TOUR_REPORT, server)

    assert status == 200
    today = datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z")
    assert [(bucket["period"], bucket["delivered"]) for bucket in report["data"]] == [(today, 1)]
