"""CONTRACT 2.4 and 7.2 in a real browser: headless Chromium (Debian's package) opens a share link.

Needs `apt-get install -y chromium` (for /usr/bin/chromium) and the `playwright` Python package; never
`playwright install`. A missing browser fails the test: it is not skipped.
"""

import os
from pathlib import Path

import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from apikeys.services import apikey_issue, project_create
from demo.pdf import simple_pdf
from renders.services import render_create

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
# window.print would open a blocking dialog: count the calls instead, in whichever frame makes them.
STUB_PRINT = """
window.print = function () {
  var top = window.top;
  top.__printCalls = (top.__printCalls || 0) + 1;
};
"""

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def chromium(shared):
    """Started after `shared`: while Playwright's loop runs, this thread may not use the ORM (only HTTP)."""
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install -y chromium"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def server_closes_db_sessions():
    """The live server's request threads end their database session with each request (CONN_MAX_AGE=0).

    Kept-alive HTTP connections keep their threads alive; with persistent sessions those would still be
    connected when the test database is dropped.
    """
    settings_dict = connection.settings_dict  # shared by every thread's connection to this database
    saved = settings_dict["CONN_MAX_AGE"]
    settings_dict["CONN_MAX_AGE"] = 0
    yield
    settings_dict["CONN_MAX_AGE"] = saved


@pytest.fixture
def shared(live_server, server_closes_db_sessions):
    """A project, a key and a render, made before the browser starts; the share is minted over HTTP."""
    project = project_create(name="browser")
    raw_key = apikey_issue(project=project).raw_key
    pdf = simple_pdf("Quote Q-1042", ["40 hours of consulting.", "Valid for 30 days."])
    render = render_create(project=project, uploaded_file=SimpleUploadedFile("Quote.pdf", pdf), name="Quote.pdf")
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {raw_key}"
    response = api.post(f"{live_server.url}/v1/renders/{render.id}/shares", json={"label": "Browser"}, timeout=10)
    assert response.status_code == 201, response.text
    yield {"api": api, "render_id": str(render.id), "share": response.json(), "pdf": pdf,
           "base": live_server.url}
    api.close()


def test_a_recipient_views_downloads_and_prints_a_shared_render(chromium, shared):
    from playwright.sync_api import expect

    share, api, base = shared["share"], shared["api"], shared["base"]
    context = chromium.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    context.add_init_script(STUB_PRINT)
    page = context.new_page()
    file_responses, console_errors = [], []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    page.on("response", lambda response: file_responses.append(response) if response.url.endswith("/file") else None)

    response = page.goto(share["url"], wait_until="load")

    assert response.status == 200
    expect(page.locator("h1")).to_have_text("Quote.pdf")
    assert page.locator("iframe, embed, object").count() == 0  # the platform's reader, no browser PDF viewer
    first_page = page.locator("#reader img").first
    expect(first_page).to_be_visible()
    page.wait_for_function("() => document.querySelector('#reader img').naturalWidth === 1200")
    assert file_responses == []  # the PDF itself is never fetched to read it
    print_button = page.locator("#print-button")
    expect(print_button).to_be_visible()  # shown once the page's script has run

    with page.expect_download() as download_info:
        page.locator("#download-button").click()
    download = download_info.value
    assert download.suggested_filename == "Quote.pdf"
    assert Path(download.path()).read_bytes() == shared["pdf"]

    with page.expect_response(lambda r: r.url.endswith("/print") and r.request.method == "POST") as printed:
        print_button.click()
    assert printed.value.status == 204
    page.wait_for_function("() => window.__printCalls === 1")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "share-page.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the actions share one row
    assert page.locator("#download-button").bounding_box()["y"] == print_button.bounding_box()["y"]
    page.screenshot(path=str(ARTIFACTS / "share-page-narrow.png"))
    assert console_errors == []  # among them, any Content-Security-Policy violation

    summary = api.get(f"{base}/v1/renders/{shared['render_id']}/engagement", timeout=10).json()
    assert {key: summary["counts"][key] for key in ("viewed", "downloaded", "printed")} == \
        {"viewed": 1, "downloaded": 1, "printed": 1}
    assert summary["linkOpens"] == 1
    recipient = [event for event in summary["recent"] if event["eventType"] in ("viewed", "downloaded", "printed")]
    assert len(recipient) == 3
    assert {(event["actorKind"], event["shareId"]) for event in recipient} == {("recipient", share["id"])}
    assert all("Chrome" in (event["userAgent"] or "") for event in recipient)

    revoked = api.delete(f"{base}/v1/renders/{shared['render_id']}/shares/{share['id']}", timeout=10)
    assert revoked.status_code == 200
    gone = page.goto(share["url"])
    assert gone.status == 410
    expect(page.locator("h1")).to_have_text("This link is no longer available")
    page.screenshot(path=str(ARTIFACTS / "share-page-revoked.png"))
    assert api.get(f"{base}/v1/renders/{shared['render_id']}/engagement", timeout=10).json()["counts"]["viewed"] == 1
    context.close()
