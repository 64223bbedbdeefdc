"""Which network addresses the server may fetch a client's URL (its ``jwks_uri``) from.

Anyone who registers a client chooses that URL, so without this check the server could be made
to fetch from inside its own network: the machine itself, the private network behind it, a
cloud's instance metadata service (169.254.169.254). Only public unicast addresses are fetched
from, unless the deployment allows more: loopback in development and tests, private networks
for on-premises partners (``AUTHSERVER_JWKS_URI_ALLOW_PRIVATE``). Pure: no Flask, no network.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address
from ipaddress import IPv6Address
from ipaddress import ip_address
from ipaddress import ip_network

Address = IPv4Address | IPv6Address

LOOPBACK = "loopback"
PRIVATE = "private"
# RFC 1918 and unique local IPv6 (RFC 4193): the networks an on-premises partner may live on.
PRIVATE_NETWORKS = tuple(
    ip_network(network) for network in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)


def kind(address: Address) -> str | None:
    """What keeps ``address`` from being a public unicast address, or None when nothing does.

    One of ``"loopback"``, ``"unspecified"``, ``"link-local"`` (cloud metadata services live
    there), ``"multicast"``, ``"private"`` or ``"reserved"`` (any other special-purpose range:
    documentation, benchmarking, shared address space, 240.0.0.0/4...). An IPv6 address that
    carries an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002:aabb:ccdd::``) is judged
    by the IPv4 address it reaches.
    """
    address = _reached(address)
    for name, found in (
        (LOOPBACK, address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        (PRIVATE, _is_private(address)),
        ("reserved", address.is_reserved or not address.is_global),
    ):
        if found:
            return name
    return None


def refusal(address: Address, *, allow_loopback: bool, allow_private: bool) -> str | None:
    """The kind of ``address`` (:func:`kind`) when it may not be fetched from, else None."""
    found = kind(address)
    if found == LOOPBACK and allow_loopback or found == PRIVATE and allow_private:
        return None
    return found


def literal(host: str) -> Address | None:
    """The address ``host`` spells, in any form the resolver reads as one (``127.1``,
    ``2130706433``, ``0x7f.0.0.1``, ``::ffff:7f00:1``), or None for a name. Asks no DNS."""
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return ip_address(found[0][4][0].partition("%")[0])


def is_loopback_name(host: str) -> bool:
    """``localhost`` and the names under it, which always name this machine (RFC 6761 §6.3)."""
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def _reached(address: Address) -> Address:
    if isinstance(address, IPv6Address):
        return address.ipv4_mapped or address.sixtofour or address
    return address


def _is_private(address: Address) -> bool:
    # fec0::/10 (site-local) is deprecated, but still routed inside some networks.
    site_local = isinstance(address, IPv6Address) and address.is_site_local
    return site_local or any(address in network for network in PRIVATE_NETWORKS)
