"""`make run`: the local server's mail goes to files under var/mail unless EMAIL_BACKEND says otherwise.

The recipe runs for real with `BIN` pointing at a stand-in `python` that prints the environment it was
given and the command it was asked to run.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILE_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
STAND_IN = '#!/bin/sh\necho "$EMAIL_BACKEND|$EMAIL_FILE_PATH|$DEBUG|$*"\n'


def run_recipe(tmp_path, **env) -> list[list[str]]:
    assert shutil.which("make"), "make is missing"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python"
    python.write_text(STAND_IN)
    python.chmod(0o755)
    environ = {key: value for key, value in os.environ.items()
               if key not in ("EMAIL_BACKEND", "EMAIL_FILE_PATH", "DEBUG", "MAKEFLAGS", "MAKELEVEL")}
    environ.update(env)
    done = subprocess.run(["make", "-s", "-o", "migrate", "run", f"BIN={bin_dir}"], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60, check=True)
    return [line.split("|") for line in done.stdout.splitlines()]


def test_make_run_writes_mail_to_var_mail_for_seed_demo_and_the_server(tmp_path):
    calls = run_recipe(tmp_path)

    assert [call[3].split()[:2] for call in calls] == [["manage.py", "seed_demo"], ["manage.py", "runserver"]]
    assert {(backend, path, debug) for backend, path, debug, _ in calls} == {(FILE_BACKEND, "var/mail", "1")}


@pytest.mark.parametrize("backend", ["django.core.mail.backends.smtp.EmailBackend",
                                     "django.core.mail.backends.console.EmailBackend"])
def test_make_run_keeps_a_mail_backend_the_user_set(tmp_path, backend):
    calls = run_recipe(tmp_path, EMAIL_BACKEND=backend, EMAIL_FILE_PATH="/tmp/elsewhere")

    assert {(call[0], call[1]) for call in calls} == {(backend, "/tmp/elsewhere")}
