"""Where webhooks may be sent (contract section 8's safety): `https` to public addresses only, checked when an
endpoint is saved and again at each delivery, whose connection goes to the address that was checked.
WEBHOOK_ALLOW_PRIVATE_NETWORKS=1 allows `http` and local addresses (development and tests)."""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

ALLOWED_SCHEMES = ("https",)
DEVELOPMENT_SCHEMES = ("http", "https")


class UnsafeDestination(Exception):
    """A URL the platform refuses to send to; the message says why."""


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str
    port: int
    address: str  # the checked IP address to connect to
    path: str  # path and query, as sent in the request line


def private_networks_allowed() -> bool:
    return settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a webhook endpoint (its form only; no DNS), or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "Not a valid URL."
    schemes = DEVELOPMENT_SCHEMES if private_networks_allowed() else ALLOWED_SCHEMES
    if parts.scheme not in schemes:
        return "The URL must use https."
    if not parts.hostname:
        return "The URL has no host."
    if parts.username or parts.password:
        return "The URL must not carry credentials."
    if port == 0:
        return "The URL's port is not valid."
    return None


def is_public_address(address: str) -> bool:
    """Whether an IP address is a public unicast one (not loopback, private, link-local, multicast, reserved...)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local
                                 or ip.is_private or ip.is_unspecified)


def resolve(url: str) -> Destination:
    """Check `url` and resolve its host; every address it resolves to must be public (unless private networks
    are allowed), and the first is the one to connect to. Raises UnsafeDestination."""
    problem = url_problem(url)
    if problem is not None:
        raise UnsafeDestination(problem)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeDestination(f"The host does not resolve ({exc.__class__.__name__}).") from exc
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise UnsafeDestination("The host does not resolve.")
    if not private_networks_allowed():
        refused = [address for address in addresses if not is_public_address(address)]
        if refused:
            raise UnsafeDestination("The host resolves to a loopback, private, link-local, multicast or "
                                    "reserved address.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Destination(scheme=parts.scheme, host=parts.hostname, port=port, address=addresses[0], path=path)
