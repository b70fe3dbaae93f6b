"""What the traffic rules (contract section 6) cost on the hot paths, and the per-class summary at N events.

In-process, through Django's whole request stack (middleware, DRF, keys, rate limits; no network, so the
ratios are stricter than through gunicorn) on the PostgreSQL database of DATABASE_URL, which it migrates:

- POST /v1/renders/:id/events, GET /s/<token> (the share page) and GET /t/<token>.gif (the pixel) with a real
  browser user agent and a fresh source IP per request (nothing deduped): with the rules as shipped
  (`on`, verdicts kept per user agent), against the same run with them replaced by "human, no request purpose"
  (`off`), rounds alternated; and `cold`: the rules with the per-user-agent cache emptied before every request
  (every request a user agent never seen: the worst case).
- GET /v1/renders/:id/engagement?traffic=all|human|machine on a render of 1k events and one of 1M
  (a quarter of them machine traffic), loaded by SQL with their counters.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<db> python bench/traffic.py [--requests 300] [--big 1000000]

Everything it creates lives in one project, deleted at the end.
"""

import argparse
import os
import secrets
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "engagement_platform.settings")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("LOG_LEVEL", "WARNING")  # no request log lines in the timings

from demo.pdf import simple_pdf  # noqa: E402

PDF_BYTES = simple_pdf("Quote Q-1042", ["40 hours of consulting."])  # a real, readable one-page PDF
BROWSER = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/124.0.0.0 Safari/537.36")


def setup():
    import django
    from django.core.management import call_command

    django.setup()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("DATABASE_URL must name a PostgreSQL database")
    call_command("migrate", verbosity=0)


def world():
    from django.core.files.uploadedfile import SimpleUploadedFile

    from apikeys.services import apikey_issue, project_create
    from renders.emails import render_email_send
    from renders.services import render_create

    project = project_create(name=f"bench-traffic-{secrets.token_hex(4)}", rate_limit_per_minute=10**9)
    key = apikey_issue(project=project).raw_key

    def new_render(name):
        return render_create(project=project, name=name,
                             uploaded_file=SimpleUploadedFile(name, PDF_BYTES, content_type="application/pdf"))

    render = new_render("hot.pdf")
    email = render_email_send(render=render, to="reader@example.com", base_url="http://testserver")
    return project, key, render, email.share.token, new_render


class Switch:
    """The rules as shipped, or replaced by 'human, no purpose' where the recording paths call them."""

    def __init__(self):
        import renders.api.views as api_views
        import renders.public.views as public_views
        import renders.services as services
        import reports.services as report_services

        # The report side judges the pixel's `opened` message event (and tracked-link clicks) too.
        self.targets = [(services, "event_verdict"), (api_views, "request_purpose"), (public_views, "request_purpose"),
                        (report_services, "verdict_by_rules")]
        self.originals = [getattr(module, name) for module, name in self.targets]

    def rules(self, on: bool):
        from engagement_platform.traffic import HUMAN

        replacements = self.originals if on else [lambda **kw: HUMAN, lambda *a: None, lambda *a: None,
                                                  lambda **kw: HUMAN]
        for (module, name), value in zip(self.targets, replacements, strict=True):
            setattr(module, name, value)


def time_requests(send, count: int, *, before=None) -> float:
    """Median seconds of `count` requests (`send(i)`), after a short warm-up."""
    for i in range(20):
        send(10**6 + i)
    samples = []
    for i in range(count):
        if before is not None:
            before()
        start = time.perf_counter()
        send(i)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def hot_paths(key, render, token, requests: int, rounds: int) -> dict:
    from django.test import Client

    from engagement_platform.traffic import user_agent_finding

    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_USER_AGENT=BROWSER)
    page = Client(HTTP_USER_AGENT=BROWSER)
    counter = iter(range(10**9))

    def ip():
        n = next(counter)
        return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"

    def post_event(_):
        response = api.post(f"/v1/renders/{render.id}/events", b'{"eventType": "viewed"}',
                            content_type="application/json", HTTP_X_FORWARDED_FOR=ip())
        assert response.status_code == 200 and response.content == b'{"recorded":true}', response.content

    def share_page(_):
        response = page.get(f"/s/{token}", HTTP_X_FORWARDED_FOR=ip())
        assert response.status_code == 200

    def pixel(_):
        response = page.get(f"/t/{token}.gif", HTTP_X_FORWARDED_FOR=ip())
        assert response.status_code == 200

    switch = Switch()
    figures = {}
    for name, send in (("POST /v1/renders/:id/events", post_event), ("GET /s/<token>", share_page),
                       ("GET /t/<token>.gif", pixel)):
        on, off, cold = [], [], []
        for _ in range(rounds):
            switch.rules(False)
            off.append(time_requests(send, requests))
            switch.rules(True)
            on.append(time_requests(send, requests))
            cold.append(time_requests(send, requests, before=user_agent_finding.cache_clear))
        switch.rules(True)
        figures[name] = (statistics.median(off), statistics.median(on), statistics.median(cold))
    return figures


def load_events(render, count: int) -> None:
    """`count` recipient events on `render` by SQL, one in four machine traffic, with their counters."""
    from django.db import connection

    from renders.models import EngagementCounter, EngagementEvent

    events, counters = EngagementEvent._meta.db_table, EngagementCounter._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {events} (id, project_id, render_id, share_id, event_type, actor_kind, source_ip, "
            f"user_agent, metadata, created_at, traffic, machine_reason, request_purpose) "
            f"SELECT gen_random_uuid(), %s, %s, NULL, (ARRAY['viewed','downloaded','printed'])[i %% 3 + 1], "
            f"'recipient', ('10.' || ((i >> 16) & 255) || '.' || ((i >> 8) & 255) || '.' || (i & 255))::inet, "
            f"CASE WHEN i %% 4 = 0 THEN 'Slackbot 1.0' ELSE %s END, NULL, "
            f"now() - interval '1 second' * (%s - i), CASE WHEN i %% 4 = 0 THEN 'machine' ELSE 'human' END, "
            f"CASE WHEN i %% 4 = 0 THEN 'bot' END, 'direct' FROM generate_series(1, %s) AS i",
            [render.project_id, render.pk, BROWSER, count, count])
        cursor.execute(
            f"INSERT INTO {counters} (project_id, render_id, key, shard, count) "
            f"SELECT %s, %s, k, 0, count(*) FROM {events}, "
            f"LATERAL (SELECT event_type AS k UNION ALL SELECT 'machine:' || event_type WHERE traffic = 'machine') "
            f"AS keys WHERE render_id = %s GROUP BY k "
            f"ON CONFLICT (project_id, render_id, key, shard) DO UPDATE SET count = {counters}.count + excluded.count",
            [render.project_id, render.pk, render.pk])
        cursor.execute(f"ANALYZE {events}")


def summaries(key, renders: dict, requests: int) -> dict:
    from django.test import Client

    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    figures = {}
    for size, render in renders.items():
        for traffic in ("all", "human", "machine"):
            def send(_, traffic=traffic, render=render):
                response = api.get(f"/v1/renders/{render.id}/engagement", {"traffic": traffic})
                assert response.status_code == 200 and len(response.json()["recent"]) == 25

            figures[(size, traffic)] = time_requests(send, requests)
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternated on/off rounds per route")
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    args = parser.parse_args()
    setup()
    from apikeys.models import Project

    project, key, render, token, new_render = world()
    try:
        hot = hot_paths(key, render, token, args.requests, args.rounds)
        print("\nClassification on the hot paths (median ms per request, in-process, browser user agent)")
        print(f"{'route':32} {'off':>8} {'on':>8} {'on/off':>8} {'cold':>8} {'cold/off':>9}")
        for name, (off, on, cold) in hot.items():
            print(f"{name:32} {off * 1e3:8.3f} {on * 1e3:8.3f} {on / off:8.3f} {cold * 1e3:8.3f} {cold / off:9.3f}")
        sized = {}
        for size in (args.small, args.big):
            sized[size] = new_render(f"{size}.pdf")
            started = time.perf_counter()
            load_events(sized[size], size)
            print(f"\nloaded {size} events in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        flat = summaries(key, sized, args.requests)
        print("\nGET /v1/renders/:id/engagement?traffic= (median ms per request, in-process)")
        print(f"{'traffic':10} " + " ".join(f"{size:>12}" for size in sized) + f" {'big/small':>10}")
        for traffic in ("all", "human", "machine"):
            small, big = (flat[(size, traffic)] for size in sized)
            print(f"{traffic:10} {small * 1e3:12.3f} {big * 1e3:12.3f} {big / small:10.3f}")
    finally:
        Project.objects.filter(pk=project.pk).delete()


if __name__ == "__main__":
    main()
