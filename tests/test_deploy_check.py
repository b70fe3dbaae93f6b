"""`manage.py check --deploy` is clean when the environment is production-like (README, configuration)."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION_ENVIRONMENT = {
    "DEBUG": "0",
    "ALLOWED_HOSTS": "api.example.com",
    "CACHE_URL": "redis://127.0.0.1:6379/15",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
}


def deploy_check(**overrides) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("CACHE_URL", "REDIS_URL")}
    env.update(PRODUCTION_ENVIRONMENT, SECRET_KEY=secrets.token_urlsafe(50))
    env.update(overrides)
    env = {key: value for key, value in env.items() if value is not None}  # an override of None unsets it
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_in_a_production_like_environment():
    result = deploy_check()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_when_the_rate_limit_cache_is_per_process():
    result = deploy_check(CACHE_URL="locmem://")

    assert result.returncode != 0
    assert "apikeys.W001" in result.stderr + result.stdout


def test_check_deploy_fails_with_the_development_key():
    # The development key only exists with DEBUG on (with DEBUG off the settings refuse to start without a key).
    result = deploy_check(DEBUG="1", SECRET_KEY=None)

    assert result.returncode != 0
    assert "security.W009" in result.stderr + result.stdout


def test_check_deploy_fails_with_a_short_key():
    result = deploy_check(SECRET_KEY="short-and-guessable")

    assert result.returncode != 0
    assert "security.W009" in result.stderr + result.stdout
