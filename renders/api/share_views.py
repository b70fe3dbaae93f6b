"""Shares and render emails over HTTP: thin views over renders.shares and renders.emails."""

from rest_framework.response import Response

from apikeys.models import Scope
from apikeys.scoping import ProjectScopedAPIView
from engagement_platform.cursors import list_tag, parse_page_params
from engagement_platform.openapi import keyed_operation
from renders.api.schema import SHARE_PAGE_PARAMETERS
from renders.api.serializers import parse_or_raise
from renders.api.share_serializers import (
    EmailOutSerializer,
    EmailSendSerializer,
    ShareCreateSerializer,
    ShareListSerializer,
    ShareOutSerializer,
    email_json,
    share_json,
)
from renders.api.views import next_cursor, require_body
from renders.emails import render_email_send
from renders.models import ActorKind, Render, Share
from renders.selectors import share_page
from renders.services import client_ip
from renders.shares import public_base_url, share_mint, share_revoke

SHARE_BODY_MAX_BYTES = 16 * 1024
EMAIL_BODY_MAX_BYTES = 64 * 1024


def optional_json_body(request) -> dict:
    """The parsed body, or `{}` when there is none (every field of these bodies is optional)."""
    if request.META.get("CONTENT_LENGTH") in (None, "", "0") and "HTTP_TRANSFER_ENCODING" not in request.META:
        return {}
    return request.data


class RenderSharesView(ProjectScopedAPIView):
    required_scopes = {"GET": Scope.RENDERS_READ, "POST": Scope.RENDERS_WRITE}
    max_body_bytes = SHARE_BODY_MAX_BYTES

    @keyed_operation(scope=Scope.RENDERS_READ, operation_id="listShares",
                     summary="List a render's shares, newest first", responses={200: ShareListSerializer},
                     errors=[400, 404], parameters=SHARE_PAGE_PARAMETERS)
    def get(self, request, render_id):
        render = self.get_scoped_or_404(Render.objects.all(), render_id, "render")
        tag = list_tag("shares", render.pk)
        page = parse_page_params(request.query_params, tag=tag)
        shares, has_more = share_page(render=render, limit=page.limit, after=page.after)
        return Response({
            "data": [share_json(share, request) for share in shares],
            "nextCursor": next_cursor(shares, has_more, tag=tag),
        })

    @keyed_operation(scope=Scope.RENDERS_WRITE, operation_id="createShare", summary="Mint a public link",
                     description="Records `share_created` (actorKind `partner`).",
                     request=ShareCreateSerializer, responses={201: ShareOutSerializer}, errors=[400, 404, 413])
    def post(self, request, render_id):
        render = self.get_scoped_or_404(Render.objects.all(), render_id, "render")
        body = parse_or_raise(ShareCreateSerializer, optional_json_body(request))
        share = share_mint(render=render, label=body["label"], expires_at=body["expiresAt"],
                           require_email=body["requireEmail"],
                           actor_kind=ActorKind.PARTNER, source_ip=client_ip(request.META),
                           user_agent=request.META.get("HTTP_USER_AGENT"))
        return Response(share_json(share, request), status=201)


class RenderShareDetailView(ProjectScopedAPIView):
    required_scopes = {"DELETE": Scope.RENDERS_WRITE}

    @keyed_operation(scope=Scope.RENDERS_WRITE, operation_id="revokeShare", summary="Revoke a public link",
                     description="Records `share_revoked` the first time; revoking again changes nothing.",
                     responses={200: ShareOutSerializer}, errors=[404])
    def delete(self, request, render_id, share_id):
        render = self.get_scoped_or_404(Render.objects.all(), render_id, "render")
        share = self.get_scoped_or_404(Share.objects.filter(render=render), share_id, "share")
        share = share_revoke(share=share, source_ip=client_ip(request.META),
                             user_agent=request.META.get("HTTP_USER_AGENT"))
        return Response(share_json(share, request))


class RenderEmailsView(ProjectScopedAPIView):
    required_scopes = {"POST": Scope.RENDERS_WRITE}
    max_body_bytes = EMAIL_BODY_MAX_BYTES

    @keyed_operation(scope=Scope.RENDERS_WRITE, operation_id="emailRender", summary="Email a render",
                     description="Mints a share for the recipient (`share_created`, actorKind `system`), sends "
                                 "the email with a tracked link and an open pixel, records `email_sent` and the "
                                 "message's `sent` and `delivered` events for the engagement report.",
                     request=EmailSendSerializer, responses={201: EmailOutSerializer}, errors=[400, 404, 413, 502])
    def post(self, request, render_id):
        render = self.get_scoped_or_404(Render.objects.select_related("project"), render_id, "render")
        require_body(request)
        body = parse_or_raise(EmailSendSerializer, request.data)
        email = render_email_send(
            render=render,
            to=body["to"],
            subject=body.get("subject"),
            message=body["message"],
            from_address=body["from"],
            channel_id=body["channel"],
            base_url=public_base_url(request),
            source_ip=client_ip(request.META),
            user_agent=request.META.get("HTTP_USER_AGENT"),
        )
        return Response(email_json(email), status=201)
