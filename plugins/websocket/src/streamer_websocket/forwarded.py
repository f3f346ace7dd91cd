"""Whose connection it is: the TCP peer, or behind a trusted reverse proxy the client it names.

Per-address limits (unauthenticated places, failed authentications) must count the real
client, or every user behind a proxy shares the proxy's budget. A forwarding header is only
believed from a peer in ``trusted_proxies``: from any other peer it is ignored, so a client
cannot choose its own address. The header's list is read from the right (the hop nearest to
us) and the first address that is not itself a trusted proxy is the client; what lies left of
it was written by that client and is never believed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ForwardedHeader = Literal["x-forwarded-for", "forwarded"]


def parse_networks(cidrs: Iterable[str]) -> list[IPNetwork]:
    """``trusted_proxies`` as networks; ValueError names the first bad entry."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=True))
        except ValueError as exc:
            raise ValueError(f"{cidr!r} is not an address or network ({exc})") from None
    return networks


def parse_address(text: str) -> IPAddress | None:
    """An address as forwarding headers write it (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``,
    ``::1``), IPv4-mapped IPv6 unwrapped; None when it is none (``unknown``, ``_hidden``)."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forwarded_for(value: str) -> list[str]:
    """The ``for=`` of each element of an RFC 7239 ``Forwarded`` value, in order."""
    out = []
    for element in value.split(","):
        found = ""
        for pair in element.split(";"):
            name, _, param = pair.partition("=")
            if name.strip().lower() == "for":
                found = param
        out.append(found)
    return out


def _hops(headers: Sequence[tuple[bytes, bytes]], header: ForwardedHeader) -> list[str]:
    """Every entry of every instance of ``header``, left to right (instances in order)."""
    name = header.encode()
    hops: list[str] = []
    for key, value in headers:
        if key.lower() != name:
            continue
        text = value.decode("latin-1")
        hops.extend(_forwarded_for(text) if header == "forwarded" else text.split(","))
    return hops


class ClientAddresses:
    """Tells the client's address from its peer and, for trusted proxies, their header."""

    def __init__(self, trusted_proxies: Iterable[str], header: ForwardedHeader) -> None:
        self.networks = parse_networks(trusted_proxies)
        self.header = header

    def is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)

    def client_of(self, peer: str, headers: Sequence[tuple[bytes, bytes]]) -> tuple[str, bool]:
        """(client address, False), or (peer, True) when a trusted peer's header was present
        but named no usable address: limits then count the proxy, never an invented name."""
        peer_address = parse_address(peer)
        if peer_address is None or not self.is_trusted(peer_address):
            return peer, False
        hops = _hops(headers, self.header)
        if not hops:
            return str(peer_address), False  # the proxy itself (a health check, say)
        for hop in reversed(hops):
            address = parse_address(hop)
            if address is None:
                return str(peer_address), True
            if not self.is_trusted(address):
                return str(address), False
        # Every hop a trusted proxy: the left-most one is the nearest we can tell.
        return str(parse_address(hops[0])), False
