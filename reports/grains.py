"""UTC days and the rollup key a report's filters read (the rule itself: `reports.rollups.definition`)."""

import uuid
from datetime import UTC, date, datetime, time, timedelta

from reports.rollups.definition import CHANNEL, DOMAIN, GrainKey
from reports.rollups.definition import grain_key_for_filters as _grain_key_for_values


def channel_key_for(channel_external_id: uuid.UUID) -> str:
    """A channel's value in the rollups' channel dimension: its client UUID in canonical text."""
    return str(channel_external_id)


def grain_key_for_filters(*, channel_id: uuid.UUID | None, domain: str | None) -> GrainKey:
    """The single rollup key that answers a report filtered by channel and/or sending domain."""
    return _grain_key_for_values({CHANNEL.column: channel_key_for(channel_id) if channel_id is not None else None,
                                  DOMAIN.column: domain or None})


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = day_start(day)
    return start, start + timedelta(days=1)
