"""Contract 7.3 under concurrency (PostgreSQL): activity reports arriving at once, on one visit and on many
visits of one render, keep every figure exact (the visit's row lock, the upserts of the per-page figures)."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Sum

from demo.pdf import pages_pdf
from engagement_platform.clock import now
from engagement_platform.traffic import HUMAN
from renders.models import PageReading, Share, Visit, VisitPage, VisitTotals
from renders.services import render_create
from renders.visits import activity_record, reading_by_page, visit_view
from tests.conftest import requires_postgres, run_in_threads

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]
THREADS = 8


@pytest.fixture
def share(project):
    pdf = pages_pdf([(f"Page {n}", []) for n in (1, 2, 3)])
    render = render_create(project=project, uploaded_file=SimpleUploadedFile("c.pdf", pdf), name="c.pdf")
    return Share.objects.select_related("render").get(pk=Share.objects.create(project=project, render=render).pk)


def start_visit(share, viewer: str):
    return visit_view(share=share, viewer=viewer, verdict=HUMAN, source_ip="203.0.113.1", user_agent="UA",
                      at=now() - timedelta(hours=1))


def test_concurrent_reports_on_one_visit_all_land_once(share):
    visit = start_visit(share, "viewer-one-aaaaaaaaaaaaaa")

    def report(index):
        return activity_record(share=share, visit_id=visit.pk, pages={1: 700, 2 + index % 2: 400})

    results = run_in_threads(THREADS, report)

    assert all(result is not None for result in results)
    visit.refresh_from_db()
    assert visit.duration_ms == THREADS * 1100
    # page 1 passed 1 s exactly once, pages 2 and 3 (4 reports of 400 ms each) too
    assert visit.pages_viewed == 3
    assert dict(VisitPage.objects.filter(visit=visit).values_list("page", "ms")) == {1: 5600, 2: 1600, 3: 1600}
    reading = reading_by_page(render=share.render)
    assert [(p.total_ms, p.visits) for p in reading.pages] == [(5600, 1), (1600, 1), (1600, 1)]
    assert (reading.visits, reading.duration_ms, reading.completed) == (1, THREADS * 1100, 1)


def test_concurrent_reports_on_many_visits_of_one_render_add_up(share):
    visits = [start_visit(share, f"viewer-{index:02d}-aaaaaaaaaaaaaaaa") for index in range(THREADS)]

    def report(index):
        for _ in range(3):
            activity_record(share=share, visit_id=visits[index].pk, pages={1: 500, 3: 400})

    run_in_threads(THREADS, report)

    assert Visit.objects.aggregate(total=Sum("duration_ms"))["total"] == THREADS * 3 * 900
    assert set(Visit.objects.values_list("pages_viewed", flat=True)) == {2}
    rows = {(row.page, row.traffic): (row.total_ms, row.visits) for row in PageReading.objects.all()}
    assert rows == {(1, "human"): (THREADS * 1500, THREADS), (3, "human"): (THREADS * 1200, THREADS)}
    totals = VisitTotals.objects.get()
    assert (totals.visits, totals.duration_ms, totals.completed) == (THREADS, THREADS * 2700, THREADS)


def test_one_viewers_first_views_at_once_make_one_visit_and_other_viewers_their_own(share):
    def view(index):
        viewer = "viewer-same-aaaaaaaaaaaaaaa" if index % 2 else f"viewer-{index:02d}-aaaaaaaaaaaaaaaa"
        return visit_view(share=share, viewer=viewer, verdict=HUMAN, source_ip="203.0.113.1", user_agent="UA").pk

    results = run_in_threads(THREADS, view)

    same = {results[index] for index in range(1, THREADS, 2)}
    assert len(same) == 1
    assert Visit.objects.count() == 1 + THREADS // 2
    assert VisitTotals.objects.get().visits == 1 + THREADS // 2
