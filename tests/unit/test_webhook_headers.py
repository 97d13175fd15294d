"""Webhook headers that would smuggle a request, or take over the client's, are refused."""

from __future__ import annotations

import pytest

from router.directory.webhook_headers import UnsafeHeader, check_headers, headers_problem


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-A", "foo\r\nX-Injected: 1"),
        ("X-A", "foo\nbar"),
        ("X-A", "foo\x00"),
        ("X-A", "foo\x7f"),
        ("X-A", "foo\u0085bar"),  # NEL
        ("X-A", "foo\u2028bar"),
        ("X A", "1"),
        ("X-A:", "1"),
        ("X-A\r\nX-B", "1"),
        ("", "1"),
        ("Ｘ-A", "1"),  # full-width letter
        ("Host", "internal.example"),
        ("host", "internal.example"),
        ("Content-Length", "0"),
        ("Transfer-Encoding", "chunked"),
        ("Connection", "close"),
        ("Keep-Alive", "timeout=5"),
        ("Upgrade", "h2c"),
        ("TE", "trailers"),
        ("Trailer", "X-B"),
        ("Expect", "100-continue"),
        ("Proxy-Authorization", "Basic eA=="),
        ("Proxy-Connection", "keep-alive"),
    ],
)
def test_unsafe_headers_are_refused_naming_the_header(name: str, value: str) -> None:
    with pytest.raises(UnsafeHeader) as info:
        check_headers({name: value})
    assert info.value.name == name
    assert value not in str(info.value) or not value, "header values (often secrets) are not shown"
    assert headers_problem({name: value}) == str(info.value)


def test_ordinary_headers_pass() -> None:
    headers = {
        "Authorization": "Bearer abc.def",
        "Content-Type": "text/plain; charset=utf-8",
        "X-Team": "db\tops",
        "X-Empty": "",
        "!#$%&'*+-.^_`|~0aZ": "v",
    }
    check_headers(headers)
    assert headers_problem(headers) is None


def test_a_header_given_twice_in_two_cases_is_refused() -> None:
    with pytest.raises(UnsafeHeader, match="twice"):
        check_headers({"X-A": "1", "x-a": "2"})
