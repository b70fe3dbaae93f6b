"""Data kept for window edges inside a day: each first touch's last time, and slice rollups.

Existing first touches have no last time: they are deleted and their days marked as having their
first touches pending (`FirstTouchesPending`), so the first ingestion batch that brings an event of
such a day, or `rebuild_rollups`, writes the day's first touches and slices from raw events. Until
then a report reads an edge inside such a day from raw events; the daily rollups are unchanged.
"""

import datetime

import django.db.models.deletion
from django.db import migrations, models

SLICE_BYTEWISE_COLUMNS = ["grain", "channel_key", "domain"]


def mark_existing_touch_days_pending(apps, schema_editor):
    touches = apps.get_model("reports", "DailyFirstTouch")
    pending = apps.get_model("reports", "FirstTouchesPending")
    days = touches.objects.order_by().values_list("project_id", "day").distinct()
    pending.objects.bulk_create([pending(project_id=project_id, day=day) for project_id, day in days],
                                ignore_conflicts=True, batch_size=1000)
    touches.objects.all().delete()


def slice_keys_bytewise(apps, schema_editor):
    """As migration 0005 for the other report tables: text keys compare bytewise on PostgreSQL."""
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    changes = [f"ALTER COLUMN {quote(column)} TYPE varchar({length}) COLLATE \"C\""
               for column, length in (("grain", 16), ("channel_key", 36), ("domain", 253))]
    schema_editor.execute(f"ALTER TABLE {quote('reports_slicerollup')} {', '.join(changes)}")


class Migration(migrations.Migration):

    dependencies = [
        ("apikeys", "0001_initial"),
        ("reports", "0008_message_without_render"),
    ]

    operations = [
        migrations.RunPython(mark_existing_touch_days_pending, migrations.RunPython.noop),
        migrations.AddField(
            model_name="dailyfirsttouch",
            name="last_at",
            field=models.DateTimeField(
                default=datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC),
                help_text="When the recipient's latest event of this kind on the day occurred."),
            preserve_default=False,
        ),
        migrations.AddIndex(
            model_name="dailyfirsttouch",
            index=models.Index(fields=["project", "grain", "channel_key", "domain", "kind", "day", "last_at"],
                               name="first_touch_last_at"),
        ),
        migrations.CreateModel(
            name="SliceRollup",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("day", models.DateField()),
                ("slice", models.SmallIntegerField(
                    help_text="The slice of the UTC day: minutes since midnight // SLICE_MINUTES.")),
                ("grain", models.CharField(choices=[("all", "All traffic"), ("channel", "Per channel"),
                                                    ("domain", "Per sending domain"),
                                                    ("channel_domain", "Per channel and sending domain")],
                                           max_length=16)),
                ("channel_key", models.CharField(blank=True, max_length=36)),
                ("domain", models.CharField(blank=True, max_length=253)),
                ("sent", models.BigIntegerField(default=0)),
                ("delivered", models.BigIntegerField(default=0)),
                ("opens", models.BigIntegerField(default=0)),
                ("clicks", models.BigIntegerField(default=0)),
                ("project", models.ForeignKey(db_constraint=False, db_index=False,
                                              on_delete=django.db.models.deletion.CASCADE, related_name="+",
                                              to="apikeys.project")),
            ],
            options={
                "indexes": [models.Index(fields=["project", "day"], name="slice_rollup_project_day")],
                "constraints": [models.UniqueConstraint(
                    fields=("project", "grain", "channel_key", "domain", "day", "slice"),
                    name="slice_rollup_unique")],
            },
        ),
        migrations.RunPython(slice_keys_bytewise, migrations.RunPython.noop),
    ]
