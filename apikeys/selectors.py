"""Reads on projects and keys: lookups by what an operator or a client holds."""

from functools import cache

from django.db import connection

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


@cache
def _key_statement() -> tuple[str, list[str], list[str], int]:
    key_fields = ApiKey._meta.concrete_fields
    project_fields = Project._meta.concrete_fields
    qn = connection.ops.quote_name
    columns = ", ".join([f"k.{qn(f.column)}" for f in key_fields] + [f"p.{qn(f.column)}" for f in project_fields])
    sql = (f"SELECT {columns} FROM {ApiKey._meta.db_table} k JOIN {Project._meta.db_table} p "
           f"ON p.id = k.project_id WHERE k.key_hash = %s")
    return sql, [f.attname for f in key_fields], [f.attname for f in project_fields], len(key_fields)


def apikey_with_project_by_hash(digest: str) -> ApiKey | None:
    """The key with this hash and its project: one indexed join built into model instances."""
    sql, key_names, project_names, split = _key_statement()
    with connection.cursor() as cursor:
        cursor.execute(sql, [digest])
        row = cursor.fetchone()
    if row is None:
        return None
    key_values, project_values = _converted(ApiKey, row[:split]), _converted(Project, row[split:])
    key = ApiKey.from_db(connection.alias, key_names, key_values)
    key.project = Project.from_db(connection.alias, project_names, project_values)
    return key


def _converted(model, values) -> list:
    """Apply the backend's and the fields' converters (UUIDs and JSON on SQLite, aware datetimes...)."""
    values = list(values)
    for i, field in enumerate(model._meta.concrete_fields):
        expression = field.get_col(model._meta.db_table)
        for convert in connection.ops.get_db_converters(expression) + field.get_db_converters(connection):
            values[i] = convert(values[i], expression, connection)
    return values
