"""SECRET_KEY (CONTRACT section 5): with DEBUG off the platform refuses to start without a key of its own.

Each case imports the settings in a fresh interpreter with exactly the environment under test, as a server
or a management command would at start. The Makefile's recipes that run the platform with DEBUG off hand it
a key (the environment's, else a random one for the run).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engagement_platform.settings import DEVELOPMENT_SECRET_KEY

ROOT = Path(__file__).resolve().parent.parent
READ_KEY = "from django.conf import settings; print(settings.SECRET_KEY)"


def import_settings(**env) -> subprocess.CompletedProcess:
    environ = {key: value for key, value in os.environ.items() if key not in ("SECRET_KEY", "DEBUG")}
    environ.update(DJANGO_SETTINGS_MODULE="engagement_platform.settings", **env)
    return subprocess.run([sys.executable, "-c", READ_KEY], cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("debug", [{"DEBUG": "0"}, {}], ids=["DEBUG=0", "DEBUG unset"])
def test_debug_off_without_a_secret_key_refuses_to_start(debug):
    result = import_settings(**debug)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize("key", [DEVELOPMENT_SECRET_KEY, "", "   "], ids=["development key", "empty", "blank"])
def test_debug_off_refuses_the_development_key_and_an_empty_one(key):
    result = import_settings(DEBUG="0", SECRET_KEY=key)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr


def test_debug_off_starts_with_a_key_of_its_own():
    result = import_settings(DEBUG="0", SECRET_KEY="k" * 20 + "an-own-production-value-0123456789")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "k" * 20 + "an-own-production-value-0123456789"


def test_debug_on_keeps_the_development_key_as_the_default():
    result = import_settings(DEBUG="1")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == DEVELOPMENT_SECRET_KEY
    assert DEVELOPMENT_SECRET_KEY.startswith("django-insecure-")  # what security.W009 looks for


# -- the Makefile hands a key to what it runs with DEBUG off ---------------------------------------------------

STAND_IN = '#!/bin/sh\necho "$(basename "$0")|${DEBUG-unset}|$SECRET_KEY|$*"\n'


def run_make(tmp_path, target: str, skip: str, **env) -> list[list[str]]:
    """The recipe of `target` run for real, with `python` and `gunicorn` stand-ins that print what they got."""
    assert shutil.which("make"), "make is missing"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python", "gunicorn"):
        (bin_dir / name).write_text(STAND_IN)
        (bin_dir / name).chmod(0o755)
    environ = {key: value for key, value in os.environ.items()
               if key not in ("SECRET_KEY", "DEBUG", "MAKEFLAGS", "MAKELEVEL")}
    environ.update(env)
    done = subprocess.run(["make", "-s", "-o", skip, target, f"BIN={bin_dir}"], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60, check=True)
    return [line.split("|") for line in done.stdout.splitlines()]


def test_make_migrate_hands_a_random_key_when_the_environment_has_none(tmp_path):
    [(program, debug, key, command)] = run_make(tmp_path, "migrate", ".venv/.installed")

    assert (program, debug, command.split()[:2]) == ("python", "unset", ["manage.py", "migrate"])
    assert len(key) >= 50 and key != DEVELOPMENT_SECRET_KEY


def test_make_serve_passes_the_environment_key_to_collectstatic_and_gunicorn(tmp_path):
    calls = run_make(tmp_path, "serve", "migrate", SECRET_KEY="an-operator-chosen-key-" + "x" * 40)

    assert [(program, command.split()[0]) for program, _, _, command in calls] == [
        ("python", "manage.py"), ("gunicorn", "engagement_platform.wsgi:application")]
    assert {key for _, _, key, _ in calls} == {"an-operator-chosen-key-" + "x" * 40}
    assert calls[1][1] == "0"  # gunicorn runs with DEBUG off


def test_make_serve_without_a_key_gives_gunicorn_a_random_one(tmp_path):
    calls = run_make(tmp_path, "serve", "migrate")

    gunicorn_key = calls[1][2]
    assert len(gunicorn_key) >= 50 and gunicorn_key != DEVELOPMENT_SECRET_KEY
