"""Property: for random traffic and random questions, the report equals a recomputation from raw events.

Each example ingests random events (in random batches, with retried duplicates; some opens and
clicks machine traffic, by `machine: true`) into a fresh project, asks random windows, bucket
sizes, filters and traffic classes, and compares the selector's answer
with a straightforward count over the raw MessageEvent rows. It then checks that
rebuild_rollups leaves every rollup row unchanged, and rebuilds identical rows from nothing.
The encoded body equals Python's encoding of the same buckets, byte for byte.
"""

import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from apikeys.services import project_create
from engagement_platform.jsonio import dumps
from reports.models import DailyFirstTouch, DailyRollup, MessageEvent, PeriodFirstTouch, PeriodRollup
from reports.selectors import ReportFilters, Window, bucket_json, engagement_report, engagement_report_json
from tests.test_reports_helpers import ingest, rollup_snapshot

pytestmark = pytest.mark.django_db

# Ten days that cross a week boundary (Monday 2026-03-30) and a month boundary (2026-04-01), so
# random windows often have partial first and last days with traffic in them.
ORIGIN = datetime(2026, 3, 26, tzinfo=UTC)
SPAN_DAYS = 10
CHANNELS = ["0193c2c3-0000-7000-8000-0000000000c1", "0193c2c3-0000-7000-8000-0000000000c2"]
SENDERS = ["news@acme.example", "Billing@ACME.example", "alerts@other.example"]
RECIPIENTS = ["ann@example.org", "ANN@example.org", "bob@example.org", "Cy@Example.Org", "dee@example.net"]
TYPES = ["sent", "delivered", "opened", "clicked"]
MINUTES_PER_DAY = 24 * 60

messages_strategy = st.lists(
    st.tuples(st.sampled_from(RECIPIENTS), st.sampled_from(CHANNELS), st.sampled_from(SENDERS)),
    min_size=1, max_size=5,
)
minute_strategy = st.one_of(
    st.integers(0, SPAN_DAYS * MINUTES_PER_DAY),
    st.builds(lambda day, minute: day * MINUTES_PER_DAY + minute,  # near midnight
              st.integers(0, SPAN_DAYS), st.sampled_from([0, 1, MINUTES_PER_DAY - 1])),
)
events_strategy = st.lists(  # (message, type, minute, second, sent as machine traffic)
    st.tuples(st.integers(0, 4), st.sampled_from(TYPES), minute_strategy, st.integers(0, 59), st.booleans()),
    min_size=5, max_size=80,
)
TRAFFIC = ["all", "human", "machine"]
query_strategy = st.fixed_dictionaries({
    "start": st.one_of(minute_strategy, st.integers(-2 * MINUTES_PER_DAY, 0)),
    "aligned": st.booleans(),
    "length": st.one_of(st.integers(1, 3 * MINUTES_PER_DAY), st.integers(1, (SPAN_DAYS + 3) * MINUTES_PER_DAY)),
    "group_by": st.sampled_from(["day", "week", "month"]),
    "channel": st.one_of(st.none(), st.sampled_from(CHANNELS)),
    "domain": st.one_of(st.none(), st.sampled_from(["acme.example", "other.example", "nobody.example"])),
    "traffic": st.sampled_from(TRAFFIC),
    "unique": st.sampled_from(["daily", "exact"]),
})


def counts_for_traffic(type_: str, traffic: str, asked: str) -> bool:
    """Whether an event of `type_` and class `traffic` counts in a report of `asked` traffic."""
    return asked == "all" or type_ in ("sent", "delivered") or traffic == asked


def without_empty(buckets: list[dict]) -> list[dict]:
    return [b for b in buckets if any(b[k] for k in ("sent", "delivered", "opens", "unique_opens", "clicks",
                                                     "unique_clicks"))]


def period_of(day: date, group_by: str) -> date:
    if group_by == "week":
        return day - timedelta(days=day.isoweekday() - 1)
    if group_by == "month":
        return date(day.year, day.month, 1)
    return day


def recompute(project, window: Window, group_by: str, filters: ReportFilters) -> list[dict]:
    """The report counted the slow way: every raw event row, one at a time."""
    counts = defaultdict(lambda: defaultdict(int))
    daily_recipients = defaultdict(set)  # (period, day, type) -> recipients
    bucket_recipients = defaultdict(set)  # (period, type) -> recipients
    for event in MessageEvent.objects.filter(project=project).select_related("message__channel"):
        message = event.message
        if not window.start <= event.occurred_at < window.end:
            continue
        if filters.channel_id is not None and message.channel.external_id != filters.channel_id:
            continue
        if filters.domain is not None and message.from_address.split("@")[1].lower() != filters.domain:
            continue
        if not counts_for_traffic(event.type, event.traffic, filters.traffic):
            continue
        day = event.occurred_at.astimezone(UTC).date()
        period = period_of(day, group_by)
        counts[period][event.type] += 1
        daily_recipients[(period, day, event.type)].add(message.recipient.lower())
        bucket_recipients[(period, event.type)].add(message.recipient.lower())
    uniques = defaultdict(int)
    if filters.unique == "exact" and group_by != "day":  # each recipient once per bucket
        for (period, type_), recipients in bucket_recipients.items():
            uniques[(period, type_)] = len(recipients)
    else:
        for (period, _day, type_), recipients in daily_recipients.items():
            uniques[(period, type_)] += len(recipients)
    result = []
    for period in sorted(counts):
        delivered = counts[period]["delivered"]
        unique_opens, unique_clicks = uniques[(period, "opened")], uniques[(period, "clicked")]
        result.append({
            "period": datetime(period.year, period.month, period.day, tzinfo=UTC),
            "sent": counts[period]["sent"],
            "delivered": delivered,
            "opens": counts[period]["opened"],
            "unique_opens": unique_opens,
            "clicks": counts[period]["clicked"],
            "unique_clicks": unique_clicks,
            "open_rate": 0.0 if delivered == 0 else min(1.0, unique_opens / delivered),
            "click_rate": 0.0 if delivered == 0 else min(1.0, unique_clicks / delivered),
        })
    return without_empty(result)


def as_dicts(buckets) -> list[dict]:
    return [{
        "period": b.period, "sent": b.sent, "delivered": b.delivered, "opens": b.opens,
        "unique_opens": b.unique_opens, "clicks": b.clicks, "unique_clicks": b.unique_clicks,
        "open_rate": b.open_rate, "click_rate": b.click_rate,
    } for b in buckets]


def wire_events(messages, events) -> list[dict]:
    wire = []
    for index, (message_index, type_, minute, second, machine) in enumerate(events):
        recipient, channel, sender = messages[message_index % len(messages)]
        occurred_at = ORIGIN + timedelta(minutes=minute, seconds=second)
        wire.append({
            "id": f"e{index}", "type": type_, "messageId": f"m{message_index % len(messages)}",
            "channel": channel, "from": sender, "recipient": recipient,
            "occurredAt": occurred_at.isoformat().replace("+00:00", "Z"),
            **({"machine": True} if machine else {}),
        })
    return wire


# No `explain` phase: tracing the ORM to explain a failure takes minutes; shrinking alone is enough.
@settings(max_examples=40, deadline=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(messages=messages_strategy, events=events_strategy, batch_size=st.integers(1, 15),
       retried=st.integers(0, 10), queries=st.lists(query_strategy, min_size=3, max_size=6))
def test_report_equals_a_recomputation_from_raw_events_and_rebuild_changes_nothing(
        messages, events, batch_size, retried, queries):
    project = project_create(name=f"prop-{uuid.uuid4()}", retention_days=3650)
    wire = wire_events(messages, events)
    for start in range(0, len(wire), batch_size):
        ingest(project, wire[start:start + batch_size])
    if wire:  # a client retry of the first events: duplicates must change no figure
        result = ingest(project, wire[:retried + 1])
        assert result.accepted == 0

    for query in queries:
        start = ORIGIN + timedelta(minutes=query["start"])
        if query["aligned"]:
            start = start.replace(hour=0, minute=0)
        window = Window(start=start, end=start + timedelta(minutes=query["length"]))
        filters = ReportFilters(channel_id=uuid.UUID(query["channel"]) if query["channel"] else None,
                                domain=query["domain"], traffic=query["traffic"], unique=query["unique"])
        report = engagement_report(project=project, window=window, group_by=query["group_by"], filters=filters)
        assert as_dicts(report) == recompute(project, window, query["group_by"], filters)
        # The body the view sends (written by PostgreSQL itself there) is byte for byte Python's encoding.
        body = engagement_report_json(project=project, window=window, group_by=query["group_by"], filters=filters)
        assert body == dumps({"data": [bucket_json(bucket) for bucket in report]})

    before, periods_before = rollup_snapshot(project), period_snapshot(project)
    out = StringIO()
    call_command("rebuild_rollups", project=str(project.id), stdout=out)
    assert rollup_snapshot(project) == before
    assert period_snapshot(project) == periods_before
    assert out.getvalue().endswith("rollup rows changed.\n") and ", 0 rollup rows changed." in out.getvalue()

    DailyRollup.objects.filter(project=project).delete()
    DailyFirstTouch.objects.filter(project=project).delete()
    PeriodRollup.objects.filter(project=project).delete()
    PeriodFirstTouch.objects.filter(project=project).delete()
    call_command("rebuild_rollups", project=project.name, stdout=StringIO())
    assert rollup_snapshot(project) == before
    assert period_snapshot(project) == periods_before


def period_snapshot(project) -> tuple:
    """The period rollups and ledger as stored (what exact week and month uniques read)."""
    rollups = sorted(PeriodRollup.objects.filter(project=project).exclude(
        unique_opens=0, unique_clicks=0).values_list(
        "period", "start", "grain", "channel_key", "domain", "unique_opens", "unique_clicks", "unique_opens_human",
        "unique_opens_machine", "unique_clicks_human", "unique_clicks_machine"))
    touches = sorted(PeriodFirstTouch.objects.filter(project=project).values_list(
        "period", "start", "type", "grain", "channel_key", "domain", "recipient", "last_at", "last_human_at",
        "last_machine_at"))
    return rollups, touches


# Unaligned windows through the API ----------------------------------------------------------
#
# Four days from a Sunday noon (a week boundary on Monday 2026-03-30, a month boundary on
# 2026-04-01); windows whose edges fall at any second, events exactly at both edges, one second
# inside and outside them, and after `to`; every bucket size and every filter combination, asked
# through GET /v1/reports/engagement and compared with a count over the events as they were sent.
EDGE_ORIGIN = datetime(2026, 3, 29, 12, tzinfo=UTC)
EDGE_SPAN_SECONDS = 4 * 24 * 3600
EDGE_PLACES = ("from", "from-1", "from+1", "to", "to-1", "to+1", "after")
IDENTITIES = (None, "acme.example", "Someone@OTHER.example")

edge_window_strategy = st.tuples(st.integers(0, EDGE_SPAN_SECONDS - 1), st.integers(1, EDGE_SPAN_SECONDS))
edge_events_strategy = st.lists(  # (message, type, offset in seconds from EDGE_ORIGIN, machine traffic)
    st.tuples(st.integers(0, 4), st.sampled_from(TYPES), st.integers(-3600, EDGE_SPAN_SECONDS + 3600),
              st.booleans()),
    min_size=0, max_size=40,
)
at_edges_strategy = st.lists(  # (message, type, place, seconds after `to` for "after", machine traffic)
    st.tuples(st.integers(0, 4), st.sampled_from(TYPES), st.sampled_from(EDGE_PLACES), st.integers(1, 3 * 86400),
              st.booleans()),
    min_size=1, max_size=20,
)


def z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def edge_offset(place: str, start: int, end: int, after: int) -> int:
    return {"from": start, "from-1": start - 1, "from+1": start + 1, "to": end, "to-1": end - 1, "to+1": end + 1,
            "after": end + after}[place]


def expected_report(sent_events, messages, *, start: datetime, end: datetime, group_by: str,
                    channel: str | None, domain: str | None, traffic: str = "all",
                    unique: str = "daily") -> list[dict]:
    """The report counted from the events as they were sent (a message keeps its first event's attributes)."""
    counts = defaultdict(lambda: defaultdict(int))
    daily = defaultdict(set)  # (period, day, type) -> recipients
    per_bucket = defaultdict(set)  # (period, type) -> recipients
    for message_index, type_, occurred_at, machine in sent_events:
        recipient, message_channel, sender = messages[message_index]
        if not start <= occurred_at < end:
            continue
        if not counts_for_traffic(type_, "machine" if machine and type_ in ("opened", "clicked") else "human",
                                  traffic):
            continue
        if channel is not None and message_channel != channel:
            continue
        if domain is not None and sender.split("@")[1].lower() != domain:
            continue
        day = occurred_at.date()
        period = period_of(day, group_by)
        counts[period][type_] += 1
        daily[(period, day, type_)].add(recipient.lower())
        per_bucket[(period, type_)].add(recipient.lower())
    uniques = defaultdict(int)
    if unique == "exact" and group_by != "day":
        for (period, type_), recipients in per_bucket.items():
            uniques[(period, type_)] = len(recipients)
    else:
        for (period, _day, type_), recipients in daily.items():
            uniques[(period, type_)] += len(recipients)
    body = []
    for period in sorted(counts):
        delivered = counts[period]["delivered"]
        unique_opens, unique_clicks = uniques[(period, "opened")], uniques[(period, "clicked")]
        body.append({
            "period": f"{period.isoformat()}T00:00:00Z", "sent": counts[period]["sent"], "delivered": delivered,
            "opens": counts[period]["opened"], "unique_opens": unique_opens, "clicks": counts[period]["clicked"],
            "unique_clicks": unique_clicks,
            "open_rate": 0.0 if delivered == 0 else min(1.0, unique_opens / delivered),
            "click_rate": 0.0 if delivered == 0 else min(1.0, unique_clicks / delivered),
        })
    return without_empty(body)


@settings(max_examples=25, deadline=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(messages=st.lists(st.tuples(st.sampled_from(RECIPIENTS), st.sampled_from(CHANNELS),
                                   st.sampled_from(SENDERS)), min_size=5, max_size=5),
       window=edge_window_strategy, events=edge_events_strategy, at_edges=at_edges_strategy,
       batch_size=st.integers(1, 20), identity=st.sampled_from(IDENTITIES[1:]), traffic=st.sampled_from(TRAFFIC),
       unique=st.sampled_from(["daily", "exact"]))
def test_the_api_report_over_windows_with_edges_at_any_second_equals_a_count_of_the_sent_events(
        make_key, make_client, settings, messages, window, events, at_edges, batch_size, identity, traffic,
        unique):
    settings.MACHINE_CLICK_SECONDS = -10**9  # classes come from `machine: true` alone (timing: test_reports_traffic)
    project = project_create(name=f"edges-{uuid.uuid4()}", retention_days=3650, rate_limit_per_minute=10**6)
    client = make_client(make_key(project).raw_key)
    start_offset, length = window
    end_offset = start_offset + length
    start, end = EDGE_ORIGIN + timedelta(seconds=start_offset), EDGE_ORIGIN + timedelta(seconds=end_offset)
    sent = [(m, t, EDGE_ORIGIN + timedelta(seconds=s), machine) for m, t, s, machine in events]
    sent += [(m, t, EDGE_ORIGIN + timedelta(seconds=edge_offset(place, start_offset, end_offset, after)), machine)
             for m, t, place, after, machine in at_edges]
    wire = [{"id": f"e{index}", "type": type_, "messageId": f"m{message_index}", "channel": messages[message_index][1],
             "from": messages[message_index][2], "recipient": messages[message_index][0], "occurredAt": z(moment),
             **({"machine": True} if machine else {})}
            for index, (message_index, type_, moment, machine) in enumerate(sent)]
    for first in range(0, len(wire), batch_size):
        ingest(project, wire[first:first + batch_size])

    for group_by in ("day", "week", "month"):
        for channel in (None, CHANNELS[0]):
            for asked_identity in (None, identity):
                params = {"from": z(start), "to": z(end), "group_by": group_by}
                if traffic != "all":
                    params["traffic"] = traffic
                if unique != "daily":
                    params["unique"] = unique
                if channel:
                    params["channel"] = channel
                if asked_identity:
                    params["identity"] = asked_identity
                response = client.get("/v1/reports/engagement", params)
                assert response.status_code == 200, response.content
                domain = asked_identity.split("@")[-1].lower() if asked_identity else None
                assert response.json()["data"] == expected_report(
                    sent, messages, start=start, end=end, group_by=group_by, channel=channel, domain=domain,
                    traffic=traffic, unique=unique), params
