"""Webhook targets that reach inside a network are refused, in every spelling."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from router.directory.targets import (
    TargetPolicy,
    UnsafeTarget,
    check_target,
    literal_address,
    parse_networks,
    parse_target,
    target_problem,
)

#: The URLs an operator found accepted before the check existed (issue 7).
REPORTED = [
    "http://127.0.0.1/",
    "http://169.254.169.254/latest/meta-data",
    "http://10.0.0.1",
    "http://[::1]/",
    "http://[fd00::1]/",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://localhost:6379/",
    "http://metadata.google.internal/",
    "http://user:pass@hooks.example.com/",
]
MORE_FORMS = [
    "https://127.1/",
    "https://0177.0.0.1/",
    "https://0x7f.0.0.1/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:a9fe:a9fe]/",  # 169.254.169.254, mapped
    "https://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "https://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "https://100.64.0.1/",  # CGNAT
    "https://100.100.100.200/",  # Alibaba's metadata service, in CGNAT
    "https://[fd00:ec2::254]/",  # AWS's IPv6 metadata service
    "https://224.0.0.1/",
    "https://[ff02::1]/",
    "https://0.0.0.0/",
    "https://[::]/",
    "https://192.168.0.10/",
    "https://172.31.255.255/",
    "https://198.18.0.1/",
    "https://[fe80::1%25eth0]/",
    "https://localhost./",
    "https://api.localhost/",
    "https://ｌｏｃａｌｈｏｓｔ/",  # full-width letters fold to localhost
    "https://svc.cluster.local/",
    "https://redis:6379/",
    "https://instance-data/",
    "https://hooks.example.com@10.0.0.1/",
    "https://99999999999/",
]


@pytest.mark.parametrize("url", REPORTED + [u.replace("http://", "https://") for u in REPORTED])
def test_every_reported_target_is_refused_over_http_and_https(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_target(url, TargetPolicy(allow_http=True))


@pytest.mark.parametrize("url", MORE_FORMS)
def test_other_spellings_of_internal_targets_are_refused(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_target(url, TargetPolicy(allow_http=True))


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/alice", "https://8.8.8.8/x", "https://[2606:4700::1111]/"]
)
def test_public_https_targets_are_accepted(url: str) -> None:
    check_target(url)


def test_http_needs_the_setting() -> None:
    with pytest.raises(UnsafeTarget, match="ROUTER_WEBHOOK_ALLOW_HTTP"):
        check_target("http://hooks.example.com/")
    check_target("http://hooks.example.com/", TargetPolicy(allow_http=True))


def test_allowed_hosts_let_a_site_accept_an_internal_receiver() -> None:
    policy = TargetPolicy(allowed_hosts=frozenset({"alerts.internal", "10.1.2.3"}))
    check_target("https://alerts.internal/hook", policy)
    check_target("https://10.1.2.3/hook", policy)
    with pytest.raises(UnsafeTarget):
        check_target("https://10.1.2.4/hook", policy)
    with pytest.raises(UnsafeTarget, match="user name"):
        check_target("https://u:p@alerts.internal/hook", policy)


def test_denied_networks_refuse_more() -> None:
    policy = TargetPolicy(denied_networks=parse_networks("8.8.8.0/24, 2001:4860::/32"))
    with pytest.raises(UnsafeTarget, match="ROUTER_WEBHOOK_DENIED_NETWORKS"):
        check_target("https://8.8.8.8/", policy)
    with pytest.raises(UnsafeTarget):
        check_target("https://[2001:4860::8888]/", policy)
    check_target("https://1.1.1.1/", policy)


def test_a_bad_network_names_itself() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33'"):
        parse_networks("10.0.0.0/8, 10.0.0.0/33")


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_any_decimal_or_hex_spelling_is_judged_as_its_address(number: int) -> None:
    ip = ipaddress.IPv4Address(number)
    public = ip.is_global and not ip.is_multicast and not ip.is_reserved
    for host in (str(number), hex(number), str(ip)):
        if public:
            check_target(f"https://{host}/")
        else:
            with pytest.raises(UnsafeTarget):
                check_target(f"https://{host}/")


#: Spellings an HTTP client reads as an internal host though a plain split does not (issue 17).
HOSTILE_SPELLINGS = [
    "https://169.254.169.254．/latest/meta-data",  # full-width full stop after the host
    "https://127.0.0.1。/x",  # ideographic full stop
    "https://127.0.0.1｡/x",  # half-width ideographic full stop
    "https://127。0。0。1/x",
    "https://127.0.0.1․/x",  # one-dot leader, a dot once NFKC-folded
    "https://127.0.0.1\\evil.example.com/x",  # urllib3, requests, Node: host 127.0.0.1
    "https://evil.example.com\\@127.0.0.1/x",
    "https://kubernetes.default.svc/x",
    "https://kubernetes.default.svc.cluster.local/x",
    "https://kubernetes.default.svc.corp.example/x",  # a cluster with its own domain
    "https://10-0-0-1.default.pod/x",
    "https://10-0-0-1.default.pod.corp.example/x",
]
#: URLs no two parsers read alike, refused whatever host they name.
MALFORMED = [
    "https://example.com:99999/x",
    "https://example.com:0/x",
    "https://example.com:/x",
    "https://example.com:８０/x",  # full-width digits in the port
    "https://example.com:443:443/x",
    "https://example.com:-1/x",
    "https://exa\tmple.com/x",
    "https://exa\nmple.com/x",
    "https://exa\rmple.com/x",
    "https://example.com\x00/x",
    "https://example.com/a b",
    "https://example.com/\x7f",
    "https://example.com\u3000/x",  # ideographic space
    "https://example.com/\u2028",  # line separator
    "https://exa\u200bmple.com/x",  # zero-width space
    " https://example.com/x",
    "https://example.com/x\n",
    "https:\\\\example.com/x",
    "https:example.com/x",
    "https:///example.com/x",
    "https://%31%32%37.0.0.1/x",  # percent-encoded host
    "https://example..com/x",
    "https://exa<mple.com/x",
    "https://127.0.0.1＼evil.example.com/x",  # full-width backslash, a backslash once folded
    "https://example.123/x",  # ends in a number but is no address
    "https://[127.0.0.1]/x",
    "https://[::1/x",
    "https://[2606:4700::1111]x/",
]


@pytest.mark.parametrize("url", HOSTILE_SPELLINGS + MALFORMED)
def test_hosts_are_read_as_http_clients_read_them_and_ambiguous_urls_refused(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_target(url, TargetPolicy(allow_http=True))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://127.0.0.1。/x", "127.0.0.1 is a loopback address"),
        ("https://127.0.0.1\\evil.example.com/x", "backslash"),
        ("https://example.com:99999/x", "port '99999'"),
        ("https://exa\tmple.com/x", "a tab"),
        ("https://kubernetes.default.svc/x", "inside a private network"),
    ],
)
def test_a_refusal_says_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(UnsafeTarget, match=re.escape(message)):
        check_target(url)


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("https://hooks.example.com/x", "hooks.example.com", None),
        ("HTTPS://Hooks.Example.COM:8443/x?a=1#f", "hooks.example.com", 8443),
        ("https://hooks。example．com/x", "hooks.example.com", None),
        ("https://ｈｏｏｋｓ.example.com./x", "hooks.example.com", None),
        ("https://bücher.example/x", "xn--bcher-kva.example", None),
        ("https://[2606:4700:0::1111]:443/x", "2606:4700::1111", 443),
        ("https://hooks.example.com?x", "hooks.example.com", None),
        ("https://example.com/a\\b", "example.com", None),  # after the host, a backslash is path
    ],
)
def test_the_parser_gives_the_host_a_client_connects_to(
    url: str, host: str, port: int | None
) -> None:
    target = parse_target(url)
    assert (target.host, target.port) == (host, port)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com:8443/x",
        "https://hooks。example．com/x",
        "https://svc.example.com/x",  # svc as the first label is an ordinary name
        "https://pod.example.com/x",
        "https://my_hooks.example.com/x",
    ],
)
def test_public_targets_in_other_spellings_are_still_accepted(url: str) -> None:
    check_target(url)


def test_the_site_policy_still_allows_what_it_allowed() -> None:
    policy = TargetPolicy(
        allow_http=True,
        allowed_hosts=frozenset({"alerts.internal", "10.1.2.3", "fd00::1", "hooks.default.svc"}),
    )
    for url in (
        "http://alerts.internal/hook",
        "https://alerts.internal:8443/hook",
        "https://10.1.2.3/hook",
        "https://[fd00::1]/hook",
        "https://hooks.default.svc/hook",
        "http://hooks.example.com/",
    ):
        check_target(url, policy)
    for url in ("https://10.1.2.3\\x.example.com/", "https://alerts.internal:99999/"):
        with pytest.raises(UnsafeTarget):
            check_target(url, policy)


@given(st.text(min_size=1, max_size=40))
def test_any_text_after_the_scheme_is_refused_or_has_a_plain_host(rest: str) -> None:
    """Whatever a user types, the check either refuses it or finds a host a resolver can use."""
    try:
        target = parse_target("https://" + rest)
    except UnsafeTarget:
        return
    assert re.fullmatch(r"[a-z0-9_.:-]*", target.host), target


@given(st.text(st.characters(max_codepoint=0x7F), max_size=40))
def test_a_url_is_refused_for_its_characters_exactly_when_one_is_a_space_or_control(
    rest: str,
) -> None:
    """ASCII URLs skip the per-character look and the Unicode folding (both change
    nothing for them): still refused exactly when a character is a space or a control."""
    url = "https://" + rest
    refused = any(c == " " or ord(c) < 0x20 or ord(c) == 0x7F for c in url)
    problem = ""
    try:
        parse_target(url)
    except UnsafeTarget as error:
        problem = str(error)
    assert ("the webhook URL contains" in problem) == refused


@example("::%z")
@example("0\n")
@example("127.0.0.1\n")
@given(st.text(max_size=30))
def test_a_host_with_a_letter_no_address_spelling_uses_is_a_name(host: str) -> None:
    """Hosts with a character no address literal holds skip the address parsers, which
    would refuse them anyway (every IPv4 and IPv6 spelling, inet_aton's included); a
    zone (%) or a line end, which the parsers may take after an address, does not."""
    if set(host) <= set("0123456789abcdefABCDEFxX.:") or "%" in host or "\n" in host:
        return
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        ipaddress.ip_address(host)
    assert not all(re.match(r"^(0x[0-9a-f]*|[0-9]+)$", part) for part in host.split("."))
    assert literal_address(host) is None


@pytest.mark.parametrize("host", ["::%z", "fe80::1%eth0", "127.0.0.1\n", "0\n"])
def test_an_address_with_a_zone_or_a_line_end_is_still_read_as_an_address(host: str) -> None:
    assert literal_address(host) is not None


def _checked(url: str, policy: TargetPolicy) -> str | None:
    try:
        check_target(url, policy)
    except UnsafeTarget as error:
        return str(error)
    return None


@example("https://hooks.example.com", "/a b")
@example("https://127.0.0.1", "/x")
@example("https:/", "/hooks.example.com/x")
@example("https://hooks.example.com", "\\evil")
@given(
    st.sampled_from(
        [
            "https://hooks.example.com",
            "http://hooks.example.com",
            "https://10.0.0.1",
            "https://[::1]:8443",
            "https://alerts.internal",
            "https://hooks.example.com:99999",
            "https://user@hooks.example.com",
            "https://localhost",
            "https:",
            "https:/",
            "ftp://hooks.example.com",
            "https://hooks.example.com\\x",
            "",
        ]
    )
    | st.text(max_size=25).map(lambda host: "https://" + host),
    st.text(max_size=20),
)
def test_a_url_is_judged_as_the_uncached_check_judges_it_whole(site: str, rest: str) -> None:
    """The routing path's cached answer, kept per scheme and authority for a URL in plain
    ASCII, is the full check's answer for the whole URL, message and all."""
    policy = TargetPolicy()
    for url in (site + rest, site + "/" + rest, site + "?" + rest, site + "#" + rest):
        assert target_problem(url, policy) == _checked(url, policy), url
