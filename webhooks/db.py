"""The webhooks app's one statement written as SQL: an event's deliveries stored in one round trip, each only
if its endpoint still exists and is enabled (the kept subscriptions may be seconds old). The same portable
`INSERT ... SELECT` on PostgreSQL and SQLite; parameters adapted by Django's own field and backend methods."""

from django.db import connection

from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

COLUMNS = ("id", "project_id", "endpoint_id", "event_id", "event_type", "payload", "status", "attempts",
           "next_attempt_at", "created_at")


def _uuid(value):
    return WebhookDelivery._meta.get_field("id").get_db_prep_value(value, connection)


def insert_deliveries(*, rows: list[tuple], project_id, event_id, event_type: str, body: str, at) -> list:
    """Insert one pending delivery per (delivery id, endpoint id) in `rows` whose endpoint is the project's and
    enabled; returns the delivery ids inserted. Runs in the caller's transaction."""
    if not rows:
        return []
    deliveries, endpoints = connection.ops.quote_name(WebhookDelivery._meta.db_table), \
        connection.ops.quote_name(WebhookEndpoint._meta.db_table)
    stamp = connection.ops.adapt_datetimefield_value(at)
    branch = (f"SELECT %s, %s, id, %s, %s, %s, %s, 0, %s, %s FROM {endpoints} "
              f"WHERE id = %s AND project_id = %s AND disabled_at IS NULL")
    params = []
    for delivery_id, endpoint_id in rows:
        params += [_uuid(delivery_id), _uuid(project_id), _uuid(event_id), event_type, body,
                   DeliveryStatus.PENDING.value, stamp, stamp, _uuid(endpoint_id), _uuid(project_id)]
    sql = (f"INSERT INTO {deliveries} ({', '.join(COLUMNS)}) " + " UNION ALL ".join([branch] * len(rows))
           + " RETURNING id")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]
