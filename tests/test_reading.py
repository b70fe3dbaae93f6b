"""Contract 7 (and 2.1 pageCount, 2.4 requireEmail): pages, the reader's activity reports, visits and the
per-page figures, through the real HTTP stack."""

import json
import re
import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from demo.pdf import A4_POINTS, encrypted_pdf, no_pages_pdf, pages_pdf
from renders.models import PageReading, Visit, VisitPage, VisitTotals
from renders.pdfpages import page_image_name
from renders.services import render_create, render_delete
from renders.visits import visits_idle
from tests.conftest import assert_envelope, requires_postgres
from tests.sharing import mint, token_of

pytestmark = pytest.mark.django_db

BROWSER = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
           "Safari/537.36")
BOT = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
VISIT_FIELDS = {"id", "shareId", "viewerEmail", "startedAt", "lastActivityAt", "durationMs", "pagesViewed",
                "pageCount", "completion", "downloaded", "printed", "traffic", "sourceIp", "userAgent"}


def three_page_pdf() -> bytes:
    return pages_pdf([(f"Page {n}", [f"Line of page {n}."]) for n in (1, 2, 3)], size=A4_POINTS)


@pytest.fixture
def doc(project):
    upload = SimpleUploadedFile("Proposal.pdf", three_page_pdf(), content_type="application/pdf")
    return render_create(project=project, uploaded_file=upload, name="Proposal.pdf")


@pytest.fixture
def share(api, doc):
    return mint(api, doc, label="For Alice")


@pytest.fixture
def token(share):
    return token_of(share)


def reader_client() -> Client:
    return Client(HTTP_USER_AGENT=BROWSER, REMOTE_ADDR="203.0.113.5")


def open_reader(client, token) -> str:
    """GET the share page; the visit id from the reader's data-visit attribute."""
    response = client.get(f"/s/{token}")
    assert response.status_code == 200, response.content
    return re.search(r'data-visit="([0-9a-f-]{36})"', response.content.decode()).group(1)


def report(client, token, visit, pages, content_type="application/json"):
    body = json.dumps({"visit": visit, "pages": [{"page": p, "ms": ms} for p, ms in pages]})
    return client.post(f"/s/{token}/activity", body, content_type=content_type)


def visits(api, render, **query) -> list[dict]:
    response = api.get(f"/v1/renders/{render.id}/visits", query)
    assert response.status_code == 200, response.content
    return response.json()["data"]


def pages(api, render, **query) -> dict:
    response = api.get(f"/v1/renders/{render.id}/pages", query)
    assert response.status_code == 200, response.content
    return response.json()


# 2.1: pageCount and the PDF check ------------------------------------------------------------------------------

def upload(api, content, name="doc.pdf"):
    return api.post("/v1/renders", {"file": SimpleUploadedFile(name, content, content_type="application/pdf")},
                    format="multipart")


def test_an_upload_reports_its_page_count(api):
    response = upload(api, three_page_pdf())
    assert response.status_code == 201, response.content
    assert response.json()["pageCount"] == 3
    assert api.get(f"/v1/renders/{response.json()['id']}").json()["pageCount"] == 3


@pytest.mark.parametrize(("content", "message"), [
    (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "The file is not a readable PDF."),
    (three_page_pdf()[:200], "The file is not a readable PDF."),
    (encrypted_pdf(), "The PDF is password-protected; upload it without a password."),
], ids=["corrupt", "truncated", "password-protected"])
def test_an_unreadable_pdf_is_refused_and_nothing_is_stored(api, project, content, message):
    response = upload(api, content)
    assert_envelope(response, 400, "invalid_request", issues={"formErrors": [], "fieldErrors": {"file": [message]}})
    assert not project.renders.exists()


def test_a_pdf_without_pages_is_refused(api, project):
    response = upload(api, no_pages_pdf())
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert list(response.json()["error"]["issues"]["fieldErrors"]) == ["file"]
    assert not project.renders.exists()


# 7.1: page images ----------------------------------------------------------------------------------------------

def test_a_page_image_is_drawn_on_first_request_and_kept_in_storage(client, token, doc):
    storage, name = doc.file.storage, page_image_name(doc, 2)
    assert not storage.exists(name)

    response = client.get(f"/s/{token}/pages/2")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/webp"
    assert response["Cache-Control"] == "private, max-age=3600"
    image = b"".join(response.streaming_content)
    assert image[:4] == b"RIFF" and image[8:12] == b"WEBP"
    assert storage.exists(name)
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(image)).size[0] == 1200
    again = client.get(f"/s/{token}/pages/2")
    assert b"".join(again.streaming_content) == image


@pytest.mark.parametrize("number", [0, 4, 99999999999])
def test_a_page_out_of_range_is_404(client, token, number):
    assert client.get(f"/s/{token}/pages/{number}").status_code == 404


def test_a_page_image_records_nothing(client, api, token, doc):
    before = api.get(f"/v1/renders/{doc.id}/engagement").json()["total"]
    client.get(f"/s/{token}/pages/1")
    assert api.get(f"/v1/renders/{doc.id}/engagement").json()["total"] == before
    assert not Visit.objects.exists()


def test_a_revoked_shares_pages_are_410(client, api, share, token, doc):
    api.delete(f"/v1/renders/{doc.id}/shares/{share['id']}")
    assert client.get(f"/s/{token}/pages/1").status_code == 410


# 7.2 / 7.3: visits ---------------------------------------------------------------------------------------------

def test_the_page_starts_a_visit_and_sets_a_first_party_viewer_cookie(api, token, doc, share):
    client = reader_client()
    response = client.get(f"/s/{token}")
    visit_id = re.search(r'data-visit="([^"]+)"', response.content.decode()).group(1)

    cookie = response.cookies["ep_viewer"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/s/"
    assert not cookie["secure"]  # not HTTPS here
    [visit] = visits(api, doc)
    assert set(visit) == VISIT_FIELDS
    assert visit["id"] == visit_id
    assert visit == {**visit, "shareId": share["id"], "viewerEmail": None, "durationMs": 0, "pagesViewed": 0,
                     "pageCount": 3, "completion": 0, "downloaded": False, "printed": False, "traffic": "human",
                     "sourceIp": "203.0.113.5", "userAgent": BROWSER}
    assert visit["startedAt"] == visit["lastActivityAt"]


def test_the_viewer_cookie_is_secure_over_https(token):
    response = reader_client().get(f"/s/{token}", secure=True)
    assert response.cookies["ep_viewer"]["secure"]


def test_a_view_9_minutes_after_the_last_activity_continues_the_visit_and_11_minutes_starts_another(
        api, token, doc, clock):
    client = reader_client()
    first = open_reader(client, token)
    clock.shift(timedelta(minutes=9))
    assert open_reader(client, token) == first
    clock.shift(timedelta(minutes=9))  # 9 minutes after the second view: still the same visit
    assert report(client, token, first, [(1, 2000)]).status_code == 204
    clock.shift(timedelta(minutes=11))
    second = open_reader(client, token)

    assert second != first
    listed = visits(api, doc)
    assert [visit["id"] for visit in listed] == [second, first]  # newest first
    assert listed[1]["lastActivityAt"] == "2026-05-03T10:38:00.000Z"
    assert listed[0]["startedAt"] == "2026-05-03T10:49:00.000Z"


def test_visit_idle_minutes_is_a_setting(api, token, doc, clock, settings):
    settings.VISIT_IDLE_MINUTES = 2
    client = reader_client()
    first = open_reader(client, token)
    clock.shift(timedelta(minutes=3))
    assert open_reader(client, token) != first


def test_another_viewer_from_the_same_address_gets_a_visit_of_their_own_though_their_view_is_deduped(
        api, token, doc):
    one, other = reader_client(), reader_client()
    assert open_reader(one, token) != open_reader(other, token)
    assert api.get(f"/v1/renders/{doc.id}/engagement").json()["counts"]["viewed"] == 1  # deduped
    assert len(visits(api, doc)) == 2


def test_reading_time_lands_on_the_visit_and_the_pages(api, token, doc, clock):
    client = reader_client()
    visit = open_reader(client, token)
    clock.shift(timedelta(seconds=30))
    assert report(client, token, visit, [(1, 4000), (2, 900)]).status_code == 204
    clock.shift(timedelta(seconds=15))
    response = report(client, token, visit, [(2, 600), (3, 1500)], content_type="text/plain;charset=UTF-8")
    assert response.status_code == 204

    [listed] = visits(api, doc)
    assert (listed["durationMs"], listed["pagesViewed"], listed["completion"]) == (7000, 3, 1.0)
    assert listed["lastActivityAt"] == "2026-05-03T10:20:45.000Z"
    assert pages(api, doc) == {
        "pageCount": 3, "visits": 1, "averageDurationMs": 7000, "completionRate": 1.0,
        "data": [{"page": 1, "visits": 1, "totalMs": 4000, "averageMs": 4000},
                 {"page": 2, "visits": 1, "totalMs": 1500, "averageMs": 1500},
                 {"page": 3, "visits": 1, "totalMs": 1500, "averageMs": 1500}],
    }


def test_a_page_read_under_a_second_is_not_viewed_but_its_time_counts(api, token, doc, clock):
    client = reader_client()
    visit = open_reader(client, token)
    clock.shift(timedelta(seconds=10))
    report(client, token, visit, [(1, 3000), (3, 999)])

    [listed] = visits(api, doc)
    assert (listed["durationMs"], listed["pagesViewed"], listed["completion"]) == (3999, 1, 0.3333)
    figures = pages(api, doc)
    assert figures["completionRate"] == 0
    assert figures["data"][2] == {"page": 3, "visits": 0, "totalMs": 999, "averageMs": 0}


def test_pages_are_zero_filled_and_every_average_is_zero_without_visits(api, doc):
    assert pages(api, doc) == {
        "pageCount": 3, "visits": 0, "averageDurationMs": 0, "completionRate": 0,
        "data": [{"page": n, "visits": 0, "totalMs": 0, "averageMs": 0} for n in (1, 2, 3)],
    }


def test_averages_are_over_the_visits(api, token, doc, clock):
    for ms in (2000, 6000):
        client = reader_client()
        visit = open_reader(client, token)
        clock.shift(timedelta(seconds=20))
        report(client, token, visit, [(1, ms)])
    figures = pages(api, doc)
    assert (figures["visits"], figures["averageDurationMs"]) == (2, 4000)
    assert figures["data"][0] == {"page": 1, "visits": 2, "totalMs": 8000, "averageMs": 4000}


def test_a_forged_report_is_capped_at_the_wall_time_since_the_visit_started_plus_5_seconds(api, token, doc, clock):
    client = reader_client()
    visit = open_reader(client, token)
    clock.shift(timedelta(seconds=10))
    assert report(client, token, visit, [(1, 3_600_000), (2, 3_600_000)]).status_code == 204
    assert visits(api, doc)[0]["durationMs"] == 15_000
    assert report(client, token, visit, [(3, 10_000)]).status_code == 204  # nothing left to credit
    clock.shift(timedelta(seconds=2))
    report(client, token, visit, [(3, 10_000)])

    [listed] = visits(api, doc)
    assert listed["durationMs"] == 17_000
    assert [page["totalMs"] for page in pages(api, doc)["data"]] == [15_000, 0, 2000]


@pytest.mark.parametrize("body", [
    "not json", "[]", "null", '{"visit": "x"}', '{"pages": []}', '{"visit": 1, "pages": []}',
    '{"visit": "V", "pages": {}}', '{"visit": "V", "pages": [1]}', '{"visit": "V", "pages": [{"page": 1}]}',
    '{"visit": "V", "pages": [{"page": 1, "ms": 1.5}]}', '{"visit": "V", "pages": [{"page": "1", "ms": 1}]}',
    '{"visit": "V", "pages": [{"page": true, "ms": 1}]}', '{"visit": "V", "pages": [], "extra": 1}',
    '{"visit": "V", "pages": [{"page": 1, "ms": 1, "x": 0}]}',
], ids=lambda body: body[:40])
def test_a_report_not_of_the_shape_is_400(token, body):
    client = reader_client()
    visit = open_reader(client, token)
    response = client.post(f"/s/{token}/activity", body.replace('"V"', f'"{visit}"'),
                           content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("entry", [{"page": 0, "ms": 10}, {"page": 4, "ms": 10}, {"page": 1, "ms": -1}])
def test_a_page_out_of_range_or_a_negative_ms_is_400_and_credits_nothing(api, token, doc, entry, clock):
    client = reader_client()
    visit = open_reader(client, token)
    clock.shift(timedelta(seconds=30))
    body = json.dumps({"visit": visit, "pages": [{"page": 1, "ms": 500}, entry]})
    assert client.post(f"/s/{token}/activity", body, content_type="application/json").status_code == 400
    assert visits(api, doc)[0]["durationMs"] == 0


def test_a_report_of_another_content_type_is_400(token):
    client = reader_client()
    visit = open_reader(client, token)
    assert report(client, token, visit, [(1, 10)], content_type="application/x-www-form-urlencoded").status_code \
        == 400


def test_an_unknown_visit_or_another_shares_visit_is_404(api, token, doc):
    client = reader_client()
    other_share = token_of(mint(api, doc, label="Other"))
    visit_of_other = open_reader(client, other_share)
    assert report(client, token, str(uuid.uuid4()), [(1, 10)]).status_code == 404
    assert report(client, token, "not-a-uuid", [(1, 10)]).status_code == 404
    assert report(client, token, visit_of_other, [(1, 10)]).status_code == 404


def test_downloads_and_prints_mark_the_viewers_current_visit(api, token, doc, clock):
    client = reader_client()
    open_reader(client, token)
    clock.shift(timedelta(minutes=1))
    assert client.get(f"/s/{token}/download").status_code == 200
    [listed] = visits(api, doc)
    assert (listed["downloaded"], listed["printed"]) == (True, False)
    assert listed["lastActivityAt"] == "2026-05-03T10:21:00.000Z"
    assert client.post(f"/s/{token}/print").status_code == 204
    [listed] = visits(api, doc)
    assert (listed["downloaded"], listed["printed"]) == (True, True)


def test_a_download_without_a_visit_marks_nothing(api, token, doc):
    assert reader_client().get(f"/s/{token}/download").status_code == 200
    assert visits(api, doc) == []


def test_a_machine_viewers_visit_is_machine_and_the_filters_split_the_figures(api, token, doc, clock):
    person, bot = reader_client(), Client(HTTP_USER_AGENT=BOT, REMOTE_ADDR="198.51.100.1")
    human_visit, machine_visit = open_reader(person, token), open_reader(bot, token)
    clock.shift(timedelta(seconds=20))
    report(person, token, human_visit, [(1, 5000)])
    report(bot, token, machine_visit, [(1, 1000), (2, 2000)])

    assert [v["id"] for v in visits(api, doc, traffic="machine")] == [machine_visit]
    assert [v["id"] for v in visits(api, doc, traffic="human")] == [human_visit]
    assert len(visits(api, doc, traffic="all")) == 2
    assert visits(api, doc, traffic="machine")[0]["traffic"] == "machine"
    assert [p["totalMs"] for p in pages(api, doc, traffic="human")["data"]] == [5000, 0, 0]
    assert [p["totalMs"] for p in pages(api, doc, traffic="machine")["data"]] == [1000, 2000, 0]
    assert [p["totalMs"] for p in pages(api, doc)["data"]] == [6000, 2000, 0]
    assert pages(api, doc)["visits"] == 2 and pages(api, doc, traffic="machine")["visits"] == 1


def test_visits_filter_by_share(api, token, doc):
    other = mint(api, doc, label="Other")
    open_reader(reader_client(), token)
    open_reader(reader_client(), token_of(other))
    assert [v["shareId"] for v in visits(api, doc, shareId=other["id"])] == [other["id"]]
    assert visits(api, doc, shareId=str(uuid.uuid4())) == []


def test_visits_are_cursor_paginated_newest_first(api, token, doc, clock):
    opened = []
    for _ in range(5):
        opened.append(open_reader(reader_client(), token))
        clock.shift(timedelta(seconds=1))
    seen, cursor = [], None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = api.get(f"/v1/renders/{doc.id}/visits", query).json()
        seen += [visit["id"] for visit in body["data"]]
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert seen == opened[::-1]


@pytest.mark.parametrize(("route", "query", "field"), [
    ("visits", {"traffic": "robots"}, "traffic"), ("visits", {"shareId": "nope"}, "shareId"),
    ("visits", {"limit": "0"}, "limit"), ("visits", {"limit": "101"}, "limit"), ("visits", {"cursor": "x!"}, "cursor"),
    ("pages", {"traffic": "HUMAN"}, "traffic"),
])
def test_bad_parameters_are_400_naming_the_field(api, doc, route, query, field):
    response = api.get(f"/v1/renders/{doc.id}/{route}", query)
    assert response.status_code == 400
    assert list(response.json()["error"]["issues"]["fieldErrors"]) == [field]


def test_a_cursor_of_another_list_is_400(api, doc, token):
    for _ in range(2):
        open_reader(reader_client(), token)
    mint(api, doc)
    mint(api, doc)
    share_cursor = api.get(f"/v1/renders/{doc.id}/shares", {"limit": 1}).json()["nextCursor"]
    response = api.get(f"/v1/renders/{doc.id}/visits", {"cursor": share_cursor})
    assert response.status_code == 400
    assert "cursor" in response.json()["error"]["issues"]["fieldErrors"]


# The key's lookup, the render's, and the kept figures (a row per page and class, a row per class); the visit list
# reads the page of visits instead.
PAGES_QUERIES, VISITS_QUERIES = 4, 3


def test_the_pages_read_is_flat_in_the_number_of_visits(api, token, doc, clock, django_assert_max_num_queries):
    def read_once():
        client = reader_client()
        visit = open_reader(client, token)
        clock.shift(timedelta(seconds=5))
        report(client, token, visit, [(1, 2000), (2, 1000)])

    read_once()
    with django_assert_max_num_queries(PAGES_QUERIES):
        pages(api, doc)
    for _ in range(6):
        read_once()
    with django_assert_max_num_queries(PAGES_QUERIES):
        assert pages(api, doc)["visits"] == 7


def test_the_visit_list_reads_a_page_in_a_fixed_number_of_queries(api, token, doc, django_assert_max_num_queries):
    open_reader(reader_client(), token)
    with django_assert_max_num_queries(VISITS_QUERIES):
        visits(api, doc)
    for _ in range(5):
        open_reader(reader_client(), token)
    with django_assert_max_num_queries(VISITS_QUERIES):
        assert len(visits(api, doc)) == 6


def test_visits_idle_finds_the_visits_without_activity_for_visit_idle_minutes(token, clock):
    ended = open_reader(reader_client(), token)
    clock.shift(timedelta(minutes=5))
    going_on = open_reader(reader_client(), token)
    clock.shift(timedelta(minutes=6))
    assert [str(v.id) for v in visits_idle()] == [ended]
    clock.shift(timedelta(minutes=5))
    assert [str(v.id) for v in visits_idle()] == [ended, going_on]


# Viewer identity -----------------------------------------------------------------------------------------------

@pytest.fixture
def locmem_mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.PUBLIC_BASE_URL = ""


def test_an_emailed_shares_visits_carry_the_recipient(api, doc, locmem_mail):
    response = api.post(f"/v1/renders/{doc.id}/emails", {"to": "alice@example.com"}, format="json")
    assert response.status_code == 201, response.content
    link = re.search(r"/c/[A-Za-z0-9_-]+", mail.outbox[0].body).group(0)
    client = reader_client()
    page = client.get(link, follow=True)
    assert page.status_code == 200
    [visit] = visits(api, doc)
    assert visit["viewerEmail"] == "alice@example.com"


def test_require_email_must_be_a_boolean(api, doc):
    for bad in ("yes", 1, None, "true"):
        response = api.post(f"/v1/renders/{doc.id}/shares", {"requireEmail": bad}, format="json")
        assert response.status_code == 400, bad
        assert list(response.json()["error"]["issues"]["fieldErrors"]) == ["requireEmail"]
    assert mint(api, doc)["requireEmail"] is False


@pytest.fixture
def gated(api, doc):
    share = mint(api, doc, requireEmail=True)
    assert share["requireEmail"] is True
    assert api.get(f"/v1/renders/{doc.id}/shares").json()["data"][0]["requireEmail"] is True
    return token_of(share)


def test_a_require_email_share_asks_first_and_serves_nothing_of_the_document(api, doc, gated):
    client = Client(enforce_csrf_checks=True, HTTP_USER_AGENT=BROWSER)
    form = client.get(f"/s/{gated}")
    assert form.status_code == 200
    html = form.content.decode()
    assert 'name="csrfmiddlewaretoken"' in html and 'name="email"' in html
    assert "data-visit" not in html and "/pages/" not in html
    for route in ("pages/1", "file", "download"):
        refused = client.get(f"/s/{gated}/{route}")
        assert refused.status_code == 403, route
        assert refused["Content-Type"].startswith("text/html")
    assert client.post(f"/s/{gated}/print").status_code == 403
    assert api.get(f"/v1/renders/{doc.id}/engagement").json()["counts"]["viewed"] == 0
    assert visits(api, doc) == []


def test_the_email_form_refuses_a_post_without_its_csrf_token(api, doc, gated):
    client = Client(enforce_csrf_checks=True)
    client.get(f"/s/{gated}")
    response = client.post(f"/s/{gated}", {"email": "bob@example.com"})
    assert response.status_code == 403
    assert "ep_email" not in response.cookies


def test_an_invalid_address_shows_the_form_again_with_400(doc, gated):
    client = Client(enforce_csrf_checks=True)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', client.get(f"/s/{gated}").content.decode())
    response = client.post(f"/s/{gated}", {"email": "not an address", "csrfmiddlewaretoken": csrf.group(1)})
    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    assert "ep_email" not in response.cookies


def test_the_answered_address_opens_the_reader_and_is_kept_on_the_visit(api, doc, gated):
    client = Client(enforce_csrf_checks=True, HTTP_USER_AGENT=BROWSER)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', client.get(f"/s/{gated}").content.decode())
    answer = client.post(f"/s/{gated}", {"email": "bob@example.com", "csrfmiddlewaretoken": csrf.group(1)})
    assert answer.status_code == 303
    assert answer["Location"] == f"/s/{gated}"
    cookie = answer.cookies["ep_email"]
    assert cookie["httponly"] and cookie["path"] == f"/s/{gated}"

    assert "data-visit" in client.get(f"/s/{gated}").content.decode()
    assert client.get(f"/s/{gated}/pages/1").status_code == 200
    assert client.get(f"/s/{gated}/download").status_code == 200
    [visit] = visits(api, doc)
    assert (visit["viewerEmail"], visit["downloaded"]) == ("bob@example.com", True)
    assert api.get(f"/v1/renders/{doc.id}/engagement").json()["counts"]["viewed"] == 1


def test_a_forged_email_cookie_opens_nothing(doc, gated):
    client = Client()
    client.cookies["ep_email"] = "bob@example.com"
    assert client.get(f"/s/{gated}/pages/1").status_code == 403


# 2.1: deletion -------------------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_deleting_a_render_takes_its_page_images_visits_and_page_figures(api, token, doc, clock):
    client = reader_client()
    visit = open_reader(client, token)
    client.get(f"/s/{token}/pages/1")
    clock.shift(timedelta(seconds=5))
    report(client, token, visit, [(1, 2000)])
    storage, image = doc.file.storage, page_image_name(doc, 1)
    assert storage.exists(image)

    render_delete(render=doc)

    assert not storage.exists(image)
    for model in (Visit, PageReading, VisitTotals):
        assert not model.objects.filter(render_id=doc.pk).exists(), model.__name__
    assert not VisitPage.objects.exists()
    assert api.get(f"/v1/renders/{doc.id}/visits").status_code == 404
    assert api.get(f"/v1/renders/{doc.id}/pages").status_code == 404


# The admin: a render's visits and its reading time per page -----------------------------------------------------

def test_the_admin_shows_a_renders_visits_and_a_chart_of_reading_time_per_page(admin_client, token, doc, clock):
    from django.urls import reverse

    client = Client(HTTP_USER_AGENT=BROWSER)
    visit = open_reader(client, token)
    clock.shift(timedelta(seconds=60))
    report(client, token, visit, [(1, 12_000), (2, 30_000)])

    page = admin_client.get(reverse("admin:renders_render_change", args=[doc.pk])).content.decode()
    [chart] = [chart for chart in re.findall(r'<svg [^>]*role="img".*?</svg>', page, flags=re.S)
               if "Reading time per page" in chart]
    assert "1 visit" in chart
    assert "<title>2, Human: 30s</title>" in chart and "<title>1, Human: 12s</title>" in chart
    assert "<td>42 s</td>" in page and "<td>2/3</td>" in page
    listing = admin_client.get(reverse("admin:renders_visit_changelist"), {"render__id__exact": str(doc.pk)})
    assert listing.status_code == 200
    assert "42000" in listing.content.decode()


def test_the_migration_reads_the_page_count_of_renders_stored_before_pages_were_read(doc, project, make_render):
    import importlib

    from django.apps import apps

    from renders.models import Render

    unreadable = make_render(project, name="old.pdf")
    Render.objects.filter(pk=doc.pk).update(page_count=None, page_sizes=[])
    Render.objects.filter(pk=unreadable.pk).update(page_count=None)
    unreadable.file.storage.delete(unreadable.file.name)  # its file is gone: it keeps a null pageCount

    migration = importlib.import_module("renders.migrations.0006_reading_depth")
    migration.read_stored_page_counts(apps, None)

    doc.refresh_from_db()
    assert doc.page_count == 3 and len(doc.page_sizes) == 3
    assert Render.objects.get(pk=unreadable.pk).page_count is None


@requires_postgres
@pytest.mark.django_db(transaction=True)  # autocommit, as served: no test savepoints around the statement
def test_on_postgresql_an_activity_report_is_the_token_lookup_and_one_statement(token, clock,
                                                                                  django_assert_num_queries):
    client = reader_client()
    visit = open_reader(client, token)
    clock.shift(timedelta(seconds=30))
    with django_assert_num_queries(2):
        assert report(client, token, visit, [(1, 2000), (2, 500)]).status_code == 204
