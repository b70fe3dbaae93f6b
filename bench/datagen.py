"""Deterministic generated data, identical whether it reaches the database through a command,
through COPY or through the bulk SQL in bench/bulk.py (same formulas, message index `i`).

Message i: channel CHANNELS[i % 4], sender news@d{i % 10}.example, recipient
r{(i * 31) % RECIPIENTS}@rcpt.example, on day (i % days) of the window at second
(i * 7919) % 86000; events sent (+0 s), delivered (+5 s), opened (+600 s) when i % 10 < 5,
clicked (+900 s) when i % 10 < 2: 2.7 events per message on average.
"""

import json
from datetime import UTC, datetime, timedelta

CHANNELS = [f"0190aaaa-0000-7000-8000-00000000000{n}" for n in range(1, 5)]
RECIPIENTS = 100_000
SECONDS_SPREAD = 86_000
EVENT_KINDS = (  # (suffix, type, offset seconds, present when)
    ("s", "sent", 0, lambda i: True),
    ("d", "delivered", 5, lambda i: True),
    ("o", "opened", 600, lambda i: i % 10 < 5),
    ("c", "clicked", 900, lambda i: i % 10 < 2),
)
EVENTS_PER_MESSAGE = 2.7


def iso_z(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def messages_for(events: int) -> int:
    """How many messages carry about `events` events."""
    return max(1, round(events / EVENTS_PER_MESSAGE))


def events_in(first: int, last: int) -> int:
    """Exact number of events of messages first..last-1."""
    def upto(n):
        whole, rest = divmod(n, 10)
        return whole * 27 + 2 * rest + min(rest, 5) + min(rest, 2)
    return upto(last) - upto(first)


def message_events(first: int, last: int, *, start: datetime, days: int):
    """(i, suffix, type, occurred_at) for messages first..last-1."""
    one_day = timedelta(days=1)
    for i in range(first, last):
        t0 = start + one_day * (i % days) + timedelta(seconds=(i * 7919) % SECONDS_SPREAD)
        for suffix, kind, offset, present in EVENT_KINDS:
            if present(i):
                yield i, suffix, kind, t0 + timedelta(seconds=offset)


def write_message_ndjson(path: str, first: int, last: int, *, start: datetime, days: int) -> int:
    """Section-4 events, one JSON object a line, for `backfill_message_events`."""
    lines = 0
    with open(path, "w") as out:
        for i, suffix, kind, at in message_events(first, last, start=start, days=days):
            event = {
                "id": f"e{i}{suffix}", "type": kind, "messageId": f"m{i}", "channel": CHANNELS[i % 4],
                "from": f"news@d{i % 10}.example", "recipient": f"r{(i * 31) % RECIPIENTS}@rcpt.example",
                "occurredAt": iso_z(at),
            }
            if kind == "clicked":
                event["url"] = f"https://example.com/p/{i % 100}"
            out.write(json.dumps(event, separators=(",", ":")) + "\n")
            lines += 1
    return lines


def write_message_copy_rows(path: str, first: int, last: int, *, start: datetime, days: int,
                            project_id: str, received_at: datetime) -> int:
    """The same events as tab-separated rows of the message event table (see COPY_COLUMNS)."""
    lines = 0
    received = received_at.isoformat()
    with open(path, "w") as out:
        for i, suffix, kind, at in message_events(first, last, start=start, days=days):
            url = f"https://example.com/p/{i % 100}" if kind == "clicked" else "\\N"
            out.write(f"00000000-0000-7000-a000-{lines:012x}\t{project_id}\t00000000-0000-7000-8000-{i:012x}\t"
                      f"e{i}{suffix}\t{kind}\t{at.isoformat()}\t{url}\t\\N\t{received}\n")
            lines += 1
    return lines


COPY_COLUMNS = ["id", "project_id", "message_id", "client_event_id", "type", "occurred_at", "url", "user_agent",
                "received_at"]


def ip_for(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


RENDER_EVENT_TYPES = ("viewed", "downloaded", "printed")
RENDER_EVENT_STEP = timedelta(seconds=20)


def write_render_ndjson(path: str, render_id: str, first: int, last: int, *, start: datetime) -> int:
    """Render events for `backfill_render_events`: one source IP per line, 20 s apart."""
    with open(path, "a") as out:
        for i in range(first, last):
            out.write(json.dumps({
                "renderId": render_id, "eventType": RENDER_EVENT_TYPES[i % 3], "actorKind": "partner",
                "shareId": None, "sourceIp": ip_for(i), "userAgent": "bench/1.0", "metadata": {"n": i},
                "createdAt": (start + RENDER_EVENT_STEP * i).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            }, separators=(",", ":")) + "\n")
    return last - first


RENDER_COPY_COLUMNS = ["id", "project_id", "render_id", "share_id", "event_type", "actor_kind", "source_ip",
                       "user_agent", "metadata", "created_at"]


def write_render_copy_rows(path: str, render_id: str, first: int, last: int, *, start: datetime,
                           project_id: str, id_tag: str) -> int:
    """The same render events as tab-separated rows of the render event table (see RENDER_COPY_COLUMNS)."""
    with open(path, "a") as out:
        for i in range(first, last):
            at = (start + RENDER_EVENT_STEP * i).isoformat()
            out.write(f"00000000-0000-7000-{id_tag}-{i:012x}\t{project_id}\t{render_id}\t\\N\t"
                      f"{RENDER_EVENT_TYPES[i % 3]}\tpartner\t{ip_for(i)}\tbench/1.0\t{{\"n\":{i}}}\t{at}\n")
    return last - first


def utc_midnight(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
