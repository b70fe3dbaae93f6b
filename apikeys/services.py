"""Writes on projects and keys."""

from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction

from apikeys.keycache import keys_changed
from apikeys.models import ALL_SCOPES, KEY_DISPLAY_LENGTH, ApiKey, Project, generate_raw_key, hash_key
from engagement_platform.clock import now


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    raw_key: str  # shown once, never stored


def project_create(*, name: str, retention_days: int = 90, rate_limit_per_minute: int = 600) -> Project:
    project = Project(name=name, retention_days=retention_days, rate_limit_per_minute=rate_limit_per_minute)
    project.full_clean()
    project.save()
    return project


PROJECT_EDITABLE_FIELDS = ("name", "retention_days", "rate_limit_per_minute")
APIKEY_EDITABLE_FIELDS = ("name", "scopes", "expires_at")


def project_update(*, project: Project, **changes) -> Project:
    """Change a project's name or plan; a plan change applies from the next request in every worker."""
    unknown = set(changes) - set(PROJECT_EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"project_update cannot change {', '.join(sorted(unknown))}")
    with transaction.atomic():
        for field, value in changes.items():
            setattr(project, field, value)
        project.full_clean()
        project.save()
        keys_changed()
    return project


def project_soft_delete(*, project: Project) -> Project:
    """Keys of the project answer 403 from the next request on, in every worker."""
    if project.deleted_at is None:
        with transaction.atomic():
            project.deleted_at = now()
            project.save(update_fields=["deleted_at"])
            keys_changed()
    return project


def validate_scopes(scopes) -> list[str]:
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise ValidationError(f"Unknown scopes: {', '.join(unknown)}. Known: {', '.join(ALL_SCOPES)}.")
    return sorted(set(scopes), key=ALL_SCOPES.index)


def apikey_issue(*, project: Project, name: str = "", scopes=None, expires_in_days: int | None = None) -> IssuedKey:
    """Create a key; the raw key exists only in the returned value."""
    raw_key = generate_raw_key()
    key = ApiKey(
        project=project,
        name=name,
        prefix=raw_key[:KEY_DISPLAY_LENGTH],
        key_hash=hash_key(raw_key),
        scopes=validate_scopes(ALL_SCOPES if scopes is None else scopes),
        expires_at=now() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    key.save()
    return IssuedKey(key=key, raw_key=raw_key)


def apikey_update(*, key: ApiKey, **changes) -> ApiKey:
    """Change a key's name, scopes or expiry; applies from the next request in every worker."""
    unknown = set(changes) - set(APIKEY_EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"apikey_update cannot change {', '.join(sorted(unknown))}")
    if "scopes" in changes:
        changes["scopes"] = validate_scopes(changes["scopes"])
    with transaction.atomic():
        for field, value in changes.items():
            setattr(key, field, value)
        key.save()
        keys_changed()
    return key


def apikey_revoke(*, key: ApiKey) -> ApiKey:
    with transaction.atomic():
        ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=now())
        keys_changed()  # every worker drops the key now and after the commit
    key.refresh_from_db(fields=["revoked_at"])
    return key
