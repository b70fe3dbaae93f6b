"""CONTRACT 7.2 / 7.3 in a real browser (Debian's Chromium through Playwright): the reader measures reading time
per page and reports it on leaving, Download and Print record one event each, the email gate, the phone layout,
keyboard use, and an accessibility check with axe-core (bundled with the pinned axe-playwright-python, injected
from disk: no CDN)."""

import time
from pathlib import Path

import axe_playwright_python
import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile

from apikeys.services import apikey_issue, project_create
from demo.pdf import A4_POINTS, pages_pdf
from renders.services import render_create
from tests.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, STUB_PRINT, chromium, server_closes_db_sessions  # noqa: F401  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# A person's browser: headless Chromium's own user agent is (rightly) machine traffic.
BROWSER = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
           "Safari/537.36")
AXE_JS = Path(axe_playwright_python.__file__).parent / "axe.min.js"
SERIOUS = ("serious", "critical")


@pytest.fixture
def shared(live_server, server_closes_db_sessions):  # noqa: F811
    """A project, a key and a three-page A4 render, made before the browser starts; shares minted over HTTP."""
    project = project_create(name="reader-browser")
    raw_key = apikey_issue(project=project).raw_key
    pdf = pages_pdf([(f"Proposal, page {n}", [f"Section {n}."]) for n in (1, 2, 3)], size=A4_POINTS)
    render = render_create(project=project, uploaded_file=SimpleUploadedFile("Proposal.pdf", pdf),
                           name="Proposal.pdf")
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {raw_key}"
    base = live_server.url

    def mint(**body):
        response = api.post(f"{base}/v1/renders/{render.id}/shares", json=body, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()

    yield {"api": api, "render_id": str(render.id), "mint": mint, "pdf": pdf, "base": base}
    api.close()


def new_page(browser, **options):
    context = browser.new_context(user_agent=BROWSER, **{"viewport": {"width": 1280, "height": 900}, **options})
    context.add_init_script(STUB_PRINT)
    page = context.new_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return context, page, errors


def visits_of(shared) -> list[dict]:
    response = shared["api"].get(f"{shared['base']}/v1/renders/{shared['render_id']}/visits", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def scroll_to_page(page, number: int) -> None:
    page.evaluate(f"document.getElementById('page-{number}').scrollIntoView({{block: 'start'}})")


def test_reading_page_two_then_leaving_lands_the_time_on_page_two(chromium, shared):  # noqa: F811
    share = shared["mint"](label="Reader")
    context, page, errors = new_page(chromium)
    opened = time.monotonic()
    page.goto(share["url"], wait_until="load")
    visit_id = page.locator("#reader").get_attribute("data-visit")
    assert page.locator("#reader img").count() == 3
    assert page.locator("#reader img").nth(2).get_attribute("loading") == "lazy"

    scroll_to_page(page, 2)
    before_scroll_ms = 1000 * (time.monotonic() - opened)
    page.wait_for_function("() => document.querySelector('#page-2 img').complete")
    time.sleep(3.0)
    started_leaving = time.monotonic()
    page.goto("about:blank")  # pagehide: the reader sends what it measured with sendBeacon

    [visit] = wait_for(lambda: [v for v in visits_of(shared) if v["durationMs"] > 0])
    assert visit["id"] == visit_id
    figures = shared["api"].get(f"{shared['base']}/v1/renders/{shared['render_id']}/pages", timeout=10).json()
    page_ms = [item["totalMs"] for item in figures["data"]]
    assert 2500 <= page_ms[1] <= 3000 + 1000 * (time.monotonic() - started_leaving) + 1500, page_ms
    assert page_ms[0] <= before_scroll_ms + 500, (page_ms, before_scroll_ms)  # page 1: only until the scroll
    assert page_ms[2] == 0
    assert visit["pagesViewed"] == sum(ms >= 1000 for ms in page_ms) and visit["traffic"] == "human"
    assert visit["durationMs"] == sum(page_ms)
    assert errors == []
    context.close()


def test_download_and_print_from_the_reader_record_exactly_one_event_each(chromium, shared):  # noqa: F811
    from playwright.sync_api import expect

    share = shared["mint"](label="Actions")
    context, page, errors = new_page(chromium, accept_downloads=True)
    page.goto(share["url"], wait_until="load")
    print_button = page.locator("#print-button")
    expect(print_button).to_be_visible()

    with page.expect_download() as download_info:
        page.locator("#download-button").click()
    assert Path(download_info.value.path()).read_bytes() == shared["pdf"]
    with page.expect_response(lambda r: r.url.endswith("/print") and r.request.method == "POST") as printed:
        print_button.click()
    assert printed.value.status == 204
    page.wait_for_function("() => window.__printCalls === 1")
    # every page image was loaded before printing, so the print holds the whole document
    assert page.evaluate("() => Array.from(document.querySelectorAll('#reader img')).every(i => i.naturalWidth)")

    api, base = shared["api"], shared["base"]
    events = api.get(f"{base}/v1/renders/{shared['render_id']}/events", params={"shareId": share["id"]},
                     timeout=10).json()["data"]
    kinds = sorted(event["eventType"] for event in events if event["actorKind"] == "recipient")
    assert kinds == ["downloaded", "printed", "viewed"]
    [visit] = visits_of(shared)
    assert (visit["downloaded"], visit["printed"]) == (True, True)
    assert errors == []
    context.close()


def test_the_email_gate_asks_then_opens_the_reader_and_the_visit_carries_the_address(chromium, shared):  # noqa: F811
    from playwright.sync_api import expect

    share = shared["mint"](label="Gated", requireEmail=True)
    context, page, errors = new_page(chromium)
    page.goto(share["url"], wait_until="load")
    expect(page.locator("#reader")).to_have_count(0)
    assert page.request.get(share["url"] + "/pages/1").status == 403

    page.fill("#email", "not an address")
    page.click("button[type=submit]")
    expect(page.locator("#email-error")).to_be_visible()
    page.fill("#email", "carol@example.com")
    page.click("button[type=submit]")

    expect(page.locator("#reader")).to_be_visible()
    page.wait_for_function("() => document.querySelector('#reader img').naturalWidth === 1200")
    [visit] = visits_of(shared)
    assert visit["viewerEmail"] == "carol@example.com"
    ARTIFACTS.mkdir(exist_ok=True)
    assert errors == [] or all("400" in error for error in errors)  # the refused address's page load
    context.close()


def test_the_reader_on_a_phone(chromium, shared):  # noqa: F811
    share = shared["mint"](label="Phone")
    context, page, errors = new_page(chromium, viewport={"width": 390, "height": 844}, is_mobile=True,
                                     has_touch=True, device_scale_factor=2)
    page.goto(share["url"], wait_until="load")
    page.wait_for_function("() => document.querySelector('#reader img').naturalWidth === 1200")

    download, print_button = page.locator("#download-button"), page.locator("#print-button")
    assert download.bounding_box()["y"] == print_button.bounding_box()["y"]  # one row of actions
    assert download.bounding_box()["height"] >= 44  # a finger-sized target
    image = page.locator("#page-1 img").bounding_box()
    assert 360 <= image["width"] <= 390  # the page fits the screen's width
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "reader-phone.png"))
    assert errors == []
    context.close()


def test_the_reader_works_with_a_keyboard(chromium, shared):  # noqa: F811
    share = shared["mint"](label="Keyboard")
    context, page, errors = new_page(chromium)
    page.goto(share["url"], wait_until="load")
    page.wait_for_function("() => Array.from(document.querySelectorAll('#reader img')).slice(0, 1)"
                           ".every(image => image.naturalWidth === 1200)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "reader.png"))
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "skip"
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "download-button"
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "print-button"
    page.keyboard.press("Enter")  # a real button: Enter prints
    page.wait_for_function("() => window.__printCalls === 1")
    before = page.evaluate("() => window.scrollY")
    page.keyboard.press("PageDown")
    page.wait_for_function(f"() => window.scrollY > {before}")
    assert errors == []
    context.close()


def axe_violations(page) -> list[dict]:
    page.add_script_tag(content=AXE_JS.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
            for v in result["violations"] if v["impact"] in SERIOUS]


@pytest.mark.parametrize("gated", [False, True], ids=["reader", "email-gate"])
def test_no_serious_or_critical_accessibility_violation(chromium, shared, gated):  # noqa: F811
    share = shared["mint"](label="Axe", requireEmail=gated)
    # axe is injected as a script of the test's own: the page's policy (script-src 'self') would refuse it
    context, page, _ = new_page(chromium, bypass_csp=True)
    page.goto(share["url"], wait_until="load")
    if not gated:
        page.wait_for_function("() => document.querySelector('#reader img').naturalWidth === 1200")
    assert axe_violations(page) == []
    context.close()
