"""CONTRACT 2.4: the public share page and its file, download and print routes (no key)."""

import re
from html.parser import HTMLParser

import pytest
from django.test import Client

from apikeys.services import project_soft_delete
from engagement_platform.ratelimit import RateLimitUnavailable
from tests.conftest import PDF_BYTES
from tests.sharing import engagement, mint, token_of

RECIPIENT_EVENTS = ("viewed", "downloaded", "printed")


@pytest.fixture(autouse=True, params=["per-process cache", "shared cache"])
def cache_kind(request):
    """Every public route twice: looked up in the database each time (a per-process cache), and with the open
    links kept by the worker under the shared keys epoch (Redis; renders/public/kept_links.py)."""
    if request.param == "shared cache":
        request.getfixturevalue("shared_cache")
    return request.param


@pytest.fixture
def share(api, render):
    return mint(api, render, label="For Alice")


@pytest.fixture
def token(share):
    return token_of(share)


def visit(client, route: str, token: str, **extra):
    """GET the page, file or download route, or POST the print route, of `token`."""
    path = f"/s/{token}" + ("" if route == "page" else f"/{route}")
    if route == "print":
        return client.post(path, **extra)
    return client.get(path, **extra)


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.inline_scripts, self.inline_styles, self.tags = [], [], 0, []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        self.refs += [attrs[name] for name in ("src", "href", "data", "action") if attrs.get(name)]
        self.inline_styles += "style" in attrs
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def parse(html: bytes) -> _Refs:
    refs = _Refs()
    refs.feed(html.decode())
    return refs


def test_the_page_shows_the_page_images_in_the_platforms_reader_with_download_and_print(client, token, render):
    response = client.get(f"/s/{token}")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = parse(response.content)
    tags = {(tag, attrs.get("id")): attrs for tag, attrs in page.tags}
    assert not [tag for tag, _ in page.tags if tag in ("iframe", "embed", "object")]  # no browser PDF viewer
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert [image["src"] for image in images] == [f"/s/{token}/pages/1"]
    assert images[0]["alt"] == "Page 1 of 1"
    assert tags[("a", "download-button")]["href"] == f"/s/{token}/download"
    assert ("button", "print-button") in tags
    reader = tags[("main", "reader")]
    assert reader["data-print-url"] == f"/s/{token}/print"
    assert reader["data-activity-url"] == f"/s/{token}/activity"
    assert reader["data-visit"]
    assert render.name in response.content.decode()
    assert b'name="viewport"' in response.content


def test_opening_the_page_records_viewed_by_the_recipient_with_the_share(client, api, token, share, render):
    client.get(f"/s/{token}", HTTP_USER_AGENT="Recipient/1.0", HTTP_X_FORWARDED_FOR="203.0.113.9, 10.0.0.1")

    summary = engagement(api, render)
    assert summary["counts"]["viewed"] == 1
    assert summary["linkOpens"] == 1
    viewed = summary["recent"][0]
    assert viewed["eventType"] == "viewed"
    assert (viewed["actorKind"], viewed["shareId"]) == ("recipient", share["id"])
    assert (viewed["sourceIp"], viewed["userAgent"]) == ("203.0.113.9", "Recipient/1.0")


def test_the_page_carries_private_headers_and_a_self_only_policy(client, token):
    response = client.get(f"/s/{token}")

    assert response["Cache-Control"] == "no-store"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "no-referrer"
    policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert "frame-src" not in policy  # the reader frames nothing
    for directive in ("script-src", "style-src", "connect-src", "img-src"):
        assert policy[directive] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert response["X-Frame-Options"] == "DENY"
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert "http" not in response["Content-Security-Policy"]


def test_the_page_uses_only_its_own_assets_and_no_inline_code(client, token):
    page = parse(client.get(f"/s/{token}").content)

    assert page.refs  # the stylesheet, the script, the viewer and the two actions
    for ref in page.refs:
        assert (ref.startswith("/") and not ref.startswith("//")) or ref == "#reader", ref
    assert page.inline_scripts == [] and page.inline_styles == 0
    assert any(ref.endswith(".js") for ref in page.refs) and any(ref.endswith(".css") for ref in page.refs)


def test_the_file_is_the_pdf_inline_and_records_nothing(client, api, token, render):
    response = client.get(f"/s/{token}/file")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith("inline")
    assert b"".join(response.streaming_content) == PDF_BYTES
    assert response["Cache-Control"] == "no-store"
    assert "frame-ancestors 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "SAMEORIGIN"  # the share page embeds it
    assert engagement(api, render)["counts"]["viewed"] == 0
    assert engagement(api, render)["total"] == 1  # share_created only


def test_download_is_an_attachment_and_records_downloaded(client, api, token, share, render):
    response = client.get(f"/s/{token}/download")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="Quote.pdf"'
    assert b"".join(response.streaming_content) == PDF_BYTES
    event = engagement(api, render)["recent"][0]
    assert (event["eventType"], event["actorKind"], event["shareId"]) == ("downloaded", "recipient", share["id"])


def test_print_answers_204_and_records_printed_without_a_csrf_token(api, token, share, render):
    browser = Client(enforce_csrf_checks=True)

    response = browser.post(f"/s/{token}/print")

    assert response.status_code == 204
    assert response.content == b""
    event = engagement(api, render)["recent"][0]
    assert (event["eventType"], event["actorKind"], event["shareId"]) == ("printed", "recipient", share["id"])


def test_print_only_accepts_post(client, api, token, render):
    assert client.get(f"/s/{token}/print").status_code == 405
    assert engagement(api, render)["counts"]["printed"] == 0


def test_head_requests_record_what_get_would_as_machine_prefetch(client, api, token, render):
    """Contract section 6 (HEAD on the public routes); tests/test_render_traffic.py has the details."""
    assert client.head(f"/s/{token}").status_code == 200
    assert client.head(f"/s/{token}/download").status_code == 200
    assert client.head(f"/s/{token}/file").status_code == 200
    body = engagement(api, render)
    assert (body["counts"]["viewed"], body["counts"]["downloaded"], body["total"]) == (1, 1, 3)
    assert [(e["eventType"], e["traffic"], e["machineReason"]) for e in api.get(
        f"/v1/renders/{render.id}/events?traffic=machine").json()["data"]] == [
        ("downloaded", "machine", "prefetch"), ("viewed", "machine", "prefetch")]


@pytest.mark.parametrize("route", RECIPIENT_EVENTS)
def test_recipient_events_are_deduped_per_ip_for_five_minutes(client, api, token, render, clock, route):
    route_name = {"viewed": "page", "downloaded": "download", "printed": "print"}[route]
    for _ in range(3):
        visit(client, route_name, token, REMOTE_ADDR="198.51.100.7")
    visit(client, route_name, token, REMOTE_ADDR="198.51.100.8")
    clock.shift(299)
    visit(client, route_name, token, REMOTE_ADDR="198.51.100.7")
    assert engagement(api, render)["counts"][route] == 2

    clock.shift(1)
    visit(client, route_name, token, REMOTE_ADDR="198.51.100.7")

    assert engagement(api, render)["counts"][route] == 3


def test_a_partner_view_and_a_recipient_view_are_not_duplicates(client, api, token, render):
    api.post(f"/v1/renders/{render.id}/events", {"eventType": "viewed"}, format="json", REMOTE_ADDR="198.51.100.7")
    client.get(f"/s/{token}", REMOTE_ADDR="198.51.100.7")

    summary = engagement(api, render)
    assert summary["counts"]["viewed"] == 2
    assert summary["linkOpens"] == 1


# Unknown, revoked, expired: 404 and 410 pages, the same for every token, nothing recorded --------

ROUTES = ("page", "file", "download", "print")
UNKNOWN_TOKENS = ("A" * 32, "ZmFrZS10b2tlbi10aGF0LWRvZXMtbm90LWV4aXN0", "short", "has.dots..and%20space", "x" * 300)


@pytest.mark.parametrize("route", ROUTES)
def test_an_unknown_token_answers_the_same_404_page_on_every_route(client, db, route):
    responses = [visit(client, route, token) for token in UNKNOWN_TOKENS]

    assert {response.status_code for response in responses} == {404}
    assert len({response.content for response in responses}) == 1
    assert b"This link doesn" in responses[0].content
    for response in responses:
        assert response["Content-Type"].startswith("text/html")
        assert response["Cache-Control"] == "no-store"
        assert response["Referrer-Policy"] == "no-referrer"
        assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("route", ROUTES)
def test_revoked_and_expired_links_answer_the_same_410_page_and_record_nothing(client, api, render, clock, route):
    revoked = mint(api, render, label="secret label")
    api.delete(f"/v1/renders/{render.id}/shares/{revoked['id']}")
    expiring = mint(api, render, expiresAt="2026-05-03T11:20:00Z")
    clock.shift(3600)
    before = engagement(api, render)

    gone = [visit(client, route, token_of(share)) for share in (revoked, expiring)]

    assert [response.status_code for response in gone] == [410, 410]
    assert gone[0].content == gone[1].content
    assert b"no longer available" in gone[0].content
    for share, response in zip((revoked, expiring), gone, strict=True):
        assert token_of(share).encode() not in response.content
        assert render.name.encode() not in response.content and b"secret label" not in response.content
        assert response["Cache-Control"] == "no-store"
    assert engagement(api, render) == before


def test_a_link_works_until_the_moment_it_expires(client, api, render, clock):
    token = token_of(mint(api, render, expiresAt="2026-05-03T10:30:00Z"))

    clock.shift(599)
    assert client.get(f"/s/{token}").status_code == 200
    clock.shift(1)
    assert client.get(f"/s/{token}").status_code == 410
    assert client.get(f"/s/{token}/download").status_code == 410

    assert engagement(api, render)["counts"]["viewed"] == 1
    assert engagement(api, render)["counts"]["downloaded"] == 0


def test_a_link_of_a_deleted_project_is_gone(client, api, project, token, render):
    project_soft_delete(project=project)

    assert client.get(f"/s/{token}").status_code == 410


def test_error_pages_reveal_nothing_about_the_token(client, api, render):
    share = mint(api, render)
    token = token_of(share)
    api.delete(f"/v1/renders/{render.id}/shares/{share['id']}")
    unknown = client.get("/s/" + "B" * len(token))
    gone = client.get(f"/s/{token}")

    for response in (unknown, gone):
        html = response.content.decode()
        assert token not in html and share["id"] not in html and str(render.id) not in html
        assert not re.search(r"expired on|revoked on|\d{4}-\d{2}-\d{2}", html)


# Source IPs behind TRUSTED_PROXIES (contract 2.3) ----------------------------------------------------------

def test_with_trusted_proxies_forged_forwarded_for_from_a_direct_client_cannot_beat_print_dedupe(
        client, api, token, render, settings):
    settings.TRUSTED_PROXIES = "127.0.0.1"

    statuses = {visit(client, "print", token, REMOTE_ADDR="203.0.113.50",
                      HTTP_X_FORWARDED_FOR=f"198.51.100.{i}", HTTP_X_REAL_IP=f"192.0.2.{i}").status_code
                for i in range(20)}

    assert statuses == {204}
    summary = engagement(api, render)
    assert summary["counts"]["printed"] == 1
    assert summary["recent"][0]["sourceIp"] == "203.0.113.50"


def test_behind_a_trusted_proxy_the_right_most_untrusted_hop_is_the_source(client, api, token, render, settings):
    settings.TRUSTED_PROXIES = "127.0.0.1, 10.0.0.0/8"

    for i in range(20):  # the client forges a hop; the proxies append the client's address and their own
        visit(client, "print", token, HTTP_X_FORWARDED_FOR=f"198.51.100.{i}, 203.0.113.7, garbage, 10.1.2.3")

    summary = engagement(api, render)
    assert summary["counts"]["printed"] == 1
    assert summary["recent"][0]["sourceIp"] == "203.0.113.7"


def test_by_default_every_peer_is_trusted_and_the_first_hop_is_the_source(client, api, token, render):
    visit(client, "print", token, REMOTE_ADDR="203.0.113.50", HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.7")

    assert engagement(api, render)["recent"][0]["sourceIp"] == "198.51.100.1"


# One budget per share and client IP for every public route (contract 2.4) -----------------------------------

@pytest.fixture
def small_budget(settings):
    settings.PUBLIC_RATE_LIMIT_PER_MINUTE = 3


def test_past_the_budget_every_route_answers_429_with_retry_after_and_records_nothing(
        client, api, token, render, clock, small_budget):
    assert visit(client, "page", token).status_code == 200
    assert visit(client, "file", token).status_code == 200
    assert visit(client, "download", token).status_code == 200
    before = engagement(api, render)

    refused = {route: visit(client, route, token) for route in ROUTES}

    for route, response in refused.items():
        assert response.status_code == 429, route
        assert 1 <= int(response["Retry-After"]) <= 60
        assert response["Cache-Control"] == "no-store"
    for route in ("page", "file", "download"):
        assert refused[route]["Content-Type"].startswith("text/html")
        assert b"Too many requests" in refused[route].content
    assert refused["print"].content == b""
    assert engagement(api, render) == before


def test_the_budget_is_per_client_ip_and_per_share(client, api, render, token, clock, small_budget):
    other = token_of(mint(api, render))
    for _ in range(3):
        visit(client, "file", token, REMOTE_ADDR="198.51.100.1")
    assert visit(client, "print", token, REMOTE_ADDR="198.51.100.1").status_code == 429

    assert visit(client, "print", token, REMOTE_ADDR="198.51.100.2").status_code == 204
    assert visit(client, "print", other, REMOTE_ADDR="198.51.100.1").status_code == 204
    assert engagement(api, render)["counts"]["printed"] == 2


def test_the_budget_comes_back_in_the_next_minute(client, api, token, render, clock, small_budget):
    for _ in range(3):
        visit(client, "file", token)
    refused = visit(client, "print", token)
    assert refused.status_code == 429

    clock.shift(int(refused["Retry-After"]))

    assert visit(client, "print", token).status_code == 204
    assert engagement(api, render)["counts"]["printed"] == 1


def test_a_forged_forwarded_for_does_not_buy_a_new_budget_behind_trusted_proxies(client, token, settings, clock,
                                                                                  small_budget):
    settings.TRUSTED_PROXIES = "127.0.0.1"
    statuses = [visit(client, "file", token, REMOTE_ADDR="203.0.113.50",
                      HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").status_code for i in range(5)]

    assert statuses == [200, 200, 200, 429, 429]


def test_when_the_shared_cache_is_down_public_routes_let_requests_through(client, api, token, render, monkeypatch,
                                                                          small_budget):
    def unreachable(**kwargs):
        raise RateLimitUnavailable("ConnectionError")

    monkeypatch.setattr("renders.public.budget.count_in_window", unreachable)
    monkeypatch.setattr("renders.public.budget.count_request", unreachable)  # the kept links' count too

    assert [visit(client, "file", token).status_code for _ in range(5)] == [200] * 5
    assert visit(client, "print", token).status_code == 204
    assert engagement(api, render)["counts"]["printed"] == 1
