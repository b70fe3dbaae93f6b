"""CONTRACT 6 on the render side: which events are classified, HEAD as prefetch, dedupe per class, and the
summary's `traffic=` (counters per class, the default body unchanged). HTTP through the real stack."""

import json
import re
from collections import Counter

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from renders.api.serializers import event_json
from renders.models import EngagementEvent, EventType
from renders.services import record_event
from tests.conftest import assert_envelope, partitions_listed
from tests.sharing import mint, token_of
from tests.test_traffic_rules import CHROME, GMAIL_PROXY, SAFARI_IPHONE, SLACKBOT

pytestmark = pytest.mark.django_db

IP = "198.51.100.7"
BAD_TRAFFIC = 'Must be one of "all", "human", "machine".'
EVENT_KEYS = ["id", "eventType", "actorKind", "shareId", "sourceIp", "userAgent", "metadata", "createdAt"]


@pytest.fixture
def token(api, render):
    return token_of(mint(api, render, label="For Alice"))


def browser(user_agent=CHROME, ip=IP) -> Client:
    return Client(HTTP_USER_AGENT=user_agent, REMOTE_ADDR=ip) if user_agent else Client(REMOTE_ADDR=ip)


def stored(render):
    return list(EngagementEvent.objects.filter(render=render).order_by("created_at", "id")
                .values_list("event_type", "actor_kind", "traffic", "machine_reason", "request_purpose"))


def summary(api, render, traffic=None) -> dict:
    response = api.get(f"/v1/renders/{render.id}/engagement", {} if traffic is None else {"traffic": traffic})
    assert response.status_code == 200, response.content
    return response.json()


# Which events are classified ------------------------------------------------------------------------------

def test_a_link_previewer_then_a_person_from_one_ip_are_both_recorded(api, render, token):
    assert browser(SLACKBOT).get(f"/s/{token}").status_code == 200
    assert browser(CHROME).get(f"/s/{token}").status_code == 200
    assert browser(SLACKBOT).get(f"/s/{token}").status_code == 200  # the previewer again: its own duplicate
    assert browser(SAFARI_IPHONE).get(f"/s/{token}").status_code == 200  # a person again: a duplicate
    assert [row for row in stored(render) if row[0] == "viewed"] == [
        ("viewed", "recipient", "machine", "bot", "direct"),
        ("viewed", "recipient", "human", None, "direct"),
    ]
    assert summary(api, render)["counts"]["viewed"] == 2
    assert summary(api, render, "human")["linkOpens"] == 1
    assert summary(api, render, "machine")["linkOpens"] == 1


def test_share_page_download_and_print_are_classified(api, render, token):
    bot = browser("python-requests/2.31.0")
    bot.get(f"/s/{token}/download")
    bot.post(f"/s/{token}/print")
    browser(None).get(f"/s/{token}")
    assert stored(render)[1:] == [
        ("downloaded", "recipient", "machine", "bot", "direct"),
        ("printed", "recipient", "machine", "bot", "direct"),
        ("viewed", "recipient", "machine", "no_user_agent", "direct"),
    ]


def test_a_prefetch_of_the_share_page_is_machine_prefetch(render, token):
    browser(CHROME).get(f"/s/{token}", HTTP_SEC_PURPOSE="prefetch;prerender")
    assert stored(render)[-1] == ("viewed", "recipient", "machine", "prefetch", "prerender")


def test_head_on_the_public_routes_records_what_get_would_as_machine_prefetch(api, render, token):
    person = browser(CHROME)
    for path in (f"/s/{token}", f"/s/{token}/download", f"/s/{token}/file"):
        assert person.head(path).status_code == 200
    assert stored(render)[1:] == [
        ("viewed", "recipient", "machine", "prefetch", "head"),
        ("downloaded", "recipient", "machine", "prefetch", "head"),
    ]  # the file route records nothing on GET, so nothing on HEAD either
    person.get(f"/s/{token}")  # the person's own view is no duplicate of the HEAD
    assert summary(api, render, "human")["counts"]["viewed"] == 1
    assert summary(api, render, "machine")["counts"] == {**summary(api, render, "machine")["counts"],
                                                         "viewed": 1, "downloaded": 1}


def test_partner_and_system_events_are_human_whatever_the_user_agent(api, render):
    response = api.post(f"/v1/renders/{render.id}/events", {"eventType": "viewed"}, format="json",
                        HTTP_USER_AGENT=SLACKBOT)
    assert response.json() == {"recorded": True}
    api.post(f"/v1/renders/{render.id}/events", {"eventType": "printed"}, format="json")  # no user agent
    mint(api, render)
    assert [row[:4] for row in stored(render)] == [
        ("viewed", "partner", "human", None),
        ("printed", "partner", "human", None),
        ("share_created", "partner", "human", None),
    ]


@pytest.fixture
def emailed(api, render, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.PUBLIC_BASE_URL = ""
    response = api.post(f"/v1/renders/{render.id}/emails", {"to": "alice@example.com"}, format="json")
    assert response.status_code == 201, response.content
    [pixel] = re.findall(r'<img src="https?://[^"]+(/t/[A-Za-z0-9_-]+\.gif)"', mail.outbox[-1].alternatives[0][0])
    return pixel


def test_email_opens_through_gmail_stay_human_and_apple_privacy_proxy_opens_are_machine(api, render, emailed):
    assert browser(GMAIL_PROXY, ip="66.249.84.1").get(emailed).status_code == 200
    assert browser(SAFARI_IPHONE, ip="17.58.0.9").get(emailed).status_code == 200
    assert browser("Mozilla/5.0", ip="203.0.113.5").get(emailed).status_code == 200
    assert browser(SAFARI_IPHONE, ip="203.0.113.5").head(emailed).status_code == 200
    opens = [row for row in stored(render) if row[0] == "email_opened"]
    assert opens == [
        ("email_opened", "recipient", "human", None, "direct"),
        ("email_opened", "recipient", "machine", "privacy_proxy", "direct"),
        ("email_opened", "recipient", "machine", "privacy_proxy", "direct"),
        ("email_opened", "recipient", "machine", "prefetch", "head"),
    ]
    assert summary(api, render, "human")["counts"]["email_opened"] == 1
    assert summary(api, render, "machine")["counts"]["email_opened"] == 3


# The summary for one class --------------------------------------------------------------------------------

def recomputed(render, traffic: str) -> dict:
    """The summary of one class computed from the stored events alone (none of the counters)."""
    events = [e for e in EngagementEvent.objects.filter(render=render).order_by("-created_at", "-id")
              if traffic == "all" or e.traffic == traffic]
    counts = {t.value: 0 for t in EventType} | Counter(e.event_type for e in events)
    return {
        "counts": counts,
        "linkOpens": sum(1 for e in events if e.event_type == "viewed" and e.share_id),
        "total": len(events),
        "recent": [json.loads(json.dumps(event_json(e))) for e in events[:25]],
    }


def mixed_traffic(render, share):
    """40 events from people, previewers, crawlers, proxies, HEADs and partners, none deduped."""
    agents = [CHROME, SLACKBOT, SAFARI_IPHONE, "Googlebot/2.1", None, GMAIL_PROXY, "Mozilla/5.0"]
    types = ["viewed", "downloaded", "printed", "email_opened"]
    for index in range(40):
        purpose = "head" if index % 9 == 0 else "direct"
        actor = "partner" if index % 7 == 3 else "recipient"
        record_event(render=render, event_type=types[index % 4], actor_kind=actor,
                     share=share if actor == "recipient" else None, source_ip=f"203.0.113.{index}",
                     user_agent=agents[index % len(agents)], request_purpose=purpose)


@pytest.mark.parametrize("traffic", ["all", "human", "machine"])
def test_each_class_summary_equals_a_recomputation_from_its_events(api, render, traffic):
    share_id = mint(api, render)["id"]
    mixed_traffic(render, render.shares.get(pk=share_id))
    body = summary(api, render, traffic)
    assert body == recomputed(render, traffic)
    assert 0 < body["total"] < 41 if traffic != "all" else body["total"] == 41
    assert all(event["id"] in {str(e.id) for e in render.events.filter(
        **({} if traffic == "all" else {"traffic": traffic}))} for event in body["recent"])


def test_human_and_machine_add_up_to_all(api, render):
    share_id = mint(api, render)["id"]
    mixed_traffic(render, render.shares.get(pk=share_id))
    every, human, machine = (summary(api, render, t) for t in ("all", "human", "machine"))
    assert every["counts"] == {k: human["counts"][k] + machine["counts"][k] for k in every["counts"]}
    assert every["linkOpens"] == human["linkOpens"] + machine["linkOpens"]
    assert human["total"] > 0 and machine["total"] > 0


def test_the_default_body_is_byte_identical_to_traffic_all_and_keeps_the_section_2_2_shape(api, render, token):
    browser(SLACKBOT).get(f"/s/{token}")
    browser(CHROME).get(f"/s/{token}")
    default = api.get(f"/v1/renders/{render.id}/engagement")
    explicit = api.get(f"/v1/renders/{render.id}/engagement?traffic=all")
    assert default.content == explicit.content
    body = default.json()
    assert list(body) == ["counts", "linkOpens", "total", "recent"]
    assert list(body["counts"]) == ["viewed", "downloaded", "printed", "email_opened", "email_sent",
                                    "share_created", "share_revoked"]
    assert all(list(event) == EVENT_KEYS for event in body["recent"])  # no traffic fields in the summary
    assert body == recomputed(render, "all")


@pytest.mark.parametrize("value", ["", "bots", "HUMAN", "all,human"])
def test_a_bad_traffic_value_is_400_naming_the_parameter(api, render, value):
    assert_envelope(api.get(f"/v1/renders/{render.id}/engagement", {"traffic": value}), 400, "invalid_request",
                    "Invalid value for: traffic.",
                    issues={"formErrors": [], "fieldErrors": {"traffic": [BAD_TRAFFIC]}})


def test_a_foreign_render_with_traffic_is_404_like_a_missing_one(make_project, make_key, make_client, render):
    other = make_client(make_key(make_project()).raw_key)
    foreign = other.get(f"/v1/renders/{render.id}/engagement?traffic=human")
    missing = other.get("/v1/renders/01966b3c-0000-7000-8000-000000000000/engagement?traffic=human")
    assert_envelope(foreign, 404, "not_found", "No render with that id in this project.")
    assert_envelope(missing, 404, "not_found", "No render with that id in this project.")


def summary_queries(api, render, traffic) -> int:
    partitions_listed()
    with CaptureQueriesContext(connection) as captured:
        summary(api, render, traffic)
    return len(captured)


@pytest.mark.parametrize("traffic", ["human", "machine"])
def test_a_class_summary_costs_the_same_queries_at_1_and_60_events(api, render, token, traffic):
    browser(SLACKBOT).get(f"/s/{token}")
    few = summary_queries(api, render, traffic)
    for index in range(60):
        browser(CHROME if index % 2 else SLACKBOT, ip=f"203.0.113.{index}").get(f"/s/{token}")
    assert summary_queries(api, render, traffic) == few


@pytest.mark.django_db(transaction=True)  # kept bodies are dropped once the write commits
def test_kept_summaries_are_kept_per_class_and_dropped_by_a_new_event(api, render, token, shared_cache, settings):
    settings.SUMMARY_CACHE_SECONDS = 60
    browser(SLACKBOT).get(f"/s/{token}")
    first = {t: summary(api, render, t) for t in ("all", "human", "machine")}
    assert {t: summary(api, render, t) for t in first} == first  # kept, each under its own key
    assert first["human"] != first["machine"]
    assert browser(CHROME).get(f"/s/{token}").status_code == 200
    assert summary(api, render, "human")["counts"]["viewed"] == 1
    assert summary(api, render, "machine")["counts"]["viewed"] == 1
    assert summary(api, render, "all")["counts"]["viewed"] == 2


# Backfilled lines (contract section 6) ----------------------------------------------------------------------

def test_backfilled_lines_keep_a_given_class_and_the_rest_are_judged_by_user_agent_only(api, render, token):
    from tests.test_backfill_render_events import backfill, line, ndjson

    share_id = api.get(f"/v1/renders/{render.id}/shares").json()["data"][0]["id"]
    recipient = {"actorKind": "recipient", "shareId": share_id}
    out, err = backfill(render.project.name, ndjson(
        line(render, **recipient, userAgent=SLACKBOT),  # bot by user agent
        line(render, **recipient, userAgent=None),  # no request to judge: human, never no_user_agent
        line(render, **recipient, userAgent=CHROME, traffic="machine", machineReason="prefetch"),  # as given
        line(render, **recipient, userAgent=SLACKBOT, traffic="human", machineReason=None,
             createdAt="2026-04-01T09:04:00.000Z"),  # as given
        line(render, eventType="email_opened", **recipient, userAgent="Mozilla/5.0"),  # Apple's proxy
        line(render, userAgent=SLACKBOT),  # a partner's: human
        line(render, traffic="machine", machineReason="bot"),  # a partner's cannot be machine: rejected
        line(render, **recipient, traffic="machine"),  # no reason: rejected
        line(render, **recipient, machineReason="bot"),  # a reason without a class: rejected
    ))
    assert out.strip() == "accepted 6, duplicates 0, rejected 3 (lines 7, 8, 9).", (out, err)
    rows = list(EngagementEvent.objects.filter(render=render).exclude(event_type="share_created")
                .order_by("user_agent", "traffic").values_list("actor_kind", "traffic", "machine_reason",
                                                               "traffic_given"))
    assert sorted(rows, key=str) == sorted([
        ("recipient", "machine", "bot", False), ("recipient", "human", None, False),
        ("recipient", "machine", "prefetch", True), ("recipient", "human", None, True),
        ("recipient", "machine", "privacy_proxy", False), ("partner", "human", None, False),
    ], key=str)
    machines = summary(api, render, "machine")
    assert machines["counts"]["viewed"] == 2 and machines["counts"]["email_opened"] == 1
    assert machines["linkOpens"] == 2
    assert summary(api, render, "human")["counts"]["viewed"] == 3
