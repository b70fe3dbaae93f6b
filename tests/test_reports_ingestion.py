"""Section 4: POST /v1/messages/events and the ingestion service behind it."""

import re
import uuid
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from reports.models import Channel, DailyRollup, Message, MessageEvent
from reports.services import channel_get_or_create, default_channel_for, ingest_message_events
from tests.test_reports_helpers import (
    CHANNEL_A,
    CHANNEL_B,
    EVENTS_URL,
    bucket,
    delivered_message,
    get_report,
    ingest,
    post_events,
    rollup_snapshot,
    utc,
    wire_event,
)

pytestmark = pytest.mark.django_db

DAY = {"from_": "2026-05-01T00:00:00Z", "to": "2026-05-02T00:00:00Z"}


def test_accepted_events_are_counted_and_reported(api, clock):
    events = [*delivered_message("2026-05-01T08:00:00Z", recipient="a@example.org"),
              wire_event("opened", "2026-05-01T09:00:00Z", recipient="a@example.org")]

    response = post_events(api, events)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"accepted": 3, "duplicates": 0}
    assert get_report(api, **DAY).json()["data"] == [
        bucket("2026-05-01T00:00:00Z", sent=1, delivered=1, opens=1, unique_opens=1)]


def test_posting_the_same_batch_again_reports_duplicates_and_changes_no_figure(api, project, clock):
    events = [*delivered_message("2026-05-01T08:00:00Z", recipient="a@example.org"),
              wire_event("clicked", "2026-05-01T09:00:00Z", recipient="a@example.org")]
    post_events(api, events)
    before = rollup_snapshot(project)

    response = post_events(api, events)

    assert response.json() == {"accepted": 0, "duplicates": 3}
    assert rollup_snapshot(project) == before
    assert MessageEvent.objects.count() == 3


def test_a_retry_with_some_new_events_accepts_only_the_new_ones(api, project, clock):
    first = wire_event("opened", "2026-05-01T09:00:00Z", recipient="a@example.org")
    post_events(api, [first])

    response = post_events(api, [first, wire_event("opened", "2026-05-01T10:00:00Z", recipient="b@example.org")])

    assert response.json() == {"accepted": 1, "duplicates": 1}
    assert get_report(api, **DAY).json()["data"] == [bucket("2026-05-01T00:00:00Z", opens=2, unique_opens=2)]


def test_an_id_repeated_within_one_batch_counts_once(api, clock):
    event = wire_event("opened", "2026-05-01T09:00:00Z", recipient="a@example.org")

    response = post_events(api, [event, dict(event), {**event, "occurredAt": "2026-05-01T10:00:00Z"}])

    assert response.json() == {"accepted": 1, "duplicates": 2}
    assert get_report(api, **DAY).json()["data"] == [bucket("2026-05-01T00:00:00Z", opens=1, unique_opens=1)]


def test_a_duplicate_id_of_another_type_changes_no_figure(api, project, clock):
    post_events(api, [wire_event("delivered", "2026-05-01T09:00:00Z", event_id="e-1")])

    response = post_events(api, [wire_event("opened", "2026-05-01T09:00:00Z", event_id="e-1")])

    assert response.json() == {"accepted": 0, "duplicates": 1}
    assert get_report(api, **DAY).json()["data"] == [bucket("2026-05-01T00:00:00Z", delivered=1)]


def test_event_ids_are_per_project(api, project, make_project, clock):
    other = make_project("other")
    ingest(other, [wire_event("opened", "2026-05-01T09:00:00Z", event_id="shared-id")])

    response = post_events(api, [wire_event("opened", "2026-05-01T09:00:00Z", event_id="shared-id")])

    assert response.json() == {"accepted": 1, "duplicates": 0}


def test_one_invalid_event_rejects_the_whole_batch(api, project, clock):
    events = [wire_event("opened", "2026-05-01T09:00:00Z") for _ in range(3)]
    events[1]["channel"] = "not-a-uuid"

    response = post_events(api, events)

    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "events[1].channel", "reason": "Must be a UUID."}]
    assert (MessageEvent.objects.count(), Message.objects.count(), Channel.objects.count()) == (0, 0, 0)
    assert not DailyRollup.objects.exists()


@pytest.mark.parametrize(("change", "field", "reason"), [
    ({"id": ""}, "id", "Required: a non-empty string."),
    ({"id": "x" * 129}, "id", "Must be at most 128 characters."),
    ({"id": 7}, "id", "Must be a string."),
    ({"type": "bounced"}, "type", "Must be one of sent, delivered, opened, clicked."),
    ({"messageId": None}, "messageId", "Required: a non-empty string."),
    ({"channel": 12}, "channel", "Must be a UUID."),
    ({"from": "nobody"}, "from", "Must be an email address."),
    ({"recipient": "a@b@c"}, "recipient", "Must be an email address."),
    ({"occurredAt": "2026-05-01T09:00:00"}, "occurredAt", "Must carry a UTC offset or Z, e.g. 2026-05-17T09:30:00Z."),
    ({"occurredAt": 1746090000}, "occurredAt", "Must be an RFC 3339 date-time string, e.g. 2026-05-17T09:30:00Z."),
    ({"url": ["x"]}, "url", "Must be a string or null."),
    ({"url": "https://a.example/" + "x" * 2048}, "url", "Must be at most 2048 characters."),
    ({"userAgent": {}}, "userAgent", "Must be a string or null."),
    ({"colour": "blue"}, "colour", "Unknown field."),
])
def test_each_bad_event_field_is_named_with_its_index(api, clock, change, field, reason):
    events = [wire_event("opened", "2026-05-01T09:00:00Z"), {**wire_event("clicked", "2026-05-01T09:00:00Z"), **change}]

    response = post_events(api, events)

    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": f"events[1].{field}", "reason": reason}]


# Lower-cased, "İ" is two code points: these fit the columns as sent and overflow them as stored.
LONG_WHEN_LOWERED = {
    "two-long-labels": "a@" + "İ" * 63 + "." + "İ" * 63 + ".com",
    "twelve-short-labels": "a@" + ".".join(["İ" * 10] * 12) + ".com",
    "long-local-part": "İ" * 64 + "@" + "a" * 63 + "." + "b" * 58 + ".com",
}


@pytest.mark.parametrize(("field", "address"), [
    *[pytest.param("recipient", address, id=f"recipient-{name}") for name, address in LONG_WHEN_LOWERED.items()],
    # the sender is stored as sent: only its lower-cased domain can overflow (its column holds 253)
    *[pytest.param("from", LONG_WHEN_LOWERED[name], id=f"from-{name}")
      for name in ("two-long-labels", "twelve-short-labels")],
])
def test_an_address_longer_than_its_column_once_lower_cased_is_422_and_nothing_is_stored(api, clock, field,
                                                                                        address):
    assert len(address) <= 254 < len(address.lower())
    bad = {**wire_event("opened", "2026-05-01T09:00:00Z", message="m-2"), field: address}
    events = [wire_event("opened", "2026-05-01T09:00:00Z", message="m-1"), bad]

    response = post_events(api, events)

    assert response.status_code == 422, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "validation_failed"
    [error] = body["errors"]
    assert error["field"] == f"events[1].{field}"
    assert "lower-cased" in error["reason"]
    assert (MessageEvent.objects.count(), Message.objects.count(), Channel.objects.count()) == (0, 0, 0)
    assert not DailyRollup.objects.exists()


def test_a_sender_whose_lower_cased_domain_just_fits_is_stored(api, clock):
    domain = "İ" * 10 + "." + "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 36 + ".com"
    assert len(domain.lower()) == 253  # and the address, stored as sent, 245
    event = wire_event("opened", "2026-05-01T09:00:00Z", message="m-1", sender="x@" + domain)

    response = post_events(api, [event])

    assert response.status_code == 200, response.content
    assert Message.objects.get().from_domain == domain.lower()


def test_a_missing_field_is_named(api, clock):
    event = wire_event("opened", "2026-05-01T09:00:00Z")
    del event["recipient"]

    response = post_events(api, [event])

    assert response.json()["errors"] == [{"field": "events[0].recipient", "reason": "Required: a non-empty string."}]


def test_an_event_that_is_not_an_object_is_named_by_its_index(api, clock):
    response = post_events(api, [wire_event("opened", "2026-05-01T09:00:00Z"), "opened"])

    assert response.json()["errors"] == [{"field": "events[1]", "reason": "Must be a JSON object."}]


@pytest.mark.parametrize("body", [{}, {"events": []}, {"events": {"id": "x"}}, {"events": None}])
def test_events_must_be_an_array_of_one_to_a_thousand(api, clock, body):
    response = api.post(EVENTS_URL, body, format="json")

    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "events", "reason": "Required: an array of 1 to 1000 events."}]


def test_more_than_a_thousand_events_is_422(api, clock):
    events = [wire_event("opened", "2026-05-01T09:00:00Z") for _ in range(1001)]

    response = post_events(api, events)

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "events"
    assert MessageEvent.objects.count() == 0


def test_a_thousand_events_with_long_fields_are_accepted(api, clock):
    events = [wire_event("clicked", "2026-05-01T09:00:00Z", recipient=f"r{i}@example.org",
                         url="https://acme.example/" + "p" * 1500, userAgent="Mozilla/5.0 " + "x" * 600)
              for i in range(1000)]

    response = post_events(api, events)

    assert response.status_code == 200
    assert response.json() == {"accepted": 1000, "duplicates": 0}


def test_unknown_top_level_field_is_422(api, clock):
    response = api.post(EVENTS_URL, {"events": [wire_event("opened", "2026-05-01T09:00:00Z")], "dryRun": True},
                        format="json")

    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "dryRun", "reason": "Unknown field."}]


def test_a_body_that_is_not_an_object_is_422(api, clock):
    response = api.post(EVENTS_URL, [wire_event("opened", "2026-05-01T09:00:00Z")], format="json")

    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"] == [{"field": "body", "reason": 'Expected a JSON object: {"events": [...]}.'}]


def test_malformed_json_is_a_problem_response(api, clock):
    response = api.post(EVENTS_URL, b'{"events": [', content_type="application/json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "invalid_json"


def test_channels_and_messages_are_created_on_first_use(api, project, clock):
    post_events(api, [wire_event("sent", "2026-05-01T08:00:00Z", recipient="Ann@Example.ORG", message="m-1",
                                 sender="News@Acme.Example", channel=CHANNEL_A)])

    channel = Channel.objects.get()
    message = Message.objects.select_related("channel").get()
    assert (channel.project_id, channel.external_id, channel.id, channel.name) == (
        project.id, uuid.UUID(CHANNEL_A), uuid.UUID(CHANNEL_A), "")
    assert (message.client_message_id, message.recipient, message.from_address, message.from_domain) == (
        "m-1", "ann@example.org", "News@Acme.Example", "acme.example")
    assert message.channel == channel


def test_later_events_of_a_message_reuse_it_and_keep_its_attributes(api, project, clock):
    post_events(api, [wire_event("sent", "2026-05-01T08:00:00Z", message="m-1", channel=CHANNEL_A)])
    post_events(api, [wire_event("opened", "2026-05-01T09:00:00Z", message="m-1", channel=CHANNEL_B)])

    assert Message.objects.count() == 1
    assert list(MessageEvent.objects.order_by().values_list("message__channel__external_id", flat=True).distinct()) == [
        uuid.UUID(CHANNEL_A)]
    assert get_report(api, channel=CHANNEL_A, **DAY).json()["data"] == [
        bucket("2026-05-01T00:00:00Z", sent=1, opens=1, unique_opens=1)]


def test_a_channel_named_by_an_operator_keeps_its_name(api, clock):
    post_events(api, [wire_event("sent", "2026-05-01T08:00:00Z")])
    Channel.objects.update(name="Newsletter")

    post_events(api, [wire_event("sent", "2026-05-01T09:00:00Z")])

    assert list(Channel.objects.values_list("name", flat=True)) == ["Newsletter"]


def test_two_projects_may_use_the_same_channel_uuid_without_meeting(api, project, make_project, clock):
    other = make_project("other")
    ingest(other, [wire_event("opened", "2026-05-01T09:00:00Z", channel=CHANNEL_A)])

    response = post_events(api, [wire_event("clicked", "2026-05-01T09:00:00Z", channel=CHANNEL_A)])

    assert response.status_code == 200
    theirs, ours = Channel.objects.get(project=other), Channel.objects.get(project=project)
    assert theirs.external_id == ours.external_id == uuid.UUID(CHANNEL_A)
    assert theirs.pk != ours.pk
    assert get_report(api, channel=CHANNEL_A, **DAY).json()["data"] == [
        bucket("2026-05-01T00:00:00Z", clicks=1, unique_clicks=1)]


def test_user_agent_is_truncated_and_url_kept(api, clock):
    post_events(api, [wire_event("clicked", "2026-05-01T09:00:00Z", url="https://acme.example/a?b=c",
                                 userAgent="U" * 700)])

    event = MessageEvent.objects.get()
    assert (event.url, event.user_agent) == ("https://acme.example/a?b=c", "U" * 512)
    assert event.occurred_at == utc(2026, 5, 1, 9)


def test_occurred_at_with_an_offset_is_stored_and_bucketed_in_utc(api, clock):
    post_events(api, [wire_event("opened", "2026-05-02T01:30:00+02:00")])

    assert MessageEvent.objects.get().occurred_at == utc(2026, 5, 1, 23, 30)
    assert get_report(api, **DAY).json()["data"] == [bucket("2026-05-01T00:00:00Z", opens=1, unique_opens=1)]


# The service as the email flow calls it -----------------------------------------------------


def service_event(**overrides) -> dict:
    return {
        "id": f"svc-{uuid.uuid4()}",
        "type": "sent",
        "message_id": "email-1",
        "channel_id": uuid.UUID(CHANNEL_A),
        "from_address": "documents@engagement.localhost",
        "recipient": "Client@Example.org",
        "occurred_at": utc(2026, 5, 1, 9),
        "url": None,
        "user_agent": None,
        **overrides,
    }


def test_service_stores_one_message_for_the_events_of_one_message_id(project, clock):
    event = service_event()

    result = ingest_message_events(project=project, events=[event, service_event(type="delivered")])

    assert result.accepted == 2
    message = Message.objects.get()
    assert (message.client_message_id, message.recipient) == ("email-1", "client@example.org")
    assert message.events.count() == 2


def test_service_with_no_events_does_nothing(project):
    result = ingest_message_events(project=project, events=[])

    assert (result.accepted, result.duplicates) == (0, 0)


def test_default_channel_is_created_once_and_stable(project, make_project):
    first = default_channel_for(project=project)
    second = default_channel_for(project=project)
    other = default_channel_for(project=make_project("other"))

    assert first == second
    assert first.is_default and first.name == "Default" and first.external_id == first.id
    assert other != first
    assert Channel.objects.filter(project=project).count() == 1


def test_default_channel_can_be_used_as_an_event_channel(project, clock):
    channel = default_channel_for(project=project)

    ingest_message_events(project=project, events=[service_event(channel_id=channel.id)])

    assert Message.objects.get().channel == channel
    assert Channel.objects.filter(project=project).count() == 1


def test_channel_get_or_create_returns_the_same_channel(project):
    channel_id = uuid.UUID(CHANNEL_B)

    first = channel_get_or_create(project=project, channel_id=channel_id)
    second = channel_get_or_create(project=project, channel_id=channel_id)

    assert first == second and first.external_id == channel_id and first.project == project
    assert not first.is_default


def test_service_accepts_a_channel_id_given_as_text_and_truncates_a_long_user_agent(project, clock):
    ingest_message_events(project=project, events=[service_event(channel_id=CHANNEL_B, user_agent="U" * 600)])

    assert str(Message.objects.get().channel.external_id) == CHANNEL_B
    assert MessageEvent.objects.get().user_agent == "U" * 512


def test_deleting_a_project_removes_its_channels_messages_and_events(project, clock):
    ingest(project, [wire_event("opened", "2026-05-01T09:00:00Z")])

    project.delete()

    assert (Channel.objects.count(), Message.objects.count(), MessageEvent.objects.count()) == (0, 0, 0)
    assert not DailyRollup.objects.exists()


EMAIL_CORPUS = [
    "a@example.org", "A.B+c@Sub.Example.ORG", "user@localhost", "x@[127.0.0.1]", "x@[::1]", "x@[300.1.1.1]",
    "x@[not-an-ip]", '"quoted user"@example.org', '"bad\nquote"@example.org', "no-at-sign", "@example.org",
    "user@", "user@@example.org", "us er@example.org", "user@exa mple.org", "user@-example.org",
    "user@example-.org", "user@example", "user@example.c", "user@bücher.example", "üser@example.org",
    "user@xn--bcher-kva.example", "a" * 64 + "@example.org", "a@" + "b" * 320 + ".org", "user.@example.org",
    ".user@example.org", "us..er@example.org", "user@example.org.", "user@EXAMPLE.ORG", "a@b@example.org", "",
]


@pytest.mark.parametrize("address", EMAIL_CORPUS)
def test_email_validation_answers_as_djangos_email_validator(address):
    from django.core.exceptions import ValidationError
    from django.core.validators import EmailValidator

    from reports.validation import is_valid_email

    try:
        EmailValidator()(address)
        expected = True
    except ValidationError:
        expected = False
    assert is_valid_email(address) is expected


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the ids are made in SQL on PostgreSQL only")
def test_stored_messages_and_events_get_distinct_time_ordered_uuid7_ids(project):
    """The inserting statements make the ids: version 7, the statement's millisecond, distinct."""

    before = datetime.now(UTC).timestamp()
    for first in (0, 300):
        ingest(project, [wire_event("sent", "2026-05-01T08:00:00Z", recipient=f"r{i}@example.org")
                         for i in range(first, first + 300)])
    after = datetime.now(UTC).timestamp()

    for model in (Message, MessageEvent):
        ids = list(model.objects.filter(project=project).values_list("id", flat=True))
        assert len(ids) == len(set(ids)) == 600
        assert {(value.version, value.variant) for value in ids} == {(7, uuid.RFC_4122)}
        milliseconds = {value.int >> 80 for value in ids}
        assert all(int(before * 1000) - 1 <= ms <= int(after * 1000) + 1 for ms in milliseconds), milliseconds


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="reads PostgreSQL's EXPLAIN output (the plans production runs); SQLite's differs")
def test_a_batchs_delivery_lookup_reads_the_message_index_for_a_project_the_statistics_do_not_know(
        make_project, project):
    """A new project has no rows in the table's statistics until the next ANALYZE: the click-timing rule's
    lookup of stored deliveries must not depend on them (with the project in its condition it was planned
    as every event of the project against every message of the batch: seconds per batch)."""
    from reports.classification import deliveries_of

    older = make_project()
    ingest(older, [wire_event("delivered", "2026-04-01T09:00:00Z", recipient=f"r{n}@example.org")
                   for n in range(300)])
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {MessageEvent._meta.db_table}, {Message._meta.db_table}")
    ingest(project, [wire_event(kind, "2026-04-01T09:00:00Z", recipient=f"n{n}@example.org")
                     for n in range(300) for kind in ("delivered", "opened")])  # after the ANALYZE
    message_pks = list(Message.objects.filter(project=project).values_list("pk", flat=True)[:250])

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a test's small table is read whole otherwise
        plan = deliveries_of(message_pks).explain()

    # The message id index (on PostgreSQL each monthly partition's copy of it), never the project's time index.
    assert re.search(r"using reports_messageevent\w*message_id", plan), plan[:2000]
    assert "project_time" not in plan and "message_event_unique_per_project" not in plan, plan[:2000]
    assert len(list(deliveries_of(message_pks))) == 250
