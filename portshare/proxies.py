"""
Which address a request really comes from, when reverse proxies stand in front.

C{X-Forwarded-For} is believed only when the peer is a configured trusted proxy: the
client is then the right-most address in the header that is not itself a trusted proxy.
Anyone else could write anything there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from twisted.internet.interfaces import IAddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parseNetworks(specs: Iterable[str]) -> tuple[Network, ...]:
    """
    @param specs: addresses or networks (C{10.0.0.1}, C{10.0.0.0/8}, C{::1}).
    @raise ValueError: for anything else.
    """
    return tuple(ipaddress.ip_network(spec.strip(), strict=False) for spec in specs)


def isTrusted(host: str, networks: Sequence[Network]) -> bool:
    """Whether C{host} (an address, IPv6 perhaps in brackets) is in one of C{networks}."""
    try:
        address = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return False
    return any(address in network for network in networks)


def clientHost(peer: str, forwardedFor: Sequence[str], trusted: Sequence[Network]) -> str:
    """
    @param peer: the TCP peer's host.
    @param forwardedFor: the values of every C{X-Forwarded-For} header, in order.
    @param trusted: the trusted proxies.
    @return: the client's host.
    """
    if not trusted or not isTrusted(peer, trusted):
        return peer
    hops = [hop.strip() for value in forwardedFor for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not isTrusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def describeAddress(address: IAddress) -> tuple[str, int | None]:
    """A (host, port) pair for any address type; UNIX sockets have no port."""
    host = getattr(address, "host", None)
    if host is not None:
        return str(host), getattr(address, "port", None)
    name = getattr(address, "name", None)
    return (
        name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "unix"),
        None,
    )
