"""Section 5: the operators' admin for channels, messages, message events and rollups."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from reports.models import Channel, Message, MessageEvent
from tests.test_reports_helpers import CHANNEL_A, CHANNEL_B, delivered_message, ingest, wire_event

pytestmark = pytest.mark.django_db

LISTS = ["/admin/reports/channel/", "/admin/reports/message/", "/admin/reports/messageevent/",
         "/admin/reports/dailyrollup/"]


def traffic(project, recipients: int):
    events = []
    for n in range(recipients):
        channel = CHANNEL_A if n % 2 else CHANNEL_B
        events += delivered_message("2026-04-10T08:00:00Z", recipient=f"p{n}@example.org", channel=channel)
        events.append(wire_event("opened", "2026-04-10T09:00:00Z", recipient=f"p{n}@example.org", channel=channel))
    ingest(project, events)


def queries_for(client, url) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured.captured_queries)


@pytest.mark.parametrize("url", LISTS)
def test_list_pages_run_the_same_queries_for_few_or_many_rows(admin_client, project, url):
    traffic(project, 2)
    few = queries_for(admin_client, url)
    traffic(project, 30)

    assert queries_for(admin_client, url) == few


def test_message_event_list_filters_by_type_and_shows_recipient_and_channel(admin_client, project):
    traffic(project, 2)
    Channel.objects.filter(external_id=CHANNEL_A).update(name="Newsletter")

    response = admin_client.get("/admin/reports/messageevent/", {"type": "opened"})

    page = response.content.decode()
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 2
    assert "p1@example.org" in page and "Newsletter" in page


def test_message_event_list_has_a_date_hierarchy(admin_client, project):
    traffic(project, 1)

    response = admin_client.get("/admin/reports/messageevent/", {"occurred_at__year": "2026"})

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 3


def test_an_operator_can_name_a_channel(admin_client, project):
    traffic(project, 2)
    channel = Channel.objects.get(external_id=CHANNEL_A)

    response = admin_client.post(f"/admin/reports/channel/{channel.pk}/change/",
                                 {"name": "Product updates", "external_id": CHANNEL_B})

    assert response.status_code == 302
    channel.refresh_from_db()
    assert channel.name == "Product updates"
    assert str(channel.external_id) == CHANNEL_A  # read-only


def test_channels_cannot_be_added_or_deleted_in_the_admin(admin_client, project):
    traffic(project, 1)
    channel = Channel.objects.get()

    assert admin_client.get("/admin/reports/channel/add/").status_code == 403
    assert admin_client.post(f"/admin/reports/channel/{channel.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Channel.objects.filter(pk=channel.pk).exists()


@pytest.mark.parametrize("model", [Message, MessageEvent])
def test_messages_and_events_are_read_only(admin_client, project, model):
    traffic(project, 1)
    obj = model.objects.first()
    base = f"/admin/reports/{model._meta.model_name}/"

    assert admin_client.get(f"{base}{obj.pk}/change/").status_code == 200  # viewable
    assert admin_client.post(f"{base}{obj.pk}/change/", {}).status_code == 403
    assert admin_client.get(f"{base}add/").status_code == 403
    assert admin_client.post(f"{base}{obj.pk}/delete/", {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=obj.pk).exists()
