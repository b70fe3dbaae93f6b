"""Human and machine traffic (contract section 6): the one place that decides an event's traffic class.

Both surfaces call this module: the render side for share-page and pixel events, the report side for
`opened` and `clicked` message events. A rule reads only what each event stores (its user agent, source
IP, the purpose of the request it came from, and for clicks the message's `delivered` time), so stored
events can be judged again by the same functions.

The precedence, written once in `classify`, first match wins:

1. `prefetch`: the request was a `HEAD`, a prefetch or prerender, or a preview (request-level facts).
2. `no_user_agent`: a request to a public route without a `User-Agent` (never for events that came
   without a request: backfilled or ingested ones).
3. mail clients and image proxies that load images when the reader opens the mail (Gmail's and Yahoo's
   proxies, Outlook's desktop client) are `human`, whatever a user-agent list calls them.
4. `privacy_proxy` (opens only): the bare user agent `Mozilla/5.0`, or a source address in
   `PRIVACY_PROXY_NETWORKS` (Apple Mail Privacy Protection).
5. `scanner`: a known security link scanner's user agent.
6. `bot`: the maintained user-agent list (`crawlerdetect`: crawlers, link previewers, monitoring and
   HTTP-library clients, headless browsers).
7. otherwise `human`.

`client` (an ingested event sent with `"machine": true`) and the click-timing side of `scanner`
(`click_is_too_soon`) are decided by the report side, which owns the data they read.
"""

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from crawlerdetect import CrawlerDetect
from django.conf import settings
from django.db import models

from engagement_platform.clientip import parse_networks


class Traffic(models.TextChoices):
    HUMAN = "human"
    MACHINE = "machine"


class MachineReason(models.TextChoices):
    BOT = "bot"
    PREFETCH = "prefetch"
    PRIVACY_PROXY = "privacy_proxy"
    SCANNER = "scanner"
    NO_USER_AGENT = "no_user_agent"
    CLIENT = "client"


class TrafficFilter(models.TextChoices):
    """The `traffic=` query parameter of both surfaces: every class, or one."""

    ALL = "all"
    HUMAN = "human"
    MACHINE = "machine"


class RequestPurpose(models.TextChoices):
    """What the request that recorded an event was for, stored with the event (NULL: no request)."""

    DIRECT = "direct"  # a plain request: a person, or a machine saying nothing about itself
    HEAD = "head"
    PREFETCH = "prefetch"
    PRERENDER = "prerender"
    PREVIEW = "preview"


class EventKind(models.TextChoices):
    """What a classified event is, as far as the rules care: an open (pixel), a click, or a visit (share page)."""

    OPEN = "open"
    CLICK = "click"
    VISIT = "visit"


@dataclass(frozen=True)
class Verdict:
    traffic: str
    reason: str | None = None

    @property
    def is_machine(self) -> bool:
        return self.traffic == Traffic.MACHINE


HUMAN = Verdict(Traffic.HUMAN)
BARE_MOZILLA_USER_AGENT = "Mozilla/5.0"

# Readers' own mail clients and the image proxies that fetch on the reader's open (not ahead of it).
# User-agent lists call several of them crawlers; the platform's rule wins and keeps them human.
READER_MAIL_CLIENTS = re.compile(
    r"GoogleImageProxy|YahooMailProxy|Microsoft Outlook",
    re.IGNORECASE,
)
# Security link scanners (mail gateways that open every link and image of a message before delivery).
# Matched before the general list, so they are named `scanner` rather than `bot`.
LINK_SCANNERS = re.compile(
    r"Barracuda|Mimecast|Proofpoint|urldefense|SafeLinks|Forcepoint|Cisco ?IronPort|FireEye|Trellix"
    r"|Zscaler|Symantec|Sophos|TrendMicro|Trend Micro|Bitdefender|Check ?Point|Hornetsecurity|Vade ?Secure"
    r"|MessageLabs|Cloudmark|SpamTitan|Egress|Abnormal ?Security|Ironscales|Avanan|Libraesva",
    re.IGNORECASE,
)
USER_AGENT_VERDICTS_CACHED = 4096

_crawlers = CrawlerDetect()


# Purpose headers ------------------------------------------------------------------------------------------

def request_purpose(method: str, meta) -> str:
    """What a request was for, from its method and purpose headers (`Sec-Purpose`, `Purpose`, `X-Moz`,
    `X-Purpose`); `meta` is the WSGI environ (`request.META`)."""
    if method == "HEAD":
        return RequestPurpose.HEAD
    declared = " ".join(meta.get(name, "") for name in ("HTTP_SEC_PURPOSE", "HTTP_PURPOSE", "HTTP_X_MOZ"))
    declared = declared.lower()
    if "prerender" in declared:
        return RequestPurpose.PRERENDER
    if "prefetch" in declared:
        return RequestPurpose.PREFETCH
    if meta.get("HTTP_X_PURPOSE", "").strip().lower() == "preview":
        return RequestPurpose.PREVIEW
    return RequestPurpose.DIRECT


# The rules ------------------------------------------------------------------------------------------------

class UserAgentFinding(models.TextChoices):
    """What the user-agent rules found in one user agent (the part of a verdict that is kept per user agent)."""

    READER_CLIENT = "reader_client"
    BARE_MOZILLA = "bare_mozilla"
    SCANNER = "scanner"
    BOT = "bot"
    NOTHING = "nothing"


def classify(*, kind: str, user_agent: str | None, source_ip: str | None = None,
             purpose: str | None = None) -> Verdict:
    """The traffic class of one classified event (the precedence in the module's docstring).

    `purpose` is the stored `RequestPurpose` of the request that recorded it, or None for an event
    that came without one (backfilled or ingested): then `prefetch` and `no_user_agent` do not apply.
    """
    if purpose is not None and purpose != RequestPurpose.DIRECT:
        return Verdict(Traffic.MACHINE, MachineReason.PREFETCH)
    user_agent = (user_agent or "").strip()
    if not user_agent:
        return Verdict(Traffic.MACHINE, MachineReason.NO_USER_AGENT) if purpose is not None else HUMAN
    finding = user_agent_finding(user_agent)
    if finding == UserAgentFinding.READER_CLIENT:
        return HUMAN
    if kind == EventKind.OPEN and (finding == UserAgentFinding.BARE_MOZILLA
                                   or from_privacy_proxy_network(source_ip)):
        return Verdict(Traffic.MACHINE, MachineReason.PRIVACY_PROXY)
    if finding == UserAgentFinding.SCANNER:
        return Verdict(Traffic.MACHINE, MachineReason.SCANNER)
    if finding == UserAgentFinding.BOT:
        return Verdict(Traffic.MACHINE, MachineReason.BOT)
    return HUMAN


# What the user-agent rules find is a pure function of the user agent, and the list's regular expression
# (some 1,400 patterns) costs 0.1-0.6 ms per browser user agent: several times the rest of recording an
# event. Real traffic repeats a small set of user agents (each browser build, each previewer), so a bounded
# LRU keeps the hot path to a dict lookup, while a client sending random ones only churns the cache and
# never grows the process.
@lru_cache(maxsize=USER_AGENT_VERDICTS_CACHED)
def user_agent_finding(user_agent: str) -> str:
    """The user-agent rules for one non-empty user agent, most specific first."""
    if READER_MAIL_CLIENTS.search(user_agent):
        return UserAgentFinding.READER_CLIENT
    if user_agent == BARE_MOZILLA_USER_AGENT:
        return UserAgentFinding.BARE_MOZILLA
    if LINK_SCANNERS.search(user_agent):
        return UserAgentFinding.SCANNER
    if _crawlers.is_crawler(user_agent):
        return UserAgentFinding.BOT
    return UserAgentFinding.NOTHING


def from_privacy_proxy_network(source_ip: str | None) -> bool:
    if not source_ip:
        return False
    try:
        address = ipaddress.ip_address(source_ip)
    except ValueError:
        return False
    address = getattr(address, "ipv4_mapped", None) or address
    return any(address.version == network.version and address in network for network in privacy_proxy_networks())


def privacy_proxy_networks() -> tuple:
    """The setting as parsed at startup (a plain string, as a settings override may give, is parsed once)."""
    value = settings.PRIVACY_PROXY_NETWORKS
    return _parsed_networks(value) if isinstance(value, str) else value


@lru_cache(maxsize=8)
def _parsed_networks(raw: str) -> tuple:
    return parse_networks(raw, setting="PRIVACY_PROXY_NETWORKS")


def click_is_too_soon(*, clicked_at: datetime, delivered_at: datetime | None, seconds: int | None = None) -> bool:
    """The click-timing side of `scanner`: a click less than `MACHINE_CLICK_SECONDS` after its message's
    `delivered` (a gateway scanner opens the link while delivering, before any reader could). A click
    stamped before `delivered` counts too: the scanner's click can be recorded before the delivery is.
    False when no `delivered` is known."""
    if delivered_at is None:
        return False
    seconds = settings.MACHINE_CLICK_SECONDS if seconds is None else seconds
    return (clicked_at - delivered_at).total_seconds() < seconds


# Settings -------------------------------------------------------------------------------------------------

def warm() -> None:
    """Compile the user-agent list's expression now rather than on the first classified request (~30 ms)."""
    _crawlers.is_crawler("Mozilla/5.0 (warm-up)")
