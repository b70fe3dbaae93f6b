"""Contract sections 2.2 (the engagement summary) and 2.3 (partner events: validation, dedupe, tenancy)."""

import json
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from engagement_platform.ids import new_id
from renders.models import DedupeMark, EngagementEvent, Share
from renders.services import record_event
from tests.conftest import assert_envelope, partitions_listed

MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
EVENT_FIELDS = {"id", "eventType", "actorKind", "shareId", "sourceIp", "userAgent", "metadata", "createdAt"}
ZERO_COUNTS = {"viewed": 0, "downloaded": 0, "printed": 0, "email_opened": 0, "email_sent": 0,
               "share_created": 0, "share_revoked": 0}
SEND_JSON = "Send the body as JSON with Content-Type: application/json."
NOT_AN_OBJECT = "Expected a JSON object."
NOT_AN_OBJECT_OR_NULL = "Must be a JSON object or null."
TOO_BIG = "Must be at most 16384 bytes serialized."


def events_url(render) -> str:
    return f"/v1/renders/{render.id}/events"


def post_event(client, render, event_type="viewed", **headers):
    return client.post(events_url(render), {"eventType": event_type}, format="json", **headers)


def post_raw(client, render, raw, content_type="application/json"):
    return client.generic("POST", events_url(render), raw, content_type=content_type)


def recorded(response) -> bool:
    assert response.status_code == 200, response.content
    assert set(response.json()) == {"recorded"}
    return response.json()["recorded"]


def engagement(client, render) -> dict:
    response = client.get(f"/v1/renders/{render.id}/engagement")
    assert response.status_code == 200, response.content
    return response.json()


def assert_nothing_written():
    assert EngagementEvent.objects.count() == 0
    assert DedupeMark.objects.count() == 0


def invalid(field, *messages):
    return {"formErrors": [], "fieldErrors": {field: list(messages)}}


# 2.2 The summary -------------------------------------------------------------------------


def test_a_fresh_render_has_seven_zero_counts_and_nothing_recent(api, render):
    assert engagement(api, render) == {"counts": ZERO_COUNTS, "linkOpens": 0, "total": 0, "recent": []}


def test_counts_hold_every_event_type_and_total_is_their_sum(api, project, render):
    share = Share.objects.create(project=project, render=render)
    assert recorded(post_event(api, render, "viewed"))
    assert recorded(post_event(api, render, "downloaded"))
    assert recorded(post_event(api, render, "printed"))
    assert recorded(post_event(api, render, "printed", HTTP_X_FORWARDED_FOR="198.51.100.1"))
    for event_type in ("email_sent", "share_created", "share_revoked", "email_opened", "email_opened"):
        record_event(render=render, event_type=event_type, actor_kind="system", share=share)
    body = engagement(api, render)
    assert body["counts"] == {"viewed": 1, "downloaded": 1, "printed": 2, "email_opened": 2, "email_sent": 1,
                              "share_created": 1, "share_revoked": 1}
    assert body["total"] == 9 == EngagementEvent.objects.count()


def test_link_opens_counts_only_viewed_events_that_have_a_share(api, project, render):
    share = Share.objects.create(project=project, render=render)
    record_event(render=render, event_type="viewed", actor_kind="recipient", share=share, source_ip="192.0.2.1")
    record_event(render=render, event_type="downloaded", actor_kind="recipient", share=share, source_ip="192.0.2.1")
    record_event(render=render, event_type="printed", actor_kind="recipient", share=share, source_ip="192.0.2.1")
    record_event(render=render, event_type="email_opened", actor_kind="recipient", share=share)
    assert recorded(post_event(api, render, "viewed"))  # a partner view has no share
    body = engagement(api, render)
    assert body["counts"]["viewed"] == 2
    assert body["linkOpens"] == 1
    record_event(render=render, event_type="viewed", actor_kind="recipient", share=share, source_ip="192.0.2.2")
    assert engagement(api, render)["linkOpens"] == 2


def test_each_recent_event_has_exactly_the_eight_fields(api, project, render, clock):
    share = Share.objects.create(project=project, render=render)
    assert recorded(api.post(events_url(render), {"eventType": "printed", "metadata": {"page": 3}}, format="json",
                             HTTP_X_FORWARDED_FOR="203.0.113.7", HTTP_USER_AGENT="Partner/1.0"))
    clock.shift(timedelta(milliseconds=1500))
    record_event(render=render, event_type="viewed", actor_kind="recipient", share=share, source_ip="2001:db8::1")
    recipient, partner = engagement(api, render)["recent"]
    for item in (recipient, partner):
        assert set(item) == EVENT_FIELDS
        assert MS_Z.match(item["createdAt"])
    events = {event.event_type: event for event in EngagementEvent.objects.all()}
    assert partner == {
        "id": str(events["printed"].id),
        "eventType": "printed",
        "actorKind": "partner",
        "shareId": None,
        "sourceIp": "203.0.113.7",
        "userAgent": "Partner/1.0",
        "metadata": {"page": 3},
        "createdAt": "2026-05-03T10:20:00.000Z",
    }
    assert recipient == {
        "id": str(events["viewed"].id),
        "eventType": "viewed",
        "actorKind": "recipient",
        "shareId": str(share.id),
        "sourceIp": "2001:db8::1",
        "userAgent": None,
        "metadata": None,
        "createdAt": "2026-05-03T10:20:01.500Z",
    }


def test_recent_holds_the_25_newest_events_newest_first(api, render, clock):
    ids = []
    for index in range(30):
        assert recorded(post_event(api, render, HTTP_X_FORWARDED_FOR=f"198.51.100.{index}"))
        ids.append(str(EngagementEvent.objects.order_by("-created_at", "-id").values_list("id", flat=True)[0]))
        clock.shift(timedelta(seconds=1))
    body = engagement(api, render)
    assert [item["id"] for item in body["recent"]] == ids[::-1][:25]
    assert body["counts"]["viewed"] == body["total"] == 30


def test_recent_breaks_timestamp_ties_by_id_newest_first(api, render, clock):
    created = [
        record_event(render=render, event_type="viewed", actor_kind="partner", source_ip=f"192.0.2.{index}").event
        for index in range(30)
    ]
    assert len({event.created_at for event in created}) == 1
    newest_first = sorted((str(event.id) for event in created), reverse=True)
    assert newest_first == [str(event.id) for event in reversed(created)]  # UUIDv7 ids grow with creation
    assert [item["id"] for item in engagement(api, render)["recent"]] == newest_first[:25]


def test_the_summary_costs_the_same_queries_whatever_the_number_of_events(api, render):
    assert recorded(post_event(api, render))
    engagement(api, render)
    with CaptureQueriesContext(connection) as few:
        engagement(api, render)
    for index in range(40):
        record_event(render=render, event_type="email_sent", actor_kind="partner", source_ip=f"192.0.2.{index}")
    with CaptureQueriesContext(connection) as many:
        assert engagement(api, render)["total"] == 41
    assert len(many.captured_queries) == len(few.captured_queries)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement paths are PostgreSQL's")
def test_the_hot_paths_are_one_statement_each_once_the_key_is_known(shared_cache, api, render):
    """On Redis (production), key and rate limit come from the worker's kept keys and one Redis call: the
    database sees one statement. (Without a shared cache the key is read on every request: one more.)"""
    assert recorded(post_event(api, render))
    partitions_listed()
    with CaptureQueriesContext(connection) as posting:
        assert recorded(post_event(api, render, "printed"))
    with CaptureQueriesContext(connection) as reading:
        assert engagement(api, render)["counts"]["printed"] == 1
    statements = [[q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]  # the test's transaction
                  for queries in (posting, reading)]
    assert [len(sqls) for sqls in statements] == [1, 1], statements


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"eventType": "nope"}', b""])
def test_an_unknown_or_foreign_render_is_not_found_before_a_bad_body(api, make_project, make_render, body):
    foreign = make_render(make_project())
    for render_id in (new_id(), foreign.id, "not-an-id"):
        response = api.generic("POST", f"/v1/renders/{render_id}/events", body, content_type="application/json")
        assert_envelope(response, 404, "not_found", "No render with that id in this project.")
    assert EngagementEvent.objects.count() == 0 and DedupeMark.objects.count() == 0


def test_a_valid_event_for_an_unknown_or_foreign_render_writes_nothing(api, make_project, make_render):
    foreign = make_render(make_project())
    for render_id in (new_id(), foreign.id):
        response = api.post(f"/v1/renders/{render_id}/events", {"eventType": "viewed"}, format="json")
        assert_envelope(response, 404, "not_found", "No render with that id in this project.")
    assert EngagementEvent.objects.count() == 0 and DedupeMark.objects.count() == 0


def test_the_summary_counts_only_its_own_render(api, project, render, make_render):
    other = make_render(project)
    assert recorded(post_event(api, other))
    assert engagement(api, render) == {"counts": ZERO_COUNTS, "linkOpens": 0, "total": 0, "recent": []}


# 2.3 Recording partner events ------------------------------------------------------------


def test_a_partner_event_is_stored_with_partner_actor_no_share_and_the_request_details(api, render, clock):
    assert recorded(api.post(events_url(render), {"eventType": "downloaded"}, format="json",
                             HTTP_X_FORWARDED_FOR="203.0.113.9", HTTP_USER_AGENT="Agent/2"))
    event = EngagementEvent.objects.get()
    assert (event.event_type, event.actor_kind, event.share_id) == ("downloaded", "partner", None)
    assert (event.source_ip, event.user_agent, event.metadata) == ("203.0.113.9", "Agent/2", None)
    assert event.project_id == render.project_id and event.render_id == render.id


@pytest.mark.parametrize(
    "metadata",
    [
        {"order": {"id": "A-17", "lines": [{"sku": "x", "qty": 2, "price": 9.99}, None, True, False]}},
        {"greeting": "héllo wörld", "日本語": "テキスト", "emoji": "🎉👍🏽", "rtl": "שלום", "escaped": "quote \" \\ /"},
        {"big": 2**70, "negative": -17, "float": 0.1, "tiny": 1e-7, "zero": 0, "empty": {}, "list": []},
        {"deep": {"a": {"b": {"c": {"d": {"e": {"f": [[[["bottom"]]]]}}}}}}},
        {"nothing": None},
        {},
        None,
    ],
)
def test_metadata_is_stored_and_answered_verbatim(api, render, metadata):
    assert recorded(api.post(events_url(render), {"eventType": "viewed", "metadata": metadata}, format="json"))
    assert EngagementEvent.objects.get().metadata == metadata
    assert engagement(api, render)["recent"][0]["metadata"] == metadata


def test_metadata_may_be_omitted(api, render):
    assert recorded(post_event(api, render))
    assert engagement(api, render)["recent"][0]["metadata"] is None


def test_metadata_of_exactly_16_kib_serialized_is_accepted(api, render):
    metadata = {"k": "x" * (16 * 1024 - len('{"k":""}'))}
    assert len(json.dumps(metadata, separators=(",", ":"))) == 16 * 1024
    assert recorded(api.post(events_url(render), {"eventType": "viewed", "metadata": metadata}, format="json"))


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ([1, 2, 3], NOT_AN_OBJECT_OR_NULL),
        ("a string", NOT_AN_OBJECT_OR_NULL),
        (42, NOT_AN_OBJECT_OR_NULL),
        (True, NOT_AN_OBJECT_OR_NULL),
        ({"k": "x" * (16 * 1024 - len('{"k":""}') + 1)}, TOO_BIG),
        ({"k": "é" * 8190}, TOO_BIG),  # 16388 bytes in UTF-8
        ({"k": "nul \x00 inside"}, "Must not contain the character U+0000."),
        ({"nul\x00key": 1}, "Must not contain the character U+0000."),
    ],
)
def test_bad_metadata_is_invalid_request_on_the_metadata_field(api, render, metadata, message):
    response = api.post(events_url(render), {"eventType": "viewed", "metadata": metadata}, format="json")
    assert_envelope(response, 400, "invalid_request", "Invalid value for: metadata.",
                    issues=invalid("metadata", message))
    assert_nothing_written()


VALID_EVENT_TYPES = 'one of "viewed", "downloaded", "printed"'


@pytest.mark.parametrize(
    ("event_type", "message"),
    [
        ("email_sent", f'"email_sent" is not a valid choice: expected {VALID_EVENT_TYPES}.'),
        ("email_opened", f'"email_opened" is not a valid choice: expected {VALID_EVENT_TYPES}.'),
        ("share_created", f'"share_created" is not a valid choice: expected {VALID_EVENT_TYPES}.'),
        ("share_revoked", f'"share_revoked" is not a valid choice: expected {VALID_EVENT_TYPES}.'),
        ("VIEWED", f'"VIEWED" is not a valid choice: expected {VALID_EVENT_TYPES}.'),
        ("", f'"" is not a valid choice: expected {VALID_EVENT_TYPES}.'),
        (5, f'"5" is not a valid choice: expected {VALID_EVENT_TYPES}.'),
        (None, f"May not be null: expected {VALID_EVENT_TYPES}."),
    ],
)
def test_a_bad_event_type_is_invalid_request_listing_the_valid_values(api, render, event_type, message):
    response = api.post(events_url(render), {"eventType": event_type}, format="json")
    assert_envelope(response, 400, "invalid_request", "Invalid value for: eventType.",
                    issues=invalid("eventType", message))
    assert_nothing_written()


def test_a_missing_event_type_is_invalid_request_listing_the_valid_values(api, render):
    response = api.post(events_url(render), {"metadata": {}}, format="json")
    assert_envelope(response, 400, "invalid_request", "Invalid value for: eventType.",
                    issues=invalid("eventType", f"This field is required: {VALID_EVENT_TYPES}."))
    assert_nothing_written()


def test_unknown_keys_are_invalid_request_naming_each_key(api, render):
    body = {"eventType": "viewed", "shareId": str(new_id()), "actorKind": "recipient"}
    response = api.post(events_url(render), body, format="json")
    assert_envelope(response, 400, "invalid_request", "Invalid value for: actorKind, shareId.",
                    issues={"formErrors": [], "fieldErrors": {"actorKind": ["Unknown field."],
                                                              "shareId": ["Unknown field."]}})
    assert_nothing_written()


@pytest.mark.parametrize("raw", [b"[]", b'[{"eventType": "viewed"}]', b"5", b'"viewed"', b"true", b"null"])
def test_a_json_body_that_is_not_an_object_is_invalid_request(api, render, raw):
    response = post_raw(api, render, raw)
    assert_envelope(response, 400, "invalid_request", NOT_AN_OBJECT,
                    issues={"formErrors": [NOT_AN_OBJECT], "fieldErrors": {}})
    assert_nothing_written()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "The request body is not valid JSON: Expecting property name enclosed in double quotes: "
               "line 1 column 2 (char 1)."),
        (b"eventType=viewed", "The request body is not valid JSON: Expecting value: line 1 column 1 (char 0)."),
        (b'{"eventType": "viewed",}', None),
        (b'{"eventType": "viewed", "metadata": {"n": NaN}}',
         "The request body is not valid JSON: NaN is not valid JSON."),
        (b"\xff\xfe{}", "The request body is not valid JSON: the body is not valid UTF-8."),
        (b'{"eventType": "viewed", "metadata": {"k": "\xc3\x28"}}',
         "The request body is not valid JSON: the body is not valid UTF-8."),
        (b'{"eventType": "viewed", "metadata": {"k": "\\ud800"}}',
         "The request body is not valid JSON: a string holds an unpaired UTF-16 surrogate escape."),
        (b"[" * 60_000, "The request body is not valid JSON: the JSON is nested too deeply."),
        (b'{"eventType": "viewed", "metadata": ' + b'{"a": ' * 64 + b"1" + b"}" * 65,
         "The request body is not valid JSON: the JSON is nested deeper than 64 levels."),
    ],
)
def test_a_body_that_is_not_json_is_invalid_json(api, render, raw, message):
    assert_envelope(post_raw(api, render, raw), 400, "invalid_json", message)
    assert_nothing_written()


def test_metadata_nested_right_up_to_the_depth_limit_is_kept(api, render):
    metadata = 1
    for _ in range(63):  # with the body object around it: 64 levels
        metadata = {"a": metadata}
    assert recorded(api.post(events_url(render), {"eventType": "viewed", "metadata": metadata}, format="json"))
    assert engagement(api, render)["recent"][0]["metadata"] == metadata


def test_an_empty_body_is_invalid_json(api, render):
    assert_envelope(post_raw(api, render, b""), 400, "invalid_json", "The request body is empty; send a JSON object.")
    assert_nothing_written()


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/form-data; boundary=x", ""],
)
def test_a_non_json_content_type_is_invalid_json(api, render, content_type):
    response = post_raw(api, render, b'{"eventType": "viewed"}', content_type=content_type)
    assert_envelope(response, 400, "invalid_json", SEND_JSON)
    assert_nothing_written()


def test_a_body_over_64_kib_is_payload_too_large(api, render):
    body = b'{"eventType": "viewed"}'
    assert_envelope(post_raw(api, render, body + b" " * (64 * 1024 - len(body) + 1)), 413, "payload_too_large",
                    "The request body exceeds the limit of 65536 bytes.")
    assert_envelope(post_raw(api, render, b"[" * 100_000), 413, "payload_too_large",
                    "The request body exceeds the limit of 65536 bytes.")
    assert_nothing_written()
    assert recorded(post_raw(api, render, body + b" " * (64 * 1024 - len(body))))


def test_the_user_agent_is_truncated_to_512_characters(api, render):
    assert recorded(post_event(api, render, "viewed", HTTP_USER_AGENT="é" * 600))
    assert recorded(post_event(api, render, "printed", HTTP_USER_AGENT="a\x00b"))
    stored = dict(EngagementEvent.objects.values_list("event_type", "user_agent"))
    assert stored == {"viewed": "é" * 512, "printed": "ab"}
    recent = engagement(api, render)["recent"]
    assert {item["eventType"]: item["userAgent"] for item in recent} == stored


# 2.3 Dedupe ------------------------------------------------------------------------------


def test_duplicate_view_within_five_minutes_is_not_recorded(api, render):
    assert recorded(post_event(api, render)) is True
    assert recorded(post_event(api, render)) is False
    assert EngagementEvent.objects.count() == 1
    assert engagement(api, render)["counts"]["viewed"] == 1


@pytest.mark.parametrize("event_type", ["viewed", "downloaded", "printed"])
def test_each_partner_event_type_is_deduped_on_its_own(api, render, event_type):
    others = {"viewed", "downloaded", "printed"} - {event_type}
    assert recorded(post_event(api, render, event_type)) is True
    assert recorded(post_event(api, render, event_type)) is False
    for other in sorted(others):
        assert recorded(post_event(api, render, other)) is True
    assert engagement(api, render)["counts"][event_type] == 1


def test_a_different_first_hop_of_x_forwarded_for_is_a_different_event(api, render):
    assert recorded(post_event(api, render, HTTP_X_FORWARDED_FOR="203.0.113.1, 10.0.0.1")) is True
    assert recorded(post_event(api, render, HTTP_X_FORWARDED_FOR="203.0.113.2, 10.0.0.1")) is True
    assert recorded(post_event(api, render, HTTP_X_FORWARDED_FOR=" 203.0.113.1 , 10.9.9.9")) is False
    assert sorted(EngagementEvent.objects.values_list("source_ip", flat=True)) == ["203.0.113.1", "203.0.113.2"]


def test_x_real_ip_is_the_source_when_there_is_no_x_forwarded_for(api, render):
    assert recorded(post_event(api, render, HTTP_X_REAL_IP="198.51.100.1")) is True
    assert recorded(post_event(api, render, HTTP_X_REAL_IP="198.51.100.2")) is True
    assert recorded(post_event(api, render, HTTP_X_REAL_IP="198.51.100.1")) is False
    assert recorded(post_event(api, render, HTTP_X_REAL_IP="2001:db8::5")) is True
    assert sorted(EngagementEvent.objects.values_list("source_ip", flat=True)) == [
        "198.51.100.1", "198.51.100.2", "2001:db8::5"]


def test_x_forwarded_for_wins_over_x_real_ip(api, render):
    assert recorded(post_event(api, render, HTTP_X_FORWARDED_FOR="203.0.113.5", HTTP_X_REAL_IP="198.51.100.5"))
    assert EngagementEvent.objects.get().source_ip == "203.0.113.5"


@pytest.mark.parametrize("bad", ["not-an-ip", "unknown", "999.1.1.1", "203.0.113.1:443", "fe80::1%eth0", "", " "])
def test_an_invalid_x_forwarded_for_is_skipped_for_x_real_ip_then_the_peer(api, render, make_render, project, bad):
    assert recorded(post_event(api, render, HTTP_X_FORWARDED_FOR=f"{bad}, 203.0.113.99", HTTP_X_REAL_IP="198.51.100.7"))
    assert EngagementEvent.objects.get().source_ip == "198.51.100.7"
    other = make_render(project)
    assert recorded(post_event(api, other, HTTP_X_FORWARDED_FOR=bad, HTTP_X_REAL_IP="not an ip either"))
    assert EngagementEvent.objects.get(render=other).source_ip == "127.0.0.1"  # the test client's peer
    # the fallback address is the dedupe key: a plain request from the same peer is a duplicate
    assert recorded(post_event(api, other)) is False


def test_a_different_share_is_a_different_event(api, project, render):
    first = Share.objects.create(project=project, render=render)
    second = Share.objects.create(project=project, render=render)

    def view(share):
        return record_event(render=render, event_type="viewed", actor_kind="recipient", share=share,
                            source_ip="127.0.0.1").recorded

    assert view(first) is True
    assert view(second) is True
    assert recorded(post_event(api, render)) is True  # no share (null) is a value of its own
    assert view(first) is False
    assert view(second) is False
    assert recorded(post_event(api, render)) is False
    assert engagement(api, render)["counts"]["viewed"] == 3


def test_a_different_render_is_a_different_event(api, project, render, make_render):
    other = make_render(project)
    assert recorded(post_event(api, render)) is True
    assert recorded(post_event(api, other)) is True


def test_events_outside_viewed_downloaded_printed_are_never_deduped(render):
    for _ in range(3):
        result = record_event(render=render, event_type="email_sent", actor_kind="partner", source_ip="192.0.2.1")
        assert result.recorded
    assert EngagementEvent.objects.count() == 3


def test_a_duplicate_is_recorded_again_once_five_minutes_have_passed(api, render, clock):
    assert recorded(post_event(api, render)) is True
    clock.shift(timedelta(minutes=4, seconds=59))
    assert recorded(post_event(api, render)) is False
    clock.shift(timedelta(seconds=1))
    assert recorded(post_event(api, render)) is True
    # the window runs from the last recorded event, not from the last attempt
    clock.shift(timedelta(minutes=4, seconds=59, milliseconds=999))
    assert recorded(post_event(api, render)) is False
    clock.shift(timedelta(milliseconds=1))
    assert recorded(post_event(api, render)) is True
    body = engagement(api, render)
    assert body["counts"]["viewed"] == 3 == len(body["recent"])
    assert [item["createdAt"] for item in body["recent"]] == [
        "2026-05-03T10:30:00.000Z", "2026-05-03T10:25:00.000Z", "2026-05-03T10:20:00.000Z"]


# Tenant isolation ------------------------------------------------------------------------


def _without_request_id(response):
    body = response.json()
    body["error"].pop("requestId")
    return body


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("get", "", None),
        ("get", "/download", None),
        ("get", "/engagement", None),
        ("post", "/events", {"eventType": "viewed"}),
        ("post", "/events", {"eventType": "not even valid"}),
    ],
)
def test_another_projects_render_answers_exactly_like_a_random_id(api, make_project, make_render, method, suffix,
                                                                  body):
    foreign = make_render(make_project())
    record_event(render=foreign, event_type="viewed", actor_kind="partner", source_ip="192.0.2.1")
    kwargs = {"data": body, "format": "json"} if body is not None else {}

    def call(render_id):
        return getattr(api, method)(f"/v1/renders/{render_id}{suffix}", **kwargs)

    foreign_response, random_response = call(foreign.id), call(new_id())
    assert foreign_response.status_code == random_response.status_code == 404
    assert _without_request_id(foreign_response) == _without_request_id(random_response)
    assert foreign_response["Content-Type"] == random_response["Content-Type"]
    assert str(foreign.id) not in foreign_response.content.decode()
    assert EngagementEvent.objects.count() == 1 and DedupeMark.objects.count() == 1  # only the foreign setup
