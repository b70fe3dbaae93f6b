from django.apps import AppConfig


class RendersConfig(AppConfig):
    name = "renders"
    verbose_name = "Renders and engagement"

    def ready(self):
        from engagement_platform import periodic
        from engagement_platform.db import partitions
        from renders import models, retention, visits

        periodic.register(periodic.PeriodicJob(name="visits-ended", every_seconds=visits.ENDINGS_EVERY_SECONDS,
                                               run=visits.visits_ended_announce))
        # PostgreSQL's monthly partitions (migration 0008): a dropped month's events come off their counters.
        partitions.register(partitions.PartitionedTable(models.EngagementEvent._meta.db_table, "created_at",
                                                        before_drop=retention.events_partition_settle))
