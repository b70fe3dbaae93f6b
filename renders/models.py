import secrets

from django.db import models

from apikeys.models import Project
from engagement_platform.clock import now
from engagement_platform.ids import new_id
from engagement_platform.traffic import MachineReason, RequestPurpose, Traffic

SHARE_TOKEN_BYTES = 24  # 192 bits, 32 URL-safe characters


class EventType(models.TextChoices):
    VIEWED = "viewed"
    DOWNLOADED = "downloaded"
    PRINTED = "printed"
    EMAIL_OPENED = "email_opened"
    EMAIL_SENT = "email_sent"
    SHARE_CREATED = "share_created"
    SHARE_REVOKED = "share_revoked"


PARTNER_EVENT_TYPES = (EventType.VIEWED, EventType.DOWNLOADED, EventType.PRINTED)
DEDUPED_EVENT_TYPES = frozenset(PARTNER_EVENT_TYPES)
LINK_OPENS_COUNTER = "linkOpens"
# Recipient events the traffic rules judge; every other event (partner, system) is human.
CLASSIFIED_EVENT_TYPES = frozenset((EventType.VIEWED, EventType.DOWNLOADED, EventType.PRINTED,
                                    EventType.EMAIL_OPENED))
MACHINE_COUNTER_PREFIX = "machine:"


def machine_counter_key(key: str) -> str:
    """The counter of the machine events among `key`'s (an EventType value or LINK_OPENS_COUNTER); a class's
    count is read from these: machine = this counter, human = the key's own counter less this one."""
    return MACHINE_COUNTER_PREFIX + key


class ActorKind(models.TextChoices):
    RECIPIENT = "recipient"
    PARTNER = "partner"
    SYSTEM = "system"


class RenderStatus(models.TextChoices):
    SUCCEEDED = "succeeded"


def render_upload_path(instance, filename):
    return f"renders/{instance.project_id}/{instance.id}.pdf"


class Render(models.Model):
    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="renders")
    name = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=20, choices=RenderStatus.choices, default=RenderStatus.SUCCEEDED)
    file = models.FileField(upload_to=render_upload_path, max_length=300)
    size_bytes = models.BigIntegerField()
    # Read from the PDF at upload (renders/pdfpages.py); null only for a render stored before pages were read
    # whose file did not open.
    page_count = models.PositiveIntegerField(null=True, blank=True)
    page_sizes = models.JSONField(default=list, blank=True, help_text="Each page's [width, height] in points.")
    created_at = models.DateTimeField(default=now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at", "-id"], name="render_project_recent")]

    def __str__(self):
        return self.name or str(self.id)


def new_share_token() -> str:
    return secrets.token_urlsafe(SHARE_TOKEN_BYTES)


class Share(models.Model):
    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="shares")
    render = models.ForeignKey(Render, on_delete=models.CASCADE, related_name="shares")
    token = models.CharField(max_length=64, unique=True, default=new_share_token, editable=False)
    label = models.CharField(max_length=200, blank=True)
    recipient = models.EmailField(max_length=254, blank=True, help_text="Set when minted for an email.")
    created_at = models.DateTimeField(default=now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The share page asks for the viewer's email address before it shows anything of the document.
    require_email = models.BooleanField(default=False, db_default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["render", "-created_at"], name="share_render_recent")]

    def __str__(self):
        return self.label or self.recipient or str(self.id)

    def is_open(self, at) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > at)


class RenderEmail(models.Model):
    """One email of a render to one recipient. Its share's token is in the link, the click and the pixel."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    render = models.ForeignKey(Render, on_delete=models.CASCADE, related_name="emails")
    share = models.OneToOneField(Share, on_delete=models.CASCADE, related_name="email")
    message_id = models.CharField(max_length=255, help_text="The Message-ID, also the report side's message id.")
    channel_id = models.UUIDField(help_text="The report side's channel.")
    from_address = models.EmailField(max_length=254)
    recipient = models.EmailField(max_length=254)
    subject = models.CharField(max_length=255)
    sent_at = models.DateTimeField(default=now)
    delivered_at = models.DateTimeField(null=True, blank=True, help_text="When the mail backend accepted it.")
    failed_at = models.DateTimeField(null=True, blank=True, help_text="When the mail backend refused it.")

    class Meta:
        ordering = ["-sent_at", "-id"]
        indexes = [models.Index(fields=["render", "-sent_at"], name="email_render_recent")]
        constraints = [
            models.UniqueConstraint(fields=["project", "message_id"], name="email_unique_message_per_project"),
        ]

    def __str__(self):
        return f"{self.subject} to {self.recipient}"


class EngagementEvent(models.Model):
    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    render = models.ForeignKey(Render, on_delete=models.CASCADE, related_name="events")
    share = models.ForeignKey(Share, on_delete=models.SET_NULL, null=True, blank=True, related_name="events")
    event_type = models.CharField(max_length=20, choices=EventType.choices)
    actor_kind = models.CharField(max_length=20, choices=ActorKind.choices)
    source_ip = models.GenericIPAddressField(null=True, blank=True, unpack_ipv4=False)
    user_agent = models.CharField(max_length=512, null=True, blank=True)
    metadata = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=now)
    # Human or machine (contract section 6), decided when recorded; a machine event says why.
    traffic = models.CharField(max_length=10, choices=Traffic.choices, default=Traffic.HUMAN,
                               db_default=Traffic.HUMAN)
    machine_reason = models.CharField(max_length=20, choices=MachineReason.choices, null=True, blank=True)
    # What the recording request was for (a HEAD, a prefetch...), so the rules can be applied again later;
    # NULL for an event that came without a request (backfilled).
    request_purpose = models.CharField(max_length=12, choices=RequestPurpose.choices, null=True, blank=True)
    traffic_given = models.BooleanField(
        default=False, db_default=False,
        help_text="The class came with the event (a backfill line's `traffic`): reclassify_traffic keeps it.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["render", "-created_at", "-id"], name="event_render_recent"),
            # One class's newest events (the summary's `recent` for traffic=, the event log's filter) and one
            # type's (the event log's filter): each read stays a short index range however many events.
            models.Index(fields=["render", "traffic", "-created_at", "-id"], name="event_render_traffic_recent"),
            models.Index(fields=["render", "event_type", "-created_at", "-id"], name="event_render_type_recent"),
            models.Index(fields=["project", "created_at"], name="event_project_time"),
        ]

    def __str__(self):
        return f"{self.event_type} on {self.render_id}"


COUNTER_SHARDS = 16


class EngagementCounter(models.Model):
    """Per-render counts kept exact in the same transaction as each event insert.

    A count is the sum of up to COUNTER_SHARDS rows (`shard`): each live event adds to a random
    shard, so concurrent events on one popular render do not queue on a single row lock until
    commit. Reads sum the shards of the render: still a bounded, indexed read.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    render = models.ForeignKey(Render, on_delete=models.CASCADE, related_name="counters")
    key = models.CharField(max_length=20)  # an EventType value, LINK_OPENS_COUNTER, or a machine_counter_key
    shard = models.PositiveSmallIntegerField(default=0, db_default=0)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "render", "key", "shard"],
                                    name="counter_unique_per_render_key_shard"),
        ]


class DedupeMark(models.Model):
    """When an event of one dedupe key was last recorded; written atomically with the event."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    dedupe_key = models.CharField(max_length=200)
    last_recorded_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "dedupe_key"], name="dedupe_unique_per_project_key"),
        ]



class Visit(models.Model):
    """One viewer's continuous reading of one share (contract 7.3): started by a `viewed`, continued by the
    same viewer's activity less than VISIT_IDLE_MINUTES apart. Its figures are kept as reports arrive."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    render = models.ForeignKey(Render, on_delete=models.CASCADE, related_name="visits")
    share = models.ForeignKey(Share, on_delete=models.CASCADE, related_name="visits")
    viewer = models.CharField(max_length=64, help_text="The viewer's first-party cookie value.")
    viewer_email = models.EmailField(max_length=254, blank=True)
    started_at = models.DateTimeField(default=now)
    last_activity_at = models.DateTimeField(default=now)
    duration_ms = models.BigIntegerField(default=0)
    pages_viewed = models.PositiveIntegerField(default=0, help_text="Pages read for at least 1 s.")
    downloaded = models.BooleanField(default=False)
    printed = models.BooleanField(default=False)
    traffic = models.CharField(max_length=10, choices=Traffic.choices, default=Traffic.HUMAN)
    machine_reason = models.CharField(max_length=20, choices=MachineReason.choices, null=True, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True, unpack_ipv4=False)
    user_agent = models.CharField(max_length=512, null=True, blank=True)
    ended_announced_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="When the worker told listeners the visit ended (visit.ended), whether or not one wanted it.")

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["render", "-started_at", "-id"], name="visit_render_recent"),
            models.Index(fields=["render", "traffic", "-started_at", "-id"], name="visit_render_traffic_recent"),
            models.Index(fields=["share", "-started_at", "-id"], name="visit_share_recent"),
            models.Index(fields=["share", "viewer", "-last_activity_at"], name="visit_viewer_current"),
            models.Index(fields=["last_activity_at"], name="visit_last_activity"),
            models.Index(fields=["last_activity_at", "id"], name="visit_end_unannounced",
                         condition=models.Q(ended_announced_at__isnull=True)),
        ]

    def __str__(self):
        return f"visit of {self.share_id} by {self.viewer_email or self.viewer[:8]}"


class VisitPage(models.Model):
    """The reading time one visit spent on one page.

    Deleted with its render (`render`, a plain DELETE by render id); a visit's deletion does not collect its pages
    (DO_NOTHING), so a render's or a project's deletion stays a few statements however many visits it had, not
    a list of every visit id. The database's constraint still refuses a page left without its visit.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    render = models.ForeignKey(Render, on_delete=models.CASCADE, related_name="+")
    visit = models.ForeignKey(Visit, on_delete=models.DO_NOTHING, related_name="pages")
    page = models.PositiveIntegerField()
    ms = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "visit", "page"], name="visit_page_unique")]


class PageReading(models.Model):
    """One page of a render for one traffic class, over all its visits: reading time and the visits that read
    it for at least 1 s. Kept in the transaction of each activity report, so the pages read is O(pages)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    render = models.ForeignKey(Render, on_delete=models.CASCADE, related_name="page_readings")
    traffic = models.CharField(max_length=10, choices=Traffic.choices)
    page = models.PositiveIntegerField()
    total_ms = models.BigIntegerField(default=0)
    visits = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "render", "traffic", "page"],
                                               name="page_reading_unique")]


class VisitTotals(models.Model):
    """A render's visits of one traffic class in all: how many, their summed reading time, and how many read
    the last page for at least 1 s (kept with each visit start and activity report)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    render = models.ForeignKey(Render, on_delete=models.CASCADE, related_name="visit_totals")
    traffic = models.CharField(max_length=10, choices=Traffic.choices)
    visits = models.BigIntegerField(default=0)
    duration_ms = models.BigIntegerField(default=0)
    completed = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "render", "traffic"], name="visit_totals_unique")]
