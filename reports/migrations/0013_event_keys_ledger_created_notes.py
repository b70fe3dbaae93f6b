import django.db.models.deletion
from django.db import migrations, models


def _event_key_bytewise(apps, schema_editor):
    """PostgreSQL: the key's text compares bytewise (COLLATE "C"), as the events' did (migration 0005)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("reports", "MessageEventKey")._meta.db_table)
    schema_editor.execute(f'ALTER TABLE {table} ALTER COLUMN client_event_id TYPE varchar(128) COLLATE "C"')


class Migration(migrations.Migration):
    """The event keys and the ledgers' created notes that monthly partitions need (migration 0014)."""

    dependencies = [
        ('apikeys', '0001_initial'),
        ('reports', '0012_ledger_row_per_type'),
    ]

    operations = [
        migrations.AddField(
            model_name='dailyfirsttouch',
            name='new_row',
            field=models.BooleanField(db_default=False, default=False, help_text="Whether the row's latest write created it (PostgreSQL's ingestion: a partitioned table returns no xmax)."),
        ),
        migrations.AddField(
            model_name='periodfirsttouch',
            name='new_row',
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.CreateModel(
            name='MessageEventKey',
            fields=[
                ('pk', models.CompositePrimaryKey('project', 'client_event_id', blank=True, editable=False, primary_key=True, serialize=False)),
                ('client_event_id', models.CharField(max_length=128)),
                ('occurred_at', models.DateTimeField(help_text="The event's: which partition holds it.")),
                ('project', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='apikeys.project')),
            ],
        ),
        migrations.RunPython(_event_key_bytewise, migrations.RunPython.noop, elidable=False),
    ]
