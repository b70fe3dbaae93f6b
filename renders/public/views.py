"""The share page and its file routes, the email open pixel and the tracked link. No key: the token is the credential.

Every answer about a token is one of: the page (open), the same 404 page (no such token), the same 410
page (revoked, expired, or its project deleted). Nothing is recorded for the last two.
"""

from django.http import FileResponse, HttpResponse, HttpResponseRedirect
from django.shortcuts import render as render_template
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from renders.emails import TRANSPARENT_GIF, email_click_record, email_open_record
from renders.models import ActorKind, EventType
from renders.services import client_ip, record_event
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


def record_recipient_event(request, share, event_type: str) -> None:
    record_event(render=share.render, event_type=event_type, actor_kind=ActorKind.RECIPIENT, share=share,
                 source_ip=client_ip(request.META), user_agent=request.META.get("HTTP_USER_AGENT"))


def pdf_filename(render) -> str:
    return f"{render.name or render.id}".removesuffix(".pdf") + ".pdf"


def pdf_response(share, *, as_attachment: bool):
    render = share.render
    response = FileResponse(render.file.open("rb"), content_type="application/pdf", as_attachment=as_attachment,
                             filename=pdf_filename(render))
    return private(response, FILE_CSP, frame_options="SAMEORIGIN")


@require_http_methods(["GET", "HEAD"])
def share_page(request, token):
    link = link_resolve(token)
    if link.state is not LinkState.OPEN:
        return unavailable(request, link.state)
    share = link.share
    if request.method == "GET":
        record_recipient_event(request, share, EventType.VIEWED)
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
    link = link_resolve(token)
    if link.state is not LinkState.OPEN:
        return unavailable(request, link.state)
    return pdf_response(link.share, as_attachment=False)


@require_http_methods(["GET", "HEAD"])
def share_download(request, token):
    link = link_resolve(token)
    if link.state is not LinkState.OPEN:
        return unavailable(request, link.state)
    response = pdf_response(link.share, as_attachment=True)
    if request.method == "GET":
        record_recipient_event(request, link.share, EventType.DOWNLOADED)
    return response


@csrf_exempt  # no cookies are involved: the token in the path is the credential
@require_POST
def share_print(request, token):
    link = link_resolve(token)
    if link.state is not LinkState.OPEN:
        return unavailable(request, link.state)
    record_recipient_event(request, link.share, EventType.PRINTED)
    return private(HttpResponse(status=204), UNAVAILABLE_PAGE_CSP)


@require_http_methods(["GET", "HEAD"])
def email_open_pixel(request, token):
    """The same GIF for every token; an email's token also records the open."""
    if request.method == "GET":
        email_open_record(token=token, source_ip=client_ip(request.META),
                          user_agent=request.META.get("HTTP_USER_AGENT"))
    return private(HttpResponse(TRANSPARENT_GIF, content_type="image/gif"), PIXEL_CSP)


@require_http_methods(["GET", "HEAD"])
def email_click(request, token):
    """Every token redirects to its share page (which answers 404/410 itself); an email's token records the click."""
    if request.method == "GET":
        email_click_record(token=token, url=share_page_url(token, request),
                           user_agent=request.META.get("HTTP_USER_AGENT"))
    return private(HttpResponseRedirect(reverse("share-page", args=[token])), PIXEL_CSP)
