"""Deferred rollups for bulk loads: the days a backfill still has to recount. Fewer checks per stored row:
no database-level project foreign key on message events (their message's is checked) nor on the derived,
rebuildable tables (rollups, first touches, recount marks)."""

import django.db.models.deletion
import engagement_platform.clock
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('apikeys', '0001_initial'),
        ('reports', '0003_project_indexes_in_unique_keys'),
    ]

    operations = [
        migrations.AlterField(
            model_name='dailyfirsttouch',
            name='project',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='apikeys.project'),
        ),
        migrations.AlterField(
            model_name='dailyrollup',
            name='project',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='apikeys.project'),
        ),
        migrations.AlterField(
            model_name='messageevent',
            name='project',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='apikeys.project'),
        ),
        migrations.CreateModel(
            name='PendingRecount',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('run', models.UUIDField()),
                ('created_at', models.DateTimeField(default=engagement_platform.clock.now, editable=False)),
                ('project', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='apikeys.project')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('project', 'day', 'run'), name='pending_recount_unique')],
            },
        ),
    ]
