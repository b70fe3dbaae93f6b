"""Demo content: deterministic renders and engagement, so a second run adds nothing."""

from datetime import timedelta

from django.core.files.uploadedfile import SimpleUploadedFile

from apikeys.models import ALL_SCOPES, Scope
from demo.pdf import simple_pdf
from engagement_platform.clock import now
from renders.models import ActorKind, EngagementEvent, EventType, Render
from renders.services import record_event, render_create

DEMO_PROJECT_NAME = "Demo"
DEMO_KEY_SCOPES = {
    "all": ALL_SCOPES,
    "read-only": [Scope.RENDERS_READ.value, Scope.REPORTS_VIEW.value],
    "ingest": [Scope.MESSAGES_WRITE.value],
}
DEMO_RENDERS = [
    ("Quote Q-1042.pdf", ["Quote for 40 hours of consulting.", "Valid for 30 days."]),
    ("Master services agreement.pdf", ["Between Acme Corp and Globex.", "Term: 12 months."]),
    ("Invoice INV-7781.pdf", ["Amount due: 4,200.00 EUR.", "Due within 14 days."]),
]
PARTNER_ACTIVITY = [  # (render index, event type, days ago, source ip)
    (0, EventType.VIEWED, 9, "198.51.100.10"),
    (0, EventType.DOWNLOADED, 9, "198.51.100.10"),
    (0, EventType.VIEWED, 4, "198.51.100.22"),
    (1, EventType.VIEWED, 6, "198.51.100.10"),
    (1, EventType.PRINTED, 5, "198.51.100.31"),
    (2, EventType.VIEWED, 2, "198.51.100.10"),
]


def ensure_renders(*, project) -> list[Render]:
    existing = list(Render.objects.filter(project=project).order_by("created_at"))
    if existing:
        return existing
    created = []
    for name, lines in DEMO_RENDERS:
        pdf = simple_pdf(name.removesuffix(".pdf"), lines)
        created.append(render_create(project=project, uploaded_file=SimpleUploadedFile(name, pdf), name=name))
    return created


def ensure_activity(*, project, renders) -> str:
    """Partner events on the demo renders, once."""
    if EngagementEvent.objects.filter(project=project).exists():
        return "activity already present"
    at = now()
    for index, event_type, days_ago, ip in PARTNER_ACTIVITY:
        record_event(render=renders[index], event_type=event_type, actor_kind=ActorKind.PARTNER,
                     source_ip=ip, user_agent="Mozilla/5.0 (demo dashboard)",
                     metadata={"source": "dashboard"}, at=at - timedelta(days=days_ago))
    return f"{len(PARTNER_ACTIVITY)} partner events"
