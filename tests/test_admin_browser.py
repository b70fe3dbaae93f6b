"""Section 5 in a real browser: an operator logs into the admin and sees the project and render charts.

Headless Chromium (Debian's package at /usr/bin/chromium) against a live server; a missing browser fails
the test, it is not skipped. Screenshots go to tests/artifacts/.
"""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Sum

from apikeys.services import project_create
from demo.data import ensure_message_traffic
from demo.pdf import simple_pdf
from engagement_platform.clock import now
from renders.models import ActorKind, EventType
from renders.services import record_event, render_create
from reports.charts import traffic_chart_days
from reports.grains import utc_day
from reports.models import DailyRollup, RollupGrain
from tests.test_browser import ARTIFACTS, chromium, server_closes_db_sessions  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OPERATOR, PASSWORD = "operator", "a-long-test-password-1"
CHART = 'svg[role="img"]'


@pytest.fixture
def shared(live_server, server_closes_db_sessions):  # noqa: F811
    """An operator, a project with six weeks of message traffic, and a render with two weeks of events."""
    get_user_model().objects.create_superuser(OPERATOR, "operator@example.org", PASSWORD)
    project = project_create(name="Charted")
    ensure_message_traffic(project=project)
    pdf = simple_pdf("Quote Q-1042", ["40 hours of consulting."])
    render = render_create(project=project, uploaded_file=SimpleUploadedFile("Quote.pdf", pdf), name="Quote.pdf")
    for days_ago in reversed(range(14)):  # oldest first: the dedupe window runs forward in time
        for n, event_type in enumerate([EventType.VIEWED, EventType.DOWNLOADED, EventType.PRINTED][:days_ago % 3 + 1]):
            record_event(render=render, event_type=event_type, actor_kind=ActorKind.PARTNER,
                         source_ip=f"198.51.100.{n + 1}", at=now() - timedelta(days=days_ago, hours=1))
    first_day = utc_day(now()) - timedelta(days=traffic_chart_days(project=project) - 1)
    sent = DailyRollup.objects.filter(project=project, grain=RollupGrain.ALL, day__gte=first_day).aggregate(
        s=Sum("sent"))["s"]
    return {"base": live_server.url, "project_id": str(project.id), "render_id": str(render.id), "sent": sent}


def test_operator_sees_the_project_and_render_charts(chromium, shared):  # noqa: F811
    from playwright.sync_api import expect

    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    console_errors, failed = [], []
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    # the browser's own favicon request is the only 404 the admin may cause
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error"
            and not message.location.get("url", "").endswith("/favicon.ico") else None)

    page.goto(f"{shared['base']}/admin/login/?next=/admin/")
    page.fill("#id_username", OPERATOR)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_contain_text("Engagement platform")

    response = page.goto(f"{shared['base']}/admin/apikeys/project/{shared['project_id']}/change/")
    assert response.status == 200
    chart = page.locator(f".field-traffic_chart {CHART}")
    expect(chart).to_be_visible()
    expect(chart).to_contain_text(f"sent ({shared['sent']})")
    assert chart.locator("polyline").count() == 6  # sent, delivered, and opens and clicks of people and of machines
    assert chart.bounding_box()["width"] > 600  # drawn at its own size, not squeezed into the form row
    chart.scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-project-chart.png"))

    response = page.goto(f"{shared['base']}/admin/renders/render/{shared['render_id']}/change/")
    assert response.status == 200
    chart = page.locator(f".field-engagement_chart {CHART}[aria-label^='Human']")  # partner events: human
    expect(chart).to_be_visible()
    expect(page.locator(f".field-engagement_chart {CHART}[aria-label^='Machine']")).to_contain_text("viewed (0)")
    expect(chart).to_contain_text("viewed (14)")
    expect(chart).to_contain_text("downloaded (9)")
    chart.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "admin-render-chart.png"))
    file_link = page.locator(".field-pdf_link a")
    expect(file_link).to_have_text("Open the PDF")
    pdf = page.request.get(shared["base"] + file_link.get_attribute("href"))  # the operator's session
    assert (pdf.status, pdf.headers["content-type"]) == (200, "application/pdf")
    assert pdf.body().startswith(b"%PDF-")

    assert (ARTIFACTS / "admin-project-chart.png").stat().st_size > 10_000
    assert failed == [] and console_errors == []  # the admin's styles and scripts all loaded
    context.close()
