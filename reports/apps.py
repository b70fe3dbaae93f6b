from datetime import timedelta

from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "reports"
    verbose_name = "Email engagement reports"

    def ready(self):
        from engagement_platform.db import partitions
        from reports import models, retention

        # PostgreSQL's monthly partitions (migration 0014); the derived tables' rows are dropped with the events
        # of their days. A week's ledger rows are keyed by its Monday and reach six days past their month.
        partitions.register(partitions.PartitionedTable(models.MessageEvent._meta.db_table, "occurred_at",
                                                        before_drop=retention.events_partition_settle))
        for model in (models.DailyFirstTouch, models.DailyRollup, models.SliceRollup):
            partitions.register(partitions.PartitionedTable(model._meta.db_table, "day"))
        partitions.register(partitions.PartitionedTable(models.PeriodFirstTouch._meta.db_table, "start",
                                                        reach=timedelta(days=6)))
