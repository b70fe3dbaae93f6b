"""Emailing a render: a share for the recipient, a real message through Django's mail framework, and its
open pixel and tracked link. The message also lives on the report side (`sent`, `delivered`, `opened`,
`clicked` message events), so one email shows in both APIs.
"""

import base64
import logging
import unicodedata
from dataclasses import dataclass
from email.utils import parseaddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse

from engagement_platform.clock import now
from engagement_platform.errors import EmailFailed
from engagement_platform.ids import new_id
from renders.models import ActorKind, EventType, Render, RenderEmail
from renders.services import record_event, truncate_user_agent
from renders.shares import looks_like_token, share_mint
from reports.services import channel_get_or_create, default_channel_for, ingest_message_events
from reports.validation import stored_address_problem

logger = logging.getLogger("engagement_platform.emails")

# The smallest transparent GIF: 1x1, one colour, 43 bytes.
TRANSPARENT_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
SHARE_LABEL_FOR_EMAIL = "Email to {recipient}"


@dataclass(frozen=True)
class EmailLinks:
    link: str  # the tracked link, /c/<token>
    pixel: str  # the open pixel, /t/<token>.gif


def email_links(*, token: str, base_url: str) -> EmailLinks:
    base = base_url.rstrip("/")
    return EmailLinks(link=base + reverse("email-click", args=[token]),
                      pixel=base + reverse("email-pixel", args=[token]))


SHARED_WITH_YOU = " was shared with you"
HEADER_BREAKING_CATEGORIES = {"Cc", "Zl", "Zp", "Zs"}  # controls (CR, LF, NUL...), line/paragraph separators, spaces
# What a caller's text may not hold in a header: any control character (CR, LF, but also VT, FF, the
# file/group/record separators, NEL, DEL...) and the line and paragraph separators. Mail parsers split
# header lines on several of them, so one could add a header or cut one short.
LINE_BREAKING_CATEGORIES = {"Cc", "Zl", "Zp"}
SUBJECT_MAX_LENGTH = 200
DNS_NAME_MAX_LENGTH = 253


def breaks_a_header_line(value: str) -> bool:
    return any(unicodedata.category(ch) in LINE_BREAKING_CATEGORIES for ch in value)


def subject_problem(subject: str) -> str | None:
    """Why a caller's `subject` cannot be the Subject header, or None."""
    if len(subject) > SUBJECT_MAX_LENGTH:
        return f"Must be at most {SUBJECT_MAX_LENGTH} characters."
    if breaks_a_header_line(subject):
        return "Must be one line of text: no control characters or line or paragraph separators."
    return None


def address_problem(address: str, *, recipient: bool) -> str | None:
    """Why a syntactically valid `address` cannot be a sender or recipient of a render email, or None.

    It must fit where it is stored (lower-cased on the report side), hold nothing that breaks a header
    line, and be routable: an ASCII local part and a domain with a dot that is not an IP literal nor
    `localhost`, and that a mail server can look up (IDNA-encodable, at most 253 characters encoded).
    """
    if "@" not in address:  # not an address at all: the syntax check says so
        return None
    problem = stored_address_problem(address, stored_lowercased=recipient)
    if problem is not None:
        return problem
    if breaks_a_header_line(address):
        return "Must not contain control characters or line or paragraph separators."
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        return "The part before @ must be ASCII."
    name = domain.lower().rstrip(".")
    if domain.startswith("["):
        return "Must name a domain, not an IP address."
    if "." not in name:
        return "The domain must have a dot (e.g. example.com)."
    if name == "localhost" or name.endswith(".localhost"):
        return "Must not be a localhost address."
    try:
        encoded = name.encode("idna")
    except UnicodeError:
        return "The domain is not a valid internet domain name."
    if len(encoded) > DNS_NAME_MAX_LENGTH:
        return f"The domain is too long: at most {DNS_NAME_MAX_LENGTH} characters once encoded for DNS."
    return None


def default_subject(render: Render) -> str:
    """A one-line subject from the render's name: line breaks and other control characters become spaces
    (a header cannot carry them), runs of whitespace collapse, and a very long name is shortened."""
    name = (render.name or "").removesuffix(".pdf")
    name = " ".join("".join(" " if unicodedata.category(ch) in HEADER_BREAKING_CATEGORIES else ch
                            for ch in name).split())
    if not name:
        return "A document was shared with you"
    room = RenderEmail._meta.get_field("subject").max_length - len(SHARED_WITH_YOU)
    if len(name) > room:
        name = name[:room - 1].rstrip() + "…"
    return name + SHARED_WITH_YOU


def message_event(email: RenderEmail, *, event_type: str, event_id: str, at, url: str | None = None,
                  user_agent: str | None = None, source_ip: str | None = None,
                  request_purpose: str | None = None) -> dict:
    """One report-side event of `email`, in the shape `ingest_message_events` takes (with, for the pixel's and
    the tracked link's events, what the traffic rules read of their request)."""
    return {
        "id": f"email:{email.id}:{event_id}",
        "type": event_type,
        "message_id": email.message_id,
        "channel_id": email.channel_id,
        "from_address": email.from_address,
        "recipient": email.recipient,
        "occurred_at": at,
        "url": url,
        "user_agent": truncate_user_agent(user_agent),
        "source_ip": source_ip,
        "request_purpose": request_purpose,
    }


def message_id_for(email_id, sender: str) -> str:
    """`<id>@<sender's domain>`, within the column's length however long the (valid) domain is."""
    domain = sender.rpartition("@")[2] or "localhost"
    limit = RenderEmail._meta.get_field("message_id").max_length
    return f"{email_id}@{domain}"[:limit]


def render_email_send(*, render: Render, to: str, base_url: str, subject: str | None = None, message: str = "",
                      from_address: str | None = None, channel_id=None, source_ip: str | None = None,
                      user_agent: str | None = None) -> RenderEmail:
    """Email `render` to `to` with a share of its own; raises EmailFailed when the mail backend refuses it.

    First, in one transaction: the share (`share_created` by the system), the email row and its `sent`
    message event. Then the send, outside any lock. Once the backend accepted the message: `delivered`
    and `email_sent` (by the partner). A refused message keeps its `sent` and gets no `delivered`.
    """
    project = render.project
    channel = (channel_get_or_create(project=project, channel_id=channel_id) if channel_id is not None
               else default_channel_for(project=project))
    from_header = from_address or settings.DEFAULT_FROM_EMAIL
    sender = parseaddr(from_header)[1] or from_header
    email_id = new_id()
    with transaction.atomic():
        share = share_mint(render=render, label=SHARE_LABEL_FOR_EMAIL.format(recipient=to), recipient=to,
                           actor_kind=ActorKind.SYSTEM)
        email = RenderEmail.objects.create(
            id=email_id,
            project=project,
            render=render,
            share=share,
            message_id=message_id_for(email_id, sender),
            channel_id=channel.external_id,
            from_address=sender,
            recipient=to,
            subject=subject or default_subject(render),
            sent_at=share.created_at,
        )
        ingest_message_events(project=project, events=[
            message_event(email, event_type="sent", event_id="sent", at=email.sent_at),
        ])

    outgoing = compose(email=email, from_header=from_header, message=message,
                       links=email_links(token=share.token, base_url=base_url))
    try:
        accepted = outgoing.send(fail_silently=False)
    except Exception as exc:  # any backend failure: SMTP, socket, file system, a custom backend
        accepted = 0
        logger.warning("mail backend refused a render email", extra={"email_id": str(email.id),
                                                                     "error": type(exc).__name__})
    if not accepted:
        RenderEmail.objects.filter(pk=email.pk).update(failed_at=now())
        raise EmailFailed()

    with transaction.atomic():
        email.delivered_at = now()
        email.save(update_fields=["delivered_at"])
        record_event(render=render, event_type=EventType.EMAIL_SENT, actor_kind=ActorKind.PARTNER, share=share,
                     source_ip=source_ip, user_agent=user_agent, metadata={"emailId": str(email.id)},
                     at=email.delivered_at)
        ingest_message_events(project=project, events=[
            message_event(email, event_type="delivered", event_id="delivered", at=email.delivered_at),
        ])
    return email


def compose(*, email: RenderEmail, from_header: str, message: str, links: EmailLinks) -> EmailMultiAlternatives:
    """The message: a text part and an HTML part, both with the tracked link; the HTML part has the pixel."""
    context = {"email": email, "render": email.render, "note": message.strip(), "links": links,
               "document_name": email.render.name or "the document"}
    outgoing = EmailMultiAlternatives(
        subject=email.subject,
        body=render_to_string("renders/email/share.txt", context),
        from_email=from_header,
        to=[email.recipient],
        headers={"Message-ID": f"<{email.message_id}>"},
    )
    outgoing.attach_alternative(render_to_string("renders/email/share.html", context), "text/html")
    return outgoing


def email_for_token(token: str) -> RenderEmail | None:
    """The email whose share has this token, if any; none for a project that was deleted."""
    if not looks_like_token(token):
        return None
    return (RenderEmail.objects.select_related("share", "render", "project")
            .filter(share__token=token, project__deleted_at__isnull=True).first())


def email_open_record(*, token: str, source_ip: str | None, user_agent: str | None,
                      request_purpose: str | None = None) -> bool:
    """The pixel was fetched: `email_opened` on the render and `opened` on the message. False for other tokens."""
    email = email_for_token(token)
    if email is None:
        return False
    at = now()
    with transaction.atomic():
        result = record_event(render=email.render, event_type=EventType.EMAIL_OPENED, actor_kind=ActorKind.RECIPIENT,
                              share=email.share, source_ip=source_ip, user_agent=user_agent, at=at,
                              request_purpose=request_purpose)
        ingest_message_events(project=email.project, events=[
            message_event(email, event_type="opened", event_id=f"opened:{result.event.id}", at=at,
                          user_agent=user_agent, source_ip=source_ip, request_purpose=request_purpose),
        ])
    return True


def email_click_record(*, token: str, url: str, user_agent: str | None, source_ip: str | None = None,
                       request_purpose: str | None = None) -> bool:
    """The tracked link was followed: a `clicked` message event (the share page then records `viewed`)."""
    email = email_for_token(token)
    if email is None:
        return False
    ingest_message_events(project=email.project, events=[
        message_event(email, event_type="clicked", event_id=f"clicked:{new_id()}", at=now(), url=url,
                      user_agent=user_agent, source_ip=source_ip, request_purpose=request_purpose),
    ])
    return True
