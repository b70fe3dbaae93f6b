"""The seeds' quick-start examples, run unchanged against a real local server but for base URL, key and ids.

The examples are copied verbatim below from the seed documents beside the contract (shared/seeds/); when
those documents are present, each copy is checked against its source, so a changed seed fails here.
Only the base URL, the key (through the environment variable the example reads) and the render id
(the seeds' `0193c2c3` is not an id of this server) change.
"""

import json
import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from apikeys.services import apikey_issue, project_create
from engagement_platform.clock import iso_seconds, now
from renders.services import render_create
from tests.conftest import PDF_BYTES
from tests.test_reports_helpers import ingest, wire_event

pytestmark = pytest.mark.django_db(transaction=True)

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
CRAFTKIT_BASE = "https://api.craftkit.dev"
SENDOPS_BASE = "https://api.sendops.dev"
SEED_RENDER_ID = "0193c2c3"

# craftkit-engagement-and-events.md, "Quick Start", Python
PYTHON_EXAMPLE = '''import os, requests
headers = {"Authorization": f"Bearer {os.environ['CRAFTKIT_API_KEY']}"}
summary = requests.get(
"https://api.craftkit.dev/v1/renders/0193c2c3/engagement",
headers=headers,
).json()
res = requests.post(
"https://api.craftkit.dev/v1/renders/0193c2c3/events",
headers=headers,
json={"eventType": "viewed", "metadata": {"source": "dashboard"}},
)
recorded = res.json()["recorded"]'''

# craftkit-engagement-and-events.md, "Quick Start", curl
CURL_READ_SUMMARY = '''curl https://api.craftkit.dev/v1/renders/0193c2c3/engagement \\
-H "Authorization: Bearer $CRAFTKIT_API_KEY"'''
CURL_RECORD_EVENT = '''curl -X POST https://api.craftkit.dev/v1/renders/0193c2c3/events \\
-H "Authorization: Bearer $CRAFTKIT_API_KEY" \\
-H "Content-Type: application/json" \\
-d '{ "eventType": "downloaded", "metadata": { "source": "dashboard" } }\''''
# craftkit-get-engagement.md, cURL example
CURL_GET_ENGAGEMENT = '''curl https://api.craftkit.dev/v1/renders/$RENDER_ID/engagement \\
  -H "Authorization: Bearer $CRAFTKIT_API_KEY"'''
# sendops-engagement-report.md, "Example request"
CURL_REPORT = '''curl 'https://api.sendops.dev/v1/reports/engagement' \\
  -H "Authorization: Bearer $SENDOPS_API_KEY"'''

COPIES = [
    ("craftkit-engagement-and-events.md", PYTHON_EXAMPLE),
    ("craftkit-engagement-and-events.md", CURL_READ_SUMMARY),
    ("craftkit-engagement-and-events.md", CURL_RECORD_EVENT),
    ("craftkit-get-engagement.md", CURL_GET_ENGAGEMENT),
    ("sendops-engagement-report.md", CURL_REPORT),
]


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the seed documents are not beside this checkout")
@pytest.mark.parametrize(("seed", "copy"), COPIES)
def test_copied_examples_are_verbatim_from_the_seeds(seed, copy):
    assert copy in (SEEDS / seed).read_text()


@pytest.fixture
def server(live_server):
    """A project with a render, two days of message traffic and a key, behind a real HTTP server."""
    settings_dict = connection.settings_dict  # request threads close their session with each request
    saved = settings_dict["CONN_MAX_AGE"]
    settings_dict["CONN_MAX_AGE"] = 0
    project = project_create(name="quick-start")
    render = render_create(project=project, uploaded_file=SimpleUploadedFile("Quote.pdf", PDF_BYTES),
                           name="Quote.pdf")
    yesterday, today = now() - timedelta(days=1), now() - timedelta(minutes=5)
    ingest(project, [
        wire_event("sent", iso_seconds(yesterday), recipient="a@example.org", event_id="q-1"),
        wire_event("delivered", iso_seconds(yesterday), recipient="a@example.org", event_id="q-2"),
        wire_event("opened", iso_seconds(today), recipient="a@example.org", event_id="q-3"),
    ])
    yield {"url": live_server.url, "key": apikey_issue(project=project).raw_key, "render_id": str(render.id)}
    settings_dict["CONN_MAX_AGE"] = saved


def localize(text: str, server) -> str:
    return (text.replace(CRAFTKIT_BASE, server["url"]).replace(SENDOPS_BASE, server["url"])
            .replace(SEED_RENDER_ID, server["render_id"]))


def run_curl(command: str, server) -> tuple[int, dict | list]:
    """Run a seed's curl line in a shell with its variables set; add only flags that report the status."""
    assert shutil.which("curl"), "curl is missing"
    assert command.startswith("curl ")
    environ = {**os.environ, "CRAFTKIT_API_KEY": server["key"], "SENDOPS_API_KEY": server["key"],
               "RENDER_ID": server["render_id"]}
    shell_line = "curl -sS -w '\\n%{http_code}' " + localize(command, server).removeprefix("curl ")
    done = subprocess.run(["bash", "-c", shell_line], env=environ, capture_output=True, text=True, timeout=30,
                          check=True)
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


def test_python_example_reads_the_summary_and_records_an_event(server, monkeypatch):
    monkeypatch.setenv("CRAFTKIT_API_KEY", server["key"])
    namespace = {}

    exec(compile(localize(PYTHON_EXAMPLE, server), "craftkit-engagement-and-events.md", "exec"), namespace)

    assert namespace["recorded"] is True
    assert namespace["res"].status_code == 200
    summary = namespace["summary"]
    assert set(summary["counts"]) == {"viewed", "downloaded", "printed", "email_opened", "email_sent",
                                      "share_created", "share_revoked"}
    assert (summary["total"], summary["linkOpens"], summary["recent"]) == (0, 0, [])
    after = requests.get(f"{server['url']}/v1/renders/{server['render_id']}/engagement",
                         headers={"Authorization": f"Bearer {server['key']}"}, timeout=10).json()
    assert after["counts"]["viewed"] == 1
    assert after["recent"][0]["metadata"] == {"source": "dashboard"}
    assert after["recent"][0]["actorKind"] == "partner"

    exec(compile(localize(PYTHON_EXAMPLE, server), "craftkit-engagement-and-events.md", "exec"), namespace)
    assert namespace["recorded"] is False  # the same view again within five minutes is deduped


def test_curl_examples_of_both_apis_answer(server):
    status, summary = run_curl(CURL_READ_SUMMARY, server)
    assert status == 200 and summary["total"] == 0 and summary["counts"]["downloaded"] == 0

    status, recorded = run_curl(CURL_RECORD_EVENT, server)
    assert (status, recorded) == (200, {"recorded": True})

    status, summary = run_curl(CURL_GET_ENGAGEMENT, server)
    assert status == 200
    assert summary["counts"]["downloaded"] == 1 and summary["total"] == 1
    assert summary["recent"][0]["eventType"] == "downloaded"

    status, report = run_curl(CURL_REPORT, server)
    assert status == 200
    assert sum(bucket["sent"] for bucket in report["data"]) == 1
    assert sum(bucket["delivered"] for bucket in report["data"]) == 1
    assert sum(bucket["unique_opens"] for bucket in report["data"]) == 1
    assert all(0 <= bucket["open_rate"] <= 1 for bucket in report["data"])


def test_curl_examples_with_a_wrong_key_get_each_surfaces_error_shape(server):
    server = {**server, "key": "ck_live_" + "x" * 40}

    status, envelope = run_curl(CURL_READ_SUMMARY, server)
    assert status == 401 and envelope["error"]["code"] == "unauthorized"

    status, problem = run_curl(CURL_REPORT, server)
    assert status == 401 and problem["code"] == "invalid_key" and problem["status"] == 401
