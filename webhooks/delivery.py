"""Sending deliveries: claim (a lease, so one worker sends at a time), POST to the checked address, record the
outcome and the next attempt. At least once: a worker that dies between sending and recording leaves the lease
to expire, and the sweep sends the delivery again with the same `webhook-id`."""

import http.client
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q

from engagement_platform.clock import now
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.safety import Destination, UnsafeDestination, resolve
from webhooks.signing import signed_headers

logger = logging.getLogger("engagement_platform.webhooks")

USER_AGENT = "engagement-platform-webhooks/1"
ERROR_MAX_LENGTH = 500
DUE_BATCH = 100


@dataclass(frozen=True)
class Attempt:
    succeeded: bool
    response_status: int | None
    error: str | None
    duration_ms: int


def lease_seconds() -> float:
    return settings.WEBHOOK_LEASE_SECONDS


def claim(delivery_id) -> bool:
    """Take the delivery for one attempt if it is pending, due and nobody holds it (one atomic UPDATE)."""
    at = now()
    claimed = (WebhookDelivery.objects
               .filter(pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=at)
               .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=at))
               .update(leased_until=at + timedelta(seconds=lease_seconds())))
    return claimed == 1


def deliver(delivery_id) -> Attempt | None:
    """One attempt of a delivery, if this worker could claim it; None when it was not its to send."""
    if not claim(delivery_id):
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    if endpoint.disabled_at is not None:
        attempt = Attempt(succeeded=False, response_status=None, error="The endpoint is disabled.", duration_ms=0)
        attempt_record(delivery=delivery, attempt=attempt, final=True)
        return attempt
    attempt = send(endpoint=endpoint, delivery=delivery)
    attempt_record(delivery=delivery, attempt=attempt)
    return attempt


def deliver_due(limit: int = DUE_BATCH) -> int:
    """The sweep: send pending deliveries whose attempt is due and that no worker holds (retries, and any
    delivery whose enqueued task was lost). Returns how many attempts it made."""
    at = now()
    due = list(WebhookDelivery.objects
               .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=at)
               .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=at))
               .order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    return sum(1 for pk in due if deliver(pk) is not None)


def send(*, endpoint: WebhookEndpoint, delivery: WebhookDelivery) -> Attempt:
    """POST the delivery's body, signed, to the endpoint's checked address: 10 s in all, no redirects."""
    started = time.monotonic()
    try:
        destination = resolve(endpoint.url)
    except UnsafeDestination as exc:
        return Attempt(succeeded=False, response_status=None, error=f"Refused destination: {exc}",
                       duration_ms=elapsed_ms(started))
    at = now()
    headers = {
        **signed_headers(secrets_in_use=endpoint.signing_secrets(at), message_id=str(delivery.event_id),
                         timestamp=at, body=delivery.payload),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    try:
        status = post(destination, headers=headers, body=delivery.payload.encode("utf-8"),
                      timeout=settings.WEBHOOK_TIMEOUT_SECONDS)
    except TimeoutError:
        return Attempt(succeeded=False, response_status=None, error="Timed out.", duration_ms=elapsed_ms(started))
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        return Attempt(succeeded=False, response_status=None, error=f"{type(exc).__name__}: {exc}"[:ERROR_MAX_LENGTH],
                       duration_ms=elapsed_ms(started))
    succeeded = 200 <= status < 300
    return Attempt(succeeded=succeeded, response_status=status,
                   error=None if succeeded else f"The endpoint answered {status}.", duration_ms=elapsed_ms(started))


def post(destination: Destination, *, headers: dict, body: bytes, timeout: float) -> int:
    """The response status of one POST to the checked address (TLS verified against the URL's host name)."""
    deadline = time.monotonic() + timeout
    if destination.scheme == "https":
        connection = http.client.HTTPSConnection(destination.host, destination.port, timeout=timeout,
                                                 context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(destination.host, destination.port, timeout=timeout)
    # Connect to the address that was checked, not to whatever the name resolves to now (DNS rebinding).
    connection._create_connection = (
        lambda address, timeout=timeout, source_address=None:
        socket.create_connection((destination.address, address[1]), timeout, source_address))
    try:
        connection.request("POST", destination.path, body=body, headers=headers)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        connection.sock.settimeout(remaining)
        response = connection.getresponse()
        return response.status
    finally:
        connection.close()


def elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def retry_delays() -> list[int]:
    return settings.WEBHOOK_RETRY_SCHEDULE


def next_attempt_after(attempts: int, at):
    """When the attempt after the `attempts`-th failed one is due, or None when the schedule is spent."""
    delays = retry_delays()
    if attempts - 1 < len(delays):
        return at + timedelta(seconds=delays[attempts - 1])
    return None


def attempt_record(*, delivery: WebhookDelivery, attempt: Attempt, final: bool = False) -> None:
    """Store an attempt's outcome, release the lease, and keep the endpoint's failing streak."""
    at = now()
    attempts = delivery.attempts + 1
    next_at = None if attempt.succeeded or final else next_attempt_after(attempts, at)
    status = (DeliveryStatus.SUCCEEDED if attempt.succeeded
              else DeliveryStatus.PENDING if next_at is not None else DeliveryStatus.FAILED)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=status, attempts=attempts, next_attempt_at=next_at, leased_until=None,
        last_response_status=attempt.response_status, last_error=attempt.error,
        last_duration_ms=attempt.duration_ms)
    endpoints = WebhookEndpoint.objects.filter(pk=delivery.endpoint_id)
    if attempt.succeeded:
        endpoints.filter(failing_since__isnull=False).update(failing_since=None)
    elif not final:
        endpoints.filter(failing_since__isnull=True).update(failing_since=at)


def disable_failing_endpoints() -> int:
    """Disable the endpoints whose every delivery has failed for WEBHOOK_DISABLE_AFTER_DAYS (3) days."""
    at = now()
    cutoff = at - timedelta(days=settings.WEBHOOK_DISABLE_AFTER_DAYS)
    disabled = (WebhookEndpoint.objects.filter(disabled_at__isnull=True, failing_since__lte=cutoff)
                .update(disabled_at=at))
    if disabled:
        logger.warning("webhook endpoints disabled after failing", extra={"count": disabled})
    return disabled
