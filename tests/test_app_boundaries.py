"""Arrows between apps (DEVELOPERS): reports knows no renders; renders may call into reports for the email flow.
Kept bodies are dropped by explicit calls from the services that write, never by model signals."""

import ast
from pathlib import Path

from django.db.models.signals import post_delete, post_save, pre_delete

from renders.models import EngagementEvent, Render, RenderEmail, Share
from reports.models import Message

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module `path` imports (`from x import y` as `x` and `x.y`; relative imports resolved from `root`),
    and every constant name given to `import_module` / `__import__`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = list(path.relative_to(root).with_suffix("").parts[:-node.level]) if node.level else []
            base = ".".join([*parts, *([node.module] if node.module else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            names.add(str(node.args[0].value))
    return names


def test_imported_modules_sees_every_form_of_import(tmp_path):
    module = tmp_path / "reports" / "probe.py"
    module.parent.mkdir()
    module.write_text("import renders.models\nfrom renders import selectors\nfrom ..renders import x\n"
                      "from . import grains\nfrom importlib import import_module\nimport_module('renders.emails')\n",
                      encoding="utf-8")
    found = imported_modules(module, root=tmp_path)
    assert {"renders.models", "renders", "renders.selectors", "renders.x", "renders.emails",
            "reports.grains"} <= found


def test_no_module_of_reports_imports_renders():
    sources = sorted((ROOT / "reports").rglob("*.py"))
    assert len(sources) > 10
    offenders = {
        str(path.relative_to(ROOT)): sorted(name for name in imported_modules(path)
                                            if name == "renders" or name.startswith("renders."))
        for path in sources
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_a_message_names_no_render():
    assert not any(field.is_relation and field.related_model is Render for field in Message._meta.get_fields())
    assert all(field.related_model is not Message for field in Render._meta.get_fields())


def test_no_signal_receivers_on_render_models():
    for model in (Render, Share, RenderEmail, EngagementEvent):
        for signal in (post_delete, pre_delete, post_save):
            assert not signal.has_listeners(model), (signal, model.__name__)


def modules_importing(app: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    sources = sorted((ROOT / app).rglob("*.py"))
    assert sources, app
    found = {str(path.relative_to(ROOT)): sorted(name for name in imported_modules(path)
                                                 if any(name == f or name.startswith(f + ".") for f in forbidden))
             for path in sources}
    return {path: names for path, names in found.items() if names}


def test_webhooks_is_known_only_to_itself():
    """Renders tells engagement_platform.event_hooks what it recorded; webhooks listens. No arrow back."""
    for app in ("renders", "reports", "apikeys", "engagement_platform", "demo"):
        assert modules_importing(app, ("webhooks",)) == {}, app


def test_webhooks_depends_on_the_ground_apikeys_and_renders_only():
    assert modules_importing("webhooks", ("reports", "demo")) == {}


def test_retention_is_known_only_to_itself():
    """Retention sits above the products (it purges both); no product, nor the ground, imports it."""
    for app in ("renders", "reports", "apikeys", "engagement_platform", "webhooks", "demo"):
        assert modules_importing(app, ("retention",)) == {}, app
    assert modules_importing("retention", ("webhooks", "demo")) == {}
