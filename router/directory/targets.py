"""Webhook targets: refuse URLs that would make delivery workers reach inside the network. Pure.

A webhook URL is user input that a delivery worker will fetch from inside the
cluster, so it is checked like any server-side request target (SSRF):

- ``https`` only, unless ``allow_http``;
- no user info (``user:pass@host``): credentials in URLs leak into logs and
  make ``https://trusted.example@10.0.0.1/`` look like a trusted host;
- the host must not be, or spell, an address that is loopback, private,
  link-local (cloud metadata lives at 169.254.169.254), CGNAT, multicast,
  unspecified, reserved, or otherwise not globally routable. Literal
  addresses are read the way resolvers read them, so decimal
  (``2130706433``), hex (``0x7f000001``), octal and shortened (``127.1``)
  IPv4 forms and IPv4 inside IPv6 (``::ffff:127.0.0.1``, 6to4, NAT64) are
  all caught;
- names that only resolve inside a network are refused: ``localhost`` and
  ``*.localhost``, ``*.internal`` (``metadata.google.internal``), ``*.local``,
  ``*.localdomain``, ``*.home.arpa`` and single-label names like ``redis``
  (resolved through the cluster's search domains).

Names are not resolved here (that would put DNS on the routing path and still
not stop rebinding): delivery workers must check the address they connect to.
``allowed_hosts`` lets a site accept a named host or literal address anyway;
``denied_networks`` adds ranges to refuse.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_INTERNAL_SUFFIXES = (".localhost", ".internal", ".local", ".localdomain", ".home.arpa")
_INTERNAL_NAMES = frozenset({"localhost", "localhost.localdomain", "instance-data"})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# One part of an IPv4 literal in any form inet_aton accepts: decimal, octal, hex.
_IPV4_PART = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class UnsafeTarget(ValueError):
    """The URL must not be a webhook target; the message says why, in one line."""


@dataclass(frozen=True)
class TargetPolicy:
    """What a site allows beyond the default: plain http, named exceptions, more denials."""

    allow_http: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    denied_networks: tuple[IPNetwork, ...] = ()


#: The default: https only, public addresses only, no exceptions.
STRICT = TargetPolicy()


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells, read as resolvers read literals; ``None`` for a name.

    Raises :class:`UnsafeTarget` for something that looks numeric but is no
    address, since resolvers differ on such strings.
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if all(_IPV4_PART.match(part) for part in host.split(".")):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            raise UnsafeTarget(f"the host {host!r} looks like an address but is not one") from None
    return None


def address_problem(ip: IPAddress, denied: tuple[IPNetwork, ...] = ()) -> str | None:
    """Why ``ip`` must not be a target, or ``None`` when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            problem = address_problem(embedded, denied)
            return f"{problem} (inside the IPv6 address {ip})" if problem else None
    for network in denied:
        if ip.version == network.version and ip in network:
            return f"{ip} is in the denied network {network} (ROUTER_WEBHOOK_DENIED_NETWORKS)"
    checks = (
        (ip.is_unspecified, "the unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address (where cloud metadata services answer)"),
        (ip.is_multicast, "a multicast address"),
        (ip in ipaddress.IPv4Network("100.64.0.0/10"), "a carrier-grade NAT (CGNAT) address")
        if isinstance(ip, ipaddress.IPv4Address)
        else (ip.is_site_local, "a site-local address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "not a globally routable address"),
    )
    for refused, what in checks:
        if refused:
            return f"{ip} is {what}"
    return None


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if "%" in host:
        raise UnsafeTarget("an IPv6 zone index (%) is not allowed in a webhook host")
    host = host.rstrip(".")
    try:
        # IDNA folds look-alikes (full-width letters and the like) to what a
        # resolver would look up, so those cannot slip past the name checks.
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UnsafeTarget(f"the host {host!r} is not a valid host name") from None


def check_target(url: str, policy: TargetPolicy = TargetPolicy()) -> None:
    """Raise :class:`UnsafeTarget` unless ``url`` is a safe webhook target under ``policy``."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and policy.allow_http):
        raise UnsafeTarget(
            "only https webhook URLs are accepted (ROUTER_WEBHOOK_ALLOW_HTTP=true allows http)"
        )
    if "@" in parts.netloc:
        raise UnsafeTarget("a webhook URL must not carry a user name or password before its host")
    host = _host_of(url)
    if not host:
        raise UnsafeTarget("the webhook URL has no host")
    if host in policy.allowed_hosts:
        return
    ip = literal_address(host)
    if ip is not None:
        if ip.compressed in policy.allowed_hosts:
            return
        problem = address_problem(ip, policy.denied_networks)
        if problem:
            raise UnsafeTarget(f"the host is not a public address: {problem}")
        return
    if host in _INTERNAL_NAMES or host.endswith(_INTERNAL_SUFFIXES):
        raise UnsafeTarget(f"the host {host!r} names a machine inside a private network")
    if "." not in host:
        raise UnsafeTarget(
            f"the host {host!r} is a single-label name, which resolves inside a network; "
            "give a fully qualified name"
        )


@functools.lru_cache(maxsize=65_536)
def target_problem(url: str, policy: TargetPolicy) -> str | None:
    """Why ``url`` is refused under ``policy``, or ``None``; cached, for the routing path."""
    try:
        check_target(url, policy)
    except UnsafeTarget as error:
        return str(error)
    return None


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """``10.0.0.0/8, 2001:db8::/32`` as networks; ValueError naming a bad entry."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not a network such as 10.0.0.0/8") from None
    return tuple(networks)
