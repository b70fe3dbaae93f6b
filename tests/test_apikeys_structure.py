"""How the keys app is built (STYLE.md, DEVELOPERS.md): it knows no product, derives nothing through signals,
and warns about a per-process rate-limit cache only where a deployment is checked."""

import ast
import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.db.models import signals

from apikeys.models import ApiKey, Project

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_APPS = ("reports", "renders")


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_module_of_apikeys_imports_a_product_app():
    offenders = {}
    for path in sorted((ROOT / "apikeys").rglob("*.py")):
        products = {name for name in imported_modules(path) if name.split(".")[0] in PRODUCT_APPS}
        if products:
            offenders[str(path.relative_to(ROOT))] = sorted(products)
    assert offenders == {}


def test_the_arrow_walk_sees_an_import_of_a_product_app(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import os\nfrom reports.charts import project_traffic_chart\ndef f():\n    import renders\n")
    assert {"reports.charts", "renders"} <= imported_modules(probe)


def test_projects_and_keys_have_no_signal_receivers():
    """Writes that change an authentication outcome tell the workers themselves (`keys_changed`)."""
    for signal in (signals.pre_save, signals.post_save, signals.pre_delete, signals.post_delete):
        for model in (Project, ApiKey):
            assert not signal.has_listeners(model), f"{signal} has a receiver for {model.__name__}"


def _check(*args: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("CACHE_URL", "REDIS_URL")}
    env.update(DEBUG="0", SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="api.example.com", **env_overrides)
    return subprocess.run([sys.executable, "manage.py", "check", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_plain_check_without_a_shared_cache_does_not_warn_about_the_rate_limit():
    result = _check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "apikeys.W001" not in result.stdout + result.stderr


def test_check_deploy_without_a_shared_cache_warns_about_the_rate_limit():
    result = _check("--deploy")
    assert "apikeys.W001" in result.stdout + result.stderr
