"""The one place the platform reads the time, so tests can move it."""

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def iso_ms(value: datetime | None) -> str | None:
    """Render-side timestamps: milliseconds and `Z`, e.g. 2026-05-03T10:20:00.000Z."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def iso_seconds(value: datetime) -> str:
    """Report-side timestamps: seconds and `Z`, e.g. 2026-05-17T00:00:00Z."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_exact(value: datetime) -> str:
    """A timestamp as stored, in UTC with `Z`: seconds, and the microseconds when there are any
    (e.g. 2026-05-17T09:30:00Z, 2026-05-17T09:30:00.250000Z); reads back (RFC 3339) as the same instant."""
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z"  # `+00:00`
