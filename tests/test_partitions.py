"""Contract section 10, partitions (PostgreSQL): the tables that grow with traffic are range-partitioned by month,
the worker creates the months ahead and moves what the default partition held for them, and the purge drops the
months past the longest retention whole, their counters and keys settled first."""

import json
import re
import threading
import time
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.db.models import Sum

from engagement_platform.db import partitions
from renders.models import EngagementCounter, EngagementEvent, EventType
from renders.selectors import engagement_summary_in_project
from renders.services import counter_increments, record_event
from reports.models import DailyRollup, Message, MessageEvent, MessageEventKey
from reports.selectors import ReportFilters, Window, engagement_report, engagement_report_json
from retention.services import expired_purge, partitions_keep_ahead
from tests.conftest import requires_postgres
from tests.test_reports_helpers import ingest, wire_event

pytestmark = [pytest.mark.django_db, requires_postgres]

AT = datetime(2026, 12, 17, 9, 30, tzinfo=UTC)
BROWSER = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
           "Safari/537.36")


def partition_holding(table: str, where: str, params: list) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT tableoid::regclass::text FROM {table} WHERE {where}", params)
        return sorted(row[0] for row in cursor.fetchall())


def key_columns(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_constraint c CROSS JOIN LATERAL "
                       "unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) JOIN pg_attribute a ON "
                       "a.attrelid = c.conrelid AND a.attnum = k.attnum WHERE c.conrelid = %s::regclass "
                       "AND c.contype = 'p'", [table])
        return list(cursor.fetchone()[0])


def test_every_table_that_grows_is_partitioned_by_month_with_its_key_holding_the_month_column():
    tables = {t.table: t.column for t in partitions.registered()}
    assert tables == {"renders_engagementevent": "created_at", "reports_messageevent": "occurred_at",
                      "reports_dailyfirsttouch": "day", "reports_dailyrollup": "day", "reports_slicerollup": "day",
                      "reports_periodfirsttouch": "start"}
    with connection.cursor() as cursor:
        for table, column in tables.items():
            assert partitions.is_partitioned(cursor, table), table
            names = partitions.partitions_of(cursor, table)
            assert partitions.default_partition_name(table) in names
            assert column in key_columns(table), table
    # project_id leads the keys it led (the same schema can be distributed by project).
    assert key_columns("reports_dailyfirsttouch")[0] == "project_id"
    assert key_columns("reports_messageeventkey") == ["project_id", "client_event_id"]


def test_upkeep_creates_the_months_ahead_and_moves_what_the_default_partition_held(project):
    far = datetime(2027, 8, 14, 12, tzinfo=UTC)  # beyond the months the migration made
    ingest(project, [wire_event("sent", "2027-08-14T12:00:00Z", event_id="far-1")])
    assert partition_holding("reports_messageevent", "client_event_id = %s", ["far-1"]) == [
        "reports_messageevent_pdefault"]

    result = partitions_keep_ahead(at=datetime(2027, 6, 2, tzinfo=UTC))

    assert "reports_messageevent_p2027_08" in result.created and result.rows_moved >= 1
    assert partition_holding("reports_messageevent", "client_event_id = %s", ["far-1"]) == [
        "reports_messageevent_p2027_08"]
    assert partition_holding("reports_dailyrollup", "day = %s", [far.date()]) == ["reports_dailyrollup_p2027_08"]
    # The months the upkeep covers: the longest retention's cutoff month to three months ahead.
    with connection.cursor() as cursor:
        names = set(partitions.partitions_of(cursor, "renders_engagementevent"))
    expected = {partitions.partition_name("renders_engagementevent", month) for month in partitions.months_kept(
        at=datetime(2027, 6, 2, tzinfo=UTC), longest_retention_days=project.retention_days)}
    assert expected <= names
    # Idempotent: the next run creates nothing; the moved event is still one the key table knows.
    assert partitions_keep_ahead(at=datetime(2027, 6, 2, tzinfo=UTC)).created == []
    assert ingest(project, [wire_event("sent", "2027-08-14T12:00:00Z", event_id="far-1")]).accepted == 0


def test_a_purge_drops_the_months_past_the_longest_retention_and_settles_their_counters(make_project, make_render):
    project = make_project(retention_days=90)
    render = make_render(project)
    old, kept = datetime(2026, 9, 20, 10, tzinfo=UTC), datetime(2026, 11, 28, 10, tzinfo=UTC)
    for n, moment in enumerate([old, old + timedelta(days=3), kept, AT - timedelta(hours=1)]):
        record_event(render=render, event_type=EventType.VIEWED, actor_kind="recipient", user_agent=BROWSER,
                     source_ip=f"198.51.100.{n}", at=moment)
    ingest(project, [wire_event("sent", "2026-09-20T10:00:00Z", event_id="old-1"),
                     wire_event("sent", "2026-09-21T10:00:00Z", event_id="old-2", recipient="gone@example.org"),
                     wire_event("sent", "2026-11-28T10:00:00Z", event_id="kept-1")])
    partitions_keep_ahead(at=AT)  # September .. March, September's rows moved out of the default partition
    assert partition_holding("renders_engagementevent", "created_at = %s", [old]) == [
        "renders_engagementevent_p2026_09"]

    project.retention_days = 30
    project.save(update_fields=["retention_days"])
    result = expired_purge(at=AT)

    # Longest retention now 30 days: the cutoff is 2026-11-17, so September and October go whole.
    for table in ("renders_engagementevent", "reports_messageevent", "reports_dailyrollup"):
        assert {f"{table}_p2026_09", f"{table}_p2026_10"} <= set(result.partitions_dropped)
        assert f"{table}_p2026_11" not in result.partitions_dropped
    assert result.partition_seconds < 5
    assert EngagementEvent.objects.filter(render=render).count() == 2
    totals = dict(EngagementCounter.objects.filter(render=render).values_list("key").annotate(total=Sum("count")))
    recounted = Counter()
    for event in EngagementEvent.objects.filter(render=render):
        recounted.update(counter_increments(event.event_type, event.share_id, event.traffic))
    assert {key: n for key, n in totals.items() if n} == dict(recounted)
    assert list(MessageEvent.objects.filter(project=project).values_list("client_event_id", flat=True)) == ["kept-1"]
    assert list(MessageEventKey.objects.filter(project=project).values_list("client_event_id", flat=True)) == [
        "kept-1"]
    assert not DailyRollup.objects.filter(project=project, day__lt=datetime(2026, 11, 17).date()).exists()
    # The message whose events all went with September goes too; the one a kept event names stays.
    assert list(Message.objects.filter(project=project).values_list("recipient", flat=True)) == ["reader@example.org"]


def test_a_month_is_dropped_only_once_every_plan_has_let_it_go(make_project):
    short, long = make_project(retention_days=30), make_project(retention_days=120)
    for project in (short, long):
        ingest(project, [wire_event("sent", "2026-09-10T10:00:00Z", event_id=f"sep-{project.pk}")])
    partitions_keep_ahead(at=AT)
    result = expired_purge(at=AT)
    assert "reports_messageevent_p2026_09" not in result.partitions_dropped
    assert not MessageEvent.objects.filter(project=short).exists()  # deleted row by row, its plan being shorter
    assert MessageEvent.objects.filter(project=long).count() == 1


@contextmanager
def statements_run():
    """The (sql, params) of every statement run on the connection meanwhile, as Django sends them."""
    run = []

    def keep(execute, sql, params, many, context):
        run.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(keep):
        yield run


def explained(sql: str, params=None) -> str:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def partitions_read(plan: str, table: str) -> set[str]:
    """The partitions of `table` a plan scans ("... on <partition> <alias>"), whatever index it uses."""
    return set(re.findall(rf"\bon ({table}_p(?:\d{{4}}_\d{{2}}|default))\b", plan))


def test_the_report_raw_edges_read_only_the_months_of_their_window(project):
    """The default window (the 30 days to now, both edges inside a day): every statement of the report that reads
    raw events reads the two months the window touches, never the others nor the default partition."""
    partitions_keep_ahead(at=AT)
    ingest(project, [wire_event("opened", "2026-12-16T09:45:00Z"), wire_event("opened", "2026-11-17T09:45:00Z")])
    with statements_run() as run:
        engagement_report(project=project, window=Window(start=AT - timedelta(days=30), end=AT), group_by="day",
                          filters=ReportFilters())
    raw = [(sql, params) for sql, params in run if "reports_messageevent" in sql]
    assert raw
    for sql, params in raw:
        assert partitions_read(explained(sql, params), "reports_messageevent") <= {
            "reports_messageevent_p2026_11", "reports_messageevent_p2026_12"}, sql


def summary_statements(project, render, at=AT, traffic="all") -> tuple[list, list]:
    """(the summary's recent events as the API lists them, the statements that read render events)."""
    with statements_run() as run, time_machine.travel(at, tick=False):
        summary = engagement_summary_in_project(project=project, render_id=str(render.pk), traffic=traffic)
    return json.loads(summary.recent_json), [(sql, params) for sql, params in run if "renders_engagementevent" in sql]


def test_the_summary_reads_recent_events_from_the_months_the_plan_keeps(project, render, make_project):
    """Its newest events come from this month's and the last one's partitions, named; only when those hold
    fewer than 25 and the counters hold more does a second statement read the older months the plan keeps,
    never one before the plan's retention start."""
    make_project(retention_days=365)  # another plan keeps a year: the months before this plan's exist
    partitions_keep_ahead(at=AT)
    since = AT - timedelta(days=project.retention_days)
    expired_months = {partitions.partition_name("renders_engagementevent", month)
                      for month in partitions.months_from(AT - timedelta(days=365), since - timedelta(days=31))}
    assert len(expired_months) == 9  # December 2025 .. August 2026
    record_event(render=render, event_type=EventType.VIEWED, actor_kind="partner", at=AT - timedelta(days=1))

    recent, [(sql, params)] = summary_statements(project, render)  # one event, and the counters hold one
    assert len(recent) == 1
    assert set(re.findall(r'"(renders_engagementevent_p\d{4}_\d{2})"', sql)) == {
        "renders_engagementevent_p2026_11", "renders_engagementevent_p2026_12"}
    assert partitions_read(explained(sql, params), "renders_engagementevent") == {
        "renders_engagementevent_p2026_11", "renders_engagementevent_p2026_12"}

    record_event(render=render, event_type=EventType.PRINTED, actor_kind="partner", at=since + timedelta(days=2))
    recent, statements = summary_statements(project, render)
    assert [event["eventType"] for event in recent] == ["viewed", "printed"]  # newest first, across both reads
    assert len(statements) == 2
    older = partitions_read(explained(*statements[1]), "renders_engagementevent")
    assert "renders_engagementevent_p2026_09" in older and not older & expired_months, older


def test_the_summary_of_a_busy_render_lists_its_25_newest_events_in_one_statement(project, render):
    partitions_keep_ahead(at=AT)
    for minutes in range(30):
        record_event(render=render, event_type=EventType.VIEWED, actor_kind="partner",
                     source_ip=f"192.0.2.{minutes + 1}", at=AT - timedelta(days=20, minutes=minutes))
    recent, statements = summary_statements(project, render)
    assert len(statements) == 1 and len(recent) == 25
    assert [event["createdAt"] for event in recent] == [
        (AT - timedelta(days=20, minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.000Z") for minutes in range(25)]


def test_a_quiet_render_lists_its_older_events_too_newest_first_and_by_class(project, render):
    """Fewer than 25 events in the two newest months: the rest come from the older months, up to 25 in all,
    the traffic filter applied to both reads."""
    partitions_keep_ahead(at=AT)
    moments = [AT - timedelta(days=days) for days in (3, 40, 60, 75, 85)]  # the plan keeps 90 days
    for number, moment in enumerate(moments, start=1):
        record_event(render=render, event_type=EventType.VIEWED, actor_kind="partner", at=moment,
                     source_ip=f"192.0.2.{number}")
    record_event(render=render, event_type=EventType.VIEWED, actor_kind="recipient", at=AT - timedelta(days=50),
                 user_agent="Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)")
    recent, statements = summary_statements(project, render)
    assert len(statements) == 2
    assert [event["createdAt"][:10] for event in recent] == [
        f"{moment:%Y-%m-%d}" for moment in sorted([*moments, AT - timedelta(days=50)], reverse=True)]
    human, _statements = summary_statements(project, render, traffic="human")
    assert [event["createdAt"][:10] for event in human] == [f"{moment:%Y-%m-%d}" for moment in moments]
    machine, statements = summary_statements(project, render, traffic="machine")
    assert [event["createdAt"][:10] for event in machine] == [f"{AT - timedelta(days=50):%Y-%m-%d}"]


def report_statement(project, **window) -> str:
    with statements_run() as run:
        engagement_report(project=project, window=Window(**window), group_by="day", filters=ReportFilters())
    [sql] = [sql for sql, _params in run if "reports_dailyrollup" in sql]
    return sql


PARENTS = ("reports_messageevent", "reports_dailyrollup", "reports_slicerollup", "reports_dailyfirsttouch",
           "reports_periodfirsttouch")


def parents_named(sql: str) -> set[str]:
    return {table for table in PARENTS if re.search(rf'"{table}"', sql)}


def test_the_report_names_the_partitions_of_its_months_not_their_tables(project):
    """A generic plan of a statement naming a partitioned table holds all its partitions (PostgreSQL 15 locks
    each at every execution): the default window's statement names the two months' partitions instead."""
    partitions_keep_ahead(at=AT)
    ingest(project, [wire_event("opened", "2026-12-16T09:45:00Z"), wire_event("opened", "2026-11-17T09:45:00Z")])

    sql = report_statement(project, start=AT - timedelta(days=30), end=AT)

    assert parents_named(sql) == set()
    # The whole days' rollups of both months; the first day's slices, ledger and raw events (November); the
    # last day's rollup row and raw events (December).
    assert set(re.findall(r'"(reports_[a-z]+_p\d{4}_\d{2})"', sql)) == {
        "reports_dailyrollup_p2026_11", "reports_dailyrollup_p2026_12", "reports_slicerollup_p2026_11",
        "reports_dailyfirsttouch_p2026_11", "reports_messageevent_p2026_11", "reports_messageevent_p2026_12"}


def test_a_month_without_a_partition_of_its_own_is_read_through_its_table(project):
    known = frozenset({"reports_dailyrollup_p2026_11", "reports_dailyrollup_p2026_12"})
    relation = partitions.months_relation
    assert relation("reports_dailyrollup", ["day"], AT.date(), AT.date(), alias="d", known=known) == (
        '"reports_dailyrollup_p2026_12" AS d')
    assert relation("reports_dailyrollup", ["day", "opens"], AT.date() - timedelta(days=30), AT.date(), alias="d",
                    known=known) == ('(SELECT "day", "opens" FROM "reports_dailyrollup_p2026_11" UNION ALL '
                                     'SELECT "day", "opens" FROM "reports_dailyrollup_p2026_12") AS d')
    assert relation("reports_dailyrollup", ["day"], AT.date(), AT.date() + timedelta(days=31), alias="d",
                    known=known) is None  # January 2027 has none in `known`: its rows may be in the default one

    # A month whose partition the process does not know of (created since it listed them) is read through the
    # table, and the report is the same.
    ingest(project, [wire_event("opened", "2026-12-16T09:45:00Z"), wire_event("opened", "2026-11-17T09:45:00Z")])
    window = {"start": AT - timedelta(days=30), "end": AT}
    named = engagement_report(project=project, window=Window(**window), group_by="day", filters=ReportFilters())
    partitions._known["default"] = (partitions.time.monotonic(), frozenset())
    assert parents_named(report_statement(project, **window)) == set(PARENTS[:4])
    assert engagement_report(project=project, window=Window(**window), group_by="day",
                             filters=ReportFilters()) == named


@pytest.mark.django_db(transaction=True)
def test_a_report_naming_a_partition_dropped_since_lists_the_partitions_again(make_project):
    """Another process's purge may drop a partition this one still lists: the report lists them again and
    answers (here a partition is renamed away, and back afterwards; the months the migration created)."""
    project = make_project(retention_days=365)
    upcoming = partitions.month_of(datetime.now(UTC)) + timedelta(days=40)  # inside next month
    at = datetime(upcoming.year, upcoming.month, 10, 9, 30, tzinfo=UTC)
    ingest(project, [wire_event("opened", (at - timedelta(days=20)).strftime("%Y-%m-%dT%H:%M:%SZ")),
                     wire_event("opened", (at - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))])
    window = Window(start=at - timedelta(days=30), end=at)
    month = partitions.partition_name("reports_dailyrollup", partitions.month_of(at - timedelta(days=20)))
    before = engagement_report_json(project=project, window=window, group_by="day", filters=ReportFilters())
    assert before.count(b'"opens":1') == 2 and month in partitions.known_partitions()
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {month} RENAME TO {month}_away")
    try:
        after = engagement_report_json(project=project, window=window, group_by="day", filters=ReportFilters())
        assert month not in partitions.known_partitions()
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {month}_away RENAME TO {month}")
    assert after == before


def lock_waiters(cursor) -> int:
    cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                   "AND wait_event_type = 'Lock'")
    return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_creating_a_month_gives_way_to_a_recording_it_would_deadlock_with(project, render):
    """A recording that created a share and then records its event, while the upkeep adds a month of the
    events (whose foreign key to the shares waits for that transaction): the upkeep gives way within its lock
    timeout, the recording commits, and the month is created on the upkeep's next try."""
    from renders.models import ActorKind, Share

    at = datetime(2029, 3, 2, tzinfo=UTC)  # months no migration made
    outcome: dict = {}
    share_created = threading.Event()

    def recording():
        try:
            with transaction.atomic():
                share = Share.objects.create(project_id=project.pk, render=render, label="in flight")
                share_created.set()
                with connection.cursor() as cursor:
                    deadline = time.monotonic() + 10
                    while lock_waiters(cursor) == 0 and time.monotonic() < deadline:
                        time.sleep(0.02)
                outcome["recorded"] = record_event(render=render, event_type=EventType.SHARE_CREATED,
                                                   actor_kind=ActorKind.PARTNER, share=share).recorded
        except Exception as exc:  # noqa: BLE001 - the failure is the test's finding
            outcome["error"] = exc
        finally:
            connection.close()

    writer = threading.Thread(target=recording)
    writer.start()
    assert share_created.wait(10)
    created = []
    try:
        created = partitions_keep_ahead(at=at).created
        writer.join(20)
        assert "error" not in outcome, outcome.get("error")
        assert outcome["recorded"] is True
        assert partitions.partition_name("renders_engagementevent", partitions.month_of(at)) in created
    finally:
        writer.join(20)
        with connection.cursor() as cursor:
            for name in created:
                cursor.execute(f"DROP TABLE IF EXISTS {name}")
        partitions.known_partitions_forget()
