import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from django.db import models

from engagement_platform.clock import now
from engagement_platform.ids import new_id

KEY_PREFIX = "ck_live_"
KEY_RANDOM_BYTES = 32  # 43 URL-safe characters
KEY_DISPLAY_LENGTH = len(KEY_PREFIX) + 8
LAST_USED_WRITE_INTERVAL = timedelta(minutes=5)


class Scope(models.TextChoices):
    RENDERS_READ = "renders.read", "Read renders, engagement and shares"
    RENDERS_WRITE = "renders.write", "Create renders, record events, manage shares, send emails"
    MESSAGES_WRITE = "messages.write", "Ingest message events"
    REPORTS_VIEW = "reports.view", "Read engagement reports"
    WEBHOOKS_MANAGE = "webhooks.manage", "Manage webhook endpoints and read their deliveries"


ALL_SCOPES = [scope.value for scope in Scope]


class ProjectQuerySet(models.QuerySet):
    def active(self):
        return self.filter(deleted_at__isnull=True)


class Project(models.Model):
    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    name = models.CharField(max_length=200, unique=True)
    retention_days = models.PositiveIntegerField(default=90, help_text="How far back reports may look.")
    rate_limit_per_minute = models.PositiveIntegerField(default=600, help_text="Requests per minute, all keys.")
    created_at = models.DateTimeField(default=now, editable=False)
    deleted_at = models.DateTimeField(null=True, blank=True, help_text="Set when soft-deleted.")

    objects = ProjectQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def kept_since(self, at: datetime) -> datetime:
        """The earliest moment the plan's retention still keeps at `at`: what reports may ask from, and
        before which `purge_expired` deletes events, visits and derived rows."""
        return at - timedelta(days=self.retention_days)


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def generate_raw_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def looks_like_key(raw: str) -> bool:
    return raw.startswith(KEY_PREFIX) and len(raw) >= len(KEY_PREFIX) + 32 and len(raw) <= 256


class ApiKey(models.Model):
    id = models.UUIDField(primary_key=True, default=new_id, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(max_length=KEY_DISPLAY_LENGTH, db_index=True, editable=False,
                              help_text="The key's first characters, for recognising it.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self):
        return f"{self.prefix}… ({self.name or 'unnamed'})"

    def matches(self, raw_key: str) -> bool:
        return hmac.compare_digest(self.key_hash, hash_key(raw_key))

    def is_usable(self, at) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > at)

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes
