from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self):
        from engagement_platform import event_hooks, periodic
        from webhooks import delivery, subscriptions

        event_hooks.listen(subscriptions.outbox)
        periodic.register(periodic.PeriodicJob(name="webhook-deliveries-due", every_seconds=1.0,
                                               run=delivery.deliver_due))
        periodic.register(periodic.PeriodicJob(name="webhook-endpoints-failing", every_seconds=300.0,
                                               run=delivery.disable_failing_endpoints))
