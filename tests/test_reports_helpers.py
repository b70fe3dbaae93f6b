"""Builders shared by the report-side tests (sections 3 and 4). Holds no tests itself."""

import itertools
from datetime import UTC, datetime

from django.conf import settings

from reports.rollups import definition as rule
from reports.services import ingest_message_events
from reports.validation import parse_message_event

CHANNEL_A = "0193c2c3-0000-7000-8000-00000000000a"
CHANNEL_B = "0193c2c3-0000-7000-8000-00000000000b"
SENDER = "news@acme.example"
OTHER_SENDER = "alerts@other.example"
REPORT_URL = "/v1/reports/engagement"
EVENTS_URL = "/v1/messages/events"
# Every rollup figure, the traffic classes' included (what rebuilds must reproduce).
ROLLUP_FIELDS = rule.FIGURE_COLUMNS

_ids = itertools.count(1)


def wire_event(type_, occurred_at, *, recipient="reader@example.org", message=None, channel=CHANNEL_A,
               sender=SENDER, event_id=None, **extra) -> dict:
    """One event in the HTTP/NDJSON shape of section 4; the message id defaults to one per recipient."""
    return {
        "id": event_id or f"evt-{next(_ids)}",
        "type": type_,
        "messageId": message or f"msg-{recipient.lower()}-{channel[-1]}-{sender}",
        "channel": channel,
        "from": sender,
        "recipient": recipient,
        "occurredAt": occurred_at,
        **extra,
    }


def delivered_message(occurred_at, **kwargs) -> list[dict]:
    """`sent` then `delivered` for one message."""
    return [wire_event("sent", occurred_at, **kwargs), wire_event("delivered", occurred_at, **kwargs)]


def ingest(project, events: list[dict]):
    """Validate wire events exactly as the API does, then ingest them through the service."""
    parsed = []
    for raw in events:
        event, errors = parse_message_event(raw)
        assert not errors, errors
        parsed.append(event)
    return ingest_message_events(project=project, events=parsed)


def post_events(client, events, **extra):
    return client.post(EVENTS_URL, {"events": events}, format="json", **extra)


def get_report(client, **params):
    """GET the report; pass `from` as `from_` (a Python keyword)."""
    if "from_" in params:
        params["from"] = params.pop("from_")
    return client.get(REPORT_URL, params)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def bucket(period, sent=0, delivered=0, opens=0, unique_opens=0, clicks=0, unique_clicks=0,
           open_rate=None, click_rate=None) -> dict:
    """An expected bucket; rates default to the contract's formula so tests state only what they pin."""
    def rate(unique):
        return 0.0 if delivered == 0 else min(1.0, unique / delivered)

    return {
        "period": period,
        "sent": sent,
        "delivered": delivered,
        "opens": opens,
        "unique_opens": unique_opens,
        "clicks": clicks,
        "unique_clicks": unique_clicks,
        "open_rate": rate(unique_opens) if open_rate is None else open_rate,
        "click_rate": rate(unique_clicks) if click_rate is None else click_rate,
    }


def problem(code, status, title, detail, request_id, **extra) -> dict:
    return {
        "type": settings.PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id,
        **extra,
    }


def edge_data_snapshot(project) -> tuple[set, set]:
    """The data kept for window edges inside a day: (ledger rows with their last touch times, slice rollups)."""
    from reports.models import DailyFirstTouch, SliceRollup

    touches = set(DailyFirstTouch.objects.filter(project=project).values_list(
        "day", "type", "grain", "channel_key", "domain", "recipient", "last_at", "last_human_at", "last_machine_at"))
    slices = set(SliceRollup.objects.filter(project=project).values_list(
        "day", "slice", "grain", "channel_key", "domain", "sent", "delivered", "opens", "clicks"))
    return touches, slices


def rollup_snapshot(project) -> dict:
    from reports.models import DailyRollup

    return {
        (row.day, row.grain, row.channel_key, row.domain): tuple(getattr(row, f) for f in ROLLUP_FIELDS)
        for row in DailyRollup.objects.filter(project=project)
    }
