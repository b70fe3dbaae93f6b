"""CONTRACT 6 on the report side: classified `opened` and `clicked` message events (ingested, pixel, tracked
link, backfilled), the report's `traffic=`, and per-class uniques with a recipient active in both classes."""

import json
import re
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import Client

from reports.models import MessageEvent
from tests.test_reports_helpers import ingest, post_events, wire_event
from tests.test_traffic_rules import CHROME, MIMECAST, SAFARI_IPHONE, SLACKBOT

pytestmark = pytest.mark.django_db

DAY = "2026-04-03"
WINDOW = {"from": f"{DAY}T00:00:00Z", "to": "2026-04-05T00:00:00Z"}
FIGURES = ("sent", "delivered", "opens", "unique_opens", "clicks", "unique_clicks", "open_rate", "click_rate")


def stored(project, type_=None):
    events = MessageEvent.objects.filter(project=project).order_by("occurred_at", "client_event_id")
    if type_:
        events = events.filter(type=type_)
    return list(events.values_list("type", "traffic", "machine_reason", "traffic_given"))


def report(api, **query) -> list[dict]:
    response = api.get("/v1/reports/engagement", {**WINDOW, **query})
    assert response.status_code == 200, response.content
    return response.json()["data"]


def at(clock_time: str) -> str:
    return f"{DAY}T{clock_time}Z"


# Classification at ingestion ------------------------------------------------------------------------------

def test_machine_true_is_the_clients_flag_and_false_or_absent_leaves_the_rules(project):
    ingest(project, [
        wire_event("opened", at("09:00:00"), machine=True, userAgent=CHROME),
        wire_event("opened", at("09:01:00"), machine=False, userAgent=SLACKBOT),
        wire_event("opened", at("09:02:00"), machine=False, userAgent=CHROME),
        wire_event("opened", at("09:03:00")),  # no user agent: an ingested event is not judged by that rule
        wire_event("sent", at("09:04:00"), machine=True),  # sent and delivered are never classified
    ])
    assert stored(project) == [
        ("opened", "machine", "client", True),
        ("opened", "machine", "bot", False),
        ("opened", "human", None, False),
        ("opened", "human", None, False),
        ("sent", "human", None, False),
    ]


def test_machine_must_be_a_boolean_or_null(api):
    response = post_events(api, [wire_event("opened", at("09:00:00"), machine="yes"),
                                 wire_event("opened", at("09:00:00"), machine=None)])
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "events[0].machine", "reason": "Must be true, false or null."}]
    assert not MessageEvent.objects.exists()


def test_the_bare_mozilla_user_agent_is_a_privacy_proxy_for_opens_and_scanners_are_named(project):
    ingest(project, [
        wire_event("opened", at("09:00:00"), userAgent="Mozilla/5.0"),
        wire_event("opened", at("09:01:00"), userAgent=SAFARI_IPHONE),
        wire_event("clicked", at("09:02:00"), userAgent=MIMECAST),
    ])
    assert stored(project) == [("opened", "machine", "privacy_proxy", False), ("opened", "human", None, False),
                               ("clicked", "machine", "scanner", False)]


@pytest.mark.parametrize(("seconds", "expected"), [(3, ("machine", "scanner")), (60, ("human", None))])
def test_a_click_soon_after_its_delivery_is_a_scanners(project, seconds, expected):
    ingest(project, [wire_event("delivered", at("09:00:00"), message="m-stored")])
    ingest(project, [wire_event("clicked", at(f"09:0{seconds // 60}:{seconds % 60:02d}"), message="m-stored",
                                userAgent=CHROME)])
    # The delivery in the same batch counts too.
    ingest(project, [wire_event("clicked", at(f"10:0{seconds // 60}:{seconds % 60:02d}"), message="m-batch",
                                userAgent=CHROME),
                     wire_event("delivered", at("10:00:00"), message="m-batch")])
    assert [row[1:3] for row in stored(project, "clicked")] == [expected, expected]


def test_a_click_whose_delivery_arrives_later_is_judged_by_what_was_known(project):
    ingest(project, [wire_event("clicked", at("09:00:03"), message="m", userAgent=CHROME)])
    ingest(project, [wire_event("delivered", at("09:00:00"), message="m")])
    assert stored(project, "clicked") == [("clicked", "human", None, False)]


# The report's traffic= ------------------------------------------------------------------------------------

@pytest.fixture
def mixed_day(project):
    """Ann opens as a person and through a proxy; Bob only through a proxy; Cy clicks as a person and a scanner."""
    ingest(project, [
        *(wire_event("sent", at("08:00:00"), recipient=r) for r in ("ann@example.org", "bob@example.org",
                                                                      "cy@example.org")),
        *(wire_event("delivered", at("08:00:01"), recipient=r) for r in ("ann@example.org", "bob@example.org",
                                                                           "cy@example.org")),
        wire_event("opened", at("09:00:00"), recipient="ann@example.org", userAgent=CHROME),
        wire_event("opened", at("09:05:00"), recipient="ANN@example.org", userAgent="Mozilla/5.0"),
        wire_event("opened", at("09:06:00"), recipient="bob@example.org", machine=True),
        wire_event("opened", at("09:07:00"), recipient="bob@example.org", userAgent="Mozilla/5.0"),
        wire_event("clicked", at("08:00:04"), recipient="cy@example.org", userAgent=CHROME),  # 3 s: a scanner
        wire_event("clicked", at("10:00:00"), recipient="cy@example.org", userAgent=CHROME),
    ])
    return project


def test_per_class_uniques_count_a_recipient_active_in_both_classes_in_each(api, mixed_day, clock):
    [everyone] = report(api)
    [people] = report(api, traffic="human")
    [machines] = report(api, traffic="machine")
    assert {k: everyone[k] for k in FIGURES} == {"sent": 3, "delivered": 3, "opens": 4, "unique_opens": 2,
                                                 "clicks": 2, "unique_clicks": 1, "open_rate": 2 / 3,
                                                 "click_rate": 1 / 3}
    assert {k: people[k] for k in FIGURES} == {"sent": 3, "delivered": 3, "opens": 1, "unique_opens": 1,
                                               "clicks": 1, "unique_clicks": 1, "open_rate": 1 / 3,
                                               "click_rate": 1 / 3}
    assert {k: machines[k] for k in FIGURES} == {"sent": 3, "delivered": 3, "opens": 3, "unique_opens": 2,
                                                 "clicks": 1, "unique_clicks": 1, "open_rate": 2 / 3,
                                                 "click_rate": 1 / 3}
    for group_by in ("week", "month"):
        assert report(api, traffic="human", group_by=group_by)[0]["unique_opens"] == 1


def test_a_recipients_classes_arriving_in_separate_batches_count_once_each(api, project, clock):
    """One ledger row per recipient and type: its first write counts the recipient, each class's first time its
    class; later touches of a class already counted count nothing (daily and exact week figures alike)."""
    from reports.models import DailyFirstTouch, PeriodFirstTouch
    from reports.rollups import definition as rule

    ingest(project, [wire_event("delivered", at("08:00:00"), recipient="ann@example.org")])
    for n, (clock_time, machine) in enumerate((("09:00:00", False), ("09:10:00", True), ("09:20:00", False),
                                               ("09:30:00", True), ("08:30:00", True))):
        ingest(project, [wire_event("opened", at(clock_time), event_id=f"open-{n}", recipient="ann@example.org",
                                    userAgent=CHROME, machine=machine)])
        opens = {traffic: report(api, traffic=traffic)[0]["unique_opens"] for traffic in ("all", "human", "machine")}
        assert opens == {"all": 1, "human": 1, "machine": 1 if n else 0}, n
    for group_by in ("week", "month"):
        assert [report(api, traffic=traffic, group_by=group_by, unique="exact")[0]["unique_opens"]
                for traffic in ("all", "human", "machine")] == [1, 1, 1]
    assert DailyFirstTouch.objects.filter(project=project).count() == len(rule.GRAINS)
    assert PeriodFirstTouch.objects.filter(project=project).count() == len(rule.GRAINS) * len(rule.PERIODS)
    touch = DailyFirstTouch.objects.get(project=project, grain="all")
    assert (touch.type, touch.last_at, touch.last_human_at, touch.last_machine_at) == (
        "opened", clock_at("09:30:00"), clock_at("09:20:00"), clock_at("09:30:00"))
    # The part of the day from 09:15 on: Ann's human touch at 09:20 and machine one at 09:30.
    late = {"from": at("09:15:00"), "to": "2026-04-05T00:00:00Z"}
    assert [report(api, **late, traffic=traffic)[0]["unique_opens"] for traffic in ("all", "human", "machine")] == \
        [1, 1, 1]
    later = {"from": at("09:25:00"), "to": "2026-04-05T00:00:00Z"}
    assert [report(api, **later, traffic=traffic)[0]["unique_opens"] for traffic in ("all", "machine")] == [1, 1]
    assert report(api, **later, traffic="human") == []  # nothing human from 09:25 on: the bucket is omitted


def clock_at(clock_time: str):
    from datetime import UTC, datetime

    return datetime.fromisoformat(at(clock_time).replace("Z", "+00:00")).astimezone(UTC)


def test_traffic_all_is_the_default_body_byte_for_byte(api, mixed_day, clock):
    default = api.get("/v1/reports/engagement", WINDOW)
    explicit = api.get("/v1/reports/engagement", {**WINDOW, "traffic": "all"})
    assert default.status_code == explicit.status_code == 200
    assert default.content == explicit.content


def test_a_bucket_with_nothing_of_the_class_is_omitted(api, project, clock):
    ingest(project, [wire_event("opened", at("09:00:00"), machine=True),
                     wire_event("opened", "2026-04-04T09:00:00Z", userAgent=CHROME)])
    assert [b["period"] for b in report(api)] == ["2026-04-03T00:00:00Z", "2026-04-04T00:00:00Z"]
    assert [b["period"] for b in report(api, traffic="human")] == ["2026-04-04T00:00:00Z"]
    assert [b["period"] for b in report(api, traffic="machine")] == ["2026-04-03T00:00:00Z"]


def test_the_default_window_reads_each_class_from_its_edge_data(api, project, clock):
    """Windows that end now and start inside a day: the edge data keeps each class apart too."""
    clock.move_to("2026-05-03T10:20:00Z")
    now_day = "2026-05-03"
    first_day = "2026-04-03"
    ingest(project, [
        wire_event("opened", f"{first_day}T10:19:00Z", userAgent=CHROME, recipient="early@example.org"),  # outside
        wire_event("opened", f"{first_day}T10:21:00Z", userAgent=CHROME, recipient="ann@example.org"),
        wire_event("opened", f"{first_day}T22:00:00Z", machine=True, recipient="ann@example.org"),
        wire_event("opened", f"{now_day}T09:00:00Z", machine=True, recipient="bob@example.org"),
    ])
    response = api.get("/v1/reports/engagement", {"traffic": "human"})
    assert [(b["period"], b["opens"], b["unique_opens"]) for b in response.json()["data"]] == [
        (f"{first_day}T00:00:00Z", 1, 1)]
    response = api.get("/v1/reports/engagement", {"traffic": "machine"})
    assert [(b["period"], b["opens"], b["unique_opens"]) for b in response.json()["data"]] == [
        (f"{first_day}T00:00:00Z", 1, 1), (f"{now_day}T00:00:00Z", 1, 1)]


@pytest.mark.parametrize("value", ["people", "HUMAN", "all,human"])
def test_a_bad_traffic_value_is_a_422_naming_the_field(api, value, clock):
    response = api.get("/v1/reports/engagement", {**WINDOW, "traffic": value})
    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"] == [{"field": "traffic", "reason": "Must be one of all, human, machine."}]


# The pixel and the tracked link ---------------------------------------------------------------------------

@pytest.fixture
def emailed(api, render, settings, clock):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.PUBLIC_BASE_URL = ""
    response = api.post(f"/v1/renders/{render.id}/emails", {"to": "alice@example.com"}, format="json")
    assert response.status_code == 201, response.content
    html = mail.outbox[-1].alternatives[0][0]
    token = re.search(r"/t/([A-Za-z0-9_-]+)\.gif", html).group(1)
    return token


def test_the_pixel_classifies_its_opened_event_as_the_summary_does(project, emailed, clock):
    Client(HTTP_USER_AGENT=SAFARI_IPHONE, REMOTE_ADDR="198.51.100.7").get(f"/t/{emailed}.gif")
    Client(HTTP_USER_AGENT=SAFARI_IPHONE, REMOTE_ADDR="17.58.0.9").get(f"/t/{emailed}.gif")  # Apple's proxy range
    Client(HTTP_USER_AGENT=SAFARI_IPHONE, REMOTE_ADDR="198.51.100.8").head(f"/t/{emailed}.gif")
    Client(REMOTE_ADDR="198.51.100.9").get(f"/t/{emailed}.gif")
    assert [row[1:3] for row in stored(project, "opened")] == [
        ("human", None), ("machine", "privacy_proxy"), ("machine", "prefetch"), ("machine", "no_user_agent")]
    stored_ips = list(MessageEvent.objects.filter(project=project, type="opened").order_by("received_at", "id")
                      .values_list("source_ip", "request_purpose"))
    assert stored_ips[1] == ("17.58.0.9", "direct") and stored_ips[2] == ("198.51.100.8", "head")


def test_the_tracked_link_records_a_head_as_a_machine_click(project, emailed, clock):
    clock.shift(60)  # a minute after delivery: not a scanner's timing
    person = Client(HTTP_USER_AGENT=CHROME, REMOTE_ADDR="198.51.100.7")
    assert person.get(f"/c/{emailed}").status_code == 302
    assert Client(HTTP_USER_AGENT=CHROME, REMOTE_ADDR="198.51.100.8").head(f"/c/{emailed}").status_code == 302
    assert [row[1:3] for row in stored(project, "clicked")] == [("human", None), ("machine", "prefetch")]


def test_a_click_on_the_tracked_link_right_after_delivery_is_a_scanners(project, emailed, clock):
    clock.shift(2)
    Client(HTTP_USER_AGENT=CHROME, REMOTE_ADDR="198.51.100.7").get(f"/c/{emailed}")
    assert [row[1:3] for row in stored(project, "clicked")] == [("machine", "scanner")]


# Backfilled lines -----------------------------------------------------------------------------------------

def backfill(project, tmp_path, lines) -> str:
    path = tmp_path / "events.ndjson"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out, err = StringIO(), StringIO()
    call_command("backfill_message_events", str(path), project=str(project.id), stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


@pytest.mark.django_db(transaction=True)  # the backfill stores on connections of its own
def test_backfilled_lines_keep_a_given_class_and_the_rest_are_judged_by_user_agent(project, tmp_path):
    output = backfill(project, tmp_path, [
        wire_event("opened", at("09:00:00"), traffic="machine", machineReason="privacy_proxy", userAgent=CHROME),
        wire_event("opened", at("09:01:00"), traffic="human", machineReason=None, userAgent=SLACKBOT),
        wire_event("opened", at("09:02:00"), userAgent=SLACKBOT),
        wire_event("opened", at("09:03:00")),  # no user agent: no request to judge, human
        wire_event("delivered", at("09:04:00"), message="m"),
        wire_event("clicked", at("09:04:05"), message="m", userAgent=CHROME),  # scanner timing applies
        wire_event("opened", at("09:05:00"), traffic="machine"),  # no reason: rejected
        wire_event("opened", at("09:06:00"), traffic="robot", machineReason="bot"),  # rejected
        wire_event("sent", at("09:07:00"), traffic="machine", machineReason="bot"),  # rejected
        wire_event("opened", at("09:08:00"), machineReason="bot"),  # rejected
    ])
    assert stored(project) == [
        ("opened", "machine", "privacy_proxy", True),
        ("opened", "human", None, True),
        ("opened", "machine", "bot", False),
        ("opened", "human", None, False),
        ("delivered", "human", None, False),
        ("clicked", "machine", "scanner", False),
    ]
    assert re.search(r"\b4 rejected\b", output) or "rejected 4" in output, output
    for line in (7, 8, 9, 10):
        assert f"line {line}" in output, output


def test_the_http_route_takes_no_traffic_field(api):
    response = post_events(api, [wire_event("opened", at("09:00:00"), traffic="machine", machineReason="bot")])
    assert response.status_code == 422
    assert {item["field"] for item in response.json()["errors"]} == {"events[0].traffic", "events[0].machineReason"}


@pytest.mark.django_db(transaction=True)  # the backfill stores on connections of its own
def test_ingestion_after_a_days_recount_keeps_the_classes(project, tmp_path):
    """A deferred backfill recounts its days from raw events: the classes' figures come out the same."""
    lines = [wire_event("opened", at(f"09:{minute:02d}:00"), recipient=f"r{minute % 3}@example.org",
                        **({"machine": True} if minute % 2 else {"userAgent": CHROME})) for minute in range(12)]
    backfill(project, tmp_path, lines)
    ingest(project, [wire_event("opened", at("11:00:00"), recipient="r0@example.org", machine=True)])
    from reports.models import DailyRollup

    row = DailyRollup.objects.get(project=project, grain="all")
    assert (row.opens, row.opens_human, row.opens_machine) == (13, 6, 7)
    assert (row.unique_opens, row.unique_opens_human, row.unique_opens_machine) == (3, 3, 3)
