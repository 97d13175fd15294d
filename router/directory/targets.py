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
  ``*.localdomain``, ``*.home.arpa``, Kubernetes service and pod names
  (``*.svc``, ``*.svc.*``, ``*.pod``, ``*.pod.*``, ``*.cluster.local``) and
  single-label names like ``redis`` (resolved through the cluster's search
  domains).

The host is read first, the way WHATWG URL parsers (browsers, Node) and
urllib3 read it (:func:`parse_target`): look-alike dots (U+3002, U+FF0E,
U+FF61) are dots, full-width forms are folded, IDNA gives the name a resolver
looks up. A URL those parsers could read differently from one another is
refused outright: a backslash before the path (urllib3 reads
``https://127.0.0.1\\evil.example.com/`` as 127.0.0.1), spaces or control
characters anywhere, percent-encoding in the host, a port outside 1-65535.

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
import unicodedata
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_INTERNAL_SUFFIXES = (
    ".localhost",
    ".internal",
    ".local",
    ".localdomain",
    ".home.arpa",
    ".svc",
    ".pod",
    ".cluster.local",
)
_INTERNAL_NAMES = frozenset({"localhost", "localhost.localdomain", "instance-data"})
# Kubernetes names a service <svc>.<ns>.svc.<cluster domain> and a pod
# <a-b-c-d>.<ns>.pod.<cluster domain>, and the cluster domain need not be
# cluster.local: a "svc" or "pod" label after the first is in-cluster.
_CLUSTER_LABELS = frozenset({"svc", "pod"})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# One part of an IPv4 literal in any form inet_aton accepts: decimal, octal, hex.
_IPV4_PART = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
#: Every character an address literal can hold, in any of the spellings above.
_LITERAL_CHARACTERS = frozenset("0123456789abcdefABCDEFxX.:")


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
    if not _LITERAL_CHARACTERS.issuperset(host) and "%" not in host and "\n" not in host:
        # A name (most hosts): the parsers below would raise and catch twice to say so.
        # A zone (%) or a line end can still follow an address for them: not here.
        return None
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


@dataclass(frozen=True)
class Target:
    """Where an HTTP client sends the request for a URL."""

    scheme: str  #: lower-case
    host: str  #: IDNA, lower-case, no trailing dot; an IPv6 address without brackets
    port: int | None  #: None when the URL gives none


# Characters URL parsers disagree on (WHATWG drops tabs and newlines, others
# keep them or stop there): control, format (zero-width, bidi) and space characters.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
_NAMED = {"\t": "a tab", "\n": "a line feed", "\r": "a carriage return", " ": "a space"}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_AUTHORITY_END = re.compile(r"[/?#]")
_PORT = re.compile(r"[0-9]{1,5}")
# A name a resolver can be asked for, once folded and IDNA-encoded. Anything
# else holds a character (perhaps folded from a look-alike) that some parser
# reads as a delimiter and another refuses.
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
# The dots WHATWG URL (UTS 46) and IDNA read as ".", left alone by NFKC.
_DOT_LOOKALIKES = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def describe_character(char: str) -> str:
    """``a tab``, ``a space``, or ``the character U+0085``: for one-line refusals."""
    return _NAMED.get(char, f"the character U+{ord(char):04X}")


def _port(text: str | None) -> int | None:
    if text is None:
        return None
    if not _PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise UnsafeTarget(
            f"the port {text!r} is not a number from 1 to 65535; give a valid port or none"
        )
    return int(text)


@functools.lru_cache(maxsize=4096)  # a few hosts serve most webhooks: checked once each
def _host_name(text: str) -> str:
    if not text:
        raise UnsafeTarget("the webhook URL has no host; give it as https://hooks.example.com/path")
    if "%" in text:
        raise UnsafeTarget(
            "percent-encoding (%) is not allowed in a webhook host; write the host name as it is"
        )
    # Fold (full-width letters, digits and dots, the one-dot leader...) before
    # dropping the trailing dot: stripping first let "127.0.0.1。" reach the
    # address checks as the name "127.0.0.1.".
    # ASCII is its own NFKC form and has no look-alike dots.
    folded = text if text.isascii() else unicodedata.normalize("NFKC", text)
    name = folded.translate(_DOT_LOOKALIKES).rstrip(".")
    try:
        host = name.encode("idna").decode("ascii").lower()
    except UnicodeError:
        host = ""
    if not _HOST_NAME.fullmatch(host):
        raise UnsafeTarget(
            f"the host {text!r} is not a valid host name; give a name such as hooks.example.com"
        )
    return host


def _ipv6_host(authority: str) -> tuple[str, str | None]:
    inside, bracket, after = authority[1:].partition("]")
    if "%" in inside:
        raise UnsafeTarget("an IPv6 zone index (%) is not allowed in a webhook host")
    try:
        host = ipaddress.IPv6Address(inside).compressed
    except ValueError:
        host = ""
    if not bracket or not host or (after and not after.startswith(":")):
        raise UnsafeTarget(
            f"the host {authority!r} is not a bracketed IPv6 address such as [2001:db8::1]"
        )
    return host, after[1:] if after else None


def parse_target(url: str) -> Target:
    """Scheme, host and port of ``url`` as WHATWG URL parsers and urllib3 read them.

    Raises :class:`UnsafeTarget` for a URL those parsers could read differently
    from each other (and so from this check): spaces or control characters
    anywhere, anything but ``//`` after the scheme, a backslash, user info or
    percent-encoding in the authority, a host that is neither a valid name nor
    a bracketed IPv6 address, a port outside 1-65535.
    """
    # ASCII from "!" to "~" holds none of the refused categories: look no further.
    refusable = not (url.isascii() and url.isprintable()) or " " in url
    for char in url if refusable else ():
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise UnsafeTarget(
                f"the webhook URL contains {describe_character(char)}; remove it, or "
                "percent-encode it in the path or query"
            )
    scheme = _SCHEME.match(url)
    if scheme is None or not url[scheme.end() :].startswith("//"):
        raise UnsafeTarget(
            "the webhook URL must start with its scheme and //, as in https://hooks.example.com/x"
        )
    rest = url[scheme.end() + 2 :]
    end = _AUTHORITY_END.search(rest)
    authority = rest[: end.start()] if end else rest
    if "\\" in authority:
        raise UnsafeTarget(
            "a backslash is not allowed before the path of a webhook URL: HTTP clients end "
            "the host there (https://127.0.0.1\\evil.example.com/ is 127.0.0.1 to them)"
        )
    if "@" in authority:
        raise UnsafeTarget("a webhook URL must not carry a user name or password before its host")
    if authority.startswith("["):
        host, port = _ipv6_host(authority)
    else:
        name, colon, after = authority.partition(":")
        host, port = _host_name(name), after if colon else None
    return Target(scheme.group()[:-1].lower(), host, _port(port))


def _internal_name(host: str) -> bool:
    return (
        host in _INTERNAL_NAMES
        or host.endswith(_INTERNAL_SUFFIXES)
        or not _CLUSTER_LABELS.isdisjoint(host.split(".")[1:])
    )


def check_target(url: str, policy: TargetPolicy = TargetPolicy()) -> None:
    """Raise :class:`UnsafeTarget` unless ``url`` is a safe webhook target under ``policy``."""
    target = parse_target(url)
    if target.scheme != "https" and not (target.scheme == "http" and policy.allow_http):
        raise UnsafeTarget(
            "only https webhook URLs are accepted (ROUTER_WEBHOOK_ALLOW_HTTP=true allows http)"
        )
    host = target.host
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
    if _IPV4_PART.match(host.rpartition(".")[2]):
        # WHATWG parsers refuse such a host; others hand it to the resolver.
        raise UnsafeTarget(f"the host {host!r} ends in a number but is not an address")
    if _internal_name(host):
        raise UnsafeTarget(f"the host {host!r} names a machine inside a private network")
    if "." not in host:
        raise UnsafeTarget(
            f"the host {host!r} is a single-label name, which resolves inside a network; "
            "give a fully qualified name"
        )


def target_problem(url: str, policy: TargetPolicy) -> str | None:
    """Why ``url`` is refused under ``policy``, or ``None``; cached, for the routing path.

    A URL in printable ASCII without a space has no character the check refuses, and
    :func:`parse_target` reads nothing after its authority: its answer is that of its
    scheme and authority alone, so the cache holds one answer per site (most webhooks
    of a directory go to a few), not one per URL.
    """
    if url.isascii() and url.isprintable() and " " not in url:
        scheme = _SCHEME.match(url)
        if scheme is not None and url.startswith("//", scheme.end()):
            end = _AUTHORITY_END.search(url, scheme.end() + 2)
            if end is not None:
                url = url[: end.start()]
    return _site_problem(url, policy)


@functools.lru_cache(maxsize=4096)
def _site_problem(url: str, policy: TargetPolicy) -> str | None:
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
