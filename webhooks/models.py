"""Webhook endpoints of a project and their deliveries (the outbox: one row per event and endpoint)."""

from django.db import models

from apikeys.models import Project
from engagement_platform.clock import now
from engagement_platform.ids import new_id

URL_MAX_LENGTH = 2000
DESCRIPTION_MAX_LENGTH = 500


class WebhookEndpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=URL_MAX_LENGTH)
    description = models.CharField(max_length=DESCRIPTION_MAX_LENGTH, blank=True)
    events = models.JSONField(default=list, help_text="Subscribed event types.")
    include_machine = models.BooleanField(default=False, help_text="Also deliver machine-traffic events.")
    secret = models.CharField(max_length=200, editable=False)
    previous_secret = models.CharField(max_length=200, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=now, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True, editable=False,
                                         help_text="First failed attempt since the last success.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "created_at"], name="webhook_endpoint_project")]

    def __str__(self):
        return self.url

    def signing_secrets(self, at) -> list[str]:
        """The secrets a delivery at `at` is signed with: the current one, and the previous during its overlap."""
        secrets = [self.secret]
        if self.previous_secret and self.previous_secret_expires_at and self.previous_secret_expires_at > at:
            secrets.append(self.previous_secret)
        return secrets


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class WebhookDelivery(models.Model):
    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    # No index of its own: the delivery log's index and the once-per-event key both lead with it.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField(help_text="The payload's id, sent as webhook-id on every attempt.")
    event_type = models.CharField(max_length=64)
    payload = models.TextField(help_text="The exact body sent on every attempt.")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    leased_until = models.DateTimeField(null=True, blank=True, editable=False,
                                        help_text="A worker is sending it until then.")
    last_response_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, null=True, blank=True)
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [models.UniqueConstraint(fields=["project", "endpoint", "event_id", "event_type"],
                                               name="webhook_delivery_once_per_event")]
        indexes = [
            models.Index(fields=["project", "endpoint", "created_at"], name="webhook_delivery_log"),
            models.Index(fields=["next_attempt_at"], name="webhook_delivery_due",
                         condition=models.Q(status="pending")),
        ]

    def __str__(self):
        return f"{self.event_type} → {self.endpoint_id}"
