"""Reads of webhook endpoints and their delivery log."""

from renders.selectors import keyset_page
from webhooks.models import WebhookDelivery, WebhookEndpoint

ENDPOINTS_LISTED_MAX = 500


def endpoints_of(*, project) -> list[WebhookEndpoint]:
    """The project's endpoints, newest first."""
    return list(WebhookEndpoint.objects.filter(project=project).order_by("-created_at", "-id")[:ENDPOINTS_LISTED_MAX])


def delivery_page(*, endpoint: WebhookEndpoint, status: str | None, limit: int, after) -> tuple[list, bool]:
    """One page of an endpoint's deliveries, newest first, optionally in one status."""
    queryset = WebhookDelivery.objects.filter(project_id=endpoint.project_id, endpoint=endpoint)
    if status is not None:
        queryset = queryset.filter(status=status)
    return keyset_page(queryset, limit=limit, after=after)
