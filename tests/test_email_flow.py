"""CONTRACT 2.5: emailing a render, its open pixel and tracked link, in both APIs. HTTP only; mail in locmem."""

import email.policy
import re
import smtplib
import uuid
from datetime import timedelta
from email.parser import BytesParser
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend

from engagement_platform.clock import now as clock_now
from renders.emails import TRANSPARENT_GIF
from renders.models import Share
from tests.sharing import engagement, mint, token_of

DAY = {"from": "2026-05-03T00:00:00Z", "to": "2026-05-04T00:00:00Z", "group_by": "day"}
REPORT_FIGURES = ("sent", "delivered", "opens", "unique_opens", "clicks", "unique_clicks")


class RefusingBackend(BaseEmailBackend):
    """A mail server that is down."""

    def send_messages(self, email_messages):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")


class SilentlyDroppingBackend(BaseEmailBackend):
    """A backend that accepts the call but sends nothing."""

    def send_messages(self, email_messages):
        return 0


@pytest.fixture(autouse=True)
def locmem_mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = "Documents <documents@acme.example>"
    settings.PUBLIC_BASE_URL = ""


def send(api, render, **body):
    body.setdefault("to", "alice@example.com")
    return api.post(f"/v1/renders/{render.id}/emails", body, format="json")


def report(api, **query) -> list[dict]:
    response = api.get("/v1/reports/engagement", {**DAY, **query})
    assert response.status_code == 200, response.content
    return response.json()["data"]


def figures(buckets) -> dict:
    assert len(buckets) <= 1
    return {name: buckets[0][name] if buckets else 0 for name in REPORT_FIGURES}


def urls_in(message) -> dict:
    """The tracked link from the text part, and the link and pixel from the HTML part."""
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    [text_link] = re.findall(r"https?://\S+/c/[A-Za-z0-9_-]+", message.body)
    html_links = set(re.findall(r'href="(https?://[^"]+/c/[A-Za-z0-9_-]+)"', html))
    [pixel] = re.findall(r'<img src="(https?://[^"]+/t/[A-Za-z0-9_-]+\.gif)"', html)
    assert html_links == {text_link}
    return {"link": text_link, "pixel": pixel}


def path_of(url: str) -> str:
    return urlsplit(url).path


def test_an_emailed_render_shows_in_the_engagement_summary_and_in_the_report(api, client, render, clock):
    response = send(api, render, to="Alice@Example.com", subject="Your quote", message="Hi Alice,\nhere it is.")

    assert response.status_code == 201, response.content
    sent = response.json()
    assert set(sent) == {"emailId", "shareId", "messageId"}
    assert uuid.UUID(sent["emailId"]).version == 7 and uuid.UUID(sent["shareId"]).version == 7
    [message] = mail.outbox
    assert message.to == ["Alice@Example.com"]
    assert message.subject == "Your quote"
    assert message.from_email == "Documents <documents@acme.example>"
    assert message.extra_headers["Message-ID"] == f"<{sent['messageId']}>"
    assert "Hi Alice,\nhere it is." in message.body
    urls = urls_in(message)
    assert urls["link"].startswith("http://testserver/c/") and urls["pixel"].startswith("http://testserver/t/")

    pixel = client.get(path_of(urls["pixel"]))
    click = client.get(path_of(urls["link"]))
    page = client.get(click["Location"])

    assert (pixel.status_code, pixel["Content-Type"], pixel.content) == (200, "image/gif", TRANSPARENT_GIF)
    assert click.status_code == 302 and click["Location"] == "/s/" + path_of(urls["link"]).removeprefix("/c/")
    assert page.status_code == 200
    summary = engagement(api, render)
    assert {key: summary["counts"][key] for key in ("email_sent", "email_opened", "share_created", "viewed")} == \
        {"email_sent": 1, "email_opened": 1, "share_created": 1, "viewed": 1}
    assert summary["linkOpens"] == 1 and summary["total"] == 4
    actors = {event["eventType"]: (event["actorKind"], event["shareId"]) for event in summary["recent"]}
    assert actors == {
        "share_created": ("system", sent["shareId"]),
        "email_sent": ("partner", sent["shareId"]),
        "email_opened": ("recipient", sent["shareId"]),
        "viewed": ("recipient", sent["shareId"]),
    }
    [day] = report(api)
    assert day["period"] == "2026-05-03T00:00:00Z"
    assert figures([day]) == {"sent": 1, "delivered": 1, "opens": 1, "unique_opens": 1, "clicks": 1,
                              "unique_clicks": 1}


def test_the_email_share_is_listed_with_the_renders_shares(api, render):
    sent = send(api, render).json()

    [share] = api.get(f"/v1/renders/{render.id}/shares").json()["data"]

    assert share["id"] == sent["shareId"]
    assert share["label"] == "Email to alice@example.com"
    assert urls_in(mail.outbox[0])["link"].endswith("/c/" + token_of(share))


def test_opens_count_every_fetch_and_unique_opens_each_recipient_once_a_day(api, client, render, clock):
    send(api, render)
    pixel = path_of(urls_in(mail.outbox[0])["pixel"])

    for _ in range(3):
        client.get(pixel)

    assert engagement(api, render)["counts"]["email_opened"] == 3
    assert figures(report(api))["opens"] == 3
    assert figures(report(api))["unique_opens"] == 1


def test_the_pixel_is_a_1x1_gif_never_cached_the_same_for_any_token(api, client, render, clock):
    send(api, render)
    known = client.get(path_of(urls_in(mail.outbox[0])["pixel"]))
    link_only = client.get(f"/t/{token_of(mint(api, render))}.gif")  # a share that was never emailed
    unknown = client.get("/t/" + "A" * 32 + ".gif")
    malformed = client.get("/t/not.a-token.gif")

    for response in (known, link_only, unknown, malformed):
        assert response.status_code == 200
        assert response.content == TRANSPARENT_GIF
        assert response["Content-Type"] == "image/gif"
        assert response["Cache-Control"] == "no-store"
        assert response["Referrer-Policy"] == "no-referrer"
    assert TRANSPARENT_GIF[:6] == b"GIF89a" and TRANSPARENT_GIF[6:10] == b"\x01\x00\x01\x00"
    assert engagement(api, render)["counts"]["email_opened"] == 1
    assert figures(report(api))["opens"] == 1


def test_unknown_or_non_email_tokens_record_no_open_and_no_click(api, client, render, clock):
    link_only = token_of(mint(api, render))
    for token in (link_only, "A" * 32):
        assert client.get(f"/t/{token}.gif").status_code == 200
        click = client.get(f"/c/{token}")
        assert (click.status_code, click["Location"]) == (302, f"/s/{token}")

    assert engagement(api, render)["counts"]["email_opened"] == 0
    assert report(api) == []
    assert client.get("/s/" + "A" * 32).status_code == 404


def end_share(api, render, share_id, how, clock):
    """Revoke the email's share, or let it expire."""
    if how == "revoked":
        assert api.delete(f"/v1/renders/{render.id}/shares/{share_id}").status_code == 200
    else:
        Share.objects.filter(pk=share_id).update(expires_at=clock_now() + timedelta(minutes=1))
        clock.shift(120)


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_the_pixel_of_a_revoked_or_expired_share_answers_the_gif_and_records_no_open(api, client, render, clock,
                                                                                      how):
    sent = send(api, render).json()
    pixel = path_of(urls_in(mail.outbox[0])["pixel"])
    end_share(api, render, sent["shareId"], how, clock)

    response = client.get(pixel)

    assert (response.status_code, response["Content-Type"], response.content) == (200, "image/gif", TRANSPARENT_GIF)
    assert response["Cache-Control"] == "no-store"
    assert engagement(api, render)["counts"]["email_opened"] == 0
    assert figures(report(api))["opens"] == 0 and figures(report(api))["unique_opens"] == 0


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_the_link_of_a_revoked_or_expired_share_is_the_410_page_and_records_no_click(api, client, render, clock,
                                                                                     how):
    sent = send(api, render).json()
    link = path_of(urls_in(mail.outbox[0])["link"])
    end_share(api, render, sent["shareId"], how, clock)

    click = client.get(link)

    assert click.status_code == 410
    assert "text/html" in click["Content-Type"]
    assert b"no longer available" in click.content
    assert figures(report(api))["clicks"] == 0 and figures(report(api))["unique_clicks"] == 0
    assert engagement(api, render)["counts"]["viewed"] == 0


def test_links_use_public_base_url_when_set(api, render, settings):
    settings.PUBLIC_BASE_URL = "https://docs.example.com"

    send(api, render)

    urls = urls_in(mail.outbox[0])
    assert urls["link"].startswith("https://docs.example.com/c/")
    assert urls["pixel"].startswith("https://docs.example.com/t/")


def test_sender_and_channel_come_from_the_request(api, render, clock):
    channel = "0193c2c3-0000-7000-8000-000000000001"

    response = send(api, render, **{"from": "quotes@sales.example", "channel": channel})

    assert response.status_code == 201
    assert mail.outbox[0].from_email == "quotes@sales.example"
    assert response.json()["messageId"].endswith("@sales.example")
    assert figures(report(api, channel=channel))["delivered"] == 1
    assert figures(report(api, identity="sales.example"))["sent"] == 1
    assert report(api, identity="acme.example") == []


def test_without_sender_or_channel_the_defaults_are_used(api, render, clock):
    response = send(api, render)

    assert response.status_code == 201
    assert response.json()["messageId"].endswith("@acme.example")
    assert figures(report(api, identity="acme.example"))["delivered"] == 1
    assert mail.outbox[0].subject == "Quote was shared with you"


@pytest.mark.parametrize("name, subject", [
    ("Q3\r\nBcc: eve@example.com.pdf", "Q3 Bcc: eve@example.com was shared with you"),
    ("Line\u2028separated\x1bname.pdf", "Line separated name was shared with you"),
    ("  \n\t.pdf", "A document was shared with you"),
])
def test_the_default_subject_is_one_header_line_whatever_the_render_name(api, render, name, subject):
    render.name = name
    render.save(update_fields=["name"])

    response = send(api, render)

    assert response.status_code == 201
    assert mail.outbox[0].subject == subject
    assert mail.outbox[0].message()["Subject"] == subject


def test_a_very_long_render_name_gives_a_shortened_default_subject(api, render):
    render.name = "x" * 251 + ".pdf"
    render.save(update_fields=["name"])

    response = send(api, render)

    assert response.status_code == 201
    subject = mail.outbox[0].subject
    assert len(subject) == 255
    assert subject == "x" * 234 + "… was shared with you"


def test_the_note_is_escaped_in_the_html_part(api, render):
    send(api, render, message='<script>alert("x")</script>')

    [(html, _)] = mail.outbox[0].alternatives
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_a_mail_backend_failure_answers_email_failed_and_records_no_delivery(api, render, settings, clock):
    settings.EMAIL_BACKEND = "tests.test_email_flow.RefusingBackend"

    response = send(api, render)

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "email_failed" and error["requestId"] == response["X-Request-Id"]
    summary = engagement(api, render)
    assert summary["counts"]["email_sent"] == 0
    assert summary["counts"]["share_created"] == 1
    assert figures(report(api)) == {"sent": 1, "delivered": 0, "opens": 0, "unique_opens": 0, "clicks": 0,
                                    "unique_clicks": 0}


def test_a_backend_that_sends_nothing_is_a_failure_too(api, render, settings, clock):
    settings.EMAIL_BACKEND = "tests.test_email_flow.SilentlyDroppingBackend"

    response = send(api, render)

    assert response.status_code == 502
    assert figures(report(api))["delivered"] == 0


@pytest.mark.parametrize(("body", "field"), [
    ({}, "to"),
    ({"to": "not-an-address"}, "to"),
    ({"to": "Alice <alice@example.com>"}, "to"),
    ({"to": ["alice@example.com"]}, "to"),
    ({"to": "alice@example.com", "cc": "bob@example.com"}, "cc"),
    ({"to": "alice@example.com", "subject": "Hi\r\nBcc: eve@example.com"}, "subject"),
    ({"to": "alice@example.com", "subject": "x" * 201}, "subject"),
    ({"to": "alice@example.com", "subject": "Invoice\u000bReply-To : x@evil.test"}, "subject"),
    ({"to": "alice@example.com", "subject": "Line\u2028break"}, "subject"),
    ({"to": "a@[127.0.0.1]"}, "to"),
    ({"to": "a@localhost"}, "to"),
    ({"to": "alice@example.com", "from": "a@[127.0.0.1]"}, "from"),
    ({"to": "alice@example.com", "from": "a@localhost"}, "from"),
    ({"to": "alice@example.com", "message": 42}, "message"),
    ({"to": "alice@example.com", "from": "nobody"}, "from"),
    ({"to": "alice@example.com", "channel": "not-a-uuid"}, "channel"),
])
def test_a_bad_email_body_is_invalid_request_and_sends_nothing(api, render, body, field):
    response = api.post(f"/v1/renders/{render.id}/emails", body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert field in response.json()["error"]["issues"]["fieldErrors"]
    assert mail.outbox == []
    assert engagement(api, render)["total"] == 0


def test_an_empty_email_body_is_invalid_json(api, render):
    response = api.post(f"/v1/renders/{render.id}/emails")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_a_foreign_render_answers_404_and_nothing_is_sent(api, make_project, make_render):
    foreign = make_render(make_project("globex"))

    response = send(api, foreign)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert mail.outbox == []


def test_emailing_needs_renders_write(project, render, make_key, make_client):
    reader = make_client(make_key(project, scopes=["renders.read", "reports.view"]).raw_key)

    response = send(reader, render)

    assert response.status_code == 403
    assert mail.outbox == []


def test_operators_see_emails_read_only_in_the_admin(api, render, admin_client):
    send(api, render)

    listing = admin_client.get("/admin/renders/renderemail/")

    assert listing.status_code == 200
    assert b"alice@example.com" in listing.content
    assert admin_client.get("/admin/renders/renderemail/add/").status_code == 403


# -- nothing a caller sends adds or splits a header ---------------------------------------------------------

# Every control character (category Cc) and the line and paragraph separators (Zl, Zp), which mail parsers
# split header lines on: each is refused anywhere in a subject.
LINE_BREAKERS = ["\r", "\n", "\r\n", "\t", "\x00", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x7f", "\x85",
                 "\u2028", "\u2029", "\x1b"]


@pytest.mark.parametrize("breaker", LINE_BREAKERS, ids=[f"U+{ord(c[0]):04X}" for c in LINE_BREAKERS])
def test_a_subject_holding_a_control_character_or_line_separator_is_refused(api, render, breaker):
    response = send(api, render, subject=f"Invoice{breaker}Reply-To : x@evil.test")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert list(error["issues"]["fieldErrors"]) == ["subject"]
    assert mail.outbox == []
    assert engagement(api, render)["total"] == 0


def test_a_subject_of_200_characters_is_sent_and_201_is_refused(api, render):
    assert send(api, render, subject="x" * 201).status_code == 400
    assert mail.outbox == []

    assert send(api, render, subject="x" * 200).status_code == 201
    assert mail.outbox[0].subject == "x" * 200


UNROUTABLE = [
    "a@[127.0.0.1]",
    "a@[IPv6:::1]",
    "a@localhost",
    "a@LOCALHOST",
    "a@mail.localhost",
    "a@intranet",
    '"x\x0bBcc: eve@evil.test"@example.com',
    '"x\x0cy"@example.com',
    "İ@example.com",
    "a@" + "\u00e9" * 64 + ".com",
]


@pytest.mark.parametrize("field", ["to", "from"])
@pytest.mark.parametrize("address", UNROUTABLE)
def test_an_address_a_mail_server_cannot_route_is_refused(api, render, field, address):
    body = {"to": "alice@example.com", field: address}

    response = send(api, render, **body)

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_request"
    assert list(response.json()["error"]["issues"]["fieldErrors"]) == [field]
    assert mail.outbox == []
    assert engagement(api, render)["total"] == 0


# Lower-cased, "İ" is two code points: these fit the columns as sent and overflow them as stored.
LONG_WHEN_LOWERED = [
    "a@" + "İ" * 63 + "." + "İ" * 63 + ".com",
    "a@" + ".".join(["İ" * 10] * 12) + ".com",
]


@pytest.mark.parametrize("field", ["to", "from"])
@pytest.mark.parametrize("address", LONG_WHEN_LOWERED, ids=["two-long-labels", "twelve-short-labels"])
def test_an_address_longer_than_its_column_once_lower_cased_is_refused_and_nothing_stored(api, render, clock,
                                                                                          field, address):
    assert len(address) <= 254 < len(address.lower())

    response = send(api, render, **{"to": "alice@example.com", field: address})

    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["issues"]["fieldErrors"]) == [field]
    assert "lower-cased" in response.json()["error"]["issues"]["fieldErrors"][field][0]
    assert mail.outbox == []
    assert engagement(api, render)["total"] == 0
    assert api.get(f"/v1/renders/{render.id}/shares").json()["data"] == []
    assert report(api) == []


def test_an_international_domain_is_sent(api, render):
    response = send(api, render, to="anna@münchen.example", **{"from": "büro@straße.example".replace("ü", "u")})

    assert response.status_code == 201, response.content
    assert mail.outbox[0].message()["To"] == "anna@xn--mnchen-3ya.example"


PLATFORM_HEADERS = {"Content-Type", "MIME-Version", "Subject", "From", "To", "Date", "Message-ID"}
ACCEPTED_HOSTILE_SUBJECTS = [
    "Invoice Reply-To : x@evil.test",
    "Bcc: eve@evil.test",
    "Hi: there: Cc: eve@evil.test",
    "=?utf-8?b?QmNjOiBldmVAZXZpbC50ZXN0?=",
    "Ünïcödé 😀 " * 10,
    "word " * 40,
    "x" * 200,
    "\u202eevil",
    "a\u00a0b\u3000c",
]
REFUSED_HOSTILE_SUBJECTS = [f"Invoice{c}Reply-To : x@evil.test" for c in LINE_BREAKERS]
HOSTILE_ADDRESSES = UNROUTABLE + LONG_WHEN_LOWERED + [
    "alice@example.com\r\nBcc: eve@evil.test",
    "alice@example.com\nBcc: eve@evil.test",
    "alice@example.com, eve@evil.test",
    "alice@example.com\x0bBcc: eve@evil.test",
    "Eve <eve@evil.test>",
    "alice@example.com\x85",
    "alice@example.com\u2028Bcc: eve@evil.test",
]


def sent_headers(message) -> list[tuple[str, str]]:
    """The message as the mail server gets it, parsed by a strict parser: its headers, in order."""
    parsed = BytesParser(policy=email.policy.strict).parsebytes(message.message().as_bytes())
    assert not parsed.defects
    return [(name, str(value)) for name, value in parsed.items()]


def assert_platform_headers_only(message, *, subject=None, to="alice@example.com"):
    headers = sent_headers(message)
    names = [name for name, _ in headers]
    assert sorted(names) == sorted(PLATFORM_HEADERS), names  # each exactly once, nothing added
    values = dict(headers)
    assert values["To"] == to
    if subject is not None:  # folding may move words to continuation lines: compare the words
        assert values["Subject"].split() == subject.split()


@pytest.mark.parametrize("subject", ACCEPTED_HOSTILE_SUBJECTS + REFUSED_HOSTILE_SUBJECTS)
def test_no_subject_adds_or_splits_a_header(api, render, subject):
    response = send(api, render, subject=subject)

    if response.status_code == 400:
        assert subject in REFUSED_HOSTILE_SUBJECTS
        assert mail.outbox == []
        return
    assert response.status_code == 201, response.content
    [message] = mail.outbox
    assert_platform_headers_only(message, subject=None if subject.startswith("=?") else subject)


@pytest.mark.parametrize("field", ["to", "from"])
@pytest.mark.parametrize("address", HOSTILE_ADDRESSES)
def test_no_address_adds_or_splits_a_header(api, render, field, address):
    response = send(api, render, **{"to": "alice@example.com", field: address})

    if response.status_code == 400:
        assert mail.outbox == []
        return
    assert response.status_code == 201, response.content
    [message] = mail.outbox
    assert_platform_headers_only(message, to=message.to[0])
    assert "evil.test" not in dict(sent_headers(message)).get("Bcc", "")


def test_a_message_with_line_breaks_and_header_lookalikes_stays_in_the_body(api, render):
    note = "Hi Alice,\r\nBcc: eve@evil.test\r\n\r\nReply-To: x@evil.test\nSubject: changed"

    response = send(api, render, subject="Your quote", message=note)

    assert response.status_code == 201, response.content
    [message] = mail.outbox
    assert_platform_headers_only(message, subject="Your quote")
    parsed = BytesParser(policy=email.policy.strict).parsebytes(message.message().as_bytes())
    text = parsed.get_body(preferencelist=("plain",)).get_content()
    assert "Bcc: eve@evil.test" in text and "Reply-To: x@evil.test" in text and "Subject: changed" in text


def test_the_pixel_and_the_tracked_link_spend_their_shares_public_budget(api, client, render, clock, settings):
    settings.PUBLIC_RATE_LIMIT_PER_MINUTE = 3
    send(api, render)
    urls = {name: path_of(url) for name, url in urls_in(mail.outbox[0]).items()}
    page = "/s/" + urls["link"].removeprefix("/c/")
    assert client.get(urls["pixel"]).status_code == 200
    assert client.get(urls["link"]).status_code == 302
    assert client.get(page).status_code == 200

    pixel = client.get(urls["pixel"])
    click = client.get(urls["link"])

    # past the budget the pixel still answers its GIF (a mail client would show a broken image), recording nothing
    assert (pixel.status_code, pixel.content) == (200, TRANSPARENT_GIF)
    assert click.status_code == 429 and 1 <= int(click["Retry-After"]) <= 60
    assert b"Too many requests" in click.content
    assert engagement(api, render)["counts"]["email_opened"] == 1
    assert figures(report(api))["opens"] == 1 and figures(report(api))["clicks"] == 1
