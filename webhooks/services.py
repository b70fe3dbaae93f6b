"""Writes on webhook endpoints: create, change, delete, rotate the secret, retry a delivery, send a test."""

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction

from engagement_platform.clock import now
from engagement_platform.event_hooks import PublicEventType, RecordedEvent
from engagement_platform.ids import new_id
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.safety import UnsafeDestination, resolve
from webhooks.signing import new_secret
from webhooks.subscriptions import deliveries_store, kept_subscriptions, payload_body
from webhooks.tasks import enqueue_after_commit

ROTATION_OVERLAP = timedelta(hours=24)
SUBSCRIBABLE_TYPES = [choice.value for choice in PublicEventType]


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str


def destination_problem(url: str) -> str | None:
    """Why `url` may not be saved as an endpoint (form, scheme, and the addresses it resolves to), or None."""
    try:
        resolve(url)
    except UnsafeDestination as exc:
        return str(exc)
    return None


def endpoint_create(*, project, url: str, events: list[str], description: str = "",
                    include_machine: bool = False) -> CreatedEndpoint:
    secret = new_secret()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(project=project, url=url, events=list(events),
                                                  description=description, include_machine=include_machine,
                                                  secret=secret)
        kept_subscriptions.changed(project.pk)
    return CreatedEndpoint(endpoint=endpoint, secret=secret)


def endpoint_update(*, endpoint: WebhookEndpoint, changes: dict) -> WebhookEndpoint:
    """Apply `changes` (`url`, `events`, `description`, `include_machine`, `enabled`): disabling sets
    `disabled_at`, enabling clears it (and the failing streak)."""
    fields = []
    for name in ("url", "events", "description", "include_machine"):
        if name in changes:
            setattr(endpoint, name, changes[name])
            fields.append(name)
    if "enabled" in changes:
        if changes["enabled"] and endpoint.disabled_at is not None:
            endpoint.disabled_at, endpoint.failing_since = None, None
            fields += ["disabled_at", "failing_since"]
        elif not changes["enabled"] and endpoint.disabled_at is None:
            endpoint.disabled_at = now()
            fields.append("disabled_at")
    with transaction.atomic():
        if fields:
            endpoint.save(update_fields=fields)
        kept_subscriptions.changed(endpoint.project_id)
    return endpoint


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    with transaction.atomic():
        endpoint.delete()
        kept_subscriptions.changed(endpoint.project_id)


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> str:
    """A new secret; the old one keeps signing (beside the new) for ROTATION_OVERLAP."""
    secret = new_secret()
    endpoint.previous_secret, endpoint.secret = endpoint.secret, secret
    endpoint.previous_secret_expires_at = now() + ROTATION_OVERLAP
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
    return secret


def delivery_retry(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send a delivery again now, with its `webhook-id`; a failed one gets one more attempt."""
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.PENDING, next_attempt_at=now(),
                                                              leased_until=None)
        enqueue_after_commit([delivery.pk])
    delivery.refresh_from_db()
    return delivery


def endpoint_test(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A `webhook.test` event for this endpoint, whatever it subscribes to."""
    at = now()
    event = RecordedEvent(project_id=endpoint.project_id, id=new_id(), type=PublicEventType.WEBHOOK_TEST,
                          created_at=at, machine=False,
                          data=lambda: {"webhookId": str(endpoint.pk), "message": "A test event."})
    with transaction.atomic():
        stored = deliveries_store(project_id=endpoint.project_id, endpoint_ids=[endpoint.pk], event_id=event.id,
                                  event_type=event.type, created_at=at, body=payload_body(event))
    return WebhookDelivery.objects.get(pk=stored[0])


