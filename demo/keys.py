"""The demo's API keys: issued once, then kept working and printed again on every `seed_demo` run.

Raw keys are never stored in the database (only their hash). So that a second `seed_demo` (a second
`make run`) can print the keys a running server and the reader's shell already use, the raw demo keys
are kept in a local development file, `var/demo-keys.json` by default, readable by its owner only
(0600), per demo project id (so several databases can share one checkout). A run re-prints each kept
key while it still works (not revoked or expired, same project and scopes); otherwise it issues a new
one and keeps that. No run revokes a key that the file holds.

When the file cannot be read or written (deleted, or a read-only checkout), each run issues new keys;
older demo keys then stay valid up to `DEMO_KEYS_KEPT_PER_LABEL` per label, the oldest beyond that
being revoked, so at most that many pile up.
"""

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from apikeys.models import ApiKey, hash_key, looks_like_key
from apikeys.services import apikey_issue, apikey_revoke
from engagement_platform.clock import now

DEMO_KEY_NAME_PREFIX = "demo: "
DEMO_KEYS_KEPT_PER_LABEL = 3
KEYS_FILE_MODE = 0o600
KEYS_FILE_MAX_BYTES = 1024 * 1024


def default_keys_file() -> Path:
    return Path(settings.BASE_DIR) / "var" / "demo-keys.json"


@dataclass(frozen=True)
class DemoKeys:
    raw_keys: dict[str, str]  # label -> raw key
    issued: list[str]  # labels whose key this run issued (the others were kept from an earlier run)
    kept_in: Path | None  # where the raw keys are kept, or None when the file could not be written
    revoked: int  # older demo keys revoked to stay within DEMO_KEYS_KEPT_PER_LABEL


def read_keys_file(path: Path) -> dict:
    """{project id: {label: raw key}}; anything missing, unreadable or malformed reads as empty."""
    try:
        if path.stat().st_size > KEYS_FILE_MAX_BYTES:
            return {}
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict):
        return {}
    return {project: {label: raw for label, raw in keys.items() if isinstance(raw, str)}
            for project, keys in document.items() if isinstance(keys, dict)}


def write_keys_file(path: Path, document: dict) -> bool:
    """Replace the file atomically, created 0600 (never readable by others, even for an instant)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".demo-keys-", suffix=".tmp")
        try:
            os.fchmod(descriptor, KEYS_FILE_MODE)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=2, sort_keys=True)
                handle.write("\n")
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError:
        return False
    return True


def kept_key_works(*, project, raw_key, label: str, scopes) -> bool:
    """The kept raw key is still one of this project's usable demo keys of that label, with those scopes."""
    if not isinstance(raw_key, str) or not looks_like_key(raw_key) or project.is_deleted:
        return False
    key = ApiKey.objects.filter(key_hash=hash_key(raw_key), project=project).first()
    return (key is not None and key.is_usable(now()) and key.name == DEMO_KEY_NAME_PREFIX + label
            and sorted(key.scopes) == sorted(str(scope) for scope in scopes))


def demo_keys_ensure(*, project, scopes_by_label: dict, keys_file: Path | None) -> DemoKeys:
    """One working raw key per label: the kept one while it works, else a newly issued one (then kept)."""
    document = read_keys_file(keys_file) if keys_file is not None else {}
    kept = document.get(str(project.id), {})
    raw_keys, issued = {}, []
    for label, scopes in scopes_by_label.items():
        raw_key = kept.get(label)
        if not kept_key_works(project=project, raw_key=raw_key, label=label, scopes=scopes):
            raw_key = apikey_issue(project=project, name=DEMO_KEY_NAME_PREFIX + label, scopes=scopes).raw_key
            issued.append(label)
        raw_keys[label] = raw_key
    kept_in = keys_file
    if keys_file is not None and (issued or kept != raw_keys):
        if not write_keys_file(keys_file, {**document, str(project.id): raw_keys}):
            kept_in = None
    revoked = _revoke_beyond_bound(project=project, current=raw_keys)
    return DemoKeys(raw_keys=raw_keys, issued=issued, kept_in=kept_in, revoked=revoked)


def _revoke_beyond_bound(*, project, current: dict[str, str]) -> int:
    """Revoke the oldest usable demo keys of each label beyond DEMO_KEYS_KEPT_PER_LABEL (never a current one)."""
    current_hashes = {hash_key(raw_key) for raw_key in current.values()}
    revoked = 0
    for label in current:
        usable = [key for key in ApiKey.objects.filter(project=project, name=DEMO_KEY_NAME_PREFIX + label,
                                                       revoked_at__isnull=True).order_by("-created_at", "-id")
                  if key.is_usable(now())]
        others = [key for key in usable if key.key_hash not in current_hashes]
        for key in others[DEMO_KEYS_KEPT_PER_LABEL - 1:]:
            apikey_revoke(key=key)
            revoked += 1
    return revoked
