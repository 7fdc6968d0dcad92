"""Where a webhook may be sent: the URL's form and the addresses its host resolves to (server-side request
forgery). Pure: the caller resolves the host (the API at registration, the sender before each delivery) and
passes the addresses in, so the same rule judges both and a test needs no DNS.

The rule, with WEBHOOK_ALLOW_PRIVATE off (production):
- the URL is `https://host[:port]/path[?query]`, with no user name or password (they would end up in
  logs) and no fragment (never sent);
- every address the host resolves to is globally reachable: none is loopback, link-local (169.254/16, the
  cloud metadata service, fe80::/10), private (10/8, 172.16/12, 192.168/16, fc00::/7, shared 100.64/10,
  documentation ranges), multicast, reserved or unspecified. An IPv6 address that carries an IPv4 one
  (IPv4-mapped ::ffff:0:0/96, 6to4 2002::/16, NAT64 64:ff9b::/96) is judged by the IPv4 address it reaches.
  One bad address is enough to refuse: a host that resolves to a public and a private address could be
  connected to on either.

WEBHOOK_ALLOW_PRIVATE=1 (tests, local trials) also allows loopback, private and link-local addresses, and
plain `http` when every address is loopback. Multicast, reserved and unspecified addresses stay refused
even then: none of them is a host to POST to (and 0.0.0.0 would reach this machine by another name).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
HOST_NAME = re.compile(rf"^(?=.{{1,253}}$)({LABEL}\.)*{LABEL}\.?$")
"""A DNS name: dot-separated labels of letters, digits, hyphens (and underscores, which some names have)."""
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class AddressKind(enum.StrEnum):
    """Where an address leads, as far as the webhook rule cares; values are the words a refusal uses."""

    PUBLIC = "public"
    LOOPBACK = "loopback"
    LINK_LOCAL = "link-local"
    PRIVATE = "private"
    MULTICAST = "multicast"
    RESERVED = "reserved"
    UNSPECIFIED = "unspecified"


ALLOWED_WHEN_PRIVATE_ALLOWED = frozenset({AddressKind.LOOPBACK, AddressKind.LINK_LOCAL, AddressKind.PRIVATE})


@dataclass(frozen=True)
class WebhookUrl:
    """A URL of acceptable form, split into what the address check and a connection need."""

    url: str
    scheme: str
    host: str
    """The host name in lower case, or the IP address without brackets."""
    port: int


def parse_webhook_url(url: str) -> WebhookUrl | str:
    """The URL split up, or why it cannot be a webhook URL (its form only; addresses are judged apart)."""
    if len(url) > MAX_URL_LENGTH:
        return f"the URL is longer than {MAX_URL_LENGTH} characters"
    if not url.isascii() or not url.isprintable() or any(c.isspace() for c in url):
        return (
            "the URL must be ASCII without spaces or control characters (a non-ASCII host in its xn-- form)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        return f"the URL cannot be read: {e}"
    if parts.scheme not in ("https", "http"):
        return "the URL must start with https://"
    if parts.username is not None or parts.password is not None:
        return "the URL must not carry a user name or password"
    if parts.fragment:
        return "the URL must not have a #fragment (it is never sent)"
    host = parts.hostname or ""
    if not host:
        return "the URL has no host"
    if literal_address(host) is None and not HOST_NAME.match(host):
        return f"{host!r} is neither a host name nor an IP address"
    if port == 0:
        return "the URL's port must be from 1 to 65535"
    default_port = 443 if parts.scheme == "https" else 80
    return WebhookUrl(url, parts.scheme, host, default_port if port is None else port)


def literal_address(host: str) -> IPAddress | None:
    """The address a host written as an IP address stands for (no DNS needed), else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def address_kind(address: IPAddress) -> AddressKind:
    """Where `address` leads; an IPv6 address that carries an IPv4 one leads where that one does."""
    if isinstance(address, ipaddress.IPv6Address):
        carried = address.ipv4_mapped or address.sixtofour
        if carried is None and address in NAT64:
            carried = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if carried is not None:
            return address_kind(carried)
    # Order matters: ::1 is also in a reserved range, 169.254/16 and 240/4 are also "private" to ipaddress.
    if address.is_unspecified:
        return AddressKind.UNSPECIFIED
    if address.is_loopback:
        return AddressKind.LOOPBACK
    if address.is_link_local:
        return AddressKind.LINK_LOCAL
    if address.is_multicast:
        return AddressKind.MULTICAST
    if address.is_reserved:
        return AddressKind.RESERVED
    if address.is_private or not address.is_global:  # not global: e.g. shared address space 100.64/10
        return AddressKind.PRIVATE
    return AddressKind.PUBLIC


def destination_refusal(
    target: WebhookUrl, addresses: Sequence[IPAddress], *, allow_private: bool
) -> str | None:
    """Why a webhook may not go to `target` whose host resolved to `addresses`; None if it may."""
    if not addresses:
        return f"the host {target.host} resolves to no address"
    allowed = {AddressKind.PUBLIC} | (ALLOWED_WHEN_PRIVATE_ALLOWED if allow_private else set())
    for address in addresses:
        kind = address_kind(address)
        if kind not in allowed:
            return f"the host {target.host} resolves to {address} ({kind}): webhooks go to public hosts only"
    if target.scheme == "http":
        loopback = allow_private and all(address_kind(a) is AddressKind.LOOPBACK for a in addresses)
        if not loopback:
            return "the URL must start with https:// (http is only for loopback with WEBHOOK_ALLOW_PRIVATE=1)"
    return None
