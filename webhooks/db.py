"""The webhooks app's SQL: an event's deliveries stored in one statement, each only if its endpoint still exists
and is enabled (the kept subscriptions may be seconds old). The same portable `INSERT ... SELECT` on PostgreSQL
and SQLite, run alone (`insert_deliveries`) or, on PostgreSQL, as CTEs of the statement that records the event
(`deliveries_with_the_event`, with the task row that wakes the worker); parameters adapted by Django's own field
and backend methods."""

from functools import cache

from django.db import connection, connections
from django.db.models.signals import pre_save

from engagement_platform.event_hooks import RECORDED, StatementWrite
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

COLUMNS = ("id", "project_id", "endpoint_id", "event_id", "event_type", "payload", "status", "attempts",
           "next_attempt_at", "created_at")


def _uuid(value):
    return WebhookDelivery._meta.get_field("id").get_db_prep_value(value, connection)


def _deliveries_insert(*, rows: list[tuple], project_id, event_id, event_type: str, body: str, at,
                       gate: str = "") -> tuple[str, list]:
    """`INSERT ... SELECT` of one pending delivery per (delivery id, endpoint id) whose endpoint is the
    project's and enabled, and only when `gate` (a condition) holds; returns the inserted ids."""
    stamp = connection.ops.adapt_datetimefield_value(at)
    project, event = _uuid(project_id), _uuid(event_id)
    params = []
    for delivery_id, endpoint_id in rows:
        params += [_uuid(delivery_id), project, event, event_type, body, DeliveryStatus.PENDING.value, stamp, stamp,
                   _uuid(endpoint_id), project]
    return _deliveries_insert_sql(len(rows), gate), params


@cache
def _deliveries_insert_sql(count: int, gate: str) -> str:
    deliveries, endpoints = (connection.ops.quote_name(model._meta.db_table)
                             for model in (WebhookDelivery, WebhookEndpoint))
    branch = (f"SELECT %s, %s, id, %s, %s, %s, %s, 0, %s, %s FROM {endpoints} "
              f"WHERE id = %s AND project_id = %s AND disabled_at IS NULL{f' AND {gate}' if gate else ''}")
    return f"INSERT INTO {deliveries} ({', '.join(COLUMNS)}) " + " UNION ALL ".join([branch] * count) + " RETURNING id"


def insert_deliveries(*, rows: list[tuple], project_id, event_id, event_type: str, body: str, at) -> list:
    """Insert the event's pending deliveries (see `_deliveries_insert`); returns the delivery ids inserted.
    Runs in the caller's transaction."""
    if not rows:
        return []
    sql, params = _deliveries_insert(rows=rows, project_id=project_id, event_id=event_id, event_type=event_type,
                                     body=body, at=at)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def deliveries_with_the_event(*, rows: list[tuple], project_id, event_id, event_type: str, body: str, at,
                              task_row, name: str, task_committed=None) -> list[StatementWrite]:
    """The CTEs that store the event's deliveries in the statement recording it, only when it records the
    event (`RECORDED`), and the unsaved `task_row` (a model instance) only when some delivery was stored;
    `task_committed` runs once the task row has committed."""
    deliveries_sql, deliveries_params = _deliveries_insert(
        rows=rows, project_id=project_id, event_id=event_id, event_type=event_type, body=body, at=at,
        gate=f"EXISTS (SELECT 1 FROM {RECORDED})")
    task_sql, task_params = row_insert(task_row, gate=f"EXISTS (SELECT 1 FROM {name}_deliveries)")
    return [StatementWrite(name=f"{name}_deliveries", sql=deliveries_sql, params=deliveries_params),
            StatementWrite(name=f"{name}_task", sql=task_sql, params=task_params, committed=task_committed)]


def row_insert(instance, *, gate: str) -> tuple[str, list]:
    """`INSERT ... SELECT` of an unsaved model instance's row when `gate` holds, its values prepared as
    Django's own save prepares them (the `pre_save` signal, each field's `pre_save` and `get_db_prep_save`),
    each placeholder typed."""
    pre_save.send(sender=type(instance), instance=instance, raw=False, using=connection.alias, update_fields=None)
    sql, fields = _row_insert_sql(type(instance), gate)
    backend = connections[connection.alias]  # once: each use of `connection` is a lookup
    return sql, [field.get_db_prep_save(field.pre_save(instance, True), backend) for field in fields]


@cache
def _row_insert_sql(model, gate: str) -> tuple[str, tuple]:
    fields = tuple(model._meta.concrete_fields)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    placeholders = ", ".join(f"%s::{field.db_type(connection)}" for field in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    return f"INSERT INTO {table} ({columns}) SELECT {placeholders} WHERE {gate}", fields
