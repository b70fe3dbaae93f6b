"""The source IP of a request: the one rule every path that stores or counts by an address uses.

`TRUSTED_PROXIES` says whose forwarding headers are believed:

- `*` (the default): every peer is trusted. The source is the first hop of `X-Forwarded-For`, else
  `X-Real-IP`, else the socket peer (`REMOTE_ADDR`); a value that is not a valid address is skipped.
- a comma-separated list of addresses or CIDR ranges: when the socket peer is not in the list, its own
  address is the source (whatever headers it sent). When it is, the source is the right-most
  `X-Forwarded-For` address that is not itself a trusted proxy (invalid entries skipped), so a client
  cannot choose its address by sending the header. When every hop is a trusted proxy, the left-most
  valid hop is the source; with no valid hop, the trusted peer's `X-Real-IP`, else the peer itself.
"""

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

TRUST_EVERY_PEER = "*"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class TrustedProxies:
    """The parsed setting: `networks is None` trusts every peer."""

    networks: tuple[Network, ...] | None

    @property
    def trusts_every_peer(self) -> bool:
        return self.networks is None

    def trusts(self, address: Address) -> bool:
        if self.networks is None:
            return True
        mapped = getattr(address, "ipv4_mapped", None)  # `::ffff:10.0.0.1` is the IPv4 proxy 10.0.0.1
        candidate = mapped or address
        return any(candidate.version == network.version and candidate in network for network in self.networks)


def parse_networks(raw: str, *, setting: str, hint: str = "") -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR ranges of a setting; ImproperlyConfigured for anything else."""
    networks = []
    for item in (part.strip() for part in (raw or "").split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{setting} holds {item!r}, which is not an address or a CIDR range{hint}.") from None
    return tuple(networks)


def parse_trusted_proxies(raw: str) -> TrustedProxies:
    """`*`, or comma-separated addresses / CIDR ranges; ImproperlyConfigured for anything else."""
    items = [item.strip() for item in (raw or "").split(",") if item.strip()]
    if not items:
        raise ImproperlyConfigured("TRUSTED_PROXIES is empty: set `*` or the proxies' addresses or CIDR ranges.")
    if items == [TRUST_EVERY_PEER]:
        return TrustedProxies(None)
    return TrustedProxies(parse_networks(raw, setting="TRUSTED_PROXIES",
                                         hint=" (use `*` alone to trust every peer)"))


@lru_cache(maxsize=8)
def _parsed(raw: str) -> TrustedProxies:
    return parse_trusted_proxies(raw)


def trusted_proxies() -> TrustedProxies:
    """The setting as parsed at startup (a plain string, as a settings override may give, is parsed once)."""
    value = getattr(settings, "TRUSTED_PROXIES", TRUST_EVERY_PEER)
    return value if isinstance(value, TrustedProxies) else _parsed(value)


def _address(value: str | None) -> Address | None:
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if getattr(address, "scope_id", None):  # `fe80::1%eth0`: a zone names the sender's interface, not a client
        return None
    return address


def valid_ip(value: str | None) -> str | None:
    """`value` as a canonical address, or None when it is not a valid IPv4/IPv6 address."""
    address = _address(value)
    return None if address is None else str(address)


def client_ip(meta) -> str | None:
    """The request's source IP under TRUSTED_PROXIES (see the module's docstring); None when there is none."""
    proxies = trusted_proxies()
    forwarded = meta.get("HTTP_X_FORWARDED_FOR", "")
    if proxies.trusts_every_peer:
        candidates = [forwarded.split(",")[0]] if forwarded else []
        candidates += [meta.get("HTTP_X_REAL_IP"), meta.get("REMOTE_ADDR")]
        for candidate in candidates:
            ip = valid_ip(candidate)
            if ip is not None:
                return ip
        return None
    peer = _address(meta.get("REMOTE_ADDR"))
    if peer is None:
        return None
    if not proxies.trusts(peer):
        return str(peer)
    hops = [address for address in map(_address, forwarded.split(",")) if address is not None]
    for hop in reversed(hops):
        if not proxies.trusts(hop):
            return str(hop)
    if hops:
        return str(hops[0])
    return valid_ip(meta.get("HTTP_X_REAL_IP")) or str(peer)
