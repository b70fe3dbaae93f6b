"""Section 3.1: GET /v1/reports/engagement — buckets, uniques, rates, windows and filters.

The clock is frozen at 2026-05-03T10:20:00Z (a Sunday); the default plan keeps 90 days.
"""

import pytest

from tests.test_reports_helpers import (
    CHANNEL_A,
    CHANNEL_B,
    OTHER_SENDER,
    bucket,
    delivered_message,
    get_report,
    ingest,
    wire_event,
)

pytestmark = pytest.mark.django_db

WIDE = {"from_": "2026-03-01T00:00:00Z", "to": "2026-05-01T00:00:00Z"}


@pytest.fixture
def fixed_traffic(project, clock):
    """Three weeks across a month boundary (2026-03-30 and 2026-04-06 are Mondays).

    03-31 alice: sent, delivered, opened.
    04-01 bob: sent, delivered, opened twice, clicked; alice opens again (her message of 03-31).
    04-02 carol: sent, delivered, nothing else.
    04-06 ALICE@EXAMPLE.ORG (the same person): sent, delivered, opened.
    """
    events = [
        *delivered_message("2026-03-31T09:00:00Z", recipient="alice@example.org", message="m1"),
        wire_event("opened", "2026-03-31T10:00:00Z", recipient="alice@example.org", message="m1"),
        *delivered_message("2026-04-01T08:00:00Z", recipient="bob@example.org", message="m2"),
        wire_event("opened", "2026-04-01T08:30:00Z", recipient="bob@example.org", message="m2"),
        wire_event("opened", "2026-04-01T08:31:00Z", recipient="bob@example.org", message="m2"),
        wire_event("clicked", "2026-04-01T09:00:00Z", recipient="bob@example.org", message="m2",
                   url="https://acme.example/offer"),
        wire_event("opened", "2026-04-01T12:00:00Z", recipient="alice@example.org", message="m1"),
        *delivered_message("2026-04-02T07:00:00Z", recipient="carol@example.org", message="m3"),
        *delivered_message("2026-04-06T07:00:00Z", recipient="ALICE@EXAMPLE.ORG", message="m4"),
        wire_event("opened", "2026-04-06T23:59:59Z", recipient="ALICE@EXAMPLE.ORG", message="m4"),
    ]
    assert ingest(project, events).accepted == len(events)


EXPECTED_FIXED = {
    "day": [
        bucket("2026-03-31T00:00:00Z", sent=1, delivered=1, opens=1, unique_opens=1, open_rate=1.0),
        bucket("2026-04-01T00:00:00Z", sent=1, delivered=1, opens=3, unique_opens=2, clicks=1, unique_clicks=1,
               open_rate=1.0, click_rate=1.0),
        bucket("2026-04-02T00:00:00Z", sent=1, delivered=1, open_rate=0.0, click_rate=0.0),
        bucket("2026-04-06T00:00:00Z", sent=1, delivered=1, opens=1, unique_opens=1, open_rate=1.0),
    ],
    "week": [
        bucket("2026-03-30T00:00:00Z", sent=3, delivered=3, opens=4, unique_opens=3, clicks=1, unique_clicks=1,
               open_rate=1.0, click_rate=1 / 3),
        bucket("2026-04-06T00:00:00Z", sent=1, delivered=1, opens=1, unique_opens=1, open_rate=1.0),
    ],
    "month": [
        bucket("2026-03-01T00:00:00Z", sent=1, delivered=1, opens=1, unique_opens=1, open_rate=1.0),
        bucket("2026-04-01T00:00:00Z", sent=3, delivered=3, opens=4, unique_opens=3, clicks=1, unique_clicks=1,
               open_rate=1.0, click_rate=1 / 3),
    ],
}


@pytest.mark.parametrize("group_by", ["day", "week", "month"])
def test_buckets_from_fixed_data_are_exact(api, fixed_traffic, group_by):
    response = get_report(api, group_by=group_by, **WIDE)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"data": EXPECTED_FIXED[group_by]}


def test_group_by_defaults_to_day(api, fixed_traffic):
    assert get_report(api, **WIDE).json() == {"data": EXPECTED_FIXED["day"]}


def test_recipient_opening_on_two_days_of_a_week_counts_once_each_day_and_twice_in_the_week(api, project, clock):
    ingest(project, [
        *delivered_message("2026-04-13T08:00:00Z", recipient="dana@example.org"),  # Monday
        wire_event("opened", "2026-04-13T09:00:00Z", recipient="dana@example.org"),
        wire_event("opened", "2026-04-13T10:00:00Z", recipient="dana@example.org"),
        wire_event("opened", "2026-04-16T09:00:00Z", recipient="dana@example.org"),  # Thursday
    ])
    window = {"from_": "2026-04-13T00:00:00Z", "to": "2026-04-20T00:00:00Z"}

    days = get_report(api, group_by="day", **window).json()["data"]
    week = get_report(api, group_by="week", **window).json()["data"]

    assert [(b["period"], b["opens"], b["unique_opens"]) for b in days] == [
        ("2026-04-13T00:00:00Z", 2, 1), ("2026-04-16T00:00:00Z", 1, 1)]
    assert week == [bucket("2026-04-13T00:00:00Z", sent=1, delivered=1, opens=3, unique_opens=2, open_rate=1.0)]


def test_recipient_opening_through_two_channels_on_one_day_counts_once_unfiltered_and_once_per_channel(
        api, project, clock):
    ingest(project, [
        wire_event("opened", "2026-04-14T09:00:00Z", recipient="erin@example.org", channel=CHANNEL_A),
        wire_event("opened", "2026-04-14T15:00:00Z", recipient="Erin@Example.org", channel=CHANNEL_B),
    ])
    window = {"from_": "2026-04-14T00:00:00Z", "to": "2026-04-15T00:00:00Z"}

    unfiltered = get_report(api, **window).json()["data"]
    channel_a = get_report(api, channel=CHANNEL_A, **window).json()["data"]
    channel_b = get_report(api, channel=CHANNEL_B, **window).json()["data"]

    assert unfiltered == [bucket("2026-04-14T00:00:00Z", opens=2, unique_opens=1)]
    assert channel_a == [bucket("2026-04-14T00:00:00Z", opens=1, unique_opens=1)]
    assert channel_b == [bucket("2026-04-14T00:00:00Z", opens=1, unique_opens=1)]


def test_the_same_holds_on_a_partial_day_counted_from_raw_events(api, project, clock):
    ingest(project, [
        wire_event("opened", "2026-04-14T09:00:00Z", recipient="erin@example.org", channel=CHANNEL_A),
        wire_event("opened", "2026-04-14T15:00:00Z", recipient="ERIN@example.org", channel=CHANNEL_B),
    ])
    window = {"from_": "2026-04-14T08:00:00Z", "to": "2026-04-14T16:00:00Z"}

    assert get_report(api, **window).json()["data"] == [bucket("2026-04-14T00:00:00Z", opens=2, unique_opens=1)]
    assert get_report(api, channel=CHANNEL_B, **window).json()["data"] == [
        bucket("2026-04-14T00:00:00Z", opens=1, unique_opens=1)]


def test_recipients_differing_only_in_case_are_one_recipient(api, project, clock):
    ingest(project, [
        *delivered_message("2026-04-14T08:00:00Z", recipient="Frank@Example.org", message="f1"),
        *delivered_message("2026-04-14T08:00:00Z", recipient="frank@example.org", message="f2"),
        wire_event("opened", "2026-04-14T09:00:00Z", recipient="FRANK@EXAMPLE.ORG", message="f1"),
        wire_event("opened", "2026-04-14T09:05:00Z", recipient="frank@example.org", message="f2"),
        wire_event("clicked", "2026-04-14T09:06:00Z", recipient="Frank@example.org", message="f1"),
        wire_event("clicked", "2026-04-14T09:07:00Z", recipient="frank@EXAMPLE.org", message="f2"),
    ])

    data = get_report(api, from_="2026-04-14T00:00:00Z", to="2026-04-15T00:00:00Z").json()["data"]

    assert data == [bucket("2026-04-14T00:00:00Z", sent=2, delivered=2, opens=2, unique_opens=1, clicks=2,
                           unique_clicks=1, open_rate=0.5, click_rate=0.5)]


def test_rates_are_unique_engagement_over_delivered(api, project, clock):
    events = []
    for name in ("g1", "g2", "g3", "g4"):
        events += delivered_message("2026-04-15T08:00:00Z", recipient=f"{name}@example.org")
    events += [
        wire_event("opened", "2026-04-15T09:00:00Z", recipient="g1@example.org"),
        wire_event("opened", "2026-04-15T09:01:00Z", recipient="g1@example.org"),
        wire_event("clicked", "2026-04-15T09:02:00Z", recipient="g1@example.org"),
        wire_event("clicked", "2026-04-15T09:03:00Z", recipient="g2@example.org"),
    ]
    ingest(project, events)

    [day] = get_report(api, from_="2026-04-15T00:00:00Z", to="2026-04-16T00:00:00Z").json()["data"]

    assert (day["open_rate"], day["click_rate"]) == (0.25, 0.5)


def test_open_rate_is_clamped_to_one_when_unique_opens_exceed_delivered(api, project, clock):
    ingest(project, [
        *delivered_message("2026-04-15T08:00:00Z", recipient="h1@example.org"),
        wire_event("opened", "2026-04-15T09:00:00Z", recipient="h1@example.org"),
        wire_event("opened", "2026-04-15T09:00:00Z", recipient="h2@example.org"),  # delivery not reported
        wire_event("opened", "2026-04-15T09:00:00Z", recipient="h3@example.org"),
        wire_event("clicked", "2026-04-15T09:00:00Z", recipient="h2@example.org"),
        wire_event("clicked", "2026-04-15T09:00:00Z", recipient="h3@example.org"),
    ])

    [day] = get_report(api, from_="2026-04-15T00:00:00Z", to="2026-04-16T00:00:00Z").json()["data"]

    assert (day["delivered"], day["unique_opens"], day["unique_clicks"]) == (1, 3, 2)
    assert (day["open_rate"], day["click_rate"]) == (1.0, 1.0)


def test_rates_are_zero_point_zero_when_nothing_was_delivered(api, project, clock):
    ingest(project, [
        wire_event("sent", "2026-04-15T08:00:00Z", recipient="i1@example.org"),
        wire_event("opened", "2026-04-15T09:00:00Z", recipient="i1@example.org"),
        wire_event("clicked", "2026-04-15T09:00:00Z", recipient="i1@example.org"),
    ])

    response = get_report(api, from_="2026-04-15T00:00:00Z", to="2026-04-16T00:00:00Z")

    [day] = response.json()["data"]
    assert day["open_rate"] == 0.0 and isinstance(day["open_rate"], float)
    assert day["click_rate"] == 0.0 and isinstance(day["click_rate"], float)
    assert b'"open_rate":0.0' in response.content


def test_edge_bucket_starting_before_from_counts_only_events_after_it(api, project, clock):
    ingest(project, [
        *delivered_message("2026-04-13T08:00:00Z", recipient="j1@example.org"),  # Monday, before `from`
        wire_event("opened", "2026-04-14T11:59:59Z", recipient="j1@example.org"),  # before `from`
        wire_event("opened", "2026-04-14T12:00:00Z", recipient="j2@example.org"),  # at `from`: inside
        wire_event("clicked", "2026-04-15T09:00:00Z", recipient="j2@example.org"),
        *delivered_message("2026-04-21T08:00:00Z", recipient="j3@example.org"),  # next week
    ])

    weeks = get_report(api, group_by="week", from_="2026-04-14T12:00:00Z", to="2026-04-28T00:00:00Z").json()
    days = get_report(api, group_by="day", from_="2026-04-14T12:00:00Z", to="2026-04-28T00:00:00Z").json()

    assert weeks["data"] == [
        bucket("2026-04-13T00:00:00Z", opens=1, unique_opens=1, clicks=1, unique_clicks=1),
        bucket("2026-04-20T00:00:00Z", sent=1, delivered=1),
    ]
    assert days["data"] == [
        bucket("2026-04-14T00:00:00Z", opens=1, unique_opens=1),
        bucket("2026-04-15T00:00:00Z", clicks=1, unique_clicks=1),
        bucket("2026-04-21T00:00:00Z", sent=1, delivered=1),
    ]


def test_last_bucket_counts_only_events_before_to(api, project, clock):
    ingest(project, [
        *delivered_message("2026-04-01T08:00:00Z", recipient="k1@example.org"),
        wire_event("opened", "2026-04-20T09:59:59Z", recipient="k1@example.org"),
        wire_event("opened", "2026-04-20T10:00:00Z", recipient="k2@example.org"),  # at `to`: outside
    ])

    months = get_report(api, group_by="month", from_="2026-04-01T00:00:00Z", to="2026-04-20T10:00:00Z").json()

    assert months["data"] == [bucket("2026-04-01T00:00:00Z", sent=1, delivered=1, opens=1, unique_opens=1)]


def test_window_within_a_single_day(api, project, clock):
    ingest(project, [
        wire_event("opened", "2026-04-20T08:00:00Z", recipient="l1@example.org"),
        wire_event("opened", "2026-04-20T09:00:00Z", recipient="l2@example.org"),
        wire_event("opened", "2026-04-20T10:00:00Z", recipient="l3@example.org"),
    ])

    data = get_report(api, from_="2026-04-20T08:30:00Z", to="2026-04-20T10:00:00Z").json()["data"]

    assert data == [bucket("2026-04-20T00:00:00Z", opens=1, unique_opens=1)]


def test_offsets_are_converted_to_utc(api, project, clock):
    ingest(project, [
        wire_event("opened", "2026-04-19T23:30:00Z", recipient="m1@example.org"),
        wire_event("opened", "2026-04-20T01:00:00+02:00", recipient="m2@example.org"),  # 2026-04-19T23:00Z
    ])

    data = get_report(api, from_="2026-04-20T01:15:00+02:00", to="2026-04-20T00:00:00Z").json()["data"]

    assert data == [bucket("2026-04-19T00:00:00Z", opens=1, unique_opens=1)]


def test_lowercase_t_and_z_are_accepted_as_rfc_3339_allows(api, project, clock):
    ingest(project, [wire_event("opened", "2026-04-20t08:00:00z", recipient="w@example.org")])

    data = get_report(api, from_="2026-04-20t00:00:00z", to="2026-04-21t00:00:00z").json()["data"]

    assert data == [bucket("2026-04-20T00:00:00Z", opens=1, unique_opens=1)]


def test_empty_buckets_are_omitted_and_buckets_run_oldest_first(api, project, clock):
    ingest(project, [
        wire_event("opened", "2026-04-25T09:00:00Z", recipient="n@example.org"),
        wire_event("opened", "2026-04-02T09:00:00Z", recipient="n@example.org"),
        wire_event("opened", "2026-04-10T09:00:00Z", recipient="n@example.org"),
    ])

    data = get_report(api, from_="2026-04-01T00:00:00Z", to="2026-05-01T00:00:00Z").json()["data"]

    assert [b["period"] for b in data] == ["2026-04-02T00:00:00Z", "2026-04-10T00:00:00Z", "2026-04-25T00:00:00Z"]


def test_channel_filter_counts_only_that_channel(api, project, clock):
    ingest(project, [
        *delivered_message("2026-04-15T08:00:00Z", recipient="o1@example.org", channel=CHANNEL_A),
        *delivered_message("2026-04-15T08:00:00Z", recipient="o2@example.org", channel=CHANNEL_B),
        wire_event("opened", "2026-04-15T09:00:00Z", recipient="o2@example.org", channel=CHANNEL_B),
    ])
    window = {"from_": "2026-04-15T00:00:00Z", "to": "2026-04-16T00:00:00Z"}

    assert get_report(api, channel=CHANNEL_A, **window).json()["data"] == [
        bucket("2026-04-15T00:00:00Z", sent=1, delivered=1)]
    assert get_report(api, channel=CHANNEL_B.upper(), **window).json()["data"] == [
        bucket("2026-04-15T00:00:00Z", sent=1, delivered=1, opens=1, unique_opens=1)]
    assert get_report(api, channel="0193c2c3-0000-7000-8000-0000000000ff", **window).json()["data"] == []


@pytest.mark.parametrize("identity", ["anyone@acme.example", "ACME.example", "Someone.Else@ACME.EXAMPLE"])
def test_identity_filter_matches_the_sending_domain(api, project, clock, identity):
    ingest(project, [
        *delivered_message("2026-04-15T08:00:00Z", recipient="p1@example.org", sender="News@Acme.Example"),
        *delivered_message("2026-04-15T08:00:00Z", recipient="p2@example.org", sender=OTHER_SENDER),
        wire_event("opened", "2026-04-15T09:00:00Z", recipient="p2@example.org", sender=OTHER_SENDER),
    ])

    data = get_report(api, identity=identity, from_="2026-04-15T00:00:00Z", to="2026-04-16T00:00:00Z").json()

    assert data["data"] == [bucket("2026-04-15T00:00:00Z", sent=1, delivered=1)]


def test_channel_and_identity_filters_combine(api, project, clock):
    ingest(project, [
        wire_event("opened", "2026-04-15T09:00:00Z", recipient="q@example.org", channel=CHANNEL_A),
        wire_event("opened", "2026-04-15T09:00:00Z", recipient="q@example.org", channel=CHANNEL_B),
        wire_event("opened", "2026-04-15T09:00:00Z", recipient="q@example.org", channel=CHANNEL_A,
                   sender=OTHER_SENDER),
    ])
    window = {"from_": "2026-04-15T00:00:00Z", "to": "2026-04-16T00:00:00Z"}

    both = get_report(api, channel=CHANNEL_A, identity="acme.example", **window).json()["data"]
    domain_only = get_report(api, identity="acme.example", **window).json()["data"]

    assert both == [bucket("2026-04-15T00:00:00Z", opens=1, unique_opens=1)]
    assert domain_only == [bucket("2026-04-15T00:00:00Z", opens=2, unique_opens=1)]


def test_default_window_is_the_trailing_thirty_days(api, project, clock):
    ingest(project, [
        wire_event("opened", "2026-04-03T10:19:59Z", recipient="r@example.org"),  # 30 days + 1 s ago
        wire_event("opened", "2026-04-03T10:20:00Z", recipient="r@example.org"),  # exactly 30 days ago
        wire_event("opened", "2026-05-03T10:19:59Z", recipient="r@example.org"),
        wire_event("opened", "2026-05-03T10:20:00Z", recipient="r@example.org"),  # now: excluded
    ])

    data = get_report(api).json()["data"]

    assert data == [bucket("2026-04-03T00:00:00Z", opens=1, unique_opens=1),
                    bucket("2026-05-03T00:00:00Z", opens=1, unique_opens=1)]


def test_default_from_never_reaches_before_the_plan_retention(make_project, make_key, make_client, clock):
    short = make_project("short-retention", retention_days=7)
    client = make_client(make_key(short).raw_key)
    ingest(short, [
        wire_event("opened", "2026-04-26T10:19:59Z", recipient="s@example.org"),  # 7 days + 1 s ago
        wire_event("opened", "2026-04-26T10:20:00Z", recipient="s@example.org"),
    ])

    response = get_report(client)

    assert response.status_code == 200
    assert response.json()["data"] == [bucket("2026-04-26T00:00:00Z", opens=1, unique_opens=1)]


def test_explicit_to_with_default_from_reports_the_thirty_days_before_it(api, project, clock):
    ingest(project, [
        wire_event("opened", "2026-03-01T23:59:59Z", recipient="t@example.org"),
        wire_event("opened", "2026-03-02T00:00:00Z", recipient="t@example.org"),
    ])

    data = get_report(api, to="2026-04-01T00:00:00Z").json()["data"]

    assert data == [bucket("2026-03-02T00:00:00Z", opens=1, unique_opens=1)]


def test_a_project_never_sees_another_projects_traffic(api, project, make_project, clock):
    other = make_project("other")
    ingest(other, [wire_event("opened", "2026-04-15T09:00:00Z", recipient="u@example.org")])
    ingest(project, [wire_event("clicked", "2026-04-15T09:00:00Z", recipient="u@example.org")])

    data = get_report(api, from_="2026-04-15T00:00:00Z", to="2026-04-16T00:00:00Z").json()["data"]
    partial = get_report(api, from_="2026-04-15T08:00:00Z", to="2026-04-15T10:00:00Z").json()["data"]

    assert data == partial == [bucket("2026-04-15T00:00:00Z", clicks=1, unique_clicks=1)]


def test_a_window_starting_minutes_after_midnight_leaves_out_that_days_earlier_events(api, project, clock):
    ingest(project, [
        wire_event("opened", "2026-04-20T00:00:00Z", recipient="v1@example.org"),
        wire_event("opened", "2026-04-20T00:04:59Z", recipient="v2@example.org"),
        wire_event("opened", "2026-04-20T00:05:00Z", recipient="v3@example.org"),
        wire_event("opened", "2026-04-21T00:00:00Z", recipient="v4@example.org"),
    ])

    data = get_report(api, from_="2026-04-20T00:05:00Z", to="2026-04-22T00:00:00Z").json()["data"]

    assert data == [bucket("2026-04-20T00:00:00Z", opens=1, unique_opens=1),
                    bucket("2026-04-21T00:00:00Z", opens=1, unique_opens=1)]


def test_the_openapi_schema_documents_both_report_side_routes(client):
    schema = client.get("/v1/schema", HTTP_ACCEPT="application/json").json()

    report = schema["paths"]["/v1/reports/engagement"]["get"]
    ingest_op = schema["paths"]["/v1/messages/events"]["post"]
    assert (report["x-required-scope"], ingest_op["x-required-scope"]) == ("reports.view", "messages.write")
    assert {p["name"] for p in report["parameters"] if p["in"] == "query"} == {"from", "to", "group_by", "channel",
                                                                              "identity", "traffic", "unique"}
    assert [p["name"] for p in report["parameters"] if p["in"] == "header"] == ["Cache-Control"]
    assert "application/problem+json" in report["responses"]["422"]["content"]
    assert "application/problem+json" in ingest_op["responses"]["422"]["content"]
