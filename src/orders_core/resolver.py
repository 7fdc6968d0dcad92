"""A webhook host's addresses, from the system's resolver: the I/O half of the server-side request forgery
check, whose rule (`webhook_urls.destination_refusal`) is pure.

Injected (`Resolve`) so that the API checks a URL at registration and the sender can check it again before
each delivery with the same rule: a name that resolved to a public address at registration may resolve to a
private one later (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Protocol

from orders_core.webhook_urls import IPAddress, literal_address

RESOLVE_SECONDS = 5.0
"""How long a resolution may take before the host counts as not resolving (a request waits on it)."""


class Resolve(Protocol):
    """Resolves a host name to its addresses, or says why it could not."""

    async def __call__(self, host: str, port: int) -> list[IPAddress] | str: ...


async def system_resolve(host: str, port: int) -> list[IPAddress] | str:
    """Every address `host` resolves to (an IP address resolves to itself), or why it does not resolve."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        found = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=RESOLVE_SECONDS
        )
    except TimeoutError:
        return f"the host {host} did not resolve within {RESOLVE_SECONDS:g} s"
    except (OSError, UnicodeError) as e:  # socket.gaierror is an OSError
        return f"the host {host} does not resolve ({getattr(e, 'strerror', None) or e})"
    addresses = {ipaddress.ip_address(str(info[4][0])) for info in found}
    return sorted(addresses, key=lambda a: (a.version, int(a)))
