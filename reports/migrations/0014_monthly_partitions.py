from django.db import migrations

from engagement_platform.db.partitions import convert_to_monthly, convert_to_plain

# The tables that grow with traffic, each with the column its months are cut by.
PARTITIONED = (
    ("MessageEvent", "occurred_at"),
    ("DailyFirstTouch", "day"),
    ("DailyRollup", "day"),
    ("SliceRollup", "day"),
    ("PeriodFirstTouch", "start"),
)


def _partition_by_month(apps, schema_editor):
    """PostgreSQL: every stored event's key goes into the key table, then each table is rebuilt partitioned by
    month, its rows kept (SQLite keeps plain tables)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    events = quote(apps.get_model("reports", "MessageEvent")._meta.db_table)
    keys = quote(apps.get_model("reports", "MessageEventKey")._meta.db_table)
    schema_editor.execute(f"INSERT INTO {keys} (project_id, client_event_id, occurred_at) "
                          f"SELECT project_id, client_event_id, occurred_at FROM {events} ON CONFLICT DO NOTHING")
    for model, column in PARTITIONED:
        convert_to_monthly(schema_editor, apps.get_model("reports", model)._meta.db_table, column,
                           dropped_uniques=("message_event_unique_per_project",) if model == "MessageEvent" else ())


def _plain_tables(apps, schema_editor):
    """The reverse: plain tables with their rows, the events' unique key back on the events table."""
    for model, _column in PARTITIONED:
        convert_to_plain(schema_editor, apps.get_model("reports", model))


class Migration(migrations.Migration):
    """Monthly partitions on PostgreSQL (contract section 10): a partitioned table's keys hold its partition
    column, and the events' unique key lives in MessageEventKey. Reversible (the tables rebuilt plain)."""

    atomic = True
    dependencies = [
        ("apikeys", "0001_initial"),
        ("reports", "0013_event_keys_ledger_created_notes"),
    ]

    operations = [migrations.RunPython(_partition_by_month, _plain_tables, elidable=False)]
