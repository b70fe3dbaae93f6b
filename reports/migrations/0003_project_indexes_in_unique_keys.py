"""Writes per event ingested: no separate project index where a unique key already leads with the
project, and room on each rollup page so the per-batch increments update rows in place (HOT)."""

import django.db.models.deletion
from django.db import migrations, models

# Percent of each rollup page filled by inserts; the rest takes the new versions of updated rows.
ROLLUP_FILLFACTOR = 70


def rollup_fillfactor(value):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            table = schema_editor.quote_name(apps.get_model("reports", "DailyRollup")._meta.db_table)
            schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = {int(value)})")
    return apply


def project_fk():
    return models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="+",
                             to="apikeys.project")


class Migration(migrations.Migration):

    dependencies = [
        ("apikeys", "0001_initial"),
        ("reports", "0002_message_channel_restrict"),
    ]

    operations = [
        migrations.AlterField(model_name="dailyfirsttouch", name="project", field=project_fk()),
        migrations.AlterField(model_name="dailyrollup", name="project", field=project_fk()),
        migrations.AlterField(model_name="message", name="project", field=project_fk()),
        migrations.AlterField(model_name="messageevent", name="project", field=project_fk()),
        migrations.RunPython(rollup_fillfactor(ROLLUP_FILLFACTOR), rollup_fillfactor(100)),
    ]
