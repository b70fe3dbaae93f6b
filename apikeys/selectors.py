"""Reads on projects and keys: lookups by what an operator or a client holds."""

from apikeys.models import KEY_DISPLAY_LENGTH, KEY_PREFIX, ApiKey, Project, hash_key
from engagement_platform.ids import parse_uuid


def project_by_id_or_name(value: str) -> Project | None:
    uid = parse_uuid(value)
    if uid is not None:
        found = Project.objects.filter(pk=uid).first()
        if found:
            return found
    return Project.objects.filter(name=value).first()


def apikey_by_reference(value: str) -> list[ApiKey]:
    """Keys named by id, display prefix or raw key (a prefix may in theory match several)."""
    uid = parse_uuid(value)
    if uid is not None:
        return list(ApiKey.objects.filter(pk=uid))
    if value.startswith(KEY_PREFIX) and len(value) > KEY_DISPLAY_LENGTH:
        return list(ApiKey.objects.filter(key_hash=hash_key(value)))
    if value.startswith(KEY_PREFIX):
        return list(ApiKey.objects.filter(prefix=value))
    return []


def apikey_for_raw_key(raw_key: str) -> ApiKey | None:
    return ApiKey.objects.select_related("project").filter(key_hash=hash_key(raw_key)).first()
