"""Section 3.1 cost: a window that starts inside a day reads that day from data kept at ingestion.

The default window starts 30 days before now, inside a day. That day's part of the window is
counted from its whole slices (`SliceRollup`, the counted figures per `SLICE_MINUTES`), the raw
events of the one partial slice before them (counted figures only), and the first-touch ledger's
last touch times (a recipient counts when their last touch of the day falls at or after `from`).
Deleting raw rows (never done in operation) shows which was read. Until a day's edge data is
written (a deferred backfill leaves it pending) the edge reads raw events. For a `from` before noon the
ledger is read from the other end: the day's distinct figures less the recipients last touched before it.
"""

import random
import uuid
from datetime import timedelta

import pytest

from reports.models import DailyFirstTouch, FirstTouchesPending, MessageEvent, SliceRollup
from reports.rollups import definition as rule
from reports.services import rollups_rebuild
from tests.conftest import requires_postgres, run_in_threads
from tests.test_reports_helpers import (
    CHANNEL_A,
    CHANNEL_B,
    OTHER_SENDER,
    SENDER,
    edge_data_snapshot,
    get_report,
    ingest,
    rollup_snapshot,
    utc,
    wire_event,
)

DAY = "2026-04-03"  # the default window's first day under the `clock` fixture (now 2026-05-03T10:20Z)
FROM = f"{DAY}T10:22:30Z"  # inside the slice 10:20-10:25


def first_bucket(client, **params) -> dict:
    response = get_report(client, group_by="day", **params)
    assert response.status_code == 200, response.content
    return next(b for b in response.json()["data"] if b["period"] == f"{DAY}T00:00:00Z")


def figures(bucket: dict) -> tuple:
    return (bucket["sent"], bucket["delivered"], bucket["opens"], bucket["unique_opens"], bucket["clicks"],
            bucket["unique_clicks"])


@pytest.fixture
def first_day(make_project, make_key, make_client, clock):
    """Opens and clicks around `FROM` on the window's first day, and a client for the project."""
    project = make_project("edge-data")
    ingest(project, [
        wire_event("opened", f"{DAY}T08:00:00Z", recipient="a@example.org"),
        wire_event("opened", f"{DAY}T12:00:00Z", recipient="a@example.org"),  # a: before and after `from`
        wire_event("opened", f"{DAY}T09:00:00Z", recipient="b@example.org"),  # b: before only
        wire_event("opened", f"{DAY}T10:23:00Z", recipient="c@example.org"),  # c: in the partial slice
        wire_event("clicked", f"{DAY}T10:21:00Z", recipient="d@example.org"),  # d: same slice, before `from`
        wire_event("clicked", f"{DAY}T23:59:59Z", recipient="e@example.org", channel=CHANNEL_B),
        wire_event("sent", f"{DAY}T10:24:00Z", recipient="e@example.org", channel=CHANNEL_B),
        wire_event("delivered", f"{DAY}T15:00:00Z", recipient="e@example.org", channel=CHANNEL_B),
    ])
    return project, make_client(make_key(project).raw_key)


def delete_raw(project, start, end):
    MessageEvent.objects.filter(project=project, occurred_at__gte=start, occurred_at__lt=end).delete()


@pytest.mark.django_db
def test_the_first_day_from_inside_a_slice_counts_exactly_the_events_at_or_after_from(first_day):
    _project, client = first_day
    assert figures(first_bucket(client, from_=FROM)) == (1, 1, 2, 2, 1, 1)
    assert figures(first_bucket(client, from_=FROM, channel=CHANNEL_B)) == (1, 1, 0, 0, 1, 1)
    assert figures(first_bucket(client, from_=FROM, channel=CHANNEL_A)) == (0, 0, 2, 2, 0, 0)
    assert figures(first_bucket(client, from_=f"{DAY}T12:00:00Z")) == (0, 1, 1, 1, 1, 1)
    assert figures(first_bucket(client, from_=f"{DAY}T12:00:01Z")) == (0, 1, 0, 0, 1, 1)


@pytest.mark.django_db
def test_the_first_day_reads_its_slices_and_ledger_and_only_the_partial_slice_raw(first_day):
    project, client = first_day
    before = figures(first_bucket(client, from_=FROM))

    # Raw rows of the day outside the partial slice 10:22:30-10:25 are not read.
    delete_raw(project, utc(2026, 4, 3), utc(2026, 4, 3, 10, 22, 30))
    delete_raw(project, utc(2026, 4, 3, 10, 25), utc(2026, 4, 4))
    assert figures(first_bucket(client, from_=FROM)) == before

    # The partial slice's raw events give its counted figures (its distinct ones come from the ledger).
    delete_raw(project, utc(2026, 4, 3), utc(2026, 4, 4))
    assert figures(first_bucket(client, from_=FROM)) == (0, 1, 1, 2, 1, 1)


@pytest.mark.django_db
def test_the_default_window_reads_its_first_day_from_edge_data(first_day):
    project, client = first_day
    before = figures(first_bucket(client))  # from = 2026-04-03T10:20:00Z, a slice boundary: d's 10:21 click is in
    assert before == (1, 1, 2, 2, 2, 2)
    delete_raw(project, utc(2026, 4, 3), utc(2026, 4, 4))
    assert figures(first_bucket(client)) == before


@pytest.mark.django_db
def test_the_first_days_distinct_figures_are_the_same_counted_from_either_end_of_the_day(first_day):
    """A `from` before noon counts the day's recipients less those whose last touch came before it; a later one
    counts those touched at or after it: at every hour both equal the count of the raw events."""
    project, client = first_day
    moments = [f"{DAY}T{hour:02d}:{minute:02d}:00Z" for hour in range(24) for minute in (0, 7, 59)]
    from_edge_data = {moment: figures(first_bucket(client, from_=moment)) for moment in moments}
    FirstTouchesPending.objects.create(project=project, day=DAY)  # the day's raw events are read instead
    assert {moment: figures(first_bucket(client, from_=moment)) for moment in moments} == from_edge_data
    assert from_edge_data[f"{DAY}T08:00:00Z"] == (1, 1, 4, 3, 2, 2)  # a (twice), b and c; d and e
    assert from_edge_data[f"{DAY}T09:07:00Z"] == (1, 1, 2, 2, 2, 2)  # a (again at 12:00) and c


@pytest.mark.django_db
def test_a_day_whose_edge_data_is_pending_is_read_from_raw_events(first_day):
    project, client = first_day
    FirstTouchesPending.objects.create(project=project, day="2026-04-03")  # as a deferred backfill leaves it
    assert figures(first_bucket(client, from_=FROM)) == (1, 1, 2, 2, 1, 1)
    delete_raw(project, utc(2026, 4, 3, 12), utc(2026, 4, 4))
    assert figures(first_bucket(client, from_=FROM)) == (1, 0, 1, 1, 0, 0)


@pytest.mark.django_db
def test_a_later_touch_moves_the_last_time_and_an_earlier_one_does_not(project):
    def last_at():
        return DailyFirstTouch.objects.get(project=project, grain="all", type="opened").last_at

    ingest(project, [wire_event("opened", f"{DAY}T12:00:00Z")])
    ingest(project, [wire_event("opened", f"{DAY}T09:00:00Z")])
    assert last_at() == utc(2026, 4, 3, 12)
    ingest(project, [wire_event("opened", f"{DAY}T13:30:00Z"), wire_event("opened", f"{DAY}T13:00:00Z")])
    assert last_at() == utc(2026, 4, 3, 13, 30)
    assert DailyFirstTouch.objects.filter(project=project, type="opened").count() == len(rule.GRAINS)
    slices = dict(SliceRollup.objects.filter(project=project, grain="all").values_list("slice", "opens"))
    assert slices == {9 * 12: 1, 12 * 12: 1, 13 * 12: 1, 13 * 12 + 6: 1}


@pytest.mark.django_db
def test_edge_data_kept_by_ingestion_equals_a_rebuild_from_raw_events(project):
    rng = random.Random(7)
    events = [wire_event(rng.choice(["sent", "delivered", "opened", "clicked"]),
                         f"2026-04-{rng.randint(1, 4):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
                         f"{rng.randint(0, 59):02d}Z",
                         recipient=f"r{rng.randint(0, 9)}@example.org", channel=rng.choice([CHANNEL_A, CHANNEL_B]),
                         sender=rng.choice([SENDER, OTHER_SENDER]))
              for _ in range(400)]
    rng.shuffle(events)  # late events of every day, in no order
    for start in range(0, len(events), 37):
        ingest(project, events[start:start + 37])
    touches, slices = edge_data_snapshot(project)
    rollups = rollup_snapshot(project)

    DailyFirstTouch.objects.filter(project=project).update(last_at=utc(2026, 1, 1))
    SliceRollup.objects.filter(project=project).delete()
    assert rollups_rebuild(project=project).rows_changed == 0  # the daily rollups were already right
    assert edge_data_snapshot(project) == (touches, slices)
    assert rollup_snapshot(project) == rollups
    assert not FirstTouchesPending.objects.filter(project=project).exists()


@pytest.mark.django_db
def test_ingestion_writes_a_pending_days_edge_data_before_counting(project):
    ingest(project, [wire_event("opened", f"{DAY}T08:00:00Z"), wire_event("clicked", f"{DAY}T09:00:00Z")])
    expected = edge_data_snapshot(project)
    DailyFirstTouch.objects.filter(project=project).delete()
    SliceRollup.objects.filter(project=project).delete()
    FirstTouchesPending.objects.create(project=project, day="2026-04-03")

    ingest(project, [wire_event("opened", f"{DAY}T07:00:00Z")])  # an earlier touch: the last time stays

    touches, slices = edge_data_snapshot(project)
    assert touches == expected[0]
    assert {row[:5] for row in slices} >= {row[:5] for row in expected[1]}
    assert not FirstTouchesPending.objects.filter(project=project).exists()


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_keep_the_latest_touch_and_count_a_recipient_once(project):
    minutes = list(range(0, 24 * 60, 7))
    random.Random(3).shuffle(minutes)
    batches = [[wire_event("opened", f"{DAY}T{minute // 60:02d}:{minute % 60:02d}:00Z",
                           recipient="same@example.org", event_id=str(uuid.uuid4()))
                for minute in minutes[k::10]] for k in range(10)]

    run_in_threads(10, lambda index: ingest(project, batches[index]))

    touch = DailyFirstTouch.objects.get(project=project, grain="all", type="opened")
    assert touch.last_at == utc(2026, 4, 3) + timedelta(minutes=max(minutes))
    assert rollup_snapshot(project)[(utc(2026, 4, 3).date(), "all", "", "")][4] == 1  # unique_opens
    assert sum(SliceRollup.objects.filter(project=project, grain="all").values_list("opens", flat=True)) == \
        len(minutes)
    before = edge_data_snapshot(project)
    assert rollups_rebuild(project=project).rows_changed == 0
    assert edge_data_snapshot(project) == before
