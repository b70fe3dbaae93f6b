"""Section 4 under concurrency (PostgreSQL): exact figures whatever the interleaving, and no deadlocks."""

import random
import uuid

import pytest
from rest_framework.test import APIClient

from reports.models import Channel, DailyFirstTouch, DailyRollup, MessageEvent
from reports.selectors import ReportFilters, Window, engagement_report
from reports.services import default_channel_for, rollups_rebuild
from tests.conftest import requires_postgres, run_in_threads
from tests.test_reports_helpers import CHANNEL_A, CHANNEL_B, EVENTS_URL, OTHER_SENDER, SENDER, rollup_snapshot, utc

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]

THREADS = 20
DAY = Window(start=utc(2026, 5, 1), end=utc(2026, 5, 2))
POOL = [f"r{k}@example.org" for k in range(7)]


def client_for(raw_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def event(event_id, type_, recipient, channel, sender, minute) -> dict:
    return {
        "id": event_id, "type": type_, "messageId": f"m-{recipient}-{channel[-1]}-{sender}", "channel": channel,
        "from": sender, "recipient": recipient, "occurredAt": f"2026-05-01T{minute // 60:02d}:{minute % 60:02d}:00Z",
    }


def report_figures(project, **filters) -> tuple:
    [day] = engagement_report(project=project, window=DAY, group_by="day", filters=ReportFilters(**filters))
    return day.sent, day.delivered, day.opens, day.unique_opens, day.clicks, day.unique_clicks


def test_twenty_threads_posting_the_same_batch_count_every_figure_once(project, make_key):
    raw_key = make_key(project).raw_key
    batch = []
    for k, recipient in enumerate(POOL):
        channel, sender = (CHANNEL_A, SENDER) if k % 2 else (CHANNEL_B, OTHER_SENDER)
        batch += [event(f"s{k}", "sent", recipient, channel, sender, k),
                  event(f"d{k}", "delivered", recipient, channel, sender, k),
                  event(f"o{k}", "opened", recipient, channel, sender, 60 + k),
                  event(f"o{k}-again", "opened", recipient.upper(), channel, sender, 120 + k),
                  event(f"c{k}", "clicked", recipient, channel, sender, 180 + k)]

    def post(index):
        response = client_for(raw_key).post(EVENTS_URL, {"events": batch}, format="json")
        return response.status_code, response.json()

    results = run_in_threads(THREADS, post)

    assert [status for status, _ in results] == [200] * THREADS
    assert sum(body["accepted"] for _, body in results) == len(batch)
    assert sum(body["duplicates"] for _, body in results) == len(batch) * (THREADS - 1)
    assert MessageEvent.objects.filter(project=project).count() == len(batch)
    assert report_figures(project) == (7, 7, 14, 7, 7, 7)
    assert report_figures(project, channel_id=uuid.UUID(CHANNEL_A)) == (3, 3, 6, 3, 3, 3)
    assert report_figures(project, domain="other.example") == (4, 4, 8, 4, 4, 4)
    before = rollup_snapshot(project)
    assert rollups_rebuild(project=project).rows_changed == 0
    assert rollup_snapshot(project) == before


def test_twenty_threads_posting_different_batches_for_one_day_give_exact_sums_and_distinct_counts(
        project, make_key):
    raw_key = make_key(project).raw_key
    shared = [event(f"shared-{k}", "opened", POOL[k], CHANNEL_A, SENDER, 30 + k) for k in range(len(POOL))]
    batches = []
    for index in range(THREADS):
        own = []
        for j in range(6):
            recipient = POOL[(index + j) % len(POOL)]
            channel = CHANNEL_A if j % 2 else CHANNEL_B
            sender = SENDER if index % 3 else OTHER_SENDER
            own += [event(f"t{index}-d{j}", "delivered", recipient, channel, sender, index),
                    event(f"t{index}-o{j}", "opened", recipient, channel, sender, 60 + index),
                    event(f"t{index}-c{j}", "clicked", recipient, channel, sender, 120 + index)]
        batch = own + shared  # every batch repeats the shared events, in its own order
        random.Random(index).shuffle(batch)
        batches.append(batch)

    def post(index):
        response = client_for(raw_key).post(EVENTS_URL, {"events": batches[index]}, format="json")
        return response.status_code, response.json()

    results = run_in_threads(THREADS, post)

    assert [status for status, _ in results] == [200] * THREADS
    assert sum(body["accepted"] for _, body in results) == THREADS * 18 + len(shared)
    assert sum(body["duplicates"] for _, body in results) == len(shared) * (THREADS - 1)

    def expected(keep) -> tuple:
        events = {e["id"]: e for batch in batches for e in batch if keep(e)}.values()
        count = {t: sum(1 for e in events if e["type"] == t) for t in ("sent", "delivered", "opened", "clicked")}
        uniques = {t: len({e["recipient"].lower() for e in events if e["type"] == t}) for t in ("opened", "clicked")}
        return (count["sent"], count["delivered"], count["opened"], uniques["opened"], count["clicked"],
                uniques["clicked"])

    assert report_figures(project) == expected(lambda e: True)
    assert report_figures(project, channel_id=uuid.UUID(CHANNEL_B)) == expected(lambda e: e["channel"] == CHANNEL_B)
    assert report_figures(project, domain="acme.example") == expected(lambda e: e["from"] == SENDER)
    assert report_figures(project, channel_id=uuid.UUID(CHANNEL_A), domain="other.example") == expected(
        lambda e: e["channel"] == CHANNEL_A and e["from"] == OTHER_SENDER)
    before = rollup_snapshot(project)
    assert rollups_rebuild(project=project).rows_changed == 0
    assert rollup_snapshot(project) == before


def test_threads_touching_one_recipient_in_both_classes_count_it_once_per_class(project, make_key):
    """Each ledger row is one row lock: concurrent first touches of one recipient, half of them machine, give
    one unique for all traffic and one per class, on the day and in the exact week."""
    raw_key = make_key(project).raw_key

    def post(index):
        batch = [{**event(f"mixed-{index}-{j}", "opened", POOL[j], CHANNEL_A, SENDER, index + j),
                  "machine": bool((index + j) % 2)} for j in range(3)]
        return client_for(raw_key).post(EVENTS_URL, {"events": batch}, format="json").status_code

    assert run_in_threads(THREADS, post) == [200] * THREADS
    for traffic in ("all", "human", "machine"):
        [day] = engagement_report(project=project, window=DAY, group_by="day",
                                  filters=ReportFilters(traffic=traffic))
        assert (day.opens, day.unique_opens) == (THREADS * 3 if traffic == "all" else THREADS * 3 // 2, 3), traffic
        [week] = engagement_report(project=project, window=DAY, group_by="week",
                                   filters=ReportFilters(traffic=traffic, unique="exact"))
        assert week.unique_opens == 3, traffic
    before = rollup_snapshot(project)
    assert rollups_rebuild(project=project).rows_changed == 0
    assert rollup_snapshot(project) == before


def test_rebuilds_running_alongside_ingestion_leave_exact_rollups(project, make_key):
    raw_key = make_key(project).raw_key

    def work(index):
        if index % 5 == 0:
            return rollups_rebuild(project=project)
        batch = [event(f"w{index}-{j}", "opened", POOL[(index + j) % len(POOL)], CHANNEL_A, SENDER, index)
                 for j in range(5)]
        return client_for(raw_key).post(EVENTS_URL, {"events": batch}, format="json").status_code

    results = run_in_threads(THREADS, work)

    assert [r for r in results if isinstance(r, int)] == [200] * (THREADS - THREADS // 5)
    during = rollup_snapshot(project)
    DailyRollup.objects.filter(project=project).delete()
    DailyFirstTouch.objects.filter(project=project).delete()
    rollups_rebuild(project=project)
    assert rollup_snapshot(project) == during


def test_concurrent_first_calls_create_one_default_channel(project):
    results = run_in_threads(THREADS, lambda index: default_channel_for(project=project).pk)

    assert len(set(results)) == 1
    assert Channel.objects.filter(project=project, is_default=True).count() == 1


def test_overlapping_batches_in_opposite_orders_never_deadlock(project, make_key):
    """Rows every batch shares (events, first touches, rollups over ten days) taken in different orders."""
    raw_key = make_key(project).raw_key
    client_for(raw_key).post(EVENTS_URL, {"events": [  # channels exist, so batches do not queue behind their creation
        event("warm-a", "sent", POOL[0], CHANNEL_A, SENDER, 0), event("warm-b", "sent", POOL[0], CHANNEL_B, SENDER, 0),
    ]}, format="json")

    def events_of(prefix, count):
        made = []
        for k in range(count):
            recipient = POOL[k % len(POOL)]
            channel, sender = (CHANNEL_A, SENDER) if k % 3 else (CHANNEL_B, OTHER_SENDER)
            made.append({**event(f"{prefix}{k}", ("delivered", "opened", "clicked")[k % 3], recipient, channel,
                                 sender, k), "occurredAt": f"2026-04-{10 + k % 10:02d}T08:00:00Z"})
        return made

    shared = events_of("x", 120)
    batches = []
    for index in range(THREADS):
        batch = events_of(f"t{index}-", 120) + shared
        batches.append(list(reversed(batch)) if index % 2 else random.Random(index).sample(batch, len(batch)))

    def post(index):
        return client_for(raw_key).post(EVENTS_URL, {"events": batches[index]}, format="json").status_code

    assert run_in_threads(THREADS, post) == [200] * THREADS
    assert MessageEvent.objects.filter(project=project).count() == 2 + len(shared) * (THREADS + 1)
    before = rollup_snapshot(project)
    assert rollups_rebuild(project=project).rows_changed == 0
    assert rollup_snapshot(project) == before
