"""Contract 2.1: deleting a render takes its file, shares, emails, events and counters with it; the report-side
messages of its emails stay, without any link to it. And the migration that took the render link off messages
keeps every stored message."""

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import connection, transaction

from renders.models import EngagementCounter, EngagementEvent, Render, RenderEmail, Share
from renders.services import render_delete, renders_delete
from reports.models import DailyRollup, Message, MessageEvent
from tests.test_email_flow import figures, path_of, report, send, urls_in

LAST_MESSAGE_WITH_RENDER = ("reports", "0007_first_touches_pending")


@pytest.fixture(autouse=True)
def locmem_mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.PUBLIC_BASE_URL = ""


def emailed_and_opened(api, client, render) -> dict:
    response = send(api, render)
    assert response.status_code == 201, response.content
    [message] = mail.outbox
    links = urls_in(message)
    assert client.get(path_of(links["pixel"])).status_code == 200
    assert client.get(path_of(links["link"])).status_code == 302
    return response.json()


@pytest.mark.django_db(transaction=True)
def test_deleting_a_render_takes_its_file_shares_emails_and_events_and_keeps_its_messages(api, client, render,
                                                                                           clock):
    emailed_and_opened(api, client, render)
    email = RenderEmail.objects.select_related("share").get()
    storage, name = render.file.storage, render.file.name
    assert storage.exists(name)
    before = figures(report(api))
    assert (before["sent"], before["delivered"], before["opens"], before["clicks"]) == (1, 1, 1, 1)

    render_delete(render=render)

    assert not Render.objects.filter(pk=render.pk).exists()
    assert not storage.exists(name)
    for model in (Share, RenderEmail, EngagementEvent, EngagementCounter):
        assert not model.objects.filter(render_id=render.pk).exists(), model.__name__
    assert client.get(f"/s/{email.share.token}").status_code == 404
    message = Message.objects.get(client_message_id=email.message_id)
    assert message.events.count() == 4
    assert figures(report(api)) == before
    assert api.get(f"/v1/renders/{render.id}").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_deleting_renders_keeps_the_other_renders_and_counts_what_it_deleted(project, make_render, clock):
    first, second, kept = (make_render(project, name=f"{n}.pdf") for n in ("first", "second", "kept"))
    assert renders_delete(renders=Render.objects.filter(pk__in=[first.pk, second.pk])) == 2
    assert list(Render.objects.values_list("pk", flat=True)) == [kept.pk]
    assert kept.file.storage.exists(kept.file.name)
    assert renders_delete(renders=Render.objects.filter(pk=first.pk)) == 0


@pytest.mark.django_db(transaction=True)
def test_a_render_deleted_inside_a_transaction_that_rolls_back_keeps_its_file(render, clock):
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        render_delete(render=render)
        raise Abort
    assert Render.objects.filter(pk=render.pk).exists()
    assert render.file.storage.exists(render.file.name)


def message_table_columns() -> set[str]:
    with connection.cursor() as cursor:
        return {column.name for column in connection.introspection.get_table_description(cursor,
                                                                                          Message._meta.db_table)}


@pytest.mark.django_db(transaction=True)
def test_migrating_from_messages_with_a_render_link_keeps_every_message(api, client, render, clock):
    """From the last state where messages named a render: the email's message (then linked to its render) and
    plain ingested traffic are kept with their events and rollups, and the email still finds its message."""
    emailed_and_opened(api, client, render)
    api.post("/v1/messages/events", {"events": [{
        "id": "evt-plain", "type": "delivered", "messageId": "plain-1",
        "channel": "0193c2c3-0000-7000-8000-000000000001", "from": "news@acme.example",
        "recipient": "bob@example.org", "occurredAt": "2026-05-03T09:00:00Z"}]}, format="json")
    email = RenderEmail.objects.get()
    messages_before = sorted(Message.objects.values_list("pk", "client_message_id", "recipient", "channel_id"))
    events_before = sorted(MessageEvent.objects.values_list("pk", "message_id", "type"))
    rollups_before = sorted(DailyRollup.objects.values_list("day", "grain", "channel_key", "domain", "sent",
                                                            "delivered", "opens", "clicks"))
    report_before = figures(report(api))
    assert len(messages_before) == 2

    try:
        call_command("migrate", *LAST_MESSAGE_WITH_RENDER, verbosity=0)
        assert "render_id" in message_table_columns()
        with connection.cursor() as cursor:  # as the email flow stored it before
            cursor.execute(f"UPDATE {Message._meta.db_table} SET render_id = %s WHERE client_message_id = %s",
                           [render.pk.hex if connection.vendor == "sqlite" else render.pk, email.message_id])
            assert cursor.rowcount == 1
    finally:
        call_command("migrate", "reports", verbosity=0)

    assert "render_id" not in message_table_columns()
    assert sorted(Message.objects.values_list("pk", "client_message_id", "recipient", "channel_id")) == messages_before
    assert sorted(MessageEvent.objects.values_list("pk", "message_id", "type")) == events_before
    assert sorted(DailyRollup.objects.values_list("day", "grain", "channel_key", "domain", "sent", "delivered",
                                                  "opens", "clicks")) == rollups_before
    assert Message.objects.get(project=email.project_id, client_message_id=email.message_id).events.count() == 4
    assert figures(report(api)) == report_before
    counts = api.get(f"/v1/renders/{render.id}/engagement").json()["counts"]
    assert (counts["share_created"], counts["email_sent"], counts["email_opened"]) == (1, 1, 1)


# DELETE /v1/renders/:id ------------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_delete_answers_204_takes_the_render_and_keeps_its_report_messages(api, client, render, clock):
    emailed_and_opened(api, client, render)
    email = RenderEmail.objects.select_related("share").get()
    storage, name = render.file.storage, render.file.name
    before = figures(report(api))

    response = api.delete(f"/v1/renders/{render.id}")

    assert response.status_code == 204 and response.content == b""
    assert not Render.objects.filter(pk=render.pk).exists() and not storage.exists(name)
    for model in (Share, RenderEmail, EngagementEvent, EngagementCounter):
        assert not model.objects.filter(render_id=render.pk).exists(), model.__name__
    assert client.get(f"/s/{email.share.token}").status_code == 404
    assert api.get(f"/v1/renders/{render.id}/engagement").status_code == 404
    assert figures(report(api)) == before
    assert MessageEvent.objects.filter(message__client_message_id=email.message_id).count() == 4


def test_a_second_delete_is_404(api, render):
    assert api.delete(f"/v1/renders/{render.id}").status_code == 204

    response = api.delete(f"/v1/renders/{render.id}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_delete_needs_renders_write_and_keeps_the_render(project, make_key, make_client, render):
    reader = make_client(make_key(project, scopes=["renders.read"]).raw_key)

    response = reader.delete(f"/v1/renders/{render.id}")

    assert response.status_code == 403
    assert "renders.write" in response.json()["error"]["message"]
    assert Render.objects.filter(pk=render.pk).exists()


def test_delete_of_another_projects_render_is_404_and_deletes_nothing(api, make_project, make_render):
    foreign = make_render(make_project())

    response = api.delete(f"/v1/renders/{foreign.id}")

    assert response.status_code == 404
    assert Render.objects.filter(pk=foreign.pk).exists()
