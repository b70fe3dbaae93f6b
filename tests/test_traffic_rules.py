"""CONTRACT 6: the traffic rules (engagement_platform/traffic.py), each reason and their precedence."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured

from engagement_platform.clientip import parse_networks
from engagement_platform.traffic import (
    HUMAN,
    USER_AGENT_VERDICTS_CACHED,
    EventKind,
    MachineReason,
    RequestPurpose,
    Traffic,
    Verdict,
    classify,
    click_is_too_soon,
    request_purpose,
    user_agent_finding,
)

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/124.0.0.0 Safari/537.36")
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                 "Version/17.4 Mobile/15E148 Safari/604.1")
FIREFOX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
SLACKBOT = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
OUTLOOK_DESKTOP = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17531; Pro)"
HEADLESS = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 "
            "Safari/537.36")
MIMECAST = "Mozilla/5.0 (compatible; Mimecast URL Protect)"
BARRACUDA = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"
DIRECT = RequestPurpose.DIRECT


def machine(reason) -> Verdict:
    return Verdict(Traffic.MACHINE, reason)


@pytest.mark.parametrize("user_agent", [CHROME, SAFARI_IPHONE, FIREFOX])
@pytest.mark.parametrize("kind", list(EventKind))
def test_browsers_are_human(user_agent, kind):
    assert classify(kind=kind, user_agent=user_agent, source_ip="198.51.100.7", purpose=DIRECT) == HUMAN


@pytest.mark.parametrize("user_agent", [
    SLACKBOT, "facebookexternalhit/1.1", "Twitterbot/1.0", "WhatsApp/2.23.20.0 A", "Discordbot/2.0",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "python-requests/2.31.0", "curl/8.5.0", "Googlebot/2.1 (+http://www.google.com/bot.html)", HEADLESS,
    "UptimeRobot/2.0",
])
def test_crawlers_previewers_http_libraries_and_headless_browsers_are_bots(user_agent):
    assert classify(kind=EventKind.VISIT, user_agent=user_agent, purpose=DIRECT) == machine(MachineReason.BOT)


@pytest.mark.parametrize(("method", "headers", "purpose"), [
    ("HEAD", {}, RequestPurpose.HEAD),
    ("GET", {"HTTP_SEC_PURPOSE": "prefetch"}, RequestPurpose.PREFETCH),
    ("GET", {"HTTP_SEC_PURPOSE": "prefetch;prerender"}, RequestPurpose.PRERENDER),
    ("GET", {"HTTP_PURPOSE": "prefetch"}, RequestPurpose.PREFETCH),
    ("GET", {"HTTP_X_MOZ": "prefetch"}, RequestPurpose.PREFETCH),
    ("GET", {"HTTP_X_PURPOSE": "preview"}, RequestPurpose.PREVIEW),
    ("GET", {"HTTP_X_PURPOSE": "Preview "}, RequestPurpose.PREVIEW),
    ("GET", {}, RequestPurpose.DIRECT),
    ("POST", {"HTTP_X_PURPOSE": "something-else"}, RequestPurpose.DIRECT),
])
def test_request_purpose_reads_the_method_and_the_purpose_headers(method, headers, purpose):
    assert request_purpose(method, headers) == purpose


@pytest.mark.parametrize("purpose", [RequestPurpose.HEAD, RequestPurpose.PREFETCH, RequestPurpose.PRERENDER,
                                     RequestPurpose.PREVIEW])
def test_a_head_prefetch_prerender_or_preview_is_machine_prefetch_whatever_the_user_agent(purpose):
    for user_agent in (CHROME, SLACKBOT, GMAIL_PROXY, None):
        assert classify(kind=EventKind.VISIT, user_agent=user_agent, purpose=purpose) == machine(
            MachineReason.PREFETCH)


@pytest.mark.parametrize("user_agent", [None, "", "   "])
def test_no_user_agent_on_a_public_route_is_machine(user_agent):
    for kind in EventKind:
        assert classify(kind=kind, user_agent=user_agent, purpose=DIRECT) == machine(MachineReason.NO_USER_AGENT)


def test_without_a_request_neither_prefetch_nor_no_user_agent_applies():
    assert classify(kind=EventKind.OPEN, user_agent=None, purpose=None) == HUMAN
    assert classify(kind=EventKind.VISIT, user_agent=SLACKBOT, purpose=None) == machine(MachineReason.BOT)


def test_the_bare_mozilla_user_agent_of_an_open_is_a_privacy_proxy():
    assert classify(kind=EventKind.OPEN, user_agent="Mozilla/5.0", purpose=DIRECT) == machine(
        MachineReason.PRIVACY_PROXY)
    assert classify(kind=EventKind.OPEN, user_agent="Mozilla/5.0 (Macintosh)", purpose=DIRECT) == HUMAN


def test_an_open_from_the_privacy_proxy_networks_is_a_privacy_proxy():
    for source_ip in ("17.58.0.1", "17.255.255.254", "::ffff:17.1.2.3"):
        assert classify(kind=EventKind.OPEN, user_agent=SAFARI_IPHONE, source_ip=source_ip, purpose=DIRECT) == \
            machine(MachineReason.PRIVACY_PROXY)
    assert classify(kind=EventKind.OPEN, user_agent=SAFARI_IPHONE, source_ip="18.0.0.1", purpose=DIRECT) == HUMAN
    assert classify(kind=EventKind.OPEN, user_agent=SAFARI_IPHONE, source_ip="not-an-ip", purpose=DIRECT) == HUMAN


def test_the_privacy_proxy_rule_judges_opens_only():
    """A person on Apple's own network opening the share page is a person."""
    assert classify(kind=EventKind.VISIT, user_agent=SAFARI_IPHONE, source_ip="17.58.0.1", purpose=DIRECT) == HUMAN
    assert classify(kind=EventKind.VISIT, user_agent="Mozilla/5.0", purpose=DIRECT) == HUMAN


def test_privacy_proxy_networks_come_from_the_setting(settings):
    settings.PRIVACY_PROXY_NETWORKS = "192.0.2.0/24, 2001:db8::/32"
    assert classify(kind=EventKind.OPEN, user_agent=CHROME, source_ip="192.0.2.9", purpose=DIRECT) == machine(
        MachineReason.PRIVACY_PROXY)
    assert classify(kind=EventKind.OPEN, user_agent=CHROME, source_ip="2001:db8::1", purpose=DIRECT) == machine(
        MachineReason.PRIVACY_PROXY)
    assert classify(kind=EventKind.OPEN, user_agent=CHROME, source_ip="17.58.0.1", purpose=DIRECT) == HUMAN


def test_a_bad_privacy_proxy_network_refuses_to_start():
    with pytest.raises(ImproperlyConfigured, match="PRIVACY_PROXY_NETWORKS holds 'nope'"):
        parse_networks("17.0.0.0/8, nope", setting="PRIVACY_PROXY_NETWORKS")


@pytest.mark.parametrize("user_agent", [GMAIL_PROXY, YAHOO_PROXY, OUTLOOK_DESKTOP])
def test_gmail_and_yahoo_image_proxies_and_outlook_stay_human_though_the_list_calls_them_crawlers(user_agent):
    from crawlerdetect import CrawlerDetect

    assert CrawlerDetect().is_crawler(user_agent)  # the list's own verdict, which the platform overrides
    for kind in EventKind:
        assert classify(kind=kind, user_agent=user_agent, source_ip="66.249.84.1", purpose=DIRECT) == HUMAN


@pytest.mark.parametrize("user_agent", [MIMECAST, BARRACUDA, "Proofpoint URL Defense", "Forcepoint URL scanner"])
def test_known_link_scanner_user_agents_are_scanners(user_agent):
    for kind in (EventKind.CLICK, EventKind.VISIT, EventKind.OPEN):
        assert classify(kind=kind, user_agent=user_agent, purpose=DIRECT) == machine(MachineReason.SCANNER)


def test_precedence_prefetch_then_no_user_agent_then_reader_clients_then_proxy_then_scanner_then_bot():
    assert classify(kind=EventKind.OPEN, user_agent=None, purpose=RequestPurpose.HEAD).reason == "prefetch"
    assert classify(kind=EventKind.OPEN, user_agent=GMAIL_PROXY, source_ip="17.0.0.1", purpose=DIRECT) == HUMAN
    assert classify(kind=EventKind.OPEN, user_agent=MIMECAST, source_ip="17.0.0.1",
                    purpose=DIRECT).reason == "privacy_proxy"
    assert classify(kind=EventKind.VISIT, user_agent=BARRACUDA, purpose=DIRECT).reason == "scanner"  # also a bot


def test_the_user_agent_rules_are_cached_per_user_agent_in_a_bounded_lru():
    user_agent_finding.cache_clear()
    classify(kind=EventKind.VISIT, user_agent=CHROME, purpose=DIRECT)
    classify(kind=EventKind.OPEN, user_agent=CHROME, source_ip="17.0.0.1", purpose=DIRECT)
    info = user_agent_finding.cache_info()
    assert (info.misses, info.hits, info.maxsize) == (1, 1, USER_AGENT_VERDICTS_CACHED)
    for index in range(USER_AGENT_VERDICTS_CACHED + 10):
        user_agent_finding(f"{CHROME} build/{index}")
    assert user_agent_finding.cache_info().currsize == USER_AGENT_VERDICTS_CACHED


DELIVERED = datetime(2026, 5, 3, 10, 0, tzinfo=UTC)


def test_a_click_sooner_than_machine_click_seconds_after_delivered_is_too_soon(settings):
    assert click_is_too_soon(clicked_at=DELIVERED + timedelta(seconds=9.9), delivered_at=DELIVERED)
    assert not click_is_too_soon(clicked_at=DELIVERED + timedelta(seconds=10), delivered_at=DELIVERED)
    assert click_is_too_soon(clicked_at=DELIVERED - timedelta(seconds=3), delivered_at=DELIVERED)
    assert not click_is_too_soon(clicked_at=DELIVERED, delivered_at=None)
    settings.MACHINE_CLICK_SECONDS = 60
    assert click_is_too_soon(clicked_at=DELIVERED + timedelta(seconds=30), delivered_at=DELIVERED)
    assert not click_is_too_soon(clicked_at=DELIVERED + timedelta(seconds=30), delivered_at=DELIVERED, seconds=5)
