"""Which rollup rows an event feeds, and which one a report's filters read.

A grain key is `(grain, channel_key, domain)`; the parts a grain does not split by are "".
Each event feeds one row of each of the four grains, so every filter combination the report
allows reads exactly one row per day, with its own exact distinct counts.
"""

import uuid
from datetime import UTC, date, datetime, time, timedelta

from reports.models import MessageEventType, RollupGrain

GrainKey = tuple[str, str, str]

ROLLUP_COUNT_COLUMNS = ("sent", "delivered", "opens", "clicks", "unique_opens", "unique_clicks")
# The rollup column each event type counts into, and the distinct-recipient column of each first touch.
COUNT_COLUMN = {
    MessageEventType.SENT: "sent",
    MessageEventType.DELIVERED: "delivered",
    MessageEventType.OPENED: "opens",
    MessageEventType.CLICKED: "clicks",
}
UNIQUE_COLUMN = {MessageEventType.OPENED: "unique_opens", MessageEventType.CLICKED: "unique_clicks"}


def channel_key_for(channel_external_id: uuid.UUID) -> str:
    return str(channel_external_id)


def grain_keys_for(*, channel_key: str, domain: str) -> tuple[GrainKey, ...]:
    """The four rollup keys one event of this channel and sending domain counts toward."""
    return (
        (RollupGrain.ALL.value, "", ""),
        (RollupGrain.CHANNEL.value, channel_key, ""),
        (RollupGrain.DOMAIN.value, "", domain),
        (RollupGrain.CHANNEL_DOMAIN.value, channel_key, domain),
    )


def grain_key_for_filters(*, channel_id: uuid.UUID | None, domain: str | None) -> GrainKey:
    """The single rollup key that answers a report filtered by channel and/or sending domain."""
    if channel_id is not None and domain:
        return RollupGrain.CHANNEL_DOMAIN.value, channel_key_for(channel_id), domain
    if channel_id is not None:
        return RollupGrain.CHANNEL.value, channel_key_for(channel_id), ""
    if domain:
        return RollupGrain.DOMAIN.value, "", domain
    return RollupGrain.ALL.value, "", ""


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = day_start(day)
    return start, start + timedelta(days=1)
