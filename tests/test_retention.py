"""Contract section 10, retention: `purge_expired` deletes what each plan no longer keeps, keeps everything inside
it, and leaves reports and counters equal to a recomputation from what is kept (both databases)."""

import random
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db.models import Count, Q, Sum

from engagement_platform import periodic
from engagement_platform.traffic import HUMAN, Traffic, Verdict
from renders.models import (
    DedupeMark,
    EngagementCounter,
    EngagementEvent,
    EventType,
    PageReading,
    Visit,
    VisitPage,
    VisitTotals,
)
from renders.services import counter_increments, record_event
from renders.shares import share_mint
from renders.visits import READ_PAGE_MS, activity_record, visit_view
from reports.models import (
    DailyFirstTouch,
    DailyRollup,
    Message,
    MessageEvent,
    PeriodRollup,
    SliceRollup,
)
from reports.selectors import ReportFilters, Window, engagement_report
from retention.services import expired_purge
from tests.test_reports_helpers import ingest, rollup_snapshot, wire_event
from tests.test_reports_properties import as_dicts, period_snapshot

pytestmark = pytest.mark.django_db

# A Friday afternoon: a 30-day plan keeps from Wednesday 2026-05-20 15:30:12, inside a week (from Monday the
# 18th) and a month (May) that both straddle the cutoff.
AT = datetime(2026, 6, 19, 15, 30, 12, tzinfo=UTC)
CUTOFF = AT - timedelta(days=30)
BROWSER = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
           "Safari/537.36")
BOT = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
RECIPIENTS = [f"reader{n}@example.org" for n in range(6)]


def z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def message_events(seed: int, count: int = 160) -> list[dict]:
    """Events over the 45 days before AT, several at and around the cutoff, some machine opens."""
    rng = random.Random(seed)
    moments = [AT - timedelta(seconds=rng.randrange(45 * 86400)) for _ in range(count)]
    moments += [CUTOFF, CUTOFF - timedelta(seconds=1), CUTOFF + timedelta(seconds=1),
                CUTOFF.replace(hour=0, minute=0, second=0), CUTOFF - timedelta(days=2)]
    events = []
    for moment in moments:
        recipient = rng.choice(RECIPIENTS)
        kind = rng.choice(["sent", "delivered", "opened", "opened", "clicked"])
        extra = {"userAgent": BOT} if kind == "opened" and rng.random() < 0.3 else {}
        if kind == "clicked":
            extra["url"] = "https://acme.example/offer"
        events.append(wire_event(kind, z(moment), recipient=recipient, **extra))
    return events


def windows() -> list[tuple[Window, str, ReportFilters]]:
    """Report windows a client may ask at AT (none starts before the plan's cutoff)."""
    asked = [Window(start=CUTOFF, end=AT),  # the default window: the whole retention
             Window(start=CUTOFF + timedelta(hours=3, seconds=7), end=AT - timedelta(days=3, seconds=11)),
             Window(start=datetime(2026, 5, 21, tzinfo=UTC), end=datetime(2026, 6, 18, tzinfo=UTC))]
    return [(window, group_by, ReportFilters(unique=unique, traffic=traffic))
            for window in asked for group_by in ("day", "week", "month")
            for unique in ("daily", "exact") for traffic in ("all", "human")]


def reports(project) -> list:
    return [as_dicts(engagement_report(project=project, window=window, group_by=group_by, filters=filters))
            for window, group_by, filters in windows()]


def test_purge_keeps_every_message_event_inside_retention_and_every_report_unchanged(make_project):
    project = make_project(retention_days=30)
    with time_machine.travel(AT, tick=False):
        ingest(project, message_events(seed=1))
        before = reports(project)
        kept = set(MessageEvent.objects.filter(project=project, occurred_at__gte=CUTOFF)
                   .values_list("client_event_id", flat=True))
        assert MessageEvent.objects.filter(project=project, occurred_at__lt=CUTOFF).exists()

        result = expired_purge()

    assert set(MessageEvent.objects.filter(project=project).values_list("client_event_id", flat=True)) == kept
    with time_machine.travel(AT, tick=False):
        assert reports(project) == before
    purged = next(p for p in result.projects if p.project_id == project.pk)
    assert purged.reports.events > 0 and purged.cutoff == CUTOFF
    cutoff_day = CUTOFF.date()
    for model in (DailyRollup, DailyFirstTouch, SliceRollup):
        assert not model.objects.filter(project=project, day__lt=cutoff_day).exists(), model
    assert not PeriodRollup.objects.filter(project=project, period="week", start__lt=datetime(2026, 5, 18)).exists()
    assert not PeriodRollup.objects.filter(project=project, period="month", start__lt=datetime(2026, 5, 1)).exists()
    # Messages left without events went with them; every message a kept event refers to stays.
    assert set(Message.objects.filter(project=project).values_list("pk", flat=True)) == set(
        MessageEvent.objects.filter(project=project).values_list("message_id", flat=True))

    # The rollups left are what a recount from the kept raw events writes.
    daily, periods = rollup_snapshot(project), period_snapshot(project)
    out = StringIO()
    call_command("rebuild_rollups", project=str(project.id), stdout=out)
    assert ", 0 rollup rows changed." in out.getvalue()
    assert rollup_snapshot(project) == daily and period_snapshot(project) == periods

    # A second purge at the same moment finds nothing more.
    with time_machine.travel(AT, tick=False):
        again = next(p for p in expired_purge().projects if p.project_id == project.pk)
    assert (again.reports.events, again.reports.messages, again.reports.derived_rows) == (0, 0, 0)


def render_traffic(render, share, seed: int):
    """Events and visits over the 45 days before AT: views (some by a bot), downloads, prints, partner events."""
    rng = random.Random(seed)
    for n in range(90):
        moment = AT - timedelta(seconds=rng.randrange(45 * 86400))
        event_type = rng.choice([EventType.VIEWED, EventType.VIEWED, EventType.DOWNLOADED, EventType.PRINTED])
        agent = BOT if rng.random() < 0.25 else BROWSER
        record_event(render=render, event_type=event_type, actor_kind="recipient",
                     share=share if rng.random() < 0.7 else None, source_ip=f"198.51.100.{n % 250}",
                     user_agent=agent, at=moment)
    for n in range(12):
        started = AT - timedelta(days=rng.randrange(45), seconds=rng.randrange(86400))
        verdict = HUMAN if n % 3 else Verdict(Traffic.MACHINE, "user_agent")
        visit = visit_view(share=share, viewer=f"viewer-{n}", verdict=verdict, source_ip="203.0.113.5",
                           user_agent=BROWSER, at=started)
        for step in range(1, rng.randrange(2, 5)):
            pages = {page: rng.randrange(200, 3000) for page in range(1, 4) if rng.random() < 0.7}
            activity_record(share=share, visit_id=visit.pk, pages=pages, at=started + timedelta(seconds=10 * step))


def counters_of(render) -> dict:
    totals = EngagementCounter.objects.filter(render=render).values("key").annotate(total=Sum("count"))
    return {row["key"]: row["total"] for row in totals if row["total"]}


def counters_recounted(render) -> dict:
    counted = Counter()
    for event_type, share_id, traffic in EngagementEvent.objects.filter(render=render).values_list(
            "event_type", "share_id", "traffic"):
        counted.update(counter_increments(event_type, share_id, traffic))
    return {key: total for key, total in counted.items() if total}


def reading_of(render) -> tuple[dict, dict]:
    totals = {row.traffic: (row.visits, row.duration_ms, row.completed)
              for row in VisitTotals.objects.filter(render=render) if row.visits or row.duration_ms}
    pages = {(row.traffic, row.page): (row.total_ms, row.visits)
             for row in PageReading.objects.filter(render=render) if row.total_ms or row.visits}
    return totals, pages


def reading_recounted(render) -> tuple[dict, dict]:
    last_page = render.page_count
    totals = {}
    for row in Visit.objects.filter(render=render).values("traffic").annotate(
            n=Count("pk"), ms=Sum("duration_ms")):
        completed = VisitPage.objects.filter(render=render, visit__traffic=row["traffic"], page=last_page,
                                             ms__gte=READ_PAGE_MS).count()
        totals[row["traffic"]] = (row["n"], row["ms"], completed)
    pages = {(row["visit__traffic"], row["page"]): (row["total_ms"], row["read"])
             for row in VisitPage.objects.filter(render=render).values("visit__traffic", "page").annotate(
                 total_ms=Sum("ms"), read=Count("pk", filter=Q(ms__gte=READ_PAGE_MS)))}
    return totals, pages


def test_purge_keeps_render_events_and_visits_inside_retention_and_the_counters_equal_a_recount(
        make_project, make_render):
    from tests.test_reading import three_page_pdf

    project = make_project(retention_days=30)
    render = make_render(project, name="Proposal.pdf", content=three_page_pdf())
    render.refresh_from_db()
    assert render.page_count == 3
    share = share_mint(render=render, label="For Alice")
    render_traffic(render, share, seed=2)
    kept_events = set(EngagementEvent.objects.filter(render=render, created_at__gte=CUTOFF)
                      .values_list("pk", flat=True))
    recorded = EngagementEvent.objects.filter(render=render).count()
    kept_visits = set(Visit.objects.filter(render=render, last_activity_at__gte=CUTOFF).values_list("pk", flat=True))
    assert EngagementEvent.objects.filter(render=render, created_at__lt=CUTOFF).exists()
    assert Visit.objects.filter(render=render, last_activity_at__lt=CUTOFF).exists() and kept_visits
    assert counters_of(render) == counters_recounted(render)
    assert reading_of(render) == reading_recounted(render)

    with time_machine.travel(AT, tick=False):
        result = expired_purge()

    assert set(EngagementEvent.objects.filter(render=render).values_list("pk", flat=True)) == kept_events
    assert set(Visit.objects.filter(render=render).values_list("pk", flat=True)) == kept_visits
    assert not VisitPage.objects.filter(render=render).exclude(visit_id__in=kept_visits).exists()
    assert counters_of(render) == counters_recounted(render)
    assert reading_of(render) == reading_recounted(render)
    assert not DedupeMark.objects.filter(project=project, last_recorded_at__lt=CUTOFF).exists()
    purged = next(p for p in result.projects if p.project_id == project.pk)
    assert purged.renders.events == recorded - len(kept_events) > 0
    assert purged.renders.visits == 12 - len(kept_visits)


def test_each_project_keeps_what_its_own_plan_allows(make_project):
    """Tenant boundary: a 30-day plan's purge never touches a 365-day plan's events of the same age."""
    short, long = make_project(retention_days=30), make_project(retention_days=365)
    with time_machine.travel(AT, tick=False):
        ingest(short, message_events(seed=3, count=40))
        ingest(long, message_events(seed=3, count=40))
        old = MessageEvent.objects.filter(project=long).count()
        expired_purge()
    assert MessageEvent.objects.filter(project=long).count() == old
    assert not MessageEvent.objects.filter(project=short, occurred_at__lt=CUTOFF).exists()
    assert MessageEvent.objects.filter(project=short).exists()


def test_purge_expired_command_reports_what_it_did_and_refuses_a_bad_moment(make_project):
    project = make_project(retention_days=30)
    ingest(project, message_events(seed=4, count=30))
    out = StringIO()
    call_command("purge_expired", at="2026-06-19T15:30:12Z", stdout=out)
    text = out.getvalue()
    assert text.startswith("Partitions dropped: ")
    assert f"Project {project.pk} (kept from 2026-05-20T15:30:12Z): " in text
    assert not MessageEvent.objects.filter(project=project, occurred_at__lt=CUTOFF).exists()
    for bad in ("yesterday", "2026-06-19T15:30:12"):
        with pytest.raises(CommandError, match="--at"):
            call_command("purge_expired", at=bad, stdout=StringIO())


def test_the_worker_runs_the_purge_daily_and_the_partition_upkeep_hourly():
    jobs = {job.name: job for job in periodic.jobs()}
    assert jobs["purge-expired"].every_seconds == 24 * 3600
    assert jobs["partition-upkeep"].every_seconds == 3600


def test_upkeep_partitions_command_says_what_it_created():
    out = StringIO()
    call_command("upkeep_partitions", stdout=out)
    assert re.fullmatch(r"Partitions created: \d+; rows moved from default partitions: \d+\.\n", out.getvalue())
