"""Webhook targets that reach inside a network are refused, in every spelling."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.directory.targets import TargetPolicy, UnsafeTarget, check_target, parse_networks

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
