from django.apps import AppConfig


class RetentionConfig(AppConfig):
    name = "retention"
    verbose_name = "Retention and partitions"

    def ready(self):
        from engagement_platform import periodic
        from retention import services

        periodic.register(periodic.PeriodicJob(name="partition-upkeep", every_seconds=services.UPKEEP_EVERY_SECONDS,
                                               run=services.partitions_keep_ahead))
        periodic.register(periodic.PeriodicJob(name="purge-expired", every_seconds=services.PURGE_EVERY_SECONDS,
                                               run=services.expired_purge))
