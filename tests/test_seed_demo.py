"""Section 5: `seed_demo` fills a demo project, is safe to run again, and its printed curl lines work."""

import re
import shlex
from datetime import timedelta
from io import StringIO
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.core.management import call_command
from django.db.models import Count, Max, Min

from apikeys.models import ApiKey, Project
from demo import data
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


def test_running_seed_demo_twice_changes_no_counts():
    first_output = seed()
    after_first = counts()
    sent_mail = len(mail.outbox)

    second_output = seed()

    assert counts() == after_first
    assert len(mail.outbox) == sent_mail == 1
    assert "(0 new events of" in "\n".join(second_output)
    # each run prints a new full-scope key and revokes the previous one
    assert first_output[-1] != second_output[-1]
    assert ApiKey.objects.get(prefix=first_output[-1][:16]).revoked_at is not None
    assert after_first["active keys"] == len(data.DEMO_KEY_SCOPES)


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

    messages = Message.objects.filter(project=project).exclude(render__isnull=False)
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
