"""Section 5, the admin's render page: its File link opens the PDF through the admin itself (the storage's
MEDIA_URL is not served by the application), for staff only."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from engagement_platform.ids import new_id
from tests.conftest import PDF_BYTES

pytestmark = pytest.mark.django_db


def pdf_url(render) -> str:
    return reverse("admin:renders_render_pdf", args=[render.pk])


def file_link_on_change_page(client, render) -> str:
    response = client.get(reverse("admin:renders_render_change", args=[render.pk]))
    assert response.status_code == 200
    [href] = re.findall(r'<div class="readonly"><a href="([^"]+)">Open the PDF</a>', response.content.decode())
    return href


def test_the_render_pages_file_link_streams_the_pdf_to_staff(admin_client, render):
    href = file_link_on_change_page(admin_client, render)
    assert href == pdf_url(render)

    response = admin_client.get(href)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith("inline")
    assert b"".join(response.streaming_content) == PDF_BYTES


def test_the_file_link_does_not_point_at_the_unserved_media_url(admin_client, render, settings):
    assert not file_link_on_change_page(admin_client, render).startswith(settings.MEDIA_URL)


def test_an_anonymous_visitor_of_the_pdf_is_sent_to_the_admin_login(client, render):
    response = client.get(pdf_url(render))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login") + "?next=")


def test_a_signed_in_user_who_is_not_staff_is_sent_to_the_admin_login(client, render):
    user = get_user_model().objects.create_user("reader", password="a-long-test-password-1")
    client.force_login(user)

    response = client.get(pdf_url(render))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_staff_without_the_view_permission_on_renders_is_refused(client, render):
    user = get_user_model().objects.create_user("clerk", password="a-long-test-password-1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_project"))
    client.force_login(user)

    assert client.get(pdf_url(render)).status_code == 403


def test_the_pdf_of_an_unknown_render_is_404(admin_client):
    assert admin_client.get(reverse("admin:renders_render_pdf", args=[new_id()])).status_code == 404
    assert admin_client.get("/admin/renders/render/not-a-uuid/pdf/").status_code == 404


# Section 6: the class of each event, and the charts split into human and machine ---------------------------

def record_mixed_views(render):
    from renders.services import record_event
    from tests.test_traffic_rules import CHROME, SLACKBOT

    for index, agent in enumerate([CHROME, SLACKBOT, SLACKBOT, "curl/8.5.0"]):
        record_event(render=render, event_type="viewed", actor_kind="recipient", source_ip=f"203.0.113.{index}",
                     user_agent=agent, request_purpose="direct")


def test_the_render_page_splits_counts_and_charts_into_human_and_machine(admin_client, render):
    record_mixed_views(render)
    page = admin_client.get(reverse("admin:renders_render_change", args=[render.pk])).content.decode()
    assert "All: viewed: 4," in page and "Human: viewed: 1," in page and "Machine: viewed: 3," in page
    charts = [chart for chart in re.findall(r'<svg [^>]*role="img".*?</svg>', page, flags=re.S)
              if "engagement per day" in chart]
    assert len(charts) == 2
    assert "Human engagement per day" in charts[0] and "Machine engagement per day" in charts[1]
    assert re.search(r">viewed \(1\)<", charts[0]) and re.search(r">viewed \(3\)<", charts[1])


def test_the_event_list_shows_and_filters_by_class(admin_client, render):
    record_mixed_views(render)
    url = reverse("admin:renders_engagementevent_changelist")
    page = admin_client.get(url).content.decode()
    assert page.count('<td class="field-traffic">Machine</td>') == 3
    assert page.count('<td class="field-machine_reason">Bot</td>') == 3
    human_only = admin_client.get(url, {"traffic__exact": "human"}).content.decode()
    assert human_only.count('<td class="field-traffic">Human</td>') == 1
    assert '<td class="field-traffic">Machine</td>' not in human_only
