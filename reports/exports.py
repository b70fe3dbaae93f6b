"""Exports of the report side (contract section 9): the report as CSV, and the raw message events.

A raw event is exported in the ingestion format of section 4, so `backfill_message_events` of an
export into another project gives that project the same report. `message_event_line` is the one
mapping from a stored row to that line; `MESSAGE_EVENT_FIELDS` lists what it reads, in order.
"""

import csv
import io

from engagement_platform.clock import iso_exact
from reports.models import MessageEvent
from reports.selectors import Bucket, Window, bucket_json

REPORT_CSV_COLUMNS = ("period", "sent", "delivered", "opens", "unique_opens", "clicks", "unique_clicks",
                      "open_rate", "click_rate")
# The stored columns a raw event's line is made of, in the order `message_event_line` reads them.
MESSAGE_EVENT_FIELDS = ("client_event_id", "type", "message__client_message_id", "message__channel__external_id",
                        "message__from_address", "message__recipient", "occurred_at", "url", "user_agent")
# The keys of an exported line (NDJSON) and the CSV header, in order.
MESSAGE_EVENT_COLUMNS = ("id", "type", "messageId", "channel", "from", "recipient", "occurredAt", "url",
                         "userAgent")


def report_csv(buckets: list[Bucket]) -> bytes:
    """The report's buckets as CSV: a header row, then one row per bucket with the JSON body's values."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(REPORT_CSV_COLUMNS)
    for bucket in buckets:
        values = bucket_json(bucket)
        writer.writerow([values[name] for name in REPORT_CSV_COLUMNS])
    return buffer.getvalue().encode("utf-8")


def message_event_rows(*, project, window: Window):
    """The project's raw message events in `window`, oldest first (ties by id), as MESSAGE_EVENT_FIELDS rows."""
    return (MessageEvent.objects
            .filter(project=project, occurred_at__gte=window.start, occurred_at__lt=window.end)
            .order_by("occurred_at", "id")
            .values_list(*MESSAGE_EVENT_FIELDS))


def message_event_line(row: tuple) -> dict:
    """One stored event (a MESSAGE_EVENT_FIELDS row) as the section-4 event it was ingested as."""
    event_id, event_type, message_id, channel, from_address, recipient, occurred_at, url, user_agent = row
    return {"id": event_id, "type": event_type, "messageId": message_id, "channel": str(channel),
            "from": from_address, "recipient": recipient, "occurredAt": iso_exact(occurred_at), "url": url,
            "userAgent": user_agent}
