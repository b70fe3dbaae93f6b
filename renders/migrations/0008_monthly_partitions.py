from django.db import migrations

from engagement_platform.db.partitions import convert_to_monthly, convert_to_plain


def _partition_by_month(apps, schema_editor):
    """PostgreSQL: the render events are rebuilt partitioned by month of `created_at`, rows kept; the primary
    key becomes (id, created_at). SQLite keeps a plain table."""
    convert_to_monthly(schema_editor, apps.get_model("renders", "EngagementEvent")._meta.db_table, "created_at")


def _plain_table(apps, schema_editor):
    convert_to_plain(schema_editor, apps.get_model("renders", "EngagementEvent"))


class Migration(migrations.Migration):
    """Monthly partitions on PostgreSQL (contract section 10). Reversible (the table rebuilt plain)."""

    dependencies = [
        ("apikeys", "0001_initial"),
        ("renders", "0007_visit_ended_announced"),
    ]

    operations = [migrations.RunPython(_partition_by_month, _plain_table, elidable=False)]
