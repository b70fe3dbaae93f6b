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
