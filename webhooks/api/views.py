"""Webhook endpoints over HTTP: thin views over webhooks.services and webhooks.selectors."""

from drf_spectacular.utils import OpenApiParameter
from rest_framework.response import Response

from apikeys.models import Scope
from apikeys.scoping import ProjectScopedAPIView
from engagement_platform.cursors import list_tag, parse_page_params
from engagement_platform.errors import ValidationFailed
from engagement_platform.openapi import keyed_operation
from renders.api.schema import page_parameters
from renders.api.serializers import StrictObjectSerializer, parse_or_raise
from renders.api.share_views import optional_json_body
from renders.api.views import next_cursor, require_body
from webhooks.api.serializers import (
    AcceptedSerializer,
    DeliveryPageSerializer,
    EndpointCreatedSerializer,
    EndpointCreateSerializer,
    EndpointListSerializer,
    EndpointOutSerializer,
    EndpointUpdateSerializer,
    SecretSerializer,
    delivery_json,
    endpoint_changes,
    endpoint_json,
)
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.selectors import delivery_page, endpoints_of
from webhooks.services import (
    delivery_retry,
    endpoint_create,
    endpoint_delete,
    endpoint_rotate_secret,
    endpoint_test,
    endpoint_update,
)

WEBHOOK_BODY_MAX_BYTES = 16 * 1024
STATUS_PARAMETER = OpenApiParameter("status", {"type": "string", "enum": list(DeliveryStatus.values)},
                                    OpenApiParameter.QUERY, required=False,
                                    description="Only deliveries in this status.")


def parse_status_filter(query) -> str | None:
    status = query.get("status")
    if status is None:
        return None
    if status not in DeliveryStatus.values:
        raise ValidationFailed(field_errors={"status": [
            "Must be one of " + ", ".join(f'"{value}"' for value in DeliveryStatus.values) + "."]})
    return status


class EmptyBodySerializer(StrictObjectSerializer):
    """The actions take no fields: no body, or `{}`."""


def parse_no_fields(request) -> None:
    """A body is optional on the action routes; one that is sent must be a JSON object without fields."""
    parse_or_raise(EmptyBodySerializer, optional_json_body(request))


def accepted(delivery) -> Response:
    return Response({"deliveryId": str(delivery.id), "status": delivery.status}, status=202)


class WebhookEndpointsView(ProjectScopedAPIView):
    required_scopes = {"GET": Scope.WEBHOOKS_MANAGE, "POST": Scope.WEBHOOKS_MANAGE}
    max_body_bytes = WEBHOOK_BODY_MAX_BYTES

    @keyed_operation(scope=Scope.WEBHOOKS_MANAGE, operation_id="listWebhooks", summary="List webhook endpoints",
                     description="Newest first, without their secrets.", responses={200: EndpointListSerializer})
    def get(self, request):
        return Response({"data": [endpoint_json(endpoint) for endpoint in endpoints_of(project=self.project)]})

    @keyed_operation(scope=Scope.WEBHOOKS_MANAGE, operation_id="createWebhook", summary="Create a webhook endpoint",
                     description="The URL must be `https` and resolve to public addresses only (unless the "
                                 "deployment sets `WEBHOOK_ALLOW_PRIVATE_NETWORKS=1`). The `secret` is shown only "
                                 "in this answer.",
                     request=EndpointCreateSerializer, responses={201: EndpointCreatedSerializer}, errors=[400, 413])
    def post(self, request):
        require_body(request)
        body = parse_or_raise(EndpointCreateSerializer, request.data)
        created = endpoint_create(project=self.project, url=body["url"], events=body["events"],
                                  description=body["description"], include_machine=body["includeMachine"])
        return Response({**endpoint_json(created.endpoint), "secret": created.secret}, status=201)


class WebhookEndpointDetailView(ProjectScopedAPIView):
    required_scopes = {"GET": Scope.WEBHOOKS_MANAGE, "PATCH": Scope.WEBHOOKS_MANAGE,
                       "DELETE": Scope.WEBHOOKS_MANAGE}
    max_body_bytes = WEBHOOK_BODY_MAX_BYTES

    def endpoint(self, webhook_id) -> WebhookEndpoint:
        return self.get_scoped_or_404(WebhookEndpoint.objects.all(), webhook_id, "webhook endpoint")

    @keyed_operation(scope=Scope.WEBHOOKS_MANAGE, operation_id="getWebhook", summary="Read a webhook endpoint",
                     responses={200: EndpointOutSerializer}, errors=[404])
    def get(self, request, webhook_id):
        return Response(endpoint_json(self.endpoint(webhook_id)))

    @keyed_operation(scope=Scope.WEBHOOKS_MANAGE, operation_id="updateWebhook", summary="Change a webhook endpoint",
                     description="`enabled: false` sets `disabledAt` (events meanwhile are not delivered later); "
                                 "`true` clears it.",
                     request=EndpointUpdateSerializer, responses={200: EndpointOutSerializer},
                     errors=[400, 404, 413])
    def patch(self, request, webhook_id):
        endpoint = self.endpoint(webhook_id)
        require_body(request)
        body = parse_or_raise(EndpointUpdateSerializer, request.data)
        return Response(endpoint_json(endpoint_update(endpoint=endpoint, changes=endpoint_changes(body))))

    @keyed_operation(scope=Scope.WEBHOOKS_MANAGE, operation_id="deleteWebhook", summary="Delete a webhook endpoint",
                     description="Its deliveries go with it.", responses={204: None}, errors=[404])
    def delete(self, request, webhook_id):
        endpoint_delete(endpoint=self.endpoint(webhook_id))
        return Response(status=204)


class WebhookRotateSecretView(ProjectScopedAPIView):
    required_scopes = {"POST": Scope.WEBHOOKS_MANAGE}
    max_body_bytes = WEBHOOK_BODY_MAX_BYTES

    @keyed_operation(scope=Scope.WEBHOOKS_MANAGE, operation_id="rotateWebhookSecret",
                     summary="Rotate a webhook endpoint's secret",
                     description="Deliveries of the next 24 hours are signed with both the old and the new secret.",
                     request=EmptyBodySerializer, responses={200: SecretSerializer}, errors=[400, 404, 413])
    def post(self, request, webhook_id):
        endpoint = self.get_scoped_or_404(WebhookEndpoint.objects.all(), webhook_id, "webhook endpoint")
        parse_no_fields(request)
        return Response({"secret": endpoint_rotate_secret(endpoint=endpoint)})


class WebhookTestView(ProjectScopedAPIView):
    required_scopes = {"POST": Scope.WEBHOOKS_MANAGE}
    max_body_bytes = WEBHOOK_BODY_MAX_BYTES

    @keyed_operation(scope=Scope.WEBHOOKS_MANAGE, operation_id="testWebhook", summary="Send a test event",
                     description="A `webhook.test` event to this endpoint, whatever it subscribes to.",
                     request=EmptyBodySerializer, responses={202: AcceptedSerializer}, errors=[400, 404, 413])
    def post(self, request, webhook_id):
        endpoint = self.get_scoped_or_404(WebhookEndpoint.objects.all(), webhook_id, "webhook endpoint")
        parse_no_fields(request)
        return accepted(endpoint_test(endpoint=endpoint))


class WebhookDeliveriesView(ProjectScopedAPIView):
    required_scopes = {"GET": Scope.WEBHOOKS_MANAGE}

    @keyed_operation(scope=Scope.WEBHOOKS_MANAGE, operation_id="listWebhookDeliveries",
                     summary="An endpoint's delivery log, newest first", responses={200: DeliveryPageSerializer},
                     errors=[400, 404], parameters=[*page_parameters("Deliveries"), STATUS_PARAMETER])
    def get(self, request, webhook_id):
        endpoint = self.get_scoped_or_404(WebhookEndpoint.objects.all(), webhook_id, "webhook endpoint")
        tag = list_tag("webhook-deliveries", endpoint.pk)
        page = parse_page_params(request.query_params, tag=tag)
        status = parse_status_filter(request.query_params)
        deliveries, has_more = delivery_page(endpoint=endpoint, status=status, limit=page.limit, after=page.after)
        return Response({"data": [delivery_json(delivery) for delivery in deliveries],
                         "nextCursor": next_cursor(deliveries, has_more, tag=tag)})


class WebhookDeliveryRetryView(ProjectScopedAPIView):
    required_scopes = {"POST": Scope.WEBHOOKS_MANAGE}
    max_body_bytes = WEBHOOK_BODY_MAX_BYTES

    @keyed_operation(scope=Scope.WEBHOOKS_MANAGE, operation_id="retryWebhookDelivery",
                     summary="Send a delivery again now",
                     description="The same body and the same `webhook-id`; a failed delivery gets one more attempt.",
                     request=EmptyBodySerializer, responses={202: AcceptedSerializer}, errors=[400, 404, 413])
    def post(self, request, webhook_id, delivery_id):
        endpoint = self.get_scoped_or_404(WebhookEndpoint.objects.all(), webhook_id, "webhook endpoint")
        delivery = self.get_scoped_or_404(WebhookDelivery.objects.filter(endpoint=endpoint), delivery_id,
                                          "delivery")
        parse_no_fields(request)
        return accepted(delivery_retry(delivery=delivery))
