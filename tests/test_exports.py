"""CONTRACT 9: exports. The report as CSV, a render's event log and the raw message events as NDJSON or CSV.

The clock is frozen at 2026-05-03T10:20:00Z (a Sunday); the default plan keeps 90 days.
"""

import csv
import io
import json
import time
from datetime import timedelta

import orjson
import pytest
from django.core.management import call_command
from django.db import connection

from apikeys.models import Scope
from engagement_platform import exports
from engagement_platform.clock import now
from renders.services import record_event
from tests.conftest import assert_envelope
from tests.sharing import mint
from tests.test_reports_helpers import (
    CHANNEL_A,
    CHANNEL_B,
    EVENTS_URL,
    OTHER_SENDER,
    delivered_message,
    get_report,
    ingest,
    wire_event,
)
from tests.test_traffic_rules import CHROME, SLACKBOT

pytestmark = pytest.mark.django_db

WIDE = {"from_": "2026-03-01T00:00:00Z", "to": "2026-05-01T00:00:00Z"}
REPORT_HEADER = "period,sent,delivered,opens,unique_opens,clicks,unique_clicks,open_rate,click_rate"
MESSAGE_KEYS = ["id", "type", "messageId", "channel", "from", "recipient", "occurredAt", "url", "userAgent",
                "traffic", "machineReason"]
RENDER_KEYS = ["id", "renderId", "eventType", "actorKind", "shareId", "sourceIp", "userAgent", "metadata",
               "createdAt", "traffic", "machineReason"]


def body_of(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def csv_rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body_of(response).decode("utf-8"))))


def ndjson_lines(response) -> list[dict]:
    text = body_of(response)
    assert text == b"" or text.endswith(b"\n")
    return [json.loads(line) for line in text.splitlines()]


def assert_attachment(response, content_type: str, extension: str):
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment; filename=") and disposition.endswith(f'.{extension}"')


def problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, body_of(response)
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    return body


@pytest.fixture
def traffic(project, clock):
    """Two channels, two sending domains, three weeks across a month boundary; returns the wire events."""
    events = [
        *delivered_message("2026-03-31T09:00:00Z", recipient="alice@example.org", message="m1"),
        wire_event("opened", "2026-03-31T10:00:00Z", recipient="alice@example.org", message="m1",
                   userAgent="Mozilla/5.0 (Macintosh)"),
        *delivered_message("2026-04-01T08:00:00Z", recipient="bob@example.org", message="m2", channel=CHANNEL_B),
        wire_event("opened", "2026-04-01T08:30:00.250000Z", recipient="bob@example.org", message="m2",
                   channel=CHANNEL_B),
        wire_event("clicked", "2026-04-01T09:00:00Z", recipient="bob@example.org", message="m2", channel=CHANNEL_B,
                   url="https://acme.example/offer?a=1,b=\"2\""),
        wire_event("opened", "2026-04-01T12:00:00Z", recipient="alice@example.org", message="m1", machine=True),
        *delivered_message("2026-04-02T07:00:00Z", recipient="carol@example.org", message="m3",
                           sender=OTHER_SENDER),
        wire_event("clicked", "2026-04-02T07:30:00Z", recipient="carol@example.org", message="m3",
                   sender=OTHER_SENDER, url="https://other.example/", machine=True),
        *delivered_message("2026-04-06T07:00:00Z", recipient="alice@example.org", message="m4"),
        wire_event("opened", "2026-04-06T23:59:59Z", recipient="alice@example.org", message="m4"),
        wire_event("opened", "2026-04-07T00:00:00Z", recipient="dave@example.org", message="m5",
                   sender=OTHER_SENDER, channel=CHANNEL_B),
    ]
    assert ingest(project, events).accepted == len(events)
    return events


# 9 / 3.1: the report as CSV ---------------------------------------------------------------------------------


@pytest.mark.parametrize("group_by", ["day", "week", "month"])
def test_the_report_as_csv_has_the_header_row_and_the_json_buckets_values(api, traffic, group_by):
    expected = get_report(api, group_by=group_by, **WIDE).json()["data"]

    response = get_report(api, group_by=group_by, format="csv", **WIDE)

    assert_attachment(response, "text/csv; charset=utf-8", "csv")
    header, *rows = csv_rows(response)
    assert ",".join(header) == REPORT_HEADER
    assert len(rows) == len(expected) > 0
    assert rows == [[str(bucket[name]) for name in header] for bucket in expected]
    assert body_of(response).endswith(b"\n") and b"\r" not in body_of(response)


@pytest.mark.parametrize("query", [{"channel": CHANNEL_B}, {"identity": "other.example"},
                                   {"identity": "News@ACME.example", "channel": CHANNEL_A}])
def test_the_csv_report_applies_the_same_filters(api, traffic, query):
    expected = get_report(api, group_by="week", **query, **WIDE).json()["data"]
    _header, *rows = csv_rows(get_report(api, group_by="week", format="csv", **query, **WIDE))
    assert [row[0] for row in rows] == [bucket["period"] for bucket in expected]
    assert [int(row[1]) for row in rows] == [bucket["sent"] for bucket in expected]
    assert [float(row[8]) for row in rows] == [bucket["click_rate"] for bucket in expected]


def test_accept_text_csv_asks_for_csv_and_an_explicit_format_wins(api, traffic):
    by_accept = api.get("/v1/reports/engagement", {"from": WIDE["from_"], "to": WIDE["to"]}, HTTP_ACCEPT="text/csv")
    assert_attachment(by_accept, "text/csv; charset=utf-8", "csv")
    assert body_of(by_accept) == body_of(get_report(api, format="csv", **WIDE))

    as_json = api.get("/v1/reports/engagement", {"from": WIDE["from_"], "to": WIDE["to"], "format": "json"},
                      HTTP_ACCEPT="text/csv")
    assert as_json["Content-Type"] == "application/json"
    assert "Content-Disposition" not in as_json


def test_the_default_json_body_is_unchanged_by_the_format_parameter(api, traffic):
    plain = get_report(api, group_by="week", **WIDE)
    explicit = get_report(api, group_by="week", format="json", **WIDE)
    assert plain["Content-Type"] == explicit["Content-Type"] == "application/json"
    assert plain.content == explicit.content
    assert "Content-Disposition" not in plain


def test_an_empty_csv_report_is_its_header_row(api, clock):
    response = get_report(api, format="csv", **WIDE)
    assert body_of(response) == (REPORT_HEADER + "\n").encode()


def test_an_unknown_report_format_is_a_422_naming_format_beside_the_other_bad_fields(api):
    body = problem(get_report(api, format="xml", group_by="year"), 422, "validation_failed")
    assert [item["field"] for item in body["errors"]] == ["group_by", "format"]
    assert "json, csv" in body["errors"][1]["reason"]


def test_csv_report_errors_are_still_problem_details(api, clock):
    problem(get_report(api, format="csv", from_="yesterday"), 422, "validation_failed")
    body = problem(get_report(api, format="csv", from_="2025-01-01T00:00:00Z"), 403, "retention_exceeded")
    assert body["retention_days"] == 90


# 9: raw message events ---------------------------------------------------------------------------------------


def export_messages(client, **params):
    if "from_" in params:
        params["from"] = params.pop("from_")
    return client.get(EVENTS_URL, params)


def as_exported(event: dict) -> dict:
    """A wire event as the export writes it back: every key, null where absent, the recipient lower-cased, its
    traffic class (the fixture's machine events are marked `"machine": true`)."""
    line = {key: event.get(key) for key in MESSAGE_KEYS}
    line["recipient"] = line["recipient"].lower()
    machine = event.get("machine") is True
    line["traffic"], line["machineReason"] = ("machine", "client") if machine else ("human", None)
    return line


def test_the_message_export_is_the_ingested_events_oldest_first_as_ndjson(api, traffic):
    response = export_messages(api, **WIDE)

    assert_attachment(response, "application/x-ndjson", "ndjson")
    lines = ndjson_lines(response)
    assert all(list(line) == MESSAGE_KEYS for line in lines)
    expected = sorted(traffic, key=lambda event: event["occurredAt"].replace("Z", ".000000Z")[:27])
    assert [line["id"] for line in lines] == [event["id"] for event in expected]
    assert lines == [as_exported(event) for event in expected]
    assert "2026-04-01T08:30:00.250000Z" in {line["occurredAt"] for line in lines}


def test_the_message_export_window_is_from_inclusive_to_exclusive(api, traffic):
    lines = ndjson_lines(export_messages(api, from_="2026-04-01T08:00:00Z", to="2026-04-06T23:59:59Z"))
    times = [line["occurredAt"] for line in lines]
    assert times[0] == "2026-04-01T08:00:00Z" and "2026-04-06T23:59:59Z" not in times
    assert len(lines) == len([e for e in traffic if "2026-04-01T08:00:00Z" <= e["occurredAt"] < "2026-04-06T23:59:59Z"])


def test_the_message_export_defaults_to_the_last_30_days(api, project, clock):
    events = [wire_event("sent", "2026-04-03T10:19:59Z"), wire_event("sent", "2026-04-03T10:20:00Z"),
              wire_event("sent", "2026-05-03T10:19:59Z")]
    ingest(project, events)
    assert [line["id"] for line in ndjson_lines(export_messages(api))] == [e["id"] for e in events[1:]]


def test_the_message_export_as_csv_has_a_header_and_empty_cells_for_null(api, traffic):
    response = export_messages(api, format="csv", **WIDE)

    assert_attachment(response, "text/csv; charset=utf-8", "csv")
    header, *rows = csv_rows(response)
    assert header == MESSAGE_KEYS
    by_id = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    click = next(e for e in traffic if e["type"] == "clicked" and e["channel"] == CHANNEL_B)
    assert by_id[click["id"]]["url"] == click["url"]
    assert by_id[click["id"]]["userAgent"] == ""
    assert [row[0] for row in rows] == [line["id"] for line in ndjson_lines(export_messages(api, **WIDE))]


@pytest.mark.parametrize(("query", "fields"), [
    ({"format": "json"}, ["format"]),
    ({"format": "xml", "from_": "May"}, ["from", "format"]),
    ({"from_": "2026-04-02T00:00:00Z", "to": "2026-04-01T00:00:00Z"}, ["from"]),
    ({"to": "2026-04-01"}, ["to"]),
])
def test_bad_message_export_parameters_are_422_with_one_item_per_field(api, clock, query, fields):
    body = problem(export_messages(api, **query), 422, "validation_failed")
    assert [item["field"] for item in body["errors"]] == fields


def test_the_message_export_refuses_a_window_past_retention(api, clock):
    body = problem(export_messages(api, from_="2026-01-01T00:00:00Z"), 403, "retention_exceeded")
    assert body["retention_days"] == 90


def test_the_message_export_needs_reports_view_and_ingestion_keeps_needing_messages_write(
        project, make_key, make_client, traffic):
    writer = make_client(make_key(project, scopes=[Scope.MESSAGES_WRITE]).raw_key)
    body = problem(export_messages(writer, **WIDE), 403, "insufficient_scope")
    assert body["scope"] == "reports.view"

    reader = make_client(make_key(project, scopes=[Scope.REPORTS_VIEW]).raw_key)
    assert len(ndjson_lines(export_messages(reader, **WIDE))) == len(traffic)
    problem(reader.post(EVENTS_URL, {"events": [wire_event("sent", "2026-04-01T00:00:00Z")]}, format="json"),
            403, "insufficient_scope")


def test_the_message_export_holds_only_the_keys_project(api, traffic, make_project, make_key, make_client):
    other = make_project("Other")
    ingest(other, [wire_event("sent", "2026-04-01T00:00:00Z", event_id="theirs")])
    theirs = make_client(make_key(other).raw_key)

    assert [line["id"] for line in ndjson_lines(export_messages(theirs, **WIDE))] == ["theirs"]
    assert "theirs" not in {line["id"] for line in ndjson_lines(export_messages(api, **WIDE))}


# 9 / 5: an export backfilled into another project gives the same report ---------------------------------------


REPORT_QUERIES = [
    {"group_by": group_by, **filters}
    for group_by in ("day", "week", "month")
    for filters in ({}, {"channel": CHANNEL_A}, {"channel": CHANNEL_B}, {"identity": "acme.example"},
                    {"identity": "alerts@other.example", "channel": CHANNEL_B}, {"traffic": "human"},
                    {"traffic": "machine"}, {"unique": "exact"}, {"traffic": "human", "unique": "exact"})
] + [{"group_by": "day", "from_": "2026-04-01T08:30:00Z", "to": "2026-04-06T12:00:00Z"}]


@pytest.mark.django_db(transaction=True)  # the backfill stores on connections of its own (PostgreSQL)
def test_an_export_backfilled_into_another_project_gives_it_the_same_report(
        api, traffic, make_project, make_key, make_client, tmp_path):
    export = tmp_path / "a.ndjson"
    export.write_bytes(body_of(export_messages(api, **WIDE)))
    target = make_project("Target")
    out = io.StringIO()
    call_command("backfill_message_events", "--project", str(target.pk), str(export), stdout=out,
                 stderr=io.StringIO())
    assert f"accepted {len(traffic)}" in out.getvalue()
    theirs = make_client(make_key(target).raw_key)

    for query in REPORT_QUERIES:
        window = {} if "from_" in query else WIDE
        mine = get_report(api, **window, **query)
        assert mine.status_code == 200 and mine.json()["data"], query
        assert get_report(theirs, **window, **query).content == mine.content, query
        assert body_of(get_report(theirs, format="csv", **window, **query)) == body_of(
            get_report(api, format="csv", **window, **query))
    assert body_of(export_messages(theirs, **WIDE)) == export.read_bytes()


# 9 / 2: the render event export ---------------------------------------------------------------------------------


def render_events(client, render, **params):
    return client.get(f"/v1/renders/{render.id}/events", params)


@pytest.fixture
def history(api, render):
    """Partner events with and without metadata, share-page views from a person and a link previewer."""
    share = render.shares.get(pk=mint(api, render, label="a")["id"])
    at = now() - timedelta(hours=1)
    record_event(render=render, event_type="viewed", actor_kind="partner", source_ip="198.51.100.1",
                 user_agent=CHROME, metadata={"source": "crm", "note": "a,\"b\"\n", "n": 1.5},
                 at=at)
    record_event(render=render, event_type="downloaded", actor_kind="partner", source_ip=None, user_agent=None,
                 at=at + timedelta(seconds=1))
    for index, agent in enumerate((CHROME, SLACKBOT, CHROME)):
        record_event(render=render, event_type="viewed", actor_kind="recipient", share=share,
                     source_ip=f"203.0.113.{index}", user_agent=agent, request_purpose="direct",
                     at=at + timedelta(seconds=2 + index))
    return share


def test_the_render_event_export_is_the_event_log_oldest_first_as_backfill_lines(api, render, history):
    page = render_events(api, render, limit=100).json()["data"]

    response = render_events(api, render, format="ndjson")

    assert_attachment(response, "application/x-ndjson", "ndjson")
    lines = ndjson_lines(response)
    assert all(list(line) == RENDER_KEYS for line in lines)
    assert lines == [{**event, "renderId": str(render.id)} for event in reversed(page)]
    assert {line["traffic"] for line in lines} == {"human", "machine"}
    assert {line["machineReason"] for line in lines} == {None, "bot"}


def test_the_render_event_export_applies_the_event_log_filters(api, render, history):
    lines = ndjson_lines(render_events(api, render, format="ndjson", traffic="human", eventType="viewed",
                                       shareId=str(history.pk)))
    assert len(lines) == 2
    assert all(line["traffic"] == "human" and line["shareId"] == str(history.pk) for line in lines)
    _header, *partner_rows = csv_rows(render_events(api, render, format="csv", actorKind="partner"))
    assert [row[2] for row in partner_rows] == ["viewed", "downloaded", "share_created"]


def test_the_render_event_export_as_csv_writes_metadata_as_json_text_and_null_as_empty(api, render, history):
    response = render_events(api, render, format="csv", actorKind="partner")

    assert_attachment(response, "text/csv; charset=utf-8", "csv")
    header, *rows = csv_rows(response)
    assert header == RENDER_KEYS
    first, second, _share_created = (dict(zip(header, row, strict=True)) for row in rows)
    assert json.loads(first["metadata"]) == {"source": "crm", "note": "a,\"b\"\n", "n": 1.5}
    assert second["metadata"] == second["sourceIp"] == second["userAgent"] == second["shareId"] == ""
    assert second["machineReason"] == "" and second["traffic"] == "human"


@pytest.mark.parametrize(("query", "fields"), [
    ({"format": "xml"}, {"format"}),
    ({"format": "NDJSON", "traffic": "bots"}, {"format", "traffic"}),
])
def test_a_bad_render_export_format_is_a_400_with_field_errors(api, render, query, fields):
    response = render_events(api, render, **query)
    issues = response.json()["error"].get("issues", {})
    assert_envelope(response, 400, "invalid_request", issues=issues)
    assert set(issues["fieldErrors"]) == fields


def test_an_export_reads_no_page_parameters(api, render, history):
    lines = ndjson_lines(render_events(api, render, format="ndjson", limit="1", cursor="junk"))
    assert len(lines) == 6  # five events and the share's creation


def test_another_projects_render_exports_as_a_missing_one(api, make_project, make_render, render, history):
    foreign = make_render(make_project("Other"))
    for target in (foreign.id, "not-a-uuid", "0193c2c3-0000-7000-8000-000000000000"):
        response = api.get(f"/v1/renders/{target}/events", {"format": "csv"})
        assert_envelope(response, 404, "not_found")


def test_the_json_event_log_page_is_unchanged_by_format_json(api, render, history):
    assert render_events(api, render, format="json", limit=2).content == render_events(api, render, limit=2).content


@pytest.mark.django_db(transaction=True)
def test_render_export_lines_load_into_another_render_with_backfill_render_events(
        api, render, history, make_project, make_render, make_key, make_client, tmp_path):
    """The export's lines are backfill lines: with the render id replaced (ids are global, a render of another
    project is another render) and the event id dropped (ids are global too), they load with their classes."""
    target = make_project("Target")
    copy = make_render(target)
    lines = ndjson_lines(render_events(api, render, format="ndjson", actorKind="partner", eventType="viewed"))
    lines += ndjson_lines(render_events(api, render, format="ndjson", eventType="downloaded"))
    lines += [{**line, "shareId": None} for line in ndjson_lines(render_events(api, render, format="ndjson",
                                                                                traffic="machine"))]
    assert {line["traffic"] for line in lines} == {"human", "machine"}
    path = tmp_path / "render.ndjson"
    path.write_bytes(b"".join(orjson.dumps({**{key: value for key, value in line.items()
                                               if key != "id"},
                                            "renderId": str(copy.pk)}) + b"\n" for line in lines))
    out = io.StringIO()
    call_command("backfill_render_events", "--project", str(target.pk), str(path), stdout=out, stderr=io.StringIO())
    assert f"accepted {len(lines)}" in out.getvalue()

    copied = ndjson_lines(render_events(make_client(make_key(target).raw_key), copy, format="ndjson"))

    def kept(line):
        return {key: line[key] for key in RENDER_KEYS if key not in ("id", "renderId")}
    assert [kept(line) for line in copied] == [kept(line) for line in lines]


# Streaming: chunks as the database sends them, a client gone mid-export ----------------------------------------


def test_exports_stream_in_chunks_as_the_database_sends_them(api, project, clock, monkeypatch):
    monkeypatch.setattr(exports, "FETCH_ROWS", 50)
    monkeypatch.setattr(exports, "CHUNK_BYTES", 1024)
    ingest(project, [wire_event("sent", f"2026-04-01T00:{minute:02d}:{second:02d}Z")
                     for minute in range(10) for second in range(0, 60, 2)])

    response = export_messages(api, **WIDE)
    chunks = iter(response.streaming_content)
    try:
        first = next(chunks)
        active = copies_running() if connection.vendor == "postgresql" else []
        rest = b"".join(chunks)
    finally:
        response.close()
    assert 1024 <= len(first) < 1024 + 400
    if connection.vendor == "postgresql":  # the rest was still being copied out of the database
        assert len(active) == 1, active
    assert len((first + rest).splitlines()) == 300
    assert [orjson.loads(line)["occurredAt"] for line in (first + rest).splitlines()][-1] == "2026-04-01T00:09:58Z"


@pytest.mark.django_db(transaction=True)  # PostgreSQL: the abandoned copy's connection is closed
def test_an_export_closed_early_frees_its_connection(api, project, clock, monkeypatch):
    """A client that goes away mid-export: the response is closed, the copy ends, the connection serves again."""
    monkeypatch.setattr(exports, "CHUNK_BYTES", 1024)
    ingest(project, [wire_event("sent", f"2026-04-01T00:{minute:02d}:{second:02d}Z")
                     for minute in range(10) for second in range(0, 60, 2)])
    response = export_messages(api, **WIDE)
    chunks = iter(response.streaming_content)
    assert next(chunks)
    response.close()

    if connection.vendor == "postgresql":  # the server ends the copy once it sees the connection closed
        deadline = time.monotonic() + 5
        while copies_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert copies_running() == []
    assert get_report(api, **WIDE).json()["data"][0]["sent"] == 300
    assert len(ndjson_lines(export_messages(api, **WIDE))) == 300


def copies_running() -> list[str]:
    """The COPY statements other sessions of the test database are running (seen from a connection of its own)."""
    import psycopg

    database = connection.settings_dict
    with psycopg.connect(host=database["HOST"], port=database["PORT"] or 5432, user=database["USER"],
                         dbname=database["NAME"], autocommit=True) as other:
        rows = other.execute("SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                             "AND pid <> pg_backend_pid() AND query LIKE 'COPY (%%'").fetchall()
    return [query for (query,) in rows]


def test_text_needing_escapes_survives_the_export_unchanged(api, project, clock):
    tricky = 'back\\slash \\" quote\ttab\nnewline \u00e9\u2028 \U0001f600 ,;'
    ingest(project, [wire_event("clicked", "2026-04-01T00:00:00Z", url="https://x.example/?q=" + tricky,
                                userAgent=tricky, event_id="id,\"x\"\\")])
    [line] = ndjson_lines(export_messages(api, **WIDE))
    assert (line["userAgent"], line["url"], line["id"]) == (tricky, "https://x.example/?q=" + tricky, 'id,"x"\\')
    header, row = csv_rows(export_messages(api, format="csv", **WIDE))
    assert dict(zip(header, row, strict=True))["userAgent"] == tricky


# 9: the OpenAPI document names the formats -------------------------------------------------------------------


def test_the_openapi_document_describes_every_export_as_a_text_attachment(client):
    schema = client.get("/v1/schema", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    text = {"type": "string"}

    report = paths["/v1/reports/engagement"]["get"]
    report_formats = {p["name"]: p for p in report["parameters"]}["format"]["schema"]["enum"]
    assert set(report_formats) == {"json", "csv"}
    assert report["responses"]["200"]["content"]["text/csv; charset=utf-8"]["schema"] == text
    assert "application/json" in report["responses"]["200"]["content"]
    assert report["responses"]["200"]["headers"]["Content-Disposition"]["required"] is False

    export = paths["/v1/messages/events"]["get"]
    assert export["x-required-scope"] == "reports.view"
    parameters = {p["name"]: p for p in export["parameters"] if p["in"] == "query"}
    assert set(parameters) == {"from", "to", "format"}
    assert set(parameters["format"]["schema"]["enum"]) == {"ndjson", "csv"}
    assert export["responses"]["200"]["content"] == {"application/x-ndjson": {"schema": text},
                                                     "text/csv; charset=utf-8": {"schema": text}}
    assert export["responses"]["200"]["headers"]["Content-Disposition"]["required"] is True
    assert {"403", "422"} <= set(export["responses"])

    log = paths["/v1/renders/{render_id}/events"]["get"]
    log_formats = {p["name"]: p for p in log["parameters"]}["format"]["schema"]
    assert log_formats == {"type": "string", "enum": ["json", "ndjson", "csv"], "default": "json"}
    assert set(log["responses"]["200"]["content"]) == {"application/json", "application/x-ndjson",
                                                       "text/csv; charset=utf-8"}
