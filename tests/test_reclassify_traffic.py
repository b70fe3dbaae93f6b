"""CONTRACT 6 `reclassify_traffic`: the current rules applied to stored events of both surfaces, with what is
known now; counters and rollups equal a recomputation afterwards; given classes kept; idempotent."""

import re
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import Client

from reports.models import MessageEvent
from tests.test_reports_helpers import ingest, rollup_snapshot, wire_event
from tests.test_traffic_rules import CHROME, SAFARI_IPHONE

pytestmark = pytest.mark.django_db

WINDOW = {"from": "2026-04-03T00:00:00Z", "to": "2026-04-04T00:00:00Z"}
LAST_LINE = re.compile(r"events read (\d+), changed to machine (\d+), changed to human (\d+)\.")


def reclassify(*args) -> tuple[int, int, int]:
    out = StringIO()
    call_command("reclassify_traffic", *args, stdout=out)
    *_, last = out.getvalue().strip().splitlines()
    match = LAST_LINE.fullmatch(last)
    assert match, last
    return tuple(int(value) for value in match.groups())


def report(api, **query) -> dict:
    response = api.get("/v1/reports/engagement", {**WINDOW, **query})
    assert response.status_code == 200, response.content
    [bucket] = response.json()["data"]
    return bucket


def test_a_click_whose_delivery_arrived_later_becomes_a_scanners_and_the_rollups_follow(api, project, clock):
    ingest(project, [wire_event("clicked", "2026-04-03T09:00:03Z", message="m", userAgent=CHROME),
                     wire_event("clicked", "2026-04-03T09:30:00Z", message="m", userAgent=CHROME),
                     wire_event("opened", "2026-04-03T09:00:05Z", message="m", machine=False, userAgent=CHROME),
                     wire_event("opened", "2026-04-03T09:00:06Z", message="m2", machine=True, userAgent=CHROME)])
    ingest(project, [wire_event("delivered", "2026-04-03T09:00:00Z", message="m")])
    assert report(api, traffic="machine")["clicks"] == 0

    assert reclassify("--project", project.name) == (3, 1, 0)  # the given class is not judged

    assert list(MessageEvent.objects.filter(project=project, type="clicked").order_by("occurred_at")
                .values_list("traffic", "machine_reason")) == [("machine", "scanner"), ("human", None)]
    assert (report(api, traffic="machine")["clicks"], report(api, traffic="human")["clicks"]) == (1, 1)
    assert report(api, traffic="machine")["opens"] == 1  # `machine: true` is kept as given
    before = rollup_snapshot(project)
    call_command("rebuild_rollups", project=project.name, stdout=StringIO())
    assert rollup_snapshot(project) == before  # the rollups equal a recomputation
    assert reclassify("--project", project.name) == (3, 0, 0)  # idempotent


def test_a_changed_rule_moves_both_surfaces_and_the_summary_counters(api, project, render, settings, clock):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.PUBLIC_BASE_URL = ""
    assert api.post(f"/v1/renders/{render.id}/emails", {"to": "a@example.com"}, format="json").status_code == 201
    token = re.search(r"/t/([A-Za-z0-9_-]+)\.gif", mail.outbox[-1].alternatives[0][0]).group(1)
    for ip in ("203.0.113.5", "203.0.113.6", "198.51.100.1"):
        Client(HTTP_USER_AGENT=SAFARI_IPHONE, REMOTE_ADDR=ip).get(f"/t/{token}.gif")
    summary = api.get(f"/v1/renders/{render.id}/engagement", {"traffic": "machine"}).json()
    assert summary["counts"]["email_opened"] == 0

    settings.PRIVACY_PROXY_NETWORKS = "17.0.0.0/8,203.0.113.0/24"  # a proxy range learnt later
    assert reclassify("--project", str(project.id), "--from", "2026-05-03", "--to", "2026-05-04") == (3 + 3, 4, 0)

    summary = api.get(f"/v1/renders/{render.id}/engagement", {"traffic": "machine"}).json()
    assert summary["counts"]["email_opened"] == 2
    assert api.get(f"/v1/renders/{render.id}/engagement", {"traffic": "human"}).json()["counts"]["email_opened"] == 1
    bucket = api.get("/v1/reports/engagement", {"from": "2026-05-03T00:00:00Z", "to": "2026-05-04T00:00:00Z",
                                               "traffic": "machine"}).json()["data"][0]
    assert (bucket["opens"], bucket["unique_opens"]) == (2, 1)

    settings.PRIVACY_PROXY_NETWORKS = "17.0.0.0/8"  # and unlearnt: back to people
    assert reclassify("--project", project.name)[1:] == (0, 4)
    summary = api.get(f"/v1/renders/{render.id}/engagement", {"traffic": "machine"}).json()
    assert summary["counts"]["email_opened"] == 0


def test_days_outside_the_range_are_left_as_they_are(project, settings, clock):
    ingest(project, [wire_event("opened", "2026-04-02T09:00:00Z", userAgent="Mozilla/5.0 (X11) Custom"),
                     wire_event("opened", "2026-04-03T09:00:00Z", userAgent="Mozilla/5.0 (X11) Custom")])
    MessageEvent.objects.filter(project=project).update(traffic="machine", machine_reason="bot")  # an older rule's
    assert reclassify("--project", project.name, "--from", "2026-04-03") == (1, 0, 1)
    assert list(MessageEvent.objects.filter(project=project).order_by("occurred_at")
                .values_list("traffic", flat=True)) == ["machine", "human"]


def test_bad_arguments_are_command_errors(project):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No project"):
        call_command("reclassify_traffic", "--project", "nobody", stdout=StringIO())
    with pytest.raises(CommandError, match="Not a date"):
        call_command("reclassify_traffic", "--from", "yesterday", stdout=StringIO())
    with pytest.raises(CommandError, match="earlier"):
        call_command("reclassify_traffic", "--from", "2026-04-03", "--to", "2026-04-03", stdout=StringIO())
