"""Shares: minting and revoking public links, and resolving a link's token for the public pages."""

import re
from dataclasses import dataclass
from enum import Enum

from django.conf import settings
from django.db import transaction
from django.urls import reverse

from engagement_platform.clock import now
from renders.kept_links_store import links_changed
from renders.models import ActorKind, EventType, Render, Share
from renders.services import record_event

SHARE_LABEL_MAX_LENGTH = 200
# Tokens are URL-safe base64; anything else cannot be one and is not looked up.
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class LinkState(Enum):
    OPEN = "open"
    UNKNOWN = "unknown"  # 404
    GONE = "gone"  # revoked, expired, or its project deleted: 410


@dataclass(frozen=True)
class ResolvedLink:
    state: LinkState
    share: Share | None = None


def share_mint(*, render: Render, label: str = "", expires_at=None, recipient: str = "", require_email: bool = False,
               actor_kind: str = ActorKind.PARTNER, source_ip: str | None = None,
               user_agent: str | None = None) -> Share:
    """Create a share of `render` and record `share_created` for it, in one transaction."""
    with transaction.atomic():
        share = Share.objects.create(
            project_id=render.project_id,
            render=render,
            label=label[:SHARE_LABEL_MAX_LENGTH],
            recipient=recipient,
            expires_at=expires_at,
            require_email=require_email,
        )
        record_event(render=render, event_type=EventType.SHARE_CREATED, actor_kind=actor_kind, share=share,
                     source_ip=source_ip, user_agent=user_agent, at=share.created_at)
    return share


def share_revoke(*, share: Share, source_ip: str | None = None, user_agent: str | None = None) -> Share:
    """Revoke `share` once: the first call sets `revoked_at` and records `share_revoked`; later calls do nothing.

    The row lock makes concurrent revokes queue, so exactly one of them records the event.
    """
    with transaction.atomic():
        locked = Share.objects.select_for_update().select_related("render").get(pk=share.pk)
        if locked.revoked_at is None:
            locked.revoked_at = now()
            locked.save(update_fields=["revoked_at"])
            record_event(render=locked.render, event_type=EventType.SHARE_REVOKED, actor_kind=ActorKind.PARTNER,
                         share=locked, source_ip=source_ip, user_agent=user_agent, at=locked.revoked_at)
            links_changed()
    return locked


def looks_like_token(token) -> bool:
    return isinstance(token, str) and _TOKEN_SHAPE.match(token) is not None


def link_resolve(token: str) -> ResolvedLink:
    """The share behind a public token, by the unique token index; one query, none for a malformed token."""
    if not looks_like_token(token):
        return ResolvedLink(LinkState.UNKNOWN)
    share = Share.objects.select_related("render", "project").filter(token=token).first()
    if share is None:
        return ResolvedLink(LinkState.UNKNOWN)
    if share.project.deleted_at is not None or not share.is_open(now()):
        return ResolvedLink(LinkState.GONE, share)
    return ResolvedLink(LinkState.OPEN, share)


def public_base_url(request=None) -> str:
    """Where public pages live: PUBLIC_BASE_URL when set, else the request's own origin (no trailing slash)."""
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    if base:
        return base
    if request is None:
        raise ValueError("PUBLIC_BASE_URL is not set and there is no request to take the host from.")
    return request.build_absolute_uri("/").rstrip("/")


def public_url(path: str, request=None) -> str:
    return public_base_url(request) + path


def share_page_url(token: str, request=None) -> str:
    return public_url(reverse("share-page", args=[token]), request)


def share_link(token: str, request=None) -> str:
    """A share's page: absolute when the base is known (PUBLIC_BASE_URL or the request), else its path (what a
    webhook payload recorded outside a request carries when PUBLIC_BASE_URL is unset)."""
    if request is None and not settings.PUBLIC_BASE_URL:
        return reverse("share-page", args=[token])
    return share_page_url(token, request)
