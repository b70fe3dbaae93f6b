"""The share page and its file routes, the email open pixel and the tracked link. No key: the token is the credential.

Every answer about a token is one of: the page (open), the same 404 page (no such token), the same 410
page (revoked, expired, or its project deleted), or the 429 page (past the share's budget for this client
IP, renders/public/budget.py). Nothing is recorded for the last three. The open pixel answers its GIF
whatever the token, and records only for an open email share within its budget.
"""

from typing import NamedTuple

from django.http import FileResponse, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render as render_template
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from engagement_platform.clientip import client_ip
from engagement_platform.traffic import request_purpose
from renders.emails import TRANSPARENT_GIF, email_click_record, email_open_record
from renders.models import ActorKind, EventType, Share
from renders.pdfpages import PAGE_IMAGE_CONTENT_TYPE, PAGE_IMAGE_WIDTH, page_image_open
from renders.public.kept_links import link_open_and_spend
from renders.public.reader import (
    ActivityProblem,
    answered_email,
    email_answer_problem,
    keep_email_answer,
    keep_viewer,
    parse_activity,
    viewer_email_of,
    viewer_of,
)
from renders.services import event_verdict, record_event, truncate_user_agent
from renders.shares import LinkState, share_page_url
from renders.visits import activity_record, visit_mark, visit_view

SHARE_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The email form posts to its own page.
EMAIL_GATE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PAGE_IMAGE_CACHE_CONTROL = "private, max-age=3600"
# A page image (a few hundred KB) is read and sent in one or two chunks where the server has no sendfile (the
# development server, ASGI, the test client) instead of FileResponse's 4 KB ones: about 50 fewer trips through
# the response iterator per image.
PAGE_IMAGE_BLOCK_BYTES = 256 * 1024
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


def email_required(request, *, page: bool = True):
    """What a `requireEmail` share serves before the viewer gave their address: a 403 page (or an empty 403)."""
    if page:
        response = render_template(request, "renders/share_email_required.html", status=403)
    else:
        response = HttpResponse(status=403)
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
    source_ip = client_ip(request.META)
    link, refused = link_open_and_spend(token=token, source_ip=source_ip)
    if link.state is not LinkState.OPEN:
        return None, unavailable(request, link.state)
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


def is_gated(request, share: Share) -> bool:
    """Whether a `requireEmail` share still waits for this viewer's address (nothing of the document is served)."""
    return share.require_email and not share.recipient and answered_email(request, share) is None


def reader_pages(render, token: str) -> list[dict]:
    """The reader's page images: their URL and their size in pixels at PAGE_IMAGE_WIDTH (for the layout)."""
    pages = []
    for number in range(1, (render.page_count or 0) + 1):
        width, height = (render.page_sizes[number - 1] if number <= len(render.page_sizes) else (612, 792))
        pages.append({"number": number, "url": reverse("share-page-image", args=[token, number]),
                      "width": PAGE_IMAGE_WIDTH, "height": round(PAGE_IMAGE_WIDTH * height / width)})
    return pages


def email_gate(request, share: Share, *, error: str | None = None, value: str = "", status: int = 200):
    """The form asking a `requireEmail` share's viewer for their address; it records nothing."""
    context = {"title": share.render.name or "Document", "error": error, "value": value}
    response = render_template(request, "renders/share_email_gate.html", context, status=status)
    response = private(response, EMAIL_GATE_CSP)
    # The form's post must carry its Origin for the CSRF check (no-referrer would send `Origin: null`); the
    # referrer still goes to this origin only.
    response["Referrer-Policy"] = "same-origin"
    return response


@require_http_methods(["GET", "HEAD", "POST"])
def share_page(request, token):
    opened, refusal = open_share(request, token)
    if refusal is not None:
        return refusal
    share = opened.share
    if request.method == "POST":
        return share_email_answer(request, share, token)
    if is_gated(request, share):
        return email_gate(request, share)
    record_recipient_event(request, opened, EventType.VIEWED)
    user_agent = truncate_user_agent(request.META.get("HTTP_USER_AGENT"))
    viewer = viewer_of(request)
    verdict = event_verdict(event_type=EventType.VIEWED, actor_kind=ActorKind.RECIPIENT, user_agent=user_agent,
                            source_ip=opened.source_ip, request_purpose=request_purpose(request.method, request.META))
    visit = visit_view(share=share, viewer=viewer.value, verdict=verdict, source_ip=opened.source_ip,
                       user_agent=user_agent, viewer_email=viewer_email_of(request, share))
    context = {
        "title": share.render.name or "Document",
        "visit_id": str(visit.id),
        "pages": reader_pages(share.render, token),
        "activity_url": reverse("share-activity", args=[token]),
        "download_url": reverse("share-download", args=[token]),
        "print_url": reverse("share-print", args=[token]),
        "download_name": pdf_filename(share.render),
    }
    response = render_template(request, "renders/share_page.html", context)
    keep_viewer(response, request, viewer)
    return private(response, SHARE_PAGE_CSP)


def share_email_answer(request, share: Share, token: str):
    """The email form's answer (CSRF-checked by the middleware): kept in a cookie for this share, then the reader."""
    if not share.require_email:
        return HttpResponseRedirect(reverse("share-page", args=[token]), status=303)
    value = (request.POST.get("email") or "").strip()
    problem = email_answer_problem(value)
    if problem is not None:
        return email_gate(request, share, error=problem, value=value[:254], status=400)
    response = HttpResponseRedirect(reverse("share-page", args=[token]), status=303)
    keep_email_answer(response, request, share, value)
    return private(response, UNAVAILABLE_PAGE_CSP)


@require_http_methods(["GET", "HEAD"])
def share_page_image(request, token, number: int):
    opened, refusal = open_share(request, token)
    if refusal is not None:
        return refusal
    render = opened.share.render
    if is_gated(request, opened.share):
        return email_required(request)
    if not 1 <= number <= (render.page_count or 0):
        return unavailable(request, LinkState.UNKNOWN)
    image = FileResponse(page_image_open(render, number), content_type=PAGE_IMAGE_CONTENT_TYPE)
    image.block_size = PAGE_IMAGE_BLOCK_BYTES
    response = private(image, UNAVAILABLE_PAGE_CSP)
    response["Cache-Control"] = PAGE_IMAGE_CACHE_CONTROL
    return response


@require_http_methods(["GET", "HEAD"])
def share_file(request, token):
    opened, refusal = open_share(request, token)
    if refusal is not None:
        return refusal
    if is_gated(request, opened.share):
        return email_required(request)
    return pdf_response(opened.share, as_attachment=False)


@require_http_methods(["GET", "HEAD"])
def share_download(request, token):
    opened, refusal = open_share(request, token)
    if refusal is not None:
        return refusal
    if is_gated(request, opened.share):
        return email_required(request)
    response = pdf_response(opened.share, as_attachment=True)
    record_recipient_event(request, opened, EventType.DOWNLOADED)
    visit_mark(share=opened.share, viewer=viewer_of(request).value, downloaded=True)
    return response


@csrf_exempt  # changes nothing a forged cross-site post could abuse: it counts a print of a token's holder
@require_POST
def share_print(request, token):
    opened, refusal = open_share(request, token, page=False)
    if refusal is not None:
        return refusal
    if is_gated(request, opened.share):
        return email_required(request, page=False)
    record_recipient_event(request, opened, EventType.PRINTED)
    visit_mark(share=opened.share, viewer=viewer_of(request).value, printed=True)
    return private(HttpResponse(status=204), UNAVAILABLE_PAGE_CSP)


def activity_refused(problem: ActivityProblem):
    body = {"error": {"code": "invalid_request", "message": problem.message}}
    return private(JsonResponse(body, status=problem.status), UNAVAILABLE_PAGE_CSP)


@csrf_exempt  # sent by navigator.sendBeacon, which carries no CSRF token; the visit id is the credential
@require_POST
def share_activity(request, token):
    """A reading report of the share page's script (contract 7.2): 204, 400 for a bad body, 404 for a visit
    that is not this share's."""
    opened, refusal = open_share(request, token, page=False)
    if refusal is not None:
        return refusal
    render = opened.share.render
    report = parse_activity(request, page_count=render.page_count or 0)
    if isinstance(report, ActivityProblem):
        return activity_refused(report)
    if activity_record(share=opened.share, visit_id=report.visit_id, pages=report.pages) is None:
        return activity_refused(ActivityProblem(404, "No visit with that id on this share."))
    return private(HttpResponse(status=204), UNAVAILABLE_PAGE_CSP)


@require_http_methods(["GET", "HEAD"])
def email_open_pixel(request, token):
    """The same GIF for every token and every state; an open email share within its budget records the open.

    A revoked or expired share, or a client past the share's budget, gets the GIF and nothing is recorded
    (a mail client shows a broken image for an error status, so the pixel never answers one).
    """
    source_ip = client_ip(request.META)
    link, refused = link_open_and_spend(token=token, source_ip=source_ip)
    if link.state is LinkState.OPEN:
        if refused is None:
            email_open_record(token=token, source_ip=source_ip, user_agent=request.META.get("HTTP_USER_AGENT"),
                              request_purpose=request_purpose(request.method, request.META))
    return private(HttpResponse(TRANSPARENT_GIF, content_type="image/gif"), PIXEL_CSP)


@require_http_methods(["GET", "HEAD"])
def email_click(request, token):
    """An open link redirects to its share page, an email's recording the click; a revoked or expired one is
    the 410 page and records nothing; an unknown token redirects too (the share page answers its 404)."""
    source_ip = client_ip(request.META)
    link, refused = link_open_and_spend(token=token, source_ip=source_ip)
    if link.state is LinkState.GONE:
        return unavailable(request, link.state)
    if link.state is LinkState.OPEN:
        if refused is not None:
            return rate_limited(request, refused)
        # A HEAD records what its GET would: a machine's (`prefetch`) click.
        email_click_record(token=token, url=share_page_url(token, request),
                           user_agent=request.META.get("HTTP_USER_AGENT"), source_ip=source_ip,
                           request_purpose=request_purpose(request.method, request.META))
    return private(HttpResponseRedirect(reverse("share-page", args=[token])), PIXEL_CSP)
