"""`make run`: the local server's mail goes to files under var/mail unless EMAIL_BACKEND says otherwise, and the
web server and the background worker start together from the Procfile.

The first tests run the recipe with `BIN` pointing at a stand-in `python` that prints the environment it was
given and the command it was asked to run; the last one runs `make run` for real (its own SQLite database and
port) and has the worker it started deliver a webhook.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from tests.receivers import start_receiver

ROOT = Path(__file__).resolve().parent.parent
FILE_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
STAND_IN = ('#!/bin/sh\necho "$EMAIL_BACKEND|$EMAIL_FILE_PATH|$DEBUG|$WEBHOOK_ALLOW_PRIVATE_NETWORKS|'
            '$RUN_BIN $RUN_HOST $RUN_PORT|$*"\n')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_recipe(tmp_path, **env) -> list[list[str]]:
    assert shutil.which("make"), "make is missing"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python"
    python.write_text(STAND_IN)
    python.chmod(0o755)
    environ = {key: value for key, value in os.environ.items()
               if key not in ("EMAIL_BACKEND", "EMAIL_FILE_PATH", "DEBUG", "MAKEFLAGS", "MAKELEVEL",
                              "WEBHOOK_ALLOW_PRIVATE_NETWORKS")}
    environ.update(env)
    done = subprocess.run(["make", "-s", "-o", "migrate", "run", f"BIN={bin_dir}"], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60, check=True)
    return [line.split("|") for line in done.stdout.splitlines()]


def test_make_run_writes_mail_to_var_mail_for_seed_demo_and_the_server(tmp_path):
    calls = run_recipe(tmp_path)

    assert [call[5].split()[:2] for call in calls] == [["manage.py", "seed_demo"], ["-m", "honcho"]]
    assert {(backend, path, debug) for backend, path, debug, *_ in calls} == {(FILE_BACKEND, "var/mail", "1")}


def test_make_run_starts_the_procfile_web_server_and_worker_with_local_webhooks_allowed(tmp_path):
    calls = run_recipe(tmp_path)

    assert calls[1][5].split() == ["-m", "honcho", "-f", "Procfile", "start"]
    assert calls[1][4] == f"{tmp_path / 'bin'} 127.0.0.1 8000"
    assert {call[3] for call in calls} == {"1"}
    processes = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines()
                     if line and not line.startswith("#"))
    assert processes == {"web": "$RUN_BIN/python manage.py runserver $RUN_HOST:$RUN_PORT",
                         "worker": "$RUN_BIN/python manage.py worker"}


@pytest.mark.parametrize("backend", ["django.core.mail.backends.smtp.EmailBackend",
                                     "django.core.mail.backends.console.EmailBackend"])
def test_make_run_keeps_a_mail_backend_the_user_set(tmp_path, backend):
    calls = run_recipe(tmp_path, EMAIL_BACKEND=backend, EMAIL_FILE_PATH="/tmp/elsewhere")

    assert {(call[0], call[1]) for call in calls} == {(backend, "/tmp/elsewhere")}


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def http(method: str, url: str, key: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def test_make_run_for_real_serves_and_its_worker_delivers_a_webhook(tmp_path):
    receiver = start_receiver()
    environ = {key: value for key, value in os.environ.items()
               if key not in ("MAKEFLAGS", "MAKELEVEL", "DATABASE_URL", "DEBUG", "WEBHOOK_ALLOW_PRIVATE_NETWORKS")}
    environ.update(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", MEDIA_ROOT=str(tmp_path / "media"),
                   EMAIL_FILE_PATH=str(tmp_path / "mail"), PYTHONUNBUFFERED="1")
    log = (tmp_path / "run.log").open("w+")
    port = free_port()
    process = subprocess.Popen(["make", "-s", "run", f"PORT={port}", f"BIN={ROOT / '.venv' / 'bin'}"],
                               cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def output():
            log.flush()
            return (tmp_path / "run.log").read_text()

        key = wait_for(lambda: (re.search(r"export KEY=(ck_live_\S+)", output()) or [None, None])[1], 180,
                       "seed_demo's key")
        wait_for(lambda: "worker started" in output(), 60, "the worker")

        def server_up():
            try:
                return urllib.request.urlopen(f"{base}/healthz", timeout=2).status == 200
            except OSError:
                return False

        wait_for(server_up, 60, "the web server")
        created = http("POST", f"{base}/v1/webhooks", key, {"url": receiver.url, "events": ["share.created"]})
        render_id = http("GET", f"{base}/v1/renders?limit=1", key)["data"][0]["id"]
        share = http("POST", f"{base}/v1/renders/{render_id}/shares", key, {"label": "from make run"})
        [received] = receiver.wait_for(1, timeout=30)
        payload = Webhook(created["secret"]).verify(received.body, received.headers)
        assert (payload["type"], payload["data"]["id"]) == ("share.created", share["id"])
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        receiver.stop()
        log.close()
