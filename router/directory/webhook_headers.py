"""Webhook headers: the one rule set for what a contact method may add to its request. Pure.

A webhook's ``--header`` values are copied into every ``WebhookJob`` and sent
by a delivery worker's HTTP client, so they are checked on ``contacts add``, on
``contacts import`` and at routing time (``unsafe_target``), by
:func:`check_headers` alone:

- names are RFC 9110 tokens: ASCII letters, digits and ``!#$%&'*+-.^_`|~``,
  so no spaces, colons or control characters;
- values hold no control characters (CR and LF above all: ``foo\\r\\nX-Injected: 1``
  would start a second header) and no line or paragraph separators; a tab is
  allowed, as RFC 9110 allows it;
- headers the HTTP client writes itself, or that speak to the connection and
  not to the receiver, are refused: ``Host``, ``Content-Length``,
  ``Transfer-Encoding``, ``Connection``, ``Keep-Alive``, ``Upgrade``, ``TE``,
  ``Trailer``, ``Expect``, ``HTTP2-Settings`` and ``Proxy-*``;
- a name is given once: names ignore case, so ``X-A`` and ``x-a`` are one header.

Refusals name the header, never its value: values are often credentials.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from router.directory.targets import describe_character

# RFC 9110 section 5.6.2: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Written by the client from the URL and the body, or hop-by-hop (RFC 9110
# section 7.6.1, RFC 9113 section 8.2.2).
_CLIENT_OWNED = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "http2-settings",
    }
)


class UnsafeHeader(ValueError):
    """A webhook header that must not be sent: ``name`` is the header, ``reason`` says why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"the header {name!r} {reason}")
        self.name = name
        self.reason = reason


def check_header(name: str, value: str) -> None:
    """Raise :class:`UnsafeHeader` unless ``name: value`` may be sent to a webhook as given."""
    if not _TOKEN.fullmatch(name):
        raise UnsafeHeader(
            name,
            "is not a valid header name; use only ASCII letters, digits and !#$%&'*+-.^_`|~ "
            "(no spaces, colons or control characters)",
        )
    lower = name.lower()
    if lower in _CLIENT_OWNED or lower.startswith("proxy-"):
        raise UnsafeHeader(name, "is set by the HTTP client itself; leave it out")
    for char in value:
        if (unicodedata.category(char) == "Cc" and char != "\t") or char in "\u2028\u2029":
            raise UnsafeHeader(
                name,
                f"has {describe_character(char)} in its value, which could end the header "
                "and start another; remove it",
            )


def check_headers(headers: Mapping[str, str]) -> None:
    """Raise :class:`UnsafeHeader` for the first header of ``headers`` that may not be sent,
    or for a name given twice in two spellings."""
    seen: dict[str, str] = {}
    for name, value in headers.items():
        check_header(name, value)
        first = seen.setdefault(name.lower(), name)
        if first != name:
            raise UnsafeHeader(
                name, f"is given twice (also as {first!r}; names ignore case); give it once"
            )


def headers_problem(headers: Mapping[str, str]) -> str | None:
    """Why ``headers`` may not be sent, naming the header, or ``None``; for the routing path."""
    try:
        check_headers(headers)
    except UnsafeHeader as error:
        return str(error)
    return None
