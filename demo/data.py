"""Demo content: deterministic renders, shares, an email and message traffic, so a second run adds nothing."""

import random
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.db.models import Min
from django.urls import reverse

from apikeys.models import ALL_SCOPES, Scope
from demo.pdf import simple_pdf
from engagement_platform.clock import now
from renders.emails import email_click_record, email_links, email_open_record, render_email_send
from renders.models import ActorKind, EngagementEvent, EventType, Render, RenderEmail, Share
from renders.services import record_event, render_create
from renders.shares import share_mint, share_revoke
from reports.models import Channel
from reports.services import ingest_message_events

DEMO_PROJECT_NAME = "Demo"
DEMO_KEY_SCOPES = {
    "all": ALL_SCOPES,
    "read-only": [Scope.RENDERS_READ.value, Scope.REPORTS_VIEW.value],
    "ingest": [Scope.MESSAGES_WRITE.value],
}
DEMO_RENDERS = [  # (name, page lines, uploaded this many days ago: before any of its partner events)
    ("Quote Q-1042.pdf", ["Quote for 40 hours of consulting.", "Valid for 30 days."], 10),
    ("Master services agreement.pdf", ["Between Acme Corp and Globex.", "Term: 12 months."], 7),
    ("Invoice INV-7781.pdf", ["Amount due: 4,200.00 EUR.", "Due within 14 days."], 3),
]
PARTNER_ACTIVITY = [  # (render index, event type, days ago, source ip); later than the render's upload
    (0, EventType.VIEWED, 9, "198.51.100.10"),
    (0, EventType.DOWNLOADED, 9, "198.51.100.10"),
    (0, EventType.VIEWED, 4, "198.51.100.22"),
    (1, EventType.VIEWED, 6, "198.51.100.10"),
    (1, EventType.PRINTED, 5, "198.51.100.31"),
    (2, EventType.VIEWED, 2, "198.51.100.10"),
]


def ensure_renders(*, project) -> list[Render]:
    """The demo renders, uploaded once through the render service, then dated back to their upload day
    (the demo's history starts before its partner events)."""
    existing = list(Render.objects.filter(project=project).order_by("created_at"))
    if existing:
        return existing
    created, at = [], now()
    for name, lines, days_ago in DEMO_RENDERS:
        pdf = simple_pdf(name.removesuffix(".pdf"), lines)
        render = render_create(project=project, uploaded_file=SimpleUploadedFile(name, pdf), name=name)
        render.created_at = at - timedelta(days=days_ago)
        Render.objects.filter(pk=render.pk).update(created_at=render.created_at)
        created.append(render)
    return created


def ensure_consistent_timeline(*, project) -> int:
    """Date back any demo render whose events or shares predate it (a demo seeded by an older version
    recorded partner events days before its renders' upload): its `createdAt` becomes the earliest of them.
    Returns the number of renders changed; 0 on a demo seeded by this version."""
    renders = Render.objects.filter(project=project).annotate(
        first_event=Min("events__created_at"), first_share=Min("shares__created_at"))
    changed = 0
    for render in renders:
        earliest = min((at for at in (render.first_event, render.first_share) if at is not None), default=None)
        if earliest is not None and earliest < render.created_at:
            Render.objects.filter(pk=render.pk).update(created_at=earliest)
            changed += 1
    return changed


def ensure_activity(*, project, renders) -> str:
    """Partner events on the demo renders, once."""
    if EngagementEvent.objects.filter(project=project, actor_kind=ActorKind.PARTNER,
                                      event_type__in=[t for _, t, _, _ in PARTNER_ACTIVITY]).exists():
        return "partner activity already present"
    at = now()
    for index, event_type, days_ago, ip in PARTNER_ACTIVITY:
        record_event(render=renders[index], event_type=event_type, actor_kind=ActorKind.PARTNER,
                     source_ip=ip, user_agent="Mozilla/5.0 (demo dashboard)",
                     metadata={"source": "dashboard"}, at=at - timedelta(days=days_ago))
    return f"{len(PARTNER_ACTIVITY)} partner events"


# Shares -------------------------------------------------------------------------------------

RECIPIENT_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
# Slack unfurling a pasted share link: machine traffic (a link previewer) from day one.
LINK_PREVIEW_AGENT = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"


@dataclass(frozen=True)
class DemoShare:
    render: int  # index into the demo renders
    label: str
    activity: tuple[tuple[str, ...], ...]  # (event type, source ip[, user agent: a recipient's browser]), in order
    revoked: bool = False


DEMO_SHARES = [
    DemoShare(0, "For Alice (Globex procurement)", (
        (EventType.VIEWED, "54.209.60.63", LINK_PREVIEW_AGENT),  # the link pasted into Slack, unfurled
        (EventType.VIEWED, "203.0.113.7"), (EventType.DOWNLOADED, "203.0.113.7"),
        (EventType.VIEWED, "203.0.113.8"), (EventType.PRINTED, "203.0.113.8"))),
    DemoShare(1, "Legal review", ((EventType.VIEWED, "192.0.2.44"), (EventType.DOWNLOADED, "192.0.2.44"))),
    DemoShare(2, "Accounts payable (replaced)", ((EventType.VIEWED, "198.51.100.77"),), revoked=True),
]


def ensure_shares(*, project, renders) -> list[Share]:
    """The demo's public links, each minted once through the share service with its recipients' events."""
    shares = []
    for spec in DEMO_SHARES:
        render = renders[spec.render]
        share = Share.objects.filter(project=project, render=render, label=spec.label).first()
        if share is None:
            with transaction.atomic():
                share = share_mint(render=render, label=spec.label, actor_kind=ActorKind.PARTNER,
                                   source_ip="198.51.100.10", user_agent="Mozilla/5.0 (demo dashboard)")
                for event_type, ip, *agent in spec.activity:
                    record_event(render=render, event_type=event_type, actor_kind=ActorKind.RECIPIENT, share=share,
                                 source_ip=ip, user_agent=agent[0] if agent else RECIPIENT_AGENT)
                if spec.revoked:
                    share = share_revoke(share=share, source_ip="198.51.100.10")
        shares.append(share)
    return shares


def share_link(share: Share, base_url: str) -> str:
    return base_url.rstrip("/") + reverse("share-page", args=[share.token])


# Email --------------------------------------------------------------------------------------

DEMO_EMAIL_RECIPIENT = "alice@globex.example"
DEMO_EMAIL_FROM = "documents@acme.example"
# Backends that keep mail on this machine; with any other (SMTP) the demo sends nothing.
LOCAL_MAIL_BACKENDS = {
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.filebased.EmailBackend",
    "django.core.mail.backends.locmem.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
}


def ensure_email(*, project, renders, base_url: str) -> str:
    """One emailed render, sent once through the mail flow; its recipient opens it and follows the link.

    The open and the click go through the same functions as the pixel and the tracked link, so the
    email shows in both APIs. Nothing is sent when the configured backend would deliver real mail.
    """
    render = renders[0]
    if RenderEmail.objects.filter(project=project, recipient=DEMO_EMAIL_RECIPIENT).exists():
        return "demo email already sent"
    if settings.EMAIL_BACKEND not in LOCAL_MAIL_BACKENDS:
        return f"no demo email: {settings.EMAIL_BACKEND} would deliver it"
    email = render_email_send(render=render, to=DEMO_EMAIL_RECIPIENT, base_url=base_url,
                              subject="Your quote Q-1042", message="Here is the quote we discussed.",
                              from_address=DEMO_EMAIL_FROM, channel_id=DEMO_CHANNELS[1][0])
    token = email.share.token
    email_open_record(token=token, source_ip="203.0.113.50", user_agent=RECIPIENT_AGENT)
    email_click_record(token=token, url=email_links(token=token, base_url=base_url).link, user_agent=RECIPIENT_AGENT)
    record_event(render=render, event_type=EventType.VIEWED, actor_kind=ActorKind.RECIPIENT, share=email.share,
                 source_ip="203.0.113.50", user_agent=RECIPIENT_AGENT)  # what the page behind the link records
    where = f" (written to {settings.EMAIL_FILE_PATH})" if "filebased" in settings.EMAIL_BACKEND else ""
    return f"emailed {render.name} to {DEMO_EMAIL_RECIPIENT}{where}"


# Message traffic ----------------------------------------------------------------------------

DEMO_CHANNELS = [
    (uuid.UUID("0193c2c3-0000-7000-8000-000000000001"), "Newsletter"),
    (uuid.UUID("0193c2c3-0000-7000-8000-000000000002"), "Transactional"),
]
DEMO_SENDERS = ["news@acme.example", "billing@acme-mail.example", "alerts@globex.example"]
TRAFFIC_DAYS = 42  # six weeks, ending today
DEMO_RECIPIENTS = 80
INGEST_BATCH = 1000
# Messages per day for each (channel, sender); weekends send a third as much.
DAILY_VOLUME = {(0, 0): 14, (0, 2): 6, (1, 1): 9, (1, 2): 4}


def traffic_events(*, at) -> list[dict]:
    """Six weeks of sent, delivered, opened and clicked events before `at`.

    Ids depend only on the day's distance from `at` and the message's place in it, and the figures on
    a seeded generator, so every run produces the same ids: a rerun (even days later) adds nothing.
    """
    events = []
    for days_ago in range(TRAFFIC_DAYS):
        day = at - timedelta(days=days_ago)
        for (channel, sender), volume in DAILY_VOLUME.items():
            rng = random.Random(f"demo-traffic:{days_ago}:{channel}:{sender}")
            count = volume if day.weekday() < 5 else max(1, volume // 3)
            for n in range(count + rng.randrange(4)):
                message_id = f"demo-{days_ago:02d}-{channel}-{sender}-{n:03d}"
                sent_at = day - timedelta(hours=2 + rng.random() * 10)
                base = {"message_id": message_id, "channel_id": DEMO_CHANNELS[channel][0],
                        "from_address": DEMO_SENDERS[sender],
                        "recipient": f"reader{rng.randrange(DEMO_RECIPIENTS)}@example.org",
                        "url": None, "user_agent": None}
                events.append({**base, "id": f"{message_id}:sent", "type": "sent", "occurred_at": sent_at})
                if rng.random() < 0.04:
                    continue  # bounced: never delivered
                delivered_at = sent_at + timedelta(seconds=20 + rng.randrange(40))
                events.append({**base, "id": f"{message_id}:delivered", "type": "delivered",
                               "occurred_at": delivered_at})
                events += machine_traffic(base, message_id=message_id, delivered_at=delivered_at)
                if rng.random() < 0.45:
                    opened_at = sent_at + timedelta(minutes=5 + rng.randrange(100))
                    events.append({**base, "id": f"{message_id}:opened", "type": "opened",
                                   "occurred_at": opened_at, "user_agent": RECIPIENT_AGENT})
                    if rng.random() < 0.3:
                        events.append({**base, "id": f"{message_id}:opened-again", "type": "opened",
                                       "occurred_at": opened_at + timedelta(minutes=7),
                                       "user_agent": RECIPIENT_AGENT})
                    if rng.random() < 0.35:
                        events.append({**base, "id": f"{message_id}:clicked", "type": "clicked",
                                       "occurred_at": opened_at + timedelta(minutes=1),
                                       "url": "https://acme.example/offer", "user_agent": RECIPIENT_AGENT})
    return events


# Machine traffic the report tells apart (contract section 6), drawn from a generator of its own so the
# people's events above stay what they were: Apple Mail Privacy Protection loading the pixel on delivery
# (the bare `Mozilla/5.0`), and a security gateway opening the link two seconds after delivery.
APPLE_PROXY_AGENT = "Mozilla/5.0"
GATEWAY_AGENT = RECIPIENT_AGENT  # a scanner looks like a browser: its timing gives it away


def machine_traffic(base: dict, *, message_id: str, delivered_at) -> list[dict]:
    rng = random.Random(f"demo-machine:{message_id}")
    events = []
    if rng.random() < 0.2:
        events.append({**base, "id": f"{message_id}:proxy-open", "type": "opened", "user_agent": APPLE_PROXY_AGENT,
                       "occurred_at": delivered_at + timedelta(seconds=1 + rng.randrange(30))})
    if rng.random() < 0.05:
        events.append({**base, "id": f"{message_id}:scanner-click", "type": "clicked", "user_agent": GATEWAY_AGENT,
                       "url": "https://acme.example/offer", "occurred_at": delivered_at + timedelta(seconds=2)})
    return events


def ensure_message_traffic(*, project) -> str:
    """Ingest the six weeks of traffic through the report side's ingestion; already-known ids are duplicates."""
    events = traffic_events(at=now())
    accepted = 0
    for start in range(0, len(events), INGEST_BATCH):
        accepted += ingest_message_events(project=project, events=events[start:start + INGEST_BATCH]).accepted
    for channel_id, name in DEMO_CHANNELS:
        Channel.objects.filter(project=project, external_id=channel_id, name="").update(name=name)
    senders = ", ".join(sorted({address.partition("@")[2] for address in DEMO_SENDERS}))
    return (f"{TRAFFIC_DAYS // 7} weeks of message traffic on {len(DEMO_CHANNELS)} channels from {senders} "
            f"({accepted} new events of {len(events)})")
