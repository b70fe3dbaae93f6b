"""Backfills that defer their rollups: stored events first, their days recounted once at the end, exactly
as batch-by-batch ingestion would count them, including after a crash, beside live ingestion and beside
another backfill of the same project (PostgreSQL: SQLite backfills batch by batch)."""

import json
import threading
from pathlib import Path

import psycopg
import pytest
from django.db import DatabaseError, connection

from reports.models import (
    DailyFirstTouch,
    DailyRollup,
    FirstTouchesPending,
    Message,
    MessageEvent,
    PendingRecount,
)
from reports.services import DeferredRollups, rollups_rebuild
from reports.validation import parse_message_event
from tests.test_reports_commands import backfill, ndjson, write_generated_events
from tests.test_reports_helpers import ingest, rollup_snapshot, wire_event

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="deferred rollups are PostgreSQL's"),
]


def parsed(events: list[dict]) -> list[dict]:
    out = []
    for raw in events:
        event, errors = parse_message_event(raw)
        assert not errors, errors
        out.append(event)
    return out


def touches(project) -> set:
    return set(DailyFirstTouch.objects.filter(project=project)
               .values_list("day", "type", "grain", "channel_key", "domain", "recipient", "last_human_at",
                            "last_machine_at"))


@pytest.fixture
def events_file(tmp_path) -> Path:
    path = tmp_path / "generated.ndjson"
    write_generated_events(path, 6_000)  # 28 days, 3 channels, 2 domains, repeat recipients
    return path


def test_deferred_and_per_batch_backfills_give_the_same_rollups_and_first_touches(make_project, events_file):
    deferred, per_batch = make_project("deferred"), make_project("per-batch")

    assert backfill(str(events_file), project=deferred.name, batch_size=500)[0] == \
        "accepted 6000, duplicates 0, rejected 0.\n"
    backfill(str(events_file), project=per_batch.name, batch_size=500, rollups="per-batch", connections=1)

    assert rollup_snapshot(deferred) == rollup_snapshot(per_batch) != {}
    assert not PendingRecount.objects.filter(project=deferred).exists()
    # The deferred run counted its unique opens and clicks from raw events and left the first touches
    # unwritten; its days are marked, so the first live batch of a day writes them before counting.
    days = set(DailyRollup.objects.filter(project=deferred).values_list("day", flat=True))
    assert touches(deferred) == set()
    assert set(FirstTouchesPending.objects.filter(project=deferred).values_list("day", flat=True)) == days

    # Live events on every day: recipients the backfill already counted (not unique again) and new ones.
    live = [wire_event(kind, f"{day}T23:00:00Z", recipient=recipient, channel=channel, sender=sender)
            for day in sorted(days)[::3]
            for kind in ("opened", "clicked")
            for recipient, channel, sender in (
                ("reader0@example.org", "0193c2c3-0000-7000-8000-000000000000", "alerts@other.example"),
                ("reader5@example.org", "0193c2c3-0000-7000-8000-000000000002", "news@acme.example"),
                (f"new-{day}@example.org", "0193c2c3-0000-7000-8000-000000000001", "news@acme.example"))]
    for project in (deferred, per_batch):
        ingest(project, live)

    assert rollup_snapshot(deferred) == rollup_snapshot(per_batch)
    assert touches(deferred) == {touch for touch in touches(per_batch) if touch[0] in set(sorted(days)[::3])}
    assert set(FirstTouchesPending.objects.filter(project=deferred).values_list("day", flat=True)) == \
        days - set(sorted(days)[::3])
    assert rollups_rebuild(project=deferred).rows_changed == 0
    assert not FirstTouchesPending.objects.filter(project=deferred).exists()  # a rebuild writes them all


def test_one_or_several_connections_store_the_same(make_project, events_file):
    one, four = make_project("one"), make_project("four")
    backfill(str(events_file), project=one.name, batch_size=300, connections=1)
    backfill(str(events_file), project=four.name, batch_size=300, connections=4)
    assert rollup_snapshot(one) == rollup_snapshot(four)
    assert MessageEvent.objects.filter(project=four).count() == 6000


def test_a_rerun_is_all_duplicates_and_leaves_rollups_as_a_rebuild_would(project, events_file):
    backfill(str(events_file), project=project.name)
    before = rollup_snapshot(project)
    assert backfill(str(events_file), project=project.name)[0] == "accepted 0, duplicates 6000, rejected 0.\n"
    assert rollup_snapshot(project) == before
    assert rollups_rebuild(project=project).rows_changed == 0


def test_a_run_that_died_before_its_recount_is_recounted_by_the_next_backfill(project, events_file):
    # A run stores on a connection of its own and dies (its connection closes) before recounting.
    def crashed_run():
        run = DeferredRollups(project)
        run.start()
        lines = events_file.read_text().splitlines()
        run.store(parsed([json.loads(line) for line in lines[:2000]]))
        # The process is gone: its connections close (the one storing, and the one whose open transaction
        # holds the run's lock), its marks stay, its lock is released.
        connection.close()
        run._run_lock.holder.close()

    worker = threading.Thread(target=crashed_run)
    worker.start()
    worker.join()
    assert PendingRecount.objects.filter(project=project).exists()
    assert MessageEvent.objects.filter(project=project).count() == 2000

    # Rerunning only the part already stored: every line a duplicate, and the dead run's days recounted.
    head = events_file.parent / "head.ndjson"
    head.write_text("\n".join(events_file.read_text().splitlines()[:2000]) + "\n")
    assert backfill(str(head), project=project.name)[0] == "accepted 0, duplicates 2000, rejected 0.\n"

    assert not PendingRecount.objects.filter(project=project).exists()
    assert rollup_snapshot(project) != {}
    assert rollups_rebuild(project=project).rows_changed == 0


def test_a_live_runs_marks_are_left_to_it(project, tmp_path):
    """A second backfill of the project does not take the days of one that is still running."""
    started, release = threading.Event(), threading.Event()
    first_day = [wire_event("opened", "2026-04-01T09:00:00Z", recipient=f"a{i}@example.org") for i in range(3)]

    def running():
        run = DeferredRollups(project)
        run.start()
        run.store(parsed(first_day))
        started.set()
        release.wait(30)
        run.finish()
        connection.close()

    worker = threading.Thread(target=running)
    worker.start()
    assert started.wait(30)
    other = tmp_path / "other.ndjson"
    other.write_text(ndjson(wire_event("opened", "2026-04-02T09:00:00Z", recipient="b@example.org")))
    backfill(str(other), project=project.name)
    assert set(PendingRecount.objects.filter(project=project).values_list("day", flat=True)) == \
        {MessageEvent.objects.filter(project=project).earliest("occurred_at").occurred_at.date()}
    release.set()
    worker.join()

    assert not PendingRecount.objects.filter(project=project).exists()
    assert rollups_rebuild(project=project).rows_changed == 0


def test_live_ingestion_during_a_deferred_backfill_is_counted_exactly(project, events_file):
    live = [wire_event(kind, f"2026-04-{1 + i % 28:02d}T12:00:00Z", recipient=f"reader{i % 50}@example.org")
            for i in range(400) for kind in ("sent", "opened")]
    errors = []

    def ingest_live():
        try:
            for start in range(0, len(live), 40):
                ingest(project, live[start:start + 40])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=ingest_live)
    worker.start()
    backfill(str(events_file), project=project.name, batch_size=200)
    worker.join()

    assert errors == []
    assert MessageEvent.objects.filter(project=project).count() == 6000 + len(live)
    assert rollups_rebuild(project=project).rows_changed == 0  # what was stored equals a recount from raw


def test_the_recount_drops_kept_report_bodies(project, events_file, settings, api, clock):
    settings.REPORT_CACHE_SECONDS = 60
    query = {"from": "2026-04-01T00:00:00Z", "to": "2026-04-29T00:00:00Z"}
    assert api.get("/v1/reports/engagement", query).json() == {"data": []}
    backfill(str(events_file), project=project.name)
    body = api.get("/v1/reports/engagement", query).json()
    assert sum(bucket["sent"] for bucket in body["data"]) == 1500


def test_per_batch_rollups_count_each_batch_as_it_is_stored(project, tmp_path):
    path = tmp_path / "events.ndjson"
    path.write_text(ndjson(*(wire_event("opened", "2026-04-01T09:00:00Z", recipient=f"r{i}@example.org")
                             for i in range(5))))
    backfill(str(path), project=project.name, rollups="per-batch")
    assert not PendingRecount.objects.filter(project=project).exists()
    assert DailyRollup.objects.get(project=project, grain="all").unique_opens == 5
    assert rollups_rebuild(project=project).rows_changed == 0


@pytest.mark.parametrize(("options", "message"), [
    ({"connections": 0}, "--connections must be from 1 to 8."),
    ({"connections": 9}, "--connections must be from 1 to 8."),
])
def test_backfill_refuses_bad_connection_counts(project, events_file, options, message):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match=message):
        backfill(str(events_file), project=project.name, **options)


@pytest.fixture
def poisoned_event_id():
    """A trigger that makes the insert of any message event with the client id `poison` fail."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                       "IF NEW.client_event_id = 'poison' THEN RAISE EXCEPTION 'poisoned event'; END IF; "
                       "RETURN NEW; END $$")
        cursor.execute(f"CREATE TRIGGER test_poison BEFORE INSERT ON {MessageEvent._meta.db_table} "
                       f"FOR EACH ROW EXECUTE FUNCTION test_poison()")
    try:
        yield "poison"
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER test_poison ON {MessageEvent._meta.db_table}")
            cursor.execute("DROP FUNCTION test_poison()")


def test_a_batch_the_database_refuses_leaves_nothing_and_the_connection_usable(project, poisoned_event_id):
    run = DeferredRollups(project)
    run.start()
    bad = parsed([wire_event("sent", "2026-04-01T09:00:00Z", recipient="bad@example.org"),
                  wire_event("opened", "2026-04-01T09:05:00Z", recipient="bad@example.org",
                             event_id=poisoned_event_id)])

    with pytest.raises(DatabaseError, match="poisoned event"):
        run.store(bad)

    # The batch's transaction was rolled back as a whole (its message too), and the same connection goes on.
    assert not Message.objects.filter(project=project).exists()
    assert connection.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    good = parsed([wire_event("opened", "2026-04-01T10:00:00Z", recipient="good@example.org")])
    assert run.store(good).accepted == 1
    run.finish()
    assert DailyRollup.objects.get(project=project, grain="all").unique_opens == 1
    assert rollups_rebuild(project=project).rows_changed == 0


def test_every_event_of_a_message_is_stored_by_one_connection(project, events_file, monkeypatch):
    """Storers never insert the same new message at once (one would wait for the other's commit)."""
    stored_by: dict[str, set[str]] = {}
    original = DeferredRollups.store

    def recording_store(self, events, **kwargs):
        for event in events:
            stored_by.setdefault(event["message_id"], set()).add(threading.current_thread().name)
        return original(self, events, **kwargs)

    monkeypatch.setattr(DeferredRollups, "store", recording_store)
    backfill(str(events_file), project=project.name, batch_size=100, connections=3)

    assert len({name for names in stored_by.values() for name in names}) == 3
    assert all(len(names) == 1 for names in stored_by.values())
    assert MessageEvent.objects.filter(project=project).count() == 6000


def test_concurrent_live_batches_on_days_without_first_touches_count_each_recipient_once(project, events_file):
    backfill(str(events_file), project=project.name)
    assert FirstTouchesPending.objects.filter(project=project).exists()
    # Four writers at once, each with the same openers on the same days: every batch finds the days'
    # first touches missing, one writes them, and no recipient is counted twice.
    batches = [[wire_event("opened", f"2026-04-{day:02d}T23:{writer:02d}:00Z", recipient=f"reader{i}@example.org",
                           channel="0193c2c3-0000-7000-8000-000000000000", sender="alerts@other.example")
                for day in (1, 2, 3) for i in range(0, 40, 3)]
               for writer in range(4)]
    barrier, errors = threading.Barrier(len(batches)), []

    def write(batch):
        try:
            barrier.wait(30)
            ingest(project, batch)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    writers = [threading.Thread(target=write, args=(batch,)) for batch in batches]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()

    assert errors == []
    assert MessageEvent.objects.filter(project=project).count() == 6000 + sum(map(len, batches))
    assert rollups_rebuild(project=project).rows_changed == 0  # equal to a recount from raw events
