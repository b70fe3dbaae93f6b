"""Contract section 8 in the admin: endpoints (never their secrets), their deliveries, a retry action; and the
worker's periodic-job registry."""

from django.urls import reverse

from engagement_platform import periodic
from webhooks.models import DeliveryStatus, WebhookDelivery
from webhooks.services import endpoint_create, endpoint_test


def test_the_endpoint_pages_list_endpoints_and_never_show_a_secret(admin_client, project):
    created = endpoint_create(project=project, url="https://93.184.215.14/hooks", events=["render.viewed"])
    listing = admin_client.get(reverse("admin:webhooks_webhookendpoint_changelist"))
    assert listing.status_code == 200 and b"93.184.215.14" in listing.content
    page = admin_client.get(reverse("admin:webhooks_webhookendpoint_change", args=[created.endpoint.pk]))
    assert page.status_code == 200
    assert created.secret.encode() not in listing.content + page.content


def test_the_retry_action_sends_failed_deliveries_again(admin_client, project, django_assert_max_num_queries):
    endpoint = endpoint_create(project=project, url="https://93.184.215.14/hooks", events=["render.viewed"]).endpoint
    deliveries = [endpoint_test(endpoint=endpoint) for _ in range(3)]
    WebhookDelivery.objects.update(status=DeliveryStatus.FAILED, next_attempt_at=None)
    changelist = reverse("admin:webhooks_webhookdelivery_changelist")
    with django_assert_max_num_queries(12):  # one page of deliveries with their endpoints, not a query per row
        listing = admin_client.get(changelist)
    assert listing.status_code == 200 and listing.content.count(b"webhook.test") >= 3
    response = admin_client.post(changelist, {"action": "retry_deliveries",
                                              "_selected_action": [str(d.pk) for d in deliveries[:2]]}, follow=True)
    assert response.status_code == 200
    assert sorted(WebhookDelivery.objects.values_list("status", flat=True)) == ["failed", "pending", "pending"]
    detail = admin_client.get(reverse("admin:webhooks_webhookdelivery_change", args=[deliveries[0].pk]))
    assert detail.status_code == 200


def test_the_worker_runs_each_registered_job_when_it_is_due_and_survives_a_failing_one():
    ran = []
    now = [0.0]

    def failing():
        ran.append("failing")
        raise RuntimeError("boom")

    schedule = periodic.Schedule([periodic.PeriodicJob("often", 1.0, lambda: ran.append("often")),
                                  periodic.PeriodicJob("failing", 1.0, failing),
                                  periodic.PeriodicJob("rarely", 10.0, lambda: ran.append("rarely"))],
                                 clock=lambda: now[0])
    assert schedule.run_due() == 3
    now[0] = 0.5
    assert schedule.run_due() == 0 and schedule.seconds_to_next() == 0.5
    now[0] = 1.0
    assert schedule.run_due() == 2
    assert ran == ["often", "failing", "rarely", "often", "failing"]


def test_the_webhook_jobs_are_registered_for_the_worker():
    names = {job.name for job in periodic.jobs()}
    assert {"webhook-deliveries-due", "webhook-endpoints-failing"} <= names
