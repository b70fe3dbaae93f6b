"""Text key columns of the report tables compare bytewise (COLLATE "C") on PostgreSQL.

The unique keys of messages, events, first touches and rollups are compared millions of times by
ingestion and recounts; under the database's linguistic collation every comparison goes through
the C library's collation routines. These keys are identifiers and addresses: only equality
matters, and equality is the same under both, so bytewise comparison changes no answer.

The model fields do not name the collation (SQLite has no "C" collation): a later migration that
alters one of these columns must set it again.
"""

from django.db import migrations

BYTEWISE_COLUMNS = {
    "reports_message": ["client_message_id"],
    "reports_messageevent": ["client_event_id"],
    "reports_dailyfirsttouch": ["kind", "grain", "channel_key", "domain", "recipient"],
    "reports_dailyrollup": ["grain", "channel_key", "domain"],
}


def set_collation(collation: str):
    def apply(apps, schema_editor):
        connection = schema_editor.connection
        if connection.vendor != "postgresql":
            return
        quote = schema_editor.quote_name
        with connection.cursor() as cursor:
            for table, columns in BYTEWISE_COLUMNS.items():
                changes = []
                for column in columns:
                    cursor.execute(
                        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                        "WHERE attrelid = %s::regclass AND attname = %s", [table, column])
                    column_type = cursor.fetchone()[0]
                    changes.append(f"ALTER COLUMN {quote(column)} TYPE {column_type} COLLATE {quote(collation)}")
                schema_editor.execute(f"ALTER TABLE {quote(table)} {', '.join(changes)}")
    return apply


class Migration(migrations.Migration):

    dependencies = [
        ("reports", "0004_pending_recount_derived_without_fk"),
    ]

    operations = [
        migrations.RunPython(set_collation("C"), set_collation("default")),
    ]
