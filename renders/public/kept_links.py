"""Open share links kept in each worker process, where the shared keys epoch makes that safe.

Every public route of a share starts with its token's lookup (the share, its render and project) and its
budget's count in the shared cache. With a shared cache (Redis) each worker keeps the open links it has
looked up, tagged with the keys epoch (`apikeys.keycache`) read before the database read, and the budget's
count compares the epoch in the same round trip: unchanged, the kept link is still the database's truth;
moved, the request is not counted and the link is looked up again. Every change that can close a link
replaces the epoch after it commits (`kept_links_store.links_changed`: a share's revocation, its render's
deletion; a project's soft delete already does, as a key change). Expiry is checked on every request
against the kept `expires_at`. A refusal (no such token, gone) is never answered from here: it is always the
database's. Without a shared cache, or while it is unreachable, every request reads the database.

Each request gets copies of the kept share, render and project (their file fields included), so no two
requests share a model instance.
"""

import logging

from django.db.models.base import ModelState

from apikeys.keycache import current_epoch, shared_epoch_available
from engagement_platform.clock import now
from engagement_platform.ratelimit import WindowDecision
from renders.kept_links_store import local_links
from renders.models import Share
from renders.public.budget import public_budget_spend, public_budget_spend_at_epoch
from renders.shares import LinkState, ResolvedLink, link_resolve, looks_like_token

logger = logging.getLogger("engagement_platform.public")


def link_open_and_spend(*, token: str, source_ip: str | None) -> tuple[ResolvedLink, WindowDecision | None]:
    """The share behind `token` and, when it is open, one request counted on its budget for `source_ip`:
    (the link, the budget's refusal or None). A link that is not open spends nothing."""
    epoch = None
    if looks_like_token(token) and shared_epoch_available():
        entry = local_links.get(token)
        if entry is not None and entry.value.is_open(now()):
            try:
                current, refusal = public_budget_spend_at_epoch(share=entry.value, source_ip=source_ip,
                                                                epoch=entry.epoch)
            except Exception as exc:  # Redis is down or unreachable: nothing kept can be trusted
                logger.warning("keys epoch unavailable: %s", type(exc).__name__)
                local_links.clear()
            else:
                if current:
                    return ResolvedLink(LinkState.OPEN, _own_copy(entry.value)), refusal
        try:  # read before the database: a change committed after this read moves the epoch again
            epoch = current_epoch()
        except Exception as exc:
            logger.warning("keys epoch unavailable: %s", type(exc).__name__)
            local_links.clear()
    link = link_resolve(token)
    if link.state is not LinkState.OPEN:
        local_links.drop(token)
        return link, None
    if epoch is not None:
        local_links.keep(token, _own_copy(link.share), epoch=epoch)
    return link, public_budget_spend(share=link.share, source_ip=source_ip)


def _own_copy(share: Share) -> Share:
    """A copy of a looked-up share with copies of its render and project, and a file field of the render's own."""
    render, project = _instance_copy(share.render), _instance_copy(share.project)
    render.file = share.render.file.name
    kept = _instance_copy(share)
    kept.render, kept.project = render, project
    return kept


def _instance_copy(instance):
    """What `copy.copy` makes of a model instance (its attributes and a state of its own, as `Model.__getstate__`
    copies them) without the detour through pickling's protocol, which cost more than the rest of a kept
    page image's request (every public request of a kept link makes three)."""
    state = ModelState()
    state.db, state.adding, state.fields_cache = (instance._state.db, instance._state.adding,
                                                  dict(instance._state.fields_cache))
    clone = instance.__class__.__new__(instance.__class__)
    clone.__dict__ = {**instance.__dict__, "_state": state}
    return clone
