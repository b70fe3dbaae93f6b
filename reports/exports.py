"""Exports of the report side (contract section 9): the report as CSV, and the raw message events.

A raw event is exported in the ingestion format of section 4, so `backfill_message_events` of an
export into another project gives that project the same report (each line carries its event's
traffic class, which the backfill takes as given). `MESSAGE_EVENT_LINE` is the one
definition of that line (its keys, in order, and the stored field each comes from); the database's
and Python's ways of writing it are both derived from it (engagement_platform.exports).
"""

import csv
import io

from engagement_platform.db.replica import replica_read
from engagement_platform.exports import ENUM, TIME_EXACT, UUID, Column
from reports.models import MessageEvent
from reports.selectors import Bucket, ReportFilters, Window, bucket_json, engagement_report

REPORT_CSV_COLUMNS = ("period", "sent", "delivered", "opens", "unique_opens", "clicks", "unique_clicks",
                      "open_rate", "click_rate")
MESSAGE_EVENT_LINE = (
    Column("id", "client_event_id"),
    Column("type", "type", ENUM),
    Column("messageId", "message__client_message_id"),
    Column("channel", "message__channel__external_id", UUID),
    Column("from", "message__from_address"),
    Column("recipient", "message__recipient"),
    Column("occurredAt", "occurred_at", TIME_EXACT),
    Column("url", "url"),
    Column("userAgent", "user_agent"),
    Column("traffic", "traffic", ENUM),
    Column("machineReason", "machine_reason", ENUM),
)


def report_csv(buckets: list[Bucket]) -> bytes:
    """The report's buckets as CSV: a header row, then one row per bucket with the JSON body's values."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # as every export's CSV
    writer.writerow(REPORT_CSV_COLUMNS)
    for bucket in buckets:
        values = bucket_json(bucket)
        writer.writerow([values[name] for name in REPORT_CSV_COLUMNS])
    return buffer.getvalue().encode("utf-8")


def engagement_report_csv(*, project, window: Window, group_by: str, filters: ReportFilters) -> bytes:
    """The report's buckets as CSV, read as the JSON report is: from the replica when one is configured and
    the project has not written within the read-your-writes window, else (or when the replica fails) from
    the primary (contract section 10)."""
    return replica_read(project.pk, lambda using: report_csv(engagement_report(
        project=project, window=window, group_by=group_by, filters=filters, using=using)))


def message_events_in_window(*, project, window: Window):
    """The project's raw message events in `window`, oldest first (ties by id)."""
    return (MessageEvent.objects
            .filter(project=project, occurred_at__gte=window.start, occurred_at__lt=window.end)
            .order_by("occurred_at", "id"))
