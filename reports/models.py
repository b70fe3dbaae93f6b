"""Message events and the daily rollups the engagement report reads.

Every table that grows with traffic carries `project_id`, and its unique keys include it.
"""

from django.db import models

from apikeys.models import Project
from engagement_platform.clock import now
from engagement_platform.ids import new_id
from engagement_platform.traffic import MachineReason, RequestPurpose, Traffic

EVENT_ID_MAX_LENGTH = 128
MESSAGE_ID_MAX_LENGTH = 255
EMAIL_MAX_LENGTH = 254
DOMAIN_MAX_LENGTH = 253
URL_MAX_LENGTH = 2048
USER_AGENT_MAX_LENGTH = 512
CHANNEL_KEY_LENGTH = 36  # a UUID in its canonical text form
DEFAULT_CHANNEL_NAME = "Default"


class MessageEventType(models.TextChoices):
    SENT = "sent"
    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"


# Event types whose distinct recipients are counted per day (first-touch kinds).
UNIQUE_COUNTED_TYPES = (MessageEventType.OPENED, MessageEventType.CLICKED)


class RollupGrain(models.TextChoices):
    """The filter combinations of the report; each keeps its own exact daily distinct counts."""

    ALL = "all", "All traffic"
    CHANNEL = "channel", "Per channel"
    DOMAIN = "domain", "Per sending domain"
    CHANNEL_DOMAIN = "channel_domain", "Per channel and sending domain"


class Channel(models.Model):
    """A sending channel, identified by the client's UUID and created on first use.

    `external_id` is the UUID clients send; `id` equals it unless another project already
    holds that UUID, so two projects may use the same channel UUID without meeting.
    """

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="channels")
    external_id = models.UUIDField(editable=False, help_text="The channel UUID clients send.")
    name = models.CharField(max_length=200, blank=True)
    is_default = models.BooleanField(default=False, editable=False,
                                     help_text="The channel emails use when they name none.")
    created_at = models.DateTimeField(default=now, editable=False)

    class Meta:
        ordering = ["project", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "external_id"], name="channel_unique_per_project"),
            models.UniqueConstraint(fields=["project"], condition=models.Q(is_default=True),
                                    name="channel_one_default_per_project"),
        ]

    def __str__(self):
        return self.name or str(self.external_id)


class Message(models.Model):
    """One email, created by its first event; later events of the same message id keep its attributes."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    # No index of its own: the unique (project, client message id) index leads with the project.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    channel = models.ForeignKey(Channel, on_delete=models.RESTRICT, related_name="messages")
    client_message_id = models.CharField(max_length=MESSAGE_ID_MAX_LENGTH)
    from_address = models.CharField(max_length=EMAIL_MAX_LENGTH)
    from_domain = models.CharField(max_length=DOMAIN_MAX_LENGTH, help_text="Lowercased domain of the sender.")
    recipient = models.CharField(max_length=EMAIL_MAX_LENGTH, help_text="Lowercased recipient address.")
    created_at = models.DateTimeField(default=now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "client_message_id"], name="message_unique_per_project"),
        ]

    def __str__(self):
        return f"{self.client_message_id} to {self.recipient}"


class MessageEvent(models.Model):
    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    # No index of its own: the unique (project, client event id) index leads with the project. No
    # database-level foreign keys: the project is the event's message's (whose key is checked), and
    # the message is the row the inserting statement has just found by its key; a check per stored
    # event (which also locks the message row) costs a tenth of a backfill. Deleting a project or a
    # message still cascades (Django).
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False,
                                db_constraint=False)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="events", db_constraint=False)
    client_event_id = models.CharField(max_length=EVENT_ID_MAX_LENGTH, help_text="The client's idempotency key.")
    type = models.CharField(max_length=16, choices=MessageEventType.choices)
    occurred_at = models.DateTimeField()
    url = models.TextField(null=True, blank=True)
    user_agent = models.CharField(max_length=USER_AGENT_MAX_LENGTH, null=True, blank=True)
    received_at = models.DateTimeField(default=now, editable=False)
    # Contract section 6: `opened` and `clicked` are classified when recorded (every other type is human),
    # from what is stored beside the class: the user agent, and for events recorded by the platform's own
    # public routes (pixel, tracked link) the source IP and the request's purpose (NULL: no request).
    # Database defaults too: rows loaded around the ORM (COPY) are human traffic, as every unclassified type is.
    traffic = models.CharField(max_length=10, choices=Traffic.choices, default=Traffic.HUMAN, db_default=Traffic.HUMAN)
    machine_reason = models.CharField(max_length=20, choices=MachineReason.choices, null=True, blank=True)
    traffic_given = models.BooleanField(
        default=False, db_default=False,
        help_text="The class came with the event (`machine: true`, or a backfill line's `traffic`): "
                  "reclassify_traffic keeps it.")
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    request_purpose = models.CharField(max_length=12, choices=RequestPurpose.choices, null=True, blank=True)

    class Meta:
        ordering = ["-occurred_at"]
        # SQLite. On PostgreSQL the table is partitioned by month of `occurred_at` (migration 0014), where a
        # unique key must hold the partition column: the idempotency key lives in MessageEventKey instead.
        constraints = [
            models.UniqueConstraint(fields=["project", "client_event_id"], name="message_event_unique_per_project"),
        ]
        indexes = [models.Index(fields=["project", "occurred_at"], name="message_event_project_time")]

    def __str__(self):
        return f"{self.type} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class MessageEventKey(models.Model):
    """A stored message event's idempotency key, on PostgreSQL: the events are partitioned by month there, and a
    key unique across months cannot live on a partitioned table. The ingesting statement inserts the key first
    (`ON CONFLICT DO NOTHING`) and stores the event only when the key was new, in the same statement. Deleted
    with its event (retention). Empty on SQLite, whose events table keeps its unique key."""

    pk = models.CompositePrimaryKey("project", "client_event_id")
    # No database-level foreign key, as on the events; deleting a project still cascades (Django).
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False,
                                db_constraint=False)
    client_event_id = models.CharField(max_length=EVENT_ID_MAX_LENGTH)
    occurred_at = models.DateTimeField(help_text="The event's: which partition holds it.")

    def __str__(self):
        return self.client_event_id


class CountedRollup(models.Model):
    """A grain key's counted figures over a UTC day (or a part of it): what the rollup tables share.

    `channel_key` and `domain` are empty when the grain does not split by them.
    """

    # No index of its own: the unique key leads with the project. No database-level foreign key on this
    # derived table (rebuilt from raw events by rebuild_rollups); deleting a project still cascades (Django).
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False,
                                db_constraint=False)
    day = models.DateField()
    grain = models.CharField(max_length=16, choices=RollupGrain.choices)
    channel_key = models.CharField(max_length=CHANNEL_KEY_LENGTH, blank=True)
    domain = models.CharField(max_length=DOMAIN_MAX_LENGTH, blank=True)
    sent = models.BigIntegerField(default=0)
    delivered = models.BigIntegerField(default=0)
    opens = models.BigIntegerField(default=0)
    clicks = models.BigIntegerField(default=0)
    opens_human = models.BigIntegerField(default=0, db_default=0)
    opens_machine = models.BigIntegerField(default=0, db_default=0)
    clicks_human = models.BigIntegerField(default=0, db_default=0)
    clicks_machine = models.BigIntegerField(default=0, db_default=0)

    class Meta:
        abstract = True


class DailyRollup(CountedRollup):
    """One UTC day of one grain: event counts and the day's exact distinct openers and clickers."""

    unique_opens = models.BigIntegerField(default=0)
    unique_clicks = models.BigIntegerField(default=0)
    unique_opens_human = models.BigIntegerField(default=0, db_default=0)
    unique_opens_machine = models.BigIntegerField(default=0, db_default=0)
    unique_clicks_human = models.BigIntegerField(default=0, db_default=0)
    unique_clicks_machine = models.BigIntegerField(default=0, db_default=0)

    class Meta:
        ordering = ["project", "day", "grain", "channel_key", "domain"]
        constraints = [
            # Key order serves the report: one grain key's days are one index range.
            models.UniqueConstraint(fields=["project", "grain", "channel_key", "domain", "day"],
                                    name="rollup_unique_per_project_grain_day"),
        ]
        indexes = [models.Index(fields=["project", "day"], name="rollup_project_day")]

    def __str__(self):
        return f"{self.day} {self.grain} {self.channel_key} {self.domain}".strip()


class DailyFirstTouch(models.Model):
    """That a recipient opened (or clicked) on a day within one grain key: the distinct-count ledger.

    One row per day, event type, grain key and recipient, with the recipient's last touch of the type
    (`last_at`) and per traffic class (NULL until they have one). The write that creates the row adds
    one to the rollup's all-traffic unique count, and the write that first sets a class's time adds
    one to that class's (`new_<class>` notes it for the write's RETURNING), so the counts are exact
    under concurrent batches: each row is written under its own row lock.
    """

    # The key is the primary key: no surrogate id (and its index) per row of the largest derived table.
    pk = models.CompositePrimaryKey("project", "day", "type", "grain", "channel_key", "domain", "recipient")
    # No index of its own: the key leads with the project. No database-level foreign key on this derived
    # table (rebuilt from raw events by rebuild_rollups); deleting a project still cascades (Django).
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False,
                                db_constraint=False)
    day = models.DateField()
    type = models.CharField(max_length=16, choices=MessageEventType.choices)
    grain = models.CharField(max_length=16, choices=RollupGrain.choices)
    channel_key = models.CharField(max_length=CHANNEL_KEY_LENGTH, blank=True)
    domain = models.CharField(max_length=DOMAIN_MAX_LENGTH, blank=True)
    recipient = models.CharField(max_length=EMAIL_MAX_LENGTH)
    last_at = models.DateTimeField(help_text="When the recipient's latest event of this type on the day occurred.")
    last_human_at = models.DateTimeField(null=True, help_text="The same, of their human events (NULL: none).")
    last_machine_at = models.DateTimeField(null=True, help_text="The same, of their machine events (NULL: none).")
    new_human = models.BooleanField(default=False, db_default=False,
                                    help_text="Whether the row's latest write gave it its first human touch.")
    new_machine = models.BooleanField(default=False, db_default=False,
                                      help_text="Whether the row's latest write gave it its first machine touch.")
    new_row = models.BooleanField(default=False, db_default=False,
                                  help_text="Whether the row's latest write created it (PostgreSQL's ingestion: "
                                            "a partitioned table returns no xmax).")

    class Meta:
        indexes = [
            # A window that starts inside a day counts the day's rows touched at or after its start, per class
            # too: the class times are carried in the index (PostgreSQL), so the count reads the index alone.
            models.Index(fields=["project", "grain", "channel_key", "domain", "type", "day", "last_at"],
                         include=["last_human_at", "last_machine_at"], name="first_touch_last_at"),
        ]


class SliceRollup(CountedRollup):
    """The counted figures of one slice (`SLICE_MINUTES`) of a UTC day in one grain key.

    A window edge inside a day reads its whole slices from here and only one partial slice from
    raw events. Kept at ingestion with the daily rollups; written again with the first touches of a
    day whose first touches are pending (see `FirstTouchesPending`).
    """

    slice = models.SmallIntegerField(help_text="The slice of the UTC day: minutes since midnight // SLICE_MINUTES.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "grain", "channel_key", "domain", "day", "slice"],
                                    name="slice_rollup_unique"),
        ]
        indexes = [models.Index(fields=["project", "day"], name="slice_rollup_project_day")]


class FirstTouchesPending(models.Model):
    """A UTC day whose first touches (and slice rollups) are not written yet: a bulk load recounted its
    rollups without them.

    The day's rollups are exact (a recount counts distinct recipients from raw events); the first
    touches are needed only to count the day's later events incrementally, and they and the slices
    to read a window edge inside the day (until they are written the report reads such an edge from
    raw events). So a deferred backfill skips them (about one row per stored event), and the first
    ingestion batch that brings an event of the day writes them from raw events under the exclusive
    rollup lock (or rebuild_rollups does).
    """

    pk = models.CompositePrimaryKey("project", "day")
    # No database-level foreign key on this derived table; deleting a project still cascades (Django).
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False,
                                db_constraint=False)
    day = models.DateField()
    created_at = models.DateTimeField(default=now, editable=False)

    def __str__(self):
        return f"{self.day} (first touches not written yet)"


class PendingRecount(models.Model):
    """A UTC day whose rollups and first touches a bulk load still has to recount from raw events.

    A backfill that defers its rollups marks each day before it stores events of that day, and
    deletes its marks in the transaction that recounts those days. A mark left behind (the run
    crashed) is adopted by the next backfill of the project, or cleared by `rebuild_rollups`.
    `run` names the backfill; a live run holds an advisory lock on it (see reports.rollups.sql).
    """

    # No index of its own: the unique key leads with the project. No database-level foreign key on this
    # derived table (rebuilt from raw events by rebuild_rollups); deleting a project still cascades (Django).
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False,
                                db_constraint=False)
    day = models.DateField()
    run = models.UUIDField()
    created_at = models.DateTimeField(default=now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "day", "run"], name="pending_recount_unique"),
        ]

    def __str__(self):
        return f"{self.day} (backfill {self.run})"


class PeriodGrain(models.TextChoices):
    """The report buckets longer than a day whose distinct figures are also kept exact (`unique=exact`)."""

    WEEK = "week", "ISO week (Monday)"
    MONTH = "month", "Calendar month"


class PeriodFirstTouch(models.Model):
    """That a recipient opened (or clicked) within one ISO week or month and grain key: the exact-uniques ledger.

    The daily ledger's twin for longer buckets, one row per period, event type, grain key and recipient:
    the write that creates a row (or first sets a class's time) adds one to the period's distinct count
    (`PeriodRollup`), and the last touch times (the recipient's latest in the period, of any class and per
    class) answer the part of a period from a moment to its end.
    """

    pk = models.CompositePrimaryKey("project", "period", "start", "type", "grain", "channel_key", "domain",
                                    "recipient")
    # No database-level foreign key on this derived table (rebuilt from raw events); deleting a project
    # still cascades (Django).
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False,
                                db_constraint=False)
    period = models.CharField(max_length=8, choices=PeriodGrain.choices)
    start = models.DateField(help_text="The period's first day (a Monday, or the 1st).")
    type = models.CharField(max_length=16, choices=MessageEventType.choices)
    grain = models.CharField(max_length=16, choices=RollupGrain.choices)
    channel_key = models.CharField(max_length=CHANNEL_KEY_LENGTH, blank=True)
    domain = models.CharField(max_length=DOMAIN_MAX_LENGTH, blank=True)
    recipient = models.CharField(max_length=EMAIL_MAX_LENGTH)
    last_at = models.DateTimeField()
    last_human_at = models.DateTimeField(null=True)
    last_machine_at = models.DateTimeField(null=True)
    new_human = models.BooleanField(default=False, db_default=False)
    new_machine = models.BooleanField(default=False, db_default=False)
    new_row = models.BooleanField(default=False, db_default=False)

    # No index besides the key: every opened and clicked event writes this table's rows (two periods, each
    # grain), and the key alone gives a bucket's rows (equal period, start, type and grain key) as one range,
    # whose last touch times the partial bucket's count filters.


class PeriodRollup(models.Model):
    """One ISO week or month of one grain key: its exact distinct openers and clickers (per class too)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False,
                                db_constraint=False)
    period = models.CharField(max_length=8, choices=PeriodGrain.choices)
    start = models.DateField()
    grain = models.CharField(max_length=16, choices=RollupGrain.choices)
    channel_key = models.CharField(max_length=CHANNEL_KEY_LENGTH, blank=True)
    domain = models.CharField(max_length=DOMAIN_MAX_LENGTH, blank=True)
    unique_opens = models.BigIntegerField(default=0)
    unique_clicks = models.BigIntegerField(default=0)
    unique_opens_human = models.BigIntegerField(default=0, db_default=0)
    unique_opens_machine = models.BigIntegerField(default=0, db_default=0)
    unique_clicks_human = models.BigIntegerField(default=0, db_default=0)
    unique_clicks_machine = models.BigIntegerField(default=0, db_default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "period", "grain", "channel_key", "domain", "start"],
                                    name="period_rollup_unique"),
        ]
