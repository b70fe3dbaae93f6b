"""Section 5: `seed_demo` fills a demo project, is safe to run again, and its printed curl lines work."""

import json
import re
import shlex
import stat
from datetime import timedelta
from io import StringIO
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.core.management import call_command
from django.db.models import Count, Max, Min

from apikeys.models import ApiKey, Project
from demo import data
from demo.keys import DEMO_KEYS_KEPT_PER_LABEL
from engagement_platform.clock import now
from renders.models import ActorKind, EngagementEvent, EventType, Render, RenderEmail, Share
from reports.models import Channel, DailyFirstTouch, DailyRollup, Message, MessageEvent

pytestmark = pytest.mark.django_db

BASE_URL = "http://demo.test:8000"
COUNTED = [Project, Render, Share, EngagementEvent, RenderEmail, Channel, Message, MessageEvent, DailyRollup,
           DailyFirstTouch]


def seed(**options) -> list[str]:
    out = StringIO()
    call_command("seed_demo", base_url=BASE_URL, stdout=out, **options)
    return out.getvalue().splitlines()


def counts() -> dict[str, int]:
    figures = {model.__name__: model.objects.count() for model in COUNTED}
    figures["active keys"] = ApiKey.objects.filter(revoked_at__isnull=True).count()
    return figures


def demo_project() -> Project:
    return Project.objects.get(name=data.DEMO_PROJECT_NAME)


@pytest.fixture(autouse=True)
def keys_file(settings, tmp_path) -> Path:
    """The default keys file (var/demo-keys.json under BASE_DIR) of a checkout of this test's own."""
    settings.BASE_DIR = tmp_path
    return tmp_path / "var" / "demo-keys.json"


def printed_keys(output: list[str]) -> list[str]:
    return re.findall(r"ck_live_[A-Za-z0-9_-]+", "\n".join(output))


def answers(client, raw_key) -> int:
    return client.get("/v1/renders", HTTP_AUTHORIZATION=f"Bearer {raw_key}").status_code


def test_running_seed_demo_twice_changes_no_counts():
    seed()
    after_first = counts()
    sent_mail = len(mail.outbox)

    second_output = seed()

    assert counts() == after_first
    assert len(mail.outbox) == sent_mail == 1
    assert "(0 new events of" in "\n".join(second_output)
    assert after_first["active keys"] == len(data.DEMO_KEY_SCOPES)


def test_a_second_run_keeps_the_first_runs_keys_working_and_prints_them_again(client, keys_file):
    first_output = seed()
    first_key = first_output[-1]
    assert answers(client, first_key) == 200

    second_output = seed()

    assert answers(client, first_key) == 200
    assert second_output[-1] == first_key
    assert printed_keys(second_output) == printed_keys(first_output)
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 0
    assert f"keys of an earlier run, still working, kept in {keys_file} (0600)" in "\n".join(second_output)


def test_the_raw_demo_keys_are_kept_in_an_owner_only_file_per_project_and_never_in_the_database(keys_file):
    output = seed()

    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    kept = json.loads(keys_file.read_text())
    assert kept == {str(demo_project().id): dict(zip(data.DEMO_KEY_SCOPES, _labelled(output), strict=True))}
    assert kept[str(demo_project().id)]["all"] == output[-1]
    for raw_key in kept[str(demo_project().id)].values():
        stored = ApiKey.objects.get(prefix=raw_key[:16])
        assert raw_key not in {str(getattr(stored, field.attname)) for field in ApiKey._meta.concrete_fields}


def _labelled(output: list[str]) -> list[str]:
    """The printed keys in DEMO_KEY_SCOPES order (the full-scope one is the `export KEY=` line)."""
    by_scopes = {line.split(": ")[0].strip(): line.rsplit(": ", 1)[1] for line in output
                 if line.strip().startswith("key with ")}
    full = next(line.split("=", 1)[1] for line in output if line.strip().startswith("export KEY="))
    keys = {"all": full}
    for label, scopes in data.DEMO_KEY_SCOPES.items():
        if label != "all":
            keys[label] = by_scopes["key with " + ", ".join(scopes)]
    return [keys[label] for label in data.DEMO_KEY_SCOPES]


def test_a_kept_key_that_was_revoked_is_replaced_and_the_others_are_kept(client, keys_file):
    first = dict(zip(data.DEMO_KEY_SCOPES, _labelled(seed()), strict=True))
    call_command("revokeapikey", first["ingest"], stdout=StringIO())

    second = dict(zip(data.DEMO_KEY_SCOPES, _labelled(output := seed()), strict=True))

    assert second["ingest"] != first["ingest"]
    assert {label: key for label, key in second.items() if label != "ingest"} == \
        {label: key for label, key in first.items() if label != "ingest"}
    assert answers(client, second["all"]) == 200
    assert json.loads(keys_file.read_text())[str(demo_project().id)] == second
    assert "new keys for ingest, the others of an earlier run" in "\n".join(output)


def test_a_malformed_keys_file_is_replaced_by_new_working_keys(client, keys_file):
    keys_file.parent.mkdir(parents=True)
    keys_file.write_text("[not json")

    output = seed()

    assert answers(client, output[-1]) == 200
    assert json.loads(keys_file.read_text())[str(demo_project().id)]["all"] == output[-1]


def test_without_a_keys_file_each_run_issues_keys_and_earlier_ones_keep_working_up_to_the_bound(client, keys_file):
    runs = [seed(no_keys_file=True)[-1] for _ in range(DEMO_KEYS_KEPT_PER_LABEL + 1)]

    assert len(set(runs)) == len(runs)
    assert not keys_file.exists()
    assert [answers(client, key) for key in runs] == [401] + [200] * DEMO_KEYS_KEPT_PER_LABEL
    for label in data.DEMO_KEY_SCOPES:
        usable = ApiKey.objects.filter(name=f"demo: {label}", revoked_at__isnull=True)
        assert usable.count() == DEMO_KEYS_KEPT_PER_LABEL


def test_an_unwritable_keys_file_still_prints_working_keys(client, keys_file):
    keys_file.mkdir(parents=True)  # a directory where the file should be: it cannot be written

    output = seed()

    assert answers(client, output[-1]) == 200
    assert "not kept on disk: the next run issues others" in "\n".join(output)


# The demo's timeline ------------------------------------------------------------------------


def test_every_demo_event_and_share_is_at_or_after_its_renders_creation():
    seed()
    project = demo_project()

    renders = {render.id: render.created_at for render in Render.objects.filter(project=project)}
    assert len(renders) == len(data.DEMO_RENDERS)
    events = EngagementEvent.objects.filter(project=project)
    partner_types = {event_type for _, event_type, _, _ in data.PARTNER_ACTIVITY}
    assert events.filter(actor_kind=ActorKind.PARTNER, share__isnull=True,
                         event_type__in=partner_types).count() == len(data.PARTNER_ACTIVITY)
    early_events = [(event.event_type, event.created_at) for event in events
                    if event.created_at < renders[event.render_id]]
    assert early_events == []
    early_shares = [share.label for share in Share.objects.filter(project=project)
                    if share.created_at < renders[share.render_id]]
    assert early_shares == []
    # the partner activity still spans the days the README promises
    assert now() - events.aggregate(first=Min("created_at"))["first"] > timedelta(days=8)


def test_the_render_list_shows_the_demo_renders_created_before_their_events(client):
    output = seed()
    listed = client.get("/v1/renders", HTTP_AUTHORIZATION=f"Bearer {output[-1]}").json()["data"]
    for item in listed:
        summary = client.get(f"/v1/renders/{item['id']}/engagement",
                             HTTP_AUTHORIZATION=f"Bearer {output[-1]}").json()
        assert all(event["createdAt"] >= item["createdAt"] for event in summary["recent"]), item["name"]


def test_a_rerun_dates_back_renders_of_an_older_demo_whose_events_predate_them():
    seed()
    project = demo_project()
    Render.objects.filter(project=project).update(created_at=now())  # what an older version left behind

    output = seed()

    first_events = dict(EngagementEvent.objects.filter(project=project).values_list("render")
                        .annotate(first=Min("created_at")))
    for render in Render.objects.filter(project=project):
        assert render.created_at == first_events[render.id]
    assert f"{len(data.DEMO_RENDERS)} renders dated back to their first event" in "\n".join(output)
    assert "dated back" not in "\n".join(seed())


def test_demo_has_shares_with_recipient_activity_and_an_emailed_render():
    seed()
    project = demo_project()

    recipient = EngagementEvent.objects.filter(project=project, actor_kind=ActorKind.RECIPIENT)
    by_type = dict(recipient.values_list("event_type").annotate(n=Count("id")))
    assert by_type[EventType.VIEWED] >= 3 and by_type[EventType.DOWNLOADED] >= 2 and by_type[EventType.PRINTED] >= 1
    assert by_type[EventType.EMAIL_OPENED] == 1
    assert not recipient.filter(share__isnull=True).exists()
    shares = Share.objects.filter(project=project)
    assert shares.count() == len(data.DEMO_SHARES) + 1  # the email's own share
    assert shares.filter(revoked_at__isnull=False).count() == 1
    assert set(recipient.values_list("share_id", flat=True)) == set(shares.values_list("id", flat=True))

    email = RenderEmail.objects.get(project=project)
    assert email.recipient == data.DEMO_EMAIL_RECIPIENT and email.delivered_at is not None
    assert mail.outbox[0].to == [data.DEMO_EMAIL_RECIPIENT]
    assert email.share.token in mail.outbox[0].body and mail.outbox[0].body.count(BASE_URL) >= 1
    email_events = MessageEvent.objects.filter(message__client_message_id=email.message_id)
    assert sorted(email_events.values_list("type", flat=True)) == ["clicked", "delivered", "opened", "sent"]


def test_demo_traffic_spans_six_weeks_on_two_channels_from_three_domains():
    seed()
    project = demo_project()

    emailed = RenderEmail.objects.filter(project=project).values("message_id")
    messages = Message.objects.filter(project=project).exclude(client_message_id__in=emailed)
    assert messages.values("channel").distinct().count() == 2
    assert set(messages.values_list("from_domain", flat=True)) == {
        "acme.example", "acme-mail.example", "globex.example"}
    assert set(Channel.objects.filter(project=project, external_id__in=[c for c, _ in data.DEMO_CHANNELS])
               .values_list("name", flat=True)) == {"Newsletter", "Transactional"}
    span = MessageEvent.objects.filter(project=project).aggregate(first=Min("occurred_at"), last=Max("occurred_at"))
    assert span["last"] <= now()
    assert now() - span["first"] > timedelta(days=41)
    assert now() - span["last"] < timedelta(days=1)
    types = dict(MessageEvent.objects.filter(project=project).values_list("type").annotate(n=Count("id")))
    assert types["sent"] > types["delivered"] > types["opened"] > types["clicked"] > 0


def test_seed_demo_sends_no_mail_when_the_backend_would_deliver_it(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_PORT = 1  # nothing listens there: a send attempt would fail the command

    output = seed()

    assert not RenderEmail.objects.exists()
    assert any("no demo email" in line for line in output)
    assert MessageEvent.objects.filter(project=demo_project()).count() > 1000


def curl_requests(output: list[str]) -> list[tuple[str, dict]]:
    """The printed curl lines as (URL, headers), with `$KEY` taken from the printed `export KEY=` line."""
    key = next(line.split("=", 1)[1] for line in output if line.strip().startswith("export KEY="))
    found = []
    for line in output:
        words = shlex.split(line.strip().replace("$KEY", key))
        if not words or words[0] != "curl":
            continue
        headers = dict(words[i + 1].split(": ", 1) for i, word in enumerate(words) if word == "-H")
        url = next(word for word in words[1:] if word.startswith("http"))
        found.append((url, headers))
    return found


def test_printed_curl_lines_answer_200_with_data(client):
    output = seed()

    calls = curl_requests(output)

    assert [urlsplit(url).path.rsplit("/", 1)[-1] for url, _ in calls] == ["engagement", "engagement"]
    answers = {}
    for url, headers in calls:
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == BASE_URL
        assert headers["Authorization"] == f"Bearer {output[-1]}"
        response = client.get(parts.path + ("?" + parts.query if parts.query else ""),
                              HTTP_AUTHORIZATION=headers["Authorization"])
        assert response.status_code == 200, response.content
        answers[parts.path] = response.json()
    summary = next(body for path, body in answers.items() if path.startswith("/v1/renders/"))
    report = answers["/v1/reports/engagement"]
    assert summary["total"] > 0 and summary["recent"] and summary["linkOpens"] > 0
    assert len(report["data"]) >= 4  # weekly buckets over the default 30-day window
    assert sum(bucket["sent"] for bucket in report["data"]) > 0
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT00:00:00Z", bucket["period"]) for bucket in report["data"])


def test_the_demo_has_a_link_previewers_view_as_machine_traffic(client):
    output = seed()
    [preview] = EngagementEvent.objects.filter(traffic="machine")
    assert (preview.event_type, preview.actor_kind, preview.machine_reason) == ("viewed", "recipient", "bot")
    assert preview.user_agent == data.LINK_PREVIEW_AGENT
    auth = {"HTTP_AUTHORIZATION": f"Bearer {output[-1]}"}
    path = f"/v1/renders/{preview.render_id}/engagement"
    every, human, machine = (client.get(path, {"traffic": t}, **auth).json() for t in ("all", "human", "machine"))
    assert machine["counts"]["viewed"] == 1 and machine["linkOpens"] == 1
    assert human["counts"]["viewed"] == every["counts"]["viewed"] - 1 > 0


def test_the_demo_report_has_apple_proxy_opens_and_scanner_clicks_as_machine_traffic(client):
    from reports.models import MessageEvent

    output = seed()
    reasons = set(MessageEvent.objects.filter(traffic="machine").values_list("type", "machine_reason"))
    assert {("opened", "privacy_proxy"), ("clicked", "scanner")} <= reasons
    auth = {"HTTP_AUTHORIZATION": f"Bearer {output[-1]}"}
    every, human, machine = (client.get("/v1/reports/engagement", {"traffic": t}, **auth).json()["data"]
                             for t in ("all", "human", "machine"))
    total = {name: {key: sum(bucket[key] for bucket in body) for key in ("sent", "opens", "clicks")}
             for name, body in (("all", every), ("human", human), ("machine", machine))}
    assert total["machine"]["opens"] > 0 and total["machine"]["clicks"] > 0
    assert total["human"]["opens"] + total["machine"]["opens"] == total["all"]["opens"]
    assert total["human"]["sent"] == total["all"]["sent"]  # sent is not classified
