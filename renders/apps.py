from django.apps import AppConfig


class RendersConfig(AppConfig):
    name = "renders"
    verbose_name = "Renders and engagement"

    def ready(self):
        from engagement_platform import periodic
        from renders import visits

        periodic.register(periodic.PeriodicJob(name="visits-ended", every_seconds=visits.ENDINGS_EVERY_SECONDS,
                                               run=visits.visits_ended_announce))
