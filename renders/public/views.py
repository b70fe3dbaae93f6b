"""The share page and its file routes, the email open pixel and the tracked link. No key: the token is the credential.

Every answer about a token is one of: the page (open), the same 404 page (no such token), the same 410
page (revoked, expired, or its project deleted), or the 429 page (past the share's budget for this client
IP, renders/public/budget.py). Nothing is recorded for the last three. The open pixel answers its GIF
whatever the token, and records only for an open email share within its budget.
"""

from typing import NamedTuple

from django.http import FileResponse, HttpResponse, HttpResponseRedirect
from django.shortcuts import render as render_template
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from engagement_platform.clientip import client_ip
from engagement_platform.traffic import request_purpose
from renders.emails import TRANSPARENT_GIF, email_click_record, email_open_record
from renders.models import ActorKind, EventType, Share
from renders.public.budget import public_budget_spend
from renders.services import record_event
from renders.shares import LinkState, link_resolve, share_page_url

SHARE_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; frame-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
UNAVAILABLE_PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The PDF itself: embeddable by the share page only, and allowed nothing of its own.
FILE_CSP = "default-src 'none'; frame-ancestors 'self'"
PIXEL_CSP = "default-src 'none'; frame-ancestors 'none'"


def private(response, csp: str, *, frame_options: str = "DENY"):
    """Headers for everything behind a token: never cached, never sniffed, never leaked through Referer."""
    response["Cache-Control"] = "no-store"
    response["X-Frame-Options"] = frame_options  # for browsers that predate CSP frame-ancestors
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "no-referrer"
    response["Content-Security-Policy"] = csp
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def unavailable(request, state: LinkState):
    status = 410 if state is LinkState.GONE else 404
    response = render_template(request, "renders/share_unavailable.html", {"gone": status == 410}, status=status)
    return private(response, UNAVAILABLE_PAGE_CSP)


def rate_limited(request, decision, *, page: bool = True):
    """Past the share's budget: the 429 page (or an empty 429 for the print call), with Retry-After."""
    if page:
        response = render_template(request, "renders/share_rate_limited.html",
                                   {"retry_after": decision.retry_after}, status=429)
    else:
        response = HttpResponse(status=429)
    response["Retry-After"] = str(decision.retry_after)
    return private(response, UNAVAILABLE_PAGE_CSP)


class OpenShare(NamedTuple):
    share: Share
    source_ip: str | None


def open_share(request, token, *, page: bool = True) -> tuple[OpenShare | None, HttpResponse | None]:
    """(the open share and the client's IP, None) within its budget, else (None, the response to answer)."""
    link = link_resolve(token)
    if link.state is not LinkState.OPEN:
        return None, unavailable(request, link.state)
    source_ip = client_ip(request.META)
    refused = public_budget_spend(share=link.share, source_ip=source_ip)
    if refused is not None:
        return None, rate_limited(request, refused, page=page)
    return OpenShare(link.share, source_ip), None


def record_recipient_event(request, opened: OpenShare, event_type: str) -> None:
    """A recipient's event from a public route; a HEAD records what its GET would (then machine, `prefetch`)."""
    record_event(render=opened.share.render, event_type=event_type, actor_kind=ActorKind.RECIPIENT,
                 share=opened.share, source_ip=opened.source_ip, user_agent=request.META.get("HTTP_USER_AGENT"),
                 request_purpose=request_purpose(request.method, request.META))


def pdf_filename(render) -> str:
    return f"{render.name or render.id}".removesuffix(".pdf") + ".pdf"


def pdf_response(share, *, as_attachment: bool):
    render = share.render
    response = FileResponse(render.file.open("rb"), content_type="application/pdf", as_attachment=as_attachment,
                             filename=pdf_filename(render))
    return private(response, FILE_CSP, frame_options="SAMEORIGIN")


@require_http_methods(["GET", "HEAD"])
def share_page(request, token):
    opened, refusal = open_share(request, token)
    if refusal is not None:
        return refusal
    share = opened.share
    record_recipient_event(request, opened, EventType.VIEWED)
    context = {
        "title": share.render.name or "Document",
        "file_url": reverse("share-file", args=[token]),
        "download_url": reverse("share-download", args=[token]),
        "print_url": reverse("share-print", args=[token]),
        "download_name": pdf_filename(share.render),
    }
    return private(render_template(request, "renders/share_page.html", context), SHARE_PAGE_CSP)


@require_http_methods(["GET", "HEAD"])
def share_file(request, token):
    opened, refusal = open_share(request, token)
    if refusal is not None:
        return refusal
    return pdf_response(opened.share, as_attachment=False)


@require_http_methods(["GET", "HEAD"])
def share_download(request, token):
    opened, refusal = open_share(request, token)
    if refusal is not None:
        return refusal
    response = pdf_response(opened.share, as_attachment=True)
    record_recipient_event(request, opened, EventType.DOWNLOADED)
    return response


@csrf_exempt  # no cookies are involved: the token in the path is the credential
@require_POST
def share_print(request, token):
    opened, refusal = open_share(request, token, page=False)
    if refusal is not None:
        return refusal
    record_recipient_event(request, opened, EventType.PRINTED)
    return private(HttpResponse(status=204), UNAVAILABLE_PAGE_CSP)


@require_http_methods(["GET", "HEAD"])
def email_open_pixel(request, token):
    """The same GIF for every token and every state; an open email share within its budget records the open.

    A revoked or expired share, or a client past the share's budget, gets the GIF and nothing is recorded
    (a mail client shows a broken image for an error status, so the pixel never answers one).
    """
    link = link_resolve(token)
    if link.state is LinkState.OPEN:
        source_ip = client_ip(request.META)
        if public_budget_spend(share=link.share, source_ip=source_ip) is None:
            email_open_record(token=token, source_ip=source_ip, user_agent=request.META.get("HTTP_USER_AGENT"),
                              request_purpose=request_purpose(request.method, request.META))
    return private(HttpResponse(TRANSPARENT_GIF, content_type="image/gif"), PIXEL_CSP)


@require_http_methods(["GET", "HEAD"])
def email_click(request, token):
    """An open link redirects to its share page, an email's recording the click; a revoked or expired one is
    the 410 page and records nothing; an unknown token redirects too (the share page answers its 404)."""
    link = link_resolve(token)
    if link.state is LinkState.GONE:
        return unavailable(request, link.state)
    if link.state is LinkState.OPEN:
        source_ip = client_ip(request.META)
        refused = public_budget_spend(share=link.share, source_ip=source_ip)
        if refused is not None:
            return rate_limited(request, refused)
        # A HEAD records what its GET would: a machine's (`prefetch`) click.
        email_click_record(token=token, url=share_page_url(token, request),
                           user_agent=request.META.get("HTTP_USER_AGENT"), source_ip=source_ip,
                           request_purpose=request_purpose(request.method, request.META))
    return private(HttpResponseRedirect(reverse("share-page", args=[token])), PIXEL_CSP)
