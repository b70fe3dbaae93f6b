"""Reading depth (contract 7) against floors measured in the same run, in-process through Django's whole request
stack (middleware, keys, rate limits, DRF; no network, so the ratios are stricter than through gunicorn), on the
PostgreSQL database of DATABASE_URL, which it migrates:

- POST /s/<token>/activity (a two-page report on a visit, each request another visit) against the SELECT +
  INSERT floor view (bench/floor.py): ratio floor p50 / route p50, target >= 0.6;
- GET /s/<token>/pages/<n> of a kept page image against the constant JSON floor view: target >= 0.5;
- the first request of a page of a typical A4 PDF (the image drawn and kept): p50, target < 300 ms;
- GET /v1/renders/:id/visits and GET /v1/renders/:id/pages on a render of 1k visits and one of 100k (loaded
  by SQL with their per-page figures): p50 ratio big / small, target <= 1.3.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/<db> python bench/reading.py [--requests 300] [--big 100000]

Everything it creates lives in one project, deleted at the end.
"""

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "engagement_platform.settings")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("LOG_LEVEL", "WARNING")  # no request log lines in the timings
os.environ["BENCH_FLOOR_VIEWS"] = "1"  # the floor views, routed in this process only
os.environ.setdefault("PUBLIC_RATE_LIMIT_PER_MINUTE", str(10**9))  # one client IP asks for everything
# The shared cache production runs with (Redis): the rate limits, and the open links each worker keeps.
os.environ.setdefault("CACHE_URL", "redis://127.0.0.1:6379/12")
MEDIA = tempfile.mkdtemp(prefix="bench-reading-media-")
os.environ["MEDIA_ROOT"] = MEDIA  # the PDFs and page images, removed at the end

from demo.pdf import A4_POINTS, pages_pdf  # noqa: E402

BROWSER = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/124.0.0.0 Safari/537.36")
A4_LINES = [f"Clause {n}: the parties agree to the terms set out in schedule {n}, as amended." for n in range(1, 40)]


def setup():
    import django
    from django.core.management import call_command

    django.setup()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("DATABASE_URL must name a PostgreSQL database")
    call_command("migrate", verbosity=0)


def p50(send, count: int, *, before=None) -> float:
    """Median seconds of `count` requests (`send(i)`), after a short warm-up."""
    for i in range(10):
        if before is not None:
            before(10**6 + i)
        send(10**6 + i)
    samples = []
    for i in range(count):
        if before is not None:
            before(i)
        start = time.perf_counter()
        send(i)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def world():
    from django.core.files.uploadedfile import SimpleUploadedFile

    from apikeys.services import apikey_issue, project_create
    from renders.services import render_create
    from renders.shares import share_mint

    project = project_create(name=f"bench-reading-{secrets.token_hex(4)}", rate_limit_per_minute=10**9)
    key = apikey_issue(project=project).raw_key
    pdf = pages_pdf([(f"Agreement, page {n}", A4_LINES) for n in range(1, 11)], size=A4_POINTS)

    def new_share(name):
        render = render_create(project=project, name=name,
                               uploaded_file=SimpleUploadedFile(name, pdf, content_type="application/pdf"))
        return share_mint(render=render)

    return project, key, new_share


def load_visits(share, count: int) -> list:
    """`count` visits of `share` by SQL (started over the last day, a minute of reading on pages 1-3 each, one
    in five machine traffic), with their pages and the render's per-page figures and totals. Their ids."""
    from django.db import connection

    from renders.models import PageReading, Visit, VisitPage, VisitTotals

    visits, pages = Visit._meta.db_table, VisitPage._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {visits} (id, project_id, render_id, share_id, viewer, viewer_email, started_at, "
            f"last_activity_at, duration_ms, pages_viewed, downloaded, printed, traffic, machine_reason, source_ip, "
            f"user_agent) SELECT gen_random_uuid(), %s, %s, %s, 'viewer-' || i, '', "
            f"now() - interval '1 day' + interval '1 millisecond' * i * 86400000 / %s, "
            f"now() - interval '1 day' + interval '1 millisecond' * i * 86400000 / %s + interval '1 minute', "
            f"60000, 3, i %% 7 = 0, false, CASE WHEN i %% 5 = 0 THEN 'machine' ELSE 'human' END, "
            f"CASE WHEN i %% 5 = 0 THEN 'bot' END, '203.0.113.9', %s FROM generate_series(1, %s) AS i "
            f"RETURNING id",
            [share.project_id, share.render_id, share.pk, count, count, BROWSER, count])
        ids = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            f"INSERT INTO {pages} (project_id, render_id, visit_id, page, ms) "
            f"SELECT %s, v.render_id, v.id, p.page, p.ms FROM {visits} v, "
            f"(VALUES (1, 30000), (2, 20000), (3, 10000)) AS p(page, ms) WHERE v.render_id = %s",
            [share.project_id, share.render_id])
        figures = ((PageReading, "page, total_ms, visits"), (VisitTotals, "visits, duration_ms, completed"))
        for model, columns in figures:
            table = model._meta.db_table
            select = {PageReading: "vp.page, sum(vp.ms), count(*)", VisitTotals: "count(*), sum(v.duration_ms), 0"}
            join = f"JOIN {pages} vp ON vp.visit_id = v.id" if model is PageReading else ""
            group = ", vp.page" if model is PageReading else ""
            cursor.execute(
                f"INSERT INTO {table} (project_id, render_id, traffic, {columns}) "
                f"SELECT %s, %s, v.traffic, {select[model]} FROM {visits} v {join} WHERE v.render_id = %s "
                f"GROUP BY v.traffic{group}", [share.project_id, share.render_id, share.render_id])
        cursor.execute(f"ANALYZE {visits}")
        cursor.execute(f"ANALYZE {pages}")
    return ids


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternated route/floor rounds")
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--big", type=int, default=100_000)
    args = parser.parse_args()
    setup()
    from django.test import Client

    from apikeys.models import Project
    from renders.pdfpages import page_image_name

    project, key, new_share = world()
    rows = []

    def row(name, figure, basis, ratio=None, op="", limit=None):
        verdict = "" if ratio is None else ("ok" if (ratio >= limit if op == ">=" else ratio <= limit) else "MISS")
        rows.append((name, figure, basis, "" if ratio is None else f"{ratio:.2f} {op} {limit}", verdict))

    try:
        shares = {size: new_share(f"{size}.pdf") for size in (args.small, args.big)}
        loaded = {}
        for size, share in shares.items():
            started = time.perf_counter()
            loaded[size] = load_visits(share, size)
            print(f"loaded {size:,} visits in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        api = Client(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_USER_AGENT=BROWSER)
        page = Client(HTTP_USER_AGENT=BROWSER)
        small = shares[args.small]
        token, render = small.token, small.render

        def floor_insert(_):
            assert page.post(f"/bench/select-insert/{render.pk}").status_code == 200

        def floor_constant(_):
            assert page.get("/bench/constant").status_code == 200

        visit_ids = loaded[args.small]

        def activity(i):
            pages = '[{"page": 1, "ms": 5000}, {"page": 2, "ms": 2500}]'
            body = f'{{"visit": "{visit_ids[i % len(visit_ids)]}", "pages": {pages}}}'
            response = page.post(f"/s/{token}/activity", body, content_type="text/plain")
            assert response.status_code == 204, response.content

        page.get(f"/s/{token}/pages/1")  # kept from now on

        def kept_image(_):
            response = page.get(f"/s/{token}/pages/1")
            assert response.status_code == 200
            b"".join(response.streaming_content)

        figures = {"activity": [], "insert": [], "image": [], "constant": []}
        for _ in range(args.rounds):
            figures["insert"].append(p50(floor_insert, args.requests))
            figures["activity"].append(p50(activity, args.requests))
            figures["constant"].append(p50(floor_constant, args.requests))
            figures["image"].append(p50(kept_image, args.requests))
        med = {name: statistics.median(values) * 1e3 for name, values in figures.items()}
        row("floor: SELECT + INSERT view", f"p50 {med['insert']:.2f} ms", "in-process")
        row("POST /s/<token>/activity", f"p50 {med['activity']:.2f} ms", f"floor {med['insert']:.2f} ms",
            med["insert"] / med["activity"], ">=", 0.6)
        row("floor: constant JSON view", f"p50 {med['constant']:.2f} ms", "in-process")
        row("GET /s/<token>/pages/1 (kept)", f"p50 {med['image']:.2f} ms", f"floor {med['constant']:.2f} ms",
            med["constant"] / med["image"], ">=", 0.5)

        storage = render.file.storage
        first_requests = max(10, args.requests // 10)

        def forget(i):
            storage.delete(page_image_name(render, 1 + i % 10))

        def first_render(i):
            response = page.get(f"/s/{token}/pages/{1 + i % 10}")
            assert response.status_code == 200
            b"".join(response.streaming_content)

        first = p50(first_render, first_requests, before=forget) * 1e3
        row("first GET of an A4 page (drawn, kept)", f"p50 {first:.1f} ms", "< 300 ms target",
            first / 300, "<=", 1.0)

        for route in ("visits", "pages"):
            timed = {}
            for size, share in shares.items():
                def read(_, render_id=share.render_id, route=route):
                    response = api.get(f"/v1/renders/{render_id}/{route}")
                    assert response.status_code == 200, response.content

                timed[size] = p50(read, args.requests) * 1e3
            row(f"GET /v1/renders/:id/{route}", f"p50 {timed[args.small]:.2f} ms at {args.small:,}, "
                f"{timed[args.big]:.2f} ms at {args.big:,}", "big / small", timed[args.big] / timed[args.small],
                "<=", 1.3)
    finally:
        Project.objects.filter(pk=project.pk).delete()
        shutil.rmtree(MEDIA, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"\nReading depth (median of {args.rounds} rounds of {args.requests} requests; in-process)")
    for name, figure, basis, ratio, verdict in rows:
        print(f"{name:{width}}  {figure:38} {basis:22} {ratio:14} {verdict}")


if __name__ == "__main__":
    main()
