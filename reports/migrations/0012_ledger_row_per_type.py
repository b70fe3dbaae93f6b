import django.db.models.deletion
from django.db import migrations, models

EVENT_TYPES = [("sent", "Sent"), ("delivered", "Delivered"), ("opened", "Opened"), ("clicked", "Clicked")]
GRAINS = [("all", "All traffic"), ("channel", "Per channel"), ("domain", "Per sending domain"),
          ("channel_domain", "Per channel and sending domain")]


def _days_with_data_write_their_first_touches_again(apps, schema_editor):
    """The ledgers start empty in their new shape (one row per type, the classes as columns): every day with
    report data is marked as having its first touches still to write, so the next batch into it (or
    `rebuild_rollups`) writes them and its weeks' and months' ledgers; until then reports read those days'
    edges and exact uniques from raw events. The rollups themselves stay as they are."""
    quote = schema_editor.connection.ops.quote_name
    rollups = quote(apps.get_model("reports", "DailyRollup")._meta.db_table)
    pending = quote(apps.get_model("reports", "FirstTouchesPending")._meta.db_table)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {pending} (project_id, day, created_at) SELECT DISTINCT project_id, day, "
                       f"CURRENT_TIMESTAMP FROM {rollups} WHERE true ON CONFLICT (project_id, day) DO NOTHING")


def _text_keys_bytewise(apps, schema_editor):
    """PostgreSQL: the ledgers' text key columns compare bytewise (COLLATE "C"), as migration 0005 made them."""
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    for model in ("DailyFirstTouch", "PeriodFirstTouch"):
        table = apps.get_model("reports", model)._meta.db_table
        columns = ("type", "grain", "channel_key", "domain", "recipient") + (("period",) if model[0] == "P" else ())
        with schema_editor.connection.cursor() as cursor:
            changes = []
            for column in columns:
                cursor.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                               "WHERE attrelid = %s::regclass AND attname = %s", [table, column])
                changes.append(f"ALTER COLUMN {quote(column)} TYPE {cursor.fetchone()[0]} COLLATE \"C\"")
        schema_editor.execute(f"ALTER TABLE {quote(table)} {', '.join(changes)}")


def _ledger_fields(first: tuple) -> list:
    return [
        ("project", models.ForeignKey(db_constraint=False, db_index=False,
                                      on_delete=django.db.models.deletion.CASCADE, related_name="+",
                                      to="apikeys.project")),
        *first,
        ("type", models.CharField(choices=EVENT_TYPES, max_length=16)),
        ("grain", models.CharField(choices=GRAINS, max_length=16)),
        ("channel_key", models.CharField(blank=True, max_length=36)),
        ("domain", models.CharField(blank=True, max_length=253)),
        ("recipient", models.CharField(max_length=254)),
    ]


class Migration(migrations.Migration):
    """A composite primary key cannot be altered in place: both ledgers are dropped and created anew."""

    dependencies = [
        ("apikeys", "0001_initial"),
        ("reports", "0011_exact_period_uniques"),
    ]

    operations = [
        migrations.DeleteModel(name="DailyFirstTouch"),
        migrations.DeleteModel(name="PeriodFirstTouch"),
        migrations.CreateModel(
            name="DailyFirstTouch",
            fields=[
                ("pk", models.CompositePrimaryKey("project", "day", "type", "grain", "channel_key", "domain",
                                                  "recipient", blank=True, editable=False, primary_key=True,
                                                  serialize=False)),
                *_ledger_fields((("day", models.DateField()),)),
                ("last_at", models.DateTimeField(
                    help_text="When the recipient's latest event of this type on the day occurred.")),
                ("last_human_at", models.DateTimeField(help_text="The same, of their human events (NULL: none).",
                                                       null=True)),
                ("last_machine_at", models.DateTimeField(
                    help_text="The same, of their machine events (NULL: none).", null=True)),
                ("new_human", models.BooleanField(
                    db_default=False, default=False,
                    help_text="Whether the row's latest write gave it its first human touch.")),
                ("new_machine", models.BooleanField(
                    db_default=False, default=False,
                    help_text="Whether the row's latest write gave it its first machine touch.")),
            ],
            options={
                "indexes": [models.Index(fields=["project", "grain", "channel_key", "domain", "type", "day",
                                                 "last_at"], include=["last_human_at", "last_machine_at"],
                                         name="first_touch_last_at")],
            },
        ),
        migrations.CreateModel(
            name="PeriodFirstTouch",
            fields=[
                ("pk", models.CompositePrimaryKey("project", "period", "start", "type", "grain", "channel_key",
                                                  "domain", "recipient", blank=True, editable=False,
                                                  primary_key=True, serialize=False)),
                *_ledger_fields((
                    ("period", models.CharField(choices=[("week", "ISO week (Monday)"),
                                                         ("month", "Calendar month")], max_length=8)),
                    ("start", models.DateField(help_text="The period's first day (a Monday, or the 1st).")),
                )),
                ("last_at", models.DateTimeField()),
                ("last_human_at", models.DateTimeField(null=True)),
                ("last_machine_at", models.DateTimeField(null=True)),
                ("new_human", models.BooleanField(db_default=False, default=False)),
                ("new_machine", models.BooleanField(db_default=False, default=False)),
            ],
        ),
        migrations.RunPython(_text_keys_bytewise, migrations.RunPython.noop),
        migrations.RunPython(_days_with_data_write_their_first_touches_again, migrations.RunPython.noop),
    ]
